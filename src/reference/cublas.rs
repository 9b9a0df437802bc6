//! cuBLAS (feature `cublas`): the GEMM the benchmarks and the `hikube-gpu bench` report put
//! beside the crate's own.

use crate::error::{Error, Result};
use crate::memory::access::Access;
use crate::memory::{ensure_len, AsDeviceSlice, AsDeviceSliceMut};
use crate::ops::matmul::{ComputeType, Layout};
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
///
/// ```no_run
/// use hikube_gpu::ops::matmul::{Epilogue, Layout, Matmul, MatmulDesc};
/// use hikube_gpu::{half::f16, reference, Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let blas = reference::load_cublas(&stream).expect("cuBLAS");
/// let (m, n, k) = (256, 512, 128);
/// let a = DeviceBuffer::from_slice(&stream, &vec![f16::ONE; m * k])?;
/// let b = DeviceBuffer::from_slice(&stream, &vec![f16::ONE; n * k])?; // N × K: B column-major
/// let (mut ours, mut theirs) = (DeviceBuffer::alloc(&stream, m * n)?, DeviceBuffer::alloc(&stream, m * n)?);
/// let plan = Matmul::<f16, f16>::new(&stream, MatmulDesc::new(m, n, k).b_layout(Layout::ColMajor))?;
/// plan.launch(&stream, &a, &b, &mut ours, Epilogue::new())?;
/// reference::cublas_gemm(&blas, &stream, &a, &b, &mut theirs, (m, n, k), Layout::ColMajor)?;
/// assert_eq!(ours.to_vec(&stream)?, theirs.to_vec(&stream)?); // every element is K = 128
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn cublas_gemm<T: Float>(
    blas: &CudaBlas,
    stream: &Stream,
    a: &impl AsDeviceSlice<T>,
    b: &impl AsDeviceSlice<T>,
    d: &mut impl AsDeviceSliceMut<T>,
    shape: (usize, usize, usize),
    b_layout: Layout,
) -> Result<()> {
    cublas_gemm_compute(blas, stream, a, b, d, shape, b_layout, ComputeType::F32)
}

/// [`cublas_gemm`] with the accumulation chosen: `ComputeType::F16` is `CUBLAS_COMPUTE_16F`
/// (f16 inputs and output only; [`Error::InvalidArgument`] otherwise).
///
/// ```no_run
/// use hikube_gpu::ops::matmul::{ComputeType, Layout};
/// use hikube_gpu::{half::f16, reference, Device, DeviceBuffer, Error};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let blas = reference::load_cublas(&stream).expect("cuBLAS");
/// let (m, n, k) = (128, 128, 64);
/// let a = DeviceBuffer::from_slice(&stream, &vec![f16::ONE; m * k])?;
/// let b = DeviceBuffer::from_slice(&stream, &vec![f16::ONE; k * n])?; // K × N: row-major
/// let mut d = DeviceBuffer::<f16>::alloc(&stream, m * n)?;
/// let f16_acc = ComputeType::F16; // GeForce cards' double-rate tensor-core path
/// let (shape, row) = ((m, n, k), Layout::RowMajor);
/// reference::cublas_gemm_compute(&blas, &stream, &a, &b, &mut d, shape, row, f16_acc)?;
/// assert!(d.to_vec(&stream)?.iter().all(|&x| x.to_f32() == k as f32));
/// // Accumulating in f16 needs f16 in and out.
/// let a32 = DeviceBuffer::from_slice(&stream, &vec![1.0f32; m * k])?;
/// let b32 = DeviceBuffer::from_slice(&stream, &vec![1.0f32; k * n])?;
/// let mut d32 = DeviceBuffer::<f32>::alloc(&stream, m * n)?;
/// let refused =
///     reference::cublas_gemm_compute(&blas, &stream, &a32, &b32, &mut d32, shape, row, f16_acc);
/// assert!(matches!(refused, Err(Error::InvalidArgument { .. })));
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn cublas_gemm_compute<T: Float>(
    blas: &CudaBlas,
    stream: &Stream,
    a: &impl AsDeviceSlice<T>,
    b: &impl AsDeviceSlice<T>,
    d: &mut impl AsDeviceSliceMut<T>,
    (m, n, k): (usize, usize, usize),
    b_layout: Layout,
    compute: ComputeType,
) -> Result<()> {
    let f16_compute = match (compute, T::DTYPE) {
        (ComputeType::F32, _) => false,
        (ComputeType::F16, Dtype::F16) => true,
        (ComputeType::F16, Dtype::Bf16 | Dtype::F32) => {
            return Err(Error::InvalidArgument {
                what: format!("CUBLAS_COMPUTE_16F needs f16 operands, not {}", T::SUFFIX),
            })
        }
    };
    let (a, b, mut d) = (
        a.as_device_slice(),
        b.as_device_slice(),
        d.as_device_slice_mut(),
    );
    let too_large = |v: usize| v > i32::MAX as usize;
    if too_large(m) || too_large(n) || too_large(k) {
        return Err(Error::InvalidArgument {
            what: format!("cuBLAS takes 32-bit dimensions, got {m}x{n}x{k}"),
        });
    }
    // (Below 2^31 each, so the products fit.)
    ensure_len("A", m * k, a.len())?;
    ensure_len("B", k * n, b.len())?;
    ensure_len("D", m * n, d.len())?;
    let b_col_major = b_layout == Layout::ColMajor;
    let mut acc = Access::eager(stream, "a cuBLAS call")?;
    let a = acc.read(&a)?.addr();
    let b = acc.read(&b)?.addr();
    let d = acc.write(&mut d)?.addr();
    let (alpha, beta) = (1.0f32, 0.0f32);
    let (alpha16, beta16) = (half::f16::ONE, half::f16::ZERO);
    let (alpha, beta, compute_type) = if f16_compute {
        (
            &alpha16 as *const half::f16 as *const _,
            &beta16 as *const half::f16 as *const _,
            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_16F,
        )
    } else {
        (
            &alpha as *const f32 as *const _,
            &beta as *const f32 as *const _,
            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        )
    };
    // SAFETY: a, b and d hold at least M×K, K×N and M×N elements of T (checked above), which
    // the dimensions and leading dimensions given reach exactly; alpha and beta point at f32
    // for CUBLAS_COMPUTE_32F and at f16 for CUBLAS_COMPUTE_16F (as each reads them), alive
    // through the call; the handle runs on `stream`, which the access orders after earlier
    // work on the buffers (and notes the call when finished).
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
            alpha,
            b as *const _,
            cuda_type::<T>(),
            if b_col_major { k as i32 } else { n as i32 },
            a as *const _,
            cuda_type::<T>(),
            k as i32,
            beta,
            d as *mut _,
            cuda_type::<T>(),
            n as i32,
            compute_type,
            blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .map_err(|e| Error::InvalidArgument {
        what: format!("cuBLAS gemm_ex returned {e:?}"),
    })?;
    acc.finish()
}
