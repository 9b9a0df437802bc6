//! The convolution kernels' parameters: the direct and implicit-GEMM kernels
//! (kernels/conv/conv_direct.cu, conv_sm75.cu, conv_sm80.cu: `(GemmParams, ConvShape)` by value)
//! and the Hopper kernel (kernels/conv/conv_sm90.cu: `(GemmParams, ConvParams, TmaDesc x,
//! TmaDesc w)`), each checked against the operands it addresses.
//!
//! The contract (conv_shape.cuh, implicit_gemm.cuh, conv_sm90.cu): the implicit GEMM has M =
//! N·P·Q output pixels, N = K output channels and K = R·S·C/groups. The kernels read x (NHWC,
//! `n·h·w·c` elements, C as stored) only at taps inside the image, w only in its K rows of
//! `ldb` elements (x and w through their tensor maps on Hopper), the bias (unless null) at
//! `k' < K`; they write y (`M × K`, row-major) or, with `splits` > 1, the workspace of
//! `splits·M·K` floats that the split-K reduction sums into y.
//!
//! The backward kernels ([`ConvGrad`]: conv_direct.cu's `conv_<dgrad|wgrad>_direct_*`,
//! conv_grad_sm80.cu) take the same `(GemmParams, ConvShape)`. dgrad: M = N·H·W, N = C, K =
//! R·S·K; reads dy (`n·p·q·k`) and w (`k·r·s·c/groups`), writes dx (`M × C`). wgrad: M = K, N =
//! R·S·C/groups, K = N·P·Q; reads dy and x, writes dw (`K × N`) or the split-K workspace. The
//! tensor-core ones read 16-byte chunks of eight channels: groups = 1, C and K multiples of 8,
//! dy, w and x 16-byte aligned. Every tensor's elements are addressed with 32-bit offsets.

use super::args::{int, run_within};
use super::gemm::{GemmOperands, GemmParams, GemmRun, GemmShape};
use super::tma::{TmaDesc, TmaMap};
use super::{bad_config, param, KernelArgs, Symbol};
use crate::catalog::PtxArch;
use crate::error::{Error, Result};
use crate::memory::access::Operand;
use crate::memory::ensure_len;
use crate::ops::conv2d::ALoad;
use crate::ops::gemm::Tiling;
use crate::ops::matmul::desc::Layout;
use crate::ops::Float;
use crate::size;
use cudarc::driver::LaunchConfig;
use std::ffi::c_void;

/// The module of the direct kernels, which ships every target.
pub(crate) const DIRECT_MODULE: &str = "conv_direct";
/// The module of the Hopper kernels.
pub(crate) const SM90_MODULE: &str = "conv_sm90";

/// An implicit-GEMM convolution module: `conv_sm80` (f16, bf16; `_c4` kernels gathering four
/// channels per copy) or `conv_sm75` (f16), each loaded from its own target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ImplicitPath {
    Sm80,
    Sm75,
}

impl ImplicitPath {
    fn tag(self) -> &'static str {
        match self {
            ImplicitPath::Sm80 => "sm80",
            ImplicitPath::Sm75 => "sm75",
        }
    }

    fn module(self) -> &'static str {
        match self {
            ImplicitPath::Sm80 => "conv_sm80",
            ImplicitPath::Sm75 => "conv_sm75",
        }
    }

    fn arch(self) -> PtxArch {
        match self {
            ImplicitPath::Sm80 => PtxArch::Compute80,
            ImplicitPath::Sm75 => PtxArch::Compute75,
        }
    }

    /// The module of the path's backward kernels.
    fn grad_module(self) -> &'static str {
        match self {
            ImplicitPath::Sm80 => "conv_grad_sm80",
            ImplicitPath::Sm75 => "conv_grad_sm75",
        }
    }
}

/// Which [`Conv`] kernel: the direct `conv_direct_<input>` (from the target the caller picks),
/// or the implicit GEMM `conv_<path>_<input>[_c4]_<tiling>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConvKernel {
    Direct,
    Implicit {
        path: ImplicitPath,
        tiling: Tiling,
        /// The kernels that copy four channels of x at a time (else eight).
        c4: bool,
    },
}

/// Which [`ConvSm90`] kernel: `conv_sm90_<input>_<tiling>_<a_load>[_2cta]`, loaded from
/// `compute_90a`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvSm90Kernel {
    pub tiling: Tiling,
    /// The variant run two blocks per SM.
    pub two_cta: bool,
    pub a_load: ALoad,
}

/// Mirrors `hk::ConvShape` (kernels/conv/conv_shape.cuh): sixteen `int`s.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConvShape {
    pub n: i32,
    pub h: i32,
    pub w: i32,
    /// Channels as stored (rounded up to 8 on the padded path).
    pub c: i32,
    pub k: i32,
    pub r: i32,
    pub s: i32,
    pub p: i32,
    pub q: i32,
    pub stride_h: i32,
    pub stride_w: i32,
    pub pad_h: i32,
    pub pad_w: i32,
    pub dil_h: i32,
    pub dil_w: i32,
    pub groups: i32,
}

const _: () = assert!(std::mem::size_of::<ConvShape>() == 64);

impl ConvShape {
    /// What every convolution kernel's index arithmetic assumes of the shape beyond its
    /// extents: groups ≥ 1 dividing C and K, strides and dilations ≥ 1, padding ≥ 0, and the
    /// output size the input, filter, stride, padding and dilation give.
    fn check_geometry(&self) -> Result<()> {
        let s = self;
        let out = |len: i32, pad: i32, taps: i32, dil: i32, stride: i32| {
            let reach = i64::from(dil) * i64::from(taps - 1) + 1;
            (i64::from(len) + 2 * i64::from(pad) - reach) / i64::from(stride) + 1
        };
        let ok = s.groups >= 1
            && s.c % s.groups == 0
            && s.k % s.groups == 0
            && s.stride_h >= 1
            && s.stride_w >= 1
            && s.dil_h >= 1
            && s.dil_w >= 1
            && s.pad_h >= 0
            && s.pad_w >= 0
            && s.r >= 1
            && s.s >= 1
            && i64::from(s.p) == out(s.h, s.pad_h, s.r, s.dil_h, s.stride_h)
            && i64::from(s.q) == out(s.w, s.pad_w, s.s, s.dil_w, s.stride_w);
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument {
                what: format!("inconsistent convolution shape {s:?}"),
            })
        }
    }
}

/// Mirrors `hk::DgradPhase` (kernels/conv/conv_shape.cuh): fourteen `int`s. One phase of the data
/// gradient: the input pixels `(h0 + i·stride_h, w0 + j·stride_w)`, `i < rows`, `j < cols`,
/// and the filter taps `(r0 + t·tr, s0 + u·ts)`, `t < taps_h`, `u < taps_w`, that carry them to
/// output pixels `(pbase + i − t·dp, qbase + j − u·dq)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DgradPhase {
    pub h0: i32,
    pub w0: i32,
    pub rows: i32,
    pub cols: i32,
    pub r0: i32,
    pub s0: i32,
    pub tr: i32,
    pub ts: i32,
    pub taps_h: i32,
    pub taps_w: i32,
    pub pbase: i32,
    pub qbase: i32,
    pub dp: i32,
    pub dq: i32,
}

const _: () = assert!(std::mem::size_of::<DgradPhase>() == 56);

impl DgradPhase {
    /// The phase's GEMM rows (N·rows·cols) and reduction (taps_h·taps_w·K) for `shape`, after
    /// checking that every pixel it names lies in the input and every tap in the filter, and
    /// that the kernel's output-pixel arithmetic stays within 32 bits. `identity`: whether its
    /// rows are dx's own (the one phase of a stride-1 convolution), which split-K needs.
    fn check(&self, shape: &ConvShape) -> Result<(usize, usize, bool)> {
        let bad = |what: &str| Error::InvalidArgument {
            what: format!("data-gradient phase {self:?}: {what}"),
        };
        let axis = run_within;
        let ph = self;
        if !axis(ph.h0, ph.rows, shape.stride_h, shape.h)
            || !axis(ph.w0, ph.cols, shape.stride_w, shape.w)
        {
            return Err(bad("pixels outside the input"));
        }
        if !axis(ph.r0, ph.taps_h, ph.tr, shape.r) || !axis(ph.s0, ph.taps_w, ph.ts, shape.s) {
            return Err(bad("taps outside the filter"));
        }
        let reach = |base: i32, count: i32, taps: i32, d: i32| {
            let hi = i64::from(base) + i64::from(count);
            let lo = i64::from(base) - i64::from(taps) * i64::from(d);
            d >= 0 && hi < i64::from(i32::MAX) && lo > -(1i64 << 29)
        };
        if !reach(ph.pbase, ph.rows, ph.taps_h, ph.dp)
            || !reach(ph.qbase, ph.cols, ph.taps_w, ph.dq)
        {
            return Err(bad("output pixels beyond 32-bit arithmetic"));
        }
        let rows = size::product("phase pixels", &[shape.n, ph.rows, ph.cols].map(dim))?;
        let k_gemm = size::product("phase reduction", &[ph.taps_h, ph.taps_w, shape.k].map(dim))?;
        let identity = ph.h0 == 0 && ph.w0 == 0 && ph.rows == shape.h && ph.cols == shape.w;
        Ok((rows, k_gemm, identity))
    }
}

/// Mirrors `hk::DgradPhases` (kernels/conv/conv_shape.cuh): the phases of one data-gradient
/// launch, grid z picking a block's; the entries past the launch's count are unused.
pub(crate) const MAX_PHASES: usize = 16;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DgradPhases {
    ph: [DgradPhase; MAX_PHASES],
}

const _: () = assert!(std::mem::size_of::<DgradPhases>() == 56 * MAX_PHASES);

/// Mirrors `hk::conv90::ConvParams` (kernels/conv/conv_sm90.cu): twenty-four `int`s. The last
/// six place the output: pixel `(n, p, q)` is row `(n·out_h + out_h0 + p·out_sh)·out_w + out_w0
/// + q·out_sw` of an `N × out_h × out_w` image (a strided data gradient's phase), or, with
/// `out_sh` 0, row `(n·P + p)·Q + q` (the forward convolution's own).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ConvSm90Shape {
    pub n: i32,
    pub h: i32,
    pub w: i32,
    pub c: i32,
    pub k: i32,
    pub r: i32,
    pub s: i32,
    pub p: i32,
    pub q: i32,
    pub stride_h: i32,
    pub stride_w: i32,
    pub pad_h: i32,
    pub pad_w: i32,
    pub dil_h: i32,
    pub dil_w: i32,
    pub c_tiles: i32,
    pub k_tiles: i32,
    pub kt_per_split: i32,
    pub out_h: i32,
    pub out_w: i32,
    pub out_h0: i32,
    pub out_w0: i32,
    pub out_sh: i32,
    pub out_sw: i32,
}

const _: () = assert!(std::mem::size_of::<ConvSm90Shape>() == 96);

impl ConvSm90Shape {
    /// The rows of the output image the kernel's pixel rows land in: N·P·Q, or, placed in a
    /// larger image, N·out_h·out_w after checking that every pixel lands inside it (in 64 bits)
    /// and that the kernel's 32-bit row arithmetic holds.
    fn output_rows(&self, m: usize) -> Result<usize> {
        if self.out_sh == 0 {
            return Ok(m);
        }
        let fits = run_within(self.out_h0, self.p, self.out_sh, self.out_h)
            && run_within(self.out_w0, self.q, self.out_sw, self.out_w);
        if !fits {
            return Err(Error::InvalidArgument {
                what: format!(
                    "the Hopper convolution's output placement {self:?} leaves the image"
                ),
            });
        }
        let rows = size::product(
            "convolution output image pixels",
            &[self.n, self.out_h, self.out_w].map(dim),
        )?;
        int("convolution output image pixels", rows, i32::MAX as usize)?;
        Ok(rows)
    }
}

/// A kernel shape's dimension (an `i32` field) as a size: 0 for a negative one.
pub(crate) fn dim(v: i32) -> usize {
    usize::try_from(v).unwrap_or(0)
}

/// Elements of the NHWC input and the KRSC filter of `(n, h, w, c)` and `(k, r, s, c)`.
fn conv_extents(nhwc: [i32; 4], krs: [i32; 3], c: i32) -> Result<(usize, usize)> {
    let x = size::product("convolution input elements", &nhwc.map(dim))?;
    let [k, r, s] = krs.map(dim);
    let w = size::product("convolution filter elements", &[k, r, s, dim(c)])?;
    Ok((x, w))
}

/// The implicit GEMM's output side as [`GemmParams`] checks it: M × K outputs, row-major (and
/// C, read when β ≠ 0, the same).
fn gemm_shape(
    m: usize,
    k_out: usize,
    k_gemm: usize,
    (lda, ldb): (usize, usize),
    (alpha, beta): (f32, f32),
) -> GemmShape {
    GemmShape {
        m,
        n: k_out,
        k: k_gemm,
        batch: 1,
        a_layout: Layout::RowMajor,
        b_layout: Layout::RowMajor,
        lda,
        ldb,
        ldc: k_out,
        ldd: k_out,
        stride_a: 0,
        stride_b: 0,
        stride_c: 0,
        stride_d: m.saturating_mul(k_out),
        alpha,
        beta,
    }
}

/// A tile kernel's grid: at most `max` = (tiles, split-K slices, phases) blocks along x, y and z
/// (at least one along z; the forward kernels have one phase).
fn within_tiles(what: &str, max: (u32, u32, u32), config: &LaunchConfig) -> Result<()> {
    let g = config.grid_dim;
    if g.0 <= max.0 && g.1 <= max.1 && (1..=max.2).contains(&g.2) {
        Ok(())
    } else {
        Err(bad_config(what, &format!("at most {max:?} blocks"), config))
    }
}

/// A persistent Hopper kernel's grid: any x (its blocks walk the tiles), at most `splits`
/// split-K slices along y, one z.
fn within_slices(what: &str, splits: i32, config: &LaunchConfig) -> Result<()> {
    let splits = u32::try_from(splits).unwrap_or(0).max(1);
    if config.grid_dim.1 <= splits && config.grid_dim.2 == 1 {
        Ok(())
    } else {
        Err(bad_config(
            what,
            &format!("at most {splits} blocks along y"),
            config,
        ))
    }
}

/// `(GemmParams, ConvShape)` by value: the direct kernel (kernels/conv/conv_direct.cu, a
/// grid-stride loop over M × K outputs) and the implicit-GEMM kernels (conv_sm75.cu,
/// conv_sm80.cu: a block per `bm × bn` output tile and split-K slice, 16-byte copies of x (`vec`
/// channels) and w).
#[repr(C)]
pub(crate) struct Conv<I, O> {
    params: GemmParams<I, O>,
    shape: ConvShape,
    /// The implicit kernels' tiles × slices (none: the direct kernel, any 1-D grid).
    tiles: Option<(u32, u32)>,
}

/// How a [`Conv`] (or [`ConvSm90`]) runs: the implicit GEMM's tile (none: the direct kernel;
/// ignored by the Hopper kernels), `vec` where x is copied `vec` channels at a time (the
/// gathered layouts), split-K slices and K per slice, the activation code, (α, β), and the
/// filter's row length `ldb` (the Hopper kernels' is R·S·C).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvRun {
    pub tile: Option<(usize, usize)>,
    pub vec: Option<usize>,
    pub splits: usize,
    pub k_per_split: usize,
    pub activation: i32,
    pub scale: (f32, f32),
    pub ldb: usize,
}

impl ConvRun {
    /// The GEMM epilogue's run: this one's slices, K per slice and activation; `want_vec8`
    /// where the kernel stores eight channels at once.
    fn gemm_run(&self, want_vec8: bool) -> GemmRun {
        GemmRun {
            splits: self.splits,
            k_per_split: self.k_per_split,
            activation: self.activation,
            fast_granule: None,
            want_vec8,
        }
    }

    /// The most blocks a tile kernel's grid may have over an M × N output: (tiles, split-K
    /// slices); `None` for the direct kernels (no tile).
    fn tile_grid(&self, m: usize, n: usize) -> Result<Option<(u32, u32)>> {
        let Some((bm, bn)) = self.tile else {
            return Ok(None);
        };
        let tiles = size::mul("conv tiles", m.div_ceil(bm.max(1)), n.div_ceil(bn.max(1)))?;
        let fit = |v: usize| {
            u32::try_from(v).map_err(|_| Error::TooLarge {
                what: "convolution grid".into(),
                value: v,
                max: u32::MAX as usize,
            })
        };
        Ok(Some((fit(tiles)?, fit(self.splits.max(1))?)))
    }
}

impl<I: Float, O: Float> Conv<I, O> {
    pub(crate) fn new(shape: ConvShape, ops: &GemmOperands<I, O>, run: &ConvRun) -> Result<Self> {
        shape.check_geometry()?;
        let (x_len, _) = conv_extents([shape.n, shape.h, shape.w, shape.c], [0, 0, 0], 0)?;
        let w_len = size::mul("convolution filter elements", dim(shape.k), run.ldb)?;
        ensure_len("x", x_len, ops.a.len())?;
        ensure_len("w", w_len, ops.b.len())?;
        let m = size::product(
            "convolution output pixels",
            &[shape.n, shape.p, shape.q].map(dim),
        )?;
        let groups = dim(shape.groups).max(1);
        let k_gemm = size::product(
            "convolution reduction",
            &[shape.r, shape.s, shape.c].map(dim),
        )? / groups;
        let c_stored = dim(shape.c);
        if let Some(vec) = run.vec {
            // The implicit-GEMM kernels copy `vec` channels of x (2·vec bytes) and 16 bytes of
            // w at once.
            let x_align = 2 * vec as u64;
            if !ops.a.addr().is_multiple_of(x_align)
                || !ops.b.addr().is_multiple_of(16)
                || !c_stored.is_multiple_of(vec.max(1))
            {
                return Err(Error::InvalidArgument {
                    what: format!(
                        "the implicit-GEMM convolution needs x {x_align}-byte and w 16-byte \
                         aligned (slices starting at a multiple of {vec} and 8 elements)"
                    ),
                });
            }
        }
        let gemm = gemm_shape(m, dim(shape.k), k_gemm, (c_stored, run.ldb), run.scale);
        let n = dim(shape.k);
        // The implicit-GEMM epilogue stores eight channels at once where y's rows allow it.
        let gemm_run = run.gemm_run(n.is_multiple_of(8));
        let params = GemmParams::epilogue_side(ops, &gemm, &gemm_run)?;
        let tiles = run.tile_grid(m, n)?;
        Ok(Conv {
            params,
            shape,
            tiles,
        })
    }

    /// Split-K slices (1: none).
    pub(crate) fn splits(&self) -> i32 {
        self.params.splits()
    }

    /// The parameters, for the split-K reduction after the kernel.
    pub(crate) fn params(&self) -> GemmParams<I, O> {
        self.params
    }
}

// SAFETY: the kernels take `(hk::GemmParams, hk::ConvShape)` by value, which `params` and
// `shape` mirror; `new` checked the shape's geometry (`ConvShape::check_geometry`), x against
// N·H·W·C, w against K rows of ldb, the implicit kernels' alignment, and y, bias, workspace
// through `GemmParams::epilogue_side`; `check_config` keeps the implicit kernels' grid within the
// tiles and slices and the direct kernel's grid one-dimensional.
unsafe impl<I: Float, O: Float> KernelArgs for Conv<I, O> {
    type Params = [*mut c_void; 2];
    type Variant = ConvKernel;
    fn symbol(k: &ConvKernel) -> Symbol {
        match *k {
            ConvKernel::Direct => Symbol::any(DIRECT_MODULE, format!("conv_direct_{}", I::SUFFIX)),
            ConvKernel::Implicit { path, tiling, c4 } => {
                let (tag, input, vec) = (path.tag(), I::SUFFIX, if c4 { "_c4" } else { "" });
                let name = format!("conv_{tag}_{input}{vec}_{tiling}");
                Symbol::at(path.module(), name, path.arch())
            }
        }
    }
    fn params(&mut self) -> Self::Params {
        [param(&mut self.params), param(&mut self.shape)]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        match self.tiles {
            Some((tiles, slices)) => {
                within_tiles("an implicit-GEMM convolution", (tiles, slices, 1), config)
            }
            None => super::one_dim("the direct convolution", config),
        }
    }
}

/// The operands a Hopper convolution kernel reads through TMA maps (`kernel` names it in the
/// errors): each 16-byte aligned, and its map inside it.
fn check_tma_operands<I>(
    kernel: &str,
    operands: [(&'static str, &Operand<I>, &TmaMap); 2],
) -> Result<()> {
    for (what, op, _) in operands {
        if op.addr() % 16 != 0 {
            return Err(Error::InvalidArgument {
                what: format!(
                    "{kernel} needs {what} 16-byte aligned, got {:#x}",
                    op.addr()
                ),
            });
        }
    }
    for (what, op, map) in operands {
        map.check_within(what, op)?;
    }
    Ok(())
}

/// The operands of one Hopper convolution of `shape` (`kernel` names it in the errors): x and w
/// hold its input and filter, their maps lie inside them; its GEMM rows N·P·Q and the rows of
/// the output image they land in ([`ConvSm90Shape::output_rows`]).
fn check_sm90_conv<I>(
    kernel: &str,
    shape: &ConvSm90Shape,
    (x, w): (&Operand<I>, &Operand<I>),
    (x_map, w_map): (&TmaMap, &TmaMap),
) -> Result<(usize, usize)> {
    let s = shape;
    let (x_len, w_len) = conv_extents([s.n, s.h, s.w, s.c], [s.k, s.r, s.s], s.c)?;
    ensure_len("x", x_len, x.len())?;
    ensure_len("w", w_len, w.len())?;
    check_tma_operands(kernel, [("x", x, x_map), ("w", w, w_map)])?;
    let m = size::product("convolution output pixels", &[s.n, s.p, s.q].map(dim))?;
    Ok((m, s.output_rows(m)?))
}

/// `(GemmParams, ConvParams, TmaDesc x, TmaDesc w)` by value (kernels/conv/conv_sm90.cu):
/// persistent blocks walk every output tile of M × K (grid x), split-K slice in grid y; x read
/// through its im2col map or gathered at in-bounds pixels and channels, w through its map.
#[repr(C)]
pub(crate) struct ConvSm90<I, O> {
    params: GemmParams<I, O>,
    shape: ConvSm90Shape,
    x_map: TmaDesc,
    w_map: TmaDesc,
}

impl<I: Float, O: Float> ConvSm90<I, O> {
    /// `k_per_split` in elements; `maps` the tensor maps of x (unused by the gather variants)
    /// and w.
    pub(crate) fn new(
        shape: ConvSm90Shape,
        ops: &GemmOperands<I, O>,
        run: &ConvRun,
        (x_map, w_map): (&TmaMap, &TmaMap),
    ) -> Result<Self> {
        let operands = (&ops.a, &ops.b);
        let (m, rows) =
            check_sm90_conv("the compute_90a conv2d", &shape, operands, (x_map, w_map))?;
        let k_gemm = size::product(
            "convolution reduction",
            &[shape.r, shape.s, shape.c].map(dim),
        )?;
        // D (and C: the ReLU-backward mask or β·C) checked over the image the pixels land in;
        // the kernel's rows stay N·P·Q. Split-K partials sit at the kernel's rows, and the
        // reduction writes them there: no split-K into a placed output.
        if rows != m && run.splits > 1 {
            return Err(Error::InvalidArgument {
                what: "split-K into a placed convolution output".into(),
            });
        }
        let gemm = GemmShape {
            lda: 0,
            ldb: 0,
            stride_d: 0,
            ..gemm_shape(rows, dim(shape.k), k_gemm, (0, 0), run.scale)
        };
        let run = run.gemm_run(false);
        let mut params = GemmParams::epilogue_side(ops, &gemm, &run)?;
        params.set_rows(m);
        Ok(ConvSm90 {
            params,
            shape,
            x_map: x_map.desc(),
            w_map: w_map.desc(),
        })
    }

    /// The parameters, for the split-K reduction after the kernel.
    pub(crate) fn params(&self) -> GemmParams<I, O> {
        self.params
    }
}

// SAFETY: the fields are the kernel's four parameters, passed as four pointers; `new` checked x
// and w against the shape and their maps against them, y, bias and workspace through
// `GemmParams::epilogue_side` over the rows the kernel's pixels land in (`output_rows`: a placed
// output's every pixel inside its image, the kernel's rows narrowed to N·P·Q, no split-K); the
// blocks walk the tiles whatever grid x is, and grid y must not exceed the split-K slices.
unsafe impl<I: Float, O: Float> KernelArgs for ConvSm90<I, O> {
    type Params = [*mut c_void; 4];
    type Variant = ConvSm90Kernel;
    fn symbol(k: &ConvSm90Kernel) -> Symbol {
        let a_load = match k.a_load {
            ALoad::Im2col => "im2col",
            ALoad::Gather => "gather",
            ALoad::Packed => "packed",
        };
        let ctas = if k.two_cta { "_2cta" } else { "" };
        let (input, tiling) = (I::SUFFIX, k.tiling);
        let name = format!("conv_sm90_{input}_{tiling}_{a_load}{ctas}");
        Symbol::at(SM90_MODULE, name, PtxArch::Compute90a)
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.params),
            param(&mut self.shape),
            param(&mut self.x_map),
            param(&mut self.w_map),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        within_slices("the Hopper convolution", self.params.splits(), config)
    }
}

/// Phases one [`ConvSm90Phases`] launch holds (`hk::conv90::PHASES`).
pub(crate) const SM90_PHASES: usize = 4;

/// Mirrors `hk::conv90::PhaseSet` (kernels/conv/conv_sm90.cu): each phase's maps of x and of
/// its filter, its shape, and how many there are.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ConvSm90PhaseSet {
    x: [TmaDesc; SM90_PHASES],
    w: [TmaDesc; SM90_PHASES],
    cp: [ConvSm90Shape; SM90_PHASES],
    count: i32,
}

const _: () = assert!(std::mem::size_of::<ConvSm90PhaseSet>() == 1472);
const _: () = assert!(std::mem::align_of::<ConvSm90PhaseSet>() == 64);

/// One phase of a [`ConvSm90Phases`] launch: its shape (the placed output, the k-tiles set),
/// its filter's first element in the launch's `b`, and the maps of x and of that filter.
#[derive(Clone, Copy)]
pub(crate) struct Sm90Phase {
    pub shape: ConvSm90Shape,
    pub w_offset: usize,
    pub maps: (TmaMap, TmaMap),
}

/// `(GemmParams, PhaseSet)` by value (kernels/conv/conv_sm90.cu's `conv_sm90_*_phases`): up to
/// [`SM90_PHASES`] placed convolutions of one x (a = dy) by their own filters (in b, one after
/// another) into one output (d = dx, each phase its own pixels of it), their tiles walked as one
/// sequence by persistent blocks (grid x; one slice, no split-K).
#[repr(C)]
pub(crate) struct ConvSm90Phases<I, O> {
    params: GemmParams<I, O>,
    set: ConvSm90PhaseSet,
}

impl<I: Float, O: Float> ConvSm90Phases<I, O> {
    /// The launch of `phases` (1 to [`SM90_PHASES`], sharing x's shape, the output channels and
    /// the output image): each checked as [`ConvSm90::new`] checks its one convolution, its
    /// filter inside `ops.b` from its offset on.
    pub(crate) fn new(
        phases: &[Sm90Phase],
        ops: &GemmOperands<I, O>,
        run: &ConvRun,
    ) -> Result<Self> {
        let Some(first) = phases.first().filter(|_| phases.len() <= SM90_PHASES) else {
            return Err(Error::InvalidArgument {
                what: format!(
                    "{} convolution phases in one launch (1 to {SM90_PHASES})",
                    phases.len()
                ),
            });
        };
        if run.splits > 1 {
            return Err(Error::InvalidArgument {
                what: "split-K in a launch of convolution phases".into(),
            });
        }
        let f = first.shape;
        let mut rows = 0;
        let mut set = ConvSm90PhaseSet {
            x: [TmaMap::unused().desc(); SM90_PHASES],
            w: [TmaMap::unused().desc(); SM90_PHASES],
            cp: [ConvSm90Shape::default(); SM90_PHASES],
            count: phases.len() as i32,
        };
        let slots = set
            .cp
            .iter_mut()
            .zip(set.x.iter_mut().zip(set.w.iter_mut()));
        for (ph, (cp, (x, w_map))) in phases.iter().zip(slots) {
            let s = ph.shape;
            let same = (s.n, s.h, s.w, s.c, s.k, s.out_h, s.out_w)
                == (f.n, f.h, f.w, f.c, f.k, f.out_h, f.out_w);
            if !same {
                return Err(Error::InvalidArgument {
                    what: format!("convolution phases of different inputs or outputs: {s:?}"),
                });
            }
            // Its filter: b from the phase's offset on. Every pixel inside the one output image
            // (whose rows all phases share, as they share its size).
            let w = ops
                .b
                .sub("w", ph.w_offset, ops.b.len().saturating_sub(ph.w_offset))?;
            let maps = (&ph.maps.0, &ph.maps.1);
            (_, rows) = check_sm90_conv("a convolution phase", &s, (&ops.a, &w), maps)?;
            (*cp, *x, *w_map) = (s, ph.maps.0.desc(), ph.maps.1.desc());
        }
        let gemm = GemmShape {
            lda: 0,
            ldb: 0,
            stride_d: 0,
            ..gemm_shape(rows, dim(f.k), 0, (0, 0), run.scale)
        };
        let params = GemmParams::epilogue_side(ops, &gemm, &run.gemm_run(false))?;
        Ok(ConvSm90Phases { params, set })
    }
}

// SAFETY: the fields are the kernel's two parameters, passed as two pointers; `new` checked each
// phase as `ConvSm90`'s does (x and its filter, a sub-range of b, against its shape, their maps
// inside them, its every output pixel inside the one output image that `GemmParams::epilogue_side`
// checked D, C and the bias over), at most PHASES of them, sharing the output channels the
// parameters' n gives; the kernel counts each phase's tiles from its shape, whatever grid x is;
// one slice (no split-K): grid y and z are 1.
unsafe impl<I: Float, O: Float> KernelArgs for ConvSm90Phases<I, O> {
    type Params = [*mut c_void; 2];
    type Variant = ConvSm90Kernel;
    fn symbol(k: &ConvSm90Kernel) -> Symbol {
        let one = ConvSm90::<I, O>::symbol(k);
        Symbol::at(
            one.module,
            format!("{}_phases", one.name),
            PtxArch::Compute90a,
        )
    }
    fn params(&mut self) -> Self::Params {
        [param(&mut self.params), param(&mut self.set)]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        within_slices("the Hopper convolution phases", 1, config)
    }
}

/// `(GemmParams, ConvParams, TmaDesc x, TmaDesc dy)` by value for the Hopper filter gradient
/// (kernels/conv/conv_sm90.cu's `conv_wgrad_sm90_*`): a = x (read through its im2col map of
/// 64-pixel boxes), b = dy (through its tiled map), d = dw, K × R·S·C, or its split-K partials;
/// persistent blocks walk the (R·S·C) × K tiles of dwᵀ (grid x), the pixels' split-K slice in
/// grid y.
#[repr(C)]
pub(crate) struct ConvWgradSm90<I, O> {
    params: GemmParams<I, O>,
    shape: ConvSm90Shape,
    x_map: TmaDesc,
    dy_map: TmaDesc,
}

impl<I: Float, O: Float> ConvWgradSm90<I, O> {
    /// Checks x, dy and their maps against `shape` (C a multiple of 64 and K of 8: a tile's
    /// 64-row half holds one filter tap, dy's rows are 16-byte multiples), dw and the workspace
    /// against K × R·S·C; `run.k_per_split` in pixels.
    pub(crate) fn new(
        shape: ConvSm90Shape,
        ops: &GemmOperands<I, O>,
        run: &ConvRun,
        (x_map, dy_map): (&TmaMap, &TmaMap),
    ) -> Result<Self> {
        if shape.c % 64 != 0 || shape.k % 8 != 0 {
            return Err(Error::InvalidArgument {
                what: format!(
                    "the compute_90a filter gradient needs C a multiple of 64 and K of 8, got \
                     C = {}, K = {}",
                    shape.c, shape.k
                ),
            });
        }
        let x_len = int_extent(
            "convolution input elements",
            &[shape.n, shape.h, shape.w, shape.c],
        )?;
        let dy_len = int_extent(
            "convolution output elements",
            &[shape.n, shape.p, shape.q, shape.k],
        )?;
        ensure_len("x", x_len, ops.a.len())?;
        ensure_len("dy", dy_len, ops.b.len())?;
        let maps = [("x", &ops.a, x_map), ("dy", &ops.b, dy_map)];
        check_tma_operands("the compute_90a filter gradient", maps)?;
        let k_out = dim(shape.k);
        let pixels = dy_len / k_out.max(1);
        let taps = size::product("filter elements", &[shape.r, shape.s, shape.c].map(dim))?;
        let gemm = GemmShape {
            lda: 0,
            ldb: 0,
            ..gemm_shape(k_out, taps, pixels, (0, 0), run.scale)
        };
        let run = run.gemm_run(false);
        Ok(ConvWgradSm90 {
            params: GemmParams::epilogue_side(ops, &gemm, &run)?,
            shape,
            x_map: x_map.desc(),
            dy_map: dy_map.desc(),
        })
    }

    /// The parameters, for the split-K reduction after the kernel.
    pub(crate) fn params(&self) -> GemmParams<I, O> {
        self.params
    }
}

// SAFETY: the fields are the kernel's four parameters, passed as four pointers; `new` checked x
// and dy against the shape (16-byte aligned) and their maps against them (TMA reads only inside
// a map, zero-filling past its edges), dw and the workspace (K × R·S·C per slice) through
// `GemmParams::epilogue_side`; the kernel stores only rows below R·S·C and columns below K of
// dwᵀ, its blocks walk the tiles whatever grid x is, and grid y must not exceed the slices.
unsafe impl<I: Float, O: Float> KernelArgs for ConvWgradSm90<I, O> {
    type Params = [*mut c_void; 4];
    type Variant = Tiling;
    fn symbol(tiling: &Tiling) -> Symbol {
        let name = format!("conv_wgrad_sm90_{}_{tiling}", I::SUFFIX);
        Symbol::at(SM90_MODULE, name, PtxArch::Compute90a)
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.params),
            param(&mut self.shape),
            param(&mut self.x_map),
            param(&mut self.dy_map),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        within_slices("the Hopper filter gradient", self.params.splits(), config)
    }
}

/// Which gradient a [`ConvGrad`] kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grad {
    /// dx from dy and w.
    Data,
    /// dw from x and dy.
    Filter,
}

impl Grad {
    fn tag(self) -> &'static str {
        match self {
            Grad::Data => "dgrad",
            Grad::Filter => "wgrad",
        }
    }
}

/// Which [`ConvGrad`] kernel: the direct `conv_<grad>_direct_<input>` (from the target the
/// caller picks), or the tensor-core `conv_<grad>_<path>_<input>_<tiling>` of the path's
/// `conv_grad_<path>` module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGradKernel {
    pub grad: Grad,
    /// The tensor-core kernel's path and tile; `None`: the direct kernel.
    pub tiling: Option<(ImplicitPath, Tiling)>,
}

/// `(GemmParams, ConvShape)` by value for a backward kernel (module docs): a = dy, b = w (data
/// gradient) or x (filter gradient), d = dx or dw.
#[repr(C)]
pub(crate) struct ConvGrad<I, O> {
    params: GemmParams<I, O>,
    shape: ConvShape,
    phases: DgradPhases,
    /// The tensor-core kernels' tiles × slices × phases (none: the direct kernel, any 1-D
    /// grid).
    tiles: Option<(u32, u32, u32)>,
    grad: Grad,
}

/// Elements of a tensor the kernels address with 32-bit offsets.
fn int_extent(what: &str, dims: &[i32]) -> Result<usize> {
    let len = size::product(what, &dims.iter().map(|&d| dim(d)).collect::<Vec<_>>())?;
    if len > i32::MAX as usize {
        return Err(Error::TooLarge {
            what: what.into(),
            value: len,
            max: i32::MAX as usize,
        });
    }
    Ok(len)
}

impl<I: Float, O: Float> ConvGrad<I, O> {
    /// Checks the operands against `grad`'s contract (module docs); `run.tile` is the
    /// tensor-core kernel's (none: the direct kernel's grid-stride loop), `run.vec` unused.
    pub(crate) fn new(
        grad: Grad,
        (shape, phases): (ConvShape, &[DgradPhase]),
        ops: &GemmOperands<I, O>,
        run: &ConvRun,
    ) -> Result<Self> {
        shape.check_geometry()?;
        let groups = shape.groups;
        let x_len = int_extent(
            "convolution input elements",
            &[shape.n, shape.h, shape.w, shape.c],
        )?;
        let dy_len = int_extent(
            "convolution output elements",
            &[shape.n, shape.p, shape.q, shape.k],
        )?;
        let w_len = int_extent(
            "convolution filter elements",
            &[shape.k, shape.r, shape.s, shape.c / groups],
        )?;
        let (m, n, k_gemm, b_len) = match grad {
            // The direct kernel covers dx whole; it ignores the phase.
            Grad::Data if run.tile.is_none() => (
                x_len / dim(shape.c).max(1),
                dim(shape.c),
                dim(shape.r) * dim(shape.s) * dim(shape.k),
                w_len,
            ),
            Grad::Data => {
                // The phases' rows land anywhere in dx (and the ReLU mask): both whole. The
                // GEMM's M and K: the largest phase's (the kernel takes each block's own).
                if phases.is_empty() || phases.len() > MAX_PHASES {
                    return Err(Error::InvalidArgument {
                        what: format!(
                            "{} data-gradient phases in one launch (1 to {MAX_PHASES})",
                            phases.len()
                        ),
                    });
                }
                let (mut rows, mut k_gemm, mut identity) = (0, 0, false);
                for phase in phases {
                    let (r, k, id) = phase.check(&shape)?;
                    (rows, k_gemm, identity) = (rows.max(r), k_gemm.max(k), id);
                }
                ensure_len("dx", x_len, ops.d.len())?;
                if run.activation == super::gemm::RELU_MASK {
                    ensure_len("x (the ReLU mask)", x_len, ops.c.len())?;
                }
                if run.splits > 1 && !(identity && phases.len() == 1) {
                    return Err(Error::InvalidArgument {
                        what: "a strided data gradient's phases cannot split K".into(),
                    });
                }
                (rows, dim(shape.c), k_gemm, w_len)
            }
            Grad::Filter => (
                dim(shape.k),
                w_len / dim(shape.k).max(1),
                dy_len / dim(shape.k).max(1),
                x_len,
            ),
        };
        ensure_len("dy", dy_len, ops.a.len())?;
        ensure_len(
            if grad == Grad::Data { "w" } else { "x" },
            b_len,
            ops.b.len(),
        )?;
        if run.tile.is_some() {
            let aligned = ops.a.addr().is_multiple_of(16) && ops.b.addr().is_multiple_of(16);
            let chunks = groups == 1 && shape.c % 8 == 0 && shape.k % 8 == 0;
            if !aligned || !chunks {
                return Err(Error::InvalidArgument {
                    what: "the tensor-core convolution gradients need groups = 1, C and K \
                           multiples of 8 and 16-byte aligned operands"
                        .into(),
                });
            }
        }
        let gemm = gemm_shape(m, n, k_gemm, (dim(shape.k), dim(shape.c)), run.scale);
        let gemm_run = run.gemm_run(false);
        let params = GemmParams::epilogue_side(ops, &gemm, &gemm_run)?;
        let mut table = DgradPhases::default();
        let count = match grad {
            Grad::Data if run.tile.is_some() => phases.len(),
            _ => 1,
        };
        for (slot, phase) in table.ph.iter_mut().zip(phases.iter().take(count)) {
            *slot = *phase;
        }
        let tiles = run.tile_grid(m, n)?.map(|(t, s)| (t, s, count as u32));
        Ok(ConvGrad {
            params,
            shape,
            phases: table,
            tiles,
            grad,
        })
    }

    /// The parameters, for the split-K reduction after the kernel.
    pub(crate) fn params(&self) -> GemmParams<I, O> {
        self.params
    }

    /// The direct filter gradient's grid for `outputs` filter elements: a block of 256 threads
    /// (whole warps, as `check_config` asks) per element, grid-stride beyond 32 blocks per SM.
    pub(crate) fn direct_filter_config(outputs: usize, sms: u32) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (outputs.clamp(1, sms as usize * 32) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

// SAFETY: the kernels take `(hk::GemmParams, hk::ConvShape, hk::DgradPhases)` by value, which
// `params`, `shape` and `phases` mirror; `new` checked the shape's geometry (groups dividing C and
// K, strides and dilations ≥ 1, padding ≥ 0, P and Q the ones they give), dy, and w or x, against
// it (every extent within 32-bit offsets), the tensor-core kernels' alignment and channel
// multiples, the data gradient's phases (1 to MAX_PHASES; each one's pixels inside the input, its
// taps inside the filter, its output pixels within 32-bit arithmetic — the kernels bound them by P
// and Q — dx and the mask whole, no split-K unless one phase's rows are dx's own), and dx or dw,
// the workspace through `GemmParams::epilogue_side`; `check_config` keeps the tensor-core kernels'
// grid within the largest phase's tiles, the slices and the phases (the data-gradient kernels
// return from blocks past their phase's tiles), the direct kernels' one-dimensional, and the direct
// filter gradient's blocks whole warps of at most 1024 threads (its 32 warp sums).
unsafe impl<I: Float, O: Float> KernelArgs for ConvGrad<I, O> {
    type Params = [*mut c_void; 3];
    type Variant = ConvGradKernel;
    fn symbol(k: &ConvGradKernel) -> Symbol {
        let (grad, input) = (k.grad.tag(), I::SUFFIX);
        match k.tiling {
            None => Symbol::any(DIRECT_MODULE, format!("conv_{grad}_direct_{input}")),
            Some((path, tiling)) => Symbol::at(
                path.grad_module(),
                format!("conv_{grad}_{}_{input}_{tiling}", path.tag()),
                path.arch(),
            ),
        }
    }
    fn params(&mut self) -> Self::Params {
        [
            param(&mut self.params),
            param(&mut self.shape),
            param(&mut self.phases),
        ]
    }
    fn check_config(&self, config: &LaunchConfig) -> Result<()> {
        match self.tiles {
            Some(max) => within_tiles("a convolution gradient kernel", max, config),
            // The direct wgrad kernel sums its block's threads through 32 warp sums and full-warp
            // shuffles: whole warps, at most 1024 threads.
            None if self.grad == Grad::Filter => {
                let b = config.block_dim;
                let whole_warps = b.0.is_multiple_of(32) && b.0 <= 1024 && b.1 == 1 && b.2 == 1;
                if !whole_warps {
                    return Err(bad_config(
                        "the direct filter gradient",
                        "blocks of whole warps, at most 1024 threads",
                        config,
                    ));
                }
                super::one_dim("the direct filter gradient", config)
            }
            None => super::one_dim("the direct convolution gradient", config),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::gemm::Bias;
    use half::f16;

    /// A launch of phases takes 1 to 4 of them over one input, output channels and output
    /// image, each one's filter inside b and its pixels inside the image, and no split-K.
    #[test]
    fn phase_launch_checks() {
        // Four phases of a stride-2 dgrad of 2 × 8 × 8 × 16 (dx) from dy 2 × 4 × 4 × 8.
        let phase = |h0, w0| ConvSm90Shape {
            n: 2,
            h: 4,
            w: 4,
            c: 8,
            k: 16,
            r: 1,
            s: 1,
            p: 4,
            q: 4,
            stride_h: 1,
            stride_w: 1,
            dil_h: 1,
            dil_w: 1,
            out_h: 8,
            out_w: 8,
            out_h0: h0,
            out_w0: w0,
            out_sh: 2,
            out_sw: 2,
            ..Default::default()
        };
        let filter = 16 * 8;
        let unused = (TmaMap::unused(), TmaMap::unused());
        let at = |shape, w_offset| Sm90Phase {
            shape,
            w_offset,
            maps: unused,
        };
        let four = [(0, 0), (0, 1), (1, 0), (1, 1)];
        let phases: Vec<_> = (0..4)
            .map(|i| at(phase(four[i].0, four[i].1), i * filter))
            .collect();
        let op = |addr, len| Operand::<f16>::unchecked_for_test(addr, len);
        let ops = GemmOperands {
            a: op(0x1000, 2 * 4 * 4 * 8),
            b: op(0x10000, 4 * filter),
            c: Operand::NONE,
            bias: Bias::of(Operand::<f16>::NONE),
            d: op(0x20000, 2 * 8 * 8 * 16),
            workspace: Operand::NONE,
        };
        let run = ConvRun {
            tile: None,
            vec: None,
            splits: 1,
            k_per_split: 0,
            activation: 0,
            scale: (1.0, 0.0),
            ldb: 0,
        };
        assert!(ConvSm90Phases::new(&phases, &ops, &run).is_ok());
        let err = |phases: &[Sm90Phase], ops: &GemmOperands<f16, f16>, run: &ConvRun| {
            ConvSm90Phases::new(phases, ops, run)
                .err()
                .expect("an error")
        };
        let five = [phases.as_slice(), &phases[..1]].concat();
        assert!(matches!(
            err(&five, &ops, &run),
            Error::InvalidArgument { .. }
        ));
        assert!(matches!(
            err(&[], &ops, &run),
            Error::InvalidArgument { .. }
        ));
        let split = ConvRun { splits: 2, ..run };
        assert!(matches!(
            err(&phases, &ops, &split),
            Error::InvalidArgument { .. }
        ));
        // The last phase's filter past b.
        let mut past = phases.clone();
        past[3].w_offset = 3 * filter + 1;
        assert!(matches!(
            err(&past, &ops, &run),
            Error::BufferTooSmall { .. }
        ));
        // Another input, another output image, pixels past the image.
        let mut other = phases.clone();
        other[1].shape.h = 5;
        assert!(matches!(
            err(&other, &ops, &run),
            Error::InvalidArgument { .. }
        ));
        other[1].shape = ConvSm90Shape {
            out_w: 9,
            ..phase(0, 1)
        };
        assert!(matches!(
            err(&other, &ops, &run),
            Error::InvalidArgument { .. }
        ));
        other[1].shape = ConvSm90Shape {
            out_w0: 2,
            ..phase(0, 1)
        };
        assert!(matches!(
            err(&other, &ops, &run),
            Error::InvalidArgument { .. }
        ));
        // dy or dx short.
        let short_x = GemmOperands {
            a: op(0x1000, 2 * 4 * 4 * 8 - 1),
            ..ops
        };
        assert!(matches!(
            err(&phases, &short_x, &run),
            Error::BufferTooSmall { .. }
        ));
        let short_d = GemmOperands {
            d: op(0x20000, 2 * 8 * 8 * 16 - 1),
            ..ops
        };
        assert!(matches!(
            err(&phases, &short_d, &run),
            Error::BufferTooSmall { .. }
        ));
    }

    /// A placed output's pixels must land inside its image; its rows are the image's.
    #[test]
    fn placed_output_rows() {
        // Phase (1, 0) of a stride-2 dgrad of a 2 × 7 × 9 image: 3 × 5 pixels.
        let placed = ConvSm90Shape {
            n: 2,
            p: 3,
            q: 5,
            out_h: 7,
            out_w: 9,
            out_h0: 1,
            out_w0: 0,
            out_sh: 2,
            out_sw: 2,
            ..Default::default()
        };
        assert_eq!(placed.output_rows(30).unwrap(), 2 * 7 * 9);
        assert_eq!(ConvSm90Shape::default().output_rows(30).unwrap(), 30);
        let bad = |s: ConvSm90Shape| assert!(s.output_rows(30).is_err(), "{s:?}");
        bad(ConvSm90Shape { p: 4, ..placed }); // row 1 + 3·2 = 7 is past 7 rows
        bad(ConvSm90Shape {
            out_w0: -1,
            ..placed
        });
        bad(ConvSm90Shape {
            out_sw: -2,
            ..placed
        });
        bad(ConvSm90Shape {
            q: i32::MAX,
            ..placed
        });
        bad(ConvSm90Shape {
            n: i32::MAX,
            out_h: i32::MAX,
            p: 1,
            ..placed
        }); // N·out_h·out_w past i32
    }

    /// A tile kernel's grid stays within its tiles, slices and phases, and at least one deep.
    #[test]
    fn tile_grids_are_bounded() {
        let cfg = |grid_dim| LaunchConfig {
            grid_dim,
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let max = (10, 2, 4);
        assert!(within_tiles("t", max, &cfg((10, 2, 4))).is_ok());
        assert!(within_tiles("t", max, &cfg((1, 1, 1))).is_ok());
        for bad in [(11, 1, 1), (1, 3, 1), (1, 1, 5), (1, 1, 0)] {
            assert!(within_tiles("t", max, &cfg(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kernel_names_follow_the_kernels() {
        use half::{bf16, f16};
        let direct = Conv::<bf16, f32>::symbol(&ConvKernel::Direct);
        assert_eq!(
            (direct.module, &*direct.name),
            ("conv_direct", "conv_direct_bf16")
        );
        assert_eq!(direct.target, None);
        let tiling = Tiling {
            bm: 128,
            bn: 64,
            bk: 32,
            stages: 4,
        };
        let c4 = ConvKernel::Implicit {
            path: ImplicitPath::Sm80,
            tiling,
            c4: true,
        };
        let s = Conv::<f16, f16>::symbol(&c4);
        assert_eq!(
            (s.module, &*s.name),
            ("conv_sm80", "conv_sm80_f16_c4_128x64x32x4")
        );
        let sm75 = ConvKernel::Implicit {
            path: ImplicitPath::Sm75,
            tiling,
            c4: false,
        };
        let s = Conv::<f16, f32>::symbol(&sm75);
        assert_eq!(s.name, "conv_sm75_f16_128x64x32x4");
        assert_eq!(s.target, Some(PtxArch::Compute75));
        let hopper = ConvSm90Kernel {
            tiling: Tiling {
                bm: 128,
                bn: 64,
                bk: 64,
                stages: 4,
            },
            two_cta: true,
            a_load: ALoad::Packed,
        };
        let s = ConvSm90::<bf16, bf16>::symbol(&hopper);
        assert_eq!(s.name, "conv_sm90_bf16_128x64x64x4_packed_2cta");
        let wgrad = ConvGradKernel {
            grad: Grad::Filter,
            tiling: Some((ImplicitPath::Sm80, tiling)),
        };
        let s = ConvGrad::<bf16, f32>::symbol(&wgrad);
        assert_eq!(
            (s.module, &*s.name, s.target),
            (
                "conv_grad_sm80",
                "conv_wgrad_sm80_bf16_128x64x32x4",
                Some(PtxArch::Compute80)
            )
        );
        let dgrad = ConvGradKernel {
            grad: Grad::Data,
            tiling: None,
        };
        let s = ConvGrad::<f16, f16>::symbol(&dgrad);
        assert_eq!(
            (s.module, &*s.name),
            ("conv_direct", "conv_dgrad_direct_f16")
        );
        let sm75 = ConvGradKernel {
            grad: Grad::Data,
            tiling: Some((ImplicitPath::Sm75, tiling)),
        };
        let s = ConvGrad::<f16, f32>::symbol(&sm75);
        assert_eq!(
            (s.module, &*s.name, s.target),
            (
                "conv_grad_sm75",
                "conv_dgrad_sm75_f16_128x64x32x4",
                Some(PtxArch::Compute75)
            )
        );
    }

    #[test]
    fn inconsistent_shapes_are_refused() {
        let good = ConvShape {
            n: 2,
            h: 9,
            w: 7,
            c: 8,
            k: 16,
            r: 3,
            s: 3,
            p: 5,
            q: 4,
            stride_h: 2,
            stride_w: 2,
            pad_h: 1,
            pad_w: 1,
            dil_h: 1,
            dil_w: 1,
            groups: 1,
        };
        assert!(good.check_geometry().is_ok());
        let bad = [
            ConvShape { groups: 3, ..good },
            ConvShape { groups: 0, ..good },
            ConvShape {
                stride_h: 0,
                ..good
            },
            ConvShape { dil_w: 0, ..good },
            ConvShape { pad_h: -1, ..good },
            ConvShape { p: 6, ..good },
            ConvShape {
                q: i32::MAX,
                ..good
            },
        ];
        for s in bad {
            assert!(s.check_geometry().is_err(), "{s:?}");
        }
    }

    #[test]
    fn input_and_filter_extents() {
        assert_eq!(
            conv_extents([2, 5, 7, 8], [4, 3, 3], 8).unwrap(),
            (2 * 5 * 7 * 8, 4 * 3 * 3 * 8)
        );
        assert_eq!(conv_extents([2, 5, -1, 8], [4, 3, 3], 8).unwrap().0, 0);
        assert!(conv_extents([i32::MAX; 4], [1, 1, 1], 1).is_err());
    }
}
