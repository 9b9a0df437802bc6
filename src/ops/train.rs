//! Training operations (kernels in `kernels/train.cu`): what a mixed-precision training step
//! needs around its GEMMs, none of which synchronizes or allocates, so a whole step can be
//! captured in a [`Graph`](crate::Graph) and replayed.
//!
//! - [`softmax_cross_entropy`]: the mean cross-entropy's gradient with respect to the logits
//!   (scaled by the loss scale) and each row's loss;
//! - [`relu_backward`]: the ReLU's mask applied to a gradient, from the ReLU's output;
//! - [`bias_grad`]: a bias gradient, the column sums of the output gradient;
//! - [`cast_f32`]: f32 master weights to their f16/bf16 working copy;
//! - [`LossScaler`]: dynamic loss scaling kept on the device (overflow check, skip, halve, grow);
//! - [`Sgd`]: an SGD-with-momentum step on f32 master weights that unscales the gradient, skips
//!   the step after an overflow and refreshes the low-precision copy.
//!
//! A training step with these and [`Matmul`](crate::ops::matmul::Matmul) (forward `H = relu(X·W
//! + b)` fused; backward `dX = dY·Wᵀ` with B column-major, `dW = Xᵀ·dY` with A column-major):
//!
//! ```no_run
//! use hikube_gpu::half::f16;
//! use hikube_gpu::ops::matmul::{Epilogue, Layout, Matmul, MatmulDesc};
//! use hikube_gpu::ops::train::{self, LossScaler, Sgd};
//! use hikube_gpu::{Device, DeviceBuffer};
//! let device = Device::open(0)?;
//! let stream = device.new_stream()?;
//! let (batch, features, classes) = (256, 64, 10);
//! let x = DeviceBuffer::from_slice(&stream, &vec![f16::from_f32(0.5); batch * features])?;
//! let labels = DeviceBuffer::from_slice(&stream, &vec![3u32; batch])?;
//! let mut w = DeviceBuffer::from_slice(&stream, &vec![0.01f32; features * classes])?;
//! let mut w16 = DeviceBuffer::<f16>::alloc(&stream, w.len())?;
//! let mut velocity = DeviceBuffer::<f32>::zeroed(&stream, w.len())?;
//! let mut dw = DeviceBuffer::<f32>::alloc(&stream, w.len())?;
//! let mut logits = DeviceBuffer::<f32>::alloc(&stream, batch * classes)?;
//! let mut dlogits = DeviceBuffer::<f16>::alloc(&stream, batch * classes)?;
//! let mut loss = DeviceBuffer::<f32>::alloc(&stream, batch)?;
//! let forward = Matmul::<f16, f32>::new(&stream, MatmulDesc::new(batch, classes, features))?;
//! let weight_grad = Matmul::<f16, f32>::new(
//!     &stream,
//!     MatmulDesc::new(features, classes, batch).a_layout(Layout::ColMajor), // Xᵀ·dY
//! )?;
//! let mut scaler = LossScaler::new(&stream, 1024.0, 200)?;
//! let sgd = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0 };
//! train::cast_f32(&stream, &w, &mut w16)?;
//! forward.launch(&stream, &x, &w16, &mut logits, Epilogue::new())?;
//! train::softmax_cross_entropy(&stream, &logits, &labels, classes, Some(&scaler), &mut dlogits, &mut loss)?;
//! weight_grad.launch(&stream, &x, &dlogits, &mut dw, Epilogue::new())?;
//! scaler.check(&stream, &dw)?;
//! sgd.step(&stream, &scaler, &mut w, &mut velocity, &dw, &mut w16)?;
//! scaler.update(&stream)?;
//! # Ok::<(), hikube_gpu::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::launch::args::{
    BiasGrad, CastF32, LossScaleUpdate, NonfiniteCheck, ReluBackward, SgdStep, SoftmaxXent,
    MAX_ROW_DIM as MAX_DIM,
};
use crate::launch::{grid_stride_config, run, KernelArgs};
use crate::memory::access::{Access, Operand};
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice, DeviceSliceMut};
use crate::ops::Float;
use crate::stream::Stream;
use cudarc::driver::LaunchConfig;

fn same_len(expected: usize, actual: usize) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::LengthMismatch { expected, actual })
    }
}

fn fits_dim(what: &str, value: usize) -> Result<()> {
    if value <= MAX_DIM {
        Ok(())
    } else {
        Err(Error::TooLarge {
            what: what.to_string(),
            value,
            max: MAX_DIM,
        })
    }
}

/// `rows × cols` for a buffer of `len` elements with `cols` columns.
fn rows_of(what: &str, len: usize, cols: usize) -> Result<usize> {
    if cols == 0 {
        return Err(Error::InvalidDimension {
            what: format!("{what}'s column count"),
            value: 0,
            min: 1,
        });
    }
    if !len.is_multiple_of(cols) {
        return Err(Error::ShapeMismatch {
            shape: vec![len / cols, cols],
            expected: (len / cols) * cols,
            actual: len,
        });
    }
    let rows = len / cols;
    fits_dim(&format!("{what}'s rows"), rows)?;
    fits_dim(&format!("{what}'s columns"), cols)?;
    Ok(rows)
}

/// Softmax cross-entropy of `logits` (rows × `classes`, row-major, f32) against `labels` (one
/// class index per row): writes the gradient of the **mean** loss over the rows with respect to
/// the logits, multiplied by the loss scale of `scaler` (1 when `None`), into `grad`, and each
/// row's unscaled loss `−log softmax(logits)[label]` into `row_loss`.
///
/// A label outside `0..classes` (which only the GPU sees) makes its row's loss and gradient NaN,
/// so that [`LossScaler::check`] skips the step rather than train on it. Shapes are checked:
/// `logits.len()` must be a multiple of `classes`, and `labels`, `grad` and `row_loss` must
/// match, else an [`Error`].
///
/// ```no_run
/// use hikube_gpu::ops::train::softmax_cross_entropy;
/// use hikube_gpu::{half::f16, Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let (rows, classes) = (2, 3);
/// let logits = DeviceBuffer::from_slice(&stream, &[2.0f32, 1.0, 0.0, 0.0, 0.0, 5.0])?;
/// let labels = DeviceBuffer::from_slice(&stream, &[0u32, 2])?;
/// let mut grad = DeviceBuffer::<f16>::zeroed(&stream, rows * classes)?; // d(mean loss)/d(logits)
/// let mut loss = DeviceBuffer::<f32>::zeroed(&stream, rows)?;
/// softmax_cross_entropy(&stream, &logits, &labels, classes, None, &mut grad, &mut loss)?;
/// println!("losses {:?}", loss.to_vec(&stream)?);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn softmax_cross_entropy<G: Float>(
    stream: &Stream,
    logits: &impl AsDeviceSlice<f32>,
    labels: &impl AsDeviceSlice<u32>,
    classes: usize,
    scaler: Option<&LossScaler>,
    grad: &mut impl AsDeviceSliceMut<G>,
    row_loss: &mut impl AsDeviceSliceMut<f32>,
) -> Result<()> {
    let (logits, labels) = (logits.as_device_slice(), labels.as_device_slice());
    let (mut grad, mut row_loss) = (grad.as_device_slice_mut(), row_loss.as_device_slice_mut());
    let device = stream.device();
    for d in [
        logits.device(),
        labels.device(),
        grad.device(),
        row_loss.device(),
    ] {
        device.check_same(d)?;
    }
    let rows = rows_of("logits", logits.len(), classes)?;
    same_len(rows, labels.len())?;
    same_len(logits.len(), grad.len())?;
    same_len(rows, row_loss.len())?;
    if rows == 0 {
        return Ok(());
    }
    if let Some(s) = scaler {
        device.check_same(s.state.device())?;
    }
    let kernel = SoftmaxXent::<G>::kernel(device, (), None)?;
    let mut acc = Access::new(stream)?;
    let state = scaler.map(|s| s.state.as_device_slice());
    let state = acc.read_or_null(state.as_ref())?;
    let logits = acc.read(&logits)?;
    let labels = acc.read(&labels)?;
    let grad = acc.write(&mut grad)?;
    let row_loss = acc.write(&mut row_loss)?;
    let mut args = SoftmaxXent::new(rows, classes, (logits, labels, state, grad, row_loss))?;
    run(stream, &kernel, args.config(), &mut args)?;
    acc.finish()
}

/// The ReLU's backward pass, in place: `dy[i] = 0` wherever `y[i] ≤ 0` (or NaN), with `y` the
/// ReLU's output (as the GEMM's fused ReLU writes it).
///
/// ```no_run
/// use hikube_gpu::ops::train::relu_backward;
/// use hikube_gpu::{Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let y = DeviceBuffer::from_slice(&stream, &[0.0f32, 2.0, -1.0])?; // the forward's output
/// let mut dy = DeviceBuffer::from_slice(&stream, &[1.0f32, 1.0, 1.0])?;
/// relu_backward(&stream, &y, &mut dy)?;
/// assert_eq!(dy.to_vec(&stream)?, [0.0, 1.0, 0.0]);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn relu_backward<T: Float>(
    stream: &Stream,
    y: &impl AsDeviceSlice<T>,
    dy: &mut impl AsDeviceSliceMut<T>,
) -> Result<()> {
    let y = y.as_device_slice();
    let mut dy = dy.as_device_slice_mut();
    let device = stream.device();
    device.check_same(y.device())?;
    device.check_same(dy.device())?;
    same_len(dy.len(), y.len())?;
    let n = y.len();
    if n == 0 {
        return Ok(());
    }
    let kernel = ReluBackward::<T>::kernel(device, (), None)?;
    let mut acc = Access::new(stream)?;
    let y = acc.read(&y)?;
    let dy = acc.write(&mut dy)?;
    let mut args = ReluBackward::new(n, y, dy)?;
    let config = grid_stride_config(n, device.properties().sm_count);
    run(stream, &kernel, config, &mut args)?;
    acc.finish()
}

/// The gradient of a bias added to every row: `db[j] = Σ_i dy[i, j]` for `dy` of rows ×
/// `db.len()` (row-major), summed in f32.
///
/// ```no_run
/// use hikube_gpu::ops::train::bias_grad;
/// use hikube_gpu::{Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let dy = DeviceBuffer::from_slice(&stream, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?; // 3 × 2
/// let mut db = DeviceBuffer::<f32>::zeroed(&stream, 2)?;
/// bias_grad(&stream, &dy, &mut db)?;
/// assert_eq!(db.to_vec(&stream)?, [9.0, 12.0]);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn bias_grad<T: Float>(
    stream: &Stream,
    dy: &impl AsDeviceSlice<T>,
    db: &mut impl AsDeviceSliceMut<f32>,
) -> Result<()> {
    let dy = dy.as_device_slice();
    let mut db = db.as_device_slice_mut();
    let rows = rows_of("dy", dy.len(), db.len())?;
    bias_grad_rows(stream, &dy, rows, &mut db)
}

/// [`bias_grad`] over the first `rows` rows of `dy` (which may be longer).
pub(crate) fn bias_grad_rows<T: Float>(
    stream: &Stream,
    dy: &DeviceSlice<'_, T>,
    rows: usize,
    db: &mut DeviceSliceMut<'_, f32>,
) -> Result<()> {
    let device = stream.device();
    device.check_same(dy.device())?;
    device.check_same(db.device())?;
    let cols = db.len();
    let kernel = BiasGrad::<T>::kernel(device, (), None)?;
    let mut acc = Access::new(stream)?;
    let dy = acc.read(dy)?;
    let db = acc.write(db)?;
    let mut args = BiasGrad::new(rows, cols, dy, db)?;
    run(stream, &kernel, args.config(), &mut args)?;
    acc.finish()
}

/// Rounds f32 values (master weights) to `T` (their f16/bf16 working copy), to nearest even.
///
/// ```no_run
/// use hikube_gpu::ops::train::cast_f32;
/// use hikube_gpu::{half::bf16, Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let master = DeviceBuffer::from_slice(&stream, &[1.0f32, 1.0 + 1.0 / 512.0])?;
/// let mut working = DeviceBuffer::<bf16>::zeroed(&stream, 2)?;
/// cast_f32(&stream, &master, &mut working)?;
/// assert_eq!(working.to_vec(&stream)?, [bf16::ONE, bf16::ONE]); // 8 significant bits
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn cast_f32<T: Float>(
    stream: &Stream,
    src: &impl AsDeviceSlice<f32>,
    dst: &mut impl AsDeviceSliceMut<T>,
) -> Result<()> {
    let src = src.as_device_slice();
    let mut dst = dst.as_device_slice_mut();
    let device = stream.device();
    device.check_same(src.device())?;
    device.check_same(dst.device())?;
    same_len(dst.len(), src.len())?;
    let n = src.len();
    if n == 0 {
        return Ok(());
    }
    let kernel = CastF32::<T>::kernel(device, (), None)?;
    let mut acc = Access::new(stream)?;
    let src = acc.read(&src)?;
    let dst = acc.write(&mut dst)?;
    let mut args = CastF32::new(n, src, dst)?;
    let config = grid_stride_config(n, device.properties().sm_count);
    run(stream, &kernel, config, &mut args)?;
    acc.finish()
}

/// The loss-scaling state as read back from the device ([`LossScaler::state`], which has an
/// example).
///
/// ```no_run
/// use hikube_gpu::ops::train::{LossScaleState, LossScaler};
/// use hikube_gpu::{Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.new_stream()?;
/// let mut scaler = LossScaler::new(&stream, 1024.0, 3)?; // doubles after 3 good steps
/// for grad in [[0.5f32, -2.0], [f32::NAN, 1.0], [0.5, 0.5], [0.25, 1.0], [1.0, 1.0]] {
///     scaler.check(&stream, &DeviceBuffer::from_slice(&stream, &grad)?)?;
///     scaler.update(&stream)?;
/// }
/// // The NaN halved the scale; the three good steps after it doubled it back.
/// let state = scaler.state(&stream)?;
/// let expected = LossScaleState { scale: 1024.0, good_steps: 0, skipped_steps: 1, ..state };
/// assert_eq!(state, expected);
/// assert!(!state.found_nonfinite); // `update` cleared it
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossScaleState {
    /// The loss scale the next step uses.
    pub scale: f32,
    /// Steps without overflow since the scale last changed (a float on the device: it stops
    /// at 2²⁴ = 16 777 216, which only a scaler that never grows reaches).
    pub good_steps: u32,
    /// Whether a gradient checked since the last [`LossScaler::update`] was not finite.
    pub found_nonfinite: bool,
    /// Steps skipped because of an overflow, in all. Counted in a float on the device: exact
    /// up to 2²⁴ = 16 777 216, where it stops growing.
    pub skipped_steps: u32,
}

/// Dynamic loss scaling with its state on the device, so that a captured training step adjusts
/// it without the host: the loss gradient is multiplied by the scale (so small f16 gradients do
/// not flush to zero), [`check`](Self::check) flags any non-finite gradient, the optimizer step
/// divides by the scale and is skipped after an overflow, and [`update`](Self::update) halves
/// the scale after an overflow or doubles it after `growth_interval` good steps in a row
/// (PyTorch's `GradScaler` policy). The scale stays within 2⁻¹⁶…2²⁴.
///
/// ```no_run
/// use hikube_gpu::ops::train::LossScaler;
/// use hikube_gpu::{Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.new_stream()?;
/// let mut scaler = LossScaler::new(&stream, 1024.0, 2000)?;
/// let grad = DeviceBuffer::from_slice(&stream, &[1.0f32, f32::INFINITY])?;
/// scaler.check(&stream, &grad)?;
/// assert!(scaler.state(&stream)?.found_nonfinite);
/// scaler.update(&stream)?;
/// assert_eq!(scaler.state(&stream)?.scale, 512.0);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Debug)]
pub struct LossScaler {
    /// scale, good steps, non-finite flag, skipped steps (as floats: exact up to 2²⁴, where the
    /// counters stop).
    state: DeviceBuffer<f32>,
    growth_interval: u32,
}

impl LossScaler {
    /// The largest growth interval: the device counts steps in a float, exact up to 2²⁴.
    pub const MAX_GROWTH_INTERVAL: u32 = 1 << 24;

    /// A scaler starting at `initial_scale` (finite, in 2⁻¹⁶…2²⁴) that doubles it after
    /// `growth_interval` steps without overflow (0: never grows; at most
    /// [`MAX_GROWTH_INTERVAL`](Self::MAX_GROWTH_INTERVAL), else [`Error::TooLarge`]).
    pub fn new(stream: &Stream, initial_scale: f32, growth_interval: u32) -> Result<Self> {
        if growth_interval > Self::MAX_GROWTH_INTERVAL {
            return Err(Error::TooLarge {
                what: "loss scaler growth_interval".into(),
                value: growth_interval as usize,
                max: Self::MAX_GROWTH_INTERVAL as usize,
            });
        }
        if !(initial_scale.is_finite() && (1.0 / 65536.0..=16_777_216.0).contains(&initial_scale)) {
            return Err(Error::InvalidArgument {
                what: format!("loss scale {initial_scale} is not in 2^-16..=2^24"),
            });
        }
        let state = DeviceBuffer::from_slice(stream, &[initial_scale, 0.0, 0.0, 0.0])?;
        Ok(LossScaler {
            state,
            growth_interval,
        })
    }

    /// Flags the step as overflowed if any element of `grad` is infinite or NaN (does not
    /// synchronize).
    pub fn check(&mut self, stream: &Stream, grad: &impl AsDeviceSlice<f32>) -> Result<()> {
        let grad = grad.as_device_slice();
        let device = stream.device();
        device.check_same(grad.device())?;
        device.check_same(self.state.device())?;
        let n = grad.len();
        if n == 0 {
            return Ok(());
        }
        let kernel = NonfiniteCheck::kernel(device, (), None)?;
        let mut state = self.state.as_slice_mut();
        let mut acc = Access::new(stream)?;
        let grad = acc.read(&grad)?;
        let state = acc.write(&mut state)?;
        let mut args = NonfiniteCheck::new(n, grad, state)?;
        let config = grid_stride_config(n, device.properties().sm_count);
        run(stream, &kernel, config, &mut args)?;
        acc.finish()
    }

    /// Ends a step: adjusts the scale (halve after an overflow, grow after enough good steps)
    /// and clears the overflow flag. Call it after the optimizer steps.
    pub fn update(&mut self, stream: &Stream) -> Result<()> {
        let device = stream.device();
        device.check_same(self.state.device())?;
        let kernel = LossScaleUpdate::kernel(device, (), None)?;
        let mut state = self.state.as_slice_mut();
        let mut acc = Access::new(stream)?;
        let state = acc.write(&mut state)?;
        let mut args = LossScaleUpdate::new(state, self.growth_interval)?;
        run(stream, &kernel, LaunchConfig::for_num_elems(1), &mut args)?;
        acc.finish()
    }

    /// Reads the state back (waits for `stream`'s work so far).
    pub fn state(&self, stream: &Stream) -> Result<LossScaleState> {
        let s = self.state.to_vec(stream)?;
        let &[scale, good_steps, found_nonfinite, skipped_steps] = s.as_slice() else {
            return Err(Error::LengthMismatch {
                expected: 4,
                actual: s.len(),
            });
        };
        Ok(LossScaleState {
            scale,
            good_steps: good_steps as u32,
            found_nonfinite: found_nonfinite != 0.0,
            skipped_steps: skipped_steps as u32,
        })
    }

    /// The growth interval given to [`new`](Self::new).
    pub fn growth_interval(&self) -> u32 {
        self.growth_interval
    }
}

/// Stochastic gradient descent with momentum and weight decay (PyTorch's `torch.optim.SGD`
/// form) on f32 master weights: `d = g / scale + weight_decay · w; v = momentum · v + d;
/// w -= lr · v`, where `scale` is the [`LossScaler`]'s; nothing changes when the scaler has seen
/// an overflow this step.
///
/// ```no_run
/// use hikube_gpu::ops::train::{LossScaler, Sgd};
/// use hikube_gpu::{half::f16, Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.new_stream()?;
/// let n = 4096;
/// let mut master = DeviceBuffer::from_slice(&stream, &vec![0.01f32; n])?; // f32 weights
/// let mut weights = DeviceBuffer::<f16>::zeroed(&stream, n)?; // what the f16 GEMMs read
/// let mut velocity = DeviceBuffer::<f32>::zeroed(&stream, n)?;
/// let grad = DeviceBuffer::from_slice(&stream, &vec![1.0f32; n])?; // scaled by the loss scale
/// let mut scaler = LossScaler::new(&stream, 1024.0, 2000)?;
/// let sgd = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 1e-4 };
/// scaler.check(&stream, &grad)?;
/// sgd.step(&stream, &scaler, &mut master, &mut velocity, &grad, &mut weights)?;
/// scaler.update(&stream)?;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum (0: plain SGD).
    pub momentum: f32,
    /// L2 weight decay.
    pub weight_decay: f32,
}

impl Sgd {
    /// One step on `weights` (f32 master copy) with `velocity` (same length, zero at first)
    /// and the scaled gradient `grad`, then refreshes the working copy `low_precision` (f16 or
    /// bf16, or f32) from the new master weights.
    pub fn step<T: Float>(
        &self,
        stream: &Stream,
        scaler: &LossScaler,
        weights: &mut impl AsDeviceSliceMut<f32>,
        velocity: &mut impl AsDeviceSliceMut<f32>,
        grad: &impl AsDeviceSlice<f32>,
        low_precision: &mut impl AsDeviceSliceMut<T>,
    ) -> Result<()> {
        let mut lp = low_precision.as_device_slice_mut();
        stream.device().check_same(lp.device())?;
        let n = weights.as_device_slice_mut().len();
        same_len(n, lp.len())?;
        self.launch_step::<T>(stream, scaler, weights, velocity, grad, Some(&mut lp))
    }

    /// One step on `weights` alone (no low-precision copy to refresh), e.g. for a bias that the
    /// GEMM's f32 epilogue reads directly.
    pub fn step_f32(
        &self,
        stream: &Stream,
        scaler: &LossScaler,
        weights: &mut impl AsDeviceSliceMut<f32>,
        velocity: &mut impl AsDeviceSliceMut<f32>,
        grad: &impl AsDeviceSlice<f32>,
    ) -> Result<()> {
        self.launch_step::<f32>(stream, scaler, weights, velocity, grad, None)
    }

    fn launch_step<T: Float>(
        &self,
        stream: &Stream,
        scaler: &LossScaler,
        weights: &mut impl AsDeviceSliceMut<f32>,
        velocity: &mut impl AsDeviceSliceMut<f32>,
        grad: &impl AsDeviceSlice<f32>,
        low_precision: Option<&mut DeviceSliceMut<'_, T>>,
    ) -> Result<()> {
        let mut w = weights.as_device_slice_mut();
        let mut v = velocity.as_device_slice_mut();
        let g = grad.as_device_slice();
        let device = stream.device();
        for d in [w.device(), v.device(), g.device(), scaler.state.device()] {
            device.check_same(d)?;
        }
        let n = w.len();
        same_len(n, v.len())?;
        same_len(n, g.len())?;
        if n == 0 {
            return Ok(());
        }
        for (what, x) in [
            ("lr", self.lr),
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
        ] {
            if !x.is_finite() {
                return Err(Error::InvalidArgument {
                    what: format!("SGD {what} is {x}"),
                });
            }
        }
        let kernel = SgdStep::<T>::kernel(device, (), None)?;
        let state = scaler.state.as_device_slice();
        let mut acc = Access::new(stream)?;
        let w = acc.write(&mut w)?;
        let v = acc.write(&mut v)?;
        let g = acc.read(&g)?;
        let state = acc.read(&state)?;
        let low_precision = match low_precision {
            Some(lp) => acc.write(lp)?,
            None => Operand::NONE,
        };
        let hyper = (self.lr, self.momentum, self.weight_decay);
        let mut args = SgdStep::new(n, hyper, (w, v, g, low_precision, state))?;
        let config = grid_stride_config(n, device.properties().sm_count);
        run(stream, &kernel, config, &mut args)?;
        acc.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_kernel_dimensions_leave_room_for_the_counters() {
        assert_eq!(rows_of("x", MAX_DIM, 1).unwrap(), MAX_DIM);
        assert_eq!(rows_of("x", MAX_DIM, MAX_DIM).unwrap(), 1);
        for (len, cols) in [
            (MAX_DIM + 1, 1),
            (MAX_DIM + 1, MAX_DIM + 1),
            (i32::MAX as usize, 1),
        ] {
            assert!(
                matches!(
                    rows_of("x", len, cols),
                    Err(Error::TooLarge { max: MAX_DIM, .. })
                ),
                "{len} x {cols}"
            );
        }
        assert!(i32::try_from(MAX_DIM + 32).is_ok());
    }
}
