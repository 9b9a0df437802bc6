//! `PinnedBuffer<T>`: page-locked host memory, the fast path for host↔device copies.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::memory::access::{lock, Access, AccessLog, Tracked};
use bytemuck::Pod;
use cudarc::driver::result;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

/// Page-locked host memory and its log (`memory::access`).
struct PinnedStorage {
    ptr: *mut u8,
    device: Device,
    log: Mutex<AccessLog>,
}

// SAFETY: the memory is plain host memory owned by this value; the host touches it only through
// `PinnedBuffer`'s borrows (after the log's uses finished), the GPU only through ordered copies.
unsafe impl Send for PinnedStorage {}
// SAFETY: as above; shared references never write through `ptr`.
unsafe impl Sync for PinnedStorage {}

impl Tracked for PinnedStorage {
    fn log(&self) -> &Mutex<AccessLog> {
        &self.log
    }
}

impl Drop for PinnedStorage {
    fn drop(&mut self) {
        let log = self.log.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Err(Error::Driver(e)) = log.wait_host(true) {
            self.device.record_err(e);
        }
        // SAFETY: `ptr` came from `malloc_host` and every use of it has finished (waited above;
        // a failed wait leaves the context broken, so no copy can still run).
        if let Err(e) = unsafe { result::free_host(self.ptr.cast()) } {
            self.device.record_err(e);
        }
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
            }),
            len,
            _t: PhantomData,
        })
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
        // SAFETY: `ptr` holds at least `num_bytes()` bytes, aligned for any `T` (the driver's
        // host allocations are page-aligned), initialized (zeroed at allocation); no GPU write
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
        self.touch(p.storage.clone(), false)?;
        Ok(p.storage.ptr.cast_const())
    }

    /// The host address of `p` for a copy that writes it.
    pub(crate) fn write_pinned<T: Pod>(&mut self, p: &mut PinnedBuffer<T>) -> Result<*mut u8> {
        self.refuse_capture("a copy from or to pinned host memory")?;
        self.touch(p.storage.clone(), true)?;
        Ok(p.storage.ptr)
    }
}
