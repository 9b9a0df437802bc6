//! cuDNN (feature `cudnn`): the convolution forward the conv benchmark puts beside
//! [`Conv2d`](crate::ops::conv2d::Conv2d), on the same NHWC / KRSC buffers.

use crate::error::{Error, Result};
use crate::memory::access::Access;
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice};
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
        for (operand, len, need) in [
            ("x", x.len(), d.input_len()),
            ("w", w.len(), d.filter_len()),
            ("y", y.len(), d.output_len()),
            ("bias", bias.as_ref().map_or(d.k, |b| b.len()), d.k),
        ] {
            if len < need {
                return Err(Error::BufferTooSmall {
                    operand,
                    required: need,
                    actual: len,
                });
            }
        }
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
}
