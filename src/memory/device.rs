//! `DeviceBuffer<T>`: typed device memory, and borrowed sub-slices of it.
//!
//! The bytes are a [`Storage`]: device memory with its access log (`memory::access`), shared
//! (`Arc`) by the buffer and by every graph whose nodes touch it, and freed, or given back to
//! its pool, only after the last of them is gone and every use has finished. The element type
//! is any `bytemuck::Pod` type: every bit pattern is a valid value, so memory the GPU wrote can
//! always be read back as `T`.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::memory::access::{Access, AccessLog, Operand, Tracked};
use crate::memory::PinnedBuffer;
use crate::stream::Stream;
use bytemuck::Pod;
use cudarc::driver::{result, sys, DriverError};
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, PoisonError};

/// Where a pool's memory goes back when the last buffer over it is dropped (the pool implements
/// it; this module needs nothing else of the pool).
pub(crate) trait Recycle: Send + Sync {
    /// Takes back the memory at `ptr` of `lease`, with the uses it must wait for before reuse.
    /// Makes no driver call, never panics.
    fn recycle(&self, ptr: sys::CUdeviceptr, lease: &Lease, log: AccessLog);
}

/// A pool's block lent to a buffer: where it goes back, its size class, the bytes asked for.
pub(crate) struct Lease {
    pub(crate) pool: Arc<dyn Recycle>,
    pub(crate) size: usize,
    pub(crate) requested: usize,
}

/// Device memory and its log. `bytes` may exceed what a buffer over it uses (pool blocks are
/// rounded up); views never reach past the buffer's own bytes.
pub(crate) struct Storage {
    ptr: sys::CUdeviceptr,
    bytes: usize,
    device: Device,
    log: Mutex<AccessLog>,
    /// Set for a pool's block: it goes back to the pool, with its log.
    lease: Option<Lease>,
}

impl Storage {
    /// New memory of `bytes` from the driver, on `stream`.
    fn alloc(stream: &Stream, bytes: usize) -> Result<Arc<Storage>> {
        let (ptr, log) = stream.device().alloc_raw(stream, bytes)?;
        Ok(Arc::new(Storage {
            ptr,
            bytes,
            device: stream.device().clone(),
            log: Mutex::new(log),
            lease: None,
        }))
    }

    /// A pool's block of `bytes` at `ptr`, with the log it came back with.
    pub(crate) fn pooled(
        ptr: sys::CUdeviceptr,
        bytes: usize,
        device: Device,
        log: AccessLog,
        lease: Lease,
    ) -> Arc<Storage> {
        Arc::new(Storage {
            ptr,
            bytes,
            device,
            log: Mutex::new(log),
            lease: Some(lease),
        })
    }
}

impl Tracked for Storage {
    fn log(&self) -> &Mutex<AccessLog> {
        &self.log
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        let log = std::mem::take(self.log.get_mut().unwrap_or_else(PoisonError::into_inner));
        match self.lease.take() {
            Some(lease) => lease.pool.recycle(self.ptr, &lease, log),
            None => self.device.free_raw(self.ptr, &log),
        }
    }
}

/// An owned array of `len` elements of `T` in device memory. Allocated by the driver here, or by
/// a [`MemoryPool`](crate::MemoryPool), to which it goes back when dropped.
///
/// The memory is freed (or reused by the pool) only after every use queued on any stream, and
/// every graph that touches it, is done: dropping a buffer never makes queued work read freed
/// memory.
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
    storage: Arc<Storage>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> std::fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBuffer")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .field("device", &self.storage.device.ordinal())
            .finish()
    }
}

/// A borrowed, read-only range of a [`DeviceBuffer`]: every operation takes one where it takes a
/// buffer.
///
/// ```no_run
/// use hikube_gpu::{ops, Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let x = DeviceBuffer::from_slice(&stream, &[1.0f32; 100])?;
/// let mut y = DeviceBuffer::<f32>::zeroed(&stream, 100)?;
/// // y[50..] += 2 · x[..50]
/// ops::axpy(&stream, 2.0, &x.slice(..50)?, &mut y.slice_mut(50..)?)?;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct DeviceSlice<'a, T: Pod> {
    storage: &'a Arc<Storage>,
    /// Byte offset of the first element in the storage.
    offset: usize,
    len: usize,
    _t: PhantomData<&'a [T]>,
}

/// A borrowed, writable range of a [`DeviceBuffer`].
///
/// ```no_run
/// use hikube_gpu::{ops, Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let x = DeviceBuffer::from_slice(&stream, &[1.0f32; 4])?;
/// let mut y = DeviceBuffer::<f32>::zeroed(&stream, 8)?;
/// let mut upper = y.slice_mut(4..)?; // the last four elements
/// ops::axpy(&stream, 3.0, &x, &mut upper)?;
/// assert_eq!(y.to_vec(&stream)?, [0.0, 0.0, 0.0, 0.0, 3.0, 3.0, 3.0, 3.0]);
/// assert!(y.slice_mut(6..9).is_err()); // out of range: an error, not a panic
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct DeviceSliceMut<'a, T: Pod> {
    storage: &'a Arc<Storage>,
    offset: usize,
    len: usize,
    _t: PhantomData<&'a mut [T]>,
}

/// Anything that can be read as a device slice: a [`DeviceBuffer`] or a [`DeviceSlice`].
///
/// ```no_run
/// use hikube_gpu::{AsDeviceSlice, Device, DeviceBuffer, Result};
/// /// Works on whole buffers and on slices of them alike.
/// fn first<T: bytemuck::Pod + Copy>(stream: &hikube_gpu::Stream, x: &impl AsDeviceSlice<T>) -> Result<T> {
///     Ok(x.as_device_slice().to_vec(stream)?[0])
/// }
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let buf = DeviceBuffer::from_slice(&stream, &[1u32, 2, 3])?;
/// assert_eq!(first(&stream, &buf)?, 1);
/// assert_eq!(first(&stream, &buf.slice(1..)?)?, 2);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub trait AsDeviceSlice<T: Pod> {
    /// A read-only view of the whole thing.
    fn as_device_slice(&self) -> DeviceSlice<'_, T>;
}

/// Anything that can be written as a device slice: a [`DeviceBuffer`] or a [`DeviceSliceMut`].
///
/// ```no_run
/// use hikube_gpu::{AsDeviceSliceMut, Device, DeviceBuffer, Result, Stream};
/// /// Clears whole buffers and parts of them alike.
/// fn clear(stream: &Stream, y: &mut impl AsDeviceSliceMut<f32>) -> Result<()> {
///     y.as_device_slice_mut().fill(stream, 0.0)
/// }
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let mut buf = DeviceBuffer::from_slice(&stream, &[1.0f32, 2.0, 3.0, 4.0])?;
/// clear(&stream, &mut buf.slice_mut(2..)?)?;
/// assert_eq!(buf.to_vec(&stream)?, [1.0, 2.0, 0.0, 0.0]);
/// clear(&stream, &mut buf)?;
/// assert_eq!(buf.to_vec(&stream)?, [0.0; 4]);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
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
            storage: self.storage,
            offset: self.offset,
            len: self.len,
            _t: PhantomData,
        }
    }
}

/// Bytes of `len` elements of `T`; [`Error::InvalidArgument`] if that overflows `isize`.
pub(crate) fn byte_len<T>(len: usize) -> Result<usize> {
    len.checked_mul(std::mem::size_of::<T>())
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| Error::InvalidArgument {
            what: format!(
                "len = {len} elements of {} bytes overflows the address space",
                std::mem::size_of::<T>()
            ),
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
fn alloc_bytes(stream: &Stream, bytes: usize) -> Result<Arc<Storage>> {
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
    match Storage::alloc(stream, bytes) {
        Ok(storage) => Ok(storage),
        Err(Error::Driver(DriverError(sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY))) => {
            Err(oom(device.memory_info().map_or(info.free, |i| i.free)))
        }
        Err(e) => Err(e),
    }
}

impl<T: Pod> DeviceBuffer<T> {
    /// Allocates `len` elements on `stream`'s device. The contents are unspecified (whatever the
    /// memory held; any bit pattern is a valid `T`). Freed in `stream`'s order when dropped.
    pub fn alloc(stream: &Stream, len: usize) -> Result<Self> {
        Ok(DeviceBuffer {
            storage: alloc_bytes(stream, byte_len::<T>(len)?)?,
            len,
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

    /// Size in bytes (at most `isize::MAX`: checked when the buffer was made).
    pub fn num_bytes(&self) -> usize {
        self.len.saturating_mul(std::mem::size_of::<T>())
    }

    /// The device the memory is on.
    pub fn device(&self) -> &Device {
        &self.storage.device
    }

    /// The device address of the first element, for identification and for interop with other
    /// CUDA libraries. Using the address is on the caller: through FFI, which is `unsafe`, after
    /// synchronizing with the crate's work on the buffer, and only while the buffer lives.
    pub fn device_address(&self) -> u64 {
        self.storage.ptr
    }

    /// Bytes of device memory held: [`num_bytes`](Self::num_bytes), rounded up to the size class
    /// for a buffer from a [`MemoryPool`](crate::MemoryPool).
    pub fn reserved_bytes(&self) -> usize {
        self.storage.bytes
    }

    /// A read-only view of `range`; [`Error::OutOfBounds`] if it does not fit.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<DeviceSlice<'_, T>> {
        let (start, end) = range_of(range, self.len)?;
        Ok(DeviceSlice {
            storage: &self.storage,
            offset: start * std::mem::size_of::<T>(),
            len: end - start,
            _t: PhantomData,
        })
    }

    /// A writable view of `range`; [`Error::OutOfBounds`] if it does not fit.
    pub fn slice_mut(&mut self, range: impl RangeBounds<usize>) -> Result<DeviceSliceMut<'_, T>> {
        let (start, end) = range_of(range, self.len)?;
        Ok(DeviceSliceMut {
            storage: &self.storage,
            offset: start * std::mem::size_of::<T>(),
            len: end - start,
            _t: PhantomData,
        })
    }

    /// A writable view of the whole buffer.
    pub fn as_slice_mut(&mut self) -> DeviceSliceMut<'_, T> {
        DeviceSliceMut {
            storage: &self.storage,
            offset: 0,
            len: self.len,
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
    /// A buffer of `len` elements over a pool's block (which holds at least `len` elements).
    pub(crate) fn from_storage(storage: Arc<Storage>, len: usize) -> Self {
        DeviceBuffer {
            storage,
            len,
            _t: PhantomData,
        }
    }

    /// Sets every byte of the buffer (not of a pooled block's slack) to zero, on `stream`.
    pub(crate) fn set_zero(&mut self, stream: &Stream) -> Result<()> {
        let bytes = self.num_bytes();
        let mut acc = Access::new(stream)?;
        let ptr = acc.write(&mut self.as_slice_mut())?.addr();
        // SAFETY: `ptr` addresses the buffer's `bytes` bytes, kept alive by `acc` until the
        // memset is noted; the stream waits for earlier uses (`acc.write`).
        unsafe { result::memset_d8_async(ptr, 0, bytes, stream.cu()) }?;
        acc.finish()
    }
}

impl<T: Pod> AsDeviceSlice<T> for DeviceBuffer<T> {
    fn as_device_slice(&self) -> DeviceSlice<'_, T> {
        DeviceSlice {
            storage: &self.storage,
            offset: 0,
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> AsDeviceSlice<T> for DeviceSlice<'_, T> {
    fn as_device_slice(&self) -> DeviceSlice<'_, T> {
        DeviceSlice {
            storage: self.storage,
            offset: self.offset,
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> AsDeviceSlice<T> for DeviceSliceMut<'_, T> {
    fn as_device_slice(&self) -> DeviceSlice<'_, T> {
        DeviceSlice {
            storage: self.storage,
            offset: self.offset,
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<'a, T: Pod> DeviceSlice<'a, T> {
    /// The same slice typed `U`, when `U` is `T` itself: for generic code that has two type
    /// parameters and has found at run time that they are one type. `None` otherwise.
    pub(crate) fn same_type<U: Pod>(self) -> Option<DeviceSlice<'a, U>> {
        (std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>()).then_some(DeviceSlice {
            storage: self.storage,
            offset: self.offset,
            len: self.len,
            _t: PhantomData,
        })
    }
}

impl<'a, T: Pod> DeviceSliceMut<'a, T> {
    /// The same slice typed `U`, when `U` is `T` itself (see [`DeviceSlice::same_type`]).
    pub(crate) fn same_type<U: Pod>(self) -> Option<DeviceSliceMut<'a, U>> {
        (std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>()).then_some(DeviceSliceMut {
            storage: self.storage,
            offset: self.offset,
            len: self.len,
            _t: PhantomData,
        })
    }
}

impl Access<'_> {
    /// `s` as an operand of work on this access's stream that reads it (ordered after its last
    /// write on other streams). [`Error::WrongDevice`] for memory of another device.
    pub(crate) fn read<T: Pod>(&mut self, s: &DeviceSlice<'_, T>) -> Result<Operand<T>> {
        self.stream().device().check_same(&s.storage.device)?;
        self.touch(s.storage.clone(), false)?;
        Ok(Operand::at(s.storage.ptr + s.offset as u64, s.len))
    }

    /// [`read`](Self::read) of an optional operand: [`Operand::NONE`] (null, the kernels'
    /// "none") without one.
    pub(crate) fn read_or_null<T: Pod>(
        &mut self,
        s: Option<&DeviceSlice<'_, T>>,
    ) -> Result<Operand<T>> {
        s.map_or(Ok(Operand::NONE), |s| self.read(s))
    }

    /// An optional buffer the work writes whole (a plan's workspace): [`Operand::NONE`] without
    /// one.
    pub(crate) fn write_or_null<T: Pod>(
        &mut self,
        b: Option<&mut DeviceBuffer<T>>,
    ) -> Result<Operand<T>> {
        b.map_or(Ok(Operand::NONE), |b| self.write(&mut b.as_slice_mut()))
    }

    /// `s` as an operand of work that writes it (ordered after every earlier use on other
    /// streams).
    pub(crate) fn write<T: Pod>(&mut self, s: &mut DeviceSliceMut<'_, T>) -> Result<Operand<T>> {
        self.stream().device().check_same(&s.storage.device)?;
        self.touch(s.storage.clone(), true)?;
        Ok(Operand::at(s.storage.ptr + s.offset as u64, s.len))
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
        &self.storage.device
    }

    /// Copies the slice into `dst` (same length) and waits for the copy.
    pub fn copy_to_host(&self, stream: &Stream, dst: &mut [T]) -> Result<()> {
        check_len(dst.len(), self.len)?;
        let mut acc = Access::eager(stream, "copying to pageable host memory")?;
        acc.exact();
        let src = acc.read(self)?.addr();
        let out = bytemuck::cast_slice_mut::<T, u8>(dst);
        if !out.is_empty() {
            // SAFETY: `src` addresses `out.len()` bytes of the slice, kept alive by `acc`; the
            // host memory outlives the copy: the stream is synchronized below before `dst` is
            // given back.
            unsafe { result::memcpy_dtoh_async(out, src, stream.cu()) }?;
        }
        acc.finish()?;
        stream.synchronize_raw()
    }

    /// Queues a copy into pinned host memory (same length); reading the pinned buffer waits for
    /// it.
    pub fn copy_to_pinned(&self, stream: &Stream, dst: &mut PinnedBuffer<T>) -> Result<()> {
        check_len(dst.len(), self.len)?;
        let bytes = dst.num_bytes();
        let mut acc = Access::new(stream)?;
        let src = acc.read(self)?.addr();
        let host = acc.write_pinned(dst)?;
        if bytes > 0 {
            // SAFETY: both ranges hold `bytes` bytes and are kept alive, and ordered, by `acc`
            // (the pinned buffer waits for the copy before the host sees it).
            unsafe { sys::cuMemcpyDtoHAsync_v2(host.cast(), src, bytes, stream.cu()) }.result()?;
        }
        acc.finish()
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
        &self.storage.device
    }

    /// Copies `src` (same length, same device) into this slice, on `stream`.
    pub fn copy_from(&mut self, stream: &Stream, src: &impl AsDeviceSlice<T>) -> Result<()> {
        let src = src.as_device_slice();
        check_len(self.len, src.len)?;
        let bytes = self.len * std::mem::size_of::<T>();
        let mut acc = Access::new(stream)?;
        let from = acc.read(&src)?.addr();
        let to = acc.write(self)?.addr();
        if bytes > 0 {
            // SAFETY: both ranges hold `bytes` bytes (same length, checked), are kept alive and
            // ordered by `acc`, and do not overlap (one is borrowed mutably).
            unsafe { result::memcpy_dtod_async(to, from, bytes, stream.cu()) }?;
        }
        acc.finish()
    }

    /// Copies host memory (same length) into this slice. `data` may be reused once this returns
    /// (the driver stages pageable memory before returning).
    pub fn copy_from_host(&mut self, stream: &Stream, data: &[T]) -> Result<()> {
        check_len(self.len, data.len())?;
        let mut acc = Access::eager(stream, "copying from pageable host memory")?;
        acc.exact();
        let to = acc.write(self)?.addr();
        let bytes = bytemuck::cast_slice::<T, u8>(data);
        if !bytes.is_empty() {
            // SAFETY: `to` addresses `bytes.len()` bytes of the slice, kept alive and ordered by
            // `acc`; the driver has staged pageable memory when the call returns.
            unsafe { result::memcpy_htod_async(to, bytes, stream.cu()) }?;
        }
        acc.finish()
    }

    /// Queues a copy from pinned host memory (same length); the pinned buffer waits for it before
    /// it can be written or freed.
    pub fn copy_from_pinned(&mut self, stream: &Stream, src: &PinnedBuffer<T>) -> Result<()> {
        check_len(self.len, src.len())?;
        let bytes = src.num_bytes();
        let mut acc = Access::new(stream)?;
        let host = acc.read_pinned(src)?;
        let to = acc.write(self)?.addr();
        if bytes > 0 {
            // SAFETY: both ranges hold `bytes` bytes, kept alive and ordered by `acc`.
            unsafe { sys::cuMemcpyHtoDAsync_v2(to, host.cast(), bytes, stream.cu()) }.result()?;
        }
        acc.finish()
    }

    /// Sets every element to `value`: one driver memset for 1-, 2- and 4-byte types, otherwise
    /// one element copied up and doubled in place (log2(len) copies). Wider types read `value`
    /// from host memory, which a graph could not replay: inside a capture they are an
    /// [`Error::Capture`].
    pub fn fill(&mut self, stream: &Stream, value: T) -> Result<()> {
        let bytes = bytemuck::bytes_of(&value);
        let mut acc = if bytes.len() > 4 {
            Access::eager(stream, "filling with elements wider than 4 bytes")?
        } else {
            Access::new(stream)?
        };
        let ptr = acc.write(self)?.addr();
        let n = self.len;
        if n == 0 {
            return acc.finish();
        }
        let cu = stream.cu();
        // SAFETY: `ptr` addresses `n` elements of `T` (`n * size_of::<T>()` bytes), kept alive
        // and ordered by `acc`; the host copy of `value` for wide types is staged by the driver
        // before the call returns (pageable memory), and never inside a capture (refused above).
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
        acc.finish()
    }
}

impl<'a, T: Pod> DeviceSliceMut<'a, T> {
    /// Downgrades to a read-only slice.
    pub fn into_slice(self) -> DeviceSlice<'a, T> {
        DeviceSlice {
            storage: self.storage,
            offset: self.offset,
            len: self.len,
            _t: PhantomData,
        }
    }
}
