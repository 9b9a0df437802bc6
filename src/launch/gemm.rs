//! The GEMM kernels' parameter block (`hk::GemmParams`, kernels/gemm/gemm_params.cuh), checked
//! against the operands it addresses, and the launch families that take it: the tile kernels
//! (kernels/gemm/gemm_sm70.cu, gemm_sm75.cu, gemm_sm80.cu), the persistent Hopper kernel
//! (gemm_sm90.cu, with two tensor maps) and the split-K reduction (`gemm_splitk_reduce`).
//!
//! The contract every GEMM kernel keeps (gemm_params.cuh), for `b < batch`, `r < m`, `c < n`:
//! it reads A at `b·stride_a + ` the (r, κ) element for κ < k in A's layout with `lda`, B
//! likewise with `ldb`, C (only when β ≠ 0) at `b·stride_c + r·ldc + c`, the bias (unless null)
//! at `c`; writes D at `b·stride_d + r·ldd + c`, or, with `splits` > 1, the workspace at
//! `((s·batch + b)·m + r)·n + c` for `s < splits`. Two-element accesses only where `pair_ok`,
//! sixteen-byte ones only where `reserved` (both computed here from the addresses). The "fast"
//! kernels (`*_aligned`) read A and B in whole 16-byte chunks up to the end of each row's last
//! chunk.

use super::tma::TmaMap;
use super::{bad_config, param, KernelArgs, Symbol};
use crate::catalog::PtxArch;
use crate::error::{Error, Result};
use crate::fp8::Fp8;
use crate::memory::access::{DevPtr, Operand};
use crate::memory::ensure_len;
use crate::ops::gemm::{ComputeType, GemmPath, Tiling};
use crate::ops::matmul::desc::{extent, Layout};
use crate::ops::{Dtype, Float};
use crate::size;
use cudarc::driver::LaunchConfig;
use std::ffi::c_void;

/// The activation code (`hk::ACT_RELU_MASK`) of the ReLU's backward: D where C (the ReLU's
/// forward output) is positive, else 0; C is then read whatever β.
pub(crate) const RELU_MASK: i32 = 3;

/// Mirrors `hk::GemmParams` (kernels/gemm/gemm_params.cuh) field for field: 8-byte fields
/// first, then 4-byte ones (164 bytes, padded to 168 on both sides).
#[repr(C)]
pub(crate) struct GemmParams<I, O> {
    a: DevPtr<I>,
    b: DevPtr<I>,
    c: DevPtr<O>,
    bias: DevPtr<()>,
    d: DevPtr<O>,
    workspace: DevPtr<f32>,
    lda: i64,
    ldb: i64,
    ldc: i64,
    ldd: i64,
    stride_a: i64,
    stride_b: i64,
    stride_c: i64,
    stride_d: i64,
    m: i32,
    n: i32,
    k: i32,
    batch: i32,
    splits: i32,
    k_per_split: i32,
    activation: i32,
    out_dtype: i32,
    pair_ok: i32,
    /// 1: rows of D, C and the bias allow 16-byte access at columns that are multiples of 8
    /// (the persistent Hopper kernel's epilogue8; the conv kernels' eight-channel stores).
    reserved: i32,
    /// The bias's element type (`out_dtype`'s codes).
    bias_dtype: i32,
    alpha: f32,
    beta: f32,
}

const _: () = assert!(std::mem::size_of::<GemmParams<half::f16, f32>>() == 168);

impl<I, O> Clone for GemmParams<I, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, O> Copy for GemmParams<I, O> {}

/// The kernels' `out_dtype` code of an output type (`hk::OutDtype` in gemm_params.cuh).
pub(crate) const fn out_dtype(dtype: Dtype) -> i32 {
    match dtype {
        Dtype::F32 => 0,
        Dtype::F16 => 1,
        Dtype::Bf16 => 2,
    }
}

/// The buffers of one GEMM launch as the kernels see them (A and B already swapped for a
/// column-major D). `c` is the buffer C is read from when β ≠ 0 (C's own, or D for in place),
/// else [`Operand::NONE`]; `bias` (made of one) and `workspace` may be [`Operand::NONE`].
pub(crate) struct GemmOperands<I, O> {
    pub a: Operand<I>,
    pub b: Operand<I>,
    pub c: Operand<O>,
    pub bias: Bias,
    pub d: Operand<O>,
    pub workspace: Operand<f32>,
}

/// The epilogue's bias, of any element type: the buffer and the type the kernels read it as
/// (`GemmParams::bias_dtype`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bias {
    op: Operand<()>,
    dtype: Dtype,
}

impl Bias {
    /// `op`'s elements, read as `B`.
    pub(crate) fn of<B: Float>(op: Operand<B>) -> Bias {
        Bias {
            op: op.erased(),
            dtype: B::DTYPE,
        }
    }

    fn is_none(&self) -> bool {
        self.op.is_none()
    }
}

/// The product the kernels compute (C and D row-major): sizes, layouts of A and B, leading
/// dimensions and batch strides in elements (of C: the ones of the buffer in `c`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub a_layout: Layout,
    pub b_layout: Layout,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub ldd: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    pub stride_d: usize,
    pub alpha: f32,
    pub beta: f32,
}

/// How one launch runs: split-K slices (0: the K = 0 epilogue, which reads no slice) and the
/// K each covers, the activation code (`hk::Activation`), and for a fast (`*_aligned`) kernel
/// the row granule its 16-byte chunks round A's and B's rows up to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GemmRun {
    pub splits: usize,
    pub k_per_split: usize,
    pub activation: i32,
    pub fast_granule: Option<usize>,
    /// Whether the kernels may use 16-byte epilogue accesses where the addresses allow them
    /// (false for kernels or callers that never want them).
    pub want_vec8: bool,
}

/// Elements A and B reach for `shape`: `(extent_a, extent_b)`.
fn ab_extents(s: &GemmShape) -> Result<(usize, usize)> {
    let a = extent(
        "A",
        s.a_layout.stored(s.m, s.k),
        ("lda", s.lda),
        s.batch,
        ("stride_a", s.stride_a),
    )?;
    let b = extent(
        "B",
        s.b_layout.stored(s.k, s.n),
        ("ldb", s.ldb),
        s.batch,
        ("stride_b", s.stride_b),
    )?;
    Ok((a, b))
}

/// Whether a fast kernel with rows rounded to `granule` may read `a` and `b` (`a_len`, `b_len`
/// elements at `a_addr`, `b_addr`): both 16-byte aligned, and each buffer reaching the end of
/// its last row's last chunk. Tight buffers take the general kernels.
pub(crate) fn fast_operands_fit(
    s: &GemmShape,
    granule: usize,
    (a_addr, a_len): (u64, usize),
    (b_addr, b_len): (u64, usize),
) -> bool {
    let Ok((extent_a, extent_b)) = ab_extents(s) else {
        return false;
    };
    let tail = |cols: usize| {
        cols.checked_next_multiple_of(granule.max(1))
            .map_or(usize::MAX, |c| c.saturating_sub(cols))
    };
    let a_cols = s.a_layout.stored(s.m, s.k).1;
    let b_cols = s.b_layout.stored(s.k, s.n).1;
    a_addr % 16 == 0
        && b_addr % 16 == 0
        && a_len >= extent_a.saturating_add(tail(a_cols))
        && b_len >= extent_b.saturating_add(tail(b_cols))
}

fn i32_of(what: &str, v: usize) -> Result<i32> {
    super::args::int(what, v, i32::MAX as usize)
}

fn i64_of(what: &str, v: usize) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::TooLarge {
        what: what.to_string(),
        value: v,
        max: i64::MAX as usize,
    })
}

impl<I, O: Float> GemmParams<I, O> {
    /// The parameters of a matrix product, checked: A, B, C (when β ≠ 0) and D reach no further
    /// than their buffers with these leading dimensions and strides, the bias holds N elements,
    /// the workspace the split-K slices' `splits·batch·m·n` floats, and a fast kernel's chunks
    /// stay inside A and B ([`fast_operands_fit`]).
    pub(crate) fn matmul(ops: &GemmOperands<I, O>, s: &GemmShape, run: &GemmRun) -> Result<Self> {
        let (extent_a, extent_b) = ab_extents(s)?;
        ensure_len("A", extent_a, ops.a.len())?;
        ensure_len("B", extent_b, ops.b.len())?;
        if let Some(granule) = run.fast_granule {
            let a = (ops.a.addr(), ops.a.len());
            let b = (ops.b.addr(), ops.b.len());
            if !fast_operands_fit(s, granule, a, b) {
                return Err(Error::InvalidArgument {
                    what: "the aligned GEMM kernel needs A and B 16-byte aligned and their \
                           buffers reaching their rows' last 16-byte chunk"
                        .into(),
                });
            }
        }
        Self::epilogue_side(ops, s, run)
    }

    /// Narrows the rows the kernel walks to `m` (never widens them): for a kernel that places
    /// its rows in a larger output, checked as that output's rows.
    pub(super) fn set_rows(&mut self, m: usize) {
        self.m = self.m.min(i32::try_from(m).unwrap_or(i32::MAX));
    }

    /// The output side shared by every kernel taking the block: D, C when β ≠ 0, the bias and
    /// the workspace checked, the vector flags computed from the addresses. A and B are set
    /// unchecked: the caller has checked them against its kernel's contract.
    pub(super) fn epilogue_side(
        ops: &GemmOperands<I, O>,
        s: &GemmShape,
        run: &GemmRun,
    ) -> Result<Self> {
        let (m, n) = (s.m, s.n);
        let extent_d = extent(
            "D",
            (m, n),
            ("ldd", s.ldd),
            s.batch,
            ("stride_d", s.stride_d),
        )?;
        ensure_len("D", extent_d, ops.d.len())?;
        // C is read where β ≠ 0, and as the ReLU-backward mask.
        let use_c = s.beta != 0.0 || run.activation == RELU_MASK;
        if use_c {
            let extent_c = extent(
                "C",
                (m, n),
                ("ldc", s.ldc),
                s.batch,
                ("stride_c", s.stride_c),
            )?;
            ensure_len("C", extent_c, ops.c.len())?;
        }
        if !ops.bias.is_none() {
            ensure_len("bias", n, ops.bias.op.len())?;
        }
        if run.splits > 1 {
            let slices = size::product("split-K workspace", &[run.splits, s.batch, m, n])?;
            ensure_len("split-K workspace", slices, ops.workspace.len())?;
        }
        let c = if use_c { ops.c.ptr() } else { DevPtr::NULL };
        let osize = std::mem::size_of::<O>() as u64;
        let batches = s.batch > 1;
        let (c_addr, d_addr, bias_addr) = (c.addr(), ops.d.addr(), ops.bias.op.addr());
        let bias_size = ops.bias.dtype.size() as u64;
        let pair = |ptr: u64, ld: usize, stride: usize| {
            ptr.is_multiple_of(2 * osize)
                && ld.is_multiple_of(2)
                && (!batches || stride.is_multiple_of(2))
        };
        let pair_ok = pair(d_addr, s.ldd, s.stride_d)
            && (!use_c || pair(c_addr, s.ldc, s.stride_c))
            && bias_addr % (2 * bias_size) == 0;
        // Eight-element (16-byte) access to the rows of D, C and the bias at every column that
        // is a multiple of 8.
        let row16 = |ptr: u64, ld: usize, stride: usize| {
            ptr.is_multiple_of(16)
                && (ld as u64).wrapping_mul(osize).is_multiple_of(16)
                && (!batches || (stride as u64).wrapping_mul(osize).is_multiple_of(16))
        };
        let vec8_ok = run.want_vec8
            && run.activation != RELU_MASK
            && row16(d_addr, s.ldd, s.stride_d)
            && (!use_c || row16(c_addr, s.ldc, s.stride_c))
            && bias_addr % 16 == 0;
        Ok(GemmParams {
            a: ops.a.ptr(),
            b: ops.b.ptr(),
            c,
            bias: ops.bias.op.ptr(),
            d: ops.d.ptr(),
            workspace: ops.workspace.ptr(),
            lda: i64_of("lda", s.lda)?,
            ldb: i64_of("ldb", s.ldb)?,
            ldc: i64_of("ldc", s.ldc)?,
            ldd: i64_of("ldd", s.ldd)?,
            stride_a: i64_of("stride_a", s.stride_a)?,
            stride_b: i64_of("stride_b", s.stride_b)?,
            stride_c: i64_of("stride_c", s.stride_c)?,
            stride_d: i64_of("stride_d", s.stride_d)?,
            m: i32_of("M", m)?,
            n: i32_of("N", n)?,
            k: i32_of("K", s.k)?,
            batch: i32_of("batch", s.batch)?,
            splits: i32_of("split-K slices", run.splits)?,
            k_per_split: i32_of("K per split", run.k_per_split)?,
            activation: run.activation,
            out_dtype: out_dtype(O::DTYPE),
            pair_ok: i32::from(pair_ok),
            reserved: i32::from(vec8_ok),
            bias_dtype: out_dtype(ops.bias.dtype),
            alpha: s.alpha,
            beta: s.beta,
        })
    }

    /// Split-K slices (1: none).
    pub(crate) fn splits(&self) -> i32 {
        self.splits
    }

    fn dims(&self) -> [usize; 4] {
        [self.m, self.n, self.batch, self.splits].map(|v| usize::try_from(v).unwrap_or(0))
    }
}

/// The layouts part of a GEMM kernel's name: `ar`/`ac` for A, `br`/`bc` for B.
fn layouts(a: Layout, b: Layout) -> &'static str {
    match (a, b) {
        (Layout::RowMajor, Layout::RowMajor) => "arbr",
        (Layout::RowMajor, Layout::ColMajor) => "arbc",
        (Layout::ColMajor, Layout::RowMajor) => "acbr",
        (Layout::ColMajor, Layout::ColMajor) => "acbc",
    }
}

/// Which tile kernel: `gemm_<path>_<input>[_acc16]_<tiling>_<layouts>_<aligned|general>` of the
/// path's module, loaded from the path's target. `aligned`: the fast kernel, which reads A and B
/// in whole 16-byte chunks ([`GemmParams::matmul`] with a `fast_granule`); `_acc16`: f16
/// accumulators ([`ComputeType::F16`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TileKernel {
    pub path: GemmPath,
    pub tiling: Tiling,
    pub a_layout: Layout,
    pub b_layout: Layout,
    pub aligned: bool,
    pub accumulation: ComputeType,
}

/// `gemm_<path>_<input>_<tiling>_<layouts>_<mode>`; `input` carries `_acc16` for f16
/// accumulators.
fn gemm_name(path: GemmPath, input: &str, tiling: Tiling, ab: &str, mode: &str) -> String {
    let tag = path.tag();
    format!("gemm_{tag}_{input}_{tiling}_{ab}_{mode}")
}

/// The input part of a tile kernel's name: the input type's suffix, and `_acc16` for f16
/// accumulators (which exist for f16 inputs on the mma.sync paths; the plan asks for no other).
fn tile_input(input: Dtype, accumulation: ComputeType) -> String {
    match accumulation {
        ComputeType::F32 => input.suffix().to_string(),
        ComputeType::F16 => format!("{}_acc16", input.suffix()),
    }
}

/// Which persistent Hopper kernel: `gemm_sm90_<input>_<tiling>_<layouts>_persistent` of
/// `gemm_sm90`, loaded from `compute_90a`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PersistentKernel {
    pub tiling: Tiling,
    pub a_layout: Layout,
    pub b_layout: Layout,
}

/// Which split-K reduction: a GEMM path's `gemm_<path>_splitk_reduce` (also the K = 0
/// epilogue), or the Hopper convolution's `conv_sm90_splitk_reduce`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reduction {
    Gemm(GemmPath),
    ConvSm90,
}

/// A tile kernel (kernels/gemm/gemm_sm70.cu, gemm_sm75.cu, gemm_sm80.cu; the implicit-GEMM
/// convolutions reuse the grid): one block per `bm × bn` output tile (grid x, grouped order) and
/// per batch × split-K slice (grid y); blocks past those would compute a batch index the
/// parameters do not cover, so [`check_config`](KernelArgs::check_config) bounds the grid.
#[repr(C)]
pub(crate) struct GemmTiles<I, O> {
    params: GemmParams<I, O>,
    /// Tiles × (batch · splits): the most blocks along x and y.
    grid: (u32, u32),
}

impl<I, O: Float> GemmTiles<I, O> {
    pub(crate) fn new(params: GemmParams<I, O>, (bm, bn): (usize, usize)) -> Result<Self> {
        let [m, n, batch, splits] = params.dims();
        let tiles = size::mul("GEMM tiles", m.div_ceil(bm.max(1)), n.div_ceil(bn.max(1)))?;
        let slices = size::mul("GEMM batch x split-K slices", batch, splits.max(1))?;
        let grid = |what: &str, v: usize| {
            u32::try_from(v).map_err(|_| Error::TooLarge {
                what: what.to_string(),
                value: v,
                max: u32::MAX as usize,
            })
        };
        Ok(GemmTiles {
            params,
            grid: (grid("GEMM tiles", tiles)?, grid("GEMM slices", slices)?),
        })
    }

    /// The grid covering every tile, batch and slice, with the kernel's block and shared memory.
    pub(crate) fn config(&self, threads: u32, smem_bytes: u32) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.grid.0, self.grid.1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: smem_bytes,
        }
    }

    /// Refuses blocks past the tiles and slices the parameters cover.
    fn check_grid(&self, config: &LaunchConfig) -> Result<()> {
        let g = config.grid_dim;
        if g.0 <= self.grid.0 && g.1 <= self.grid.1 && g.2 == 1 {
            Ok(())
        } else {
            Err(bad_config(
                "a GEMM tile kernel",
                &format!("at most {:?} blocks", self.grid),
                config,
            ))
        }
    }
}

// SAFETY: the tile kernels take one `hk::GemmParams` by value, which `params` mirrors; its
// constructor checked every buffer against the kernels' contract (module docs; the kernels
// bound every access by M, N, K); `check_config` keeps the grid within the tiles and the
// batch × split slices the parameters cover.
unsafe impl<I: Float, O: Float> KernelArgs for GemmTiles<I, O> {
    type Params = [*mut c_void; 1];
    type Variant = TileKernel;
    fn symbol(k: &TileKernel) -> Symbol {
        let mode = if k.aligned { "aligned" } else { "general" };
        let ab = layouts(k.a_layout, k.b_layout);
        let input = tile_input(I::DTYPE, k.accumulation);
        let name = gemm_name(k.path, &input, k.tiling, ab, mode);
        Symbol::at(k.path.module(), name, k.path.arch())
    }
    fn params(&mut self) -> Self::Params {
        [param(&mut self.params)]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        self.check_grid(config)
    }
}

/// The split-K reduction `gemm_splitk_reduce_*` (gemm_params.cuh's `splitk_reduce`): a
/// grid-stride loop (64-bit) over the batch × M × N outputs that sums the `splits` slices of
/// the workspace and applies the epilogue (none with `splits` = 0: the K = 0 epilogue). Any
/// one-dimensional grid.
#[repr(C)]
pub(crate) struct SplitKReduce<I, O> {
    params: GemmParams<I, O>,
}

impl<I: Float, O: Float> SplitKReduce<I, O> {
    pub(crate) fn new(params: GemmParams<I, O>) -> Self {
        SplitKReduce { params }
    }

    /// Output elements: what the grid strides over.
    pub(crate) fn outputs(&self) -> usize {
        let [m, n, batch, _] = self.params.dims();
        m.saturating_mul(n).saturating_mul(batch)
    }
}

// SAFETY: the reduction takes one `hk::GemmParams` by value, which `params` mirrors, checked by
// its constructor (workspace of splits·batch·m·n floats when splits > 1; D, C, bias); a
// grid-stride loop over a one-dimensional grid.
unsafe impl<I: Float, O: Float> KernelArgs for SplitKReduce<I, O> {
    type Params = [*mut c_void; 1];
    type Variant = Reduction;
    fn symbol(r: &Reduction) -> Symbol {
        match r {
            Reduction::Gemm(path) => Symbol::at(
                path.module(),
                format!("gemm_{}_splitk_reduce", path.tag()),
                path.arch(),
            ),
            Reduction::ConvSm90 => Symbol::at(
                super::conv::SM90_MODULE,
                "conv_sm90_splitk_reduce",
                PtxArch::Compute90a,
            ),
        }
    }
    fn params(&mut self) -> Self::Params {
        [param(&mut self.params)]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        super::one_dim("the split-K reduction", config)
    }
}

/// The persistent Hopper GEMM (kernels/gemm/gemm_sm90.cu): `(GemmParams, TmaDesc a, TmaDesc b)`
/// by value; blocks walk every tile × batch × slice whatever their number (grid x only). A and
/// B are read only through the tensor maps (TMA clips at their edges), which must lie inside A's
/// and B's buffers.
#[repr(C)]
pub(crate) struct GemmPersistent<I, O> {
    params: GemmParams<I, O>,
    a_map: super::tma::TmaDesc,
    b_map: super::tma::TmaDesc,
}

impl<I: Float, O: Float> GemmPersistent<I, O> {
    pub(crate) fn new(
        params: GemmParams<I, O>,
        (a, b): (&Operand<I>, &Operand<I>),
        (a_map, b_map): (&TmaMap, &TmaMap),
    ) -> Result<Self> {
        a_map.check_within("A", a)?;
        b_map.check_within("B", b)?;
        Ok(GemmPersistent {
            params,
            a_map: a_map.desc(),
            b_map: b_map.desc(),
        })
    }
}

// SAFETY: the fields are the kernel's three parameters (`hk::GemmParams`, two `CUtensorMap`s)
// passed as three pointers; the parameter block was checked by its constructor and the maps
// lie inside A and B (`TmaMap::check_within`); the blocks walk the tiles whatever the grid.
unsafe impl<I: Float, O: Float> KernelArgs for GemmPersistent<I, O> {
    type Params = [*mut c_void; 3];
    type Variant = PersistentKernel;
    fn symbol(k: &PersistentKernel) -> Symbol {
        let ab = layouts(k.a_layout, k.b_layout);
        let name = gemm_name(GemmPath::Sm90, I::SUFFIX, k.tiling, ab, "persistent");
        Symbol::at(GemmPath::Sm90.module(), name, GemmPath::Sm90.arch())
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.params),
            param(&mut self.a_map),
            param(&mut self.b_map),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        super::one_dim("the Hopper GEMM", config)
    }
}

/// The FP8 Hopper GEMM's module (kernels/gemm/gemm_fp8_sm90.cu).
pub(crate) const FP8_MODULE: &str = "gemm_fp8_sm90";

/// Mirrors `hk::sm90::Fp8Scales` (kernels/gemm/sm90_gemm.cuh): the two scales the FP8 kernel
/// reads (element 0 of each), and where it keeps D's largest magnitude (null: nowhere).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Fp8Scales {
    scale_a: DevPtr<f32>,
    scale_b: DevPtr<f32>,
    amax: DevPtr<f32>,
}

impl Fp8Scales {
    /// The scales (each holding at least its one element) and the amax slot (exactly one
    /// element, or [`Operand::NONE`]).
    pub(crate) fn new(a: &Operand<f32>, b: &Operand<f32>, amax: &Operand<f32>) -> Result<Self> {
        ensure_len("scale_a", 1, a.len())?;
        ensure_len("scale_b", 1, b.len())?;
        if !amax.is_none() && amax.len() != 1 {
            return Err(Error::InvalidArgument {
                what: format!("amax is one f32, not {} elements", amax.len()),
            });
        }
        Ok(Fp8Scales {
            scale_a: a.ptr(),
            scale_b: b.ptr(),
            amax: amax.ptr(),
        })
    }
}

/// Which FP8 Hopper kernel: `gemm_fp8_sm90_<e4m3|e5m2>_<tiling>_arbc_<promoted|fastacc>`, loaded
/// from `compute_90a`. `fast_accum`: the tensor cores' own FP8 accumulation over all of K;
/// otherwise each stage's partial sum is added in f32 (kernels/gemm/sm90_gemm.cuh).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fp8Kernel {
    pub tiling: Tiling,
    pub fast_accum: bool,
}

/// The FP8 Hopper GEMM (kernels/gemm/gemm_fp8_sm90.cu): `(GemmParams, TmaDesc a, TmaDesc b,
/// Fp8Scales)` by value; the persistent kernel's contract (blocks walk every tile × batch
/// whatever their number, grid x only; A and B read only through the maps, which lie inside
/// their buffers), with A row-major and B column-major, no split-K, and the scales' first
/// elements read and amax's written.
#[repr(C)]
pub(crate) struct GemmFp8<T, O> {
    params: GemmParams<T, O>,
    a_map: super::tma::TmaDesc,
    b_map: super::tma::TmaDesc,
    scales: Fp8Scales,
}

impl<T: Fp8, O: Float> GemmFp8<T, O> {
    pub(crate) fn new(
        params: GemmParams<T, O>,
        (a, b): (&Operand<T>, &Operand<T>),
        (a_map, b_map): (&TmaMap, &TmaMap),
        scales: Fp8Scales,
    ) -> Result<Self> {
        if params.splits != 1 {
            return Err(Error::InvalidArgument {
                what: format!("the FP8 GEMM does not split K ({} slices)", params.splits),
            });
        }
        a_map.check_within("A", a)?;
        b_map.check_within("B", b)?;
        Ok(GemmFp8 {
            params,
            a_map: a_map.desc(),
            b_map: b_map.desc(),
            scales,
        })
    }
}

// SAFETY: the fields are the kernel's four parameters (`hk::GemmParams`, two `CUtensorMap`s,
// `hk::sm90::Fp8Scales`) passed as four pointers; the parameter block was checked by its
// constructor (one slice: the workspace is never read), the maps lie inside A and B
// (`TmaMap::check_within`), the scales hold their element and amax its one; the blocks walk the
// tiles whatever the grid.
unsafe impl<T: Fp8, O: Float> KernelArgs for GemmFp8<T, O> {
    type Params = [*mut c_void; 4];
    type Variant = Fp8Kernel;
    fn symbol(k: &Fp8Kernel) -> Symbol {
        let format = T::FORMAT.suffix();
        let mode = if k.fast_accum { "fastacc" } else { "promoted" };
        let name = format!("gemm_fp8_sm90_{format}_{}_arbc_{mode}", k.tiling);
        Symbol::at(FP8_MODULE, name, PtxArch::Compute90a)
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.params),
            param(&mut self.a_map),
            param(&mut self.b_map),
            param(&mut self.scales),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        super::one_dim("the FP8 Hopper GEMM", config)
    }
}

/// The compute_89 FP8 GEMM's module (kernels/gemm/gemm_fp8_sm89.cu).
pub(crate) const FP8_SM89_MODULE: &str = "gemm_fp8_sm89";

/// Which compute_89 FP8 kernel: `gemm_fp8_sm89_<e4m3|e5m2>_<tiling>_arbc_aligned`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fp8TileKernel {
    pub tiling: Tiling,
}

/// The compute_89 FP8 GEMM (kernels/gemm/gemm_fp8_sm89.cu): `(GemmParams, Fp8Scales)` by value.
/// The compute_80 tile kernels' contract and grid (a block per tile, grid y the batches), over
/// pairs of FP8 values: the parameter block counts K, lda, ldb and A's and B's batch strides in
/// pairs and its A and B are the operands' whole pairs ([`Operand::pairs`]); aligned (16-byte
/// chunks, [`GemmParams::matmul`] with a fast granule), A row-major, B column-major, no
/// split-K; the scales' first elements read and amax's written.
#[repr(C)]
pub(crate) struct GemmFp8Tiles<T, O> {
    tiles: GemmTiles<u16, O>,
    scales: Fp8Scales,
    _t: std::marker::PhantomData<T>,
}

impl<T: Fp8, O: Float> GemmFp8Tiles<T, O> {
    pub(crate) fn new(
        params: GemmParams<u16, O>,
        tile: (usize, usize),
        scales: Fp8Scales,
    ) -> Result<Self> {
        if params.splits != 1 {
            return Err(Error::InvalidArgument {
                what: format!("the FP8 GEMM does not split K ({} slices)", params.splits),
            });
        }
        Ok(GemmFp8Tiles {
            tiles: GemmTiles::new(params, tile)?,
            scales,
            _t: std::marker::PhantomData,
        })
    }

    /// The grid covering every tile and batch, with the kernel's block and shared memory.
    pub(crate) fn config(&self, threads: u32, smem_bytes: u32) -> LaunchConfig {
        self.tiles.config(threads, smem_bytes)
    }
}

// SAFETY: the fields are the kernel's two parameters (`hk::GemmParams`, `hk::Fp8Scales`) passed
// as two pointers; the parameter block was checked by its constructor against the operands'
// whole pairs (A and B read in 16-byte chunks inside their rows: `fast_granule`), the scales
// hold their element and amax its one; `check_config` keeps the grid within the tiles and
// batches (one slice).
unsafe impl<T: Fp8, O: Float> KernelArgs for GemmFp8Tiles<T, O> {
    type Params = [*mut c_void; 2];
    type Variant = Fp8TileKernel;
    fn symbol(k: &Fp8TileKernel) -> Symbol {
        let format = T::FORMAT.suffix();
        let name = format!("gemm_fp8_sm89_{format}_{}_arbc_aligned", k.tiling);
        Symbol::at(FP8_SM89_MODULE, name, PtxArch::Compute89)
    }
    fn params(&mut self) -> Self::Params {
        [param(&mut self.tiles.params), param(&mut self.scales)]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        self.tiles.check_grid(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(m: usize, n: usize, k: usize) -> GemmShape {
        GemmShape {
            m,
            n,
            k,
            batch: 1,
            a_layout: Layout::RowMajor,
            b_layout: Layout::RowMajor,
            lda: k,
            ldb: n,
            ldc: n,
            ldd: n,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            stride_d: m * n,
            alpha: 1.0,
            beta: 0.0,
        }
    }

    #[test]
    fn operand_extents() {
        let s = shape(3, 5, 7);
        assert_eq!(ab_extents(&s).unwrap(), (21, 35));
        let s = GemmShape {
            batch: 2,
            lda: 9,
            stride_a: 40,
            a_layout: Layout::ColMajor,
            ..s
        };
        // A column-major: 7 stored rows of 3, 9 apart, 2 batches 40 apart.
        assert_eq!(ab_extents(&s).unwrap().0, 40 + 6 * 9 + 3);
        let huge = GemmShape {
            batch: 3,
            stride_a: usize::MAX / 2,
            ..s
        };
        assert!(matches!(
            ab_extents(&huge),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn kernel_names_follow_the_kernels() {
        let tiling = GemmPath::Sm80.configs()[4].tiling;
        let tile = TileKernel {
            path: GemmPath::Sm80,
            tiling,
            a_layout: Layout::RowMajor,
            b_layout: Layout::ColMajor,
            aligned: true,
            accumulation: ComputeType::F32,
        };
        let s = GemmTiles::<half::bf16, f32>::symbol(&tile);
        assert_eq!(s.name, "gemm_sm80_bf16_128x128x32x4_arbc_aligned");
        let acc16 = TileKernel {
            accumulation: ComputeType::F16,
            ..tile
        };
        let s = GemmTiles::<half::f16, half::f16>::symbol(&acc16);
        assert_eq!(s.name, "gemm_sm80_f16_acc16_128x128x32x4_arbc_aligned");
        assert_eq!(
            (s.module, s.target),
            ("gemm_sm80", Some(PtxArch::Compute80))
        );
        let general = TileKernel {
            path: GemmPath::Sm70,
            aligned: false,
            ..tile
        };
        let s = GemmTiles::<half::f16, f32>::symbol(&general);
        assert!(s.name.starts_with("gemm_sm70_f16_") && s.name.ends_with("_arbc_general"));
        let persistent = PersistentKernel {
            tiling: GemmPath::Sm90.configs()[0].tiling,
            a_layout: Layout::ColMajor,
            b_layout: Layout::RowMajor,
        };
        let s = GemmPersistent::<half::f16, half::f16>::symbol(&persistent);
        assert_eq!(s.name, "gemm_sm90_f16_128x256x64x4_acbr_persistent");
        assert_eq!(s.target, Some(PtxArch::Compute90a));
        let fp8 = Fp8Kernel {
            tiling: crate::ops::gemm::fp8_configs()[0].tiling,
            fast_accum: false,
        };
        let s = GemmFp8::<crate::fp8::F8E5M2, half::bf16>::symbol(&fp8);
        assert_eq!(s.name, "gemm_fp8_sm90_e5m2_128x256x128x4_arbc_promoted");
        assert_eq!(
            (s.module, s.target),
            (FP8_MODULE, Some(PtxArch::Compute90a))
        );
        let ada = Fp8TileKernel {
            tiling: crate::ops::gemm::fp8_sm89_configs()[0].tiling,
        };
        let s = GemmFp8Tiles::<crate::fp8::F8E4M3, f32>::symbol(&ada);
        assert_eq!(s.name, "gemm_fp8_sm89_e4m3_128x128x64x3_arbc_aligned");
        assert_eq!(
            (s.module, s.target),
            (FP8_SM89_MODULE, Some(PtxArch::Compute89))
        );
        let reduce = SplitKReduce::<half::f16, f32>::symbol(&Reduction::Gemm(GemmPath::Sm75));
        assert_eq!(
            (reduce.module, &*reduce.name),
            ("gemm_sm75", "gemm_sm75_splitk_reduce")
        );
        let reduce = SplitKReduce::<half::f16, half::f16>::symbol(&Reduction::ConvSm90);
        assert_eq!(reduce.name, "conv_sm90_splitk_reduce");
    }

    #[test]
    fn fast_kernels_need_the_last_chunk() {
        // K = 5 rounds up to 8: A's buffer must hold 3 more elements than its extent.
        let s = shape(2, 8, 5);
        assert!(fast_operands_fit(&s, 8, (0, 13), (0, 40)));
        assert!(!fast_operands_fit(&s, 8, (0, 12), (0, 40)));
        assert!(!fast_operands_fit(&s, 8, (8, 13), (0, 40)));
        assert!(fast_operands_fit(&s, 1, (0, 10), (0, 40)));
    }
}
