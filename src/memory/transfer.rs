//! Host↔device transfers beyond a single copy: a caching pinned allocator, a double-buffered
//! pipeline that moves ordinary (pageable) host memory through pinned staging at nearly pinned
//! speed, and a prefetcher that streams host batches to the GPU while it computes.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::memory::access::Access;
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, PinnedBuffer};
use crate::stream::Stream;
use bytemuck::Pod;
use cudarc::driver::result;
use rayon::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::ops::{Deref, DerefMut};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Pinned allocations are cached in classes of this granularity.
const PINNED_CLASS: usize = 1 << 20;

/// The class a request of `bytes` is cached in: rounded up to [`PINNED_CLASS`] (at least one).
fn size_class(bytes: usize) -> Result<usize> {
    crate::size::round_up("pinned block bytes", bytes.max(1), PINNED_CLASS)
}

/// A cache of page-locked host buffers: page-locking is slow (milliseconds per call), so
/// buffers taken from the pool go back to it when dropped and are handed out again.
///
/// ```no_run
/// use hikube_gpu::{Device, PinnedPool};
/// let device = Device::open(0)?;
/// let pool = PinnedPool::new(&device);
/// let block = pool.take(8 << 20)?; // 8 MiB, page-locked
/// drop(block);                      // back to the cache
/// assert_eq!(pool.cached_bytes(), 8 << 20);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone)]
pub struct PinnedPool {
    device: Device,
    free: Arc<Mutex<HashMap<usize, Vec<PinnedBuffer<u8>>>>>,
}

/// A page-locked buffer on loan from a [`PinnedPool`]; derefs to [`PinnedBuffer<u8>`] of at
/// least the size asked for, and returns to the pool when dropped.
///
/// ```no_run
/// use hikube_gpu::{Device, DeviceBuffer, PinnedPool};
/// let device = Device::open(0)?;
/// let stream = device.new_stream()?;
/// let pool = PinnedPool::new(&device);
/// let mut block = pool.take(3 << 20)?; // rounded up to whole MiB
/// assert!(block.len() >= 3 << 20);
/// block.as_mut_slice()?[..5].copy_from_slice(b"hello");
/// let mut gpu = DeviceBuffer::<u8>::alloc(&stream, block.len())?;
/// gpu.copy_from_pinned(&stream, &block)?;
/// drop(block); // back to the pool; its next user waits for the copy
/// assert_eq!(gpu.slice(..5)?.to_vec(&stream)?, b"hello");
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct PinnedBlock {
    buf: Option<PinnedBuffer<u8>>,
    pool: PinnedPool,
}

impl PinnedPool {
    /// An empty pool for `device`'s transfers.
    pub fn new(device: &Device) -> Self {
        PinnedPool {
            device: device.clone(),
            free: Arc::default(),
        }
    }

    /// A buffer of at least `bytes` bytes: from the cache when one of its size class is there.
    /// A size whose class (rounded up to 1 MiB) overflows is [`Error::InvalidArgument`].
    pub fn take(&self, bytes: usize) -> Result<PinnedBlock> {
        let class = size_class(bytes)?;
        let cached = self
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&class)
            .and_then(Vec::pop);
        let buf = match cached {
            Some(b) => b,
            None => PinnedBuffer::zeroed(&self.device, class)?,
        };
        Ok(PinnedBlock {
            buf: Some(buf),
            pool: self.clone(),
        })
    }

    /// Makes sure the cache holds at least `count` buffers of `bytes`' size class, page-locking
    /// the missing ones now. Page-locking host memory waits for the device to go idle, so a
    /// loop that takes blocks while kernels run should reserve them first (as
    /// [`Prefetcher`] does at its first batch). Errors as [`take`](Self::take).
    pub fn reserve(&self, bytes: usize, count: usize) -> Result<()> {
        let class = size_class(bytes)?;
        let cached = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let have = cached.get(&class).map_or(0, Vec::len);
        drop(cached);
        for _ in have..count {
            let buf = PinnedBuffer::zeroed(&self.device, class)?;
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            free.entry(class).or_default().push(buf);
        }
        Ok(())
    }

    /// Bytes held in the cache (not on loan).
    pub fn cached_bytes(&self) -> usize {
        let free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        // Every cached block is allocated memory: the sum cannot overflow.
        free.iter()
            .map(|(class, v)| class.saturating_mul(v.len()))
            .fold(0, usize::saturating_add)
    }

    /// Frees every cached buffer.
    pub fn trim(&self) {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl Deref for PinnedBlock {
    type Target = PinnedBuffer<u8>;
    #[allow(clippy::expect_used)] // reason: `buf` is Some from `take` until `drop` takes it
    fn deref(&self) -> &PinnedBuffer<u8> {
        self.buf.as_ref().expect("present until drop")
    }
}

impl DerefMut for PinnedBlock {
    #[allow(clippy::expect_used)] // reason: `buf` is Some from `take` until `drop` takes it
    fn deref_mut(&mut self) -> &mut PinnedBuffer<u8> {
        self.buf.as_mut().expect("present until drop")
    }
}

impl Drop for PinnedBlock {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            let mut free = self.pool.free.lock().unwrap_or_else(|p| p.into_inner());
            free.entry(buf.len()).or_default().push(buf);
        }
    }
}

/// Copies `src` into `dst` with several threads (host memory bandwidth needs more than one).
fn parallel_copy(dst: &mut [u8], src: &[u8]) {
    const PIECE: usize = 1 << 20;
    dst.par_chunks_mut(PIECE)
        .zip(src.par_chunks(PIECE))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// Moves ordinary host memory to and from the device through a ring of pinned staging buffers:
/// while the DMA engine copies one chunk, host threads fill (or drain) the next.
///
/// ```no_run
/// use hikube_gpu::{Device, DeviceBuffer, PinnedPool, TransferPipeline};
/// let device = Device::open(0)?;
/// let stream = device.new_stream()?;
/// let mut pipe = TransferPipeline::new(&PinnedPool::new(&device), 16 << 20)?;
/// let host: Vec<f32> = (0..50_000_000).map(|i| i as f32).collect();
/// let mut gpu = DeviceBuffer::<f32>::alloc(&stream, host.len())?;
/// pipe.upload(&stream, &host, &mut gpu)?; // `host` may be reused when this returns
/// let mut back = vec![0.0f32; host.len()];
/// pipe.download(&stream, &gpu, &mut back)?;
/// assert_eq!(back, host);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct TransferPipeline {
    device: Device,
    chunk: usize,
    staging: Vec<PinnedBlock>,
    done: Vec<Event>,
    pending: Vec<bool>,
}

/// Staging buffers in the ring: one being filled, one being copied, one spare for jitter.
const RING: usize = 3;

impl TransferPipeline {
    /// A pipeline moving `chunk_bytes` per step (8-32 MiB suits PCIe and NVLink hosts), with
    /// its staging taken from `pool`.
    pub fn new(pool: &PinnedPool, chunk_bytes: usize) -> Result<Self> {
        if chunk_bytes == 0 {
            return Err(Error::InvalidArgument {
                what: "chunk_bytes must be at least 1".into(),
            });
        }
        let device = pool.device.clone();
        Ok(TransferPipeline {
            staging: (0..RING)
                .map(|_| pool.take(chunk_bytes))
                .collect::<Result<_>>()?,
            done: (0..RING)
                .map(|_| Event::new(&device))
                .collect::<Result<_>>()?,
            pending: vec![false; RING],
            chunk: chunk_bytes,
            device,
        })
    }

    /// Waits until staging buffer `b` is no longer read or written by a copy.
    #[allow(clippy::indexing_slicing)] // reason: `b < RING`: every caller passes an index modulo RING into vectors of RING entries
    fn settle(&mut self, b: usize) -> Result<()> {
        if self.pending[b] {
            self.done[b].synchronize()?;
            self.pending[b] = false;
        }
        Ok(())
    }

    /// Copies `src` into `dst` (same length). Returns once every chunk has been staged, so
    /// `src` may then be reused; the last copies may still be running on `stream`.
    #[allow(clippy::indexing_slicing)] // reason: `i % RING` indexes the RING staging blocks; a piece is at most `chunk` bytes, and every block holds at least `chunk`
    pub fn upload<T: Pod>(
        &mut self,
        stream: &Stream,
        src: &[T],
        dst: &mut impl AsDeviceSliceMut<T>,
    ) -> Result<()> {
        let mut dst = dst.as_device_slice_mut();
        self.device.check_same(stream.device())?;
        self.device.check_same(dst.device())?;
        stream.refuse_in_capture("a pipelined upload")?;
        if dst.len() != src.len() {
            return Err(Error::LengthMismatch {
                expected: dst.len(),
                actual: src.len(),
            });
        }
        let bytes: &[u8] = bytemuck::cast_slice(src);
        let mut acc = Access::eager(stream, "a pipelined upload")?;
        acc.exact();
        let base = acc.write(&mut dst)?.addr();
        for (i, piece) in bytes.chunks(self.chunk).enumerate() {
            let b = i % RING;
            self.settle(b)?;
            let staging = &mut self.staging[b].as_mut_slice()?[..piece.len()];
            parallel_copy(staging, piece);
            // SAFETY: `base + offset` addresses `piece.len()` bytes inside `dst` (same length as
            // `src`, checked); the staging bytes stay untouched until `done[b]`, recorded right
            // after this copy, has completed (`settle`), and outlive it (`Drop` settles both).
            unsafe {
                result::memcpy_htod_async(
                    base + (i * self.chunk) as u64,
                    &*staging,
                    stream.raw.cu_stream(),
                )
            }?;
            self.done[b].record(stream)?;
            self.pending[b] = true;
        }
        acc.finish()
    }

    /// Copies `src` (same length) into `dst`, and returns once `dst` holds it.
    #[allow(clippy::indexing_slicing)] // reason: `i % RING` indexes the RING staging blocks; `off + len <= total` and `len <= chunk`, the least a block holds
    pub fn download<T: Pod>(
        &mut self,
        stream: &Stream,
        src: &impl AsDeviceSlice<T>,
        dst: &mut [T],
    ) -> Result<()> {
        let src = src.as_device_slice();
        self.device.check_same(stream.device())?;
        self.device.check_same(src.device())?;
        stream.refuse_in_capture("a pipelined download")?;
        if dst.len() != src.len() {
            return Err(Error::LengthMismatch {
                expected: dst.len(),
                actual: src.len(),
            });
        }
        let out: &mut [u8] = bytemuck::cast_slice_mut(dst);
        let total = out.len();
        let mut acc = Access::eager(stream, "a pipelined download")?;
        acc.exact();
        let base = acc.read(&src)?.addr();
        let pieces = total.div_ceil(self.chunk);
        // Chunk i is copied into staging i % RING while chunk i - 1 is drained on the host.
        for i in 0..=pieces {
            if i < pieces {
                let b = i % RING;
                self.settle(b)?;
                let len = self.chunk.min(total - i * self.chunk);
                let staging = &mut self.staging[b].as_mut_slice()?[..len];
                // SAFETY: `base + offset` addresses `len` bytes inside `src`; the staging bytes
                // are not read on the host until `done[b]` completes, and outlive the copy.
                unsafe {
                    result::memcpy_dtoh_async(
                        staging,
                        base + (i * self.chunk) as u64,
                        stream.raw.cu_stream(),
                    )
                }?;
                self.done[b].record(stream)?;
                self.pending[b] = true;
            }
            if i > 0 {
                let prev = i - 1;
                let b = prev % RING;
                self.settle(b)?;
                let off = prev * self.chunk;
                let len = self.chunk.min(total - off);
                parallel_copy(
                    &mut out[off..off + len],
                    &self.staging[b].as_slice()?[..len],
                );
            }
        }
        acc.finish()
    }
}

impl Drop for TransferPipeline {
    #[allow(clippy::indexing_slicing)] // reason: `b < RING`, the length of `pending` and `done`
    fn drop(&mut self) {
        // The staging buffers go back to the pool: the DMA engine must be done with them.
        for b in 0..RING {
            if self.pending[b] {
                if let Err(Error::Driver(e)) = self.done[b].synchronize() {
                    self.device.inner.ctx.record_err::<()>(Err(e));
                }
            }
        }
    }
}

/// Streams a sequence of host batches to the GPU ahead of the compute that consumes them, the
/// way a data loader does: a host thread produces batches, they are staged in pinned memory and
/// copied on a stream of their own, and [`next`](Self::next) hands out a batch that is already
/// on the GPU (or on its way, ordered before the compute stream's next work).
///
/// Page-locking host memory waits for the device to go idle, so the staging buffers are
/// page-locked before any batch is copied: `depth + 2` of them at the first batch (the batches
/// in flight, the one handed out and the one being staged), from a [`PinnedPool`] that
/// [`with_pool`](Self::with_pool) lets a training loop keep from one epoch to the next.
///
/// ```no_run
/// use hikube_gpu::{ops, Device, DeviceBuffer, Prefetcher};
/// let device = Device::open(0)?;
/// let compute = device.new_stream()?;
/// let batches = (0..100).map(|i| vec![i as f32; 1 << 20]);
/// let mut loader = Prefetcher::new(&device, batches, 3)?;
/// let mut acc = DeviceBuffer::<f32>::zeroed(&compute, 1 << 20)?;
/// while let Some(batch) = loader.next(&compute) {
///     ops::axpy(&compute, 1.0, &batch?, &mut acc)?;
/// }
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct Prefetcher<T: Pod + Send> {
    copy: Stream,
    pool: PinnedPool,
    rx: Option<Receiver<Vec<T>>>,
    producer: Option<JoinHandle<()>>,
    /// Batches on their way: the device buffer, the copy's event, and the staging block the
    /// copy reads.
    ready: VecDeque<(DeviceBuffer<T>, Event, PinnedBlock)>,
    /// Staging blocks of batches handed out whose copies may still be reading them.
    retiring: VecDeque<(Event, PinnedBlock)>,
    depth: usize,
    /// Whether the staging buffers were page-locked (at the first batch, whose size they take).
    reserved: bool,
}

impl<T: Pod + Send> Prefetcher<T> {
    /// Starts producing `batches` on a host thread, keeping up to `depth` batches (at least 1)
    /// in flight to the GPU.
    pub fn new<I>(device: &Device, batches: I, depth: usize) -> Result<Self>
    where
        I: IntoIterator<Item = Vec<T>>,
        I::IntoIter: Send + 'static,
        T: 'static,
    {
        Self::with_pool(&PinnedPool::new(device), batches, depth)
    }

    /// As [`new`](Self::new), staging in `pool`'s buffers (on `pool`'s device): a pool kept
    /// across epochs page-locks its staging buffers once.
    pub fn with_pool<I>(pool: &PinnedPool, batches: I, depth: usize) -> Result<Self>
    where
        I: IntoIterator<Item = Vec<T>>,
        I::IntoIter: Send + 'static,
        T: 'static,
    {
        let depth = depth.max(1);
        let (tx, rx) = sync_channel(depth);
        let iter = batches.into_iter();
        let producer = std::thread::spawn(move || {
            for batch in iter {
                if tx.send(batch).is_err() {
                    break;
                }
            }
        });
        Ok(Prefetcher {
            copy: pool.device.new_stream()?,
            pool: pool.clone(),
            reserved: false,
            rx: Some(rx),
            producer: Some(producer),
            ready: VecDeque::new(),
            retiring: VecDeque::new(),
            depth,
        })
    }

    /// Stages one host batch and queues its copy; false when the producer is done.
    #[allow(clippy::indexing_slicing)] // reason: the staging block was taken for `bytes.len()` bytes, so it holds at least that many
    fn stage_one(&mut self, block: bool) -> Result<bool> {
        let Some(rx) = &self.rx else { return Ok(false) };
        let batch = if block {
            rx.recv().ok()
        } else {
            rx.try_recv().ok()
        };
        let Some(batch) = batch else { return Ok(false) };
        // Recycle the staging blocks whose copies have finished.
        while let Some((done, _)) = self.retiring.front() {
            if !done.is_complete()? {
                break;
            }
            self.retiring.pop_front();
        }
        let bytes: &[u8] = bytemuck::cast_slice(&batch);
        if !self.reserved {
            self.pool
                .reserve(bytes.len(), self.depth.saturating_add(2))?;
            self.reserved = true;
        }
        let mut staging = self.pool.take(bytes.len())?;
        parallel_copy(&mut staging.as_mut_slice()?[..bytes.len()], bytes);
        let mut gpu = DeviceBuffer::<T>::alloc(&self.copy, batch.len())?;
        if !bytes.is_empty() {
            let mut acc = Access::eager(&self.copy, "a prefetch")?;
            acc.exact();
            let dst = acc.write(&mut gpu.as_slice_mut())?.addr();
            // SAFETY: `dst` holds exactly `bytes.len()` bytes; the pinned staging block is kept
            // (in `ready`, then `retiring`) until the event recorded after this copy completes.
            unsafe {
                result::memcpy_htod_async(
                    dst,
                    &staging.as_slice()?[..bytes.len()],
                    self.copy.raw.cu_stream(),
                )
            }?;
            acc.finish()?;
        }
        let done = self.copy.record()?;
        self.ready.push_back((gpu, done, staging));
        Ok(true)
    }

    /// The next batch, already copied or ordered before `compute`'s next work; `None` when all
    /// batches have been handed out.
    pub fn next(&mut self, compute: &Stream) -> Option<Result<DeviceBuffer<T>>> {
        let result = (|| {
            if self.ready.is_empty() && !self.stage_one(true)? {
                return Ok(None);
            }
            while self.ready.len() < self.depth && self.stage_one(false)? {}
            let Some((buf, done, staging)) = self.ready.pop_front() else {
                return Ok(None);
            };
            compute.wait(&done)?;
            self.retiring.push_back((done, staging));
            Ok(Some(buf))
        })();
        result.transpose()
    }
}

impl<T: Pod + Send> Drop for Prefetcher<T> {
    fn drop(&mut self) {
        self.rx = None; // the producer's next send fails and it stops
        if let Some(p) = self.producer.take() {
            let _ = p.join();
        }
        // Staging blocks go back to the pool (and may be freed): their copies must be done.
        for (done, _) in self
            .ready
            .iter()
            .map(|(_, e, b)| (e, b))
            .chain(self.retiring.iter().map(|(e, b)| (e, b)))
        {
            if let Err(Error::Driver(e)) = done.synchronize() {
                self.copy.device().inner.ctx.record_err::<()>(Err(e));
            }
        }
    }
}
