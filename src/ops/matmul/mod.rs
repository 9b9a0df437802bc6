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
pub(crate) mod params;
pub(crate) mod tma;

pub use config::{GemmPath, Tiling};

use crate::device::Device;
use crate::error::{Error, Result};
use crate::launch::{grid_stride_config, launch};
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice};
use crate::modules;
use crate::ops::{Float, KernelOptions};
use crate::stream::Stream;
use config::Choice;

use cudarc::driver::{
    sys::CUfunction_attribute as Attr, CudaFunction, DevicePtr, DevicePtrMut, LaunchConfig,
    PushKernelArg,
};
use params::GemmParams;
use std::marker::PhantomData;

/// Memory order of a matrix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Rows are contiguous: element (i, j) at `i * ld + j`.
    #[default]
    RowMajor,
    /// Columns are contiguous: element (i, j) at `j * ld + i`.
    ColMajor,
}

/// The activation applied after bias.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    /// None.
    #[default]
    None,
    /// max(x, 0).
    Relu,
    /// x·Φ(x) with the exact (erf) Φ, as PyTorch's `nn.GELU()`.
    Gelu,
}

/// The shape and options of a matrix multiplication. Leading dimensions and batch strides left
/// as `None` are those of densely packed matrices.
///
/// ```
/// use hikube_gpu::ops::matmul::{Activation, Layout, MatmulDesc};
/// let desc = MatmulDesc::new(512, 1024, 768)
///     .b_layout(Layout::ColMajor) // B given as N×K row-major, i.e. x·Wᵀ as in nn.Linear
///     .activation(Activation::Gelu);
/// assert_eq!(desc.k, 768);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MatmulDesc {
    /// Rows of A, C and D.
    pub m: usize,
    /// Columns of B, C and D.
    pub n: usize,
    /// Columns of A, rows of B.
    pub k: usize,
    /// Layout of A.
    pub a_layout: Layout,
    /// Layout of B.
    pub b_layout: Layout,
    /// Leading dimension of A (elements between rows, or columns when column-major).
    pub lda: Option<usize>,
    /// Leading dimension of B.
    pub ldb: Option<usize>,
    /// Leading dimension of C (row-major).
    pub ldc: Option<usize>,
    /// Leading dimension of D (row-major).
    pub ldd: Option<usize>,
    /// Number of independent products.
    pub batch: usize,
    /// Elements between consecutive A matrices (0 broadcasts one A to every batch).
    pub stride_a: Option<usize>,
    /// Elements between consecutive B matrices (0 broadcasts).
    pub stride_b: Option<usize>,
    /// Elements between consecutive C matrices (0 broadcasts).
    pub stride_c: Option<usize>,
    /// Elements between consecutive D matrices.
    pub stride_d: Option<usize>,
    /// α.
    pub alpha: f32,
    /// β (0: C is not read).
    pub beta: f32,
    /// The activation after bias.
    pub activation: Activation,
    /// Kernel options (a forced PTX target selects the kernel path).
    pub options: KernelOptions,
    /// Force a tile configuration of the path instead of the heuristic's choice (for tuning);
    /// split-K is still chosen by the heuristic.
    pub tiling: Option<Tiling>,
    /// Force the fast kernel's split-K factor instead of the heuristic's (for tuning): K is cut
    /// into at most this many slices, each a multiple of 64 long.
    pub split_k: Option<usize>,
    /// Hopper path: blocks launched for the work units (output tiles × batches × split-K
    /// slices). `None`: the default, persistent blocks, one per SM (fewer when there are fewer
    /// units), each walking the units `grid_blocks` apart and loading the next one while it
    /// stores the last; `Some(n)`: n blocks (clamped to 1..=units); `Some(usize::MAX)`: a block
    /// for every unit. Other paths ignore it.
    pub grid_blocks: Option<usize>,
}

macro_rules! setter {
    ($(#[$doc:meta] $name:ident: $ty:ty => $field:ident $(= $wrap:ident)?;)*) => {
        $(
            #[$doc]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$field = setter!(@wrap value $($wrap)?);
                self
            }
        )*
    };
    (@wrap $v:ident Some) => { Some($v) };
    (@wrap $v:ident) => { $v };
}

impl MatmulDesc {
    /// D (M×N) = A (M×K) · B (K×N), row-major, packed, α = 1, β = 0, one batch.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        MatmulDesc {
            m,
            n,
            k,
            a_layout: Layout::RowMajor,
            b_layout: Layout::RowMajor,
            lda: None,
            ldb: None,
            ldc: None,
            ldd: None,
            batch: 1,
            stride_a: None,
            stride_b: None,
            stride_c: None,
            stride_d: None,
            alpha: 1.0,
            beta: 0.0,
            activation: Activation::None,
            options: KernelOptions::default(),
            tiling: None,
            split_k: None,
            grid_blocks: None,
        }
    }

    setter! {
        /// Sets the layout of A.
        a_layout: Layout => a_layout;
        /// Sets the layout of B.
        b_layout: Layout => b_layout;
        /// Sets the leading dimension of A.
        lda: usize => lda = Some;
        /// Sets the leading dimension of B.
        ldb: usize => ldb = Some;
        /// Sets the leading dimension of C.
        ldc: usize => ldc = Some;
        /// Sets the leading dimension of D.
        ldd: usize => ldd = Some;
        /// Sets the number of batches.
        batch: usize => batch;
        /// Sets the batch stride of A.
        stride_a: usize => stride_a = Some;
        /// Sets the batch stride of B.
        stride_b: usize => stride_b = Some;
        /// Sets the batch stride of C.
        stride_c: usize => stride_c = Some;
        /// Sets the batch stride of D.
        stride_d: usize => stride_d = Some;
        /// Sets α.
        alpha: f32 => alpha;
        /// Sets β.
        beta: f32 => beta;
        /// Sets the activation.
        activation: Activation => activation;
        /// Sets the kernel options.
        options: KernelOptions => options;
        /// Forces a tile configuration.
        tiling: Tiling => tiling = Some;
        /// Forces the split-K factor.
        split_k: usize => split_k = Some;
        /// Sets the Hopper path's grid (`usize::MAX`: a block per work unit).
        grid_blocks: usize => grid_blocks = Some;
    }
}

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

/// Leading dimensions and strides, resolved and validated.
#[derive(Clone, Copy, Debug)]
struct Strides {
    lda: usize,
    ldb: usize,
    ldc: usize,
    ldd: usize,
    stride_a: usize,
    stride_b: usize,
    stride_c: usize,
    stride_d: usize,
}

fn at_least(what: impl Fn() -> String, value: usize, min: usize) -> Result<()> {
    if value >= min {
        Ok(())
    } else {
        Err(Error::InvalidDimension {
            what: what(),
            value,
            min,
        })
    }
}

fn at_most(what: &str, value: usize, max: usize) -> Result<()> {
    if value <= max {
        Ok(())
    } else {
        Err(Error::TooLarge {
            what: what.to_string(),
            value,
            max,
        })
    }
}

/// Elements a matrix of `rows` × `cols` (in storage order) with leading dimension `ld`, repeated
/// `batch` times `stride` apart, reaches.
fn extent(rows: usize, cols: usize, ld: usize, batch: usize, stride: usize) -> usize {
    (batch - 1) * stride + (rows - 1) * ld + cols
}

/// Elements a matrix reaches when its rows are read in whole chunks of `granule` elements (a
/// wide access at a row's last chunk touches up to the row's length rounded up to the granule):
/// what an operand's buffer must hold for the kernels that read it that way. `granule` 1 is
/// [`extent`]. (The epilogue's paired and 16-byte accesses to D, C and the bias need no such
/// rounding: the kernels take them only where the whole pair or eight lie below N.)
fn chunked_extent(
    rows: usize,
    cols: usize,
    ld: usize,
    batch: usize,
    stride: usize,
    granule: usize,
) -> usize {
    extent(rows, cols.next_multiple_of(granule), ld, batch, stride)
}

impl MatmulDesc {
    /// (rows, cols) of A and B as stored.
    fn stored_a(&self) -> (usize, usize) {
        match self.a_layout {
            Layout::RowMajor => (self.m, self.k),
            Layout::ColMajor => (self.k, self.m),
        }
    }
    fn stored_b(&self) -> (usize, usize) {
        match self.b_layout {
            Layout::RowMajor => (self.k, self.n),
            Layout::ColMajor => (self.n, self.k),
        }
    }

    fn validate(&self) -> Result<Strides> {
        for (what, v) in [
            ("M", self.m),
            ("N", self.n),
            ("K", self.k),
            ("batch", self.batch),
        ] {
            at_least(|| what.to_string(), v, 1)?;
        }
        let i32max = i32::MAX as usize;
        for (what, v) in [
            ("M", self.m),
            ("N", self.n),
            ("K", self.k),
            ("batch", self.batch),
        ] {
            at_most(what, v, i32max)?;
        }
        let (ar, ac) = self.stored_a();
        let (br, bc) = self.stored_b();
        let lda = self.lda.unwrap_or(ac);
        let ldb = self.ldb.unwrap_or(bc);
        let ldc = self.ldc.unwrap_or(self.n);
        let ldd = self.ldd.unwrap_or(self.n);
        at_least(
            || format!("lda (A {:?}, {ar} x {ac} as stored)", self.a_layout),
            lda,
            ac,
        )?;
        at_least(
            || format!("ldb (B {:?}, {br} x {bc} as stored)", self.b_layout),
            ldb,
            bc,
        )?;
        at_least(|| "ldc".to_string(), ldc, self.n)?;
        at_least(|| "ldd".to_string(), ldd, self.n)?;
        let stride_d = self.stride_d.unwrap_or(self.m * ldd);
        if self.batch > 1 {
            // Overlapping outputs would race.
            at_least(
                || "stride_d (batches of D must not overlap)".to_string(),
                stride_d,
                (self.m - 1) * ldd + self.n,
            )?;
        }
        let s = Strides {
            lda,
            ldb,
            ldc,
            ldd,
            stride_a: self.stride_a.unwrap_or(ar * lda),
            stride_b: self.stride_b.unwrap_or(br * ldb),
            stride_c: self.stride_c.unwrap_or(self.m * ldc),
            stride_d,
        };
        let imax = i64::MAX as usize / 2;
        for (what, v) in [
            ("A's extent", extent(ar, ac, lda, self.batch, s.stride_a)),
            ("B's extent", extent(br, bc, ldb, self.batch, s.stride_b)),
            (
                "C's extent",
                extent(self.m, self.n, ldc, self.batch, s.stride_c),
            ),
            (
                "D's extent",
                extent(self.m, self.n, ldd, self.batch, s.stride_d),
            ),
        ] {
            at_most(what, v, imax)?;
        }
        Ok(s)
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
        let strides = desc.validate()?;
        let device = stream.device().clone();
        let cc = device.compute_capability();
        let sms = device.properties().sm_count as usize;
        let max_smem = device.properties().max_shared_memory_per_block as usize;
        let forced = desc.options.arch;
        let arch = match forced {
            Some(forced) => modules::select(GemmPath::for_arch(forced).module(), cc, Some(forced))?,
            None => {
                // The newest GEMM path the device runs.
                match [
                    GemmPath::Sm90,
                    GemmPath::Sm80,
                    GemmPath::Sm75,
                    GemmPath::Sm70,
                ]
                .into_iter()
                .find(|p| p.arch().runs_on(cc))
                {
                    Some(path) => path.arch(),
                    None => {
                        return Err(Error::UnsupportedArch {
                            module: "gemm",
                            major: cc.major,
                            minor: cc.minor,
                            available: "compute_70, compute_75, compute_80, compute_90a"
                                .to_string(),
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
            let tiles = desc.m.div_ceil(128) * desc.n.div_ceil(256) * desc.batch;
            let narrow_tiles = desc.m.div_ceil(128) * desc.n.div_ceil(128) * desc.batch;
            let hopper_fits = tiles * 2 >= sms || (desc.k >= 2048 && narrow_tiles * 8 >= sms);
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
        let general_config = &general_configs[general_configs.len() - 1..];
        let choice = match desc.tiling {
            None => config::choose(configs, m, n, k, batch, sms, max_smem, path.max_splits()),
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
                ),
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
            Some(0) => {
                return Err(Error::InvalidArgument {
                    what: "split_k must be at least 1".into(),
                })
            }
            Some(want) => {
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
        );
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
            let units =
                m.div_ceil(choice.config.bm) * n.div_ceil(choice.config.bn) * batch * choice.splits;
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
        for c in [&choice, &general_choice] {
            let tiles = m.div_ceil(c.config.bm) * n.div_ceil(c.config.bn);
            at_most("output tiles", tiles, i32::MAX as usize)?;
            at_most("batch x split-K slices", batch * c.splits, 65535)?;
        }
        let workspace = if splits > 1 {
            Some(DeviceBuffer::<f32>::alloc(stream, splits * batch * m * n)?)
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
        let (ar, ac) = desc.stored_a();
        let (br, bc) = desc.stored_b();
        let need = crate::memory::ensure_len;
        need("A", extent(ar, ac, s.lda, desc.batch, s.stride_a), a.len())?;
        need("B", extent(br, bc, s.ldb, desc.batch, s.stride_b), b.len())?;
        need(
            "D",
            extent(desc.m, desc.n, s.ldd, desc.batch, s.stride_d),
            d.len(),
        )?;
        let use_c = desc.beta != 0.0;
        let c = if use_c { epilogue.c.as_ref() } else { None };
        if let Some(c) = c {
            self.device.check_same(c.device())?;
            need(
                "C",
                extent(desc.m, desc.n, s.ldc, desc.batch, s.stride_c),
                c.len(),
            )?;
        }
        if let Some(bias) = &epilogue.bias {
            self.device.check_same(bias.device())?;
            need("bias", desc.n, bias.len())?;
        }

        let raw = &stream.raw;
        let (a_ptr, _a_sync) = a.view.device_ptr(raw);
        let (b_ptr, _b_sync) = b.view.device_ptr(raw);
        let c_guard = c.map(|c| c.view.device_ptr(raw));
        let bias_guard = epilogue.bias.as_ref().map(|x| x.view.device_ptr(raw));
        let (d_ptr, _d_sync) = d.view.device_ptr_mut(raw);
        let ws_guard = self
            .workspace
            .as_mut()
            .map(|w| w.cuda_slice_mut().device_ptr_mut(raw));

        let osize = std::mem::size_of::<O>() as u64;
        let (c_ptr, ldc, stride_c) = match &c_guard {
            Some((p, _)) => (*p, s.ldc, s.stride_c),
            None => (d_ptr, s.ldd, s.stride_d), // β ≠ 0 without C: in place
        };
        let bias_ptr = bias_guard.as_ref().map_or(0, |(p, _)| *p);
        // The fast kernels also need A's and B's buffers to reach the end of each row's last
        // chunk (compute_80's cp.async reads it whole); tight buffers take the general kernels.
        let granule = self.path.row_granule();
        let aligned = a_ptr % 16 == 0
            && b_ptr % 16 == 0
            && s.lda % 8 == 0
            && s.ldb % 8 == 0
            && (desc.batch == 1 || (s.stride_a % 8 == 0 && s.stride_b % 8 == 0))
            && a.len() >= chunked_extent(ar, ac, s.lda, desc.batch, s.stride_a, granule)
            && b.len() >= chunked_extent(br, bc, s.ldb, desc.batch, s.stride_b, granule);
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
            workspace: ws_guard.as_ref().map_or(0, |(p, _)| *p),
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
            // 16-byte chunks at the rows' ends lie within `chunked_extent`, checked for
            // `aligned`); the split-K workspace holds splits × batch × M × N floats (allocated in
            // `new` for the larger split factor). The guards above order the launch after earlier
            // writes and record it.
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{chunked_extent, extent};

    #[test]
    fn chunked_extent_rounds_the_last_row_up_to_the_granule() {
        // 1×1 with a padded leading dimension: one element, but a whole 8-element chunk.
        assert_eq!(extent(1, 1, 8, 1, 1), 1);
        assert_eq!(chunked_extent(1, 1, 8, 1, 1, 8), 8);
        // 3 rows of 13 in rows of 16, two batches 48 apart.
        assert_eq!(extent(3, 13, 16, 2, 48), 48 + 32 + 13);
        assert_eq!(chunked_extent(3, 13, 16, 2, 48, 8), 48 + 32 + 16);
        // Whole chunks already, and granule 1: the plain extent.
        assert_eq!(
            chunked_extent(3, 16, 16, 2, 48, 8),
            extent(3, 16, 16, 2, 48)
        );
        assert_eq!(
            chunked_extent(3, 13, 16, 2, 48, 1),
            extent(3, 13, 16, 2, 48)
        );
    }
}
