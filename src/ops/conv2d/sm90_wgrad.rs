//! The Hopper filter gradient of [`Conv2dGrad`](super::Conv2dGrad): dwᵀ = im2col(x)ᵀ · dy on
//! wgmma (`conv_wgrad_sm90_*` in `kernels/conv/conv_sm90.cu`, the forward's tiles of one block
//! per SM), x read through a TMA im2col map of 64-pixel boxes, one per filter tap and 64
//! channels, dy through a tiled map, both MN-major; the reduction over N·P·Q pixels split into
//! slices where dw has few tiles.

use super::sm90::{
    choose_among, im2col_fits, im2col_map, smem_bytes, tiling, Sm90Plan, BK, THREADS, VARIANTS,
};
use super::Conv2dDesc;
use crate::error::Result;
use crate::launch::conv::{ConvRun, ConvSm90Shape, ConvWgradSm90};
use crate::launch::gemm::{Bias, GemmOperands, Reduction, SplitKReduce};
use crate::launch::tma::{self, TmaMap};
use crate::launch::{run, Kernel, KernelArgs};
use crate::memory::access::{Access, Operand};
use crate::memory::{DeviceBuffer, DeviceSlice, DeviceSliceMut};
use crate::ops::matmul::Tiling;
use crate::ops::{Activation, Float};
use crate::stream::Stream;
use crate::tiles::Tile;
use cudarc::driver::LaunchConfig;

/// Split-K slices at most: dw is small (K × R·S·C) and the reduction long (N·P·Q).
const MAX_SPLITS: usize = 64;

/// A filter-gradient plan on a Hopper GPU, for inputs `I` and dw in `O`.
pub(crate) struct WgradSm90<I: Float, O: Float> {
    desc: Conv2dDesc,
    params: ConvSm90Shape,
    variant: Tile,
    splits: usize,
    grid_blocks: usize,
    func: Kernel<ConvWgradSm90<I, O>>,
    reduce: Kernel<SplitKReduce<I, O>>,
    workspace: Option<DeviceBuffer<f32>>,
    maps: Option<((u64, u64), (TmaMap, TmaMap))>,
}

impl<I: Float, O: Float> WgradSm90<I, O> {
    /// The plan for `desc` (validated) on `stream`'s device where the kernel takes it: a
    /// compute_90a device, f16 or bf16, groups 1, C a multiple of 64, K of 8, and a geometry TMA
    /// im2col describes; `None` otherwise.
    pub(crate) fn new(stream: &Stream, desc: &Conv2dDesc) -> Result<Option<Self>> {
        let device = stream.device();
        let takes = Sm90Plan::<I>::check(device, desc).is_ok()
            && desc.c.is_multiple_of(64)
            && desc.k.is_multiple_of(8)
            && im2col_fits(desc);
        if !takes {
            return Ok(None);
        }
        let (p, q) = desc.output_hw();
        let (pixels, taps) = (desc.n * p * q, desc.r * desc.s * desc.c);
        let k_tiles = pixels.div_ceil(BK);
        let sms = device.properties().sm_count;
        let one_block: Vec<Tile> = VARIANTS.into_iter().filter(|v| v.min_blocks == 1).collect();
        let (variant, splits) = choose_among(
            &one_block,
            (taps, desc.k, k_tiles),
            sms as usize,
            MAX_SPLITS,
        );
        let kt_per_split = k_tiles.div_ceil(splits);
        let splits = k_tiles.div_ceil(kt_per_split);
        let tiles = taps.div_ceil(variant.bm) * desc.k.div_ceil(variant.bn);
        let grid_blocks = tiles.min((sms as usize / splits).max(1));
        let func = ConvWgradSm90::<I, O>::kernel(device, tiling(&variant), None)?;
        func.set_max_dynamic_shared_memory(smem_bytes(&variant))?;
        let reduce = SplitKReduce::<I, O>::kernel(device, Reduction::ConvSm90, None)?;
        let workspace = match splits {
            1 => None,
            _ => {
                let what = "conv2d filter gradient split-K workspace (slices x K x R·S·C)";
                let len = crate::size::product(what, &[splits, desc.k, taps])?;
                Some(DeviceBuffer::<f32>::alloc(stream, len)?)
            }
        };
        let params = ConvSm90Shape {
            k_tiles: k_tiles as i32,
            kt_per_split: kt_per_split as i32,
            ..super::sm90::conv_params(desc)
        };
        Ok(Some(WgradSm90 {
            desc: *desc,
            params,
            variant,
            splits,
            grid_blocks,
            func,
            reduce,
            workspace,
            maps: None,
        }))
    }

    /// The tile and split-K slices.
    pub(crate) fn tiling(&self) -> (Tiling, usize) {
        (tiling(&self.variant), self.splits)
    }

    /// Bytes of device memory the plan holds: the split-K partial sums, if any.
    pub(crate) fn workspace_bytes(&self) -> usize {
        self.workspace.as_ref().map_or(0, |w| w.num_bytes())
    }

    /// Queues `dw = α·∂(Σ dy·conv(x, w))/∂w` (lengths and devices checked by the caller).
    pub(crate) fn launch(
        &mut self,
        stream: &Stream,
        (x, dy): (&DeviceSlice<'_, I>, &DeviceSlice<'_, I>),
        dw: &mut DeviceSliceMut<'_, O>,
    ) -> Result<()> {
        let s = self.desc;
        let mut acc = Access::new(stream)?;
        let ops = GemmOperands {
            a: acc.read(x)?,
            b: acc.read(dy)?,
            c: Operand::<O>::NONE,
            bias: Bias::of(Operand::<O>::NONE),
            d: acc.write(dw)?,
            workspace: acc.write_or_null(self.workspace.as_mut())?,
        };
        let key = (ops.a.addr(), ops.b.addr());
        let maps = match self.maps {
            Some((k, maps)) if k == key => maps,
            _ => {
                let (p, q) = s.output_hw();
                let x_map = im2col_map(key.0, I::DTYPE, &self.params, BK as u32)?;
                let dy_map = tma::tiled(key.1, I::DTYPE, s.k, s.n * p * q, 1, s.k, 0, 64)?;
                self.maps = Some((key, (x_map, dy_map)));
                (x_map, dy_map)
            }
        };
        let run_info = ConvRun {
            tile: None,
            vec: None,
            splits: self.splits,
            k_per_split: self.params.kt_per_split as usize * BK,
            activation: Activation::None.code(),
            scale: (s.alpha, 0.0),
            ldb: 0,
        };
        let mut args = ConvWgradSm90::new(self.params, &ops, &run_info, (&maps.0, &maps.1))?;
        let cfg = LaunchConfig {
            grid_dim: (self.grid_blocks as u32, self.splits as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: smem_bytes(&self.variant),
        };
        run(stream, &self.func, cfg, &mut args)?;
        if self.splits > 1 {
            super::reduce_splits(stream, &self.reduce, args.params(), s.filter_len())?;
        }
        acc.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_one_block_variant_is_a_kernel() {
        let mut shipped = crate::launch::tests::Shipped::default();
        for v in VARIANTS.iter().filter(|v| v.min_blocks == 1) {
            shipped.assert_defined::<ConvWgradSm90<half::f16, f32>>(tiling(v));
            shipped.assert_defined::<ConvWgradSm90<half::bf16, half::bf16>>(tiling(v));
        }
    }
}
