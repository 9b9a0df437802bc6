//! Matrix multiplication on tensor cores: `D = act(α·op(A)·op(B) + β·C + bias)`.
//!
//! Inputs are `f16` or `bf16`; the output `f16`, `bf16` or `f32`; accumulation is always f32.
//! A is M×K and B is K×N, each row- or column-major with its own leading dimension; C and D are
//! M×N row-major. Batches are strided. A [`Matmul`] plan validates the shapes once, picks the
//! kernel path (by compute capability, or forced) and the tile configuration (by a heuristic on
//! the shape and the SM count, with split-K for small M·N and long K), loads its kernels and
//! allocates its split-K workspace; launching it then allocates nothing and never synchronizes,
//! so a launch can be captured in a CUDA graph.
//!
//! Alignment: the fast kernels need A and B 16-byte aligned, `lda` and `ldb` (and the batch
//! strides of A and B) multiples of 8 elements, and, on the compute_80 path, A's and B's buffers
//! to reach each row's length rounded up to 8 elements (the last row included). Anything else
//! runs the general kernels, which assume nothing. Paired output stores need even `ldd`/`ldc`;
//! otherwise single stores are used.
//!
//! `β = 0` never reads C, so NaN or garbage in C cannot reach D (cuBLAS semantics). With `β ≠ 0`
//! and no C given, C is D itself (accumulate in place).

pub(crate) mod config;
mod desc;
pub(crate) mod params;
pub(crate) mod tma;

pub use config::{GemmPath, Tiling};
pub use desc::{Activation, Layout, MatmulDesc};

use crate::device::Device;
use crate::error::{Error, Result};
use crate::launch::{grid_stride_config, launch};
use crate::memory::access::Access;
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice};
use crate::modules;
use crate::ops::Float;
use crate::size;
use crate::stream::Stream;
use config::Choice;
use desc::{at_most, Strides};

use cudarc::driver::{
    sys::CUfunction_attribute as Attr, CudaFunction, LaunchConfig, PushKernelArg,
};
use params::GemmParams;
use std::marker::PhantomData;

/// The optional epilogue operands of a launch: C (read when β ≠ 0) and a bias per output
/// column (of D's element type).
pub struct Epilogue<'a, O: Float> {
    c: Option<DeviceSlice<'a, O>>,
    bias: Option<DeviceSlice<'a, O>>,
}

impl<O: Float> Default for Epilogue<'_, O> {
    fn default() -> Self {
        Epilogue {
            c: None,
            bias: None,
        }
    }
}

impl<'a, O: Float> Epilogue<'a, O> {
    /// No C (β ≠ 0 then accumulates into D) and no bias.
    pub fn new() -> Self {
        Self::default()
    }

    /// C, read when β ≠ 0.
    pub fn c(mut self, c: &'a impl AsDeviceSlice<O>) -> Self {
        self.c = Some(c.as_device_slice());
        self
    }

    /// A bias of N elements, added to every row before the activation.
    pub fn bias(mut self, bias: &'a impl AsDeviceSlice<O>) -> Self {
        self.bias = Some(bias.as_device_slice());
        self
    }
}

/// A validated matrix multiplication, ready to launch many times.
///
/// ```no_run
/// use hikube_gpu::half::f16;
/// use hikube_gpu::ops::matmul::{Epilogue, Matmul, MatmulDesc, Activation};
/// use hikube_gpu::{Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let (m, n, k) = (256, 512, 1024);
/// let a = DeviceBuffer::from_slice(&stream, &vec![f16::from_f32(0.01); m * k])?;
/// let b = DeviceBuffer::from_slice(&stream, &vec![f16::from_f32(0.02); k * n])?;
/// let bias = DeviceBuffer::from_slice(&stream, &vec![1.0f32; n])?;
/// let mut d = DeviceBuffer::<f32>::alloc(&stream, m * n)?;
/// let mut mm = Matmul::<f16, f32>::new(&stream, MatmulDesc::new(m, n, k).activation(Activation::Relu))?;
/// mm.launch(&stream, &a, &b, &mut d, Epilogue::new().bias(&bias))?;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct Matmul<I: Float, O: Float> {
    desc: MatmulDesc,
    strides: Strides,
    device: Device,
    path: GemmPath,
    choice: Choice,
    aligned: CudaFunction,
    general: CudaFunction,
    general_choice: Choice,
    reduce: CudaFunction,
    workspace: Option<DeviceBuffer<f32>>,
    /// Hopper path: the persistent blocks launched; 0 on other paths.
    grid_blocks: usize,
    /// The Hopper path's tensor maps for the last (A, B) addresses: re-encoded (on the host,
    /// no allocation) only when the operands move.
    tma_cache: Option<((u64, u64), (tma::TmaDesc, tma::TmaDesc))>,
    _t: PhantomData<(I, O)>,
}

impl<I: Float, O: Float> std::fmt::Debug for Matmul<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matmul")
            .field("desc", &self.desc)
            .field("path", &self.path)
            .field("tile", &(self.choice.config.bm, self.choice.config.bn))
            .field("splits", &self.choice.splits)
            .field("grid_blocks", &self.grid_blocks)
            .finish()
    }
}

fn out_dtype<O: Float>() -> i32 {
    match O::SUFFIX {
        "f32" => 0,
        "f16" => 1,
        _ => 2,
    }
}

fn kernel_name(
    path: GemmPath,
    input: &str,
    tiling: Tiling,
    desc: &MatmulDesc,
    mode: &str,
) -> String {
    let a = if desc.a_layout == Layout::RowMajor {
        "ar"
    } else {
        "ac"
    };
    let b = if desc.b_layout == Layout::RowMajor {
        "br"
    } else {
        "bc"
    };
    format!("gemm_{}_{input}_{tiling}_{a}{b}_{mode}", path.tag())
}

impl<I: Float, O: Float> Matmul<I, O> {
    /// Validates `desc` for `stream`'s device, picks the kernel path and tile configuration,
    /// loads the kernels and allocates the split-K workspace (on `stream`).
    pub fn new(stream: &Stream, desc: MatmulDesc) -> Result<Self> {
        let strides = desc.strides()?;
        let device = stream.device().clone();
        let cc = device.compute_capability();
        let sms = device.properties().sm_count as usize;
        let max_smem = device.properties().max_shared_memory_per_block as usize;
        let forced = desc.options.arch;
        let arch = match forced {
            Some(forced) => modules::select(GemmPath::for_arch(forced).module(), cc, Some(forced))?,
            None => {
                // The newest GEMM path the device runs, among those this build ships (a target
                // left out by its cargo feature gives way to the next; when none is left,
                // loading the newest says which feature is off).
                let paths = [
                    GemmPath::Sm90,
                    GemmPath::Sm80,
                    GemmPath::Sm75,
                    GemmPath::Sm70,
                ];
                let runs = |p: &GemmPath| p.arch().runs_on(cc);
                match paths
                    .iter()
                    .find(|p| runs(p) && modules::ships(p.module(), p.arch()))
                    .or_else(|| paths.iter().find(|p| runs(p)))
                {
                    Some(path) => path.arch(),
                    None => {
                        return Err(Error::UnsupportedArch {
                            module: "gemm",
                            major: cc.major,
                            minor: cc.minor,
                            available: crate::PtxArch::ALL.map(crate::PtxArch::name).join(", "),
                        })
                    }
                }
            }
        };
        let mut path = GemmPath::for_arch(arch);
        if I::SUFFIX == "f32" || (I::SUFFIX == "bf16" && !path.supports_bf16()) {
            let min = path.arch().min_capability();
            return Err(Error::UnsupportedDtype {
                op: "matmul",
                dtype: I::SUFFIX,
                major: min.major,
                minor: min.minor,
            });
        }
        if path == GemmPath::Sm90 {
            // The Hopper kernel needs real batch strides (TMA strides cannot be 0). It also
            // wants at least half a wave of 128×256 output tiles, or a long K and an eighth of a
            // wave of 128×128 tiles (128×4096×4096): on small problems (1024³) the mma.sync
            // path's small tiles were faster on the H100 (BENCHMARKS.md).
            let strides_ok = desc.batch == 1 || (strides.stride_a > 0 && strides.stride_b > 0);
            // Saturating: only compared with the SM count.
            let tiles = desc
                .m
                .div_ceil(128)
                .saturating_mul(desc.n.div_ceil(256))
                .saturating_mul(desc.batch);
            let narrow_tiles = desc
                .m
                .div_ceil(128)
                .saturating_mul(desc.n.div_ceil(128))
                .saturating_mul(desc.batch);
            let hopper_fits = tiles.saturating_mul(2) >= sms
                || (desc.k >= 2048 && narrow_tiles.saturating_mul(8) >= sms);
            if !strides_ok {
                if forced.is_some() {
                    return Err(Error::InvalidArgument {
                        what: "the compute_90a GEMM path needs non-zero batch strides".into(),
                    });
                }
                path = GemmPath::Sm80;
            } else if forced.is_none() && !hopper_fits {
                path = GemmPath::Sm80;
            }
        }
        let general_path = path.fallback();
        let (m, n, k, batch) = (desc.m, desc.n, desc.k, desc.batch);
        let configs = path.configs();
        let general_configs = general_path.configs();
        // The general kernel exists for the path's last (smallest) configuration only.
        let general_config = general_configs
            .last()
            .map_or(general_configs, std::slice::from_ref);
        let no_config = || Error::InvalidArgument {
            what: format!("the {path:?} GEMM path has no tile configuration"),
        };
        let choice = match desc.tiling {
            None => config::choose(configs, m, n, k, batch, sms, max_smem, path.max_splits())
                .ok_or_else(no_config)?,
            Some(t) => match configs.iter().find(|c| c.tiling == t) {
                Some(c) => config::choose(
                    std::slice::from_ref(c),
                    m,
                    n,
                    k,
                    batch,
                    sms,
                    usize::MAX,
                    path.max_splits(),
                )
                .ok_or_else(no_config)?,
                None => {
                    return Err(Error::InvalidArgument {
                        what: format!(
                            "tiling {t} is not one of the {:?} path's: {}",
                            path,
                            configs
                                .iter()
                                .map(|c| c.tiling.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })
                }
            },
        };
        let choice = match desc.split_k {
            None => choice,
            Some(want) => {
                // `want` ≥ 1 and K < 2^31 (validated): no overflow.
                let k_per_split = k.div_ceil(want).div_ceil(config::K_ALIGN) * config::K_ALIGN;
                Choice {
                    splits: k.div_ceil(k_per_split),
                    k_per_split,
                    ..choice
                }
            }
        };
        let general_choice = config::choose(
            general_config,
            m,
            n,
            k,
            batch,
            sms,
            max_smem,
            general_path.max_splits(),
        )
        .ok_or_else(no_config)?;
        let load = |path: GemmPath, c: &Choice, mode: &str| -> Result<CudaFunction> {
            let name = kernel_name(path, I::SUFFIX, c.config.tiling, &desc, mode);
            let f = device.function(path.module(), &name, Some(path.arch()))?;
            let smem = c.config.smem_bytes;
            if smem > 48 * 1024 {
                at_most("shared memory per block", smem as usize, max_smem)?;
                f.set_attribute(
                    Attr::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    smem as i32,
                )?;
            }
            Ok(f)
        };
        let mode = match path {
            GemmPath::Sm90 => "persistent",
            _ => "aligned",
        };
        let aligned = load(path, &choice, mode)?;
        // Hopper: the work units (tiles × batches × slices), and the persistent blocks that walk
        // them: one per SM by default.
        let grid_blocks = if path == GemmPath::Sm90 {
            let units = size::product(
                "output tiles x batch x split-K slices",
                &[
                    m.div_ceil(choice.config.bm),
                    n.div_ceil(choice.config.bn),
                    batch,
                    choice.splits,
                ],
            )?;
            at_most(
                "output tiles x batch x split-K slices",
                units,
                i32::MAX as usize,
            )?;
            desc.grid_blocks
                .unwrap_or(sms * choice.config.blocks_per_sm)
                .clamp(1, units.max(1))
        } else {
            0
        };
        let general = load(general_path, &general_choice, "general")?;
        let reduce = device.function(
            general_path.module(),
            &format!("gemm_{}_splitk_reduce", general_path.tag()),
            Some(general_path.arch()),
        )?;
        let splits = choice.splits.max(general_choice.splits);
        // What the launch passes as grid dimensions and 32-bit kernel parameters.
        for c in [&choice, &general_choice] {
            let tiles = size::mul(
                "output tiles",
                m.div_ceil(c.config.bm),
                n.div_ceil(c.config.bn),
            )?;
            at_most("output tiles", tiles, i32::MAX as usize)?;
            let slices = size::mul("batch x split-K slices", batch, c.splits)?;
            at_most("batch x split-K slices", slices, 65535)?;
            at_most(
                "K per split-K slice (rounded up to 64)",
                c.k_per_split,
                i32::MAX as usize,
            )?;
        }
        let workspace = if splits > 1 {
            let len = size::product(
                "split-K workspace (slices x batch x M x N)",
                &[splits, batch, m, n],
            )?;
            size::bytes_of::<f32>("split-K workspace bytes", len)?;
            Some(DeviceBuffer::<f32>::alloc(stream, len)?)
        } else {
            None
        };
        Ok(Matmul {
            desc,
            strides,
            device,
            path,
            choice,
            aligned,
            general,
            general_choice,
            reduce,
            workspace,
            grid_blocks,
            tma_cache: None,
            _t: PhantomData,
        })
    }

    /// The kernel path in use.
    pub fn path(&self) -> GemmPath {
        self.path
    }

    /// The fast kernel's tile configuration and split-K factor.
    pub fn tiling(&self) -> (Tiling, usize) {
        (self.choice.config.tiling, self.choice.splits)
    }

    /// The tile configurations of a path, largest first (the last is also the general path's).
    pub fn tilings(path: GemmPath) -> Vec<Tiling> {
        path.configs().iter().map(|c| c.tiling).collect()
    }

    /// Hopper path: the blocks launched, which walk the work units (0 on other paths).
    pub fn grid_blocks(&self) -> usize {
        self.grid_blocks
    }

    /// Bytes of split-K workspace the plan holds.
    pub fn workspace_bytes(&self) -> usize {
        self.workspace.as_ref().map_or(0, |w| w.num_bytes())
    }

    /// The description the plan was made from.
    pub fn desc(&self) -> &MatmulDesc {
        &self.desc
    }

    /// Changes the activation of later launches (the kernels take it as a parameter, so the
    /// plan's kernels and workspace stay as they are).
    pub(crate) fn set_activation(&mut self, activation: Activation) {
        self.desc.activation = activation;
    }

    /// Queues `D = act(α·op(A)·op(B) + β·C + bias)` on `stream`. Checks buffer sizes and
    /// devices; allocates nothing and does not synchronize.
    pub fn launch(
        &mut self,
        stream: &Stream,
        a: &impl AsDeviceSlice<I>,
        b: &impl AsDeviceSlice<I>,
        d: &mut impl AsDeviceSliceMut<O>,
        epilogue: Epilogue<'_, O>,
    ) -> Result<()> {
        let desc = &self.desc;
        let s = self.strides;
        let (a, b, mut d) = (
            a.as_device_slice(),
            b.as_device_slice(),
            d.as_device_slice_mut(),
        );
        self.device.check_same(stream.device())?;
        for dev in [a.device(), b.device(), d.device()] {
            self.device.check_same(dev)?;
        }
        let need = crate::memory::ensure_len;
        need("A", s.extent_a, a.len())?;
        need("B", s.extent_b, b.len())?;
        need("D", s.extent_d, d.len())?;
        let use_c = desc.beta != 0.0;
        let c = if use_c { epilogue.c.as_ref() } else { None };
        if let Some(c) = c {
            self.device.check_same(c.device())?;
            need("C", s.extent_c, c.len())?;
        }
        if let Some(bias) = &epilogue.bias {
            self.device.check_same(bias.device())?;
            need("bias", desc.n, bias.len())?;
        }

        let mut acc = Access::new(stream)?;
        let a_ptr = acc.read(&a)?;
        let b_ptr = acc.read(&b)?;
        let c_given = match c {
            Some(c) => Some(acc.read(c)?),
            None => None,
        };
        let bias_ptr = acc.read_or_null(epilogue.bias.as_ref())?;
        let d_ptr = acc.write(&mut d)?;
        let ws_ptr = acc.write_or_null(self.workspace.as_mut())?;

        let osize = std::mem::size_of::<O>() as u64;
        let (c_ptr, ldc, stride_c) = match c_given {
            Some(p) => (p, s.ldc, s.stride_c),
            None => (d_ptr, s.ldd, s.stride_d), // β ≠ 0 without C: in place
        };
        // The fast kernels also need A's and B's buffers to reach the end of each row's last
        // chunk (compute_80's cp.async reads it whole); tight buffers take the general kernels.
        let granule = self.path.row_granule();
        let chunk_tail = |cols: usize| cols.next_multiple_of(granule).saturating_sub(cols);
        let aligned = a_ptr % 16 == 0
            && b_ptr % 16 == 0
            && s.lda % 8 == 0
            && s.ldb % 8 == 0
            && (desc.batch == 1 || (s.stride_a % 8 == 0 && s.stride_b % 8 == 0))
            && a.len() >= s.extent_a.saturating_add(chunk_tail(desc.stored_a().1))
            && b.len() >= s.extent_b.saturating_add(chunk_tail(desc.stored_b().1));
        let pair_ok = d_ptr % (2 * osize) == 0
            && s.ldd % 2 == 0
            && (desc.batch == 1 || s.stride_d % 2 == 0)
            && (!use_c
                || (c_ptr % (2 * osize) == 0
                    && ldc % 2 == 0
                    && (desc.batch == 1 || stride_c % 2 == 0)))
            && bias_ptr % (2 * osize) == 0;
        // Eight-element (16-byte) access to the rows of D, C and the bias at every column that is
        // a multiple of 8: the persistent Hopper kernel's vectorized epilogue (`p.reserved`).
        let row16 = |ptr: u64, ld: usize, stride: usize| {
            ptr % 16 == 0
                && (ld as u64 * osize) % 16 == 0
                && (desc.batch == 1 || (stride as u64 * osize) % 16 == 0)
        };
        let vec8_ok = row16(d_ptr, s.ldd, s.stride_d)
            && (!use_c || row16(c_ptr, ldc, stride_c))
            && bias_ptr % 16 == 0;
        let (func, choice) = if aligned {
            (&self.aligned, &self.choice)
        } else {
            (&self.general, &self.general_choice)
        };
        let params = GemmParams {
            a: a_ptr,
            b: b_ptr,
            c: if use_c { c_ptr } else { 0 },
            bias: bias_ptr,
            d: d_ptr,
            workspace: ws_ptr,
            lda: s.lda as i64,
            ldb: s.ldb as i64,
            ldc: ldc as i64,
            ldd: s.ldd as i64,
            stride_a: s.stride_a as i64,
            stride_b: s.stride_b as i64,
            stride_c: stride_c as i64,
            stride_d: s.stride_d as i64,
            m: desc.m as i32,
            n: desc.n as i32,
            k: desc.k as i32,
            batch: desc.batch as i32,
            splits: choice.splits as i32,
            k_per_split: choice.k_per_split as i32,
            activation: match desc.activation {
                Activation::None => 0,
                Activation::Relu => 1,
                Activation::Gelu => 2,
            },
            out_dtype: out_dtype::<O>(),
            pair_ok: i32::from(pair_ok),
            // The Hopper kernels read it as the 16-byte epilogue flag (gemm_params.cuh's
            // epilogue8); the others ignore it.
            reserved: i32::from(vec8_ok),
            alpha: desc.alpha,
            beta: desc.beta,
        };
        let tiles = desc.m.div_ceil(choice.config.bm) * desc.n.div_ceil(choice.config.bn);
        let persistent = aligned && self.grid_blocks > 0;
        let cfg = if persistent {
            // Each block walks the tiles × batches × slices `grid_blocks` apart.
            LaunchConfig {
                grid_dim: (self.grid_blocks as u32, 1, 1),
                block_dim: (choice.config.threads, 1, 1),
                shared_mem_bytes: choice.config.smem_bytes,
            }
        } else {
            LaunchConfig {
                grid_dim: (tiles as u32, (desc.batch * choice.splits) as u32, 1),
                block_dim: (choice.config.threads, 1, 1),
                shared_mem_bytes: choice.config.smem_bytes,
            }
        };
        if aligned && self.path == GemmPath::Sm90 {
            let key = (a_ptr, b_ptr);
            let descs = match self.tma_cache {
                Some((k, d)) if k == key => d,
                _ => {
                    let bf16 = I::SUFFIX == "bf16";
                    let (m, n, k) = (desc.m, desc.n, desc.k);
                    let bm = choice.config.bm as u32;
                    // K-major operands: boxes of 64 K × 128 rows (the tile's A; B in one or
                    // two of them); MN-major ones: boxes of 64 M (or N) × 64 K, several per
                    // tile.
                    let da = match desc.a_layout {
                        Layout::RowMajor => {
                            tma::tiled(a_ptr, bf16, k, m, desc.batch, s.lda, s.stride_a, bm)?
                        }
                        Layout::ColMajor => {
                            tma::tiled(a_ptr, bf16, m, k, desc.batch, s.lda, s.stride_a, 64)?
                        }
                    };
                    let db = match desc.b_layout {
                        Layout::ColMajor => {
                            tma::tiled(b_ptr, bf16, k, n, desc.batch, s.ldb, s.stride_b, 128)?
                        }
                        Layout::RowMajor => {
                            tma::tiled(b_ptr, bf16, n, k, desc.batch, s.ldb, s.stride_b, 64)?
                        }
                    };
                    self.tma_cache = Some((key, (da, db)));
                    (da, db)
                }
            };
            let mut args = stream.raw.launch_builder(func);
            args.arg(&params).arg(&descs.0).arg(&descs.1);
            // SAFETY: the Hopper kernels (persistent blocks walking every tile × batch × slice)
            // take (GemmParams, TmaDesc, TmaDesc) by value. The tensor maps describe exactly A and B as validated and size-checked above; TMA
            // reads only inside them (zero fill past the edges); the epilogue writes D (and
            // reads C, bias) within the checked extents, or, with split-K, the workspace of
            // splits × batch × M × N floats allocated in `new`.
            unsafe { launch(args, cfg) }?;
        } else {
            let mut args = stream.raw.launch_builder(func);
            args.arg(&params);
            // SAFETY: the kernel takes one GemmParams by value, which matches `params` field for
            // field. Every pointer in it addresses a live buffer of this device whose size was
            // checked above against the furthest element the shape, leading dimensions and batch
            // strides reach (the kernels bound every access by M, N, K; the fast kernels' whole
            // 16-byte chunks at the rows' ends lie within the buffers (`chunk_tail`, checked for
            // `aligned`); the split-K workspace holds splits × batch × M × N floats (allocated in
            // `new` for the larger split factor). The access above orders the launch after
            // earlier uses and notes it.
            unsafe { launch(args, cfg) }?;
        }
        if choice.splits > 1 {
            let total = desc.batch * desc.m * desc.n;
            let cfg = grid_stride_config(total, self.device.properties().sm_count);
            let mut args = stream.raw.launch_builder(&self.reduce);
            args.arg(&params);
            // SAFETY: as above; the reduction reads the workspace the first kernel wrote on this
            // stream and writes D (and reads C and bias) within the checked extents.
            unsafe { launch(args, cfg) }?;
        }
        acc.finish()
    }
}
