//! Making a plan, step by step: the device's path and the element type, the path for the shape,
//! the tile configurations, the kernels, and the workspace's size. What a launch then runs is a
//! [`Route`].

use super::desc::{at_most, MatmulDesc, Strides};
use crate::catalog::{ComputeCapability, PtxArch};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::launch::gemm::{
    GemmPersistent, GemmTiles, PersistentKernel, Reduction, SplitKReduce, TileKernel,
};
use crate::launch::{Kernel as Loaded, KernelArgs};
use crate::modules;
use crate::ops::gemm::{self as config, Choice, ComputeType, GemmPath, Tiling};
use crate::ops::{Dtype, Float};
use crate::size;

/// What a launch of a [`Matmul`](super::Matmul) runs. [`Matmul::route`](super::Matmul::route)
/// says it for operands whose buffers are aligned (see the module docs);
/// [`Matmul::last_route`](super::Matmul::last_route) says what the last launch ran.
///
/// ```no_run
/// use hikube_gpu::ops::matmul::{Epilogue, GemmPath, Layout, Matmul, MatmulDesc, Route};
/// use hikube_gpu::{half::f16, Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let (m, n, k) = (128, 4096, 4096);
/// let plan = Matmul::<f16, f16>::new(&stream, MatmulDesc::new(m, n, k).b_layout(Layout::ColMajor))?;
/// if let Route::Gemm { path, tiling, splits, .. } = plan.route() {
///     println!("{path:?} {tiling} split {splits}"); // e.g. the compute_80 path for a skinny M
/// }
/// let a = DeviceBuffer::<f16>::zeroed(&stream, m * k)?;
/// let b = DeviceBuffer::<f16>::zeroed(&stream, n * k)?;
/// let mut d = DeviceBuffer::<f16>::alloc(&stream, m * n)?;
/// plan.launch(&stream, &a, &b.slice(1..)?, &mut d, Epilogue::new())
///     .expect_err("B is one element short"); // checked, not read out of bounds
/// plan.launch(&stream, &a, &b, &mut d, Epilogue::new())?;
/// assert!(matches!(plan.last_route(), Some(Route::Gemm { fast: true, .. })));
/// # let _ = GemmPath::Sm90;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Route {
    /// A GEMM kernel of `path`, with its tile configuration and split-K slices (more than one:
    /// a second kernel sums the slices and applies the epilogue). `fast`: the path's fast kernel,
    /// which needs aligned operands; otherwise the general kernel, which assumes nothing.
    Gemm {
        /// The kernel's path.
        path: GemmPath,
        /// Its tile configuration.
        tiling: Tiling,
        /// Its split-K slices.
        splits: usize,
        /// The fast kernel (else the general one).
        fast: bool,
        /// What the kernel accumulates in.
        accumulation: ComputeType,
    },
    /// K = 0: one element-wise kernel of `path` (the split-K reduction, with no slices) writes
    /// `D = act(β·C + bias)`.
    EpilogueOnly {
        /// The kernel's path.
        path: GemmPath,
    },
    /// M, N or the batch count is 0: nothing is queued.
    Empty,
}

impl Route {
    /// The tile configuration and split-K slices of a GEMM route.
    pub fn tiling(self) -> Option<(Tiling, usize)> {
        match self {
            Route::Gemm { tiling, splits, .. } => Some((tiling, splits)),
            Route::EpilogueOnly { .. } | Route::Empty => None,
        }
    }
}

/// One GEMM kernel of a plan (`F`: its loaded handle), with the tile configuration and
/// split-K factor it runs.
pub(crate) struct Kernel<F> {
    pub path: GemmPath,
    pub func: F,
    pub choice: Choice,
    pub accumulation: ComputeType,
}

impl<F> Kernel<F> {
    fn route(&self, fast: bool) -> Route {
        Route::Gemm {
            path: self.path,
            tiling: self.choice.config.tiling,
            splits: self.choice.splits,
            fast,
            accumulation: self.accumulation,
        }
    }
}

/// The path's fast kernel.
pub(crate) enum Fast<I: Float, O: Float> {
    /// A block per tile and slice (the `aligned` tile kernel).
    Tiles(Loaded<GemmTiles<I, O>>),
    /// Hopper path: the persistent kernel and the blocks launched, which walk the work units
    /// (tensor maps for A and B).
    Persistent {
        func: Loaded<GemmPersistent<I, O>>,
        blocks: usize,
    },
}

/// The kernels of a plan with M, N, K and the batch count positive.
pub(crate) struct Gemm<I: Float, O: Float> {
    /// `None` when the description rules it out (leading dimensions or batch strides that are
    /// not multiples of 8): every launch runs the general kernel.
    pub fast: Option<Kernel<Fast<I, O>>>,
    pub general: Kernel<Loaded<GemmTiles<I, O>>>,
    /// The split-K reduction (of the general kernel's path).
    pub reduce: Loaded<SplitKReduce<I, O>>,
}

impl<I: Float, O: Float> Gemm<I, O> {
    /// The route of a launch that runs the fast kernel (`fast`) or the general one.
    pub(crate) fn route(&self, fast: bool) -> Route {
        match (&self.fast, fast) {
            (Some(f), true) => f.route(true),
            (Some(_) | None, _) => self.general.route(false),
        }
    }
}

/// What a plan launches.
pub(crate) enum Kernels<I: Float, O: Float> {
    /// M, N or the batch count is 0; `path` is the one the device would run.
    Empty {
        path: GemmPath,
    },
    /// K = 0: the split-K reduction of `path` with no slices.
    EpilogueOnly {
        path: GemmPath,
        reduce: Loaded<SplitKReduce<I, O>>,
    },
    Gemm(Box<Gemm<I, O>>),
}

impl<I: Float, O: Float> Kernels<I, O> {
    /// Plans `desc` (row-major C and D; `strides` its own) for input type `I` on `device`.
    pub(crate) fn plan(device: &Device, desc: &MatmulDesc, strides: &Strides) -> Result<Self> {
        let path = device_path::<I>(device, desc.options.arch)?;
        if desc.is_empty() {
            return Ok(Kernels::Empty { path });
        }
        if desc.k == 0 {
            let path = path.fallback();
            return Ok(Kernels::EpilogueOnly {
                path,
                reduce: load_reduce(device, path)?,
            });
        }
        plan_gemm(device, desc, strides, path).map(|g| Kernels::Gemm(Box::new(g)))
    }

    /// What a launch runs when the operands' buffers are aligned.
    pub(crate) fn route(&self) -> Route {
        match self {
            Kernels::Empty { .. } => Route::Empty,
            Kernels::EpilogueOnly { path, .. } => Route::EpilogueOnly { path: *path },
            Kernels::Gemm(g) => g.route(true),
        }
    }

    /// The path of [`route`](Self::route); for an empty product, the device's.
    pub(crate) fn path(&self) -> GemmPath {
        match self {
            Kernels::Empty { path } | Kernels::EpilogueOnly { path, .. } => *path,
            Kernels::Gemm(g) => g.fast.as_ref().map_or(g.general.path, |f| f.path),
        }
    }

    /// Hopper path: the persistent blocks of the fast kernel; 0 otherwise.
    pub(crate) fn grid_blocks(&self) -> usize {
        match self {
            Kernels::Gemm(g) => match g.fast.as_ref().map(|f| &f.func) {
                Some(Fast::Persistent { blocks, .. }) => *blocks,
                Some(Fast::Tiles(_)) | None => 0,
            },
            Kernels::Empty { .. } | Kernels::EpilogueOnly { .. } => 0,
        }
    }

    /// The split-K workspace a launch needs, in f32 elements: slices × batch × M × N for the
    /// kernels that can run, if any splits.
    pub(crate) fn workspace_len(&self, desc: &MatmulDesc) -> Result<Option<usize>> {
        let Kernels::Gemm(g) = self else {
            return Ok(None);
        };
        let fast = g.fast.as_ref().map_or(1, |f| f.choice.splits);
        let splits = fast.max(g.general.choice.splits);
        if splits <= 1 {
            return Ok(None);
        }
        let len = size::product(
            "split-K workspace (slices x batch x M x N)",
            &[splits, desc.batch, desc.m, desc.n],
        )?;
        size::bytes_of::<f32>("split-K workspace bytes", len)?;
        Ok(Some(len))
    }
}

/// The newest GEMM path the device runs, or the forced target's; `I` must have kernels there.
fn device_path<I: Float>(device: &Device, forced: Option<PtxArch>) -> Result<GemmPath> {
    let cc = device.compute_capability();
    let arch = match forced {
        Some(forced) => modules::select(GemmPath::for_arch(forced).module(), cc, Some(forced))?,
        None => newest_arch(cc)?,
    };
    let path = GemmPath::for_arch(arch);
    let supported = match I::DTYPE {
        Dtype::F16 => true,
        Dtype::Bf16 => path.supports_bf16(),
        Dtype::F32 => false,
    };
    if !supported {
        let min = path.arch().min_capability();
        return Err(Error::UnsupportedDtype {
            op: "matmul",
            dtype: I::SUFFIX,
            major: min.major,
            minor: min.minor,
        });
    }
    Ok(path)
}

/// The target of the newest GEMM path a device of capability `cc` runs, among those this build
/// ships (a target left out by its cargo feature gives way to the next; when none is left,
/// loading the newest says which feature is off).
fn newest_arch(cc: ComputeCapability) -> Result<PtxArch> {
    let paths = [
        GemmPath::Sm90,
        GemmPath::Sm80,
        GemmPath::Sm75,
        GemmPath::Sm70,
    ];
    let runs = |p: &&GemmPath| p.arch().runs_on(cc);
    paths
        .iter()
        .filter(runs)
        .find(|p| modules::ships(p.module(), p.arch()))
        .or_else(|| paths.iter().find(runs))
        .map(|p| p.arch())
        .ok_or_else(|| Error::UnsupportedArch {
            module: "gemm",
            major: cc.major,
            minor: cc.minor,
            available: PtxArch::ALL.map(PtxArch::name).join(", "),
        })
}

/// The GEMM kernels of `desc` on the device's `path`.
fn plan_gemm<I: Float, O: Float>(
    device: &Device,
    desc: &MatmulDesc,
    strides: &Strides,
    path: GemmPath,
) -> Result<Gemm<I, O>> {
    let sms = device.properties().sm_count as usize;
    let max_smem = device.properties().max_shared_memory_per_block as usize;
    let acc = accumulation::<I>(desc, path)?;
    let path = path_for_shape(path, desc, strides, sms)?;
    let general_path = path.fallback();
    let choice = choose_fast(path, desc, sms, max_smem)?;
    let general_choice = choose_general(general_path, desc, sms, max_smem)?;
    for c in [&choice, &general_choice] {
        check_grid(desc, c)?;
    }
    let fast = if fast_layout(desc, strides) {
        let func = match persistent_blocks(path, desc, &choice, sms)? {
            Some(blocks) => {
                let which = PersistentKernel {
                    tiling: choice.config.tiling,
                    a_layout: desc.a_layout,
                    b_layout: desc.b_layout,
                };
                let func = GemmPersistent::kernel(device, which, None)?;
                allow_smem(device, &choice, &func)?;
                Fast::Persistent { func, blocks }
            }
            None => Fast::Tiles(load_tiles(device, path, &choice, desc, acc, true)?),
        };
        Some(Kernel {
            path,
            func,
            choice,
            accumulation: acc,
        })
    } else {
        None
    };
    let general = Kernel {
        path: general_path,
        func: load_tiles(device, general_path, &general_choice, desc, acc, false)?,
        choice: general_choice,
        accumulation: acc,
    };
    Ok(Gemm {
        fast,
        general,
        reduce: load_reduce(device, general_path)?,
    })
}

/// What the plan's tile kernels accumulate in: `desc.compute` where the device's path has it
/// (f16 accumulation on the mma.sync paths, for f16 inputs only); f32 on a device whose path is
/// the Hopper one, whichever kernel a shape then runs, so that one plan accumulates one way.
fn accumulation<I: Float>(desc: &MatmulDesc, device_path: GemmPath) -> Result<ComputeType> {
    let f16_inputs = match I::DTYPE {
        Dtype::F16 => true,
        Dtype::Bf16 | Dtype::F32 => false,
    };
    match desc.compute {
        ComputeType::F16 if !f16_inputs => Err(Error::InvalidArgument {
            what: format!(
                "ComputeType::F16 (f16 accumulation) needs f16 inputs, not {}",
                I::SUFFIX
            ),
        }),
        asked => Ok(device_path.accumulation(asked)),
    }
}

/// The device's path, or compute_80 where the Hopper path does not take the shape or is not
/// the faster. The Hopper kernel needs real batch strides (TMA strides cannot be 0). It also
/// wants at least half a wave of 128×256 output tiles, or a long K and an eighth of a wave of
/// 128×128 tiles (128×4096×4096): on small problems (1024³) the mma.sync path's small tiles
/// were faster on the H100 (BENCHMARKS.md). A forced compute_90a keeps the Hopper path for any
/// shape, and refuses batch strides of 0.
fn path_for_shape(path: GemmPath, desc: &MatmulDesc, s: &Strides, sms: usize) -> Result<GemmPath> {
    if path != GemmPath::Sm90 {
        return Ok(path);
    }
    let forced = desc.options.arch.is_some();
    let strides_ok = desc.batch == 1 || (s.stride_a > 0 && s.stride_b > 0);
    // Saturating: only compared with the SM count.
    let tiles = |bn: usize| {
        desc.m
            .div_ceil(128)
            .saturating_mul(desc.n.div_ceil(bn))
            .saturating_mul(desc.batch)
    };
    let hopper_fits = tiles(256).saturating_mul(2) >= sms
        || (desc.k >= 2048 && tiles(128).saturating_mul(8) >= sms);
    match (strides_ok, forced) {
        (false, true) => Err(Error::InvalidArgument {
            what: "the compute_90a GEMM path needs non-zero batch strides".into(),
        }),
        (false, false) => Ok(GemmPath::Sm80),
        (true, false) if !hopper_fits => Ok(GemmPath::Sm80),
        (true, _) => Ok(path),
    }
}

/// Whether the description lets the fast kernels run: leading dimensions (and, with several
/// batches, batch strides) of A and B that are multiples of 8 elements. The buffers' own
/// alignment is checked at each launch.
fn fast_layout(desc: &MatmulDesc, s: &Strides) -> bool {
    s.lda.is_multiple_of(8)
        && s.ldb.is_multiple_of(8)
        && (desc.batch == 1 || (s.stride_a.is_multiple_of(8) && s.stride_b.is_multiple_of(8)))
}

fn no_config(path: GemmPath) -> Error {
    Error::InvalidArgument {
        what: format!("the {path:?} GEMM path has no tile configuration"),
    }
}

/// The fast kernel's tile configuration and split-K factor: the heuristic's, or the forced
/// tiling (which must be one of the path's) and split-K factor.
fn choose_fast(path: GemmPath, desc: &MatmulDesc, sms: usize, max_smem: usize) -> Result<Choice> {
    let (m, n, k, batch) = (desc.m, desc.n, desc.k, desc.batch);
    let configs = path.configs();
    let choice = match desc.tiling {
        None => config::choose(configs, m, n, k, batch, sms, max_smem, path.max_splits()),
        Some(t) => {
            let Some(c) = configs.iter().find(|c| c.tiling == t) else {
                let known: Vec<String> = configs.iter().map(|c| c.tiling.to_string()).collect();
                return Err(Error::InvalidArgument {
                    what: format!(
                        "tiling {t} is not one of the {path:?} path's: {}",
                        known.join(", ")
                    ),
                });
            };
            let one = std::slice::from_ref(c);
            config::choose(one, m, n, k, batch, sms, usize::MAX, path.max_splits())
        }
    }
    .ok_or_else(|| no_config(path))?;
    Ok(forced_split(desc, choice))
}

/// `choice` with the description's forced split-K factor, if it has one.
fn forced_split(desc: &MatmulDesc, choice: Choice) -> Choice {
    match desc.split_k {
        None => choice,
        Some(want) => {
            // `want` ≥ 1 and 1 ≤ K < 2^31 (validated): no overflow, no division by 0.
            let k_per_split = desc.k.div_ceil(want).div_ceil(config::K_ALIGN) * config::K_ALIGN;
            Choice {
                splits: desc.k.div_ceil(k_per_split),
                k_per_split,
                ..choice
            }
        }
    }
}

/// The general kernel's configuration: it exists for the path's last (smallest) tile only; a
/// forced split-K factor holds for it too.
fn choose_general(
    path: GemmPath,
    desc: &MatmulDesc,
    sms: usize,
    max_smem: usize,
) -> Result<Choice> {
    let configs = path.configs();
    let last = configs.last().map_or(configs, std::slice::from_ref);
    let (m, n, k, batch) = (desc.m, desc.n, desc.k, desc.batch);
    config::choose(last, m, n, k, batch, sms, max_smem, path.max_splits())
        .map(|c| forced_split(desc, c))
        .ok_or_else(|| no_config(path))
}

/// What a launch of `c` passes as grid dimensions and 32-bit kernel parameters must fit.
fn check_grid(desc: &MatmulDesc, c: &Choice) -> Result<()> {
    let (m, n) = (desc.m, desc.n);
    let tiles = size::mul(
        "output tiles",
        m.div_ceil(c.config.bm),
        n.div_ceil(c.config.bn),
    )?;
    at_most("output tiles", tiles, i32::MAX as usize)?;
    let slices = size::mul("batch x split-K slices", desc.batch, c.splits)?;
    at_most("batch x split-K slices", slices, 65535)?;
    at_most(
        "K per split-K slice (rounded up to 64)",
        c.k_per_split,
        i32::MAX as usize,
    )
}

/// Hopper path: the work units (tiles × batches × slices), and the persistent blocks that walk
/// them, one per SM by default (`MatmulDesc::grid_blocks`). `None` on other paths.
fn persistent_blocks(
    path: GemmPath,
    desc: &MatmulDesc,
    choice: &Choice,
    sms: usize,
) -> Result<Option<usize>> {
    if path != GemmPath::Sm90 {
        return Ok(None);
    }
    let what = "output tiles x batch x split-K slices";
    let units = size::product(
        what,
        &[
            desc.m.div_ceil(choice.config.bm),
            desc.n.div_ceil(choice.config.bn),
            desc.batch,
            choice.splits,
        ],
    )?;
    at_most(what, units, i32::MAX as usize)?;
    let blocks = desc
        .grid_blocks
        .unwrap_or(sms.saturating_mul(choice.config.blocks_per_sm));
    Ok(Some(blocks.clamp(1, units.max(1))))
}

/// Loads the aligned (`fast`) or general tile kernel of `path` for `choice`, with the dynamic
/// shared memory it needs.
fn load_tiles<I: Float, O: Float>(
    device: &Device,
    path: GemmPath,
    choice: &Choice,
    desc: &MatmulDesc,
    accumulation: ComputeType,
    fast: bool,
) -> Result<Loaded<GemmTiles<I, O>>> {
    let which = TileKernel {
        path,
        tiling: choice.config.tiling,
        a_layout: desc.a_layout,
        b_layout: desc.b_layout,
        aligned: fast,
        accumulation,
    };
    let func = GemmTiles::kernel(device, which, None)?;
    allow_smem(device, choice, &func)?;
    Ok(func)
}

/// Lets `func` take the dynamic shared memory `choice` needs, where it exceeds 48 KiB.
fn allow_smem<A: KernelArgs>(device: &Device, choice: &Choice, func: &Loaded<A>) -> Result<()> {
    let smem = choice.config.smem_bytes;
    if smem > 48 * 1024 {
        let max_smem = device.properties().max_shared_memory_per_block as usize;
        at_most("shared memory per block", smem as usize, max_smem)?;
        func.set_max_dynamic_shared_memory(smem)?;
    }
    Ok(())
}

/// The split-K reduction of `path` (also the K = 0 epilogue).
fn load_reduce<I: Float, O: Float>(
    device: &Device,
    path: GemmPath,
) -> Result<Loaded<SplitKReduce<I, O>>> {
    SplitKReduce::kernel(device, Reduction::Gemm(path), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_decides_the_fast_kernel() {
        let s = |d: &MatmulDesc| d.strides().unwrap();
        let aligned = MatmulDesc::new(64, 64, 64);
        assert!(fast_layout(&aligned, &s(&aligned)));
        let odd_lda = MatmulDesc::new(64, 64, 61);
        assert!(!fast_layout(&odd_lda, &s(&odd_lda)));
        let odd_stride = MatmulDesc::new(64, 64, 64).batch(2).stride_b(64 * 64 + 4);
        assert!(!fast_layout(&odd_stride, &s(&odd_stride)));
        // One batch: its stride is never used.
        let one = MatmulDesc::new(64, 64, 64).stride_a(3);
        assert!(fast_layout(&one, &s(&one)));
    }

    #[test]
    fn the_hopper_path_leaves_small_and_broadcast_shapes() {
        let path = |d: MatmulDesc| path_for_shape(GemmPath::Sm90, &d, &d.strides().unwrap(), 132);
        assert_eq!(
            path(MatmulDesc::new(4096, 4096, 4096)).unwrap(),
            GemmPath::Sm90
        );
        assert_eq!(
            path(MatmulDesc::new(1024, 1024, 1024)).unwrap(),
            GemmPath::Sm80
        );
        assert_eq!(
            path(MatmulDesc::new(128, 4096, 4096)).unwrap(),
            GemmPath::Sm90
        );
        let broadcast = MatmulDesc::new(4096, 4096, 4096).batch(2).stride_b(0);
        assert_eq!(path(broadcast.clone()).unwrap(), GemmPath::Sm80);
        let forced = broadcast.options(crate::ops::KernelOptions {
            arch: Some(PtxArch::Compute90a),
        });
        assert!(matches!(path(forced), Err(Error::InvalidArgument { .. })));
        // Other paths are kept whatever the shape.
        let small = MatmulDesc::new(8, 8, 8);
        let s = small.strides().unwrap();
        assert_eq!(
            path_for_shape(GemmPath::Sm75, &small, &s, 132).unwrap(),
            GemmPath::Sm75
        );
    }

    #[test]
    fn forced_split_k_cuts_k_in_multiples_of_64() {
        let desc = MatmulDesc::new(128, 128, 1000).split_k(3);
        let c = choose_fast(GemmPath::Sm80, &desc, 132, 227 << 10).unwrap();
        assert_eq!((c.splits, c.k_per_split), (3, 384));
        // The general kernel (unaligned operands) runs the forced factor too.
        let g = choose_general(GemmPath::Sm80, &desc.split_k(2), 132, 227 << 10).unwrap();
        assert_eq!((g.splits, g.k_per_split), (2, 512));
        let bogus = MatmulDesc::new(8, 8, 8).tiling(Tiling {
            bm: 96,
            bn: 96,
            bk: 32,
            stages: 2,
        });
        assert!(matches!(
            choose_fast(GemmPath::Sm80, &bogus, 132, 227 << 10),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn f16_accumulation_is_for_f16_inputs_on_the_mma_sync_paths() {
        let asked = MatmulDesc::new(64, 64, 64).compute(ComputeType::F16);
        for path in [GemmPath::Sm70, GemmPath::Sm75, GemmPath::Sm80] {
            let acc = accumulation::<half::f16>(&asked, path).unwrap();
            assert_eq!(acc, ComputeType::F16, "{path:?}");
        }
        // The Hopper path's wgmma runs f32 accumulation at the same rate: the plan keeps it.
        let hopper = accumulation::<half::f16>(&asked, GemmPath::Sm90).unwrap();
        assert_eq!(hopper, ComputeType::F32);
        let default = MatmulDesc::new(64, 64, 64);
        let acc = accumulation::<half::f16>(&default, GemmPath::Sm80).unwrap();
        assert_eq!(acc, ComputeType::F32);
        for path in [GemmPath::Sm80, GemmPath::Sm90] {
            assert!(matches!(
                accumulation::<half::bf16>(&asked, path),
                Err(Error::InvalidArgument { .. })
            ));
        }
    }

    #[test]
    fn routes_report_their_tiling() {
        let tiling = GemmPath::Sm80.configs()[0].tiling;
        let gemm = Route::Gemm {
            path: GemmPath::Sm80,
            tiling,
            splits: 2,
            fast: true,
            accumulation: ComputeType::F16,
        };
        assert_eq!(gemm.tiling(), Some((tiling, 2)));
        assert_eq!(
            Route::EpilogueOnly {
                path: GemmPath::Sm80
            }
            .tiling(),
            None
        );
        assert_eq!(Route::Empty.tiling(), None);
    }
}
