//! The GEMM pieces the matmul and the convolution share: the kernel paths, the tile
//! configurations (from `crate::tiles`) with their threads and shared memory, and the time
//! model that picks a tile and a split-K factor per shape.

use crate::catalog::PtxArch;
use crate::tiles::{self, Tile};

/// What the tensor cores accumulate the products in ([`MatmulDesc::compute`](crate::ops::matmul::MatmulDesc::compute)),
/// as cuBLAS's compute type.
///
/// `F16` (f16 inputs only) lets the mma.sync paths (compute_70, compute_75, compute_80)
/// accumulate in f16: twice the tensor rate of f32 accumulation on GeForce cards (RTX 20/30/40),
/// the same rate on the data-center ones (V100, T4, A100, H100), at a cost in accuracy that grows
/// with K (estimated at 2^-11·√(K/96) relative to the f64 result for random inputs, bounded in
/// the GPU tests by 2^-11·√K; `matmul::acc16_error_grows_with_k` prints it against K: choose it
/// knowingly, for inference). Sums of more than 65504 overflow to infinity. The Hopper path's
/// wgmma runs f16 and f32 accumulation at the same rate, so on it `F16` is a permission the plan
/// does not use (the accumulation is decided once from the device's path, so a Hopper plan's
/// compute_80 fallback kernels accumulate in f32 too): the route says `F32` (like PyTorch's `allow_fp16_reduced_precision_reduction`). Split-K slices
/// are summed in f32.
///
/// ```no_run
/// use hikube_gpu::ops::matmul::{ComputeType, Layout, Matmul, MatmulDesc};
/// use hikube_gpu::{half::f16, Device};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let desc = MatmulDesc::new(1024, 1024, 1024)
///     .b_layout(Layout::ColMajor)
///     .compute(ComputeType::F16); // inference on a GeForce card
/// let mm = Matmul::<f16, f16>::new(&stream, desc)?;
/// println!("accumulates in {:?}", mm.route());
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ComputeType {
    /// f32 accumulators (the default; what bf16 products always use).
    #[default]
    F32,
    /// f16 accumulators where the path has them (f16 inputs only).
    F16,
}

/// A kernel family: one per architecture family, each in its own PTX module.
///
/// ```no_run
/// use hikube_gpu::ops::matmul::{GemmPath, Layout, Matmul, MatmulDesc};
/// use hikube_gpu::{half::f16, Device, KernelOptions, PtxArch};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// // What an RTX card runs, on whatever GPU this is: the compute_80 path, forced.
/// let rtx = KernelOptions { arch: Some(PtxArch::Compute80) };
/// let desc = MatmulDesc::new(4096, 4096, 4096).b_layout(Layout::ColMajor).options(rtx);
/// let plan = Matmul::<f16, f16>::new(&stream, desc)?;
/// assert_eq!(plan.path(), GemmPath::Sm80);
/// println!("its tiles: {:?}", Matmul::<f16, f16>::tilings(GemmPath::Sm80));
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GemmPath {
    /// `compute_70` (V100): WMMA, f16 only.
    Sm70,
    /// `compute_75` (T4): mma.sync m16n8k8 + ldmatrix, f16 only.
    Sm75,
    /// `compute_80` (A100, RTX 30/40, L4, L40S; the H100 for the shapes its own path leaves):
    /// mma.sync m16n8k16 + ldmatrix + cp.async pipeline, f16 and bf16.
    Sm80,
    /// `compute_90a` (H100, H200): TMA + wgmma, f16 and bf16, every layout.
    Sm90,
}

impl GemmPath {
    /// The path for a PTX target (the newest path that target can run).
    pub fn for_arch(arch: PtxArch) -> GemmPath {
        match arch {
            PtxArch::Compute70 => GemmPath::Sm70,
            PtxArch::Compute75 => GemmPath::Sm75,
            PtxArch::Compute80 | PtxArch::Compute89 => GemmPath::Sm80,
            PtxArch::Compute90a => GemmPath::Sm90,
        }
    }

    /// The PTX target the path's module is built for.
    pub fn arch(self) -> PtxArch {
        match self {
            GemmPath::Sm70 => PtxArch::Compute70,
            GemmPath::Sm75 => PtxArch::Compute75,
            GemmPath::Sm80 => PtxArch::Compute80,
            GemmPath::Sm90 => PtxArch::Compute90a,
        }
    }

    /// The kernel module's name (its source file's stem).
    pub(crate) fn module(self) -> &'static str {
        match self {
            GemmPath::Sm70 => "gemm_sm70",
            GemmPath::Sm75 => "gemm_sm75",
            GemmPath::Sm80 => "gemm_sm80",
            GemmPath::Sm90 => "gemm_sm90",
        }
    }

    pub(crate) fn tag(self) -> &'static str {
        match self {
            GemmPath::Sm70 => "sm70",
            GemmPath::Sm75 => "sm75",
            GemmPath::Sm80 => "sm80",
            GemmPath::Sm90 => "sm90",
        }
    }

    /// The granule, in elements, in which the path's fast (aligned) kernels read the rows of A
    /// and B: a row's last chunk is read whole even where the row ends inside it. compute_80
    /// copies 16-byte chunks with cp.async, zero-filling past the row's end, but each copy is
    /// one 16-byte access for the memory system (and compute-sanitizer), so the buffer must
    /// reach the chunk's end. The other paths read a chunk wide only when it lies inside the
    /// row (element by element otherwise), or through TMA, which stays inside its tensor map.
    pub(crate) fn row_granule(self) -> usize {
        match self {
            GemmPath::Sm80 => 8,
            GemmPath::Sm70 | GemmPath::Sm75 | GemmPath::Sm90 => 1,
        }
    }

    /// What the path's kernels accumulate in when `F16` is asked for: f16 on the mma.sync
    /// paths, f32 on the Hopper path (see [`ComputeType`]).
    pub fn accumulation(self, asked: ComputeType) -> ComputeType {
        match (self, asked) {
            (GemmPath::Sm90, _) | (_, ComputeType::F32) => ComputeType::F32,
            (GemmPath::Sm70 | GemmPath::Sm75 | GemmPath::Sm80, ComputeType::F16) => {
                ComputeType::F16
            }
        }
    }

    /// Whether the path has bf16 kernels.
    pub fn supports_bf16(self) -> bool {
        match self {
            GemmPath::Sm80 | GemmPath::Sm90 => true,
            GemmPath::Sm70 | GemmPath::Sm75 => false,
        }
    }

    /// The most split-K slices the heuristic gives this path. The Hopper path's main loop is
    /// bound by memory bandwidth on the shapes that would split, so more blocks do not make it
    /// faster and the partial sums only cost (128×4096×4096 on 128×128 tiles, H100: 27.9, 29.5,
    /// 29.2 and 33.2 µs with 1, 2, 4 and 8 slices; BENCHMARKS.md): it does not split.
    /// (`MatmulDesc::split_k` still can.)
    pub(crate) fn max_splits(self) -> usize {
        match self {
            GemmPath::Sm90 => 1,
            GemmPath::Sm70 | GemmPath::Sm75 | GemmPath::Sm80 => 16,
        }
    }

    /// The path that runs what this one cannot: unaligned operands, and, for the Hopper path,
    /// the layouts and shapes it does not take.
    pub(crate) fn fallback(self) -> GemmPath {
        match self {
            GemmPath::Sm90 => GemmPath::Sm80,
            GemmPath::Sm70 | GemmPath::Sm75 | GemmPath::Sm80 => self,
        }
    }

    /// The tile configurations of this path, largest first. The last one also exists as the
    /// general (unaligned) kernel.
    pub(crate) fn configs(self) -> &'static [TileConfig] {
        match self {
            GemmPath::Sm70 => &SM70,
            GemmPath::Sm75 => &SM75,
            GemmPath::Sm80 => &SM80,
            GemmPath::Sm90 => &SM90,
        }
    }
}

/// A tile configuration, to force one (for tuning) with [`MatmulDesc::tiling`](crate::ops::matmul::MatmulDesc::tiling).
///
/// ```
/// use hikube_gpu::ops::matmul::{GemmPath, Matmul, MatmulDesc};
/// let tilings = Matmul::<hikube_gpu::half::f16, f32>::tilings(GemmPath::Sm80);
/// let largest = tilings[0];
/// println!("{largest}"); // BMxBNxBKxSTAGES
/// let desc = MatmulDesc::new(4096, 4096, 4096).tiling(largest);
/// # let _ = desc;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tiling {
    /// Rows of D per block.
    pub bm: usize,
    /// Columns of D per block.
    pub bn: usize,
    /// K step per pipeline stage.
    pub bk: usize,
    /// Shared-memory pipeline stages.
    pub stages: usize,
}

impl std::fmt::Display for Tiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}x{}", self.bm, self.bn, self.bk, self.stages)
    }
}

/// One tile configuration of a path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TileConfig {
    pub tiling: Tiling,
    pub bm: usize,
    pub bn: usize,
    pub threads: u32,
    /// Dynamic shared memory per block (0: the kernel's is static).
    pub smem_bytes: u32,
    /// Blocks that fit on one SM (registers and shared memory), for the wave count.
    pub blocks_per_sm: usize,
    /// Relative throughput of a full SM with this tile (larger tiles reuse more).
    pub efficiency: f64,
}

/// The K granularity of split-K slices (a multiple of every kernel's K step).
pub(crate) const K_ALIGN: usize = 64;

/// Dynamic shared memory of the mma.sync kernels: the pipeline's stages or the epilogue's
/// staging, whichever is larger (gemm_smem_bytes in kernels/gemm/mma_pipeline.cuh).
const fn smem(bm: usize, bn: usize, bk: usize, stages: usize) -> u32 {
    let pipeline = stages * (bm + bn) * bk * 2;
    let epilogue = (bm / 2) * (bn + 8) * 4;
    (if pipeline > epilogue {
        pipeline
    } else {
        epilogue
    }) as u32
}

/// The configurations of a kernel module's tiles (`crate::tiles`) on `path`: threads from the
/// warp tile (a producer and two consumer warpgroups on the wgmma path), shared memory as the
/// path's kernels size it.
#[allow(clippy::indexing_slicing)] // evaluated while compiling: i < N
pub(crate) const fn configs<const N: usize>(tiles: [Tile; N], path: GemmPath) -> [TileConfig; N] {
    let mut out = [EMPTY; N];
    let mut i = 0;
    while i < N {
        out[i] = config(tiles[i], path);
        i += 1;
    }
    out
}

const EMPTY: TileConfig = config(
    Tile {
        bm: 0,
        bn: 0,
        bk: 0,
        stages: 0,
        warp: None,
        min_blocks: 0,
        fits: 0,
        efficiency: 0.0,
        general: false,
    },
    GemmPath::Sm90,
);

const fn config(t: Tile, path: GemmPath) -> TileConfig {
    let threads = match t.warp {
        Some((wm, wn)) if wm > 0 && wn > 0 => (t.bm / wm) * (t.bn / wn) * 32,
        Some(_) | None => 384,
    };
    let smem_bytes = match path {
        // The WMMA kernel's shared memory is static.
        GemmPath::Sm70 => 0,
        GemmPath::Sm75 | GemmPath::Sm80 => smem(t.bm, t.bn, t.bk, t.stages),
        GemmPath::Sm90 => sm90_smem(t.bm, t.bn, t.bk * 2, t.stages),
    };
    TileConfig {
        tiling: Tiling {
            bm: t.bm,
            bn: t.bn,
            bk: t.bk,
            stages: t.stages,
        },
        bm: t.bm,
        bn: t.bn,
        threads: threads as u32,
        smem_bytes,
        blocks_per_sm: t.fits,
        efficiency: t.efficiency,
    }
}

static SM70: [TileConfig; tiles::GEMM_SM70.len()] = configs(tiles::GEMM_SM70, GemmPath::Sm70);
static SM75: [TileConfig; tiles::GEMM_SM75.len()] = configs(tiles::GEMM_SM75, GemmPath::Sm75);
static SM80: [TileConfig; tiles::GEMM_SM80.len()] = configs(tiles::GEMM_SM80, GemmPath::Sm80);
static SM90: [TileConfig; tiles::GEMM_SM90.len()] = configs(tiles::GEMM_SM90, GemmPath::Sm90);

/// Dynamic shared memory of a Hopper configuration (`Config::SMEM_BYTES` in
/// kernels/gemm/sm90_gemm.cuh) whose stages hold `row_bytes` of K per row: the stages, 1 KiB to
/// align the swizzle atoms, and a 16 × 40-float epilogue buffer per consumer warp.
const fn sm90_smem(bm: usize, bn: usize, row_bytes: usize, stages: usize) -> u32 {
    (stages * (bm + bn) * row_bytes + 1024 + 8 * 16 * 40 * 4) as u32
}

/// The FP8 Hopper GEMM's configurations (kernels/tiles.toml's `[gemm_fp8_sm90]`): the Hopper
/// kernel's, with `bk` FP8 elements (one byte each) of K per stage.
pub(crate) fn fp8_configs() -> &'static [TileConfig] {
    &FP8_SM90
}

static FP8_SM90: [TileConfig; tiles::GEMM_FP8_SM90.len()] = fp8_sm90(tiles::GEMM_FP8_SM90);

/// The compute_89 FP8 GEMM's configurations (kernels/tiles.toml's `[gemm_fp8_sm89]`): the
/// compute_80 kernel's, over pairs of FP8 values (`bk` counts pairs).
pub(crate) fn fp8_sm89_configs() -> &'static [TileConfig] {
    &FP8_SM89
}

static FP8_SM89: [TileConfig; tiles::GEMM_FP8_SM89.len()] =
    configs(tiles::GEMM_FP8_SM89, GemmPath::Sm80);

#[allow(clippy::indexing_slicing)] // evaluated while compiling: i < N
const fn fp8_sm90<const N: usize>(tiles: [Tile; N]) -> [TileConfig; N] {
    let mut out = configs(tiles, GemmPath::Sm90);
    let mut i = 0;
    while i < N {
        let t = tiles[i];
        out[i].smem_bytes = sm90_smem(t.bm, t.bn, t.bk, t.stages);
        i += 1;
    }
    out
}

/// What the heuristic decided for one shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Choice {
    pub config: TileConfig,
    /// K is cut into this many slices, each a multiple of K_ALIGN long.
    pub splits: usize,
    pub k_per_split: usize,
}

/// Picks the tile configuration and split-K factor that minimize a simple time model: waves of
/// blocks times each block's work (scaled by the tile's efficiency), plus the split-K partial
/// sums' memory traffic (about 80 multiply-adds' time per byte on these GPUs). At most
/// `max_splits` slices. Counts saturate (a shape that large is refused by the plan's checks);
/// `None` only for an empty `configs`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn choose(
    configs: &[TileConfig],
    m: usize,
    n: usize,
    k: usize,
    batch: usize,
    sm_count: usize,
    max_smem: usize,
    max_splits: usize,
) -> Option<Choice> {
    let mut best: Option<(f64, Choice)> = None;
    for &c in configs.iter().filter(|c| c.smem_bytes as usize <= max_smem) {
        let tiles = m
            .div_ceil(c.bm)
            .saturating_mul(n.div_ceil(c.bn))
            .saturating_mul(batch);
        for want in 1..=max_splits.max(1) {
            let k_per_split = k.div_ceil(want).div_ceil(K_ALIGN).saturating_mul(K_ALIGN);
            let splits = k.div_ceil(k_per_split.max(1));
            if splits != want
                || (splits > 1 && k_per_split < 256)
                || tiles.saturating_mul(splits) > 65535 * 1024
            {
                continue;
            }
            let slots = sm_count.max(1) * c.blocks_per_sm;
            let waves = (tiles * splits).div_ceil(slots.max(1)) as f64;
            let block = (c.blocks_per_sm * c.bm * c.bn) as f64 * k_per_split as f64 / c.efficiency;
            let reduce = if splits > 1 {
                splits as f64 * m as f64 * n as f64 * batch as f64 * 8.0 * 80.0
                    / sm_count.max(1) as f64
            } else {
                0.0
            };
            let cost = waves * block + reduce;
            if best.as_ref().is_none_or(|(b, _)| cost < *b) {
                best = Some((
                    cost,
                    Choice {
                        config: c,
                        splits,
                        k_per_split,
                    },
                ));
            }
        }
    }
    best.map(|(_, c)| c).or_else(|| {
        configs.last().map(|&config| Choice {
            config,
            splits: 1,
            k_per_split: k.div_ceil(K_ALIGN).saturating_mul(K_ALIGN),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compute_80 choice for M×N×K on `sms` SMs with `smem` bytes per block.
    fn sm80((m, n, k): (usize, usize, usize), sms: usize, smem: usize) -> Choice {
        choose(GemmPath::Sm80.configs(), m, n, k, 1, sms, smem, 16).unwrap()
    }

    #[test]
    fn large_square_problems_take_a_large_tile() {
        let c = sm80((4096, 4096, 4096), 132, 227 << 10);
        assert_eq!((c.config.bm, c.config.bn, c.splits), (128, 128, 1));
        // A GPU with 99 KiB of shared memory per block cannot take the 144 KiB configuration.
        let c = sm80((4096, 4096, 4096), 82, 99 << 10);
        assert!(c.config.smem_bytes <= 99 << 10, "{c:?}");
    }

    #[test]
    fn skinny_problems_split_k() {
        let c = sm80((128, 4096, 4096), 132, 227 << 10);
        assert!(c.splits > 1, "{c:?}");
        assert_eq!(c.k_per_split % K_ALIGN, 0);
        assert!(c.splits * c.k_per_split >= 4096);
    }

    #[test]
    fn hopper_takes_wide_tiles_and_narrow_ones_for_skinny_shapes() {
        let sm90 = GemmPath::Sm90.configs();
        let max = GemmPath::Sm90.max_splits();
        for s in [2048, 4096, 8192] {
            let c = choose(sm90, s, s, s, 1, 132, 227 << 10, max).unwrap();
            assert_eq!((c.config.bn, c.splits), (256, 1), "{s}");
        }
        let c = choose(sm90, 128, 4096, 4096, 1, 132, 227 << 10, max).unwrap();
        assert_eq!(c.config.bn, 128, "{c:?}");
        assert_eq!((c.splits, c.k_per_split), (1, 4096), "{c:?}");
        // 192 KiB of stages each.
        assert!(
            sm90.iter().all(|c| c.smem_bytes == 197_632 + 20_480),
            "{sm90:?}"
        );
    }

    #[test]
    fn fp8_stages_hold_the_same_bytes() {
        // 128 FP8 elements of K per stage row: the 16-bit kernels' 128 bytes.
        for (f, h) in fp8_configs().iter().zip(GemmPath::Sm90.configs()) {
            assert_eq!(f.tiling.bk, 128);
            assert_eq!((f.bm, f.bn, f.smem_bytes), (h.bm, h.bn, h.smem_bytes));
        }
    }

    #[test]
    fn small_problems_do_not_split_a_short_k() {
        let c = choose(GemmPath::Sm80.configs(), 7, 5, 3, 1, 132, 227 << 10, 16).unwrap();
        assert_eq!(c.splits, 1);
        assert_eq!(c.k_per_split, 64);
    }

    #[test]
    fn smem_matches_the_kernels_formula() {
        assert_eq!(SM80[0].smem_bytes, 147_456);
        assert_eq!(SM80[2].smem_bytes, 73_728);
        assert_eq!(SM80[4].smem_bytes, 65_536);
        assert_eq!(SM75[0].smem_bytes, 34_816);
        assert_eq!(SM70[0].smem_bytes, 0);
    }
}
