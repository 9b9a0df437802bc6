//! The epilogue every tensor-core op shares: `D = act(α·acc + β·C + bias)`, with α, β and
//! the activation in the op's description and C and the bias given at launch ([`Epilogue`]).
//! The kernels apply it with one implementation (`kernels/gemm/gemm_params.cuh`).

use crate::memory::{AsDeviceSlice, DeviceSlice};
use crate::ops::Float;

/// The activation applied after the bias, by every op with an epilogue.
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
/// element type) and a bias per output column (a matmul's N, a convolution's K channels; of
/// D's element type). α, β and the activation are the plan's (its description's).
///
/// ```no_run
/// use hikube_gpu::ops::matmul::{Activation, Epilogue, Matmul, MatmulDesc};
/// use hikube_gpu::{half::f16, Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.new_stream()?;
/// let (m, n, k) = (256, 512, 1024);
/// let a = DeviceBuffer::<f16>::zeroed(&stream, m * k)?;
/// let b = DeviceBuffer::<f16>::zeroed(&stream, k * n)?;
/// let c = DeviceBuffer::<f32>::zeroed(&stream, m * n)?;
/// let bias = DeviceBuffer::<f32>::zeroed(&stream, n)?;
/// let mut d = DeviceBuffer::<f32>::alloc(&stream, m * n)?;
/// // D = relu(A·B + 0.5·C + bias)
/// let desc = MatmulDesc::new(m, n, k).beta(0.5).activation(Activation::Relu);
/// let mm = Matmul::<f16, f32>::new(&stream, desc)?;
/// mm.launch(&stream, &a, &b, &mut d, Epilogue::new().c(&c).bias(&bias))?;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
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
    /// C, if given.
    pub(crate) fn c_slice(&self) -> Option<&DeviceSlice<'a, O>> {
        self.c.as_ref()
    }

    /// The bias, if given.
    pub(crate) fn bias_slice(&self) -> Option<&DeviceSlice<'a, O>> {
        self.bias.as_ref()
    }

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
