//! TMA tensor maps for the Hopper convolution: the input as an im2col map (NHWC, pixel boxes
//! whose corners follow padding and dilation, traversed with the convolution stride) and the
//! filter as a tiled `[K][R·S][C]` map. Both use the 128-byte swizzle the kernel's wgmma
//! descriptors expect and zero-fill outside the tensor.

use crate::error::{Error, Result};
use cudarc::driver::{sys, DeviceRepr};

/// A CUDA tensor map, as the kernel's `__grid_constant__` parameter (`hk::sm90::TmaDesc`).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub(crate) struct TmaDesc(sys::CUtensorMap);

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

fn tma_error(what: String) -> Error {
    Error::InvalidArgument {
        what: format!("conv2d_sm90 TMA tensor map: {what}"),
    }
}

fn dtype(bf16: bool) -> sys::CUtensorMapDataType {
    if bf16 {
        sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
    } else {
        sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT16
    }
}

fn check(ptr: u64, dims: &[u64], strides: &[u64]) -> Result<()> {
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

/// The filter (`K` rows of `R·S·C`, KRSC) as a `[K][rs][C]` tensor read in boxes of 64 channels ×
/// one filter tap × `box_k` output channels: channels past C read as zero.
pub(crate) fn filter(
    ptr: u64,
    bf16: bool,
    k: usize,
    rs: usize,
    c: usize,
    box_k: u32,
) -> Result<TmaDesc> {
    let dims = [c as u64, rs as u64, k as u64];
    let strides = [c as u64 * 2, (rs * c) as u64 * 2];
    check(ptr, &dims, &strides)?;
    let boxes = [64u32, 1, box_k];
    let element_strides = [1u32; 3];
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
    // SAFETY: every pointer argument addresses a local array of the rank (3) or rank - 1 entries
    // the call reads; `map` is writable; the driver only encodes (reads no memory at `ptr`).
    let r = unsafe {
        sys::cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            dtype(bf16),
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

/// The input (NHWC) as an im2col map: boxes of `pixels` output pixels (in N·P·Q order) × 64
/// channels. Bounding box corners: `-pad` below, `pad - (taps - 1)·dilation` above (W, H order),
/// traversal stride = convolution stride.
#[allow(clippy::too_many_arguments)]
pub(crate) fn im2col(
    ptr: u64,
    bf16: bool,
    nhwc: [usize; 4],
    lower: [i32; 2],
    upper: [i32; 2],
    stride: [u32; 2],
    pixels: u32,
) -> Result<TmaDesc> {
    let [n, h, w, c] = nhwc;
    let dims = [c as u64, w as u64, h as u64, n as u64];
    let strides = [c as u64 * 2, (w * c) as u64 * 2, (h * w * c) as u64 * 2];
    check(ptr, &dims, &strides)?;
    let element_strides = [1u32, stride[0], stride[1], 1];
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
    // SAFETY: as in `filter`: local arrays of rank (4), rank - 1 and rank - 2 entries; the
    // driver only encodes.
    let r = unsafe {
        sys::cuTensorMapEncodeIm2col(
            map.as_mut_ptr(),
            dtype(bf16),
            4,
            ptr as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            lower.as_ptr(),
            upper.as_ptr(),
            64,
            pixels,
            element_strides.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    if r != sys::CUresult::CUDA_SUCCESS {
        return Err(tma_error(format!("cuTensorMapEncodeIm2col failed: {r:?}")));
    }
    // SAFETY: the driver wrote the map on success (and it was zeroed before).
    Ok(TmaDesc(unsafe { map.assume_init() }))
}
