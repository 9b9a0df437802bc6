//! Vendor libraries as references, loaded at run time: cuBLAS's GEMM and cuBLASLt's FP8 matmul
//! (feature `cublas`) and cuDNN's convolution (feature `cudnn`), which the benchmarks, tests and
//! the `hikube-gpu bench` report put beside the crate's own kernels.

#[cfg(feature = "cublas")]
mod cublas;
#[cfg(feature = "cublas")]
mod cublaslt;
#[cfg(feature = "cudnn")]
mod cudnn;

#[cfg(feature = "cublas")]
pub use cublas::{cublas_gemm, cublas_gemm_compute, load_cublas};
#[cfg(feature = "cublas")]
pub use cublaslt::CublasLtFp8;
#[cfg(feature = "cudnn")]
pub use cudnn::CudnnConv;
