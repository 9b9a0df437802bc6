//! 2-D convolution forward on tensor cores: `y = act(α·conv(x, w) + β·C + bias)`, NHWC
//! activations and KRSC filters, `f16` or `bf16` in, `f16`, `bf16` or `f32` out, f32
//! accumulation. The epilogue is the matmul's (`ops::`[`Epilogue`]): α, β and
//! the activation (none, ReLU, GELU) in the [`Conv2dDesc`], C (y's shape and type; y itself
//! when β ≠ 0 and none is given) and the bias (K elements, of any element type) at launch;
//! `β = 0` never reads C.
//!
//! A [`Conv2d`] plan validates the [`Conv2dDesc`] once, picks the kernel path and tile
//! configuration, loads its kernels and allocates its workspace (split-K partial sums, and the
//! channel-padded copies of the padded path), all from the crate's memory and reported by
//! [`Conv2d::workspace_bytes`]. Launching allocates nothing and never synchronizes, so a launch
//! can be captured in a CUDA graph.
//!
//! Paths ([`ConvPath`]):
//! - 1×1, stride 1, no padding: a GEMM ([`Matmul`]; the NHWC input is an (N·H·W)×C matrix) on
//!   compute 7.x or when `Conv2dDesc::gemm_for_1x1` asks; on 8.0 and newer the implicit GEMM
//!   below, which measured twice the GEMM's speed on ResNet-50's 1×1 layers.
//! - Depthwise (groups = C): a direct kernel on CUDA cores, every GPU.
//! - Otherwise an implicit GEMM (M = N·P·Q pixels, N = K channels, K = R·S·C): the im2col
//!   gather happens on the fly into shared memory (cp.async with zero-fill for the padding),
//!   mma.sync on `compute_80` and `compute_75`; on `compute_70` the direct kernel. On Hopper
//!   (`compute_90a`), filters larger than 1×1 with C a multiple of 8 and the output in the
//!   input type run a warp-specialized, persistent wgmma kernel whose input tiles come from TMA
//!   in im2col mode (or gathered loads where im2col cannot describe the shape).
//!   C not a multiple of 8 (C = 3 for a network's first layer): the input and filter are first
//!   copied with C rounded up to 8 (zeros) into the workspace.
//!
//! Layout helpers convert PyTorch's NCHW / KCRS on the GPU: [`nchw_to_nhwc`], [`kcrs_to_krsc`]
//! and back.

mod config;
mod desc;
mod grad;
pub(crate) mod layout;
mod sm90;
mod sm90_dgrad;
mod sm90_wgrad;

pub use config::ConvPath;
pub use desc::Conv2dDesc;
pub use grad::{Conv2dGrad, FilterGrad};
pub use layout::{kcrs_to_krsc, krsc_to_kcrs, nchw_to_nhwc, nhwc_to_nchw};
use sm90::Sm90Plan;
pub use sm90::{ALoad, HopperOptions};

use crate::device::Device;
use crate::error::{Error, Result};
use crate::launch::args::{PadPixels, PadRows};
use crate::launch::conv::{Conv, ConvKernel, ConvRun, ConvShape, DIRECT_MODULE};
use crate::launch::gemm::{Bias, GemmOperands, GemmParams, Reduction, SplitKReduce, RELU_MASK};
use crate::launch::{grid_stride_config, run, Kernel, KernelArgs};
use crate::memory::access::{Access, Operand};
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice, DeviceSliceMut};
use crate::modules;
use crate::ops::gemm::Choice;
use crate::ops::matmul::{Layout, Matmul, MatmulDesc, Tiling};
use crate::ops::Epilogue;
use crate::ops::{Activation, Dtype, Float};
use crate::stream::Stream;
use crate::PtxArch;
use cudarc::driver::LaunchConfig;
use std::marker::PhantomData;

/// How the implicit-GEMM kernels see the input and filter: channels per copy (8, or 4 for the
/// `_c4` kernels), C as stored, the filter's row length, and the padded copies made before
/// each launch where the user's buffers do not have that layout.
struct Gather<I: Float> {
    vec: usize,
    c: usize,
    ldb: usize,
    /// The padded input and the kernel that writes it (pad_pixels_b16).
    x: Option<(Kernel<PadPixels<I>>, DeviceBuffer<I>)>,
    /// The padded filter and the kernel that writes it (pad_rows_b16).
    w: Option<(Kernel<PadRows<I>>, DeviceBuffer<I>)>,
}

impl<I: Float> Gather<I> {
    /// The layout for `desc` on `path`; allocates the padded copies (on `stream`) if needed.
    fn new(stream: &Stream, desc: &Conv2dDesc, path: ConvPath) -> Result<Self> {
        let vec = if path == ConvPath::Sm80 && !desc.c.is_multiple_of(8) {
            4
        } else {
            8
        };
        let c = desc.c.div_ceil(vec) * vec;
        let k_gemm = desc.r * desc.s * c;
        let ldb = k_gemm.div_ceil(8) * 8;
        let pad_x = c != desc.c;
        let pad_w = c != desc.c || ldb != k_gemm;
        let device = stream.device();
        let x = if pad_x {
            let len = desc.n * desc.h * desc.w * c;
            let kernel = PadPixels::<I>::kernel(device, (), None)?;
            Some((kernel, DeviceBuffer::alloc(stream, len)?))
        } else {
            None
        };
        let w = if pad_w {
            let kernel = PadRows::<I>::kernel(device, (), None)?;
            Some((kernel, DeviceBuffer::alloc(stream, desc.k * ldb)?))
        } else {
            None
        };
        Ok(Gather { vec, c, ldb, x, w })
    }

    fn padded(&self) -> bool {
        self.x.is_some() || self.w.is_some()
    }

    fn bytes(&self) -> usize {
        let x = self.x.as_ref().map_or(0, |(_, b)| b.num_bytes());
        let w = self.w.as_ref().map_or(0, |(_, b)| b.num_bytes());
        x + w
    }
}

// One per plan, made once: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Kernels<I: Float, O: Float> {
    Gemm(Box<Matmul<I, O>>),
    Implicit {
        func: Kernel<Conv<I, O>>,
        choice: Choice,
        reduce: Kernel<SplitKReduce<I, O>>,
        workspace: Option<DeviceBuffer<f32>>,
        gather: Gather<I>,
    },
    Direct {
        func: Kernel<Conv<I, O>>,
    },
    Hopper(Box<Sm90Plan<I>>),
}

/// A validated convolution, ready to launch many times.
///
/// ```no_run
/// use hikube_gpu::half::f16;
/// use hikube_gpu::ops::conv2d::{Conv2d, Conv2dDesc};
/// use hikube_gpu::ops::{Activation, Epilogue};
/// use hikube_gpu::{Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let desc = Conv2dDesc::input(8, 56, 56, 64)
///     .filters(64, 3, 3)
///     .padding(1, 1)
///     .activation(Activation::Relu);
/// let x = DeviceBuffer::from_slice(&stream, &vec![f16::from_f32(0.1); desc.input_len()])?;
/// let w = DeviceBuffer::from_slice(&stream, &vec![f16::from_f32(0.01); desc.filter_len()])?;
/// let bias = DeviceBuffer::from_slice(&stream, &vec![f16::from_f32(0.5); desc.k])?;
/// let mut y = DeviceBuffer::<f16>::alloc(&stream, desc.output_len())?;
/// let mut conv = Conv2d::<f16, f16>::new(&stream, desc)?;
/// conv.launch(&stream, &x, &w, &mut y, Epilogue::new().bias(&bias))?; // relu(conv + bias)
/// println!("{:?}, workspace {} bytes", conv.path(), conv.workspace_bytes());
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct Conv2d<I: Float, O: Float> {
    desc: Conv2dDesc,
    device: Device,
    path: ConvPath,
    kernels: Kernels<I, O>,
    _t: PhantomData<(I, O)>,
}

impl<I: Float, O: Float> std::fmt::Debug for Conv2d<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conv2d")
            .field("desc", &self.desc)
            .field("path", &self.path)
            .field("tiling", &self.tiling())
            .field("padded", &self.padded())
            .finish()
    }
}

/// The path of a dense convolution on a `compute_90a` device: the Hopper kernel (TMA im2col or
/// gathered loads + wgmma, `sm90.rs`) where it takes the shape — C a multiple of 8, output in
/// the input type, no tiling of the compute_80 kernels forced — and where it measured faster:
/// every filter larger than 1×1. 1×1 filters stay on the compute_80 implicit GEMM (62 against
/// 42 TFLOP/s on ResNet-50's 1×1 C64→256 layer at batch 64, whose epilogue dominates), as does
/// C = 3 (the padded path), and f32 output.
fn hopper_path<I: Float, O: Float>(device: &Device, desc: &Conv2dDesc) -> ConvPath {
    let same_out = I::DTYPE == O::DTYPE;
    if same_out
        && desc.tiling.is_none()
        && desc.r * desc.s > 1
        && Sm90Plan::<I>::check(device, desc).is_ok()
    {
        ConvPath::Sm90
    } else {
        ConvPath::Sm80
    }
}

/// The Hopper path where [`Conv2dDesc::hopper`] forces it, or the typed reason it cannot run:
/// the device, element type and shape ([`Sm90Plan::check`]), an output type other than the
/// input's, or another forced target or tiling.
fn forced_hopper<I: Float, O: Float>(
    device: &Device,
    desc: &Conv2dDesc,
    family: PtxArch,
) -> Result<ConvPath> {
    Sm90Plan::<I>::check(device, desc)?;
    let conflict = if I::DTYPE != O::DTYPE {
        Some(format!("writes its input type, not {}", O::SUFFIX))
    } else if family != PtxArch::Compute90a {
        Some(format!("cannot run with the {family} target forced"))
    } else if desc.tiling.is_some() {
        Some("has no compute_80 tilings (one was forced)".to_string())
    } else {
        None
    };
    match conflict {
        Some(why) => Err(Error::InvalidArgument {
            what: format!("the compute_90a conv2d path (HopperOptions) {why}"),
        }),
        None => Ok(ConvPath::Sm90),
    }
}

fn unsupported_dtype(dtype: &'static str, arch: PtxArch) -> Error {
    let min = arch.min_capability();
    Error::UnsupportedDtype {
        op: "conv2d",
        dtype,
        major: min.major,
        minor: min.minor,
    }
}

impl<I: Float, O: Float> Conv2d<I, O> {
    /// Validates `desc` for `stream`'s device, picks the kernel path and tile configuration,
    /// loads the kernels and allocates the workspace (on `stream`).
    pub fn new(stream: &Stream, desc: Conv2dDesc) -> Result<Self> {
        desc.validate()?;
        let device = stream.device().clone();
        let cc = device.compute_capability();
        // The newest target the device runs (or the forced one): every conv module family is
        // keyed on it; the direct module ships them all.
        let family = modules::select(DIRECT_MODULE, cc, desc.options.arch)?;
        match I::DTYPE {
            Dtype::F16 | Dtype::Bf16 => {}
            Dtype::F32 => return Err(unsupported_dtype(I::SUFFIX, family)),
        }
        let (m, n, k) = desc.gemm_mnk();

        let implicit_1x1 = match family {
            PtxArch::Compute80 | PtxArch::Compute89 | PtxArch::Compute90a => true,
            PtxArch::Compute70 | PtxArch::Compute75 => false,
        };
        let gemm_1x1 = desc.gemm_for_1x1.unwrap_or(!implicit_1x1) && desc.hopper.is_none();
        if desc.is_pointwise() && gemm_1x1 {
            let mm = MatmulDesc::new(m, n, k)
                .b_layout(Layout::ColMajor)
                .alpha(desc.alpha)
                .beta(desc.beta)
                .activation(desc.activation)
                .options(desc.options);
            match Matmul::<I, O>::new(stream, mm) {
                Ok(mm) => {
                    return Ok(Conv2d {
                        path: ConvPath::Gemm(mm.path()),
                        kernels: Kernels::Gemm(Box::new(mm)),
                        desc,
                        device,
                        _t: PhantomData,
                    })
                }
                // bf16 on a path whose GEMM has no bf16: the convolution kernels may.
                Err(Error::UnsupportedDtype { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let path = if desc.hopper.is_some() {
            forced_hopper::<I, O>(&device, &desc, family)?
        } else if desc.groups > 1 {
            ConvPath::Direct
        } else {
            match family {
                PtxArch::Compute90a => hopper_path::<I, O>(&device, &desc),
                // (No convolution module ships compute_89: `select` never gives it.)
                PtxArch::Compute80 | PtxArch::Compute89 => ConvPath::Sm80,
                PtxArch::Compute75 => ConvPath::Sm75,
                PtxArch::Compute70 => ConvPath::Direct,
            }
        };
        let supported = match I::DTYPE {
            Dtype::F16 => true,
            Dtype::Bf16 => path.supports_bf16(),
            Dtype::F32 => false,
        };
        if !supported {
            return Err(unsupported_dtype(I::SUFFIX, family));
        }
        let kernels = match path.implicit() {
            None if path == ConvPath::Sm90 => {
                let options = desc.hopper.unwrap_or_default();
                Kernels::Hopper(Box::new(Sm90Plan::new(stream, &desc, options)?))
            }
            None => Kernels::Direct {
                func: Conv::<I, O>::kernel(&device, ConvKernel::Direct, Some(family))?,
            },
            Some((implicit, gemm)) => {
                let gather = Gather::new(stream, &desc, path)?;
                // The reduction the kernels run: R·S·C with C as stored.
                let k = desc.r * desc.s * gather.c;
                let sms = device.properties().sm_count as usize;
                let max_smem = device.properties().max_shared_memory_per_block as usize;
                let configs = path.configs_for(gather.vec);
                let no_config = || Error::InvalidArgument {
                    what: format!("the {path:?} path has no tile configuration"),
                };
                let choice = match desc.tiling {
                    None => {
                        config::choose(configs, (m, n, k), sms, max_smem).ok_or_else(no_config)?
                    }
                    Some(t) => match configs.iter().find(|c| c.tiling == t) {
                        Some(c) => crate::ops::gemm::choose(
                            std::slice::from_ref(c),
                            m,
                            n,
                            k,
                            1,
                            sms,
                            usize::MAX,
                            16,
                        )
                        .ok_or_else(no_config)?,
                        None => {
                            return Err(Error::InvalidArgument {
                                what: format!(
                                    "tiling {t} is not one of the {path:?} path's for {} \
                                     channels per copy: {}",
                                    gather.vec,
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
                let variant = ConvKernel::Implicit {
                    path: implicit,
                    tiling: choice.config.tiling,
                    c4: gather.vec == 4,
                };
                let func = Conv::<I, O>::kernel(&device, variant, None)?;
                let smem = choice.config.smem_bytes as usize;
                if smem > 48 * 1024 {
                    if smem > max_smem {
                        return Err(Error::TooLarge {
                            what: "shared memory per block".into(),
                            value: smem,
                            max: max_smem,
                        });
                    }
                    func.set_max_dynamic_shared_memory(choice.config.smem_bytes)?;
                }
                let reduce = SplitKReduce::<I, O>::kernel(&device, Reduction::Gemm(gemm), None)?;
                let tiles = m.div_ceil(choice.config.bm) * n.div_ceil(choice.config.bn);
                if tiles > i32::MAX as usize || choice.splits > 65535 {
                    return Err(Error::TooLarge {
                        what: "output tiles".into(),
                        value: tiles,
                        max: i32::MAX as usize,
                    });
                }
                let workspace = if choice.splits > 1 {
                    Some(DeviceBuffer::<f32>::alloc(stream, choice.splits * m * n)?)
                } else {
                    None
                };
                Kernels::Implicit {
                    func,
                    choice,
                    reduce,
                    workspace,
                    gather,
                }
            }
        };
        Ok(Conv2d {
            desc,
            device,
            path,
            kernels,
            _t: PhantomData,
        })
    }

    /// The kernel path in use.
    pub fn path(&self) -> ConvPath {
        self.path
    }

    /// The tile configuration and split-K factor (implicit-GEMM and GEMM paths).
    pub fn tiling(&self) -> Option<(Tiling, usize)> {
        match &self.kernels {
            Kernels::Gemm(mm) => mm.tiling(),
            Kernels::Implicit { choice, .. } => Some((choice.config.tiling, choice.splits)),
            Kernels::Direct { .. } | Kernels::Hopper(_) => None,
        }
    }

    /// The Hopper path's choices (`None` on the other paths): the A-operand load, output
    /// channels per block tile, blocks per SM, split-K slices and blocks launched — what
    /// [`HopperOptions`] can force.
    pub fn hopper_choices(&self) -> Option<HopperOptions> {
        match &self.kernels {
            Kernels::Hopper(conv) => Some(conv.choices()),
            Kernels::Gemm(_) | Kernels::Implicit { .. } | Kernels::Direct { .. } => None,
        }
    }

    /// The tile configurations of an implicit-GEMM path, largest first (empty for others).
    pub fn tilings(path: ConvPath) -> Vec<Tiling> {
        path.configs().iter().map(|c| c.tiling).collect()
    }

    /// Whether the input or filter is copied into the padded layout (C rounded up to 4 or 8)
    /// before the kernel.
    pub fn padded(&self) -> bool {
        matches!(&self.kernels, Kernels::Implicit { gather, .. } if gather.padded())
    }

    /// Bytes of device memory the plan holds besides its kernels: split-K partial sums and
    /// the padded path's copies of the input and filter.
    pub fn workspace_bytes(&self) -> usize {
        match &self.kernels {
            Kernels::Gemm(mm) => mm.workspace_bytes(),
            Kernels::Implicit {
                workspace, gather, ..
            } => workspace.as_ref().map_or(0, |w| w.num_bytes()) + gather.bytes(),
            Kernels::Direct { .. } => 0,
            Kernels::Hopper(conv) => conv.workspace_bytes(),
        }
    }

    /// The description the plan was made from.
    pub fn desc(&self) -> &Conv2dDesc {
        &self.desc
    }

    /// Queues `y = act(α·conv(x, w) + β·C + bias)` on `stream`: `x` is the NHWC input, `w` the
    /// KRSC filter, `y` the NHWC output; the epilogue's C (read when β ≠ 0; y itself when not
    /// given) has y's shape, the bias K elements; α, β and the activation are the
    /// description's. Checks buffer sizes, alignment and devices; allocates nothing and does not
    /// synchronize.
    pub fn launch<B: Float>(
        &mut self,
        stream: &Stream,
        x: &impl AsDeviceSlice<I>,
        w: &impl AsDeviceSlice<I>,
        y: &mut impl AsDeviceSliceMut<O>,
        epilogue: Epilogue<'_, O, B>,
    ) -> Result<()> {
        let (x, w, mut y) = (
            x.as_device_slice(),
            w.as_device_slice(),
            y.as_device_slice_mut(),
        );
        self.check(stream, &x, &w, &epilogue, &y)?;
        let desc = &self.desc;
        let sms = self.device.properties().sm_count;
        match &mut self.kernels {
            Kernels::Gemm(mm) => mm.launch(stream, &x, &w, &mut y, epilogue),
            Kernels::Hopper(conv) => launch_hopper(stream, conv, &x, &w, y, &epilogue),
            Kernels::Direct { func } => {
                let kernel = ConvLaunch {
                    func,
                    choice: None,
                    reduce: None,
                    workspace: None,
                    gather: None,
                };
                kernel.launch(stream, desc, sms, (&x, &w), &mut y, &epilogue)
            }
            Kernels::Implicit {
                func,
                choice,
                reduce,
                workspace,
                gather,
            } => {
                gather.pad(stream, desc, &x, &w)?;
                let kernel = ConvLaunch {
                    func,
                    choice: Some(*choice),
                    reduce: Some(reduce),
                    workspace: workspace.as_mut(),
                    gather: Some(gather),
                };
                kernel.launch(stream, desc, sms, (&x, &w), &mut y, &epilogue)
            }
        }
    }

    /// Checks the devices of the stream and the operands, and the buffers' lengths.
    fn check<B: Float>(
        &self,
        stream: &Stream,
        x: &DeviceSlice<'_, I>,
        w: &DeviceSlice<'_, I>,
        epilogue: &Epilogue<'_, O, B>,
        y: &DeviceSliceMut<'_, O>,
    ) -> Result<()> {
        let desc = &self.desc;
        self.device.check_same(stream.device())?;
        for dev in [x.device(), w.device(), y.device()] {
            self.device.check_same(dev)?;
        }
        let need = crate::memory::ensure_len;
        need("x", desc.input_len(), x.len())?;
        need("w", desc.filter_len(), w.len())?;
        need("y", desc.output_len(), y.len())?;
        if let Some(b) = epilogue.bias_slice() {
            self.device.check_same(b.device())?;
            need("bias", desc.k, b.len())?;
        }
        if let Some(c) = epilogue.c_slice().filter(|_| desc.beta != 0.0) {
            self.device.check_same(c.device())?;
            need("C", desc.output_len(), c.len())?;
        }
        Ok(())
    }
}

impl<I: Float> Gather<I> {
    /// Writes the padded copies of the input and filter, where the plan has them.
    fn pad(
        &mut self,
        stream: &Stream,
        desc: &Conv2dDesc,
        x: &DeviceSlice<'_, I>,
        w: &DeviceSlice<'_, I>,
    ) -> Result<()> {
        if let Some((pad, px)) = self.x.as_mut() {
            let shape = (desc.n * desc.h * desc.w, desc.c, self.c);
            layout::pad_pixels(stream, pad, x, &mut px.as_slice_mut(), shape)?;
        }
        if let Some((pad, pw)) = self.w.as_mut() {
            let shape = (desc.k, desc.r * desc.s, desc.c, self.c, self.ldb);
            layout::pad_rows(stream, pad, w, &mut pw.as_slice_mut(), shape)?;
        }
        Ok(())
    }
}

/// The Hopper path (chosen only when the output type is the input type).
fn launch_hopper<I: Float, O: Float, B: Float>(
    stream: &Stream,
    conv: &mut Sm90Plan<I>,
    x: &DeviceSlice<'_, I>,
    w: &DeviceSlice<'_, I>,
    y: DeviceSliceMut<'_, O>,
    epilogue: &Epilogue<'_, O, B>,
) -> Result<()> {
    let mut y = y.same_type::<I>().ok_or_else(retyped)?;
    let c = same_type::<I, O>(epilogue.c_slice())?;
    conv.launch(stream, (x, w), &mut y, (c.as_ref(), epilogue.bias_slice()))
}

fn retyped() -> Error {
    Error::InvalidArgument {
        what: "the compute_90a convolution writes its input type".into(),
    }
}

/// C as the input type (the Hopper path's output type is its input type).
fn same_type<'a, I: Float, O: Float>(
    s: Option<&'a DeviceSlice<'_, O>>,
) -> Result<Option<DeviceSlice<'a, I>>> {
    s.map(|s| s.as_device_slice().same_type::<I>().ok_or_else(retyped))
        .transpose()
}

/// The epilogue's C as an operand: none when β = 0 (never read), y itself (`d`) when β ≠ 0
/// and no C is given.
fn epilogue_c<O: Float>(
    acc: &mut Access<'_>,
    beta: f32,
    c: Option<&DeviceSlice<'_, O>>,
    d: Operand<O>,
) -> Result<Operand<O>> {
    Ok(match c {
        _ if beta == 0.0 => Operand::NONE,
        Some(c) => acc.read(c)?,
        None => d,
    })
}

/// A gradient kernel's operands, `a` and `b` read, `d` written through the ReLU-backward `mask`
/// (C, d's shape) where given, no bias; and the epilogue's activation code for them.
fn grad_operands<I: Float, O: Float>(
    acc: &mut Access<'_>,
    (a, b): (&DeviceSlice<'_, I>, &DeviceSlice<'_, I>),
    mask: Option<&DeviceSlice<'_, O>>,
    d: &mut DeviceSliceMut<'_, O>,
    workspace: Option<&mut DeviceBuffer<f32>>,
) -> Result<(GemmOperands<I, O>, i32)> {
    let ops = GemmOperands {
        a: acc.read(a)?,
        b: acc.read(b)?,
        c: acc.read_or_null(mask)?,
        bias: Bias::of(Operand::<O>::NONE),
        d: acc.write(d)?,
        workspace: acc.write_or_null(workspace)?,
    };
    let activation = match mask {
        Some(_) => RELU_MASK,
        None => Activation::None.code(),
    };
    Ok((ops, activation))
}

/// The direct kernel, or an implicit-GEMM kernel with its split-K reduction, workspace and
/// padded copies, for one launch.
struct ConvLaunch<'k, I: Float, O: Float> {
    func: &'k Kernel<Conv<I, O>>,
    /// The implicit GEMM's tiles (none: the direct kernel, a thread per output element).
    choice: Option<Choice>,
    reduce: Option<&'k Kernel<SplitKReduce<I, O>>>,
    workspace: Option<&'k mut DeviceBuffer<f32>>,
    gather: Option<&'k Gather<I>>,
}

impl<I: Float, O: Float> ConvLaunch<'_, I, O> {
    /// Takes the operands' addresses, checks their alignment, and queues the kernel (and the
    /// split-K reduction).
    fn launch<B: Float>(
        self,
        stream: &Stream,
        desc: &Conv2dDesc,
        sms: u32,
        (x, w): (&DeviceSlice<'_, I>, &DeviceSlice<'_, I>),
        y: &mut DeviceSliceMut<'_, O>,
        epilogue: &Epilogue<'_, O, B>,
    ) -> Result<()> {
        let mut acc = Access::new(stream)?;
        // The padded copies replace the input and filter where the plan has them.
        let x = match self.gather.and_then(|g| g.x.as_ref()) {
            Some((_, px)) => acc.read(&px.as_device_slice())?,
            None => acc.read(x)?,
        };
        let w = match self.gather.and_then(|g| g.w.as_ref()) {
            Some((_, pw)) => acc.read(&pw.as_device_slice())?,
            None => acc.read(w)?,
        };
        let d = acc.write(y)?;
        let ops = GemmOperands {
            a: x,
            b: w,
            c: epilogue_c(&mut acc, desc.beta, epilogue.c_slice(), d)?,
            bias: Bias::of(acc.read_or_null(epilogue.bias_slice())?),
            d,
            workspace: acc.write_or_null(self.workspace)?,
        };
        // C as the kernels see it, and the filter's row length.
        let (c_stored, ldb) = self
            .gather
            .map_or((desc.c, desc.filter_len() / desc.k), |g| (g.c, g.ldb));
        let k_gemm = desc.r * desc.s * c_stored / desc.groups;
        let (splits, k_per_split) = self
            .choice
            .map_or((1, k_gemm), |c| (c.splits, c.k_per_split));
        let run_info = ConvRun {
            tile: self.choice.map(|c| (c.config.bm, c.config.bn)),
            vec: self.gather.map(|g| g.vec),
            splits,
            k_per_split,
            activation: desc.activation.code(),
            scale: (desc.alpha, desc.beta),
            ldb,
        };
        let mut args = Conv::new(conv_shape(desc, c_stored), &ops, &run_info)?;
        let (m, n, _) = desc.gemm_mnk();
        let cfg = launch_config(self.choice, (m, n), sms);
        // The access orders the launches after earlier uses of every buffer and notes them.
        run(stream, self.func, cfg, &mut args)?;
        if let Some(reduce) = self.reduce.filter(|_| args.splits() > 1) {
            reduce_splits(stream, reduce, args.params(), m * n)?;
        }
        acc.finish()
    }
}

/// Queues the split-K reduction that sums `params`' slices into its `mn` outputs and applies the
/// epilogue, after the kernel that wrote them.
fn reduce_splits<I: Float, O: Float>(
    stream: &Stream,
    reduce: &Kernel<SplitKReduce<I, O>>,
    params: GemmParams<I, O>,
    mn: usize,
) -> Result<()> {
    let mut args = SplitKReduce::new(params);
    let sms = stream.device().properties().sm_count;
    run(stream, reduce, grid_stride_config(mn, sms), &mut args)
}

/// The grid of an M × N output: a block per tile and split-K slice of `choice` (the arguments
/// checked that the tile count fits), else the direct kernels' grid-stride loop.
fn launch_config(choice: Option<Choice>, (m, n): (usize, usize), sms: u32) -> LaunchConfig {
    match choice {
        Some(c) => LaunchConfig {
            grid_dim: (
                (m.div_ceil(c.config.bm) * n.div_ceil(c.config.bn)) as u32,
                c.splits as u32,
                1,
            ),
            block_dim: (c.config.threads, 1, 1),
            shared_mem_bytes: c.config.smem_bytes,
        },
        None => grid_stride_config(m * n, sms),
    }
}

/// The convolution's shape as the kernels take it, with C as stored.
fn conv_shape(desc: &Conv2dDesc, c_stored: usize) -> ConvShape {
    let (p, q) = desc.output_hw();
    ConvShape {
        n: desc.n as i32,
        h: desc.h as i32,
        w: desc.w as i32,
        c: c_stored as i32,
        k: desc.k as i32,
        r: desc.r as i32,
        s: desc.s as i32,
        p: p as i32,
        q: q as i32,
        stride_h: desc.stride.0 as i32,
        stride_w: desc.stride.1 as i32,
        pad_h: desc.padding.0 as i32,
        pad_w: desc.padding.1 as i32,
        dil_h: desc.dilation.0 as i32,
        dil_w: desc.dilation.1 as i32,
        groups: desc.groups as i32,
    }
}
