//! Pooling over NHWC activations (kernels in `kernels/pooling.cu`).

use crate::error::{Error, Result};
use crate::launch::args::GlobalAvgPool;
use crate::launch::{grid_stride_config, run_early, KernelArgs};
use crate::memory::access::Access;
use crate::memory::{ensure_len, AsDeviceSlice, AsDeviceSliceMut};
use crate::ops::Float;
use crate::stream::Stream;

/// Global average pooling: `y[b][ch]` = the mean of `x[b][p][ch]` over the `hw` pixels of
/// image `b`, for an NHWC input of `n` images, `hw` = H·W pixels and `c` channels (`x` holds
/// `n·hw·c` elements, `y` `n·c`). Sums in f32. The usual last step of a CNN before its
/// classifier head.
///
/// ```no_run
/// use hikube_gpu::{ops, Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let x = DeviceBuffer::from_slice(&stream, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?; // 1 image, 3 pixels, 2 channels
/// let mut y = DeviceBuffer::<f32>::zeroed(&stream, 2)?;
/// ops::global_avg_pool(&stream, 1, 3, 2, &x, &mut y)?;
/// assert_eq!(y.to_vec(&stream)?, vec![3.0, 4.0]);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn global_avg_pool<T: Float>(
    stream: &Stream,
    n: usize,
    hw: usize,
    c: usize,
    x: &impl AsDeviceSlice<T>,
    y: &mut impl AsDeviceSliceMut<T>,
) -> Result<()> {
    let x = x.as_device_slice();
    let mut y = y.as_device_slice_mut();
    let device = stream.device();
    device.check_same(x.device())?;
    device.check_same(y.device())?;
    if hw == 0 {
        return Err(Error::InvalidDimension {
            what: "global_avg_pool pixels per image (hw)".into(),
            value: 0,
            min: 1,
        });
    }
    // Saturating: a product past usize can never fit in a buffer, so it fails the size check.
    let input = n.saturating_mul(hw).saturating_mul(c);
    let output = n.saturating_mul(c);
    ensure_len("x", input, x.len())?;
    ensure_len("y", output, y.len())?;
    if output == 0 {
        return Ok(());
    }
    let kernel = GlobalAvgPool::<T>::kernel(device, (), None)?;
    let config = grid_stride_config(output, device.properties().sm_count);
    let mut acc = Access::new(stream)?;
    let x = acc.read(&x)?;
    let y = acc.write(&mut y)?;
    let mut args = GlobalAvgPool::new((n, hw, c), x, y)?;
    run_early(stream, &kernel, config, &mut args)?;
    acc.finish()
}
