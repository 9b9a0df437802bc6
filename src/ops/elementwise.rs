//! Element-wise operations (kernels in `kernels/elementwise.cu`).

use crate::error::{Error, Result};
use crate::launch::args::Axpy;
use crate::launch::{grid_stride_config, run_early, KernelArgs};
use crate::memory::access::Access;
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut};
use crate::ops::{Float, KernelOptions};
use crate::stream::Stream;

/// `y = alpha * x + y`, element by element, computed in f32, on `stream`.
///
/// ```no_run
/// use hikube_gpu::{ops, Device, DeviceBuffer};
/// use half::f16;
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let x = DeviceBuffer::from_slice(&stream, &[f16::from_f32(1.0); 1000])?;
/// let mut y = DeviceBuffer::from_slice(&stream, &[f16::from_f32(0.5); 1000])?;
/// ops::axpy(&stream, 2.0, &x, &mut y)?;
/// assert!(y.to_vec(&stream)?.iter().all(|v| v.to_f32() == 2.5));
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn axpy<T: Float>(
    stream: &Stream,
    alpha: f32,
    x: &impl AsDeviceSlice<T>,
    y: &mut impl AsDeviceSliceMut<T>,
) -> Result<()> {
    axpy_with(stream, alpha, x, y, KernelOptions::default())
}

/// [`axpy`] with options (e.g. a forced PTX target).
///
/// ```no_run
/// use hikube_gpu::{ops, Device, DeviceBuffer, KernelOptions, PtxArch};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let x = DeviceBuffer::from_slice(&stream, &[1.0f32; 4])?;
/// let mut y = DeviceBuffer::from_slice(&stream, &[0.5f32; 4])?;
/// // The compute_70 kernels, JIT-compiled for this GPU: what a V100 runs.
/// let v100_path = KernelOptions { arch: Some(PtxArch::Compute70) };
/// ops::axpy_with(&stream, 2.0, &x, &mut y, v100_path)?;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn axpy_with<T: Float>(
    stream: &Stream,
    alpha: f32,
    x: &impl AsDeviceSlice<T>,
    y: &mut impl AsDeviceSliceMut<T>,
    options: KernelOptions,
) -> Result<()> {
    let x = x.as_device_slice();
    let mut y = y.as_device_slice_mut();
    let device = stream.device();
    device.check_same(x.device())?;
    device.check_same(y.device())?;
    if x.len() != y.len() {
        return Err(Error::LengthMismatch {
            expected: y.len(),
            actual: x.len(),
        });
    }
    let n = y.len();
    if n == 0 {
        return Ok(());
    }
    let kernel = Axpy::<T>::kernel(device, (), options.arch)?;
    let config = grid_stride_config(n, device.properties().sm_count);
    // The access orders the launch after other streams' work on x and y, and notes it.
    let mut acc = Access::new(stream)?;
    let x = acc.read(&x)?;
    let y = acc.write(&mut y)?;
    let mut args = Axpy::new(n, alpha, x, y)?;
    run_early(stream, &kernel, config, &mut args)?;
    acc.finish()
}
