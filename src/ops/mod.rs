//! GPU operations: shape checks, kernel choice and launch.

/// Builder setters of the descriptions: `name: Type => field;` (or `=> field = Some;` for an
/// optional field), each with its doc comment.
macro_rules! setter {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => $field:ident $(= $wrap:ident)?;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.$field = setter!(@wrap value $($wrap)?);
                self
            }
        )*
    };
    (@wrap $v:ident Some) => { Some($v) };
    (@wrap $v:ident) => { $v };
}

pub mod conv2d;
#[doc(hidden)]
mod elementwise;
mod epilogue;
pub(crate) mod gemm;
pub mod matmul;
mod pooling;
pub mod train;

pub use elementwise::{axpy, axpy_with};
pub use epilogue::{Activation, Epilogue};
pub use pooling::global_avg_pool;

use crate::catalog::PtxArch;
use bytemuck::Pod;
use half::{bf16, f16};

/// Options common to every operation.
///
/// ```no_run
/// use hikube_gpu::{ops, Device, DeviceBuffer, KernelOptions, PtxArch};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let x = DeviceBuffer::from_slice(&stream, &[1.0f32; 64])?;
/// let mut y = DeviceBuffer::<f32>::zeroed(&stream, 64)?;
/// // Run the compute_80 build of the kernel (what an RTX card runs), even on a Hopper GPU.
/// let options = KernelOptions { arch: Some(PtxArch::Compute80) };
/// ops::axpy_with(&stream, 1.0, &x, &mut y, options)?;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOptions {
    /// Force this PTX target instead of the best one for the device: lets the older paths run,
    /// through the driver's JIT, on a newer GPU (e.g. the V100 path on an H100). The device must
    /// be able to run it, else [`Error::UnsupportedArch`](crate::Error::UnsupportedArch).
    pub arch: Option<PtxArch>,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// The element types of the crate's kernels, one per [`Float`] type. The crate matches on it
/// exhaustively wherever a kernel, a kernel parameter or a vendor type depends on the element
/// type, so a new type is a compile error at each of those places, never a silent fallback.
///
/// ```
/// use hikube_gpu::{half::bf16, Dtype, Float};
/// assert_eq!(bf16::DTYPE, Dtype::Bf16);
/// assert_eq!(Dtype::Bf16.suffix(), "bf16");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dtype {
    /// `f32`.
    F32,
    /// `f16` (IEEE half precision).
    F16,
    /// `bf16` (bfloat16).
    Bf16,
}

impl Dtype {
    /// The suffix of the kernels for this type: `f32`, `f16`, `bf16`.
    pub const fn suffix(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
        }
    }

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.suffix())
    }
}

/// The floating-point storage types the kernels support: `f32`, `f16` and `bf16`. Kernels
/// compute in `f32` whatever the storage type.
///
/// ```
/// use hikube_gpu::{half::bf16, Dtype, Float};
/// fn describe<T: Float>(x: f32) -> String {
///     format!("{} holds {x} as {}", T::DTYPE, T::from_f32(x).to_f32())
/// }
/// assert_eq!(describe::<bf16>(1.01), "bf16 holds 1.01 as 1.0078125");
/// assert_eq!(bf16::DTYPE, Dtype::Bf16);
/// ```
pub trait Float: Pod + Send + Sync + sealed::Sealed {
    /// The element type, for exhaustive matches.
    const DTYPE: Dtype;
    /// Suffix of the kernels for this type (`f32`, `f16`, `bf16`): `DTYPE.suffix()`.
    const SUFFIX: &'static str = Self::DTYPE.suffix();
    /// Converts to `f32`.
    fn to_f32(self) -> f32;
    /// Converts from `f32`, rounding to nearest even.
    fn from_f32(x: f32) -> Self;
}

impl Float for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl Float for f16 {
    const DTYPE: Dtype = Dtype::F16;
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
}

impl Float for bf16 {
    const DTYPE: Dtype = Dtype::Bf16;
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_agrees_with_the_rust_type() {
        fn check<T: Float>(dtype: Dtype, suffix: &str) {
            assert_eq!(T::DTYPE, dtype);
            assert_eq!(T::SUFFIX, suffix);
            assert_eq!(T::DTYPE.size(), std::mem::size_of::<T>());
        }
        check::<f32>(Dtype::F32, "f32");
        check::<f16>(Dtype::F16, "f16");
        check::<bf16>(Dtype::Bf16, "bf16");
    }
}
