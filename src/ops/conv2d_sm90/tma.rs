//! TMA tensor maps for the Hopper convolution: the input as an im2col map (NHWC, pixel boxes
//! whose corners follow padding and dilation, traversed with the convolution stride) and the
//! filter as a tiled `[K][R·S][C]` map. Both use the 128-byte swizzle the kernel's wgmma
//! descriptors expect and zero-fill outside the tensor.

use crate::error::Result;
use crate::ops::matmul::tma::{check, encode_tiled, map_type, tma_error, TmaDesc};
use crate::ops::Dtype;
use cudarc::driver::sys;

/// The filter (`K` rows of `R·S·C`, KRSC) as a `[K][rs][C]` tensor read in boxes of 64 channels ×
/// one filter tap × `box_k` output channels: channels past C read as zero.
pub(crate) fn filter(
    ptr: u64,
    dtype: Dtype,
    k: usize,
    rs: usize,
    c: usize,
    box_k: u32,
) -> Result<TmaDesc> {
    let dims = [c as u64, rs as u64, k as u64];
    let strides = [c as u64 * 2, (rs * c) as u64 * 2];
    encode_tiled(ptr, dtype, dims, strides, [64, 1, box_k])
}

/// The input (NHWC) as an im2col map: boxes of `pixels` output pixels (in N·P·Q order) × 64
/// channels. Bounding box corners: `-pad` below, `pad - (taps - 1)·dilation` above (W, H order),
/// traversal stride = convolution stride.
#[allow(clippy::too_many_arguments)]
pub(crate) fn im2col(
    ptr: u64,
    dtype: Dtype,
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
    let map_type = map_type(dtype)?;
    let element_strides = [1u32, stride[0], stride[1], 1];
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
    // SAFETY: every pointer argument addresses a local array of the rank (4), rank - 1 or
    // rank - 2 entries the call reads; `map` is writable; the driver only encodes (reads no
    // memory at `ptr`, validated above).
    let r = unsafe {
        sys::cuTensorMapEncodeIm2col(
            map.as_mut_ptr(),
            map_type,
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
