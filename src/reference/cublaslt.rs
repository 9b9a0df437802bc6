//! cuBLASLt's FP8 matmul (feature `cublas`): what `torch._scaled_mm` runs, in the same process
//! as the crate's `ScaledMatmul` for the benchmarks.

use crate::error::{Error, Result};
use crate::fp8::Fp8;
use crate::memory::access::Access;
use crate::memory::{ensure_len, AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer};
use crate::stream::Stream;
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublaslt::{result as lt, sys};
use std::ffi::c_void;

/// The workspace cuBLASLt may use (what it asks for on Hopper).
const WORKSPACE_BYTES: usize = 32 << 20;

/// A cuBLASLt handle and its workspace, for FP8 products as `torch._scaled_mm` asks for them;
/// the descriptors and the algorithm of the last product are kept, so that timing a repeated
/// product times cuBLASLt's kernel, not its setup.
///
/// ```no_run
/// use hikube_gpu::fp8::{Fp8, F8E4M3};
/// use hikube_gpu::half::f16;
/// use hikube_gpu::ops::matmul::scale_on_device;
/// use hikube_gpu::reference::CublasLtFp8;
/// use hikube_gpu::{Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.new_stream()?;
/// let (m, n, k) = (256, 512, 1024);
/// let one = F8E4M3::saturating_from_f32(1.0);
/// let a = DeviceBuffer::from_slice(&stream, &vec![one; m * k])?; // row-major M×K
/// let b = DeviceBuffer::from_slice(&stream, &vec![one; n * k])?; // column-major: N×K stored
/// let mut d = DeviceBuffer::<f16>::alloc(&stream, m * n)?;
/// let (sa, sb) = (scale_on_device(&stream, 0.5)?, scale_on_device(&stream, 2.0)?);
/// let mut lt = CublasLtFp8::new(&stream).expect("cuBLASLt");
/// lt.gemm(&stream, &a, &b, &mut d, (m, n, k), (&sa, &sb), false)?; // torch._scaled_mm's
/// assert!(d.to_vec(&stream)?.iter().all(|&x| x.to_f32() == k as f32));
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct CublasLtFp8 {
    handle: sys::cublasLtHandle_t,
    workspace: DeviceBuffer<u8>,
    prepared: Option<Prepared>,
}

/// What a product's call needs besides its pointers, and what it was made for.
struct Prepared {
    key: Key,
    a: Owned<sys::cublasLtMatrixLayout_t>,
    b: Owned<sys::cublasLtMatrixLayout_t>,
    d: Owned<sys::cublasLtMatrixLayout_t>,
    desc: Owned<sys::cublasLtMatmulDesc_t>,
    algo: sys::cublasLtMatmulAlgo_t,
}

/// (M, N, K, FP8 type, fast accumulation, the scales' addresses, the alignments of A, B, D).
type Key = (usize, usize, usize, i32, bool, u64, u64, [u32; 3]);

// SAFETY: cuBLASLt handles may be used from any thread, one call at a time: every call takes
// `&mut self` (and the type is not `Sync`), binds the stream's context first, and passes the
// stream it runs on.
unsafe impl Send for CublasLtFp8 {}

impl Drop for CublasLtFp8 {
    fn drop(&mut self) {
        // SAFETY: the handle was created by `new` and is destroyed once, here.
        let _ = unsafe { lt::destroy_handle(self.handle) };
    }
}

/// A cuBLASLt object destroyed when it goes out of scope.
struct Owned<T: Copy>(
    T,
    unsafe fn(T) -> std::result::Result<(), cudarc::cublaslt::result::CublasError>,
);

impl<T: Copy> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: `self.0` was created by the matching create call and is destroyed once.
        let _ = unsafe { (self.1)(self.0) };
    }
}

fn ptr<V>(v: &V) -> *const c_void {
    (v as *const V).cast()
}

/// Sets a matmul descriptor attribute to `value`: `V` must be the type cuBLASLt documents for
/// `attr` (an i32 operation, a device pointer as u64, an i8 flag).
fn set_attr<V>(
    desc: sys::cublasLtMatmulDesc_t,
    attr: sys::cublasLtMatmulDescAttributes_t,
    value: &V,
) -> Result<()> {
    // SAFETY: `value` is a live `V` of `size_of::<V>()` bytes, which cuBLASLt copies; the
    // callers pass the type the attribute takes.
    unsafe { lt::set_matmul_desc_attribute(desc, attr, ptr(value), std::mem::size_of::<V>()) }
        .map_err(|e| lt_error("matmul desc attribute", e))
}

/// Sets a matmul preference attribute to `value`, of the type cuBLASLt documents for `attr` (a
/// u64 workspace bound, a u32 alignment).
fn set_pref<V>(
    pref: sys::cublasLtMatmulPreference_t,
    attr: sys::cublasLtMatmulPreferenceAttributes_t,
    value: &V,
) -> Result<()> {
    // SAFETY: `value` is a live `V` of `size_of::<V>()` bytes, which cuBLASLt copies; the
    // callers pass the type the attribute takes.
    unsafe { lt::set_matmul_pref_attribute(pref, attr, ptr(value), std::mem::size_of::<V>()) }
        .map_err(|e| lt_error("preference attribute", e))
}

fn lt_error(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::InvalidArgument {
        what: format!("cuBLASLt {what}: {e:?}"),
    }
}

impl CublasLtFp8 {
    /// A handle and its workspace on `stream`'s device, or why there is none (the library is
    /// loaded at run time).
    pub fn new(stream: &Stream) -> std::result::Result<Self, String> {
        // SAFETY: this only tries to open the library by its names; nothing is called in it.
        if !unsafe { sys::is_culib_present() } {
            return Err("libcublasLt could not be loaded".into());
        }
        let workspace = DeviceBuffer::<u8>::zeroed(stream, WORKSPACE_BYTES)
            .map_err(|e| format!("cuBLASLt workspace: {e}"))?;
        stream
            .raw
            .context()
            .bind_to_thread()
            .map_err(|e| format!("binding the context: {e}"))?;
        let handle = lt::create_handle().map_err(|e| format!("cublasLtCreate failed: {e:?}"))?;
        Ok(CublasLtFp8 {
            handle,
            workspace,
            prepared: None,
        })
    }

    /// Row-major D (M×N, f16) = scale_a·scale_b·(A·B), A row-major (M×K) and B column-major
    /// (stored N×K) in FP8 — `torch._scaled_mm(a, b, scale_a, scale_b, out_dtype=float16,
    /// use_fast_accum=fast_accum)` — with the algorithm cuBLASLt's heuristic ranks first.
    /// Checks the buffer sizes first.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm<T: Fp8>(
        &mut self,
        stream: &Stream,
        a: &impl AsDeviceSlice<T>,
        b: &impl AsDeviceSlice<T>,
        d: &mut impl AsDeviceSliceMut<half::f16>,
        (m, n, k): (usize, usize, usize),
        (scale_a, scale_b): (&DeviceBuffer<f32>, &DeviceBuffer<f32>),
        fast_accum: bool,
    ) -> Result<()> {
        let (a, b, mut d) = (
            a.as_device_slice(),
            b.as_device_slice(),
            d.as_device_slice_mut(),
        );
        if [m, n, k].iter().any(|&v| v > i32::MAX as usize) || k % 16 != 0 {
            return Err(lt_error("FP8 dimensions (K a multiple of 16)", (m, n, k)));
        }
        // (Below 2^31 each, so the products fit.)
        ensure_len("A", m * k, a.len())?;
        ensure_len("B", n * k, b.len())?;
        ensure_len("D", m * n, d.len())?;
        ensure_len("scale_a", 1, scale_a.len())?;
        ensure_len("scale_b", 1, scale_b.len())?;
        let fp8 = match T::FORMAT {
            crate::fp8::Fp8Format::E4M3 => sys::cudaDataType::CUDA_R_8F_E4M3,
            crate::fp8::Fp8Format::E5M2 => sys::cudaDataType::CUDA_R_8F_E5M2,
        };
        stream.raw.context().bind_to_thread()?;
        let mut acc = Access::eager(stream, "a cuBLASLt call")?;
        let (pa, pb) = (acc.read(&a)?.addr(), acc.read(&b)?.addr());
        let pd = acc.write(&mut d)?.addr();
        let (sa, sb) = (
            acc.read(&scale_a.as_device_slice())?.addr(),
            acc.read(&scale_b.as_device_slice())?.addr(),
        );
        let ws = acc.write(&mut self.workspace.as_device_slice_mut())?.addr();
        // cuBLASLt picks kernels for the pointers' alignment, which it is told (else it assumes
        // 256 bytes).
        let align = |p: u64| 1u32 << p.trailing_zeros().min(8);
        let key = (
            m,
            n,
            k,
            fp8 as i32,
            fast_accum,
            sa,
            sb,
            [align(pa), align(pb), align(pd)],
        );
        let prep = match self.prepared.take() {
            Some(p) if p.key == key => self.prepared.insert(p),
            _ => self.prepared.insert(prepare(self.handle, key, fp8)?),
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: A, B and D hold M×K, N×K and M×N elements (checked above), which the layouts
        // reach exactly, at the alignments the algorithm was chosen for (the key); the scales
        // the descriptor points at are one f32 each on the device, read through this access;
        // alpha and beta are f32 (the scale type) alive through the call; the workspace holds
        // WORKSPACE_BYTES, the preference's maximum; the call runs on `stream`, in its
        // context, which the access orders after earlier work on every buffer (and notes the
        // call when finished).
        unsafe {
            lt::matmul(
                self.handle,
                prep.desc.0,
                ptr(&alpha),
                ptr(&beta),
                pb as *const c_void,
                prep.a.0,
                pa as *const c_void,
                prep.b.0,
                pd as *const c_void,
                prep.d.0,
                pd as *mut c_void,
                prep.d.0,
                &prep.algo,
                ws as *mut c_void,
                WORKSPACE_BYTES,
                stream.cu() as sys::cudaStream_t,
            )
        }
        .map_err(|e| lt_error("matmul", e))?;
        acc.finish()
    }
}

/// The layouts, descriptor and heuristic's algorithm for `key` (see [`Key`]) on `handle`.
fn prepare(handle: sys::cublasLtHandle_t, key: Key, fp8: sys::cudaDataType) -> Result<Prepared> {
    let (m, n, k, _, fast_accum, sa, sb, aligns) = key;
    // Column-major cuBLASLt computes Dᵀ (N×M, ld N) = Bᵀ·Aᵀ: its "A" is our B, stored K×N
    // with ld K and taken transposed; its "B" is our A, stored K×M with ld K ("TN", the
    // layout FP8 requires).
    let layout = |t, rows: usize, cols: usize, ld: usize| {
        lt::create_matrix_layout(t, rows as u64, cols as u64, ld as i64)
            .map(|l| Owned(l, lt::destroy_matrix_layout))
            .map_err(|e| lt_error("matrix layout", e))
    };
    let (a, b) = (layout(fp8, k, n, k)?, layout(fp8, k, m, k)?);
    let d = layout(sys::cudaDataType::CUDA_R_16F, n, m, n)?;
    let desc = lt::create_matmul_desc(
        sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        sys::cudaDataType::CUDA_R_32F,
    )
    .map(|dsc| Owned(dsc, lt::destroy_matmul_desc))
    .map_err(|e| lt_error("matmul desc", e))?;
    type Attr = sys::cublasLtMatmulDescAttributes_t;
    set_attr(
        desc.0,
        Attr::CUBLASLT_MATMUL_DESC_TRANSA,
        &(cublasOperation_t::CUBLAS_OP_T as i32),
    )?;
    set_attr(
        desc.0,
        Attr::CUBLASLT_MATMUL_DESC_TRANSB,
        &(cublasOperation_t::CUBLAS_OP_N as i32),
    )?;
    set_attr(desc.0, Attr::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sb)?;
    set_attr(desc.0, Attr::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sa)?;
    set_attr(
        desc.0,
        Attr::CUBLASLT_MATMUL_DESC_FAST_ACCUM,
        &i8::from(fast_accum),
    )?;
    let pref = lt::create_matmul_pref()
        .map(|p| Owned(p, lt::destroy_matmul_pref))
        .map_err(|e| lt_error("preference", e))?;
    type Pref = sys::cublasLtMatmulPreferenceAttributes_t;
    let bytes = WORKSPACE_BYTES as u64;
    // cuBLASLt's "A" is our B, its "B" our A; C is D.
    let [align_a, align_b, align_d] = aligns;
    set_pref(
        pref.0,
        Pref::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
        &bytes,
    )?;
    for (attr, align) in [
        (Pref::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_b),
        (Pref::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_a),
        (Pref::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_d),
        (Pref::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_d),
    ] {
        set_pref(pref.0, attr, &align)?;
    }
    // SAFETY: every handle was created above (or by `CublasLtFp8::new`) and is alive.
    let heuristic =
        unsafe { lt::get_matmul_algo_heuristic(handle, desc.0, a.0, b.0, d.0, d.0, pref.0) }
            .map_err(|e| lt_error("heuristic (no FP8 algorithm for this GPU or type?)", e))?;
    Ok(Prepared {
        key,
        a,
        b,
        d,
        desc,
        algo: heuristic.algo,
    })
}
