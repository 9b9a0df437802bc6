//! Convolution kernel paths, the implicit GEMM's tile configurations, and the choice of both.

use crate::catalog::PtxArch;
use crate::launch::conv::ImplicitPath;
use crate::ops::gemm::{self as gemm_config, configs, Choice, TileConfig};
use crate::ops::matmul::GemmPath;
use crate::tiles;

/// The kernel family a [`Conv2d`](super::Conv2d) plan runs.
///
/// ```no_run
/// use hikube_gpu::ops::conv2d::{Conv2d, Conv2dDesc, ConvPath};
/// use hikube_gpu::{half::f16, Device};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let pointwise = Conv2dDesc::input(32, 28, 28, 256).filters(64, 1, 1);
/// let plan = Conv2d::<f16, f16>::new(&stream, pointwise)?;
/// assert!(matches!(plan.path(), ConvPath::Gemm(_))); // a 1×1 convolution is a GEMM
/// let depthwise = Conv2dDesc::input(32, 28, 28, 64).filters(64, 3, 3).padding(1, 1).groups(64);
/// assert_eq!(Conv2d::<f16, f16>::new(&stream, depthwise)?.path(), ConvPath::Direct);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConvPath {
    /// 1×1, stride 1, no padding, dense: the convolution is a GEMM (NHWC input as an
    /// (N·H·W)×C row-major matrix, the KRSC filter as a column-major C×K one), run by
    /// [`Matmul`](crate::ops::matmul::Matmul) on its own path (compute 7.x, or when asked).
    Gemm(GemmPath),
    /// `compute_90a` (H100, H200): implicit GEMM with TMA im2col (or gathered loads) + wgmma,
    /// warp-specialized and persistent (`ops::conv2d`'s `sm90.rs`), for filters larger than 1×1 with
    /// C a multiple of 8 and the output in the input type; other Hopper convolutions run
    /// [`ConvPath::Sm80`].
    Sm90,
    /// `compute_80` (A100, RTX 30/40, L4, L40S; Hopper for 1×1 and C = 3): implicit GEMM, cp.async +
    /// ldmatrix + mma.sync m16n8k16, f16 and bf16.
    Sm80,
    /// `compute_75` (T4): implicit GEMM, mma.sync m16n8k8, f16 only.
    Sm75,
    /// Direct convolution on CUDA cores: depthwise convolutions on every GPU, and every
    /// convolution on `compute_70` (V100) that is not a GEMM.
    Direct,
}

impl ConvPath {
    /// The PTX target of the path's module (the GEMM's for [`ConvPath::Gemm`]; `None` for the
    /// direct kernels, which ship for every target).
    pub fn arch(self) -> Option<PtxArch> {
        match self {
            ConvPath::Gemm(g) => Some(g.arch()),
            ConvPath::Sm90 => Some(PtxArch::Compute90a),
            ConvPath::Sm80 => Some(PtxArch::Compute80),
            ConvPath::Sm75 => Some(PtxArch::Compute75),
            ConvPath::Direct => None,
        }
    }

    /// The implicit-GEMM kernels' path and the GEMM path whose split-K reduction they borrow.
    pub(crate) fn implicit(self) -> Option<(ImplicitPath, GemmPath)> {
        match self {
            ConvPath::Sm80 => Some((ImplicitPath::Sm80, GemmPath::Sm80)),
            ConvPath::Sm75 => Some((ImplicitPath::Sm75, GemmPath::Sm75)),
            ConvPath::Gemm(_) | ConvPath::Sm90 | ConvPath::Direct => None,
        }
    }

    /// The tile configurations of an implicit-GEMM path, largest first (empty for the others).
    pub(crate) fn configs(self) -> &'static [TileConfig] {
        self.configs_for(8)
    }

    /// The same for the kernels that gather `vec` channels per copy (8, or 4 for `_c4`).
    pub(crate) fn configs_for(self, vec: usize) -> &'static [TileConfig] {
        match (self, vec) {
            (ConvPath::Sm80, 4) => &SM80_C4,
            (ConvPath::Sm80, _) => &SM80,
            (ConvPath::Sm75, _) => &SM75,
            (ConvPath::Gemm(_) | ConvPath::Sm90 | ConvPath::Direct, _) => &[],
        }
    }

    /// Whether the path has bf16 kernels.
    pub fn supports_bf16(self) -> bool {
        match self {
            ConvPath::Gemm(g) => g.supports_bf16(),
            ConvPath::Sm75 => false,
            ConvPath::Sm90 | ConvPath::Sm80 | ConvPath::Direct => true,
        }
    }
}

// kernels/tiles.toml's [conv_sm80] and [conv_sm75]; their shared memory is the GEMM's formula
// (the implicit GEMM shares its pipeline and epilogue).
static SM80: [TileConfig; tiles::CONV_SM80.len()] = configs(tiles::CONV_SM80, GemmPath::Sm80);
// The 4-channel gather kernels (`_c4`).
static SM80_C4: [TileConfig; tiles::CONV_SM80_C4.len()] =
    configs(tiles::CONV_SM80_C4, GemmPath::Sm80);
static SM75: [TileConfig; tiles::CONV_SM75.len()] = configs(tiles::CONV_SM75, GemmPath::Sm75);
/// kernels/tiles.toml's [conv_grad_sm80] and [conv_grad_sm75]: the backward kernels (dgrad and
/// wgrad).
static GRAD_SM80: [TileConfig; tiles::CONV_GRAD_SM80.len()] =
    configs(tiles::CONV_GRAD_SM80, GemmPath::Sm80);
static GRAD_SM75: [TileConfig; tiles::CONV_GRAD_SM75.len()] =
    configs(tiles::CONV_GRAD_SM75, GemmPath::Sm75);

/// The backward kernels' tile configurations of an implicit-GEMM path.
pub(super) fn grad_configs(path: ImplicitPath) -> &'static [TileConfig] {
    match path {
        ImplicitPath::Sm80 => &GRAD_SM80,
        ImplicitPath::Sm75 => &GRAD_SM75,
    }
}

/// Picks the tile (and split-K factor) for the implicit GEMM M×N×K: the GEMM's time model.
pub(crate) fn choose(
    configs: &[TileConfig],
    (m, n, k): (usize, usize, usize),
    sm_count: usize,
    max_smem: usize,
) -> Option<Choice> {
    gemm_config::choose(configs, m, n, k, 1, sm_count, max_smem, 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smem_matches_the_kernels_formula() {
        assert_eq!(SM80[1].smem_bytes, 65_536);
        assert_eq!(SM80[3].smem_bytes, 81_920);
        assert_eq!(SM75[0].smem_bytes, 34_816);
    }

    #[test]
    fn narrow_layers_take_a_narrow_tile() {
        // ResNet-50's C64 56x56 3x3 layer at batch 64.
        let c = choose(&SM80, (64 * 56 * 56, 64, 576), 132, 227 << 10).unwrap();
        assert_eq!((c.config.bm, c.config.bn, c.splits), (128, 64, 1), "{c:?}");
    }

    #[test]
    fn small_late_layers_split_k() {
        // C512 7x7 3x3 at batch 1: 49 pixels, 4608-long reduction.
        let c = choose(&SM80, (49, 512, 4608), 132, 227 << 10).unwrap();
        assert!(c.splits > 1, "{c:?}");
    }
}
