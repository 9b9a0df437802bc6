//! Layout conversions on the GPU (kernels in kernels/conv/conv_layout.cu): activations NCHW ⇄
//! NHWC and filters KCRS ⇄ KRSC, for any 16- or 32-bit element type. Each is a batched
//! transpose of the two inner dimension groups (`transpose`, which the FP8 GEMM uses for bytes).

use crate::error::{Error, Result};
use crate::launch::args::{FlipFilter, FlipTaps, PadPixels, PadRows, Transpose};
use crate::launch::{grid_stride_config, run, Kernel, KernelArgs};
use crate::memory::access::Access;
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut, DeviceSlice, DeviceSliceMut};
use crate::ops::Float;
use crate::stream::Stream;
use bytemuck::Pod;

/// NCHW (`src`, N×C×H×W) to NHWC (`dst`, N×H×W×C).
///
/// ```no_run
/// use hikube_gpu::ops::conv2d::{nchw_to_nhwc, nhwc_to_nchw};
/// use hikube_gpu::{half::f16, Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let (n, c, h, w) = (2, 3, 5, 7);
/// let host: Vec<f16> = (0..n * c * h * w).map(|i| f16::from_f32(i as f32)).collect();
/// let nchw = DeviceBuffer::from_slice(&stream, &host)?;
/// let mut nhwc = DeviceBuffer::<f16>::alloc(&stream, host.len())?;
/// let mut back = DeviceBuffer::<f16>::alloc(&stream, host.len())?;
/// nchw_to_nhwc(&stream, &nchw, &mut nhwc, n, c, h, w)?;
/// nhwc_to_nchw(&stream, &nhwc, &mut back, n, c, h, w)?;
/// assert_eq!(back.to_vec(&stream)?, host);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn nchw_to_nhwc<T: Float>(
    stream: &Stream,
    src: &impl AsDeviceSlice<T>,
    dst: &mut impl AsDeviceSliceMut<T>,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
) -> Result<()> {
    transpose(stream, src, dst, n, c, h * w)
}

/// NHWC (`src`, N×H×W×C) to NCHW (`dst`, N×C×H×W).
pub fn nhwc_to_nchw<T: Float>(
    stream: &Stream,
    src: &impl AsDeviceSlice<T>,
    dst: &mut impl AsDeviceSliceMut<T>,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
) -> Result<()> {
    transpose(stream, src, dst, n, h * w, c)
}

/// Filters KCRS (`src`, PyTorch's K×C×R×S) to KRSC (`dst`, K×R×S×C, what
/// [`Conv2d`](super::Conv2d) takes).
///
/// ```no_run
/// use hikube_gpu::ops::conv2d::{kcrs_to_krsc, krsc_to_kcrs};
/// use hikube_gpu::{half::f16, Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let (k, c, r, s) = (64, 3, 7, 7); // a ResNet stem's weight as PyTorch stores it
/// let torch: Vec<f16> = (0..k * c * r * s).map(|i| f16::from_f32(i as f32 / 64.0)).collect();
/// let kcrs = DeviceBuffer::from_slice(&stream, &torch)?;
/// let mut krsc = DeviceBuffer::<f16>::alloc(&stream, torch.len())?;
/// kcrs_to_krsc(&stream, &kcrs, &mut krsc, k, c, r, s)?;
/// // Filter 1, channel 2, tap (3, 4): KCRS ((1·C + 2)·R + 3)·S + 4, KRSC ((1·R + 3)·S + 4)·C + 2.
/// let host = krsc.to_vec(&stream)?;
/// assert_eq!(host[((r + 3) * s + 4) * c + 2], torch[((c + 2) * r + 3) * s + 4]);
/// let mut back = DeviceBuffer::<f16>::alloc(&stream, torch.len())?;
/// krsc_to_kcrs(&stream, &krsc, &mut back, k, c, r, s)?; // and back, for saving
/// assert_eq!(back.to_vec(&stream)?, torch);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn kcrs_to_krsc<T: Float>(
    stream: &Stream,
    src: &impl AsDeviceSlice<T>,
    dst: &mut impl AsDeviceSliceMut<T>,
    k: usize,
    c: usize,
    r: usize,
    s: usize,
) -> Result<()> {
    transpose(stream, src, dst, k, c, r * s)
}

/// Filters KRSC (`src`) to KCRS (`dst`).
pub fn krsc_to_kcrs<T: Float>(
    stream: &Stream,
    src: &impl AsDeviceSlice<T>,
    dst: &mut impl AsDeviceSliceMut<T>,
    k: usize,
    c: usize,
    r: usize,
    s: usize,
) -> Result<()> {
    transpose(stream, src, dst, k, r * s, c)
}

/// `dst[b][j][i] = src[b][i][j]` for a batch × rows × cols `src` (also the FP8 GEMM's staging).
pub(crate) fn transpose<T: Pod>(
    stream: &Stream,
    src: &impl AsDeviceSlice<T>,
    dst: &mut impl AsDeviceSliceMut<T>,
    batch: usize,
    rows: usize,
    cols: usize,
) -> Result<()> {
    let src = src.as_device_slice();
    let mut dst = dst.as_device_slice_mut();
    let device = stream.device();
    device.check_same(src.device())?;
    device.check_same(dst.device())?;
    let total = batch
        .checked_mul(rows)
        .and_then(|x| x.checked_mul(cols))
        .ok_or_else(|| Error::TooLarge {
            what: "elements".into(),
            value: usize::MAX,
            max: i64::MAX as usize,
        })?;
    for (operand, len) in [("src", src.len()), ("dst", dst.len())] {
        if len < total {
            return Err(Error::BufferTooSmall {
                operand,
                required: total,
                actual: len,
            });
        }
    }
    if total == 0 {
        return Ok(());
    }
    // The kernel's limits (batch and columns in `int`, rows within the grid) are checked by
    // `Transpose::new`.
    let kernel = Transpose::<T>::kernel(device, (), None)?;
    let mut acc = Access::new(stream)?;
    let src = acc.read(&src)?;
    let dst = acc.write(&mut dst)?;
    let mut args = Transpose::new((batch, rows, cols), src, dst)?;
    run(stream, &kernel, args.config(), &mut args)?;
    acc.finish()
}

/// Copies `rows` pixels of `c` channels from `src` into pixels of `cp` (≥ c) channels of `dst`,
/// zeros in the new channels (`shape` = (rows, c, cp)): the padded path's input. The plan's
/// validation bounds rows × cp below 2³¹.
pub(crate) fn pad_pixels<T: Float>(
    stream: &Stream,
    kernel: &Kernel<PadPixels<T>>,
    src: &DeviceSlice<'_, T>,
    dst: &mut DeviceSliceMut<'_, T>,
    (rows, c, cp): (usize, usize, usize),
) -> Result<()> {
    let mut acc = Access::new(stream)?;
    let src = acc.read(src)?;
    let dst = acc.write(dst)?;
    let mut args = PadPixels::new((rows, c, cp), src, dst)?;
    let cfg = grid_stride_config(rows, stream.device().properties().sm_count);
    run(stream, kernel, cfg, &mut args)?;
    acc.finish()
}

/// Copies `rows` rows of `taps` × `c` elements from `src` into rows of `ld` elements of `dst`:
/// each tap's channels padded to `cp`, then zeros up to `ld` (`shape` = (rows, taps, c, cp,
/// ld)). The padded path's input and filter.
pub(crate) fn pad_rows<T: Float>(
    stream: &Stream,
    kernel: &Kernel<PadRows<T>>,
    src: &DeviceSlice<'_, T>,
    dst: &mut DeviceSliceMut<'_, T>,
    (rows, taps, c, cp, ld): (usize, usize, usize, usize, usize),
) -> Result<()> {
    let mut acc = Access::new(stream)?;
    let src = acc.read(src)?;
    let dst = acc.write(dst)?;
    let mut args = PadRows::new((rows, taps, c, cp, ld), src, dst)?;
    let total = rows.saturating_mul(ld); // the kernel's elements: dst's checked extent
    let cfg = grid_stride_config(total, stream.device().properties().sm_count);
    run(stream, kernel, cfg, &mut args)?;
    acc.finish()
}

/// Writes `taps` of the `(k, ·, c)` KRSC filter `src` into `dst` as the CRSK filter of its
/// transposed convolution, taps reversed: the data gradient's filter on the Hopper path (the
/// whole filter for stride 1, one phase's taps for a strided convolution).
pub(crate) fn flip_filter<T: Float>(
    stream: &Stream,
    kernel: &Kernel<FlipFilter<T>>,
    src: &DeviceSlice<'_, T>,
    dst: &mut DeviceSliceMut<'_, T>,
    (k, c): (usize, usize),
    taps: FlipTaps,
) -> Result<()> {
    let mut acc = Access::new(stream)?;
    let src = acc.read(src)?;
    let dst = acc.write(dst)?;
    let mut args = FlipFilter::new((k, c), taps, src, dst)?;
    run(stream, kernel, args.config(), &mut args)?;
    acc.finish()
}
