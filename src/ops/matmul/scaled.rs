//! FP8 matrix multiplication with per-tensor scales: [`ScaledMatmul`], whose docs say what it
//! takes (this module is private: users see the type's).

use super::desc::{at_most, Layout, MatmulDesc, Strides};
use super::run::Operands;
use super::staging::Staging;
use super::Epilogue;
use crate::catalog::ComputeCapability;
use crate::catalog::PtxArch;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::fp8::{self, Fp8};
use crate::launch::gemm::{
    Bias, Fp8Kernel, Fp8Scales, Fp8TileKernel, GemmFp8, GemmFp8Tiles, GemmOperands, GemmParams,
    GemmRun, GemmShape, FP8_MODULE, FP8_SM89_MODULE,
};
use crate::launch::tma::{self, MapElem, TmaMap};
use crate::launch::{run, Kernel, KernelArgs};
use crate::memory::access::{Access, Operand};
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice, DeviceSliceMut};
use crate::modules;
use crate::ops::gemm::{self as config, Choice, ComputeType, Tiling};
use crate::ops::Float;
use crate::size;
use crate::stream::Stream;
use cudarc::driver::LaunchConfig;
use std::marker::PhantomData;
use std::sync::{Mutex, PoisonError};

/// The elements K, the leading dimensions and the batch strides must be multiples of.
const K_MULTIPLE: usize = 16;

/// A checked scale on the device: `scale` must be positive and finite, with a finite
/// reciprocal ([`Error::InvalidArgument`] otherwise), as [`fp8::quantize`] requires.
///
/// ```no_run
/// use hikube_gpu::ops::matmul::scale_on_device;
/// use hikube_gpu::Device;
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let mut scale = scale_on_device(&stream, 0.25)?;
/// scale.copy_from_host(&stream, &[0.5])?; // a new scale for the next launch (or graph replay)
/// assert!(scale_on_device(&stream, 0.0).is_err());
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn scale_on_device(stream: &Stream, scale: f32) -> Result<DeviceBuffer<f32>> {
    fp8::check_scale(scale)?;
    DeviceBuffer::from_slice(stream, &[scale])
}

/// The scales of one launch (element 0 of each buffer) and, optionally, where D's amax goes.
///
/// ```no_run
/// # use hikube_gpu::{Device, DeviceBuffer};
/// # use hikube_gpu::ops::matmul::{scale_on_device, Scales};
/// # let device = Device::open(0)?;
/// # let stream = device.default_stream();
/// let (sa, sb) = (scale_on_device(&stream, 0.5)?, scale_on_device(&stream, 2.0)?);
/// let mut amax = DeviceBuffer::<f32>::zeroed(&stream, 1)?;
/// let scales = Scales::new(&sa, &sb).amax(&mut amax);
/// # let _ = scales;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct Scales<'a> {
    a: DeviceSlice<'a, f32>,
    b: DeviceSlice<'a, f32>,
    amax: Option<DeviceSliceMut<'a, f32>>,
}

impl<'a> Scales<'a> {
    /// A's and B's scales: each buffer's first element, read when the kernel runs.
    pub fn new(a: &'a impl AsDeviceSlice<f32>, b: &'a impl AsDeviceSlice<f32>) -> Self {
        Scales {
            a: a.as_device_slice(),
            b: b.as_device_slice(),
            amax: None,
        }
    }

    /// Also writes the largest magnitude of D (NaNs left out, as computed in f32 before D is
    /// rounded to its type) into `amax`, which must hold exactly one f32 (set to 0 first, on
    /// the launch's stream).
    pub fn amax(mut self, amax: &'a mut impl AsDeviceSliceMut<f32>) -> Self {
        self.amax = Some(amax.as_device_slice_mut());
        self
    }
}

/// A validated FP8 matrix multiplication, ready to launch many times, from any thread.
///
/// Per-tensor scales, as `torch._scaled_mm` and cuBLASLt's FP8 matmul:
/// `D = act(α·scale_a·scale_b·(A·B) + β·C + bias)`, A and B both [`F8E4M3`] or both [`F8E5M2`],
/// f32 accumulation, D in f16, bf16 or f32, and optionally D's largest magnitude (amax), which
/// FP8 training recipes turn into the next scale ([`fp8::scale_for`]).
///
/// The scales are device scalars (one f32 each, read when the kernel runs), so a captured graph
/// replays with whatever the buffers then hold; [`scale_on_device`] uploads a checked one.
/// Layouts: the kernels read A row-major and B column-major, both K-major, the only layout the
/// FP8 tensor cores read (the layout `torch._scaled_mm` requires too; a column-major D is
/// computed as Dᵀ = BᵀAᵀ, which keeps both K-major). Any other A or B (as the kernel computes
/// the product) must be dense, and is transposed into a K-major copy the plan owns, on the
/// launch's stream, before each product: a batch × M × K (or N × K) pass over it. K must be a
/// positive multiple of 16 elements, and so must the leading dimensions and batch strides of the
/// operands read as given (TMA's 16-byte rule; a copy's are K and M·K or N·K).
///
/// Paths ([`ScaledMatmul::path`]): `compute_90a` on the Hopper GPUs (9.0: TMA + wgmma m64nNk32,
/// the f16 kernel's skeleton), `compute_89` on Ada (8.9: RTX 40, L4, L40S) and, through the
/// driver's JIT, later GPUs (mma.sync m16n8k32 in the compute_80 kernel's main loop; it can be
/// forced on a Hopper GPU with `MatmulDesc::options`). GPUs below 8.9 have no FP8 tensor cores:
/// [`Error::UnsupportedDtype`] names the capability.
///
/// [`F8E4M3`]: crate::fp8::F8E4M3
/// [`F8E5M2`]: crate::fp8::F8E5M2
/// [`fp8::scale_for`]: crate::fp8::scale_for
///
/// ```no_run
/// use hikube_gpu::fp8::{self, F8E4M3};
/// use hikube_gpu::ndarray::Array2;
/// use hikube_gpu::ops::matmul::{scale_on_device, Epilogue, Layout, MatmulDesc, Scales, ScaledMatmul};
/// use hikube_gpu::{half::f16, Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let (m, n, k) = (256, 512, 1024);
/// let x = Array2::<f32>::from_elem((m, k), 0.25);
/// let w = Array2::<f32>::from_elem((n, k), 3.0); // B = wᵀ: column-major K × N
/// let (sx, sw) = (fp8::scale_for(0.25, fp8::Fp8Format::E4M3)?, fp8::scale_for(3.0, fp8::Fp8Format::E4M3)?);
/// let xq = fp8::quantize::<F8E4M3, _>(x.view(), sx)?;
/// let wq = fp8::quantize::<F8E4M3, _>(w.view(), sw)?;
/// let a = DeviceBuffer::from_slice(&stream, xq.as_slice().unwrap())?;
/// let b = DeviceBuffer::from_slice(&stream, wq.as_slice().unwrap())?;
/// let (sa, sb) = (scale_on_device(&stream, sx)?, scale_on_device(&stream, sw)?);
/// let mut d = DeviceBuffer::<f16>::alloc(&stream, m * n)?;
/// let mm = ScaledMatmul::<F8E4M3, f16>::new(&stream, MatmulDesc::new(m, n, k).b_layout(Layout::ColMajor))?;
/// mm.launch(&stream, &a, &b, &mut d, Scales::new(&sa, &sb), Epilogue::new())?;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct ScaledMatmul<T: Fp8, O: Float> {
    desc: MatmulDesc,
    /// The product the kernel computes (row-major D, K-major A and B), and its strides.
    view: MatmulDesc,
    strides: Strides,
    /// The caller's strides, in the kernel's order of A and B: what the buffers must hold.
    given: Strides,
    transposed: bool,
    /// The K-major copies of the operands the kernel cannot read as given.
    staging: Staging<T>,
    device: Device,
    arch: PtxArch,
    plan: Option<Plan<T, O>>,
    /// The tensor maps of the last (A, B) addresses.
    maps: Mutex<Option<super::TmaCache>>,
    _t: PhantomData<(T, O)>,
}

/// The kernel of a non-empty product and its tiling.
struct Plan<T: Fp8, O: Float> {
    kernel: Fp8Func<T, O>,
    choice: Choice,
}

enum Fp8Func<T: Fp8, O: Float> {
    /// compute_90a: the persistent kernel and the blocks that walk the tiles.
    Hopper {
        func: Kernel<GemmFp8<T, O>>,
        blocks: usize,
        fast_accum: bool,
    },
    /// compute_89: a block per tile and batch.
    Ada(Kernel<GemmFp8Tiles<T, O>>),
}

impl<T: Fp8, O: Float> std::fmt::Debug for ScaledMatmul<T, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScaledMatmul")
            .field("desc", &self.desc)
            .field("tiling", &self.tiling())
            .finish()
    }
}

/// How an FP8 plan accumulates.
///
/// The Hopper tensor cores sum FP8 products with about 14 bits of mantissa, not f32's 24. By
/// default each 128-long slice of K is summed apart and added to f32 accumulators (two-level
/// accumulation, as cuBLASLt does by default and DeepGEMM does), so only a slice's sum carries
/// that error: relative to the f64 result of the quantized inputs, f32 output, H100, about
/// 1.1e-4 at K = 1024. `fast_accum` (PyTorch's `use_fast_accum`) lets the tensor cores
/// accumulate all of K: about 10 % faster, and the error grows with K (1.8e-4 at K = 256,
/// 4.7e-4 at 1024, 1.2e-3 at 4096). `fp8::error_against_k` in the GPU tests prints both. The
/// compute_89 path (mma.sync, f32 accumulation: 4e-8) ignores the option.
///
/// ```no_run
/// use hikube_gpu::fp8::F8E4M3;
/// use hikube_gpu::ops::matmul::{Layout, MatmulDesc, ScaledMatmul, ScaledOptions};
/// use hikube_gpu::{half::bf16, Device};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let desc = MatmulDesc::new(4096, 4096, 4096).b_layout(Layout::ColMajor);
/// let fast = ScaledOptions::new().fast_accum(true); // PyTorch's use_fast_accum=True
/// let mm = ScaledMatmul::<F8E4M3, bf16>::with_options(&stream, desc, fast)?;
/// println!("fast accumulation: {}", mm.fast_accum()); // true on Hopper only
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScaledOptions {
    /// The tensor cores' own accumulation over all of K (Hopper path).
    pub fast_accum: bool,
}

impl ScaledOptions {
    /// The default: two-level accumulation.
    pub const fn new() -> Self {
        ScaledOptions { fast_accum: false }
    }

    /// Sets [`fast_accum`](Self::fast_accum).
    pub const fn fast_accum(mut self, fast: bool) -> Self {
        self.fast_accum = fast;
        self
    }
}

impl<T: Fp8, O: Float> ScaledMatmul<T, O> {
    /// Validates `desc` for `stream`'s device (see [`ScaledMatmul`] for what it takes),
    /// picks the tile configuration and loads the kernel, with the default
    /// [`ScaledOptions`]. `desc.split_k` (other than 1), `desc.compute` other than f32 and
    /// tilings not of the FP8 kernel are refused.
    pub fn new(stream: &Stream, desc: MatmulDesc) -> Result<Self> {
        Self::with_options(stream, desc, ScaledOptions::default())
    }

    /// [`new`](Self::new) with `options`.
    pub fn with_options(stream: &Stream, desc: MatmulDesc, options: ScaledOptions) -> Result<Self> {
        let device = stream.device().clone();
        let arch = fp8_arch::<T>(device.compute_capability(), desc.options.arch)?;
        let strides = desc.strides()?;
        let (view, transposed) = desc.row_major_view();
        let given = if transposed {
            strides.transposed()
        } else {
            strides
        };
        let staging = Staging::plan(&view, &given, transposed)?;
        let (view, strides) = staging.kernel_view(&view, &given)?;
        check_desc(&view, &strides)?;
        let plan = if view.is_empty() {
            None
        } else {
            staging.allocate(stream, &strides)?;
            Some(plan(&device, &view, arch, options)?)
        };
        Ok(ScaledMatmul {
            desc,
            view,
            strides,
            given,
            transposed,
            staging,
            device,
            arch,
            plan,
            maps: Mutex::new(None),
            _t: PhantomData,
        })
    }

    /// The kernels' target: `compute_90a` (Hopper) or `compute_89` (Ada and later).
    pub fn path(&self) -> PtxArch {
        self.arch
    }

    /// Whether the kernel accumulates all of K in the tensor cores ([`ScaledOptions`]): only a
    /// Hopper plan asked for `fast_accum` does.
    pub fn fast_accum(&self) -> bool {
        matches!(
            self.plan.as_ref().map(|p| &p.kernel),
            Some(Fp8Func::Hopper {
                fast_accum: true,
                ..
            })
        )
    }

    /// The tile configuration (on `compute_89`, `bk` counts pairs of FP8 values); `None` for an
    /// empty product.
    pub fn tiling(&self) -> Option<Tiling> {
        self.plan.as_ref().map(|p| p.choice.config.tiling)
    }

    /// The description the plan was made from.
    pub fn desc(&self) -> &MatmulDesc {
        &self.desc
    }

    /// Queues `D = act(α·scale_a·scale_b·(A·B) + β·C + bias)` on `stream` (and D's amax, if
    /// `scales` asks for it). Checks buffer sizes and devices; allocates nothing and does not
    /// synchronize.
    pub fn launch<B: Float>(
        &self,
        stream: &Stream,
        a: &impl AsDeviceSlice<T>,
        b: &impl AsDeviceSlice<T>,
        d: &mut impl AsDeviceSliceMut<O>,
        scales: Scales<'_>,
        epilogue: Epilogue<'_, O, B>,
    ) -> Result<()> {
        let (a, b, mut d) = (
            a.as_device_slice(),
            b.as_device_slice(),
            d.as_device_slice_mut(),
        );
        let (a, b) = if self.transposed { (b, a) } else { (a, b) };
        let c = epilogue.c_slice().filter(|_| self.view.beta != 0.0);
        let bias = epilogue.bias_slice();
        let ops = Operands { a, b, c, bias };
        let view = (&self.given, self.transposed, self.desc.n);
        ops.check(stream, &d, &self.device, view)?;
        let Operands { a, b, .. } = ops;
        let mut scales = scales;
        if let Some(slot) = scales.amax.as_mut() {
            self.device.check_same(slot.device())?;
            if slot.len() != 1 {
                return Err(Error::InvalidArgument {
                    what: format!("amax is one f32, not {} elements", slot.len()),
                });
            }
            slot.fill(stream, 0.0)?;
        }
        let Some(plan) = &self.plan else {
            return Ok(());
        };
        self.staging.run(stream, &self.view, (a, b), |a, b| {
            let mut acc = Access::new(stream)?;
            let ops = GemmOperands {
                a: acc.read(&a)?,
                b: acc.read(&b)?,
                c: acc.read_or_null(c)?,
                bias: Bias::of(acc.read_or_null(bias)?),
                d: acc.write(&mut d)?,
                workspace: Operand::NONE,
            };
            let amax = match scales.amax.as_mut() {
                Some(slot) => acc.write(slot)?,
                None => Operand::NONE,
            };
            let scales = Fp8Scales::new(&acc.read(&scales.a)?, &acc.read(&scales.b)?, &amax)?;
            let own_c = c.is_some();
            let ops = GemmOperands {
                c: if own_c { ops.c } else { ops.d },
                ..ops
            };
            self.queue(stream, plan, &ops, own_c, scales)?;
            acc.finish()
        })
    }

    /// The plan's kernel on `ops`: the Hopper kernel with its tensor maps, or the compute_89
    /// one on pairs of FP8 values.
    fn queue(
        &self,
        stream: &Stream,
        plan: &Plan<T, O>,
        ops: &GemmOperands<T, O>,
        own_c: bool,
        scales: Fp8Scales,
    ) -> Result<()> {
        let config = &plan.choice.config;
        let mut run_ = GemmRun {
            splits: 1,
            k_per_split: plan.choice.k_per_split,
            activation: self.view.activation.code(),
            fast_granule: None,
            want_vec8: true,
        };
        let shape = self.shape(own_c);
        match &plan.kernel {
            Fp8Func::Hopper { func, blocks, .. } => {
                let params = GemmParams::matmul(ops, &shape, &run_)?;
                let (a_map, b_map) = self.maps(ops)?;
                let mut args = GemmFp8::new(params, (&ops.a, &ops.b), (&a_map, &b_map), scales)?;
                let cfg = LaunchConfig {
                    grid_dim: (*blocks as u32, 1, 1),
                    block_dim: (config.threads, 1, 1),
                    shared_mem_bytes: config.smem_bytes,
                };
                run(stream, func, cfg, &mut args)
            }
            Fp8Func::Ada(func) => {
                // Pairs of FP8 values: K, lda, ldb and the strides are even (check_desc).
                let pairs = GemmOperands {
                    a: ops.a.pairs(),
                    b: ops.b.pairs(),
                    c: ops.c,
                    bias: ops.bias,
                    d: ops.d,
                    workspace: Operand::NONE,
                };
                let shape = GemmShape {
                    k: shape.k / 2,
                    lda: shape.lda / 2,
                    ldb: shape.ldb / 2,
                    stride_a: shape.stride_a / 2,
                    stride_b: shape.stride_b / 2,
                    ..shape
                };
                run_.fast_granule = Some(8);
                let params = GemmParams::matmul(&pairs, &shape, &run_)?;
                let mut args = GemmFp8Tiles::new(params, (config.bm, config.bn), scales)?;
                let cfg = args.config(config.threads, config.smem_bytes);
                run(stream, func, cfg, &mut args)
            }
        }
    }

    /// The product as the kernel sees it (C's leading dimension and stride are D's when C is
    /// read in place).
    fn shape(&self, own_c: bool) -> GemmShape {
        self.view.gemm_shape(&self.strides, own_c)
    }

    /// A's and B's tensor maps (K-major, boxes of 128 K bytes × 128 rows): the cached ones if
    /// the operands have not moved.
    fn maps(&self, ops: &GemmOperands<T, O>) -> Result<(TmaMap, TmaMap)> {
        let mut cache = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (ops.a.addr(), ops.b.addr());
        if let Some((k, maps)) = *cache {
            if k == key {
                return Ok(maps);
            }
        }
        let (v, s) = (&self.view, &self.strides);
        let a = tma::tiled_of(
            key.0,
            MapElem::FP8,
            [v.k, v.m, v.batch],
            s.lda,
            s.stride_a,
            128,
        )?;
        let b = tma::tiled_of(
            key.1,
            MapElem::FP8,
            [v.k, v.n, v.batch],
            s.ldb,
            s.stride_b,
            128,
        )?;
        *cache = Some((key, (a, b)));
        Ok((a, b))
    }
}

/// The FP8 kernels' target for a device of capability `cc`: the forced one, or the newest the
/// device runs among those this build ships (`compute_90a` on 9.0, else `compute_89` on 8.9 and
/// later). [`Error::UnsupportedDtype`] below 8.9 or for a forced target the device cannot run.
fn fp8_arch<T: Fp8>(cc: ComputeCapability, forced: Option<PtxArch>) -> Result<PtxArch> {
    let module = |arch: PtxArch| match arch {
        PtxArch::Compute90a => FP8_MODULE,
        _ => FP8_SM89_MODULE,
    };
    let targets = [PtxArch::Compute90a, PtxArch::Compute89];
    let runs = |a: &&PtxArch| a.runs_on(cc);
    let pick = match forced {
        Some(f) if !targets.contains(&f) => {
            return Err(Error::InvalidArgument {
                what: format!("the FP8 GEMM has compute_89 and compute_90a kernels, not {f}"),
            })
        }
        Some(f) => Some(f).filter(|a| a.runs_on(cc)),
        None => targets
            .iter()
            .filter(runs)
            .find(|a| modules::ships(module(**a), **a))
            .or_else(|| targets.iter().find(runs))
            .copied(),
    };
    pick.ok_or(Error::UnsupportedDtype {
        op: "scaled matmul",
        dtype: T::FORMAT.suffix(),
        major: cc.major,
        minor: cc.minor,
    })
}

/// What the kernel takes of a (row-major D) description.
fn check_desc(v: &MatmulDesc, s: &Strides) -> Result<()> {
    let refuse = |what: String| Err(Error::InvalidArgument { what });
    if (v.a_layout, v.b_layout) != (Layout::RowMajor, Layout::ColMajor) {
        return refuse(format!(
            "the FP8 GEMM reads A row-major and B column-major (both K-major; as computed, A is \
             {:?} and B {:?})",
            v.a_layout, v.b_layout
        ));
    }
    if v.compute != ComputeType::F32 {
        return refuse("the FP8 GEMM accumulates in f32".into());
    }
    if v.split_k.is_some_and(|s| s != 1) {
        return refuse("the FP8 GEMM does not split K".into());
    }
    let multiple = |x: usize| x.is_multiple_of(K_MULTIPLE);
    let batched = v.batch > 1;
    if v.k == 0 || !multiple(v.k) {
        return refuse(format!(
            "the FP8 GEMM needs K a positive multiple of 16, not {}",
            v.k
        ));
    }
    if !multiple(s.lda) || !multiple(s.ldb) {
        return refuse(format!(
            "the FP8 GEMM needs lda and ldb multiples of 16 (lda {}, ldb {})",
            s.lda, s.ldb
        ));
    }
    if batched
        && (s.stride_a == 0 || s.stride_b == 0 || !multiple(s.stride_a) || !multiple(s.stride_b))
    {
        return refuse(format!(
            "the FP8 GEMM needs non-zero batch strides of A and B that are multiples of 16 \
             (stride_a {}, stride_b {})",
            s.stride_a, s.stride_b
        ));
    }
    Ok(())
}

/// The tile configuration (the time model's, or the forced one) and the kernel of `arch`.
fn plan<T: Fp8, O: Float>(
    device: &Device,
    v: &MatmulDesc,
    arch: PtxArch,
    options: ScaledOptions,
) -> Result<Plan<T, O>> {
    let sms = device.properties().sm_count as usize;
    let max_smem = device.properties().max_shared_memory_per_block as usize;
    let hopper = arch == PtxArch::Compute90a;
    let configs = if hopper {
        config::fp8_configs()
    } else {
        config::fp8_sm89_configs()
    };
    let candidates = match v.tiling {
        None => configs,
        Some(t) => match configs.iter().find(|c| c.tiling == t) {
            Some(c) => std::slice::from_ref(c),
            None => {
                let known: Vec<String> = configs.iter().map(|c| c.tiling.to_string()).collect();
                return Err(Error::InvalidArgument {
                    what: format!(
                        "tiling {t} is not one of the {arch} FP8 GEMM's: {}",
                        known.join(", ")
                    ),
                });
            }
        },
    };
    // The compute_89 kernels count K in pairs.
    let k = if hopper { v.k } else { v.k / 2 };
    let choice =
        config::choose(candidates, v.m, v.n, k, v.batch, sms, max_smem, 1).ok_or_else(|| {
            Error::InvalidArgument {
                what: "no FP8 GEMM tile fits this device's shared memory".into(),
            }
        })?;
    let (smem, tiling) = (choice.config.smem_bytes, choice.config.tiling);
    at_most("shared memory per block", smem as usize, max_smem)?;
    let units = size::product(
        "output tiles x batch",
        &[
            v.m.div_ceil(choice.config.bm),
            v.n.div_ceil(choice.config.bn),
            v.batch,
        ],
    )?;
    at_most("output tiles x batch", units, i32::MAX as usize)?;
    at_most("K rounded up to 64", choice.k_per_split, i32::MAX as usize)?;
    let kernel = if hopper {
        let blocks = v.grid_blocks.unwrap_or(sms).clamp(1, units.max(1));
        let fast_accum = options.fast_accum;
        let func = GemmFp8::kernel(device, Fp8Kernel { tiling, fast_accum }, None)?;
        allow_smem(&func, smem)?;
        Fp8Func::Hopper {
            func,
            blocks,
            fast_accum,
        }
    } else {
        at_most("batch (grid y)", v.batch, 65535)?;
        let func = GemmFp8Tiles::kernel(device, Fp8TileKernel { tiling }, None)?;
        allow_smem(&func, smem)?;
        Fp8Func::Ada(func)
    };
    Ok(Plan { kernel, choice })
}

/// Lets `func` take `smem` bytes of dynamic shared memory where that exceeds 48 KiB.
fn allow_smem<A: KernelArgs>(func: &Kernel<A>, smem: u32) -> Result<()> {
    if smem > 48 * 1024 {
        func.set_max_dynamic_shared_memory(smem)?;
    }
    Ok(())
}

/// A plan can be shared by threads (`&ScaledMatmul` is `Send`) and moved to one.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<ScaledMatmul<fp8::F8E4M3, half::f16>>();
};

#[cfg(test)]
mod tests {
    use super::*;

    /// What `with_options` checks of `d`: which of the kernel's A and B are staged, and the
    /// kernel's (lda, ldb, extent of A, extent of B) after staging.
    fn check(d: MatmulDesc) -> Result<((bool, bool), [usize; 4])> {
        let (v, t) = d.row_major_view();
        let s = d.strides()?;
        let given = if t { s.transposed() } else { s };
        let staging = Staging::<fp8::F8E4M3>::plan(&v, &given, t)?;
        let (kv, ks) = staging.kernel_view(&v, &given)?;
        check_desc(&kv, &ks)?;
        assert_eq!(
            (kv.a_layout, kv.b_layout),
            (Layout::RowMajor, Layout::ColMajor)
        );
        Ok((staging.staged(), [ks.lda, ks.ldb, ks.extent_a, ks.extent_b]))
    }

    #[test]
    fn fp8_reads_k_major_operands_and_stages_the_others() {
        let (m, n, k) = (64, 48, 96);
        let nt = MatmulDesc::new(m, n, k).b_layout(Layout::ColMajor);
        let col = Layout::ColMajor;
        // (description, the kernel's A and B staged, its A's and B's rows): a column-major D
        // computes Dᵀ = Bᵀ·Aᵀ, so the kernel's A is the caller's B.
        for (d, staged, (rows_a, rows_b)) in [
            (nt.clone(), (false, false), (m, n)),
            (nt.clone().d_layout(col), (false, false), (n, m)),
            (MatmulDesc::new(m, n, k), (false, true), (m, n)),
            (nt.clone().a_layout(col), (true, false), (m, n)),
            (MatmulDesc::new(m, n, k).a_layout(col), (true, true), (m, n)),
            (
                MatmulDesc::new(m, n, k).d_layout(col),
                (true, false),
                (n, m),
            ),
            (
                nt.clone().a_layout(col).d_layout(col),
                (false, true),
                (n, m),
            ),
        ] {
            let (got, strides) = check(d.clone()).unwrap();
            assert_eq!(got, staged, "{d:?}");
            assert_eq!(strides, [k, k, rows_a * k, rows_b * k], "{d:?}");
        }
        let batched = nt.clone().batch(3).a_layout(col).stride_a(m * k);
        assert_eq!(check(batched).unwrap().1, [k, k, 3 * m * k, 3 * n * k]);
        for bad in [
            nt.clone().a_layout(Layout::ColMajor).lda(80),
            MatmulDesc::new(64, 48, 96).ldb(64),
            nt.clone()
                .batch(2)
                .a_layout(Layout::ColMajor)
                .stride_a(64 * 96 + 16),
            MatmulDesc::new(64, 64, 0).b_layout(Layout::ColMajor),
            MatmulDesc::new(64, 64, 40).b_layout(Layout::ColMajor),
            nt.clone().lda(104),
            nt.clone().split_k(2),
            nt.clone().compute(ComputeType::F16),
            nt.clone().batch(2).stride_b(0),
        ] {
            assert!(
                matches!(check(bad.clone()), Err(Error::InvalidArgument { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn fp8_runs_from_ada_on() {
        let arch = |major, minor, forced| {
            fp8_arch::<fp8::F8E5M2>(ComputeCapability::new(major, minor), forced)
        };
        assert_eq!(arch(9, 0, None).unwrap(), PtxArch::Compute90a);
        assert_eq!(arch(8, 9, None).unwrap(), PtxArch::Compute89);
        assert_eq!(arch(12, 0, None).unwrap(), PtxArch::Compute89);
        let forced = Some(PtxArch::Compute89);
        assert_eq!(arch(9, 0, forced).unwrap(), PtxArch::Compute89);
        for (major, minor, forced) in [
            (8, 6, None),
            (8, 0, None),
            (7, 5, None),
            (8, 9, Some(PtxArch::Compute90a)),
        ] {
            let e = arch(major, minor, forced);
            assert!(
                matches!(e, Err(Error::UnsupportedDtype { dtype: "e5m2", .. })),
                "{e:?}"
            );
        }
        assert!(matches!(
            arch(9, 0, Some(PtxArch::Compute80)),
            Err(Error::InvalidArgument { .. })
        ));
    }
}
