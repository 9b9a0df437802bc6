//! cuDNN (feature `cudnn`): the convolution forward and backward the conv benchmark puts beside
//! [`Conv2d`](crate::ops::conv2d::Conv2d) and [`Conv2dGrad`](crate::ops::conv2d::Conv2dGrad),
//! on the same NHWC / KRSC buffers.

use crate::error::{Error, Result};
use crate::memory::access::Access;
use crate::memory::{
    ensure_len, AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice, DeviceSliceMut,
};
use crate::ops::conv2d::Conv2dDesc;
use crate::ops::{Dtype, Float};
use crate::stream::Stream;
use cudarc::cudnn::{result as dnn, sys as dnn_sys};
use std::ffi::c_void;

type Status<T> = std::result::Result<T, String>;

fn status<T>(what: &str, r: std::result::Result<T, dnn::CudnnError>) -> Status<T> {
    r.map_err(|e| format!("{what}: {e:?}"))
}

/// A cuDNN forward convolution for one [`Conv2dDesc`]: NHWC input and output, KRSC filter,
/// f32 compute with tensor-op math, the algorithm `cudnnFindConvolutionForwardAlgorithm`
/// measured fastest, and its workspace. Where cuDNN takes it,
/// `cudnnConvolutionBiasActivationForward` applies bias + ReLU as the crate's kernels do
/// ([`CudnnConv::fused`]); otherwise [`CudnnConv::launch`] computes the convolution alone.
///
/// ```no_run
/// use hikube_gpu::ops::conv2d::Conv2dDesc;
/// use hikube_gpu::{half::f16, reference::CudnnConv, Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let desc = Conv2dDesc::input(8, 28, 28, 64).filters(64, 3, 3).padding(1, 1);
/// let mut conv = CudnnConv::new::<f16>(&stream, &desc).expect("cuDNN");
/// let x = DeviceBuffer::from_slice(&stream, &vec![f16::ONE; desc.input_len()])?;
/// let w = DeviceBuffer::from_slice(&stream, &vec![f16::ONE; desc.filter_len()])?;
/// let mut y = DeviceBuffer::<f16>::alloc(&stream, desc.output_len())?;
/// conv.launch(&stream, &x, &w, None, &mut y)?;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct CudnnConv {
    handle: dnn_sys::cudnnHandle_t,
    x: dnn_sys::cudnnTensorDescriptor_t,
    w: dnn_sys::cudnnFilterDescriptor_t,
    conv: dnn_sys::cudnnConvolutionDescriptor_t,
    y: dnn_sys::cudnnTensorDescriptor_t,
    bias: dnn_sys::cudnnTensorDescriptor_t,
    act: dnn_sys::cudnnActivationDescriptor_t,
    algo: dnn_sys::cudnnConvolutionFwdAlgo_t,
    workspace: Option<DeviceBuffer<u8>>,
    desc: Conv2dDesc,
    fused: bool,
    /// The backward algorithms ([`CudnnConv::find_backward`]) and their workspace.
    backward: Option<Backward>,
}

/// The algorithms `cudnnFindConvolutionBackward{Data,Filter}Algorithm` measured fastest, and a
/// workspace for either.
struct Backward {
    data: dnn_sys::cudnnConvolutionBwdDataAlgo_t,
    filter: dnn_sys::cudnnConvolutionBwdFilterAlgo_t,
    workspace: Option<DeviceBuffer<u8>>,
}

impl Drop for CudnnConv {
    fn drop(&mut self) {
        // SAFETY: each descriptor and the handle were created in `new` and are destroyed once,
        // here. Errors on teardown leave nothing to act on; they are reported, not hidden.
        let errors = unsafe {
            [
                dnn::destroy_tensor_descriptor(self.x),
                dnn::destroy_filter_descriptor(self.w),
                dnn::destroy_convolution_descriptor(self.conv),
                dnn::destroy_tensor_descriptor(self.y),
                dnn::destroy_tensor_descriptor(self.bias),
                dnn_sys::cudnnDestroyActivationDescriptor(self.act).result(),
                dnn::destroy_handle(self.handle),
            ]
        };
        for e in errors.into_iter().filter_map(|r| r.err()) {
            eprintln!("cuDNN teardown: {e:?}");
        }
    }
}

impl std::fmt::Debug for CudnnConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudnnConv")
            .field("desc", &self.desc)
            .field("algo", &self.algo)
            .field("fused", &self.fused)
            .finish()
    }
}

fn data_type<T: Float>() -> dnn_sys::cudnnDataType_t {
    match T::DTYPE {
        Dtype::F16 => dnn_sys::cudnnDataType_t::CUDNN_DATA_HALF,
        Dtype::Bf16 => dnn_sys::cudnnDataType_t::CUDNN_DATA_BFLOAT16,
        Dtype::F32 => dnn_sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
    }
}

impl CudnnConv {
    /// Sets up `desc` for element type `T` (input, filter, output and bias) on `stream`: the
    /// descriptors, the fastest algorithm by cuDNN's own search (which runs each candidate),
    /// its workspace, and a trial of the fused bias + ReLU call. `Err` says why cuDNN is
    /// unavailable or refused the shape.
    pub fn new<T: Float>(stream: &Stream, desc: &Conv2dDesc) -> Status<Self> {
        // SAFETY: this only tries to open the library by its names; nothing is called in it.
        if !unsafe { dnn_sys::is_culib_present() } {
            return Err("libcudnn could not be loaded (install cuDNN 9, e.g. the \
                        nvidia-cudnn-cu12 wheel, and put it on LD_LIBRARY_PATH)"
                .into());
        }
        let cs = &stream.raw;
        cs.context()
            .bind_to_thread()
            .map_err(|e| format!("bind context: {e}"))?;
        let dt = data_type::<T>();
        let nhwc = dnn_sys::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC;
        let (p, q) = desc.output_hw();
        let i = |v: usize| v as i32;
        let handle = status("cudnnCreate", dnn::create_handle())?;
        // The descriptors are created one by one; `me` owns them from the start so that an
        // error on the way destroys what exists.
        let mut me = CudnnConv {
            handle,
            x: std::ptr::null_mut(),
            w: std::ptr::null_mut(),
            conv: std::ptr::null_mut(),
            y: std::ptr::null_mut(),
            bias: std::ptr::null_mut(),
            act: std::ptr::null_mut(),
            algo: dnn_sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
            workspace: None,
            desc: *desc,
            fused: false,
            backward: None,
        };
        me.x = status("tensor descriptor", dnn::create_tensor_descriptor())?;
        me.y = status("tensor descriptor", dnn::create_tensor_descriptor())?;
        me.bias = status("tensor descriptor", dnn::create_tensor_descriptor())?;
        me.w = status("filter descriptor", dnn::create_filter_descriptor())?;
        me.conv = status("conv descriptor", dnn::create_convolution_descriptor())?;
        me.act = status("activation descriptor", dnn::create_activation_descriptor())?;
        // SAFETY: every descriptor was just created and is set once; the handle is bound to
        // `stream`'s CUDA stream, which outlives the calls.
        unsafe {
            status(
                "cudnnSetStream",
                dnn::set_stream(handle, cs.cu_stream() as dnn_sys::cudaStream_t),
            )?;
            status(
                "x",
                dnn::set_tensor4d_descriptor(
                    me.x,
                    nhwc,
                    dt,
                    [desc.n, desc.c, desc.h, desc.w].map(i),
                ),
            )?;
            status(
                "y",
                dnn::set_tensor4d_descriptor(me.y, nhwc, dt, [desc.n, desc.k, p, q].map(i)),
            )?;
            status(
                "bias",
                dnn::set_tensor4d_descriptor(me.bias, nhwc, dt, [1, desc.k, 1, 1].map(i)),
            )?;
            status(
                "w",
                dnn::set_filter4d_descriptor(
                    me.w,
                    dt,
                    nhwc,
                    [desc.k, desc.c / desc.groups, desc.r, desc.s].map(i),
                ),
            )?;
            status(
                "conv",
                dnn::set_convolution2d_descriptor(
                    me.conv,
                    i(desc.padding.0),
                    i(desc.padding.1),
                    i(desc.stride.0),
                    i(desc.stride.1),
                    i(desc.dilation.0),
                    i(desc.dilation.1),
                    dnn_sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                    dnn_sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                ),
            )?;
            status(
                "math type",
                dnn::set_convolution_math_type(
                    me.conv,
                    dnn_sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
                ),
            )?;
            if desc.groups > 1 {
                status(
                    "group count",
                    dnn::set_convolution_group_count(me.conv, i(desc.groups)),
                )?;
            }
            status(
                "activation",
                dnn::set_activation_descriptor(
                    me.act,
                    dnn_sys::cudnnActivationMode_t::CUDNN_ACTIVATION_RELU,
                    dnn_sys::cudnnNanPropagation_t::CUDNN_NOT_PROPAGATE_NAN,
                    0.0,
                ),
            )?;
            const MAX: usize = 8;
            let mut count = 0i32;
            let mut perf: [dnn_sys::cudnnConvolutionFwdAlgoPerf_t; MAX] = std::mem::zeroed();
            status(
                "cudnnFindConvolutionForwardAlgorithm",
                dnn_sys::cudnnFindConvolutionForwardAlgorithm(
                    handle,
                    me.x,
                    me.w,
                    me.conv,
                    me.y,
                    MAX as i32,
                    &mut count,
                    perf.as_mut_ptr(),
                )
                .result(),
            )?;
            let best = perf
                .iter()
                .take(count.max(0) as usize)
                .find(|r| r.status == dnn_sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS)
                .ok_or("cuDNN found no algorithm for this convolution")?;
            me.algo = best.algo;
            let bytes = status(
                "workspace size",
                dnn::get_convolution_forward_workspace_size(
                    handle, me.x, me.w, me.conv, me.y, me.algo,
                ),
            )?;
            if bytes > 0 {
                me.workspace = Some(
                    DeviceBuffer::alloc(stream, bytes).map_err(|e| format!("workspace: {e}"))?,
                );
            }
        }
        Ok(me)
    }

    /// The algorithm cuDNN's search picked.
    pub fn algorithm(&self) -> String {
        format!("{:?}", self.algo)
            .trim_start_matches("CUDNN_CONVOLUTION_FWD_ALGO_")
            .to_string()
    }

    /// Whether [`CudnnConv::launch`] applies bias + ReLU (set by [`CudnnConv::try_fuse`]).
    pub fn fused(&self) -> bool {
        self.fused
    }

    /// Bytes of workspace the algorithm uses.
    pub fn workspace_bytes(&self) -> usize {
        self.workspace.as_ref().map_or(0, |w| w.num_bytes())
    }

    /// Tries the fused `cudnnConvolutionBiasActivationForward` (bias + ReLU) once on these
    /// buffers; from then on [`CudnnConv::launch`] uses it if cuDNN accepted it. Returns
    /// whether it did.
    pub fn try_fuse<T: Float>(
        &mut self,
        stream: &Stream,
        x: &impl AsDeviceSlice<T>,
        w: &impl AsDeviceSlice<T>,
        bias: &impl AsDeviceSlice<T>,
        y: &mut impl AsDeviceSliceMut<T>,
    ) -> Result<bool> {
        self.fused = true;
        let ok = self
            .launch(stream, x, w, Some(bias.as_device_slice()), y)
            .is_ok();
        self.fused = ok;
        Ok(ok)
    }

    /// Queues the convolution (with bias + ReLU when [`CudnnConv::fused`]) on the handle's
    /// stream. Checks buffer sizes first.
    pub fn launch<T: Float>(
        &mut self,
        stream: &Stream,
        x: &impl AsDeviceSlice<T>,
        w: &impl AsDeviceSlice<T>,
        bias: Option<DeviceSlice<'_, T>>,
        y: &mut impl AsDeviceSliceMut<T>,
    ) -> Result<()> {
        let d = &self.desc;
        let (x, w, mut y) = (
            x.as_device_slice(),
            w.as_device_slice(),
            y.as_device_slice_mut(),
        );
        ensure_len("x", d.input_len(), x.len())?;
        ensure_len("w", d.filter_len(), w.len())?;
        ensure_len("y", d.output_len(), y.len())?;
        ensure_len("bias", d.k, bias.as_ref().map_or(d.k, |b| b.len()))?;
        let mut acc = Access::eager(stream, "a cuDNN call")?;
        let xp = acc.read(&x)?.addr();
        let wp = acc.read(&w)?.addr();
        let yp = acc.write(&mut y)?.addr();
        let bias_ptr = match &bias {
            Some(b) => Some(acc.read(b)?.addr()),
            None => None,
        };
        let ws_size = self.workspace_bytes();
        let ws = acc.write_or_null(self.workspace.as_mut())?.addr() as *mut c_void;
        let (alpha, zero) = (1.0f32, 0.0f32);
        let r = match (bias_ptr, self.fused) {
            (Some(bp), true) => {
                // SAFETY: the descriptors describe exactly x, w, y (sizes checked above) and a
                // K-element bias; z is y with alpha2 = 0 (not read); the workspace is the size
                // cuDNN asked for this algorithm; alpha and alpha2 are f32, as the f32 compute
                // type reads them; the handle runs on `stream`, which the access orders.
                unsafe {
                    dnn::convolution_bias_activation_forward(
                        self.handle,
                        &alpha as *const f32 as *const c_void,
                        self.x,
                        xp as *const c_void,
                        self.w,
                        wp as *const c_void,
                        self.conv,
                        self.algo,
                        ws,
                        ws_size,
                        &zero as *const f32 as *const c_void,
                        self.y,
                        yp as *const c_void,
                        self.bias,
                        bp as *const c_void,
                        self.act,
                        self.y,
                        yp as *mut c_void,
                    )
                }
            }
            // SAFETY: as above, without bias and activation; beta = 0 never reads y.
            _ => unsafe {
                dnn::convolution_forward(
                    self.handle,
                    &alpha as *const f32 as *const c_void,
                    self.x,
                    xp as *const c_void,
                    self.w,
                    wp as *const c_void,
                    self.conv,
                    self.algo,
                    ws,
                    ws_size,
                    &zero as *const f32 as *const c_void,
                    self.y,
                    yp as *mut c_void,
                )
            },
        };
        r.map_err(|e| Error::InvalidArgument {
            what: format!("cuDNN convolution forward returned {e:?}"),
        })?;
        acc.finish()
    }

    /// Runs cuDNN's searches for the backward data and filter algorithms (each candidate
    /// measured) and allocates the larger workspace; then [`launch_data`](Self::launch_data)
    /// and [`launch_filter`](Self::launch_filter) use them. `Err` says why cuDNN refused.
    pub fn find_backward(&mut self, stream: &Stream) -> Status<()> {
        const MAX: usize = 8;
        let mut count = 0i32;
        // SAFETY: the descriptors were set in `new` and describe this convolution; the perf
        // arrays hold MAX entries, of which cuDNN fills `count`; the handle is on `stream`.
        let (data, filter, bytes) = unsafe {
            let mut perf: [dnn_sys::cudnnConvolutionBwdDataAlgoPerf_t; MAX] = std::mem::zeroed();
            status(
                "cudnnFindConvolutionBackwardDataAlgorithm",
                dnn_sys::cudnnFindConvolutionBackwardDataAlgorithm(
                    self.handle,
                    self.w,
                    self.y,
                    self.conv,
                    self.x,
                    MAX as i32,
                    &mut count,
                    perf.as_mut_ptr(),
                )
                .result(),
            )?;
            let ok = dnn_sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS;
            let data = perf
                .iter()
                .take(count.max(0) as usize)
                .find(|r| r.status == ok);
            let data = data.ok_or("cuDNN found no backward data algorithm")?.algo;
            let mut perf: [dnn_sys::cudnnConvolutionBwdFilterAlgoPerf_t; MAX] = std::mem::zeroed();
            status(
                "cudnnFindConvolutionBackwardFilterAlgorithm",
                dnn_sys::cudnnFindConvolutionBackwardFilterAlgorithm(
                    self.handle,
                    self.x,
                    self.y,
                    self.conv,
                    self.w,
                    MAX as i32,
                    &mut count,
                    perf.as_mut_ptr(),
                )
                .result(),
            )?;
            let filter = perf
                .iter()
                .take(count.max(0) as usize)
                .find(|r| r.status == ok);
            let filter = filter
                .ok_or("cuDNN found no backward filter algorithm")?
                .algo;
            let (h, x, y, w, c) = (self.handle, self.x, self.y, self.w, self.conv);
            let data_bytes = dnn::get_convolution_backward_data_workspace_size(h, w, y, c, x, data);
            let filter_bytes =
                dnn::get_convolution_backward_filter_workspace_size(h, x, y, c, w, filter);
            let bytes =
                status("workspace size", data_bytes)?.max(status("workspace size", filter_bytes)?);
            (data, filter, bytes)
        };
        let workspace = match bytes {
            0 => None,
            b => Some(DeviceBuffer::alloc(stream, b).map_err(|e| format!("workspace: {e}"))?),
        };
        self.backward = Some(Backward {
            data,
            filter,
            workspace,
        });
        Ok(())
    }

    /// The backward algorithms the search picked (data, filter), once it ran.
    pub fn backward_algorithms(&self) -> Option<(String, String)> {
        let b = self.backward.as_ref()?;
        let name = |s: String, prefix: &str| s.trim_start_matches(prefix).to_string();
        Some((
            name(format!("{:?}", b.data), "CUDNN_CONVOLUTION_BWD_DATA_ALGO_"),
            name(
                format!("{:?}", b.filter),
                "CUDNN_CONVOLUTION_BWD_FILTER_ALGO_",
            ),
        ))
    }

    /// Queues dx = conv_backward_data(dy, w) with the searched algorithm.
    pub fn launch_data<T: Float>(
        &mut self,
        stream: &Stream,
        dy: &impl AsDeviceSlice<T>,
        w: &impl AsDeviceSlice<T>,
        dx: &mut impl AsDeviceSliceMut<T>,
    ) -> Result<()> {
        let d = self.desc;
        let algo = self.backward.as_ref().ok_or_else(no_backward)?.data;
        let (handle, wd, yd, conv, xd) = (self.handle, self.w, self.y, self.conv, self.x);
        let ins = [
            ("dy", dy.as_device_slice(), d.output_len()),
            ("w", w.as_device_slice(), d.filter_len()),
        ];
        let out = ("dx", dx.as_device_slice_mut(), d.input_len());
        self.backward_call(stream, ins, out, |[dyp, wp], dxp, (ws, ws_size)| {
            let (alpha, zero) = (1.0f32, 0.0f32);
            // SAFETY: the descriptors describe exactly dy, w and dx (`backward_call` checked
            // their sizes); the workspace is at least what cuDNN asked for the algorithm; alpha
            // and beta are f32 (the f32 compute type), beta = 0 never reads dx; the handle runs
            // on `stream`, which the access orders.
            unsafe {
                dnn::convolution_backward_data(
                    handle,
                    &alpha as *const f32 as *const c_void,
                    wd,
                    wp,
                    yd,
                    dyp,
                    conv,
                    algo,
                    ws,
                    ws_size,
                    &zero as *const f32 as *const c_void,
                    xd,
                    dxp,
                )
            }
        })
    }

    /// Queues dw = conv_backward_filter(x, dy) with the searched algorithm (dw in `T`).
    pub fn launch_filter<T: Float>(
        &mut self,
        stream: &Stream,
        x: &impl AsDeviceSlice<T>,
        dy: &impl AsDeviceSlice<T>,
        dw: &mut impl AsDeviceSliceMut<T>,
    ) -> Result<()> {
        let d = self.desc;
        let algo = self.backward.as_ref().ok_or_else(no_backward)?.filter;
        let (handle, wd, yd, conv, xd) = (self.handle, self.w, self.y, self.conv, self.x);
        let ins = [
            ("x", x.as_device_slice(), d.input_len()),
            ("dy", dy.as_device_slice(), d.output_len()),
        ];
        let out = ("dw", dw.as_device_slice_mut(), d.filter_len());
        self.backward_call(stream, ins, out, |[xp, dyp], dwp, (ws, ws_size)| {
            let (alpha, zero) = (1.0f32, 0.0f32);
            // SAFETY: as in `launch_data`, for x, dy and dw.
            unsafe {
                dnn::convolution_backward_filter(
                    handle,
                    &alpha as *const f32 as *const c_void,
                    xd,
                    xp,
                    yd,
                    dyp,
                    conv,
                    algo,
                    ws,
                    ws_size,
                    &zero as *const f32 as *const c_void,
                    wd,
                    dwp,
                )
            }
        })
    }

    /// Checks the two inputs and the output against the lengths given, orders them and the
    /// backward workspace on `stream`, and makes the cuDNN `call` with their addresses and the
    /// workspace (address, bytes).
    fn backward_call<T: Float>(
        &mut self,
        stream: &Stream,
        ins: [(&'static str, DeviceSlice<'_, T>, usize); 2],
        (name, mut out, out_len): (&'static str, DeviceSliceMut<'_, T>, usize),
        call: impl FnOnce(
            [*const c_void; 2],
            *mut c_void,
            (*mut c_void, usize),
        ) -> std::result::Result<(), dnn::CudnnError>,
    ) -> Result<()> {
        for (what, s, len) in &ins {
            crate::memory::ensure_len(what, *len, s.len())?;
        }
        crate::memory::ensure_len(name, out_len, out.len())?;
        let b = self.backward.as_mut().ok_or_else(no_backward)?;
        let mut acc = Access::eager(stream, "a cuDNN call")?;
        let [a, c] = [&ins[0].1, &ins[1].1];
        let ptrs = [acc.read(a)?.addr(), acc.read(c)?.addr()].map(|p| p as *const c_void);
        let outp = acc.write(&mut out)?.addr() as *mut c_void;
        let ws_size = b.workspace.as_ref().map_or(0, |w| w.num_bytes());
        let ws = acc.write_or_null(b.workspace.as_mut())?.addr() as *mut c_void;
        call(ptrs, outp, (ws, ws_size)).map_err(|e| Error::InvalidArgument {
            what: format!("cuDNN convolution backward ({name}) returned {e:?}"),
        })?;
        acc.finish()
    }
}

fn no_backward() -> Error {
    Error::InvalidArgument {
        what: "CudnnConv::find_backward has not run (or failed)".into(),
    }
}
