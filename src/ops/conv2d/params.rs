//! The convolution kernels' shape block, mirrored from `hk::ConvShape` in
//! kernels/conv/conv_shape.cuh. The kernels take it beside a `GemmParams` (the operands, the
//! implicit GEMM's M, N, K and the epilogue).

use cudarc::driver::DeviceRepr;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConvShape {
    pub n: i32,
    pub h: i32,
    pub w: i32,
    /// Channels as stored (rounded up to 8 on the padded path).
    pub c: i32,
    pub k: i32,
    pub r: i32,
    pub s: i32,
    pub p: i32,
    pub q: i32,
    pub stride_h: i32,
    pub stride_w: i32,
    pub pad_h: i32,
    pub pad_w: i32,
    pub dil_h: i32,
    pub dil_w: i32,
    pub groups: i32,
}

// SAFETY: a plain `#[repr(C)]` struct of sixteen i32, laid out exactly as the CUDA struct.
unsafe impl DeviceRepr for ConvShape {}

const _: () = assert!(std::mem::size_of::<ConvShape>() == 64);
