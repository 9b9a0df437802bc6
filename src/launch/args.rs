//! The parameters of the element-wise, pooling, training and layout kernels: one `#[repr(C)]`
//! struct per kernel signature family, mirroring the C signature named at it, whose doc comment
//! is the kernel's contract (what it reads and writes for the scalars it is given). Each is made
//! only by its constructor, which checks that contract against the operands' lengths (a pure
//! function of lengths and scalars, tested without a GPU below).
//!
//! Errors: a buffer too short is [`Error::BufferTooSmall`]; a size that overflows is
//! [`Error::InvalidArgument`] naming it (`crate::size`); a scalar past the kernel's integer type
//! is [`Error::TooLarge`]; a configuration the kernel is not safe under is
//! [`Error::InvalidArgument`].

use super::{exactly, one_dim, param, EarlyKernelArgs, KernelArgs, Symbol};
use crate::error::{Error, Result};
use crate::memory::access::{DevPtr, Operand};
use crate::memory::ensure_len;
use crate::ops::{Dtype, Float};
use crate::size;
use bytemuck::Pod;
use cudarc::driver::LaunchConfig;
use std::ffi::c_void;

/// `value` as the kernel's `int`, at most `max` (≤ `i32::MAX`): [`Error::TooLarge`] naming
/// `what` otherwise.
pub(crate) fn int(what: &str, value: usize, max: usize) -> Result<i32> {
    let max = max.min(i32::MAX as usize);
    if value <= max {
        i32::try_from(value).map_err(|_| too_large(what, value, max))
    } else {
        Err(too_large(what, value, max))
    }
}

/// Whether the strided run `first + i·step`, `i < count`, lies in `0..len`: `first` and `count`
/// non-negative, `step` at least 1, and the last element (the first, for an empty run) below
/// `len`, in 64 bits. The kernels' phases, taps and placed outputs are such runs.
pub(crate) fn run_within(first: i32, count: i32, step: i32, len: i32) -> bool {
    let last = i64::from(first) + (i64::from(count) - 1).max(0) * i64::from(step);
    first >= 0 && count >= 0 && step >= 1 && last < i64::from(len)
}

fn too_large(what: &str, value: usize, max: usize) -> Error {
    Error::TooLarge {
        what: what.to_string(),
        value,
        max,
    }
}

/// `value` as the kernels' `unsigned long long` (lossless: `usize` is at most 64 bits).
fn u64_of(value: usize) -> u64 {
    value as u64
}

/// Elements of the loss-scaling state (`kernels/train.cu`: scale, good steps, non-finite flag,
/// skipped steps).
pub(crate) const LOSS_STATE_LEN: usize = 4;

/// The most rows or columns the row kernels of `kernels/train.cu` take. They count in `int` and
/// step past the end by up to 32 (a warp's columns in softmax_xent, a block's in bias_grad), so
/// the bound leaves room below `i32::MAX` for that step: no counter overflows.
pub(crate) const MAX_ROW_DIM: usize = i32::MAX as usize - 64;

/// How a refused configuration names the grid-stride kernels.
const GRID_STRIDE: &str = "a grid-stride kernel";

/// The modules of these kernels.
const ELEMENTWISE: &str = "elementwise";
const POOLING: &str = "pooling";
const TRAIN: &str = "train";
const CONV_LAYOUT: &str = "conv_layout";

/// `<kernel>_<t>` in `module`: a kernel instantiated for `T`.
fn typed<T: Float>(module: &'static str, kernel: &str) -> Symbol {
    Symbol::any(module, format!("{kernel}_{}", T::SUFFIX))
}

// ---------------------------------------------------------------------------------------------
// kernels/elementwise.cu

/// `axpy_<t>(unsigned long long n, float alpha, const T* x, T* y)` (kernels/elementwise.cu):
/// `y[i] = alpha·x[i] + y[i]` for `i < n`, grid-stride (any one-dimensional grid). Reads
/// `x[0..n)`, reads and writes `y[0..n)`. Waits for earlier kernels (`hk::pdl_wait`) first.
#[repr(C)]
pub(crate) struct Axpy<T> {
    n: u64,
    alpha: f32,
    x: DevPtr<T>,
    y: DevPtr<T>,
}

impl<T: Float> Axpy<T> {
    pub(crate) fn new(n: usize, alpha: f32, x: Operand<T>, y: Operand<T>) -> Result<Self> {
        check_n2(n, ("x", x.len()), ("y", y.len()))?;
        Ok(Axpy {
            n: u64_of(n),
            alpha,
            x: x.ptr(),
            y: y.ptr(),
        })
    }
}

/// Two buffers of at least `n` elements each.
fn check_n2(
    n: usize,
    (a, a_len): (&'static str, usize),
    (b, b_len): (&'static str, usize),
) -> Result<()> {
    ensure_len(a, n, a_len)?;
    ensure_len(b, n, b_len)
}

// SAFETY: the fields are axpy_<t>'s four parameters in order (u64, f32, T*, T*); `new` checks x
// and y hold n elements; any one-dimensional grid is safe (`check_config`).
unsafe impl<T: Float> KernelArgs for Axpy<T> {
    type Params = [*mut c_void; 4];
    type Variant = ();
    fn symbol((): &()) -> Symbol {
        // Static names: the launch path of the smallest kernels allocates nothing.
        Symbol::any(
            ELEMENTWISE,
            match T::DTYPE {
                Dtype::F32 => "axpy_f32",
                Dtype::F16 => "axpy_f16",
                Dtype::Bf16 => "axpy_bf16",
            },
        )
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.n),
            param(&mut self.alpha),
            param(&mut self.x),
            param(&mut self.y),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        one_dim("axpy", config)
    }
}

// SAFETY: axpy_<t> calls hk::pdl_wait() before touching memory (kernels/elementwise.cu).
unsafe impl<T: Float> EarlyKernelArgs for Axpy<T> {}

// ---------------------------------------------------------------------------------------------
// kernels/pooling.cu

/// `global_avg_pool_nhwc_<t>(unsigned long long n, unsigned long long hw, unsigned long long c,
/// const T* x, T* y)` (kernels/pooling.cu): `y[b·c + ch]` = mean over `p < hw` of
/// `x[b·hw·c + p·c + ch]`, for `b < n`, `ch < c`, grid-stride over `n·c` (any one-dimensional
/// grid). Reads `x[0..n·hw·c)`, writes `y[0..n·c)`. Waits for earlier kernels first.
#[repr(C)]
pub(crate) struct GlobalAvgPool<T> {
    n: u64,
    hw: u64,
    c: u64,
    x: DevPtr<T>,
    y: DevPtr<T>,
}

impl<T: Float> GlobalAvgPool<T> {
    pub(crate) fn new(
        (n, hw, c): (usize, usize, usize),
        x: Operand<T>,
        y: Operand<T>,
    ) -> Result<Self> {
        Self::check((n, hw, c), x.len(), y.len())?;
        Ok(GlobalAvgPool {
            n: u64_of(n),
            hw: u64_of(hw),
            c: u64_of(c),
            x: x.ptr(),
            y: y.ptr(),
        })
    }

    fn check((n, hw, c): (usize, usize, usize), x_len: usize, y_len: usize) -> Result<()> {
        ensure_len(
            "x",
            size::product("global_avg_pool n x hw x c", &[n, hw, c])?,
            x_len,
        )?;
        ensure_len("y", size::mul("global_avg_pool n x c", n, c)?, y_len)
    }
}

// SAFETY: the fields are global_avg_pool_nhwc_<t>'s five parameters in order (u64, u64, u64,
// const T*, T*); `new` checks x holds n·hw·c and y n·c elements; any one-dimensional grid.
unsafe impl<T: Float> KernelArgs for GlobalAvgPool<T> {
    type Params = [*mut c_void; 5];
    type Variant = ();
    fn symbol((): &()) -> Symbol {
        Symbol::any(
            POOLING,
            match T::DTYPE {
                Dtype::F32 => "global_avg_pool_nhwc_f32",
                Dtype::F16 => "global_avg_pool_nhwc_f16",
                Dtype::Bf16 => "global_avg_pool_nhwc_bf16",
            },
        )
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.n),
            param(&mut self.hw),
            param(&mut self.c),
            param(&mut self.x),
            param(&mut self.y),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        one_dim("global_avg_pool", config)
    }
}

// SAFETY: global_avg_pool_nhwc_<t> calls hk::pdl_wait() first (kernels/pooling.cu).
unsafe impl<T: Float> EarlyKernelArgs for GlobalAvgPool<T> {}

// ---------------------------------------------------------------------------------------------
// kernels/train.cu

/// Rows of the softmax kernel's blocks (one warp per row).
const SOFTMAX_ROWS_PER_BLOCK: usize = 8;
/// Columns per block of the bias-gradient kernel (32 × 8 threads).
const BIAS_COLS_PER_BLOCK: usize = 32;

/// `softmax_xent_<g>(int rows, int cols, const float* logits, const unsigned* labels, const
/// float* state, G* grad, float* row_loss)` (kernels/train.cu): one warp per row, in blocks of
/// 8 warps ([`config`](Self::config), the only grid it takes: `int` row indices). Reads
/// `logits[0..rows·cols)`, `labels[0..rows)` and, unless null, `state[0]`; writes
/// `grad[0..rows·cols)` and `row_loss[0..rows)`. A label is an index only when below `cols`.
#[repr(C)]
pub(crate) struct SoftmaxXent<G> {
    rows: i32,
    cols: i32,
    logits: DevPtr<f32>,
    labels: DevPtr<u32>,
    state: DevPtr<f32>,
    grad: DevPtr<G>,
    row_loss: DevPtr<f32>,
}

/// The operands of [`SoftmaxXent`]: logits, labels, the loss-scaling state (or none), grad,
/// row_loss.
pub(crate) type SoftmaxOperands<G> = (
    Operand<f32>,
    Operand<u32>,
    Operand<f32>,
    Operand<G>,
    Operand<f32>,
);

impl<G: Float> SoftmaxXent<G> {
    pub(crate) fn new(
        rows: usize,
        cols: usize,
        (logits, labels, state, grad, row_loss): SoftmaxOperands<G>,
    ) -> Result<Self> {
        let lens = [logits.len(), labels.len(), grad.len(), row_loss.len()];
        let (rows_i, cols_i) = Self::check(rows, cols, lens, optional_state(&state))?;
        Ok(SoftmaxXent {
            rows: rows_i,
            cols: cols_i,
            logits: logits.ptr(),
            labels: labels.ptr(),
            state: state.ptr(),
            grad: grad.ptr(),
            row_loss: row_loss.ptr(),
        })
    }

    /// `[logits, labels, grad, row_loss]` lengths, and the state's (`None`: null).
    fn check(
        rows: usize,
        cols: usize,
        [logits, labels, grad, row_loss]: [usize; 4],
        state: Option<usize>,
    ) -> Result<(i32, i32)> {
        let rows_i = int("softmax rows", rows, MAX_ROW_DIM)?;
        let cols_i = int("softmax columns", cols, MAX_ROW_DIM)?;
        let elems = size::mul("softmax rows x cols", rows, cols)?;
        ensure_len("logits", elems, logits)?;
        ensure_len("grad", elems, grad)?;
        ensure_len("labels", rows, labels)?;
        ensure_len("row_loss", rows, row_loss)?;
        if let Some(len) = state {
            ensure_len("loss scaler state", 1, len)?;
        }
        Ok((rows_i, cols_i))
    }

    /// The kernel's grid: one warp per row, 8 rows per block.
    pub(crate) fn config(&self) -> LaunchConfig {
        let rows = usize::try_from(self.rows).unwrap_or(0);
        LaunchConfig {
            grid_dim: (rows.div_ceil(SOFTMAX_ROWS_PER_BLOCK) as u32, 1, 1),
            block_dim: ((SOFTMAX_ROWS_PER_BLOCK * 32) as u32, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// The length of an optional operand, `None` when absent (null).
fn optional_state<T>(op: &Operand<T>) -> Option<usize> {
    (!op.is_none()).then_some(op.len())
}

// SAFETY: the fields are softmax_xent_<g>'s seven parameters in order (int, int, const float*,
// const unsigned*, const float*, G*, float*); `new` checks every extent above (state null or
// one float at least), rows and cols ≤ MAX_ROW_DIM so no int counter overflows; only the grid
// of `config` is accepted (whole warps, rows below i32::MAX).
unsafe impl<G: Float> KernelArgs for SoftmaxXent<G> {
    type Params = [*mut c_void; 7];
    type Variant = ();
    fn symbol((): &()) -> Symbol {
        typed::<G>(TRAIN, "softmax_xent")
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.rows),
            param(&mut self.cols),
            param(&mut self.logits),
            param(&mut self.labels),
            param(&mut self.state),
            param(&mut self.grad),
            param(&mut self.row_loss),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        exactly("softmax_xent", config, &self.config())
    }
}

/// `relu_backward_<t>(unsigned long long n, const T* y, T* dy)` (kernels/train.cu),
/// grid-stride: reads `y[0..n)`, reads and writes `dy[0..n)`.
#[repr(C)]
pub(crate) struct ReluBackward<T> {
    n: u64,
    y: DevPtr<T>,
    dy: DevPtr<T>,
}

impl<T: Float> ReluBackward<T> {
    pub(crate) fn new(n: usize, y: Operand<T>, dy: Operand<T>) -> Result<Self> {
        check_n2(n, ("y", y.len()), ("dy", dy.len()))?;
        Ok(ReluBackward {
            n: u64_of(n),
            y: y.ptr(),
            dy: dy.ptr(),
        })
    }
}

// SAFETY: the fields are relu_backward_<t>'s three parameters in order; `new` checks y and dy
// hold n elements; grid-stride over any one-dimensional grid.
unsafe impl<T: Float> KernelArgs for ReluBackward<T> {
    type Params = [*mut c_void; 3];
    type Variant = ();
    fn symbol((): &()) -> Symbol {
        typed::<T>(TRAIN, "relu_backward")
    }
    fn params(&mut self) -> Self::Params {
        [param(&mut self.n), param(&mut self.y), param(&mut self.dy)]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        one_dim(GRID_STRIDE, config)
    }
}

/// `bias_grad_<t>(int rows, int cols, const T* dy, float* db)` (kernels/train.cu): blocks of
/// 32 × 8 threads own 32 columns each ([`config`](Self::config), the only grid it takes: its
/// shared tile is 8 × 33). Reads `dy[0..rows·cols)`, writes `db[0..cols)`.
#[repr(C)]
pub(crate) struct BiasGrad<T> {
    rows: i32,
    cols: i32,
    dy: DevPtr<T>,
    db: DevPtr<f32>,
}

impl<T: Float> BiasGrad<T> {
    pub(crate) fn new(rows: usize, cols: usize, dy: Operand<T>, db: Operand<f32>) -> Result<Self> {
        let (rows_i, cols_i) = Self::check(rows, cols, dy.len(), db.len())?;
        Ok(BiasGrad {
            rows: rows_i,
            cols: cols_i,
            dy: dy.ptr(),
            db: db.ptr(),
        })
    }

    fn check(rows: usize, cols: usize, dy: usize, db: usize) -> Result<(i32, i32)> {
        let rows_i = int("bias_grad rows", rows, MAX_ROW_DIM)?;
        let cols_i = int("bias_grad columns", cols, MAX_ROW_DIM)?;
        ensure_len("dy", size::mul("bias_grad rows x cols", rows, cols)?, dy)?;
        ensure_len("db", cols, db)?;
        Ok((rows_i, cols_i))
    }

    /// The kernel's grid: a block of 32 × 8 threads per 32 columns.
    pub(crate) fn config(&self) -> LaunchConfig {
        let cols = usize::try_from(self.cols).unwrap_or(0);
        LaunchConfig {
            grid_dim: (cols.div_ceil(BIAS_COLS_PER_BLOCK) as u32, 1, 1),
            block_dim: (BIAS_COLS_PER_BLOCK as u32, 8, 1),
            shared_mem_bytes: 0,
        }
    }
}

// SAFETY: the fields are bias_grad_<t>'s four parameters in order; `new` checks dy holds
// rows·cols and db cols elements (the kernel guards col < cols), and only `config`'s grid is
// accepted (the 8 × 33 shared tile, int column indices).
unsafe impl<T: Float> KernelArgs for BiasGrad<T> {
    type Params = [*mut c_void; 4];
    type Variant = ();
    fn symbol((): &()) -> Symbol {
        typed::<T>(TRAIN, "bias_grad")
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.rows),
            param(&mut self.cols),
            param(&mut self.dy),
            param(&mut self.db),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        exactly("bias_grad", config, &self.config())
    }
}

/// `cast_f32_<t>(unsigned long long n, const float* src, T* dst)` (kernels/train.cu),
/// grid-stride: reads `src[0..n)`, writes `dst[0..n)`.
#[repr(C)]
pub(crate) struct CastF32<T> {
    n: u64,
    src: DevPtr<f32>,
    dst: DevPtr<T>,
}

impl<T: Float> CastF32<T> {
    pub(crate) fn new(n: usize, src: Operand<f32>, dst: Operand<T>) -> Result<Self> {
        check_n2(n, ("src", src.len()), ("dst", dst.len()))?;
        Ok(CastF32 {
            n: u64_of(n),
            src: src.ptr(),
            dst: dst.ptr(),
        })
    }
}

// SAFETY: the fields are cast_f32_<t>'s three parameters in order; `new` checks src and dst hold
// n elements; grid-stride over any one-dimensional grid.
unsafe impl<T: Float> KernelArgs for CastF32<T> {
    type Params = [*mut c_void; 3];
    type Variant = ();
    fn symbol((): &()) -> Symbol {
        typed::<T>(TRAIN, "cast_f32")
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.n),
            param(&mut self.src),
            param(&mut self.dst),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        one_dim(GRID_STRIDE, config)
    }
}

/// `nonfinite_check_f32(unsigned long long n, const float* g, float* state)`
/// (kernels/train.cu), grid-stride: reads `g[0..n)`, writes `state[2]` (of the four floats).
#[repr(C)]
pub(crate) struct NonfiniteCheck {
    n: u64,
    g: DevPtr<f32>,
    state: DevPtr<f32>,
}

impl NonfiniteCheck {
    pub(crate) fn new(n: usize, g: Operand<f32>, state: Operand<f32>) -> Result<Self> {
        ensure_len("gradient", n, g.len())?;
        ensure_len("loss scaler state", LOSS_STATE_LEN, state.len())?;
        Ok(NonfiniteCheck {
            n: u64_of(n),
            g: g.ptr(),
            state: state.ptr(),
        })
    }
}

// SAFETY: the fields are nonfinite_check_f32's three parameters in order; `new` checks g holds
// n elements and state the four floats; grid-stride over any one-dimensional grid.
unsafe impl KernelArgs for NonfiniteCheck {
    type Params = [*mut c_void; 3];
    type Variant = ();
    fn symbol((): &()) -> Symbol {
        Symbol::any(TRAIN, "nonfinite_check_f32")
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.n),
            param(&mut self.g),
            param(&mut self.state),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        one_dim(GRID_STRIDE, config)
    }
}

/// `loss_scale_update(float* state, unsigned growth_interval)` (kernels/train.cu): thread 0 of
/// block 0 alone reads and writes `state[0..4)`; every other thread returns (any grid).
#[repr(C)]
pub(crate) struct LossScaleUpdate {
    state: DevPtr<f32>,
    growth_interval: u32,
}

impl LossScaleUpdate {
    pub(crate) fn new(state: Operand<f32>, growth_interval: u32) -> Result<Self> {
        ensure_len("loss scaler state", LOSS_STATE_LEN, state.len())?;
        Ok(LossScaleUpdate {
            state: state.ptr(),
            growth_interval,
        })
    }
}

// SAFETY: the fields are loss_scale_update's two parameters in order; `new` checks state holds
// the four floats; one thread works whatever the grid.
unsafe impl KernelArgs for LossScaleUpdate {
    type Params = [*mut c_void; 2];
    type Variant = ();
    fn symbol((): &()) -> Symbol {
        Symbol::any(TRAIN, "loss_scale_update")
    }
    fn params(&mut self) -> Self::Params {
        [param(&mut self.state), param(&mut self.growth_interval)]
    }
    fn check_config(&self, _: &LaunchConfig) -> Result<()> {
        Ok(())
    }
}

/// `sgd_step_<t>(unsigned long long n, float* w, float* v, const float* g, T* w_lp, float lr,
/// float momentum, float weight_decay, const float* state)` (kernels/train.cu), grid-stride:
/// reads `state[0]` and `state[2]`; reads `g[0..n)`; reads and writes `w[0..n)`, `v[0..n)`;
/// writes `w_lp[0..n)` unless null.
#[repr(C)]
pub(crate) struct SgdStep<T> {
    n: u64,
    w: DevPtr<f32>,
    v: DevPtr<f32>,
    g: DevPtr<f32>,
    w_lp: DevPtr<T>,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    state: DevPtr<f32>,
}

/// The operands of [`SgdStep`]: w, v, g, w_lp (or none), state.
pub(crate) type SgdOperands<T> = (
    Operand<f32>,
    Operand<f32>,
    Operand<f32>,
    Operand<T>,
    Operand<f32>,
);

impl<T: Float> SgdStep<T> {
    pub(crate) fn new(
        n: usize,
        (lr, momentum, weight_decay): (f32, f32, f32),
        (w, v, g, w_lp, state): SgdOperands<T>,
    ) -> Result<Self> {
        Self::check(
            n,
            [w.len(), v.len(), g.len()],
            optional_state(&w_lp),
            state.len(),
        )?;
        Ok(SgdStep {
            n: u64_of(n),
            w: w.ptr(),
            v: v.ptr(),
            g: g.ptr(),
            w_lp: w_lp.ptr(),
            lr,
            momentum,
            weight_decay,
            state: state.ptr(),
        })
    }

    fn check(n: usize, [w, v, g]: [usize; 3], w_lp: Option<usize>, state: usize) -> Result<()> {
        ensure_len("weights", n, w)?;
        ensure_len("velocity", n, v)?;
        ensure_len("gradient", n, g)?;
        if let Some(len) = w_lp {
            ensure_len("low-precision weights", n, len)?;
        }
        ensure_len("loss scaler state", LOSS_STATE_LEN, state)
    }
}

// SAFETY: the fields are sgd_step_<t>'s nine parameters in order; `new` checks w, v, g (and
// w_lp unless null) hold n elements and state the four floats; grid-stride over any
// one-dimensional grid.
unsafe impl<T: Float> KernelArgs for SgdStep<T> {
    type Params = [*mut c_void; 9];
    type Variant = ();
    fn symbol((): &()) -> Symbol {
        typed::<T>(TRAIN, "sgd_step")
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.n),
            param(&mut self.w),
            param(&mut self.v),
            param(&mut self.g),
            param(&mut self.w_lp),
            param(&mut self.lr),
            param(&mut self.momentum),
            param(&mut self.weight_decay),
            param(&mut self.state),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        one_dim(GRID_STRIDE, config)
    }
}

// ---------------------------------------------------------------------------------------------
// kernels/conv/conv_layout.cu

/// The most rows [`Transpose`] takes: 32 per block along the grid's y, at most 65535 blocks.
pub(crate) const TRANSPOSE_MAX_ROWS: usize = 65535 * 32;

/// The layout transpose that moves words of `word` bytes (a name no kernel has for other sizes,
/// which [`Transpose::new`] refuses).
const fn transpose_kernel(word: usize) -> &'static str {
    match word {
        1 => "transpose_b8",
        2 => "transpose_b16",
        4 => "transpose_b32",
        _ => "transpose of an unsupported word size",
    }
}

/// `transpose_b8/_b16/_b32(const W* src, W* dst, int batch, int rows, int cols)`
/// (kernels/conv/conv_layout.cu), with `W` the 8-, 16- or 32-bit word of `T`: `dst[b][j][i] =
/// src[b][i][j]` for `b < batch`, `i < rows`, `j < cols` (every access guarded). Reads
/// `src[0..batch·rows·cols)`, writes `dst[0..batch·rows·cols)`. Takes only
/// [`config`](Self::config)'s grid: 32 × 8 blocks (its 32 × 33 shared tile) over 32 × 32
/// tiles, `int` tile offsets.
#[repr(C)]
pub(crate) struct Transpose<T> {
    src: DevPtr<T>,
    dst: DevPtr<T>,
    batch: i32,
    rows: i32,
    cols: i32,
}

impl<T: Pod> Transpose<T> {
    pub(crate) fn new(
        (batch, rows, cols): (usize, usize, usize),
        src: Operand<T>,
        dst: Operand<T>,
    ) -> Result<Self> {
        let [batch, rows, cols] = Self::check(
            std::mem::size_of::<T>(),
            (batch, rows, cols),
            src.len(),
            dst.len(),
        )?;
        Ok(Transpose {
            src: src.ptr(),
            dst: dst.ptr(),
            batch,
            rows,
            cols,
        })
    }

    fn check(
        word: usize,
        (batch, rows, cols): (usize, usize, usize),
        src: usize,
        dst: usize,
    ) -> Result<[i32; 3]> {
        if ![1, 2, 4].contains(&word) {
            return Err(Error::InvalidArgument {
                what: format!(
                    "the layout transposes move 8-, 16- or 32-bit words, not {word} bytes"
                ),
            });
        }
        let total = size::product("layout transpose elements", &[batch, rows, cols])?;
        ensure_len("src", total, src)?;
        ensure_len("dst", total, dst)?;
        let i32max = i32::MAX as usize;
        Ok([
            int("layout transpose batch", batch, i32max)?,
            int("layout transpose rows", rows, TRANSPOSE_MAX_ROWS)?,
            int("layout transpose columns", cols, i32max)?,
        ])
    }

    /// The kernel's grid: x over 32-column tiles, y over 32-row tiles, z striding over the
    /// batch (at most 65535 blocks).
    pub(crate) fn config(&self) -> LaunchConfig {
        let dim = |v: i32| usize::try_from(v).unwrap_or(0);
        LaunchConfig {
            grid_dim: (
                dim(self.cols).div_ceil(32) as u32,
                dim(self.rows).div_ceil(32) as u32,
                dim(self.batch).min(65535) as u32,
            ),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        }
    }
}

// SAFETY: the fields are transpose_b8/_b16/_b32's five parameters in order (`symbol` picks the
// kernel whose word is T's size, and `new` accepts only 1, 2 or 4 bytes, the sizes with a
// kernel); `new` checks both buffers hold batch·rows·cols elements and the dimensions fit the
// kernel's ints; only `config`'s grid is accepted.
unsafe impl<T: Pod> KernelArgs for Transpose<T> {
    type Params = [*mut c_void; 5];
    type Variant = ();
    fn symbol((): &()) -> Symbol {
        Symbol::any(CONV_LAYOUT, transpose_kernel(std::mem::size_of::<T>()))
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.src),
            param(&mut self.dst),
            param(&mut self.batch),
            param(&mut self.rows),
            param(&mut self.cols),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        exactly("transpose", config, &self.config())
    }
}

/// `pad_pixels_b16(const unsigned short* src, unsigned short* dst, int rows, int c, int cp)`
/// (kernels/conv/conv_layout.cu): `dst[row·cp + j] = j < c ? src[row·c + j] : 0` for `row <
/// rows`, `j < cp`, grid-stride in `int` over the rows. Reads `src[0..rows·c)`, writes
/// `dst[0..rows·cp)`; both products, and the last row plus the grid's threads, below 2³¹.
#[repr(C)]
pub(crate) struct PadPixels<T> {
    src: DevPtr<T>,
    dst: DevPtr<T>,
    rows: i32,
    c: i32,
    cp: i32,
}

impl<T: Pod> PadPixels<T> {
    pub(crate) fn new(
        (rows, c, cp): (usize, usize, usize),
        src: Operand<T>,
        dst: Operand<T>,
    ) -> Result<Self> {
        let [rows, c, cp] = Self::check(
            std::mem::size_of::<T>(),
            (rows, c, cp),
            src.len(),
            dst.len(),
        )?;
        Ok(PadPixels {
            src: src.ptr(),
            dst: dst.ptr(),
            rows,
            c,
            cp,
        })
    }

    fn check(
        word: usize,
        (rows, c, cp): (usize, usize, usize),
        src: usize,
        dst: usize,
    ) -> Result<[i32; 3]> {
        b16(word)?;
        let i32max = i32::MAX as usize;
        let read = size::mul("padded source elements", rows, c)?;
        let written = size::mul("padded input elements", rows, cp)?;
        ensure_len("padded source", read, src)?;
        ensure_len("padded copy", written, dst)?;
        int("padded source elements", read, i32max)?;
        int("padded input elements", written, i32max)?;
        Ok([
            int("padded rows", rows, i32max)?,
            int("padded source channels", c, i32max)?,
            int("padded channels", cp, i32max)?,
        ])
    }
}

/// [`Error::InvalidArgument`] unless the element is the 16-bit word the padding kernels move.
fn b16(word: usize) -> Result<()> {
    if word == 2 {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: format!("the padding kernels move 16-bit words, not {word} bytes"),
        })
    }
}

// SAFETY: the fields are pad_pixels_b16's five parameters in order (T is 2 bytes, checked);
// `new` checks src holds rows·c and dst rows·cp elements, both below 2³¹; `check_config`
// keeps the grid-stride row counter (`int`) from overflowing.
unsafe impl<T: Pod> KernelArgs for PadPixels<T> {
    type Params = [*mut c_void; 5];
    type Variant = ();
    fn symbol((): &()) -> Symbol {
        Symbol::any(CONV_LAYOUT, "pad_pixels_b16")
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.src),
            param(&mut self.dst),
            param(&mut self.rows),
            param(&mut self.c),
            param(&mut self.cp),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        one_dim("pad_pixels", config)?;
        let threads = u64::from(config.grid_dim.0) * u64::from(config.block_dim.0);
        let rows = u64::try_from(self.rows).unwrap_or(u64::MAX);
        if threads.saturating_add(rows) > i32::MAX as u64 {
            return Err(super::bad_config(
                "pad_pixels",
                "the rows and the grid's threads overflow the kernel's int counter",
                config,
            ));
        }
        Ok(())
    }
}

/// `pad_rows_b16(const unsigned short* src, unsigned short* dst, long long rows, int taps, int
/// c, int cp, int ld)` (kernels/conv/conv_layout.cu): for `i < rows·ld` (grid-stride, 64-bit),
/// `dst[i]` = tap `t = j / cp`, channel `ci = j % cp` of `src[(row·taps + t)·c + ci]` where
/// `t < taps` and `ci < c`, else 0 (`row = i / ld`, `j = i % ld`). Reads
/// `src[0..rows·taps·c)`, writes `dst[0..rows·ld)`; `cp` ≥ 1 (it divides by it).
#[repr(C)]
pub(crate) struct PadRows<T> {
    src: DevPtr<T>,
    dst: DevPtr<T>,
    rows: i64,
    taps: i32,
    c: i32,
    cp: i32,
    ld: i32,
}

impl<T: Pod> PadRows<T> {
    pub(crate) fn new(
        shape: (usize, usize, usize, usize, usize),
        src: Operand<T>,
        dst: Operand<T>,
    ) -> Result<Self> {
        let (rows, [taps, c, cp, ld]) =
            Self::check(std::mem::size_of::<T>(), shape, src.len(), dst.len())?;
        Ok(PadRows {
            src: src.ptr(),
            dst: dst.ptr(),
            rows,
            taps,
            c,
            cp,
            ld,
        })
    }

    fn check(
        word: usize,
        (rows, taps, c, cp, ld): (usize, usize, usize, usize, usize),
        src: usize,
        dst: usize,
    ) -> Result<(i64, [i32; 4])> {
        b16(word)?;
        let read = size::product("padded source elements", &[rows, taps, c])?;
        let written = size::mul("padded copy elements", rows, ld)?;
        ensure_len("padded source", read, src)?;
        ensure_len("padded copy", written, dst)?;
        if cp == 0 {
            return Err(Error::InvalidDimension {
                what: "padded channels (cp)".into(),
                value: 0,
                min: 1,
            });
        }
        let i64max = i64::MAX as usize;
        if written > i64max || read > i64max {
            return Err(too_large("padded copy elements", written.max(read), i64max));
        }
        let i32max = i32::MAX as usize;
        Ok((
            i64::try_from(rows).map_err(|_| too_large("padded rows", rows, i64max))?,
            [
                int("filter taps", taps, i32max)?,
                int("padded source channels", c, i32max)?,
                int("padded channels", cp, i32max)?,
                int("padded row length", ld, i32max)?,
            ],
        ))
    }
}

// SAFETY: the fields are pad_rows_b16's seven parameters in order (T is 2 bytes, checked);
// `new` checks src holds rows·taps·c and dst rows·ld elements (below i64::MAX, so the kernel's
// 64-bit indices hold) and cp ≥ 1; grid-stride in 64 bits over any one-dimensional grid.
unsafe impl<T: Pod> KernelArgs for PadRows<T> {
    type Params = [*mut c_void; 7];
    type Variant = ();
    fn symbol((): &()) -> Symbol {
        Symbol::any(CONV_LAYOUT, "pad_rows_b16")
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.src),
            param(&mut self.dst),
            param(&mut self.rows),
            param(&mut self.taps),
            param(&mut self.c),
            param(&mut self.cp),
            param(&mut self.ld),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        one_dim("pad_rows", config)
    }
}

/// Which taps of a KRSC filter [`FlipFilter`] reads, mirroring `hk::FlipTaps`
/// (kernels/conv/conv_layout.cu): destination tap `(jh, jw)` of `taps_h × taps_w` is source tap
/// `(r0 + (taps_h − 1 − jh)·tr, s0 + (taps_w − 1 − jw)·ts)` of a filter of `src_s` taps a row
/// and `src_taps` in all.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FlipTaps {
    pub taps_h: i32,
    pub taps_w: i32,
    pub r0: i32,
    pub s0: i32,
    pub tr: i32,
    pub ts: i32,
    pub src_s: i32,
    pub src_taps: i32,
}

const _: () = assert!(std::mem::size_of::<FlipTaps>() == 32);

impl FlipTaps {
    /// Every tap of an `r × s` filter, reversed (the stride-1 data gradient's filter).
    pub(crate) fn whole(r: usize, s: usize) -> Result<Self> {
        let i32max = i32::MAX as usize;
        let taps = size::product("filter taps", &[r, s])?;
        let (r, s, taps) = (
            int("filter rows", r, i32max)?,
            int("filter columns", s, i32max)?,
            int("filter taps", taps, i32max)?,
        );
        Ok(FlipTaps {
            taps_h: r,
            taps_w: s,
            tr: 1,
            ts: 1,
            src_s: s,
            src_taps: taps,
            ..Default::default()
        })
    }

    /// Destination taps (`taps_h·taps_w`), after checking that every source tap lies in the
    /// source filter ([`run_within`]: rows `r0 + i·tr` below `src_taps / src_s`, columns `s0 +
    /// j·ts` below `src_s`).
    fn check(&self) -> Result<usize> {
        let ok = self.src_s > 0
            && self.src_taps % self.src_s == 0
            && run_within(self.r0, self.taps_h, self.tr, self.src_taps / self.src_s)
            && run_within(self.s0, self.taps_w, self.ts, self.src_s);
        if !ok {
            return Err(Error::InvalidArgument {
                what: format!("filter taps {self:?} outside the source filter"),
            });
        }
        Ok(self.taps_h as usize * self.taps_w as usize)
    }
}

/// `flip_filter_b16(const T* src, T* dst, int k, int c, FlipTaps f)`
/// (kernels/conv/conv_layout.cu): `dst[(ci·taps + t)·k + ki] = src[(ki·src_taps + tap(t))·c +
/// ci]` for `ki < k`, `t < taps = taps_h·taps_w`, `ci < c`, `tap` [`FlipTaps`]' (every access
/// guarded, 64-bit indices). Reads `src[0..k·src_taps·c)`, writes `dst[0..c·taps·k)`. Takes only
/// [`config`](Self::config)'s grid: 32 × 8 blocks (its 32 × 33 shared tile) over 32 × 32 tiles
/// of C × K, z striding over the destination taps.
#[repr(C)]
pub(crate) struct FlipFilter<T> {
    src: DevPtr<T>,
    dst: DevPtr<T>,
    k: i32,
    c: i32,
    taps: FlipTaps,
}

impl<T: Pod> FlipFilter<T> {
    /// `(k, c)`: the filters and channels; `taps`: which taps, in which order.
    pub(crate) fn new(
        (k, c): (usize, usize),
        taps: FlipTaps,
        src: Operand<T>,
        dst: Operand<T>,
    ) -> Result<Self> {
        let [k, c] = Self::check(
            std::mem::size_of::<T>(),
            (k, c),
            &taps,
            src.len(),
            dst.len(),
        )?;
        Ok(FlipFilter {
            src: src.ptr(),
            dst: dst.ptr(),
            k,
            c,
            taps,
        })
    }

    fn check(
        word: usize,
        (k, c): (usize, usize),
        taps: &FlipTaps,
        src: usize,
        dst: usize,
    ) -> Result<[i32; 2]> {
        b16(word)?;
        let out_taps = taps.check()?;
        let src_taps = usize::try_from(taps.src_taps).unwrap_or(0);
        let len = size::product("filter elements", &[k, src_taps, c])?;
        ensure_len("filter", len, src)?;
        let len = size::product("flipped filter elements", &[k, out_taps, c])?;
        ensure_len("flipped filter", len, dst)?;
        Ok([
            int("filters", k, TRANSPOSE_MAX_ROWS)?,
            int("filter channels", c, i32::MAX as usize)?,
        ])
    }

    /// The kernel's grid: x over 32-channel tiles, y over 32-filter tiles, z striding over the
    /// destination taps (at most 65535 blocks).
    pub(crate) fn config(&self) -> LaunchConfig {
        let dim = |v: i32| usize::try_from(v).unwrap_or(0);
        LaunchConfig {
            grid_dim: (
                dim(self.c).div_ceil(32) as u32,
                dim(self.k).div_ceil(32) as u32,
                (dim(self.taps.taps_h) * dim(self.taps.taps_w)).clamp(1, 65535) as u32,
            ),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        }
    }
}

// SAFETY: the fields are flip_filter_b16's five parameters in order (T is 2 bytes, checked;
// `FlipTaps` mirrors the kernel's struct, 32 bytes); `new` checks src holds k·src_taps·c
// elements, dst k·taps·c, every tap the kernel reads lies in the source filter (the kernel
// guards each index and computes it in 64 bits) and k within the grid's y; only `config`'s grid
// is accepted (the 32 × 8 block its shared tile assumes).
unsafe impl<T: Pod> KernelArgs for FlipFilter<T> {
    type Params = [*mut c_void; 5];
    type Variant = ();
    fn symbol((): &()) -> Symbol {
        Symbol::any(CONV_LAYOUT, "flip_filter_b16")
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.src),
            param(&mut self.dst),
            param(&mut self.k),
            param(&mut self.c),
            param(&mut self.taps),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        exactly("flip_filter", config, &self.config())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn too_small(r: Result<impl std::fmt::Debug>, operand: &str) {
        match r {
            Err(Error::BufferTooSmall { operand: o, .. }) => assert_eq!(o, operand),
            other => panic!("expected {operand} too small, got {other:?}"),
        }
    }

    fn overflows(r: Result<impl std::fmt::Debug>) {
        assert!(
            matches!(
                r,
                Err(Error::InvalidArgument { .. }) | Err(Error::TooLarge { .. })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn transposes_move_words_of_the_element_size() {
        assert_eq!(transpose_kernel(1), "transpose_b8");
        assert_eq!(transpose_kernel(2), "transpose_b16");
        assert_eq!(transpose_kernel(4), "transpose_b32");
        let refused = Transpose::<f64>::check(8, (1, 1, 1), 1, 1);
        assert!(matches!(refused, Err(Error::InvalidArgument { .. })));
    }

    #[test]
    fn two_vectors_of_n() {
        assert!(check_n2(5, ("x", 5), ("y", 5)).is_ok());
        assert!(check_n2(0, ("x", 0), ("y", 0)).is_ok());
        too_small(check_n2(5, ("x", 4), ("y", 5)), "x");
        too_small(check_n2(5, ("x", 5), ("y", 4)), "y");
        too_small(check_n2(usize::MAX, ("x", usize::MAX), ("y", 0)), "y");
    }

    #[test]
    fn pooling_reach() {
        let check = GlobalAvgPool::<f32>::check;
        assert!(check((2, 3, 4), 24, 8).is_ok());
        too_small(check((2, 3, 4), 23, 8), "x");
        too_small(check((2, 3, 4), 24, 7), "y");
        overflows(check((usize::MAX, 2, 2), usize::MAX, usize::MAX));
        overflows(check((1 << 32, 1 << 32, 1), usize::MAX, usize::MAX));
    }

    #[test]
    fn softmax_reach() {
        let check = SoftmaxXent::<f32>::check;
        assert!(check(3, 5, [15, 3, 15, 3], None).is_ok());
        assert!(check(3, 5, [15, 3, 15, 3], Some(1)).is_ok());
        too_small(check(3, 5, [14, 3, 15, 3], None), "logits");
        too_small(check(3, 5, [15, 2, 15, 3], None), "labels");
        too_small(check(3, 5, [15, 3, 14, 3], None), "grad");
        too_small(check(3, 5, [15, 3, 15, 2], None), "row_loss");
        too_small(check(3, 5, [15, 3, 15, 3], Some(0)), "loss scaler state");
        overflows(check(MAX_ROW_DIM + 1, 1, [usize::MAX; 4], None));
        overflows(check(1, i32::MAX as usize, [usize::MAX; 4], None));
        assert!(check(MAX_ROW_DIM, MAX_ROW_DIM, [usize::MAX; 4], None).is_ok());
    }

    #[test]
    fn bias_grad_reach() {
        let check = BiasGrad::<f32>::check;
        assert!(check(4, 3, 12, 3).is_ok());
        assert!(check(0, 3, 0, 3).is_ok());
        too_small(check(4, 3, 11, 3), "dy");
        too_small(check(4, 3, 12, 2), "db");
        overflows(check(usize::MAX, 1, usize::MAX, 1));
    }

    #[test]
    fn sgd_reach() {
        let check = SgdStep::<f32>::check;
        assert!(check(7, [7, 7, 7], None, 4).is_ok());
        assert!(check(7, [7, 7, 7], Some(7), 4).is_ok());
        too_small(check(7, [6, 7, 7], None, 4), "weights");
        too_small(check(7, [7, 6, 7], None, 4), "velocity");
        too_small(check(7, [7, 7, 6], None, 4), "gradient");
        too_small(check(7, [7, 7, 7], Some(6), 4), "low-precision weights");
        too_small(check(7, [7, 7, 7], None, 3), "loss scaler state");
    }

    #[test]
    fn transpose_reach() {
        let check = Transpose::<u16>::check;
        assert_eq!(check(2, (2, 3, 5), 30, 30).unwrap(), [2, 3, 5]);
        too_small(check(2, (2, 3, 5), 29, 30), "src");
        too_small(check(2, (2, 3, 5), 30, 29), "dst");
        overflows(check(2, (usize::MAX, 2, 1), usize::MAX, usize::MAX));
        overflows(check(
            2,
            (1, TRANSPOSE_MAX_ROWS + 1, 1),
            usize::MAX,
            usize::MAX,
        ));
        overflows(check(
            4,
            (1, 1, i32::MAX as usize + 1),
            usize::MAX,
            usize::MAX,
        ));
        assert!(check(8, (1, 1, 1), 1, 1).is_err());
    }

    #[test]
    fn strided_runs() {
        assert!(run_within(1, 3, 2, 6)); // 1, 3, 5
        assert!(!run_within(1, 3, 2, 5));
        assert!(run_within(4, 0, 1, 5)); // empty: its first must still be inside
        assert!(!run_within(5, 0, 1, 5));
        assert!(!run_within(-1, 1, 1, 5));
        assert!(!run_within(0, -1, 1, 5));
        assert!(!run_within(0, 2, 0, 5));
        assert!(!run_within(0, i32::MAX, i32::MAX, i32::MAX)); // past 32 bits, computed in 64
    }

    #[test]
    fn flip_filter_reach() {
        let check = FlipFilter::<u16>::check;
        let whole = FlipTaps::whole(3, 3).unwrap();
        assert_eq!(check(2, (4, 3), &whole, 108, 108).unwrap(), [4, 3]);
        too_small(check(2, (4, 3), &whole, 107, 108), "filter");
        too_small(check(2, (4, 3), &whole, 108, 107), "flipped filter");
        // A phase of a stride-2 3x3 filter: taps (0, 2) x (1): 2 of 9.
        let phase = FlipTaps {
            taps_h: 2,
            taps_w: 1,
            r0: 0,
            s0: 1,
            tr: 2,
            ts: 2,
            ..whole
        };
        assert_eq!(check(2, (4, 3), &phase, 108, 24).unwrap(), [4, 3]);
        too_small(check(2, (4, 3), &phase, 108, 23), "flipped filter");
        for bad in [
            FlipTaps { r0: 1, ..phase },
            FlipTaps { s0: 3, ..phase },
            FlipTaps { tr: -1, ..phase },
            FlipTaps { src_s: 0, ..phase },
            FlipTaps { src_s: 2, ..phase },
            FlipTaps {
                taps_h: i32::MAX,
                ..phase
            },
        ] {
            assert!(
                matches!(
                    check(2, (4, 3), &bad, 108, 108),
                    Err(Error::InvalidArgument { .. })
                ),
                "{bad:?}"
            );
        }
        overflows(check(2, (usize::MAX, 1), &whole, usize::MAX, usize::MAX));
        overflows(check(
            2,
            (TRANSPOSE_MAX_ROWS + 1, 1),
            &whole,
            usize::MAX,
            usize::MAX,
        ));
        assert!(check(4, (1, 1), &whole, 9, 9).is_err());
        assert!(FlipTaps::whole(usize::MAX, 2).is_err());
    }

    #[test]
    fn padding_reach() {
        let pixels = PadPixels::<u16>::check;
        assert_eq!(pixels(2, (4, 3, 8), 12, 32).unwrap(), [4, 3, 8]);
        too_small(pixels(2, (4, 3, 8), 11, 32), "padded source");
        too_small(pixels(2, (4, 3, 8), 12, 31), "padded copy");
        overflows(pixels(2, (1 << 28, 3, 8), usize::MAX, usize::MAX));
        overflows(pixels(2, (usize::MAX, 3, 8), usize::MAX, usize::MAX));
        assert!(pixels(4, (1, 1, 1), 1, 1).is_err());

        let rows = PadRows::<u16>::check;
        assert_eq!(
            rows(2, (2, 9, 3, 8, 72), 54, 144).unwrap(),
            (2, [9, 3, 8, 72])
        );
        too_small(rows(2, (2, 9, 3, 8, 72), 53, 144), "padded source");
        too_small(rows(2, (2, 9, 3, 8, 72), 54, 143), "padded copy");
        assert!(matches!(
            rows(2, (2, 9, 3, 0, 72), 54, 144),
            Err(Error::InvalidDimension { .. })
        ));
        overflows(rows(2, (usize::MAX, 9, 3, 8, 72), usize::MAX, usize::MAX));
    }

    #[test]
    fn int_conversion_is_checked() {
        assert_eq!(int("x", 7, 10).unwrap(), 7);
        assert!(matches!(
            int("x", 11, 10),
            Err(Error::TooLarge { max: 10, .. })
        ));
        assert!(int("x", usize::MAX, usize::MAX).is_err());
        assert_eq!(int("x", i32::MAX as usize, usize::MAX).unwrap(), i32::MAX);
    }
}
