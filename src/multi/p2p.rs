//! Copies between buffers on different GPUs of a [`DeviceSet`]: directly over NVLink/PCIe when
//! peer access is enabled, otherwise staged through page-locked host memory, chunk by chunk,
//! with the two GPUs' copies overlapping.

use super::DeviceSet;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::memory::access::Access;
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut, DeviceSlice, DeviceSliceMut, PinnedBuffer};
use crate::stream::Stream;
use bytemuck::Pod;
use cudarc::driver::{result, sys};

/// Staging buffers in the ring: while the source GPU fills one, the destination drains another.
const RING: usize = 3;

/// How a [`PeerCopy`] moves the bytes.
///
/// ```no_run
/// use hikube_gpu::multi::{CopyPath, DeviceSet, PeerCopy};
/// let set = DeviceSet::all()?;
/// let copier = PeerCopy::new(&set, 16 << 20)?;
/// // What `Auto` resolves to from rank 0 to each rank.
/// for to in 0..set.len() {
///     let path = copier.auto_path(0, to)?;
///     assert_ne!(path, CopyPath::Auto);
///     println!("0 -> {to}: {path:?}");
/// }
/// assert_eq!(copier.auto_path(0, 0)?, CopyPath::Device);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CopyPath {
    /// The best path available: [`Device`](Self::Device) on one GPU, [`Peer`](Self::Peer) where
    /// peer access is enabled, [`Staged`](Self::Staged) otherwise.
    #[default]
    Auto,
    /// One GPU: an ordinary device-to-device copy.
    Device,
    /// `cuMemcpyPeerAsync`: the copy engines move the bytes over NVLink or PCIe where the
    /// [`DeviceSet`] enabled peer access between the two GPUs (context and stream-ordered pool
    /// memory alike); where it is off, the driver stages the copy itself. Only a copy: no kernel
    /// is given the other GPU's buffer.
    Peer,
    /// Through a ring of page-locked host buffers: the source GPU copies a chunk down, the
    /// destination copies it up, ordered by events, never blocking the host.
    Staged,
}

/// Copies buffers between the GPUs of a [`DeviceSet`], owning the pinned staging it needs.
///
/// Ordering: the copy starts after the work queued so far on `src_stream` (which produced the
/// source) and on `dst_stream`; work queued on `dst_stream` afterwards sees the data, and work
/// queued on `src_stream` afterwards may overwrite the source.
///
/// ```no_run
/// use hikube_gpu::multi::{CopyPath, DeviceSet, PeerCopy};
/// use hikube_gpu::DeviceBuffer;
/// let set = DeviceSet::all()?;
/// let (s0, s1) = (set.device(0)?.new_stream()?, set.device(set.len() - 1)?.new_stream()?);
/// let a = DeviceBuffer::from_slice(&s0, &vec![1.0f32; 1 << 20])?;
/// let mut b = DeviceBuffer::<f32>::alloc(&s1, 1 << 20)?;
/// let mut copier = PeerCopy::new(&set, 8 << 20)?;
/// let path = copier.copy(CopyPath::Auto, &s0, &a, &s1, &mut b)?;
/// println!("copied by {path:?}");
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct PeerCopy {
    set: DeviceSet,
    chunk: usize,
    /// Allocated on first staged copy, page-locked for every context.
    staging: Vec<PinnedBuffer<u8>>,
    /// `drained[b]`: recorded after the last upload out of staging buffer `b`.
    drained: Vec<Option<Event>>,
}

impl std::fmt::Debug for PeerCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCopy")
            .field("ranks", &self.set.len())
            .field("chunk", &self.chunk)
            .finish()
    }
}

impl PeerCopy {
    /// A copier for `set`, staging `chunk_bytes` at a time where it must (8-32 MiB suits PCIe
    /// hosts). Staging memory is taken on the first staged copy.
    pub fn new(set: &DeviceSet, chunk_bytes: usize) -> Result<PeerCopy> {
        if chunk_bytes == 0 {
            return Err(Error::InvalidArgument {
                what: "chunk_bytes must be at least 1".into(),
            });
        }
        Ok(PeerCopy {
            set: set.clone(),
            chunk: chunk_bytes,
            staging: Vec::new(),
            drained: (0..RING).map(|_| None).collect(),
        })
    }

    /// The set whose devices this copier moves data between.
    pub fn set(&self) -> &DeviceSet {
        &self.set
    }

    /// The path [`CopyPath::Auto`] takes from rank `from` to rank `to`;
    /// [`Error::DeviceIndexOutOfRange`] for a rank past the last.
    pub fn auto_path(&self, from: usize, to: usize) -> Result<CopyPath> {
        let (a, b) = (self.set.device(from)?, self.set.device(to)?);
        Ok(if a == b {
            CopyPath::Device
        } else if self.set.peer_access(from, to) {
            CopyPath::Peer
        } else {
            CopyPath::Staged
        })
    }

    /// Copies `src` (on `src_stream`'s device) into `dst` (same length, on `dst_stream`'s
    /// device) along `path`, and returns the path taken. Both devices must be in the set
    /// ([`Error::NotInSet`]); each buffer on its stream's device ([`Error::WrongDevice`]).
    /// [`CopyPath::Device`] between two GPUs is an [`Error::InvalidArgument`].
    pub fn copy<T: Pod>(
        &mut self,
        path: CopyPath,
        src_stream: &Stream,
        src: &impl AsDeviceSlice<T>,
        dst_stream: &Stream,
        dst: &mut impl AsDeviceSliceMut<T>,
    ) -> Result<CopyPath> {
        let src = src.as_device_slice();
        let mut dst = dst.as_device_slice_mut();
        src_stream.device().check_same(src.device())?;
        dst_stream.device().check_same(dst.device())?;
        let from = self.set.rank_of(src.device())?;
        let to = self.set.rank_of(dst.device())?;
        if src.len() != dst.len() {
            return Err(Error::LengthMismatch {
                expected: dst.len(),
                actual: src.len(),
            });
        }
        let same_device = src.device() == dst.device();
        let path = match path {
            CopyPath::Auto => self.auto_path(from, to)?,
            CopyPath::Device if !same_device => {
                return Err(Error::InvalidArgument {
                    what: format!(
                        "CopyPath::Device copies within one GPU; ranks {from} and {to} are on two"
                    ),
                })
            }
            p => p,
        };
        src_stream.refuse_in_capture("a peer copy")?;
        dst_stream.refuse_in_capture("a peer copy")?;
        let bytes = src.len() * std::mem::size_of::<T>();
        if bytes == 0 {
            return Ok(path);
        }
        match path {
            CopyPath::Staged => self.staged(src_stream, &src, dst_stream, &mut dst, bytes)?,
            _ => {
                // Each stream waits for its buffer's earlier uses on other streams; then the
                // destination stream, which runs the copy, waits for the source stream, and the
                // source stream for the copy, before both accesses note it.
                let mut read = Access::eager(src_stream, "a peer copy")?;
                let mut write = Access::eager(dst_stream, "a peer copy")?;
                let sp = read.read(&src)?.addr();
                let dp = write.write(&mut dst)?.addr();
                dst_stream.wait(&src_stream.record()?)?;
                if path == CopyPath::Device {
                    // SAFETY: both ranges hold `bytes` bytes (equal lengths, checked) of this
                    // device, kept alive and ordered by the accesses and the waits around.
                    unsafe { result::memcpy_dtod_async(dp, sp, bytes, dst_stream.cu()) }?;
                } else {
                    let dst_ctx = dst.device().inner.ctx.cu_ctx();
                    // SAFETY: `sp` and `dp` address `bytes` bytes of the borrowed source and
                    // destination (equal lengths, checked), alive for the borrow; the copy is
                    // queued on `dst_stream`, after the source's producer (the wait above), and
                    // `src_stream` waits for it below before it may overwrite the source.
                    unsafe {
                        result::memcpy_peer_async(
                            dst_ctx,
                            dp,
                            src.device().inner.ctx.cu_ctx(),
                            sp,
                            bytes,
                            dst_stream.raw.cu_stream(),
                        )
                    }?;
                }
                note_copy(src_stream, dst_stream, read, write)?;
            }
        }
        Ok(path)
    }

    fn staged<T: Pod>(
        &mut self,
        src_stream: &Stream,
        src: &DeviceSlice<'_, T>,
        dst_stream: &Stream,
        dst: &mut DeviceSliceMut<'_, T>,
        bytes: usize,
    ) -> Result<()> {
        if self.staging.is_empty() {
            // Pinned for every context: two GPUs copy through it.
            self.staging = (0..RING)
                .map(|_| PinnedBuffer::zeroed_portable(src_stream.device(), self.chunk))
                .collect::<Result<_>>()?;
        }
        // Raw pointers, taken once: the copy engines read and write the staging bytes while
        // this runs, so no Rust reference may cover them. (Their own log is never used, as
        // they are only used here through `drained`, so taking the pointers does not block.)
        let staging: Vec<*mut u8> = self
            .staging
            .iter_mut()
            .map(|b| b.host_ptr())
            .collect::<Result<_>>()?;
        let mut read = Access::eager(src_stream, "a peer copy")?;
        let mut write = Access::eager(dst_stream, "a peer copy")?;
        let sp = read.read(src)?.addr();
        let dp = write.write(dst)?.addr();
        let copied = self.staged_chunks(src_stream, sp, dst_stream, dp, bytes, &staging);
        if copied.is_err() {
            // A download into or an upload out of a staging buffer may be in flight with no
            // `drained` event after it, and `Drop` would free the buffer under the copy
            // engine: wait for both streams before returning the error.
            for stream in [src_stream, dst_stream] {
                if let Err(Error::Driver(e)) = stream.synchronize() {
                    stream.device().inner.ctx.record_err::<()>(Err(e));
                }
            }
        }
        // `drained` orders the source stream after every upload but the last.
        let noted = note_copy(src_stream, dst_stream, read, write);
        copied.and(noted)
    }

    /// The chunk loop of [`staged`](Self::staged), through the staging buffers at `staging`
    /// (`RING` of `self.chunk` bytes each).
    #[allow(clippy::indexing_slicing)] // reason: `b = i % RING` indexes the RING staging buffers and events
    fn staged_chunks(
        &mut self,
        src_stream: &Stream,
        sp: u64,
        dst_stream: &Stream,
        dp: u64,
        bytes: usize,
        staging: &[*mut u8],
    ) -> Result<()> {
        for (i, off) in (0..bytes).step_by(self.chunk).enumerate() {
            let b = i % RING;
            let len = self.chunk.min(bytes - off);
            if let Some(drained) = &self.drained[b] {
                src_stream.wait(drained)?;
            }
            // SAFETY: `sp + off` addresses `len` bytes inside the source (`off + len <= bytes`)
            // and `staging[b]` `len <= chunk` bytes of pinned memory; the buffer is no longer
            // read by an earlier upload (`src_stream` waited for `drained[b]` above), and it
            // outlives the copy (`Drop` waits for `drained`, and `staged` for both streams if
            // this loop fails before `drained[b]` is recorded).
            unsafe {
                sys::cuMemcpyDtoHAsync_v2(
                    staging[b].cast(),
                    sp + off as u64,
                    len,
                    src_stream.raw.cu_stream(),
                )
            }
            .result()?;
            dst_stream.wait(&src_stream.record()?)?;
            // SAFETY: `dp + off` addresses `len` bytes inside the destination (same length as
            // the source); the staging bytes were written by the download the wait above
            // orders before this upload; the buffer outlives it (as above).
            unsafe {
                sys::cuMemcpyHtoDAsync_v2(
                    dp + off as u64,
                    staging[b].cast_const().cast(),
                    len,
                    dst_stream.raw.cu_stream(),
                )
            }
            .result()?;
            self.drained[b] = Some(dst_stream.record()?);
        }
        Ok(())
    }
}

/// Orders the source stream after the copy queued on the destination stream, then notes both
/// accesses, so the source's last read is the copy's end.
fn note_copy(
    src_stream: &Stream,
    dst_stream: &Stream,
    read: Access<'_>,
    write: Access<'_>,
) -> Result<()> {
    src_stream.wait(&dst_stream.record()?)?;
    write.finish()?;
    read.finish()
}

impl Drop for PeerCopy {
    #[allow(clippy::indexing_slicing)] // reason: a set has at least one device (DeviceSet refuses an empty one)
    fn drop(&mut self) {
        // The staging buffers are freed with `self`: the copy engines must be done with them.
        for drained in self.drained.iter().flatten() {
            if let Err(Error::Driver(e)) = drained.synchronize() {
                self.set.devices()[0].inner.ctx.record_err::<()>(Err(e));
            }
        }
    }
}
