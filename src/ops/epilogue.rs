//! The epilogue every tensor-core op shares: `D = act(α·acc + β·C + bias)`, with α, β and
//! the activation in the op's description and C and the bias given at launch ([`Epilogue`]).
//! The kernels apply it with one implementation (`kernels/gemm/gemm_params.cuh`).

use crate::memory::{AsDeviceSlice, DeviceSlice};
use crate::ops::Float;

/// The activation applied after the bias, by every op with an epilogue.
///
/// ```
/// use hikube_gpu::ops::conv2d::Conv2dDesc;
/// use hikube_gpu::ops::matmul::MatmulDesc;
/// use hikube_gpu::ops::Activation;
/// let linear = MatmulDesc::new(64, 256, 128).activation(Activation::Gelu);
/// let conv = Conv2dDesc::input(1, 8, 8, 16).filters(32, 3, 3).activation(Activation::Relu);
/// assert_eq!((linear.activation, conv.activation), (Activation::Gelu, Activation::Relu));
/// ```
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

impl Activation {
    /// The kernels' code for it (`hk::Activation` in gemm_params.cuh).
    pub(crate) fn code(self) -> i32 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Gelu => 2,
        }
    }
}

/// The optional epilogue operands of a [`Matmul`](crate::ops::matmul::Matmul) or
/// [`Conv2d`](crate::ops::conv2d::Conv2d) launch: C (read when β ≠ 0; D's shape, layout and
/// element type) and a bias per output column (a matmul's N, a convolution's K channels) of
/// any element type `B` (f32, f16 or bf16, as cuBLASLt's bias pointer; D's type unless
/// [`bias`](Self::bias) is given another). α, β and the activation are the plan's (its
/// description's).
///
/// ```no_run
/// use hikube_gpu::ops::matmul::{Activation, Epilogue, Matmul, MatmulDesc};
/// use hikube_gpu::{half::f16, Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.new_stream()?;
/// let (m, n, k) = (256, 512, 1024);
/// let a = DeviceBuffer::<f16>::zeroed(&stream, m * k)?;
/// let b = DeviceBuffer::<f16>::zeroed(&stream, k * n)?;
/// let c = DeviceBuffer::<f16>::zeroed(&stream, m * n)?;
/// let bias = DeviceBuffer::<f32>::zeroed(&stream, n)?; // an f32 bias for an f16 output
/// let mut d = DeviceBuffer::<f16>::alloc(&stream, m * n)?;
/// // D = relu(A·B + 0.5·C + bias)
/// let desc = MatmulDesc::new(m, n, k).beta(0.5).activation(Activation::Relu);
/// let mm = Matmul::<f16, f16>::new(&stream, desc)?;
/// mm.launch(&stream, &a, &b, &mut d, Epilogue::new().c(&c).bias(&bias))?;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct Epilogue<'a, O: Float, B: Float = O> {
    c: Option<DeviceSlice<'a, O>>,
    bias: Option<DeviceSlice<'a, B>>,
}

/// No C and no bias (a bias of type `B` may be added later).
impl<O: Float, B: Float> Default for Epilogue<'_, O, B> {
    fn default() -> Self {
        Epilogue {
            c: None,
            bias: None,
        }
    }
}

impl<O: Float> Epilogue<'_, O> {
    /// No C (β ≠ 0 then accumulates into D) and no bias.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<'a, O: Float, B: Float> Epilogue<'a, O, B> {
    /// C, if given.
    pub(crate) fn c_slice(&self) -> Option<&DeviceSlice<'a, O>> {
        self.c.as_ref()
    }

    /// The bias, if given.
    pub(crate) fn bias_slice(&self) -> Option<&DeviceSlice<'a, B>> {
        self.bias.as_ref()
    }

    /// C, read when β ≠ 0.
    pub fn c(mut self, c: &'a impl AsDeviceSlice<O>) -> Self {
        self.c = Some(c.as_device_slice());
        self
    }

    /// A bias of N elements of any element type, added to every row before the activation
    /// (in f32, like the accumulators).
    pub fn bias<T: Float>(self, bias: &'a impl AsDeviceSlice<T>) -> Epilogue<'a, O, T> {
        Epilogue {
            c: self.c,
            bias: Some(bias.as_device_slice()),
        }
    }
}
