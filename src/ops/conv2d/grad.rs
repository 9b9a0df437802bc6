//! The convolution's backward pass: the data gradient (dgrad, dx from dy and w), the filter
//! gradient (wgrad, dw from x and dy) and the bias gradient, for the forward a [`Conv2dDesc`]
//! describes.

use super::config::{self, ConvPath};
use super::sm90_dgrad::DgradSm90;
use super::sm90_wgrad::WgradSm90;
use super::{conv_shape, launch_config, reduce_splits, Conv2d, Conv2dDesc};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::launch::args::{FlipFilter, FlipTaps, TRANSPOSE_MAX_ROWS};
use crate::launch::conv::{
    ConvGrad, ConvGradKernel, ConvRun, DgradPhase, Grad, ImplicitPath, DIRECT_MODULE, MAX_PHASES,
};
use crate::launch::gemm::{Reduction, SplitKReduce};
use crate::launch::{run, Kernel, KernelArgs};
use crate::memory::access::Access;
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice, DeviceSliceMut};
use crate::modules;
use crate::ops::gemm::{self, Choice, GemmPath};
use crate::ops::{Activation, Dtype, Epilogue, Float};
use crate::stream::Stream;
use crate::PtxArch;
use half::{bf16, f16};

/// The element types of a filter gradient for inputs of type `I`: f32 (the master weights'
/// type, the default) or `I` itself, as the kernels' epilogues write them. Any other pair,
/// and an f32 input, does not compile.
///
/// ```no_run
/// use hikube_gpu::half::bf16;
/// use hikube_gpu::ops::conv2d::{Conv2dDesc, Conv2dGrad};
/// # let device = hikube_gpu::Device::open(0)?;
/// # let stream = device.default_stream();
/// let desc = Conv2dDesc::input(8, 28, 28, 32).filters(32, 3, 3).padding(1, 1);
/// let master = Conv2dGrad::<bf16>::new(&stream, desc)?; // dw in f32, the default
/// let working = Conv2dGrad::<bf16, bf16>::new(&stream, desc)?; // dw in bf16
/// # let _ = (master, working);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
///
/// ```compile_fail
/// use hikube_gpu::half::{bf16, f16};
/// # let stream: hikube_gpu::Stream = todo!();
/// # let desc: hikube_gpu::ops::conv2d::Conv2dDesc = todo!();
/// // An f16 gradient of bf16 inputs is not a pair the kernels write.
/// let _ = hikube_gpu::ops::conv2d::Conv2dGrad::<bf16, f16>::new(&stream, desc);
/// ```
pub trait FilterGrad<I: Float>: Float {}
impl FilterGrad<f16> for f32 {}
impl FilterGrad<bf16> for f32 {}
impl FilterGrad<f16> for f16 {}
impl FilterGrad<bf16> for bf16 {}

/// One gradient's kernel: a tensor-core kernel with its tile, split-K reduction and workspace,
/// or the direct kernel (`choice` none).
struct GradKernel<I: Float, O: Float> {
    grad: Grad,
    /// The GEMM's M, N and K.
    mnk: (usize, usize, usize),
    /// The tensor-core data gradient's phases (one for stride 1; none for the other kernels).
    phases: Vec<DgradPhase>,
    func: Kernel<ConvGrad<I, O>>,
    choice: Option<Choice>,
    reduce: Option<Kernel<SplitKReduce<I, O>>>,
    workspace: Option<DeviceBuffer<f32>>,
}

/// The backward pass of a convolution, validated once and launched many times: the gradients of
/// `y = α·conv(x, w) + β·C + bias` with respect to x, w and the bias, NHWC f16/bf16 activations
/// and KRSC filters (the forward's layouts), f32 accumulation; dw in `W` ([`FilterGrad`]), f32 (the default: the
/// master weights' type) or the input type.
///
/// Paths ([`Conv2dGrad::path`]): dense convolutions with C and K multiples of 8 run implicit
/// GEMMs on the tensor cores — on compute 8.0 and newer `ConvPath::Sm80` (cp.async + ldmatrix +
/// mma.sync), on compute 7.5 `ConvPath::Sm75` (f16 only; synchronous loads, m16n8k8): dgrad M =
/// N·H·W, N = C, K = R·S·K, one GEMM per phase of a strided convolution (no tap read as a zero
/// between output pixels; the phases run side by side in one launch); wgrad M = K, N = R·S·C, K = N·P·Q, split into slices where the
/// output has few tiles. On `compute_90a`, the data gradient of a stride-1
/// convolution is the forward convolution of dy by the flipped, transposed filter, and runs on
/// the Hopper forward path ([`Conv2dGrad::data_on_hopper`]; the filter is flipped into the
/// plan's workspace at each launch); that of a strided one runs one such convolution per phase,
/// each by its taps and writing its pixels of dx in place (the ReLU backward fused), where
/// [`Conv2dDesc::hopper`] asks for it (not yet by default: its large shapes await their GPU
/// check), and the filter gradient of a convolution with C a multiple of 64 runs the Hopper
/// filter-gradient kernel (wgmma on TMA im2col boxes of x and tiles of dy;
/// [`Conv2dGrad::filter_on_hopper`]). Everything else runs direct kernels on CUDA
/// cores (`ConvPath::Direct`: grouped convolutions, other channel counts, bf16 on 7.5, 7.0). A
/// forced target ([`Conv2dDesc::options`]) picks the path as in the forward; the forward's
/// forced tiling does not apply, and its Hopper options only ask for the phases (which load dy
/// by TMA im2col: an `a_load` forcing another load leaves a strided data gradient on the
/// implicit GEMM).
///
/// The tensor-core kernels read dy, w and x in 16-byte chunks: slices that do not start at a
/// multiple of 8 elements give [`Error::InvalidArgument`] there (every buffer the crate
/// allocates, used whole, is aligned).
///
/// The description's activation must be none: the gradient of a fused activation is the
/// caller's step before this one ([`relu_backward`](crate::ops::train::relu_backward)). α scales
/// dx and dw (β·C and the bias do not depend on x or w). Launches allocate nothing and never
/// synchronize, so a training step can be captured in a CUDA graph.
///
/// ```no_run
/// use hikube_gpu::half::f16;
/// use hikube_gpu::ops::conv2d::{Conv2dDesc, Conv2dGrad};
/// use hikube_gpu::{Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let desc = Conv2dDesc::input(8, 56, 56, 64).filters(64, 3, 3).padding(1, 1);
/// let x = DeviceBuffer::from_slice(&stream, &vec![f16::from_f32(0.1); desc.input_len()])?;
/// let w = DeviceBuffer::from_slice(&stream, &vec![f16::from_f32(0.01); desc.filter_len()])?;
/// let dy = DeviceBuffer::from_slice(&stream, &vec![f16::from_f32(1.0); desc.output_len()])?;
/// let mut dx = DeviceBuffer::<f16>::alloc(&stream, desc.input_len())?;
/// let mut dw = DeviceBuffer::<f32>::alloc(&stream, desc.filter_len())?;
/// let mut db = DeviceBuffer::<f32>::alloc(&stream, desc.k)?;
/// let mut grad = Conv2dGrad::<f16>::new(&stream, desc)?;
/// grad.data(&stream, &dy, &w, &mut dx)?; // or data_through_relu(…, &x, …): dx where x > 0
/// grad.filter(&stream, &x, &dy, &mut dw)?;
/// grad.bias(&stream, &dy, &mut db)?;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct Conv2dGrad<I: Float, W: FilterGrad<I> = f32> {
    desc: Conv2dDesc,
    device: Device,
    path: ConvPath,
    data: GradKernel<I, I>,
    /// Where the data gradient runs as a Hopper forward convolution (stride 1).
    data_forward: Option<ForwardData<I>>,
    /// Where it runs as Hopper convolutions, one per phase (the other strides and paddings).
    data_phases: Option<DgradSm90<I>>,
    filter: GradKernel<I, W>,
    /// Where the filter gradient runs on the Hopper kernel.
    filter_hopper: Option<WgradSm90<I, W>>,
}

/// The data gradient of a stride-1 convolution as the forward convolution of dy (N·P·Q·K) by
/// the flipped, transposed filter (C·R·S·K, taps reversed) with padding dil·(R − 1) − pad: the
/// Hopper path's kernels, where they take that convolution.
struct ForwardData<I: Float> {
    conv: Box<Conv2d<I, I>>,
    flip: Kernel<FlipFilter<I>>,
    flipped: DeviceBuffer<I>,
}

impl<I: Float> ForwardData<I> {
    /// The forward plan for `desc`'s data gradient, where it is a stride-1 convolution whose
    /// transposed form the Hopper path takes; `None` otherwise.
    fn new(stream: &Stream, desc: &Conv2dDesc) -> Result<Option<Self>> {
        let (dil, (r, s)) = (desc.dilation, (desc.r, desc.s));
        let pad = (dil.0 * (r - 1)).checked_sub(desc.padding.0);
        let pad = pad.zip((dil.1 * (s - 1)).checked_sub(desc.padding.1));
        // The flip's grid spans K in 32-row tiles (FlipFilter's limit).
        let flips = desc.k <= TRANSPOSE_MAX_ROWS;
        let transposable = desc.stride == (1, 1) && desc.groups == 1 && flips;
        let Some((pad_h, pad_w)) = pad.filter(|_| transposable) else {
            return Ok(None);
        };
        let (p, q) = desc.output_hw();
        let transposed = Conv2dDesc::input(desc.n, p, q, desc.k)
            .filters(desc.c, r, s)
            .padding(pad_h, pad_w)
            .dilation(dil.0, dil.1)
            .alpha(desc.alpha)
            .options(desc.options)
            // A 1×1 filter's: dx = dy · w, the Hopper GEMM.
            .gemm_for_1x1(true);
        // The implicit-GEMM kernel serves whatever the Hopper paths do not take.
        let hopper = [ConvPath::Sm90, ConvPath::Gemm(GemmPath::Sm90)];
        let conv = match Conv2d::<I, I>::new(stream, transposed) {
            Ok(conv) if hopper.contains(&conv.path()) => conv,
            Ok(_) | Err(_) => return Ok(None),
        };
        Ok(Some(ForwardData {
            conv: Box::new(conv),
            flip: FlipFilter::<I>::kernel(stream.device(), (), None)?,
            flipped: DeviceBuffer::alloc(stream, desc.filter_len())?,
        }))
    }

    fn bytes(&self) -> usize {
        self.flipped.num_bytes() + self.conv.workspace_bytes()
    }

    /// Flips w into the plan's buffer, then runs the forward convolution of dy into dx.
    fn launch(
        &mut self,
        stream: &Stream,
        desc: &Conv2dDesc,
        (dy, w): (&DeviceSlice<'_, I>, &DeviceSlice<'_, I>),
        dx: &mut DeviceSliceMut<'_, I>,
    ) -> Result<()> {
        let taps = FlipTaps::whole(desc.r, desc.s)?;
        let flipped = &mut self.flipped.as_slice_mut();
        super::layout::flip_filter(stream, &self.flip, w, flipped, (desc.k, desc.c), taps)?;
        self.conv
            .launch(stream, dy, &self.flipped, dx, Epilogue::new())
    }
}

impl<I: Float, W: FilterGrad<I>> std::fmt::Debug for Conv2dGrad<I, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conv2dGrad")
            .field("desc", &self.desc)
            .field("path", &self.path)
            .field("data", &self.data.tiling())
            .field("filter", &self.filter.tiling())
            .field(
                "filter_hopper",
                &self.filter_hopper.as_ref().map(WgradSm90::tiling),
            )
            .finish()
    }
}

impl<I: Float, W: FilterGrad<I>> Conv2dGrad<I, W> {
    /// Validates `desc` (the forward's) for `stream`'s device, picks the path and tiles, loads
    /// the kernels and allocates the split-K workspaces (on `stream`).
    pub fn new(stream: &Stream, desc: Conv2dDesc) -> Result<Self> {
        desc.validate()?;
        check_activation(&desc)?;
        let device = stream.device().clone();
        let family = modules::select(
            DIRECT_MODULE,
            device.compute_capability(),
            desc.options.arch,
        )?;
        let dense8 = desc.groups == 1 && desc.c.is_multiple_of(8) && desc.k.is_multiple_of(8);
        let path = match family {
            PtxArch::Compute80 | PtxArch::Compute90a if dense8 => ConvPath::Sm80,
            PtxArch::Compute75 if dense8 && I::DTYPE == Dtype::F16 => ConvPath::Sm75,
            _ => ConvPath::Direct,
        };
        let (p, q) = desc.output_hw();
        let taps = desc.r * desc.s;
        let data_mnk = (desc.n * desc.h * desc.w, desc.c, taps * desc.k);
        let filter_mnk = (desc.k, taps * desc.c / desc.groups, desc.n * p * q);
        let (data_forward, filter_hopper) =
            if path == ConvPath::Sm80 && family == PtxArch::Compute90a {
                (
                    ForwardData::new(stream, &desc)?,
                    WgradSm90::new(stream, &desc)?,
                )
            } else {
                (None, None)
            };
        // Strided dgrad by phases on the Hopper forward kernel only where the description asks.
        let phased = desc.hopper.is_some();
        let data_phases = match data_forward {
            None if phased && path == ConvPath::Sm80 && family == PtxArch::Compute90a => {
                DgradSm90::new(stream, &desc, &phases(&desc)?)?
            }
            _ => None,
        };
        Ok(Conv2dGrad {
            data_forward,
            data_phases,
            filter_hopper,
            data: GradKernel::new(stream, (Grad::Data, &desc), path, data_mnk, family)?,
            filter: GradKernel::new(stream, (Grad::Filter, &desc), path, filter_mnk, family)?,
            desc,
            device,
            path,
        })
    }

    /// The kernel path: [`ConvPath::Sm80`] or [`ConvPath::Sm75`] (tensor cores), or
    /// [`ConvPath::Direct`].
    pub fn path(&self) -> ConvPath {
        self.path
    }

    /// Whether [`data`](Self::data) runs on the Hopper forward kernel (on `compute_90a`): as
    /// the forward convolution of dy by the flipped filter (stride 1), or as one such
    /// convolution per phase of a strided convolution (K a multiple of 8), each writing its
    /// pixels of dx; rather than the implicit-GEMM data-gradient kernel
    /// ([`tilings`](Self::tilings)' first entry).
    pub fn data_on_hopper(&self) -> bool {
        self.data_forward.is_some() || self.data_phases.is_some()
    }

    /// Whether [`filter`](Self::filter) runs the Hopper filter-gradient kernel (wgmma, TMA
    /// im2col: C a multiple of 64 on `compute_90a`) rather than the implicit-GEMM one
    /// ([`tilings`](Self::tilings)' second entry); its tile and split-K slices.
    pub fn filter_on_hopper(&self) -> Option<(gemm::Tiling, usize)> {
        self.filter_hopper.as_ref().map(WgradSm90::tiling)
    }

    /// The tile and split-K slices of the data and the filter gradient's tensor-core kernels
    /// (`None` on the direct path).
    pub fn tilings(&self) -> Option<[(gemm::Tiling, usize); 2]> {
        Some([self.data.tiling()?, self.filter.tiling()?])
    }

    /// Bytes of device memory the plan holds besides its kernels (split-K partial sums, the
    /// flipped filter and the Hopper forward plan's workspace).
    pub fn workspace_bytes(&self) -> usize {
        let bytes = |w: &Option<DeviceBuffer<f32>>| w.as_ref().map_or(0, |b| b.num_bytes());
        let forward = self.data_forward.as_ref().map_or(0, ForwardData::bytes)
            + self.data_phases.as_ref().map_or(0, DgradSm90::bytes);
        let hopper = self
            .filter_hopper
            .as_ref()
            .map_or(0, WgradSm90::workspace_bytes);
        bytes(&self.data.workspace) + bytes(&self.filter.workspace) + forward + hopper
    }

    /// The description the plan was made from.
    pub fn desc(&self) -> &Conv2dDesc {
        &self.desc
    }

    /// Queues `dx = α·∂(Σ dy·conv(x, w))/∂x` on `stream`: `dy` the NHWC output gradient (N·P·Q·K),
    /// `w` the KRSC filter, `dx` the NHWC input gradient (N·H·W·C; overwritten).
    pub fn data(
        &mut self,
        stream: &Stream,
        dy: &impl AsDeviceSlice<I>,
        w: &impl AsDeviceSlice<I>,
        dx: &mut impl AsDeviceSliceMut<I>,
    ) -> Result<()> {
        self.data_with(stream, dy, w, None, dx)
    }

    /// [`data`](Self::data) through the ReLU that produced the convolution's input `x`, fused
    /// into the kernel's epilogue (cuDNN's fused backward graphs do the same): `dx` is the
    /// gradient with respect to the ReLU's input, the data gradient where `x > 0`, else 0.
    pub fn data_through_relu(
        &mut self,
        stream: &Stream,
        dy: &impl AsDeviceSlice<I>,
        w: &impl AsDeviceSlice<I>,
        x: &impl AsDeviceSlice<I>,
        dx: &mut impl AsDeviceSliceMut<I>,
    ) -> Result<()> {
        self.data_with(stream, dy, w, Some(&x.as_device_slice()), dx)
    }

    fn data_with(
        &mut self,
        stream: &Stream,
        dy: &impl AsDeviceSlice<I>,
        w: &impl AsDeviceSlice<I>,
        mask: Option<&DeviceSlice<'_, I>>,
        dx: &mut impl AsDeviceSliceMut<I>,
    ) -> Result<()> {
        let (dy, w, mut dx) = (
            dy.as_device_slice(),
            w.as_device_slice(),
            dx.as_device_slice_mut(),
        );
        let d = &self.desc;
        self.check(
            stream,
            [("dy", &dy, d.output_len()), ("w", &w, d.filter_len())],
        )?;
        if let Some(x) = mask {
            self.check(stream, [("x", x, d.input_len())])?;
        }
        self.device.check_same(dx.device())?;
        crate::memory::ensure_len("dx", d.input_len(), dx.len())?;
        match (&mut self.data_forward, &mut self.data_phases, mask) {
            (Some(forward), _, None) => forward.launch(stream, &self.desc, (&dy, &w), &mut dx),
            (_, Some(phased), mask) => phased.launch(stream, &self.desc, (&dy, &w), mask, &mut dx),
            _ => self
                .data
                .launch(stream, &self.desc, (&dy, &w), mask, &mut dx),
        }
    }

    /// Queues `dw = α·∂(Σ dy·conv(x, w))/∂w` on `stream`: `x` the NHWC input, `dy` the NHWC
    /// output gradient, `dw` the KRSC filter gradient (overwritten).
    pub fn filter(
        &mut self,
        stream: &Stream,
        x: &impl AsDeviceSlice<I>,
        dy: &impl AsDeviceSlice<I>,
        dw: &mut impl AsDeviceSliceMut<W>,
    ) -> Result<()> {
        let (x, dy, mut dw) = (
            x.as_device_slice(),
            dy.as_device_slice(),
            dw.as_device_slice_mut(),
        );
        let d = &self.desc;
        self.check(
            stream,
            [("x", &x, d.input_len()), ("dy", &dy, d.output_len())],
        )?;
        self.device.check_same(dw.device())?;
        crate::memory::ensure_len("dw", self.desc.filter_len(), dw.len())?;
        match &mut self.filter_hopper {
            Some(hopper) => hopper.launch(stream, (&x, &dy), &mut dw),
            None => self
                .filter
                .launch(stream, &self.desc, (&dy, &x), None, &mut dw),
        }
    }

    /// Queues `db[k] = Σ dy[…, k]` (the bias gradient, f32) on `stream`: `dy` the NHWC output
    /// gradient, `db` K elements.
    pub fn bias(
        &self,
        stream: &Stream,
        dy: &impl AsDeviceSlice<I>,
        db: &mut impl AsDeviceSliceMut<f32>,
    ) -> Result<()> {
        let (dy, mut db) = (dy.as_device_slice(), db.as_device_slice_mut());
        self.check(stream, [("dy", &dy, self.desc.output_len())])?;
        if db.len() != self.desc.k {
            return Err(Error::ShapeMismatch {
                shape: vec![self.desc.k],
                expected: self.desc.k,
                actual: db.len(),
            });
        }
        let (p, q) = self.desc.output_hw();
        crate::ops::train::bias_grad_rows(stream, &dy, self.desc.n * p * q, &mut db)
    }

    /// Checks the stream's and the inputs' devices and the inputs' lengths.
    fn check<const N: usize>(
        &self,
        stream: &Stream,
        inputs: [(&'static str, &DeviceSlice<'_, I>, usize); N],
    ) -> Result<()> {
        self.device.check_same(stream.device())?;
        for (what, s, len) in inputs {
            self.device.check_same(s.device())?;
            crate::memory::ensure_len(what, len, s.len())?;
        }
        Ok(())
    }
}

/// The description's activation must be none (the types are [`FilterGrad`]'s).
fn check_activation(desc: &Conv2dDesc) -> Result<()> {
    if desc.activation != Activation::None {
        return Err(Error::InvalidArgument {
            what: format!(
                "Conv2dGrad differentiates the convolution alone: apply the {:?} backward to dy \
                 first (ops::train::relu_backward) and pass a description without an activation",
                desc.activation
            ),
        });
    }
    Ok(())
}

/// The tile and split-K slices of a tensor-core gradient kernel for its GEMM `(m, n, k)`: the
/// GEMM time model, with wgrad, whose reduction (N·P·Q) is long and output (K × R·S·C) small,
/// split further than the forward.
fn choose(
    (grad, path): (Grad, ImplicitPath),
    (m, n, k): (usize, usize, usize),
    sms: usize,
    smem: usize,
) -> Option<Choice> {
    let max_splits = match grad {
        Grad::Data => 16,
        Grad::Filter => 64,
    };
    gemm::choose(
        config::grad_configs(path),
        m,
        n,
        k,
        1,
        sms,
        smem,
        max_splits,
    )
}

impl<I: Float, O: Float> GradKernel<I, O> {
    /// The tensor-core kernel's tile and split-K slices (`None`: the direct kernel).
    fn tiling(&self) -> Option<(gemm::Tiling, usize)> {
        self.choice.map(|c| (c.config.tiling, c.splits))
    }

    /// The kernel of `grad` on `path` for its GEMM `(m, n, k)`: the time model's tile and
    /// split-K slices on the tensor cores (and their workspace), else the direct kernel.
    fn new(
        stream: &Stream,
        (grad, desc): (Grad, &Conv2dDesc),
        path: ConvPath,
        (m, n, k): (usize, usize, usize),
        family: PtxArch,
    ) -> Result<Self> {
        let device = stream.device();
        let props = device.properties();
        let implicit = path.implicit().map(|(implicit, _)| implicit);
        let choice = match implicit {
            Some(implicit) => Some(
                choose(
                    (grad, implicit),
                    (m, n, k),
                    props.sm_count as usize,
                    props.max_shared_memory_per_block as usize,
                )
                .ok_or_else(|| Error::InvalidArgument {
                    what: "no convolution gradient tile fits this device".into(),
                })?,
            ),
            None => None,
        };
        let variant = ConvGradKernel {
            grad,
            tiling: implicit.zip(choice.map(|c| c.config.tiling)),
        };
        let func =
            ConvGrad::<I, O>::kernel(device, variant, Some(family).filter(|_| choice.is_none()))?;
        let (mut reduce, mut workspace) = (None, None);
        if let Some(c) = choice {
            if c.config.smem_bytes > 48 * 1024 {
                func.set_max_dynamic_shared_memory(c.config.smem_bytes)?;
            }
            if c.splits > 1 {
                let r = Reduction::Gemm(path.implicit().map_or(GemmPath::Sm80, |(_, g)| g));
                reduce = Some(SplitKReduce::<I, O>::kernel(device, r, None)?);
                let len = crate::size::product("split-K workspace", &[c.splits, m, n])?;
                workspace = Some(DeviceBuffer::<f32>::alloc(stream, len)?);
            }
        }
        let phases = match (grad, choice) {
            (Grad::Data, Some(_)) => phases(desc)?,
            _ => Vec::new(),
        };
        Ok(GradKernel {
            grad,
            mnk: (m, n, k),
            phases,
            func,
            choice,
            reduce,
            workspace,
        })
    }

    /// Queues the kernel (and the split-K reduction) for dy and `b` (w or x) into `d`, through
    /// the ReLU-backward `mask` (d's shape) where given.
    fn launch(
        &mut self,
        stream: &Stream,
        desc: &Conv2dDesc,
        (dy, b): (&DeviceSlice<'_, I>, &DeviceSlice<'_, I>),
        mask: Option<&DeviceSlice<'_, O>>,
        d: &mut DeviceSliceMut<'_, O>,
    ) -> Result<()> {
        let mut acc = Access::new(stream)?;
        let workspace = self.workspace.as_mut();
        let (ops, activation) = super::grad_operands(&mut acc, (dy, b), mask, d, workspace)?;
        let sms = stream.device().properties().sm_count;
        let shape = conv_shape(desc, desc.c);
        let Some(choice) = self.choice else {
            // The direct kernels: one launch covers the output.
            let (m, n, k) = self.mnk;
            let run_info = grad_run(None, (1, k), activation, desc.alpha);
            let whole = [DgradPhase::default()];
            let mut args = ConvGrad::new(self.grad, (shape, &whole), &ops, &run_info)?;
            let cfg = match self.grad {
                Grad::Filter => ConvGrad::<I, O>::direct_filter_config(m * n, sms),
                Grad::Data => launch_config(None, (m, n), sms),
            };
            run(stream, &self.func, cfg, &mut args)?;
            return acc.finish();
        };
        let whole = [DgradPhase::default()];
        let phases: &[DgradPhase] = match self.grad {
            Grad::Data => &self.phases,
            Grad::Filter => &whole,
        };
        // A strided data gradient's phases run side by side, MAX_PHASES per launch (grid z),
        // each whole (no split-K); the grid spans the largest.
        for group in phases.chunks(MAX_PHASES) {
            let (m, n, k) = match self.grad {
                Grad::Data => group
                    .iter()
                    .map(|ph| phase_mnk(desc, ph))
                    .fold((0, desc.c, 0), |(m, n, k), (pm, _, pk)| {
                        (m.max(pm), n, k.max(pk))
                    }),
                Grad::Filter => self.mnk,
            };
            let (splits, k_per_split) = if phases.len() == 1 {
                (choice.splits, choice.k_per_split)
            } else {
                (1, k.div_ceil(gemm::K_ALIGN).max(1) * gemm::K_ALIGN)
            };
            let run_info = grad_run(Some(choice), (splits, k_per_split), activation, desc.alpha);
            let mut args = ConvGrad::new(self.grad, (shape, group), &ops, &run_info)?;
            let one = Choice {
                splits,
                k_per_split,
                ..choice
            };
            let mut cfg = launch_config(Some(one), (m, n), sms);
            cfg.grid_dim.2 = group.len() as u32;
            run(stream, &self.func, cfg, &mut args)?;
            if let Some(reduce) = self.reduce.as_ref().filter(|_| splits > 1) {
                reduce_splits(stream, reduce, args.params(), m * n)?;
            }
        }
        acc.finish()
    }
}

/// A gradient kernel's run: the tile of `choice` (none: a direct kernel), split-K slices and K
/// per slice, the activation code, α.
fn grad_run(
    choice: Option<Choice>,
    (splits, k_per_split): (usize, usize),
    activation: i32,
    alpha: f32,
) -> ConvRun {
    ConvRun {
        tile: choice.map(|c| (c.config.bm, c.config.bn)),
        vec: None,
        splits,
        k_per_split,
        activation,
        scale: (alpha, 0.0),
        ldb: 0,
    }
}

/// One axis of the data gradient's phases: the input rows `first + i·stride`, `i < count`,
/// whose `(row + pad) mod stride` is one remainder, and the taps `tap0 + t·tap_step`, `t <
/// taps`, that carry them to output rows `base + i − t·out_step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AxisPhase {
    first: usize,
    count: usize,
    tap0: usize,
    tap_step: usize,
    taps: usize,
    base: i64,
    out_step: usize,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The phases of an axis of `len` input rows, padding `pad`, `filter` taps of dilation `dil`,
/// stride `stride` (one per remainder of (row + pad) by the stride; those with no row left out).
fn axis_phases(len: usize, pad: usize, filter: usize, dil: usize, stride: usize) -> Vec<AxisPhase> {
    let g = gcd(dil, stride);
    (0..stride)
        .filter_map(|a| {
            let first = (a + stride - pad % stride) % stride;
            let count = len.saturating_sub(first).div_ceil(stride);
            if count == 0 {
                return None;
            }
            // r·dil ≡ a (mod stride) has solutions only when gcd(dil, stride) divides a.
            let tap0 = (0..stride / g)
                .find(|r| (r * dil) % stride == a)
                .filter(|_| a % g == 0);
            let phase = match tap0.filter(|&r| r < filter) {
                Some(tap0) => AxisPhase {
                    first,
                    count,
                    tap0,
                    tap_step: stride / g,
                    taps: (filter - tap0).div_ceil(stride / g),
                    base: (first as i64 + pad as i64 - (tap0 * dil) as i64) / stride as i64,
                    out_step: dil / g,
                },
                None => AxisPhase {
                    first,
                    count,
                    tap0: 0,
                    tap_step: 1,
                    taps: 0,
                    base: 0,
                    out_step: 0,
                },
            };
            Some(phase)
        })
        .collect()
}

/// The data gradient's phases for `desc`: every pair of a row phase and a column phase.
pub(super) fn phases(desc: &Conv2dDesc) -> Result<Vec<DgradPhase>> {
    let rows = axis_phases(
        desc.h,
        desc.padding.0,
        desc.r,
        desc.dilation.0,
        desc.stride.0,
    );
    let cols = axis_phases(
        desc.w,
        desc.padding.1,
        desc.s,
        desc.dilation.1,
        desc.stride.1,
    );
    let int = |v: i64| {
        i32::try_from(v).map_err(|_| Error::TooLarge {
            what: "a data-gradient phase's index".into(),
            value: usize::try_from(v).unwrap_or(usize::MAX),
            max: i32::MAX as usize,
        })
    };
    let u = |v: usize| int(v as i64);
    let mut out = Vec::with_capacity(rows.len() * cols.len());
    for h in &rows {
        for w in &cols {
            out.push(DgradPhase {
                h0: u(h.first)?,
                w0: u(w.first)?,
                rows: u(h.count)?,
                cols: u(w.count)?,
                r0: u(h.tap0)?,
                s0: u(w.tap0)?,
                tr: u(h.tap_step)?,
                ts: u(w.tap_step)?,
                taps_h: u(h.taps)?,
                taps_w: u(w.taps)?,
                pbase: int(h.base)?,
                qbase: int(w.base)?,
                dp: u(h.out_step)?,
                dq: u(w.out_step)?,
            });
        }
    }
    Ok(out)
}

/// A data-gradient phase's GEMM: N·rows·cols pixels, C channels, taps·K.
fn phase_mnk(desc: &Conv2dDesc, ph: &DgradPhase) -> (usize, usize, usize) {
    let d = |v: i32| usize::try_from(v).unwrap_or(0);
    let m = desc.n * d(ph.rows) * d(ph.cols);
    (m, desc.c, d(ph.taps_h) * d(ph.taps_w) * desc.k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (input row, tap) pair that reaches an output row is in exactly one phase, at the
    /// output row the phase's arithmetic gives; no other pair is.
    #[test]
    fn phases_cover_every_contribution_once() {
        for stride in 1..=4 {
            for dil in 1..=3 {
                for (len, filter, pad) in [(9, 3, 1), (8, 5, 2), (7, 1, 0), (12, 4, 3), (5, 3, 4)] {
                    // Only geometries with an output (the forward's validation).
                    let Some(span) = usize::checked_sub(len + 2 * pad, dil * (filter - 1) + 1)
                    else {
                        continue;
                    };
                    let out_len = span / stride + 1;
                    let mut seen = std::collections::HashSet::new();
                    for ph in axis_phases(len, pad, filter, dil, stride) {
                        for i in 0..ph.count {
                            for t in 0..ph.taps {
                                let (h, r) = (ph.first + i * stride, ph.tap0 + t * ph.tap_step);
                                let o = ph.base + i as i64 - (t * ph.out_step) as i64;
                                let num = h as i64 + pad as i64 - (r * dil) as i64;
                                assert_eq!(
                                    num,
                                    o * stride as i64,
                                    "{stride} {dil} {len} {filter} {pad}"
                                );
                                if (0..out_len as i64).contains(&o) {
                                    assert!(seen.insert((h, r)), "({h}, {r}) twice");
                                }
                            }
                        }
                    }
                    for h in 0..len {
                        for r in 0..filter {
                            let num = h as i64 + pad as i64 - (r * dil) as i64;
                            let reaches = num >= 0
                                && num % stride as i64 == 0
                                && num / (stride as i64) < out_len as i64;
                            assert_eq!(
                                seen.contains(&(h, r)),
                                reaches,
                                "({h}, {r}) s{stride} d{dil}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn stride_one_is_one_phase() {
        let d = Conv2dDesc::input(2, 9, 7, 8)
            .filters(16, 3, 3)
            .padding(1, 1);
        let p = phases(&d).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].rows, p[0].cols, p[0].taps_h, p[0].pbase, p[0].dp),
            (9, 7, 3, 1, 1)
        );
    }

    #[test]
    fn wgrad_fills_the_gpu_by_splitting_its_long_reduction() {
        // ResNet-50's C64 3x3 layer at batch 64 on 132 SMs: a 64 x 576 output, K = 200704.
        let c = choose(
            (Grad::Filter, ImplicitPath::Sm80),
            (64, 576, 64 * 56 * 56),
            132,
            227 << 10,
        )
        .unwrap();
        let tiles = 64usize.div_ceil(c.config.bm) * 576usize.div_ceil(c.config.bn);
        assert!(tiles * c.splits >= 132, "{c:?}");
        assert!(c.splits > 16 && c.k_per_split.is_multiple_of(64), "{c:?}");
    }

    #[test]
    fn dgrad_of_a_large_layer_does_not_split() {
        // The same layer's dgrad: 200704 x 64 output, K = 576.
        let c = choose(
            (Grad::Data, ImplicitPath::Sm80),
            (64 * 56 * 56, 64, 576),
            132,
            227 << 10,
        )
        .unwrap();
        assert_eq!(c.splits, 1, "{c:?}");
    }
}
