//! cuBLAS (feature `cublas`): the GEMM the benchmarks and the `hikube-gpu bench` report put
//! beside the crate's own.

use crate::error::{Error, Result};
use crate::memory::access::Access;
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut};
use crate::ops::matmul::Layout;
use crate::ops::{Dtype, Float};
use crate::stream::Stream;
use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};

/// A cuBLAS handle on `stream`, or why there is none (the library is loaded at run time).
pub fn load_cublas(stream: &Stream) -> std::result::Result<CudaBlas, String> {
    // SAFETY: this only tries to open the library by its names; nothing is called in it.
    if !unsafe { blas_sys::is_culib_present() } {
        return Err(
            "libcublas could not be loaded (install cuBLAS, e.g. the CUDA toolkit or \
                    the nvidia-cublas wheel, and put it on LD_LIBRARY_PATH)"
                .into(),
        );
    }
    CudaBlas::new(stream.raw.clone()).map_err(|e| format!("cublasCreate failed: {e}"))
}

fn cuda_type<T: Float>() -> blas_sys::cudaDataType {
    match T::DTYPE {
        Dtype::Bf16 => blas_sys::cudaDataType::CUDA_R_16BF,
        Dtype::F16 => blas_sys::cudaDataType::CUDA_R_16F,
        Dtype::F32 => blas_sys::cudaDataType::CUDA_R_32F,
    }
}

/// Row-major D (M×N) = A (M×K, row-major) · B with FP32 accumulation through cuBLAS
/// (`cublasGemmEx`, `CUBLAS_COMPUTE_32F`, default algorithm), packed operands. B is row-major
/// (K×N) or column-major (stored N×K, as nn.Linear's weight). Column-major cuBLAS computes
/// Dᵀ = Bᵀ·Aᵀ. Checks the buffer sizes first.
pub fn cublas_gemm<T: Float>(
    blas: &CudaBlas,
    stream: &Stream,
    a: &impl AsDeviceSlice<T>,
    b: &impl AsDeviceSlice<T>,
    d: &mut impl AsDeviceSliceMut<T>,
    (m, n, k): (usize, usize, usize),
    b_layout: Layout,
) -> Result<()> {
    let (a, b, mut d) = (
        a.as_device_slice(),
        b.as_device_slice(),
        d.as_device_slice_mut(),
    );
    for (what, len, need) in [
        ("A", a.len(), m * k),
        ("B", b.len(), k * n),
        ("D", d.len(), m * n),
    ] {
        if len < need {
            return Err(Error::BufferTooSmall {
                operand: what,
                required: need,
                actual: len,
            });
        }
    }
    let too_large = |v: usize| v > i32::MAX as usize;
    if too_large(m) || too_large(n) || too_large(k) {
        return Err(Error::InvalidArgument {
            what: format!("cuBLAS takes 32-bit dimensions, got {m}x{n}x{k}"),
        });
    }
    let b_col_major = b_layout == Layout::ColMajor;
    let mut acc = Access::eager(stream, "a cuBLAS call")?;
    let a = acc.read(&a)?.addr();
    let b = acc.read(&b)?.addr();
    let d = acc.write(&mut d)?.addr();
    let (alpha, beta) = (1.0f32, 0.0f32);
    // SAFETY: a, b and d hold at least M×K, K×N and M×N elements of T (checked above), which
    // the dimensions and leading dimensions given reach exactly; alpha and beta are f32, as
    // CUBLAS_COMPUTE_32F reads them; the handle runs on `stream`, which the access orders after
    // earlier work on the buffers (and notes the call when finished).
    unsafe {
        blas::gemm_ex(
            *blas.handle(),
            // A column-major B (stored N×K) enters as op T with leading dimension K.
            if b_col_major {
                blas_sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas_sys::cublasOperation_t::CUBLAS_OP_N
            },
            blas_sys::cublasOperation_t::CUBLAS_OP_N,
            n as i32,
            m as i32,
            k as i32,
            &alpha as *const f32 as *const _,
            b as *const _,
            cuda_type::<T>(),
            if b_col_major { k as i32 } else { n as i32 },
            a as *const _,
            cuda_type::<T>(),
            k as i32,
            &beta as *const f32 as *const _,
            d as *mut _,
            cuda_type::<T>(),
            n as i32,
            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .map_err(|e| Error::InvalidArgument {
        what: format!("cuBLAS gemm_ex returned {e:?}"),
    })?;
    acc.finish()
}
