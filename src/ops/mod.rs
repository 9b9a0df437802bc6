//! GPU operations: shape checks, kernel choice and launch.

pub mod conv2d;
#[doc(hidden)]
pub mod conv2d_sm90;
mod elementwise;
pub mod matmul;
mod pooling;
pub mod train;

pub use elementwise::{axpy, axpy_with};
pub use pooling::global_avg_pool;

use crate::arch::PtxArch;
use bytemuck::Pod;
use half::{bf16, f16};

/// Options common to every operation.
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

/// The floating-point storage types the kernels support: `f32`, `f16` and `bf16`. Kernels
/// compute in `f32` whatever the storage type.
pub trait Float: Pod + sealed::Sealed {
    /// Suffix of the kernels for this type (`f32`, `f16`, `bf16`).
    const SUFFIX: &'static str;
    /// Converts to `f32`.
    fn to_f32(self) -> f32;
    /// Converts from `f32`, rounding to nearest even.
    fn from_f32(x: f32) -> Self;
}

impl Float for f32 {
    const SUFFIX: &'static str = "f32";
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl Float for f16 {
    const SUFFIX: &'static str = "f16";
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
}

impl Float for bf16 {
    const SUFFIX: &'static str = "bf16";
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
}
