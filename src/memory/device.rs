//! `DeviceBuffer<T>`: typed device memory, and borrowed sub-slices of it.
//!
//! The bytes are held by cudarc (`CudaSlice<u8>`), which frees them in stream order and, when
//! several streams are in use, orders each access after the writes before it with events. The
//! element type is any `bytemuck::Pod` type: every bit pattern is a valid value, so memory the GPU
//! wrote can always be read back as `T`.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::memory::pool::PoolLease;
use crate::memory::PinnedBuffer;
use crate::stream::Stream;
use bytemuck::Pod;
use cudarc::driver::{result, sys, CudaSlice, CudaView, CudaViewMut, DevicePtrMut, DriverError};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::{Bound, RangeBounds};

/// An owned array of `len` elements of `T` in device memory. Allocated by the driver here, or by
/// a [`MemoryPool`](crate::MemoryPool), to which it goes back when dropped.
///
/// ```no_run
/// use hikube_gpu::{Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let mut buf = DeviceBuffer::from_slice(&stream, &[1.0f32, 2.0, 3.0, 4.0])?;
/// buf.slice_mut(1..3)?.fill(&stream, 0.0)?;
/// assert_eq!(buf.to_vec(&stream)?, [1.0, 0.0, 0.0, 4.0]);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct DeviceBuffer<T: Pod> {
    /// Taken out only in `Drop`. A pooled buffer's block may be longer than `num_bytes()`: every
    /// view below is cut to `num_bytes()`.
    raw: ManuallyDrop<CudaSlice<u8>>,
    len: usize,
    device: Device,
    /// Set for buffers from a [`MemoryPool`](crate::MemoryPool): the block goes back to it.
    lease: Option<PoolLease>,
    _t: PhantomData<T>,
}

impl<T: Pod> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        // SAFETY: `raw` is taken exactly once, here, and `self` is never used again.
        let raw = unsafe { ManuallyDrop::take(&mut self.raw) };
        match self.lease.take() {
            Some(lease) => lease.release(raw),
            None => drop(raw), // cudarc frees it in stream order
        }
    }
}

impl<T: Pod> std::fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBuffer")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .field("device", &self.device.ordinal())
            .finish()
    }
}

/// A borrowed, read-only range of a [`DeviceBuffer`].
pub struct DeviceSlice<'a, T: Pod> {
    pub(crate) view: CudaView<'a, u8>,
    len: usize,
    device: &'a Device,
    _t: PhantomData<&'a [T]>,
}

/// A borrowed, writable range of a [`DeviceBuffer`].
pub struct DeviceSliceMut<'a, T: Pod> {
    pub(crate) view: CudaViewMut<'a, u8>,
    len: usize,
    device: &'a Device,
    _t: PhantomData<&'a mut [T]>,
}

/// Anything that can be read as a device slice: a [`DeviceBuffer`] or a [`DeviceSlice`].
pub trait AsDeviceSlice<T: Pod> {
    /// A read-only view of the whole thing.
    fn as_device_slice(&self) -> DeviceSlice<'_, T>;
}

/// Anything that can be written as a device slice: a [`DeviceBuffer`] or a [`DeviceSliceMut`].
pub trait AsDeviceSliceMut<T: Pod> {
    /// A writable view of the whole thing.
    fn as_device_slice_mut(&mut self) -> DeviceSliceMut<'_, T>;
}

impl<T: Pod> AsDeviceSliceMut<T> for DeviceBuffer<T> {
    fn as_device_slice_mut(&mut self) -> DeviceSliceMut<'_, T> {
        self.as_slice_mut()
    }
}

impl<T: Pod> AsDeviceSliceMut<T> for DeviceSliceMut<'_, T> {
    fn as_device_slice_mut(&mut self) -> DeviceSliceMut<'_, T> {
        DeviceSliceMut {
            view: self.view.slice_mut(..),
            len: self.len,
            device: self.device,
            _t: PhantomData,
        }
    }
}

fn byte_len<T>(len: usize) -> Result<usize> {
    len.checked_mul(std::mem::size_of::<T>())
        .ok_or(Error::OutOfMemory {
            requested: usize::MAX,
            free: 0,
            total: 0,
        })
}

fn range_of(bounds: impl RangeBounds<usize>, len: usize) -> Result<(usize, usize)> {
    let start = match bounds.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match bounds.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => len,
    };
    if start <= end && end <= len {
        Ok((start, end))
    } else {
        Err(Error::OutOfBounds { start, end, len })
    }
}

fn check_len(expected: usize, actual: usize) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::LengthMismatch { expected, actual })
    }
}

/// Allocates `bytes` on `stream`'s device, turning the driver's out-of-memory into
/// [`Error::OutOfMemory`] with the device's free and total memory.
fn alloc_bytes(stream: &Stream, bytes: usize) -> Result<CudaSlice<u8>> {
    stream.refuse_in_capture("allocating device memory (allocate before capturing)")?;
    let device = stream.device();
    let info = device.memory_info()?;
    let oom = |free| Error::OutOfMemory {
        requested: bytes,
        free,
        total: info.total,
    };
    if bytes > info.total {
        return Err(oom(info.free));
    }
    // SAFETY: the bytes are left unset; `DeviceBuffer` only exposes them as `T: Pod`, for which
    // any bit pattern is a valid value.
    match unsafe { stream.raw.alloc::<u8>(bytes) } {
        Ok(raw) => Ok(raw),
        Err(DriverError(sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY)) => {
            Err(oom(device.memory_info().map_or(info.free, |i| i.free)))
        }
        Err(e) => Err(e.into()),
    }
}

impl<T: Pod> DeviceBuffer<T> {
    /// Allocates `len` elements on `stream`'s device. The contents are unspecified (whatever the
    /// memory held; any bit pattern is a valid `T`). Freed in `stream`'s order when dropped.
    pub fn alloc(stream: &Stream, len: usize) -> Result<Self> {
        Ok(DeviceBuffer {
            raw: ManuallyDrop::new(alloc_bytes(stream, byte_len::<T>(len)?)?),
            len,
            device: stream.device().clone(),
            lease: None,
            _t: PhantomData,
        })
    }

    /// Allocates `len` elements set to all-zero bits.
    pub fn zeroed(stream: &Stream, len: usize) -> Result<Self> {
        let mut buf = Self::alloc(stream, len)?;
        buf.set_zero(stream)?;
        Ok(buf)
    }

    /// Allocates a copy of `data`.
    pub fn from_slice(stream: &Stream, data: &[T]) -> Result<Self> {
        let mut buf = Self::alloc(stream, data.len())?;
        buf.copy_from_host(stream, data)?;
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

    /// Size in bytes.
    pub fn num_bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }

    /// The device the memory is on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The underlying cudarc allocation (bytes), for interop with cudarc and vendor libraries.
    /// For a buffer from a [`MemoryPool`](crate::MemoryPool) it is the whole pool block, which
    /// may be longer than [`num_bytes`](Self::num_bytes) (sizes are rounded up).
    pub fn cuda_slice(&self) -> &CudaSlice<u8> {
        &self.raw
    }

    /// The underlying cudarc allocation (bytes), writable, for interop (see
    /// [`cuda_slice`](Self::cuda_slice) for pooled buffers).
    pub fn cuda_slice_mut(&mut self) -> &mut CudaSlice<u8> {
        &mut self.raw
    }

    /// A read-only view of `range`; [`Error::OutOfBounds`] if it does not fit.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<DeviceSlice<'_, T>> {
        let (start, end) = range_of(range, self.len)?;
        let size = std::mem::size_of::<T>();
        let view = self
            .raw
            .try_slice(start * size..end * size)
            .ok_or(Error::OutOfBounds {
                start,
                end,
                len: self.len,
            })?;
        Ok(DeviceSlice {
            view,
            len: end - start,
            device: &self.device,
            _t: PhantomData,
        })
    }

    /// A writable view of `range`; [`Error::OutOfBounds`] if it does not fit.
    pub fn slice_mut(&mut self, range: impl RangeBounds<usize>) -> Result<DeviceSliceMut<'_, T>> {
        let (start, end) = range_of(range, self.len)?;
        let size = std::mem::size_of::<T>();
        let len = self.len;
        let view = self
            .raw
            .try_slice_mut(start * size..end * size)
            .ok_or(Error::OutOfBounds { start, end, len })?;
        Ok(DeviceSliceMut {
            view,
            len: end - start,
            device: &self.device,
            _t: PhantomData,
        })
    }

    /// A writable view of the whole buffer.
    pub fn as_slice_mut(&mut self) -> DeviceSliceMut<'_, T> {
        // Cut to `num_bytes()` (a pooled block may be longer); in range, so no panic.
        let n = self.num_bytes().min(self.raw.len());
        DeviceSliceMut {
            view: self.raw.slice_mut(..n),
            len: self.len,
            device: &self.device,
            _t: PhantomData,
        }
    }

    /// Copies `src` (same length) into this buffer, on `stream`.
    pub fn copy_from(&mut self, stream: &Stream, src: &impl AsDeviceSlice<T>) -> Result<()> {
        self.as_slice_mut().copy_from(stream, src)
    }

    /// Copies host memory (same length) into this buffer. `data` may be reused once this returns.
    pub fn copy_from_host(&mut self, stream: &Stream, data: &[T]) -> Result<()> {
        self.as_slice_mut().copy_from_host(stream, data)
    }

    /// Queues a copy from pinned host memory; the pinned buffer waits for it before it can be
    /// read, written or freed again.
    pub fn copy_from_pinned(&mut self, stream: &Stream, src: &PinnedBuffer<T>) -> Result<()> {
        self.as_slice_mut().copy_from_pinned(stream, src)
    }

    /// Sets every element to `value`.
    pub fn fill(&mut self, stream: &Stream, value: T) -> Result<()> {
        self.as_slice_mut().fill(stream, value)
    }

    /// Copies the buffer into `dst` (same length) and waits for the copy.
    pub fn copy_to_host(&self, stream: &Stream, dst: &mut [T]) -> Result<()> {
        self.as_device_slice().copy_to_host(stream, dst)
    }

    /// Queues a copy into pinned host memory; reading the pinned buffer waits for it.
    pub fn copy_to_pinned(&self, stream: &Stream, dst: &mut PinnedBuffer<T>) -> Result<()> {
        self.as_device_slice().copy_to_pinned(stream, dst)
    }

    /// Copies the buffer to a new `Vec` (waits for the stream's work so far).
    pub fn to_vec(&self, stream: &Stream) -> Result<Vec<T>> {
        self.as_device_slice().to_vec(stream)
    }
}

impl<T: Pod> DeviceBuffer<T> {
    /// A buffer of `len` elements over a pool's block (`raw` holds at least `len` elements).
    pub(crate) fn from_pool(
        raw: CudaSlice<u8>,
        len: usize,
        device: Device,
        lease: PoolLease,
    ) -> Self {
        DeviceBuffer {
            raw: ManuallyDrop::new(raw),
            len,
            device,
            lease: Some(lease),
            _t: PhantomData,
        }
    }

    /// Sets every byte of the buffer (not of a pooled block's slack) to zero, on `stream`.
    pub(crate) fn set_zero(&mut self, stream: &Stream) -> Result<()> {
        Ok(stream.raw.memset_zeros(&mut self.as_slice_mut().view)?)
    }

    /// The buffer's bytes, cut to `num_bytes()` (a pooled block may be longer).
    fn bytes(&self) -> CudaView<'_, u8> {
        // In range by construction, so `slice` cannot panic.
        self.raw.slice(..self.num_bytes().min(self.raw.len()))
    }
}

impl<T: Pod> AsDeviceSlice<T> for DeviceBuffer<T> {
    fn as_device_slice(&self) -> DeviceSlice<'_, T> {
        DeviceSlice {
            view: self.bytes(),
            len: self.len,
            device: &self.device,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> AsDeviceSlice<T> for DeviceSlice<'_, T> {
    fn as_device_slice(&self) -> DeviceSlice<'_, T> {
        DeviceSlice {
            view: self.view.slice(..),
            len: self.len,
            device: self.device,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> AsDeviceSlice<T> for DeviceSliceMut<'_, T> {
    fn as_device_slice(&self) -> DeviceSlice<'_, T> {
        DeviceSlice {
            view: self.view.as_view(),
            len: self.len,
            device: self.device,
            _t: PhantomData,
        }
    }
}

impl<'a, T: Pod> DeviceSlice<'a, T> {
    /// The same slice typed `U`, when `U` is `T` itself: for generic code that has two type
    /// parameters and has found at run time that they are one type. `None` otherwise.
    pub(crate) fn same_type<U: Pod>(self) -> Option<DeviceSlice<'a, U>> {
        (std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>()).then_some(DeviceSlice {
            view: self.view,
            len: self.len,
            device: self.device,
            _t: PhantomData,
        })
    }
}

impl<'a, T: Pod> DeviceSliceMut<'a, T> {
    /// The same slice typed `U`, when `U` is `T` itself (see [`DeviceSlice::same_type`]).
    pub(crate) fn same_type<U: Pod>(self) -> Option<DeviceSliceMut<'a, U>> {
        (std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>()).then_some(DeviceSliceMut {
            view: self.view,
            len: self.len,
            device: self.device,
            _t: PhantomData,
        })
    }
}

impl<T: Pod> DeviceSlice<'_, T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the slice holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device the memory is on.
    pub fn device(&self) -> &Device {
        self.device
    }

    /// Copies the slice into `dst` (same length) and waits for the copy.
    pub fn copy_to_host(&self, stream: &Stream, dst: &mut [T]) -> Result<()> {
        stream.refuse_in_capture("copying to pageable host memory")?;
        self.device.check_same(stream.device())?;
        check_len(dst.len(), self.len)?;
        if self.len == 0 {
            return Ok(());
        }
        stream
            .raw
            .memcpy_dtoh(&self.view, bytemuck::cast_slice_mut::<T, u8>(dst))?;
        stream.synchronize()
    }

    /// Queues a copy into pinned host memory (same length); reading the pinned buffer waits for
    /// it.
    pub fn copy_to_pinned(&self, stream: &Stream, dst: &mut PinnedBuffer<T>) -> Result<()> {
        self.device.check_same(stream.device())?;
        check_len(dst.len(), self.len)?;
        if self.len == 0 {
            return Ok(());
        }
        Ok(stream.raw.memcpy_dtoh(&self.view, dst.raw_mut())?)
    }

    /// Copies the slice to a new `Vec` (waits for the stream's work so far).
    pub fn to_vec(&self, stream: &Stream) -> Result<Vec<T>> {
        let mut out = vec![T::zeroed(); self.len];
        self.copy_to_host(stream, &mut out)?;
        Ok(out)
    }
}

impl<T: Pod> DeviceSliceMut<'_, T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the slice holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device the memory is on.
    pub fn device(&self) -> &Device {
        self.device
    }

    /// Copies `src` (same length, same device) into this slice, on `stream`.
    pub fn copy_from(&mut self, stream: &Stream, src: &impl AsDeviceSlice<T>) -> Result<()> {
        let src = src.as_device_slice();
        self.device.check_same(stream.device())?;
        self.device.check_same(src.device)?;
        check_len(self.len, src.len)?;
        if self.len == 0 {
            return Ok(());
        }
        Ok(stream.raw.memcpy_dtod(&src.view, &mut self.view)?)
    }

    /// Copies host memory (same length) into this slice. `data` may be reused once this returns
    /// (the driver stages pageable memory before returning).
    pub fn copy_from_host(&mut self, stream: &Stream, data: &[T]) -> Result<()> {
        stream.refuse_in_capture("copying from pageable host memory")?;
        self.device.check_same(stream.device())?;
        check_len(self.len, data.len())?;
        if self.len == 0 {
            return Ok(());
        }
        Ok(stream
            .raw
            .memcpy_htod(bytemuck::cast_slice::<T, u8>(data), &mut self.view)?)
    }

    /// Queues a copy from pinned host memory (same length); the pinned buffer waits for it before
    /// it can be written or freed.
    pub fn copy_from_pinned(&mut self, stream: &Stream, src: &PinnedBuffer<T>) -> Result<()> {
        self.device.check_same(stream.device())?;
        check_len(self.len, src.len())?;
        if self.len == 0 {
            return Ok(());
        }
        Ok(stream.raw.memcpy_htod(src.raw(), &mut self.view)?)
    }

    /// Sets every element to `value`: one driver memset for 1-, 2- and 4-byte types, otherwise
    /// one element copied up and doubled in place (log2(len) copies).
    pub fn fill(&mut self, stream: &Stream, value: T) -> Result<()> {
        self.device.check_same(stream.device())?;
        if self.len == 0 {
            return Ok(());
        }
        let bytes = bytemuck::bytes_of(&value);
        let n = self.len;
        let (ptr, _record) = self.view.device_ptr_mut(&stream.raw);
        let cu = stream.raw.cu_stream();
        // SAFETY: `ptr` addresses `n` elements of `T` (`n * size_of::<T>()` bytes) owned by the
        // borrowed buffer, which outlives the call; the memsets are queued on `stream`, after the
        // waits `device_ptr_mut` inserted, and `_record` marks the write when dropped.
        unsafe {
            match *bytes {
                [b] => result::memset_d8_async(ptr, b, n, cu)?,
                [a, b] => sys::cuMemsetD16Async(ptr, u16::from_ne_bytes([a, b]), n, cu).result()?,
                [a, b, c, d] => {
                    sys::cuMemsetD32Async(ptr, u32::from_ne_bytes([a, b, c, d]), n, cu).result()?
                }
                _ => {
                    let size = bytes.len();
                    result::memcpy_htod_async(ptr, bytes, cu)?;
                    // The staged copy above must finish reading `value` before it goes out of
                    // scope; pageable copies are staged before the call returns.
                    let mut done = 1usize;
                    while done < n {
                        let chunk = done.min(n - done);
                        result::memcpy_dtod_async(
                            ptr + (done * size) as u64,
                            ptr,
                            chunk * size,
                            cu,
                        )?;
                        done += chunk;
                    }
                }
            }
        }
        Ok(())
    }
}

impl<'a, T: Pod> DeviceSliceMut<'a, T> {
    /// Downgrades to a read-only slice.
    pub fn into_slice(self) -> DeviceSlice<'a, T> {
        DeviceSlice {
            view: self.view.into_view(),
            len: self.len,
            device: self.device,
            _t: PhantomData,
        }
    }
}
