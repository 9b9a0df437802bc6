//! 2-D convolution (forward, NHWC) on Hopper tensor cores: an implicit GEMM with TMA loads and
//! wgmma (`kernels/conv/conv_sm90.cu`), for the H100 and H200 only.
//!
//! `y = act(conv(x, w) + bias)` with `x` NHWC (`n × h × w × c`), `w` KRSC (`k × r × s × c`), `y`
//! NHWC (`n × p × q × k`) in the input type (`f16` or `bf16`), f32 accumulation; `bias` has `k`
//! elements and `act` is ReLU or nothing. Stride, padding and dilation per axis.
//!
//! This is the fast path a convolution dispatcher tries first: [`Conv2dSm90::supports`] says
//! whether it takes a shape on a device (and [`Conv2dSm90::check`] why not), so the caller can
//! fall back to a portable kernel. It needs compute capability 9.0 and `c % 8 == 0`
//! (16-byte pixel rows, what TMA and the 16-byte copies need); any other size works, partial
//! tiles are clipped. A plan picks the output-channel tile (64, 128 or 256; 64-wide tiles run two
//! blocks per SM), split-K for layers with few output tiles and long reductions, and how the A
//! operand is loaded ([`ALoad`]: TMA im2col by default, gathered by the producer threads where
//! im2col cannot describe the shape, or gathered with filter taps packed when `c < 64`), from a
//! cost model fitted to H100 measurements; blocks are persistent (at most one wave of them, each
//! walking several output tiles and loading the next while it stores the last). Launching a plan
//! allocates nothing and never synchronizes. Measurements: reports/h100/conv_sm90.md.
//!
//! ```no_run
//! use hikube_gpu::half::f16;
//! use hikube_gpu::ops::conv2d_sm90::{Conv2dShape, Conv2dSm90};
//! use hikube_gpu::{Device, DeviceBuffer};
//!
//! let device = Device::open(0)?;
//! let stream = device.default_stream();
//! // ResNet-50's 3x3 layer at 28x28: 128 -> 128 channels, stride 1, padding 1.
//! let shape = Conv2dShape::new(8, 28, 28, 128, 128, 3, 3).pad(1, 1);
//! if Conv2dSm90::<f16>::supports(&device, &shape) {
//!     let mut conv = Conv2dSm90::<f16>::new(&stream, shape)?;
//!     let x = DeviceBuffer::<f16>::zeroed(&stream, shape.x_len())?;
//!     let w = DeviceBuffer::<f16>::zeroed(&stream, shape.w_len())?;
//!     let bias = DeviceBuffer::<f16>::zeroed(&stream, shape.k)?;
//!     let mut y = DeviceBuffer::<f16>::alloc(&stream, shape.y_len())?;
//!     conv.launch(&stream, &x, &w, Some(&bias), &mut y, true)?;
//!     stream.synchronize()?;
//! }
//! # Ok::<(), hikube_gpu::Error>(())
//! ```

mod shape;

pub use shape::Conv2dShape;

use crate::catalog::PtxArch;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::launch::conv::{
    ConvSm90, ConvSm90Kernel, ConvSm90Shape, SM90_BK as BK, SM90_BM as BM, SM90_MODULE as MODULE,
};
use crate::launch::gemm::{GemmOperands, Reduction, SplitKReduce};
use crate::launch::tma::{self, TmaMap};
use crate::launch::{grid_stride_config, run, Kernel, KernelArgs};
use crate::memory::access::{Access, Operand};
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer};
use crate::modules;
use crate::ops::{Dtype, Float};
use crate::stream::Stream;
use cudarc::driver::LaunchConfig;
use std::marker::PhantomData;

/// Threads per block: a producer warpgroup and two consumer warpgroups.
const THREADS: u32 = 384;

/// A kernel variant: output channels per block tile, pipeline stages, blocks per SM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Variant {
    block_n: usize,
    stages: usize,
    blocks_per_sm: usize,
}

/// The variants the module ships (kernels/conv/conv_sm90.cu's `HK_CONV90_TILES`).
const VARIANTS: [Variant; 4] = [
    Variant {
        block_n: 256,
        stages: 4,
        blocks_per_sm: 1,
    },
    Variant {
        block_n: 128,
        stages: 6,
        blocks_per_sm: 1,
    },
    Variant {
        block_n: 64,
        stages: 8,
        blocks_per_sm: 1,
    },
    Variant {
        block_n: 64,
        stages: 4,
        blocks_per_sm: 2,
    },
];

impl Variant {
    /// Dynamic shared memory: the stages (A 16 KiB + B) + 1 KiB alignment slack.
    fn smem_bytes(self) -> u32 {
        (self.stages * (BM * BK * 2 + self.block_n * BK * 2) + 1024) as u32
    }
}

/// How the kernel's producer loads the A operand (output pixels × channels of one filter tap).
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

/// Choices a plan makes by itself; set them to force one (for tuning and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conv2dSm90Options {
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
pub struct Conv2dSm90<T: Float> {
    shape: Conv2dShape,
    device: Device,
    params: ConvParams,
    m: usize,
    variant: Variant,
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
        what: format!("conv2d_sm90 does not take this shape: {what}"),
    }
}

/// Whether TMA im2col can describe the shape: rank-4 im2col corners and offsets lie in
/// [-128, 127], traversal strides are at most 8.
fn im2col_fits(s: &Conv2dShape) -> bool {
    let fits = |pad: usize, taps: usize, dil: usize, stride: usize| {
        let reach = (taps - 1) * dil;
        pad <= 127 && reach <= 127 && (pad as i64 - reach as i64) >= -128 && stride <= 8
    };
    fits(s.pad.0, s.r, s.dilation.0, s.stride.0) && fits(s.pad.1, s.s, s.dilation.1, s.stride.1)
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
fn choose(m: usize, k: usize, k_tiles: usize, sms: usize) -> (Variant, usize) {
    let mut best = (f64::INFINITY, VARIANTS[0], 1);
    for v in VARIANTS {
        let bn = v.block_n;
        if bn > k.next_multiple_of(64).max(64) {
            continue;
        }
        let tiles = m.div_ceil(BM) * k.div_ceil(bn);
        let fixed = 2200.0 + 26.5 * bn as f64;
        for splits in 1..=8usize {
            if splits > 1 && (k_tiles < 4 * splits || tiles * 2 > sms) {
                break;
            }
            let steps = k_tiles.div_ceil(splits) as f64;
            let step = (bn + 64) as f64;
            let blocks = tiles * splits;
            let mut cost = if v.blocks_per_sm == 1 || blocks <= sms {
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

impl<T: Float> Conv2dSm90<T> {
    /// Whether this path runs `shape` with element type `T` on `device`.
    ///
    /// ```no_run
    /// use hikube_gpu::half::f16;
    /// use hikube_gpu::ops::conv2d_sm90::{Conv2dShape, Conv2dSm90};
    /// let device = hikube_gpu::Device::open(0)?;
    /// let rgb = Conv2dShape::new(1, 224, 224, 3, 64, 7, 7).stride(2, 2).pad(3, 3);
    /// assert!(!Conv2dSm90::<f16>::supports(&device, &rgb)); // C = 3: pad it to 8
    /// # Ok::<(), hikube_gpu::Error>(())
    /// ```
    pub fn supports(device: &Device, shape: &Conv2dShape) -> bool {
        Self::check(device, shape).is_ok()
    }

    /// `Ok` when this path runs `shape` with element type `T` on `device`; otherwise the typed
    /// reason: [`Error::UnsupportedArch`] off Hopper, [`Error::UnsupportedDtype`] for `f32`,
    /// [`Error::InvalidDimension`] for a zero size, [`Error::TooLarge`] past the kernel's 32-bit
    /// indexing, [`Error::InvalidArgument`] for `c % 8 != 0` or a filter larger than the
    /// padded input.
    pub fn check(device: &Device, shape: &Conv2dShape) -> Result<()> {
        let cc = device.compute_capability();
        modules::select(MODULE, cc, Some(PtxArch::Compute90a))?;
        match T::DTYPE {
            Dtype::F16 | Dtype::Bf16 => {}
            Dtype::F32 => {
                return Err(Error::UnsupportedDtype {
                    op: "conv2d_sm90",
                    dtype: T::SUFFIX,
                    major: 9,
                    minor: 0,
                })
            }
        }
        shape.validate()?;
        Ok(())
    }

    /// A plan for `shape` on `stream`'s device with the heuristic's choices.
    pub fn new(stream: &Stream, shape: Conv2dShape) -> Result<Self> {
        Self::with_options(stream, shape, Conv2dSm90Options::default())
    }

    /// A plan with some choices forced. A forced [`ALoad::Im2col`] on a shape TMA im2col cannot
    /// describe is [`Error::InvalidArgument`]; so is a `block_n` other than 64, 128 or 256.
    pub fn with_options(
        stream: &Stream,
        shape: Conv2dShape,
        options: Conv2dSm90Options,
    ) -> Result<Self> {
        let device = stream.device().clone();
        Self::check(&device, &shape)?;
        let s = shape;
        // Validated: the output exists, and N·P·Q, R·S·C and K fit in an i32.
        let (p, q) = s.checked_output_size()?;
        let m = s.n * p * q;
        let c_tiles = s.c.div_ceil(BK);
        let tap_k_tiles = s.r * s.s * c_tiles;
        let packed_k_tiles = (s.r * s.s * s.c).div_ceil(BK);
        let a_load = match options.a_load {
            Some(ALoad::Im2col) if !im2col_fits(&s) => {
                return Err(Error::InvalidArgument {
                    what: format!(
                        "TMA im2col cannot describe padding {:?}, dilation {:?}, stride {:?} \
                         with a {}x{} filter",
                        s.pad, s.dilation, s.stride, s.r, s.s
                    ),
                })
            }
            Some(a) => a,
            // Packing taps pays when it saves a third of the k-steps (C = 8: seven eighths).
            None if 3 * packed_k_tiles < 2 * tap_k_tiles => ALoad::Packed,
            None if im2col_fits(&s) => ALoad::Im2col,
            None => ALoad::Gather,
        };
        let k_tiles = if a_load == ALoad::Packed {
            packed_k_tiles
        } else {
            tap_k_tiles
        };
        let sms = device.properties().sm_count as usize;
        let (auto, auto_splits) = choose(m, s.k, k_tiles, sms);
        let block_n = options.block_n.unwrap_or(auto.block_n);
        if ![64, 128, 256].contains(&block_n) {
            return Err(Error::InvalidArgument {
                what: format!("conv2d_sm90 block_n {block_n} is not 64, 128 or 256"),
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
                what: "conv2d_sm90 grid".into(),
                value: tiles.max(splits),
                max: i32::MAX as usize,
            });
        }
        let blocks_per_sm = match (options.block_n, options.blocks_per_sm) {
            (_, Some(b)) => b,
            (None, None) => auto.blocks_per_sm,
            (Some(_), None) => 1,
        };
        let variant = VARIANTS
            .into_iter()
            .find(|v| v.block_n == block_n && v.blocks_per_sm == blocks_per_sm);
        let Some(variant) = variant else {
            return Err(Error::InvalidArgument {
                what: format!(
                    "conv2d_sm90 has no {block_n}-wide tile with {:?} blocks per SM",
                    options.blocks_per_sm
                ),
            });
        };
        let resident = sms * variant.blocks_per_sm;
        let grid_blocks = options
            .grid_blocks
            .unwrap_or(resident)
            .clamp(1, tiles.max(1));
        let smem = variant.smem_bytes();
        let max_smem = device.properties().max_shared_memory_per_block;
        if max_smem < smem {
            return Err(Error::TooLarge {
                what: "conv2d_sm90 shared memory per block".into(),
                value: smem as usize,
                max: max_smem as usize,
            });
        }
        let which = ConvSm90Kernel {
            block_n,
            stages: variant.stages,
            two_cta: variant.blocks_per_sm == 2,
            a_load,
        };
        let func = ConvSm90::<T, T>::kernel(&device, which, None)?;
        func.set_max_dynamic_shared_memory(smem)?;
        let reduce = SplitKReduce::<T, T>::kernel(&device, Reduction::ConvSm90, None)?;
        let workspace = if splits > 1 {
            let len = crate::size::product(
                "conv2d_sm90 split-K workspace (slices x N·P·Q x K)",
                &[splits, m, s.k],
            )?;
            Some(DeviceBuffer::<f32>::alloc(stream, len)?)
        } else {
            None
        };
        let params = ConvParams {
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
            pad_h: s.pad.0 as i32,
            pad_w: s.pad.1 as i32,
            dil_h: s.dilation.0 as i32,
            dil_w: s.dilation.1 as i32,
            c_tiles: c_tiles as i32,
            k_tiles: k_tiles as i32,
            kt_per_split: kt_per_split as i32,
        };
        Ok(Conv2dSm90 {
            shape,
            device,
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

    /// The shape the plan was made for.
    pub fn shape(&self) -> &Conv2dShape {
        &self.shape
    }

    /// The A-operand load in use.
    pub fn a_load(&self) -> ALoad {
        self.a_load
    }

    /// Blocks launched along the output tiles (fewer than the tiles: persistent blocks).
    pub fn grid_blocks(&self) -> usize {
        self.grid_blocks
    }

    /// Output channels per block tile, blocks per SM and split-K slices.
    pub fn tiling(&self) -> (usize, usize, usize) {
        (
            self.variant.block_n,
            self.variant.blocks_per_sm,
            self.splits,
        )
    }

    /// Bytes of device memory the plan holds: the split-K partial sums, if any.
    pub fn workspace_bytes(&self) -> usize {
        self.workspace.as_ref().map_or(0, |w| w.num_bytes())
    }

    /// Queues `y = act(conv(x, w) + bias)` on `stream` (ReLU when `relu`). Checks devices, buffer
    /// sizes ([`Error::BufferTooSmall`]) and 16-byte alignment of `x` and `w`
    /// ([`Error::InvalidArgument`]); allocates nothing and does not synchronize.
    pub fn launch(
        &mut self,
        stream: &Stream,
        x: &impl AsDeviceSlice<T>,
        w: &impl AsDeviceSlice<T>,
        bias: Option<&dyn AsDeviceSlice<T>>,
        y: &mut impl AsDeviceSliceMut<T>,
        relu: bool,
    ) -> Result<()> {
        let s = self.shape;
        let (x, w, mut y) = (
            x.as_device_slice(),
            w.as_device_slice(),
            y.as_device_slice_mut(),
        );
        let bias = bias.map(|b| b.as_device_slice());
        self.device.check_same(stream.device())?;
        for dev in [x.device(), w.device(), y.device()] {
            self.device.check_same(dev)?;
        }
        let need = crate::memory::ensure_len;
        need("x", s.x_len(), x.len())?;
        need("w", s.w_len(), w.len())?;
        need("y", s.y_len(), y.len())?;
        if let Some(b) = &bias {
            self.device.check_same(b.device())?;
            need("bias", s.k, b.len())?;
        }
        let mut acc = Access::new(stream)?;
        let ops = GemmOperands {
            a: acc.read(&x)?,
            b: acc.read(&w)?,
            c: Operand::NONE,
            bias: acc.read_or_null(bias.as_ref())?,
            d: acc.write(&mut y)?,
            workspace: acc.write_or_null(self.workspace.as_mut())?,
        };
        let (x_ptr, w_ptr) = (ops.a.addr(), ops.b.addr());
        for (what, ptr) in [("x", x_ptr), ("w", w_ptr)] {
            if ptr % 16 != 0 {
                return Err(Error::InvalidArgument {
                    what: format!("conv2d_sm90 needs {what} 16-byte aligned, got {ptr:#x}"),
                });
            }
        }
        let dtype = T::DTYPE;
        let maps = match self.tma_cache {
            Some((key, d)) if key == (x_ptr, w_ptr) => d,
            _ => {
                let dx = match self.a_load {
                    ALoad::Im2col => {
                        let lower = [-(s.pad.1 as i32), -(s.pad.0 as i32)];
                        let upper = [
                            s.pad.1 as i32 - ((s.s - 1) * s.dilation.1) as i32,
                            s.pad.0 as i32 - ((s.r - 1) * s.dilation.0) as i32,
                        ];
                        let stride = [s.stride.1 as u32, s.stride.0 as u32];
                        tma::im2col(
                            x_ptr,
                            dtype,
                            [s.n, s.h, s.w, s.c],
                            lower,
                            upper,
                            stride,
                            BM as u32,
                        )?
                    }
                    ALoad::Gather | ALoad::Packed => TmaMap::unused(),
                };
                let bn = self.variant.block_n as u32;
                let dw = match self.a_load {
                    // K_gemm walked linearly: the filter as K rows of R·S·C.
                    ALoad::Packed => tma::filter(w_ptr, dtype, s.k, 1, s.r * s.s * s.c, bn)?,
                    ALoad::Im2col | ALoad::Gather => {
                        tma::filter(w_ptr, dtype, s.k, s.r * s.s, s.c, bn)?
                    }
                };
                self.tma_cache = Some(((x_ptr, w_ptr), (dx, dw)));
                (dx, dw)
            }
        };
        let k_per_split = self.params.kt_per_split as usize * BK;
        let run_info = (self.splits, k_per_split, i32::from(relu));
        let mut args = ConvSm90::new(self.params, &ops, run_info, (&maps.0, &maps.1))?;
        let cfg = LaunchConfig {
            grid_dim: (self.grid_blocks as u32, self.splits as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: self.variant.smem_bytes(),
        };
        // The access orders the launches after earlier work on these buffers and notes them.
        run(stream, &self.func, cfg, &mut args)?;
        if self.splits > 1 {
            let cfg = grid_stride_config(self.m * s.k, self.device.properties().sm_count);
            let mut reduce = SplitKReduce::new(args.params());
            run(stream, &self.reduce, cfg, &mut reduce)?;
        }
        acc.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_is_a_kernel() {
        let mut shipped = crate::launch::tests::Shipped::default();
        for v in VARIANTS {
            for a_load in [ALoad::Im2col, ALoad::Gather, ALoad::Packed] {
                let which = ConvSm90Kernel {
                    block_n: v.block_n,
                    stages: v.stages,
                    two_cta: v.blocks_per_sm == 2,
                    a_load,
                };
                shipped.assert_defined::<ConvSm90<half::f16, half::f16>>(which);
                shipped.assert_defined::<ConvSm90<half::bf16, half::bf16>>(which);
            }
        }
    }

    #[test]
    fn output_size_follows_pytorch() {
        let s = Conv2dShape::new(2, 7, 9, 8, 4, 3, 3).pad(1, 1);
        assert_eq!(s.output_size(), Some((7, 9)));
        let s = Conv2dShape::new(1, 224, 224, 8, 64, 7, 7)
            .stride(2, 2)
            .pad(3, 3);
        assert_eq!(s.output_size(), Some((112, 112)));
        let s = Conv2dShape::new(1, 10, 10, 8, 4, 3, 3).dilation(2, 2);
        assert_eq!(s.output_size(), Some((6, 6)));
        let s = Conv2dShape::new(1, 2, 2, 8, 4, 3, 3);
        assert_eq!(s.output_size(), None);
        assert_eq!(s.y_len(), 0);
    }

    #[test]
    fn tile_choice() {
        // What measured fastest on the H100 (132 SMs) for ResNet-50's layers at batch 64.
        let pick = |m, k, kt| {
            let (v, splits) = choose(m, k, kt, 132);
            (v.block_n, v.blocks_per_sm, splits)
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
        let s = Conv2dShape::new(1, 8, 8, 8, 8, 3, 3).pad(1, 1);
        assert!(im2col_fits(&s));
        assert!(!im2col_fits(&s.stride(9, 1)));
        assert!(!im2col_fits(&s.dilation(100, 1)));
    }
}
