//! `PinnedBuffer<T>`: page-locked host memory, the fast path for host↔device copies.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::memory::access::{lock, Access, AccessLog, Tracked};
use bytemuck::Pod;
use cudarc::driver::{result, sys};
use std::any::Any;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

/// Page-locked host memory and its log (`memory::access`).
struct PinnedStorage {
    ptr: *mut u8,
    device: Device,
    log: Mutex<AccessLog>,
    backing: Backing,
}

/// Where a pinned buffer's memory came from, and how it goes back.
enum Backing {
    /// The driver's (`cuMemHostAlloc`): freed with `cuMemFreeHost`.
    Driver,
    /// A caller's `Vec<T>`, kept here (its heap memory never moves), page-locked in place with
    /// `cuMemHostRegister` unless empty: unregistered, then dropped or given back.
    Vec { vec: Box<dyn Any>, registered: bool },
    /// Given back by [`PinnedBuffer::into_vec`]: nothing left to release.
    Released,
}

// SAFETY: the memory is plain host memory owned by this value; the host touches it only through
// `PinnedBuffer`'s borrows (after the log's uses finished), the GPU only through ordered copies.
// A kept `Vec<T>` holds `Pod` values: plain bytes, no pointers and no interior mutability (what
// `bytemuck::Pod` requires), so sending or sharing it is sending or sharing bytes.
unsafe impl Send for PinnedStorage {}
// SAFETY: as above; shared references never write through `ptr`.
unsafe impl Sync for PinnedStorage {}

impl Tracked for PinnedStorage {
    fn log(&self) -> &Mutex<AccessLog> {
        &self.log
    }
}

impl PinnedStorage {
    /// Waits for every use, then releases the memory's page lock (and the driver's memory):
    /// returns the caller's `Vec`, if the memory is one.
    fn release(&mut self) -> Option<Box<dyn Any>> {
        let log = self.log.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Err(Error::Driver(e)) = log.wait_host(true) {
            self.device.record_err(e);
        }
        // A failed wait leaves the context broken, so no copy can still run below.
        match std::mem::replace(&mut self.backing, Backing::Released) {
            Backing::Driver => {
                // SAFETY: `ptr` came from `malloc_host` and every use of it has finished.
                if let Err(e) = unsafe { result::free_host(self.ptr.cast()) } {
                    self.device.record_err(e);
                }
                None
            }
            Backing::Vec { vec, registered } => {
                if registered {
                    // SAFETY: `ptr` was registered by `from_vec` and every use has finished.
                    let r = unsafe { sys::cuMemHostUnregister(self.ptr.cast()) }.result();
                    if let Err(e) = r {
                        self.device.record_err(e);
                    }
                }
                Some(vec)
            }
            Backing::Released => None,
        }
    }
}

impl Drop for PinnedStorage {
    fn drop(&mut self) {
        drop(self.release());
    }
}

/// Page-locked host memory holding `len` elements of `T`. Copies from and to it run
/// asynchronously at full PCIe/NVLink speed; the buffer remembers every copy on every stream,
/// and reading it waits for the copies writing it, writing it waits for all of them, and
/// dropping it waits for all of them, so the GPU never reads freed or changing memory and the
/// host never sees a half-written one.
///
/// ```no_run
/// use hikube_gpu::{Device, DeviceBuffer, PinnedBuffer};
/// let device = Device::open(0)?;
/// let stream = device.new_stream()?;
/// let host = PinnedBuffer::from_slice(&device, &[1u32, 2, 3])?;
/// let mut gpu = DeviceBuffer::<u32>::alloc(&stream, 3)?;
/// gpu.copy_from_pinned(&stream, &host)?; // returns at once; the copy runs on `stream`
/// let mut back = PinnedBuffer::<u32>::zeroed(&device, 3)?;
/// gpu.copy_to_pinned(&stream, &mut back)?;
/// assert_eq!(back.as_slice()?, &[1, 2, 3]); // waits for the copy
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct PinnedBuffer<T: Pod> {
    storage: Arc<PinnedStorage>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> std::fmt::Debug for PinnedBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedBuffer")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .finish()
    }
}

impl<T: Pod> PinnedBuffer<T> {
    /// Allocates `len` zeroed elements of page-locked memory, usable with `device`'s streams.
    pub fn zeroed(device: &Device, len: usize) -> Result<Self> {
        Self::zeroed_with_flags(device, len, 0)
    }

    /// [`zeroed`](Self::zeroed), page-locked for every context (`CU_MEMHOSTALLOC_PORTABLE`):
    /// staging shared by two GPUs must be pinned for both, or the second GPU's copies would treat
    /// it as pageable memory.
    pub(crate) fn zeroed_portable(device: &Device, len: usize) -> Result<Self> {
        Self::zeroed_with_flags(device, len, cudarc::driver::sys::CU_MEMHOSTALLOC_PORTABLE)
    }

    fn zeroed_with_flags(device: &Device, len: usize, flags: u32) -> Result<Self> {
        let requested = crate::memory::device::byte_len::<T>(len)?;
        // The driver returns no memory for 0 bytes; one byte keeps empty buffers valid.
        let bytes = requested.max(1);
        device.inner.ctx.bind_to_thread()?;
        // SAFETY: the context is current; never write-combined: ordinary memory, which the host
        // reads at full speed.
        let ptr = unsafe { result::malloc_host(bytes, flags) }
            .map_err(|source| Error::PinnedAlloc { requested, source })?
            .cast::<u8>();
        // SAFETY: `ptr` points to `bytes` freshly allocated bytes that nothing else uses.
        unsafe { std::ptr::write_bytes(ptr, 0, bytes) };
        Ok(PinnedBuffer {
            storage: Arc::new(PinnedStorage {
                ptr,
                device: device.clone(),
                log: Mutex::default(),
                backing: Backing::Driver,
            }),
            len,
            _t: PhantomData,
        })
    }

    /// Page-locks `data` in place (`cuMemHostRegister`, for every GPU of the process) instead of
    /// copying it into new pinned memory: copies from and to it then run at pinned speed, with
    /// no staging. Pinning costs time too (some 13 ms for 256 MiB on the H200's host, about
    /// what one copy of it takes: `BENCHMARKS.md`), so it pays off for memory copied more than
    /// once, or too large to stage. [`into_vec`](Self::into_vec) gives the `Vec` back.
    ///
    /// ```no_run
    /// use hikube_gpu::{Device, DeviceBuffer, PinnedBuffer};
    /// let device = Device::open(0)?;
    /// let stream = device.new_stream()?;
    /// let data: Vec<f32> = (0..1 << 26).map(|i| i as f32).collect();
    /// let host = PinnedBuffer::from_vec(&device, data)?; // pinned in place, not copied
    /// let mut gpu = DeviceBuffer::<f32>::alloc(&stream, host.len())?;
    /// gpu.copy_from_pinned(&stream, &host)?;
    /// let data = host.into_vec()?; // waits for the copy, unpins
    /// # Ok::<(), hikube_gpu::Error>(())
    /// ```
    pub fn from_vec(device: &Device, mut data: Vec<T>) -> Result<Self> {
        let len = data.len();
        let bytes = crate::memory::device::byte_len::<T>(len)?;
        let ptr = data.as_mut_ptr().cast::<u8>();
        if bytes > 0 {
            device.inner.ctx.bind_to_thread()?;
            // SAFETY: `ptr` addresses `bytes` initialized bytes of `data`, whose heap memory
            // stays in place, owned by the storage, until it is unregistered (`release`).
            unsafe {
                sys::cuMemHostRegister_v2(ptr.cast(), bytes, sys::CU_MEMHOSTREGISTER_PORTABLE)
            }
            .result()
            .map_err(|source| Error::PinnedAlloc {
                requested: bytes,
                source,
            })?;
        }
        Ok(PinnedBuffer {
            storage: Arc::new(PinnedStorage {
                ptr,
                device: device.clone(),
                log: Mutex::default(),
                backing: Backing::Vec {
                    vec: Box::new(data),
                    registered: bytes > 0,
                },
            }),
            len,
            _t: PhantomData,
        })
    }

    /// The `Vec` a [`from_vec`](Self::from_vec) buffer was made from, unpinned, after every copy
    /// from or to it has finished. [`Error::InvalidArgument`] for a buffer the driver allocated
    /// (use [`as_slice`](Self::as_slice)), or one an operation still holds.
    pub fn into_vec(self) -> Result<Vec<T>> {
        let not_a_vec = || Error::InvalidArgument {
            what: "into_vec of a pinned buffer not made by PinnedBuffer::from_vec".into(),
        };
        if !matches!(self.storage.backing, Backing::Vec { .. }) {
            return Err(not_a_vec());
        }
        let mut storage = Arc::try_unwrap(self.storage).map_err(|_| Error::InvalidArgument {
            what: "into_vec of a pinned buffer that an operation still holds".into(),
        })?;
        let vec = storage.release().ok_or_else(not_a_vec)?;
        vec.downcast::<Vec<T>>()
            .map(|v| *v)
            .map_err(|_| not_a_vec())
    }

    /// Allocates page-locked memory holding a copy of `data`.
    pub fn from_slice(device: &Device, data: &[T]) -> Result<Self> {
        let mut buf = Self::zeroed(device, data.len())?;
        buf.as_mut_slice()?.copy_from_slice(data);
        Ok(buf)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The contents, after the copies writing it so far have finished.
    pub fn as_slice(&self) -> Result<&[T]> {
        lock(&self.storage.log).wait_host(false)?;
        // SAFETY: `ptr` holds at least `num_bytes()` bytes, aligned for `T` (the driver's host
        // allocations are page-aligned; a `Vec<T>`'s are aligned for `T`), initialized (zeroed
        // at allocation, or the `Vec`'s elements); no GPU write
        // is pending (waited above) and none can be queued while `self` is borrowed shared
        // (copies into it take `&mut self`).
        let bytes = unsafe { std::slice::from_raw_parts(self.storage.ptr, self.num_bytes()) };
        Ok(bytemuck::cast_slice(bytes))
    }

    /// The contents for writing, after every copy from or to it so far has finished.
    pub fn as_mut_slice(&mut self) -> Result<&mut [T]> {
        lock(&self.storage.log).wait_host(true)?;
        // SAFETY: as in `as_slice`; no GPU use is pending (waited above) and none can be queued
        // while `self` is borrowed mutably (graphs never hold pinned memory: its copies are
        // refused inside a capture).
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.storage.ptr, self.num_bytes()) };
        Ok(bytemuck::cast_slice_mut(bytes))
    }

    /// The host address, after every copy from or to the buffer so far has finished, for
    /// crate code that hands it to the copy engines itself (and orders those copies).
    pub(crate) fn host_ptr(&mut self) -> Result<*mut u8> {
        lock(&self.storage.log).wait_host(true)?;
        Ok(self.storage.ptr)
    }

    /// Size in bytes.
    pub fn num_bytes(&self) -> usize {
        self.len.saturating_mul(std::mem::size_of::<T>())
    }
}

impl Access<'_> {
    /// The host address of `p` for a copy on this access's stream that reads it.
    /// Refused inside a capture: a graph replaying later would touch host memory that safe code
    /// may be reading or writing by then.
    pub(crate) fn read_pinned<T: Pod>(&mut self, p: &PinnedBuffer<T>) -> Result<*const u8> {
        self.refuse_capture("a copy from or to pinned host memory")?;
        self.exact();
        self.touch(p.storage.clone(), false)?;
        Ok(p.storage.ptr.cast_const())
    }

    /// The host address of `p` for a copy that writes it.
    pub(crate) fn write_pinned<T: Pod>(&mut self, p: &mut PinnedBuffer<T>) -> Result<*mut u8> {
        self.refuse_capture("a copy from or to pinned host memory")?;
        self.exact();
        self.touch(p.storage.clone(), true)?;
        Ok(p.storage.ptr)
    }
}
