//! The kernels' parameter block, mirrored from `hk::GemmParams` in kernels/gemm/gemm_params.cuh.

use crate::ops::Dtype;
use cudarc::driver::DeviceRepr;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GemmParams {
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub bias: u64,
    pub d: u64,
    pub workspace: u64,
    pub lda: i64,
    pub ldb: i64,
    pub ldc: i64,
    pub ldd: i64,
    pub stride_a: i64,
    pub stride_b: i64,
    pub stride_c: i64,
    pub stride_d: i64,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub batch: i32,
    pub splits: i32,
    pub k_per_split: i32,
    pub activation: i32,
    pub out_dtype: i32,
    pub pair_ok: i32,
    /// 1: rows of D, C and the bias allow 16-byte access at columns that are multiples of 8
    /// (the persistent Hopper kernel's epilogue8; the conv kernels' eight-channel stores).
    pub reserved: i32,
    pub alpha: f32,
    pub beta: f32,
}

/// The kernels' `out_dtype` code of an output type (`hk::OutDtype` in gemm_params.cuh).
pub(crate) const fn out_dtype(dtype: Dtype) -> i32 {
    match dtype {
        Dtype::F32 => 0,
        Dtype::F16 => 1,
        Dtype::Bf16 => 2,
    }
}

// SAFETY: a plain `#[repr(C)]` struct of integers and floats whose layout matches the CUDA
// struct field for field (8-byte fields first, then 4-byte ones: no padding differences).
unsafe impl DeviceRepr for GemmParams {}

const _: () = assert!(std::mem::size_of::<GemmParams>() == 160);
