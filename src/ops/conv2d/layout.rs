//! Layout conversions on the GPU (kernels in kernels/conv/conv_layout.cu): activations NCHW ⇄
//! NHWC and filters KCRS ⇄ KRSC, for any 16- or 32-bit element type. Each is a batched
//! transpose of the two inner dimension groups.

use crate::error::{Error, Result};
use crate::launch::{grid_stride_config, launch};
use crate::memory::access::Access;
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut, DeviceSlice, DeviceSliceMut};
use crate::ops::{Dtype, Float};
use crate::stream::Stream;
use cudarc::driver::{LaunchConfig, PushKernelArg};

pub(crate) const MODULE: &str = "conv_layout";

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

/// `dst[b][j][i] = src[b][i][j]` for a batch × rows × cols `src`.
fn transpose<T: Float>(
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
    let i32max = i32::MAX as usize;
    for (what, v, max) in [
        ("batch", batch, i32max),
        ("columns", cols, i32max),
        ("rows", rows, 65535 * 32),
    ] {
        if v > max {
            return Err(Error::TooLarge {
                what: format!("layout transpose {what}"),
                value: v,
                max,
            });
        }
    }
    let name = match T::DTYPE {
        Dtype::F16 | Dtype::Bf16 => "transpose_b16",
        Dtype::F32 => "transpose_b32",
    };
    let func = device.function(MODULE, name, None)?;
    let raw = &stream.raw;
    let mut acc = Access::new(stream)?;
    let src_ptr = acc.read(&src)?;
    let dst_ptr = acc.write(&mut dst)?;
    let (b, r, c) = (batch as i32, rows as i32, cols as i32);
    let cfg = LaunchConfig {
        grid_dim: (
            cols.div_ceil(32) as u32,
            rows.div_ceil(32) as u32,
            batch.min(65535) as u32,
        ),
        block_dim: (32, 8, 1),
        shared_mem_bytes: 0,
    };
    let mut args = raw.launch_builder(&func);
    args.arg(&src_ptr).arg(&dst_ptr).arg(&b).arg(&r).arg(&c);
    // SAFETY: transpose_b16/_b32(const T* src, T* dst, int batch, int rows, int cols) match the
    // five arguments; both buffers hold at least batch × rows × cols elements of the kernel's
    // word size (checked above), and the kernel touches indices below that only.
    unsafe { launch(args, cfg) }?;
    acc.finish()
}

/// Copies `rows` pixels of `c` channels from `src` into pixels of `cp` (≥ c) channels of `dst`,
/// zeros in the new channels (`shape` = (rows, c, cp)): the padded path's input. The plan's
/// validation bounds rows × cp below 2³¹.
pub(crate) fn pad_pixels<T: Float>(
    stream: &Stream,
    func: &cudarc::driver::CudaFunction,
    src: &DeviceSlice<'_, T>,
    dst: &mut DeviceSliceMut<'_, T>,
    (rows, c, cp): (usize, usize, usize),
) -> Result<()> {
    let raw = &stream.raw;
    for (operand, required, actual, max) in [
        ("padded source", rows * c, src.len(), usize::MAX),
        ("padded copy", rows * cp, dst.len(), i32::MAX as usize),
    ] {
        if actual < required {
            return Err(Error::BufferTooSmall {
                operand,
                required,
                actual,
            });
        }
        if required > max {
            return Err(Error::TooLarge {
                what: "padded input elements".into(),
                value: required,
                max,
            });
        }
    }
    let mut acc = Access::new(stream)?;
    let src_ptr = acc.read(src)?;
    let dst_ptr = acc.write(dst)?;
    let [rows32, c, cp] = [rows, c, cp].map(|v| v as i32);
    let cfg = grid_stride_config(rows, stream.device().properties().sm_count);
    let mut args = raw.launch_builder(func);
    args.arg(&src_ptr)
        .arg(&dst_ptr)
        .arg(&rows32)
        .arg(&c)
        .arg(&cp);
    // SAFETY: pad_pixels_b16(const u16* src, u16* dst, int rows, int c, int cp) matches the
    // arguments; src holds rows × c and dst rows × cp 16-bit elements (checked above, and below
    // 2^31 so the kernel's 32-bit indices hold); the kernel touches nothing past those counts.
    unsafe { launch(args, cfg) }?;
    acc.finish()
}

/// Copies `rows` rows of `taps` × `c` elements from `src` into rows of `ld` elements of `dst`:
/// each tap's channels padded to `cp`, then zeros up to `ld` (`shape` = (rows, taps, c, cp,
/// ld)). The padded path's input and filter.
pub(crate) fn pad_rows<T: Float>(
    stream: &Stream,
    func: &cudarc::driver::CudaFunction,
    src: &DeviceSlice<'_, T>,
    dst: &mut DeviceSliceMut<'_, T>,
    (rows, taps, c, cp, ld): (usize, usize, usize, usize, usize),
) -> Result<()> {
    let raw = &stream.raw;
    for (operand, required, actual) in [
        ("padded source", rows * taps * c, src.len()),
        ("padded copy", rows * ld, dst.len()),
    ] {
        if actual < required {
            return Err(Error::BufferTooSmall {
                operand,
                required,
                actual,
            });
        }
    }
    let mut acc = Access::new(stream)?;
    let src_ptr = acc.read(src)?;
    let dst_ptr = acc.write(dst)?;
    let rows64 = rows as i64;
    let [taps, c, cp, ld] = [taps, c, cp, ld].map(|v| v as i32);
    let cfg = grid_stride_config(rows * ld as usize, stream.device().properties().sm_count);
    let mut args = raw.launch_builder(func);
    args.arg(&src_ptr)
        .arg(&dst_ptr)
        .arg(&rows64)
        .arg(&taps)
        .arg(&c)
        .arg(&cp)
        .arg(&ld);
    // SAFETY: pad_rows_b16(const u16* src, u16* dst, long long rows, int taps, int c, int cp,
    // int ld) matches the arguments; src holds rows × taps × c and dst rows × ld 16-bit
    // elements (checked above); the kernel reads and writes below those counts only.
    unsafe { launch(args, cfg) }?;
    acc.finish()
}
