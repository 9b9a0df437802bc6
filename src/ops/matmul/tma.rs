//! TMA tensor maps (`cuTensorMapEncodeTiled`) for the Hopper GEMM, and the pieces the Hopper
//! convolution's maps share with it: the map type, the encoder's rules and the tiled encoder.
//! Built from a validated shape, checked against the hardware's rules, passed to the kernel by
//! value.

use crate::error::{Error, Result};
use crate::ops::Dtype;
use cudarc::driver::{sys, DeviceRepr};

/// A CUDA tensor map, as the kernel's `__grid_constant__` parameter.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub(crate) struct TmaDesc(pub(crate) sys::CUtensorMap);

// SAFETY: `CUtensorMap` is a plain 64-byte-aligned block of 128 bytes that the kernel reads as
// its own `TmaDesc` struct of the same size and alignment.
unsafe impl DeviceRepr for TmaDesc {}

impl TmaDesc {
    /// An all-zero map, passed where a kernel variant ignores the parameter.
    pub(crate) fn unused() -> Self {
        // SAFETY: `CUtensorMap` is plain data; all-zero is a valid value of it.
        TmaDesc(unsafe { std::mem::MaybeUninit::zeroed().assume_init() })
    }
}

pub(crate) fn tma_error(what: String) -> Error {
    Error::InvalidArgument {
        what: format!("TMA tensor map: {what}"),
    }
}

/// The tensor-map element type of f16 or bf16 data. The kernels' maps hold 16-bit elements
/// (boxes of 64 elements fill the 128-byte swizzle): `f32` is refused.
pub(crate) fn map_type(dtype: Dtype) -> Result<sys::CUtensorMapDataType> {
    match dtype {
        Dtype::Bf16 => Ok(sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16),
        Dtype::F16 => Ok(sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT16),
        Dtype::F32 => Err(tma_error(format!(
            "the kernels' maps hold 16-bit elements, not {dtype}"
        ))),
    }
}

/// The encoder's rules: a 16-byte-aligned base, strides (bytes) that are positive multiples of
/// 16 below 2^40, and dimensions in 1..2^32. Checked here so that a failure is a typed error.
pub(crate) fn check(ptr: u64, dims: &[u64], strides: &[u64]) -> Result<()> {
    if ptr % 16 != 0 {
        return Err(tma_error(format!(
            "base address {ptr:#x} is not 16-byte aligned"
        )));
    }
    if let Some(s) = strides
        .iter()
        .find(|s| **s % 16 != 0 || **s == 0 || **s >= 1 << 40)
    {
        return Err(tma_error(format!(
            "stride of {s} bytes is not a positive multiple of 16 below 2^40"
        )));
    }
    if let Some(d) = dims.iter().find(|d| **d == 0 || **d > u32::MAX as u64) {
        return Err(tma_error(format!("dimension {d} is outside 1..2^32")));
    }
    Ok(())
}

/// A rank-3 tiled map of f16/bf16 data (`dtype`): `dims` innermost first, `strides` in bytes of the outer
/// two dimensions, read in `boxes`, with the 128-byte swizzle the kernels' shared-memory
/// descriptors expect. Elements past the edges read as zero.
pub(crate) fn encode_tiled(
    ptr: u64,
    dtype: Dtype,
    dims: [u64; 3],
    strides: [u64; 2],
    boxes: [u32; 3],
) -> Result<TmaDesc> {
    check(ptr, &dims, &strides)?;
    let map_type = map_type(dtype)?;
    let element_strides = [1u32; 3];
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
    // SAFETY: every pointer argument addresses a local array of the rank (3) or rank - 1 (2)
    // entries the call reads; `map` is writable; the driver only encodes, it reads no memory at
    // `ptr` (validated above against the encoder's rules, so failures are reported, not UB).
    let r = unsafe {
        sys::cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            map_type,
            3,
            ptr as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            element_strides.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    if r != sys::CUresult::CUDA_SUCCESS {
        return Err(tma_error(format!("cuTensorMapEncodeTiled failed: {r:?}")));
    }
    // SAFETY: the driver wrote the map on success (and it was zeroed before).
    Ok(TmaDesc(unsafe { map.assume_init() }))
}

/// The tensor map of an operand stored as `rows` rows of `cols` contiguous elements, `ld` apart,
/// `batch` matrices `stride` apart, read in boxes of `box_rows` rows × 64 elements with the
/// 128-byte swizzle the kernel's shared-memory descriptors expect. Elements past the edges read
/// as zero. (A K-major operand has K as its columns; an MN-major one has M or N.)
#[allow(clippy::too_many_arguments)]
pub(crate) fn tiled(
    ptr: u64,
    dtype: Dtype,
    cols: usize,
    rows: usize,
    batch: usize,
    ld: usize,
    stride: usize,
    box_rows: u32,
) -> Result<TmaDesc> {
    // 16-bit elements (`encode_tiled` refuses other types).
    const ELEM: u64 = 2;
    let stride = if batch == 1 { rows * ld } else { stride };
    let dims = [cols as u64, rows as u64, batch as u64];
    let strides = [ld as u64 * ELEM, stride as u64 * ELEM];
    encode_tiled(ptr, dtype, dims, strides, [64, box_rows, 1])
}
