//! The Hopper path of [`Conv2d`](super::Conv2d): an implicit GEMM with TMA loads and wgmma
//! (`kernels/conv/conv_sm90.cu`), for the H100 and H200.
//!
//! `y = act(conv(x, w) + bias)` with `y` and `bias` in the input type (`f16` or `bf16`), f32
//! accumulation. It needs `c % 8 == 0` (16-byte pixel rows, what TMA and the 16-byte copies
//! need); any other size works, partial tiles are clipped. A plan picks the output-channel tile
//! (64, 128 or 256; 64-wide tiles run two blocks per SM), split-K for layers with few output
//! tiles and long reductions, and how the A operand is loaded ([`ALoad`]), from a cost model
//! fitted to H100 measurements; blocks are persistent (at most one wave of them, each walking
//! several output tiles and loading the next while it stores the last). [`HopperOptions`]
//! force any of these choices. Measurements: reports/h100/conv_sm90.md.

use crate::catalog::PtxArch;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::launch::conv::{
    ConvRun, ConvSm90, ConvSm90Kernel, ConvSm90Shape, SM90_MODULE as MODULE,
};
use crate::launch::gemm::{Bias, GemmOperands, Reduction, SplitKReduce};
use crate::launch::tma::{self, TmaMap};
use crate::launch::{run, Kernel, KernelArgs};
use crate::memory::access::Access;
use crate::memory::{DeviceBuffer, DeviceSlice, DeviceSliceMut};
use crate::modules;
use crate::ops::conv2d::Conv2dDesc;
use crate::ops::matmul::Tiling;
use crate::ops::{Dtype, Float};
use crate::stream::Stream;
use crate::tiles::{self, Tile};
use cudarc::driver::LaunchConfig;
use std::marker::PhantomData;

/// Threads per block: a producer warpgroup and two consumer warpgroups.
pub(super) const THREADS: u32 = 384;

/// The variants the module ships, kernels/tiles.toml's [conv_sm90]: output channels per block
/// tile (`bn`), pipeline stages, and blocks per SM (`min_blocks`).
pub(super) const VARIANTS: [Tile; tiles::CONV_SM90.len()] = tiles::CONV_SM90;

/// Every variant's output pixels per block tile and channels per k-tile: the kernel's fixed
/// 128 and 64 (it asserts that every tile of the table has them).
pub(super) const BM: usize = tiles::CONV_SM90[0].bm;
pub(super) const BK: usize = tiles::CONV_SM90[0].bk;

/// A variant's dynamic shared memory: the stages (A 16 KiB + B) + 1 KiB alignment slack.
pub(super) fn smem_bytes(v: &Tile) -> u32 {
    (v.stages * (v.bm + v.bn) * v.bk * 2 + 1024) as u32
}

/// A variant's tiling (its kernels' names).
pub(super) fn tiling(v: &Tile) -> Tiling {
    Tiling {
        bm: v.bm,
        bn: v.bn,
        bk: v.bk,
        stages: v.stages,
    }
}

/// A variant's kernel.
pub(super) fn kernel(v: &Tile, a_load: ALoad) -> ConvSm90Kernel {
    ConvSm90Kernel {
        tiling: tiling(v),
        two_cta: v.min_blocks == 2,
        a_load,
    }
}

/// How the kernel's producer loads the A operand (output pixels × channels of one filter tap).
///
/// ```no_run
/// use hikube_gpu::ops::conv2d::{ALoad, Conv2d, Conv2dDesc, HopperOptions};
/// use hikube_gpu::{half::f16, Device};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// // A stem layer on RGB padded to 8 channels: 7·7·8 = 392 values per output, in 7 k-steps.
/// let desc = Conv2dDesc::input(32, 224, 224, 8).filters(64, 7, 7).stride(2, 2).padding(3, 3);
/// let plan = Conv2d::<f16, f16>::new(&stream, desc)?;
/// if let Some(chosen) = plan.hopper_choices() { // on an H100 or H200
///     assert_eq!(chosen.a_load, Some(ALoad::Packed));
///     // One tap per k-step instead (49 of them), e.g. to time the two.
///     let gather = HopperOptions { a_load: Some(ALoad::Gather), ..Default::default() };
///     let _ = Conv2d::<f16, f16>::new(&stream, desc.hopper(gather))?;
/// }
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ALoad {
    /// One TMA im2col load per pipeline stage (`cuTensorMapEncodeIm2col`). Needs padding and
    /// `(taps - 1) · dilation` below 128 and strides up to 8; other shapes use `Gather`.
    #[default]
    Im2col,
    /// 16-byte `cp.async` copies by the 128 producer threads, zero-filled at the edges. Any
    /// stride, padding and dilation.
    Gather,
    /// `Gather` over the reduction `(r, s, c)` walked linearly: a 64-wide k-step holds several
    /// filter taps when `c < 64` (eight when `c = 8`) instead of one tap padded with zeros.
    Packed,
}

/// The Hopper path's choices, made by the plan unless forced here (for tuning and tests):
/// [`Conv2dDesc::hopper`] forces the path and these choices.
///
/// ```no_run
/// use hikube_gpu::ops::conv2d::{ALoad, Conv2d, Conv2dDesc, HopperOptions};
/// use hikube_gpu::{half::f16, Device};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let desc = Conv2dDesc::input(64, 56, 56, 64).filters(64, 3, 3).padding(1, 1);
/// let plan = Conv2d::<f16, f16>::new(&stream, desc)?;
/// println!("the plan chose {:?}", plan.hopper_choices()); // None off Hopper
/// let forced = HopperOptions { a_load: Some(ALoad::Gather), block_n: Some(64), ..Default::default() };
/// let plan = Conv2d::<f16, f16>::new(&stream, desc.hopper(forced))?;
/// # let _ = plan;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HopperOptions {
    /// The A-operand load (default: im2col where the shape allows it).
    pub a_load: Option<ALoad>,
    /// Output channels per block tile: 64, 128 or 256.
    pub block_n: Option<usize>,
    /// Blocks per SM: 1, or 2 (with `block_n` 64 only: half the stages, so that one block's
    /// main loop hides the other's pipeline fill and epilogue).
    pub blocks_per_sm: Option<usize>,
    /// Split-K slices (1 = none); capped at the number of k-tiles.
    pub splits: Option<usize>,
    /// Blocks launched along the output tiles (default: one per tile, at most as many as fit on
    /// the device at once; each block then walks tiles `grid_blocks` apart, loading the next
    /// tile while it stores the last). Clamped to 1..=tiles; `usize::MAX`: one block per tile.
    pub grid_blocks: Option<usize>,
}

/// `hk::conv90::ConvParams` (kernels/conv/conv_sm90.cu), mirrored in the launch layer.
type ConvParams = ConvSm90Shape;

/// A convolution plan for one shape and element type on a Hopper GPU.
pub(crate) struct Sm90Plan<T: Float> {
    shape: Conv2dDesc,
    params: ConvParams,
    m: usize,
    variant: Tile,
    splits: usize,
    grid_blocks: usize,
    a_load: ALoad,
    func: Kernel<ConvSm90<T, T>>,
    reduce: Kernel<SplitKReduce<T, T>>,
    workspace: Option<DeviceBuffer<f32>>,
    tma_cache: Option<((u64, u64), (TmaMap, TmaMap))>,
    _t: PhantomData<T>,
}

fn unsupported(what: String) -> Error {
    Error::InvalidArgument {
        what: format!("the compute_90a conv2d path does not take this shape: {what}"),
    }
}

/// What the Hopper kernel needs of a description beyond what [`Conv2dDesc::validate`] (run
/// first) checks: one group, C a multiple of 8, and the sizes its 32-bit indexing reaches that
/// validation leaves to the paths ([`Error::TooLarge`] past them). Validation already keeps
/// every dimension, padding and stride within `i32::MAX / 4`, and N·H·W·C and K·R·S·C within
/// `i32::MAX`.
pub(super) fn limits(s: &Conv2dDesc, (p, q): (usize, usize)) -> Result<()> {
    if s.groups != 1 {
        return Err(unsupported(format!("groups = {} (dense only)", s.groups)));
    }
    if s.c.checked_rem(8) != Some(0) {
        return Err(unsupported(format!(
            "C = {} is not a multiple of 8 (pixel rows must be 16-byte multiples)",
            s.c
        )));
    }
    let max = i32::MAX as usize;
    let too_large = |what: &str, value: usize| -> Result<()> {
        if value <= max {
            return Ok(());
        }
        Err(Error::TooLarge {
            what: format!("conv2d (compute_90a path) {what}"),
            value,
            max,
        })
    };
    let what = "output elements N·P·Q·K";
    too_large(what, crate::size::product(what, &[s.n, p, q, s.k])?)?;
    // A filter tap's offset, across the axes (a tall filter with a wide dilation).
    let reach = (s.r.max(s.s)).saturating_mul(s.dilation.0.max(s.dilation.1));
    too_large("dilated filter", reach.saturating_mul(4))
}

/// Whether TMA im2col can describe the shape: rank-4 im2col corners and offsets lie in
/// [-128, 127], traversal strides are at most 8.
pub(super) fn im2col_fits(s: &Conv2dDesc) -> bool {
    params_fit(&conv_params(s))
}

/// [`im2col_fits`] for the kernel shape `p` (a placed phase's too).
pub(super) fn params_fit(p: &ConvParams) -> bool {
    let byte = -128..=127;
    let [(lw, uw), (lh, uh)] = corners(p);
    let reach = |taps: i32, dil: i32| (i64::from(taps) - 1) * i64::from(dil);
    [lw, uw, lh, uh].iter().all(|c| byte.contains(c))
        && reach(p.r, p.dil_h) <= 127
        && reach(p.s, p.dil_w) <= 127
        && (1..=8).contains(&p.stride_h)
        && (1..=8).contains(&p.stride_w)
}

/// The im2col box's (lower, upper) corners along W and H: from the padding, `-pad` and `pad −
/// (taps − 1)·dil` (the forward's P × Q output); for an output placed elsewhere (a data-gradient
/// phase, stride 1, its own rows × cols), `-pad` and `out − in − pad`.
pub(super) fn corners(p: &ConvParams) -> [(i64, i64); 2] {
    let v = i64::from;
    let axis = |pad: i32, taps: i32, dil: i32, input: i32, out: i32| {
        let upper = match p.out_sh {
            0 => v(pad) - (v(taps) - 1) * v(dil),
            _ => v(out) - v(input) - v(pad),
        };
        (-v(pad), upper)
    };
    [
        axis(p.pad_w, p.s, p.dil_w, p.w, p.q),
        axis(p.pad_h, p.r, p.dil_h, p.h, p.p),
    ]
}

/// The kernel variant and split-K factor for M output pixels, K output channels and `k_tiles`
/// 64-wide reduction steps on `sms` SMs: the fewest estimated time units (~1.75 ns, a
/// 128 × 256 × 64 step at the H100's peak). Fitted to H100 measurements of the ResNet-50 layers
/// (examples/conv_sm90_bench.rs), within about 15 %:
/// - a k-step of a 128 × BN tile costs BN + 64 (the A tile's share and the narrow tiles' lower
///   wgmma efficiency), and each tile adds a fixed 2200 + 26.5 · BN (pipeline fill, epilogue);
/// - one block per SM: every wave of tiles costs its slowest tile;
/// - two blocks per SM (BN = 64): the pair's steps cost 1.5 times as much, and one fixed cost
///   is hidden behind the other block;
/// - split-K adds its f32 partial traffic (~3 TB/s) and a second launch.
fn choose(m: usize, k: usize, k_tiles: usize, sms: usize) -> (Tile, usize) {
    choose_among(&VARIANTS, (m, k, k_tiles), sms, 8)
}

/// [`choose`] among `variants`, with up to `max_splits` split-K slices.
pub(super) fn choose_among(
    variants: &[Tile],
    (m, k, k_tiles): (usize, usize, usize),
    sms: usize,
    max_splits: usize,
) -> (Tile, usize) {
    let Some(&first) = variants.first() else {
        return (VARIANTS[0], 1);
    };
    let mut best = (f64::INFINITY, first, 1);
    for &v in variants {
        let bn = v.bn;
        if bn > k.next_multiple_of(64).max(64) {
            continue;
        }
        let tiles = m.div_ceil(BM) * k.div_ceil(bn);
        let fixed = 2200.0 + 26.5 * bn as f64;
        for splits in 1..=max_splits {
            if splits > 1 && (k_tiles < 4 * splits || tiles * 2 > sms) {
                break;
            }
            let steps = k_tiles.div_ceil(splits) as f64;
            let step = (bn + 64) as f64;
            let blocks = tiles * splits;
            let mut cost = if v.min_blocks == 1 || blocks <= sms {
                blocks.div_ceil(sms) as f64 * (steps * step + fixed)
            } else {
                blocks.div_ceil(2 * sms) as f64 * (2.0 * 1.5 * steps * step + fixed)
            };
            if splits > 1 {
                cost += (m * k * (8 * splits + 2)) as f64 / 5250.0 + 1700.0;
            }
            if cost < best.0 {
                best = (cost, v, splits);
            }
        }
    }
    (best.1, best.2)
}

/// The kernels' shape parameters of `s` (validated), the k-tile counts zero (each plan sets
/// its own).
pub(super) fn conv_params(s: &Conv2dDesc) -> ConvParams {
    let (p, q) = s.output_hw();
    ConvParams {
        n: s.n as i32,
        h: s.h as i32,
        w: s.w as i32,
        c: s.c as i32,
        k: s.k as i32,
        r: s.r as i32,
        s: s.s as i32,
        p: p as i32,
        q: q as i32,
        stride_h: s.stride.0 as i32,
        stride_w: s.stride.1 as i32,
        pad_h: s.padding.0 as i32,
        pad_w: s.padding.1 as i32,
        dil_h: s.dilation.0 as i32,
        dil_w: s.dilation.1 as i32,
        ..ConvParams::default()
    }
}

/// The input x of the kernel shape `p` (at `ptr`) as the kernels' im2col map: boxes of
/// `pixels` output pixels × 64 channels of one filter tap, [`corners`] from padding and dilation,
/// traversed with the stride (the shape passed [`im2col_fits`]).
pub(super) fn im2col_map(ptr: u64, dtype: Dtype, p: &ConvParams, pixels: u32) -> Result<TmaMap> {
    let [(lw, uw), (lh, uh)] = corners(p);
    let corner = |c: i64| i32::try_from(c).unwrap_or(i32::MIN);
    let dim = |v: i32| usize::try_from(v).unwrap_or(0);
    let stride = [p.stride_w, p.stride_h].map(|v| u32::try_from(v).unwrap_or(0));
    tma::im2col(
        ptr,
        dtype,
        [p.n, p.h, p.w, p.c].map(dim),
        [corner(lw), corner(lh)],
        [corner(uw), corner(uh)],
        stride,
        pixels,
    )
}

impl<T: Float> Sm90Plan<T> {
    /// `Ok` when this path runs `desc` (validated) with element type `T` on `device`;
    /// otherwise the typed reason: [`Error::UnsupportedArch`] off Hopper,
    /// [`Error::UnsupportedDtype`] for `f32`, [`Error::InvalidArgument`] for `c % 8 != 0` or
    /// groups, [`Error::TooLarge`] past the kernel's 32-bit indexing.
    pub(crate) fn check(device: &Device, desc: &Conv2dDesc) -> Result<()> {
        Self::supports(device)?;
        limits(desc, desc.output_hw())
    }

    /// The device and element type part of [`check`](Self::check): the shape's is `limits`.
    pub(super) fn supports(device: &Device) -> Result<()> {
        let cc = device.compute_capability();
        modules::select(MODULE, cc, Some(PtxArch::Compute90a))?;
        match T::DTYPE {
            Dtype::F16 | Dtype::Bf16 => {}
            Dtype::F32 => {
                return Err(Error::UnsupportedDtype {
                    op: "conv2d (compute_90a path)",
                    dtype: T::SUFFIX,
                    major: 9,
                    minor: 0,
                })
            }
        }
        Ok(())
    }

    /// A plan for `desc` (validated by [`Conv2dDesc::validate`]) on `stream`'s device, with the
    /// choices `options` force. A forced [`ALoad::Im2col`] on a shape TMA im2col cannot describe
    /// is [`Error::InvalidArgument`]; so is a `block_n` other than 64, 128 or 256.
    pub(crate) fn new(stream: &Stream, desc: &Conv2dDesc, options: HopperOptions) -> Result<Self> {
        Self::check(stream.device(), desc)?;
        let device = stream.device().clone();
        let s = desc;
        let params = conv_params(desc);
        let (p, q) = (params.p as usize, params.q as usize);
        // Validated (`Conv2dDesc::validate`, then `limits`): N·P·Q, N·P·Q·K, R·S·C and K fit
        // in an i32.
        let m = s.n * p * q;
        let c_tiles = s.c.div_ceil(BK);
        let tap_k_tiles = s.r * s.s * c_tiles;
        let packed_k_tiles = (s.r * s.s * s.c).div_ceil(BK);
        let a_load = match options.a_load {
            Some(ALoad::Im2col) if !params_fit(&params) => {
                return Err(Error::InvalidArgument {
                    what: format!(
                        "TMA im2col cannot describe padding {:?}, dilation {:?}, stride {:?} \
                         with a {}x{} filter",
                        s.padding, s.dilation, s.stride, s.r, s.s
                    ),
                })
            }
            Some(a) => a,
            // Packing taps pays when it saves a third of the k-steps (C = 8: seven eighths).
            None if 3 * packed_k_tiles < 2 * tap_k_tiles => ALoad::Packed,
            None if params_fit(&params) => ALoad::Im2col,
            None => ALoad::Gather,
        };
        let k_tiles = if a_load == ALoad::Packed {
            packed_k_tiles
        } else {
            tap_k_tiles
        };
        let sms = device.properties().sm_count as usize;
        let (auto, auto_splits) = choose(m, s.k, k_tiles, sms);
        let block_n = options.block_n.unwrap_or(auto.bn);
        if ![64, 128, 256].contains(&block_n) {
            return Err(Error::InvalidArgument {
                what: format!("conv2d (compute_90a path) block_n {block_n} is not 64, 128 or 256"),
            });
        }
        let splits = options
            .splits
            .unwrap_or(
                if options.block_n.is_some() || options.blocks_per_sm.is_some() {
                    1
                } else {
                    auto_splits
                },
            )
            .clamp(1, k_tiles);
        let kt_per_split = k_tiles.div_ceil(splits);
        let splits = k_tiles.div_ceil(kt_per_split);
        let tiles = m.div_ceil(BM) * s.k.div_ceil(block_n);
        if tiles > i32::MAX as usize || splits > 65535 {
            return Err(Error::TooLarge {
                what: "conv2d (compute_90a path) grid".into(),
                value: tiles.max(splits),
                max: i32::MAX as usize,
            });
        }
        let blocks_per_sm = match (options.block_n, options.blocks_per_sm) {
            (_, Some(b)) => b,
            (None, None) => auto.min_blocks,
            (Some(_), None) => 1,
        };
        let variant = VARIANTS
            .into_iter()
            .find(|v| v.bn == block_n && v.min_blocks == blocks_per_sm);
        let Some(variant) = variant else {
            return Err(Error::InvalidArgument {
                what: format!(
                    "conv2d (compute_90a path) has no {block_n}-wide tile with {:?} blocks per SM",
                    options.blocks_per_sm
                ),
            });
        };
        let resident = sms * variant.min_blocks;
        let grid_blocks = options
            .grid_blocks
            .unwrap_or(resident)
            .clamp(1, tiles.max(1));
        let smem = smem_bytes(&variant);
        let max_smem = device.properties().max_shared_memory_per_block;
        if max_smem < smem {
            return Err(Error::TooLarge {
                what: "conv2d (compute_90a path) shared memory per block".into(),
                value: smem as usize,
                max: max_smem as usize,
            });
        }
        let which = kernel(&variant, a_load);
        let func = ConvSm90::<T, T>::kernel(&device, which, None)?;
        func.set_max_dynamic_shared_memory(smem)?;
        let reduce = SplitKReduce::<T, T>::kernel(&device, Reduction::ConvSm90, None)?;
        let workspace = if splits > 1 {
            let len = crate::size::product(
                "conv2d (compute_90a path) split-K workspace (slices x N·P·Q x K)",
                &[splits, m, s.k],
            )?;
            Some(DeviceBuffer::<f32>::alloc(stream, len)?)
        } else {
            None
        };
        let params = ConvParams {
            c_tiles: c_tiles as i32,
            k_tiles: k_tiles as i32,
            kt_per_split: kt_per_split as i32,
            ..params
        };
        Ok(Sm90Plan {
            shape: *desc,
            params,
            m,
            variant,
            splits,
            grid_blocks,
            a_load,
            func,
            reduce,
            workspace,
            tma_cache: None,
            _t: PhantomData,
        })
    }

    /// The choices the plan made (or was given).
    pub(crate) fn choices(&self) -> HopperOptions {
        HopperOptions {
            a_load: Some(self.a_load),
            block_n: Some(self.variant.bn),
            blocks_per_sm: Some(self.variant.min_blocks),
            splits: Some(self.splits),
            grid_blocks: Some(self.grid_blocks),
        }
    }

    /// Bytes of device memory the plan holds: the split-K partial sums, if any.
    pub(crate) fn workspace_bytes(&self) -> usize {
        self.workspace.as_ref().map_or(0, |w| w.num_bytes())
    }

    /// Queues `y = act(α·conv(x, w) + β·C + bias)` on `stream` (α, β, the activation: the
    /// description's; C: `y` itself when β ≠ 0 and none is given), the operands checked by
    /// [`Conv2d::launch`](super::Conv2d::launch) (devices, lengths). Checks the 16-byte
    /// alignment of `x` and `w` ([`Error::InvalidArgument`]); allocates nothing and does not
    /// synchronize.
    pub(crate) fn launch<B: Float>(
        &mut self,
        stream: &Stream,
        (x, w): (&DeviceSlice<'_, T>, &DeviceSlice<'_, T>),
        y: &mut DeviceSliceMut<'_, T>,
        (c, bias): (Option<&DeviceSlice<'_, T>>, Option<&DeviceSlice<'_, B>>),
    ) -> Result<()> {
        let s = self.shape;
        let mut acc = Access::new(stream)?;
        let d = acc.write(y)?;
        let ops = GemmOperands {
            a: acc.read(x)?,
            b: acc.read(w)?,
            c: super::epilogue_c(&mut acc, s.beta, c, d)?,
            bias: Bias::of(acc.read_or_null(bias)?),
            d,
            workspace: acc.write_or_null(self.workspace.as_mut())?,
        };
        self.queue(stream, &ops, s.activation.code())?;
        acc.finish()
    }

    /// The kernel (and the split-K reduction) on `ops` with the epilogue's `activation` code.
    fn queue(&mut self, stream: &Stream, ops: &GemmOperands<T, T>, activation: i32) -> Result<()> {
        let s = self.shape;
        let (x_ptr, w_ptr) = (ops.a.addr(), ops.b.addr());
        for (what, ptr) in [("x", x_ptr), ("w", w_ptr)] {
            if ptr % 16 != 0 {
                return Err(Error::InvalidArgument {
                    what: format!(
                        "the compute_90a conv2d needs {what} 16-byte aligned, got {ptr:#x}"
                    ),
                });
            }
        }
        let maps = self.maps(x_ptr, w_ptr)?;
        let k_per_split = self.params.kt_per_split as usize * BK;
        let run_info = ConvRun {
            tile: None,
            vec: None,
            splits: self.splits,
            k_per_split,
            activation,
            scale: (s.alpha, s.beta),
            ldb: s.r * s.s * s.c,
        };
        let mut args = ConvSm90::new(self.params, ops, &run_info, (&maps.0, &maps.1))?;
        let cfg = LaunchConfig {
            grid_dim: (self.grid_blocks as u32, self.splits as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: smem_bytes(&self.variant),
        };
        // The caller's access orders the launches after earlier work on these buffers.
        run(stream, &self.func, cfg, &mut args)?;
        if self.splits > 1 {
            super::reduce_splits(stream, &self.reduce, args.params(), self.m * s.k)?;
        }
        Ok(())
    }

    /// The tensor maps of x (at `x_ptr`; unused by the gather loads) and w (at `w_ptr`), from
    /// the cache when the addresses have not moved.
    fn maps(&mut self, x_ptr: u64, w_ptr: u64) -> Result<(TmaMap, TmaMap)> {
        if let Some((key, maps)) = self.tma_cache {
            if key == (x_ptr, w_ptr) {
                return Ok(maps);
            }
        }
        let (s, dtype) = (&self.shape, T::DTYPE);
        let dx = match self.a_load {
            ALoad::Im2col => im2col_map(x_ptr, dtype, &self.params, BM as u32)?,
            ALoad::Gather | ALoad::Packed => TmaMap::unused(),
        };
        let bn = self.variant.bn as u32;
        let dw = match self.a_load {
            // K_gemm walked linearly: the filter as K rows of R·S·C.
            ALoad::Packed => tma::filter(w_ptr, dtype, s.k, 1, s.r * s.s * s.c, bn)?,
            ALoad::Im2col | ALoad::Gather => tma::filter(w_ptr, dtype, s.k, s.r * s.s, s.c, bn)?,
        };
        self.tma_cache = Some(((x_ptr, w_ptr), (dx, dw)));
        Ok((dx, dw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::conv::ConvSm90Phases;

    #[test]
    fn every_variant_is_a_kernel() {
        let mut shipped = crate::launch::tests::Shipped::default();
        for v in VARIANTS {
            for a_load in [ALoad::Im2col, ALoad::Gather, ALoad::Packed] {
                let which = kernel(&v, a_load);
                shipped.assert_defined::<ConvSm90<half::f16, half::f16>>(which);
                shipped.assert_defined::<ConvSm90<half::bf16, half::bf16>>(which);
                if a_load == ALoad::Im2col {
                    shipped.assert_defined::<ConvSm90Phases<half::f16, half::f16>>(which);
                    shipped.assert_defined::<ConvSm90Phases<half::bf16, half::bf16>>(which);
                }
            }
        }
    }

    #[test]
    fn hopper_limits() {
        let ok = Conv2dDesc::input(8, 28, 28, 128)
            .filters(128, 3, 3)
            .padding(1, 1);
        assert!(limits(&ok, ok.output_hw()).is_ok());
        let c12 = Conv2dDesc::input(8, 28, 28, 12).filters(128, 3, 3);
        assert!(matches!(
            limits(&c12, c12.output_hw()),
            Err(Error::InvalidArgument { .. })
        ));
        let depthwise = Conv2dDesc::input(8, 28, 28, 64)
            .filters(64, 3, 3)
            .groups(64);
        assert!(matches!(
            limits(&depthwise, depthwise.output_hw()),
            Err(Error::InvalidArgument { .. })
        ));
        let wide = Conv2dDesc::input(1, 8, 8, 8).filters(i32::MAX as usize, 1, 1);
        assert!(matches!(
            limits(&wide, wide.output_hw()),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn tile_choice() {
        // What measured fastest on the H100 (132 SMs) for ResNet-50's layers at batch 64.
        let pick = |m, k, kt| {
            let (v, splits) = choose(m, k, kt, 132);
            (v.bn, v.min_blocks, splits)
        };
        assert_eq!(pick(64 * 56 * 56, 64, 9), (64, 2, 1));
        assert_eq!(pick(64 * 28 * 28, 128, 18), (128, 1, 1));
        assert_eq!(pick(64 * 14 * 14, 256, 36), (256, 1, 1));
        assert_eq!(pick(64 * 7 * 7, 512, 72), (128, 1, 1));
        assert_eq!(pick(64 * 56 * 56, 256, 1), (64, 2, 1));
        // C512 at 7x7, batch 1: 1 row tile of 49 pixels, a long reduction: split-K.
        assert!(pick(49, 512, 72).2 > 1);
    }

    #[test]
    fn im2col_limits() {
        let s = Conv2dDesc::input(1, 8, 8, 8).filters(8, 3, 3).padding(1, 1);
        assert!(im2col_fits(&s));
        assert!(!im2col_fits(&s.stride(9, 1)));
        assert!(!im2col_fits(&s.dilation(100, 1)));
        // The forward's corners, whatever the stride: -pad and pad - (taps - 1)·dil.
        let strided = conv_params(&s.stride(2, 3));
        assert_eq!(corners(&strided), [(-1, -1), (-1, -1)]);
        // A placed output's box spans its own rows and columns: out - in - pad above.
        let placed = ConvParams {
            p: 5,
            q: 4,
            pad_h: -1,
            pad_w: 0,
            out_sh: 2,
            ..conv_params(&s)
        };
        assert_eq!(corners(&placed), [(0, -4), (1, -2)]);
    }
}
