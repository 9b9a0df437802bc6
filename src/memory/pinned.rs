//! `PinnedBuffer<T>`: page-locked host memory, the fast path for host↔device copies.

use crate::device::Device;
use crate::error::{Error, Result};
use bytemuck::Pod;
use cudarc::driver::PinnedHostSlice;
use std::marker::PhantomData;

/// Page-locked host memory holding `len` elements of `T`. Copies from and to it run
/// asynchronously at full PCIe/NVLink speed; the buffer records each copy, and reading it,
/// writing it or dropping it first waits for the copies still in flight, so the GPU never
/// reads freed or changing memory.
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
    raw: PinnedHostSlice<u8>,
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
        let requested = len
            .checked_mul(std::mem::size_of::<T>())
            .filter(|&b| b < isize::MAX as usize)
            .ok_or(Error::OutOfMemory {
                requested: usize::MAX,
                free: 0,
                total: 0,
            })?;
        // The driver returns no memory for 0 bytes; one byte keeps empty buffers valid.
        let bytes = requested.max(1);
        // SAFETY: the memory is unset after allocation; it is zeroed below before any read.
        // Never write-combined: ordinary memory, which the host reads at full speed.
        let mut raw = unsafe { device.inner.ctx.alloc_pinned_with_flags::<u8>(bytes, flags) }
            .map_err(|source| Error::PinnedAlloc { requested, source })?;
        let ptr = raw.as_mut_ptr()?;
        // SAFETY: `ptr` points to `bytes` freshly allocated bytes that nothing else uses.
        unsafe { std::ptr::write_bytes(ptr, 0, bytes) };
        Ok(PinnedBuffer {
            raw,
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

    /// The contents, after the copies queued on it so far have finished.
    pub fn as_slice(&self) -> Result<&[T]> {
        let bytes = self.num_bytes();
        Ok(bytemuck::cast_slice(&self.raw.as_slice()?[..bytes]))
    }

    /// The contents for writing, after the copies queued on it so far have finished.
    pub fn as_mut_slice(&mut self) -> Result<&mut [T]> {
        let bytes = self.num_bytes();
        Ok(bytemuck::cast_slice_mut(
            &mut self.raw.as_mut_slice()?[..bytes],
        ))
    }

    /// Size in bytes.
    pub fn num_bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }

    pub(crate) fn raw(&self) -> &PinnedHostSlice<u8> {
        &self.raw
    }

    pub(crate) fn raw_mut(&mut self) -> &mut PinnedHostSlice<u8> {
        &mut self.raw
    }
}
