//! TMA tensor maps (`cuTensorMapEncodeTiled`, `cuTensorMapEncodeIm2col`: FFI to the driver's
//! encoder) for the Hopper GEMM and convolution. Built from a validated shape, checked against
//! the hardware's rules, passed to the kernel by value. Each [`TmaMap`] remembers the address
//! it was encoded for and how many elements from there it spans, so that the kernel argument
//! constructors can check it against the operand it describes (TMA reads nothing outside its
//! map: it clips and zero-fills at the edges).

use crate::error::{Error, Result};
use crate::memory::access::Operand;
use crate::ops::Dtype;
use cudarc::driver::sys;

/// A CUDA tensor map, as the kernel's `__grid_constant__` parameter (a plain 64-byte-aligned
/// block of 128 bytes that the kernel reads as its own `TmaDesc` struct of the same size and
/// alignment).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub(crate) struct TmaDesc(sys::CUtensorMap);

/// A tensor map with the address it was encoded for and the elements it spans from there.
#[derive(Clone, Copy)]
pub(crate) struct TmaMap {
    desc: TmaDesc,
    base: u64,
    reach: usize,
}

impl TmaMap {
    /// An all-zero map, passed where a kernel variant ignores the parameter; it spans nothing.
    pub(crate) fn unused() -> Self {
        TmaMap {
            // SAFETY: `CUtensorMap` is plain data; all-zero is a valid value of it.
            desc: TmaDesc(unsafe { std::mem::MaybeUninit::zeroed().assume_init() }),
            base: 0,
            reach: 0,
        }
    }

    /// The map, for the kernel's parameter.
    pub(crate) fn desc(&self) -> TmaDesc {
        self.desc
    }

    /// [`Error::BufferTooSmall`] (or [`Error::InvalidArgument`] for another address) unless the
    /// map describes memory inside `op`: TMA then reads nothing outside it.
    pub(crate) fn check_within<T>(&self, operand: &'static str, op: &Operand<T>) -> Result<()> {
        if self.reach > 0 && self.base != op.addr() {
            return Err(tma_error(format!(
                "the map of {operand} was encoded for {:#x}, the operand is at {:#x}",
                self.base,
                op.addr()
            )));
        }
        crate::memory::ensure_len(operand, self.reach, op.len())
    }
}

/// Elements a map of `dims` (innermost first, each ≥ 1) with the outer dimensions `strides`
/// bytes apart spans from its base, in elements of `elem` bytes: the furthest one plus one.
fn reach(dims: &[u64], strides: &[u64], elem: u64) -> Result<usize> {
    let overflow = || tma_error(format!("dims {dims:?} with strides {strides:?} overflow"));
    let mut last = dims.first().map_or(0, |d| d.saturating_sub(1));
    for (d, s) in dims.iter().skip(1).zip(strides) {
        let step = d
            .saturating_sub(1)
            .checked_mul(s / elem)
            .ok_or_else(overflow)?;
        last = last.checked_add(step).ok_or_else(overflow)?;
    }
    let reach = last.checked_add(1).ok_or_else(overflow)?;
    usize::try_from(reach).map_err(|_| overflow())
}

pub(crate) fn tma_error(what: String) -> Error {
    Error::InvalidArgument {
        what: format!("TMA tensor map: {what}"),
    }
}

/// The tensor-map element type of f16 or bf16 data. The kernels' maps hold 16-bit elements
/// (boxes of 64 elements fill the 128-byte swizzle): `f32` is refused.
fn map_type(dtype: Dtype) -> Result<sys::CUtensorMapDataType> {
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
fn check(ptr: u64, dims: &[u64], strides: &[u64]) -> Result<()> {
    if !ptr.is_multiple_of(16) {
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

/// The element type of a map and its size in bytes.
#[derive(Clone, Copy)]
pub(crate) struct MapElem {
    map_type: sys::CUtensorMapDataType,
    bytes: u64,
}

impl MapElem {
    /// f16 or bf16 elements (`f32` is refused).
    fn half(dtype: Dtype) -> Result<MapElem> {
        Ok(MapElem {
            map_type: map_type(dtype)?,
            bytes: 2,
        })
    }

    /// FP8 elements (either encoding: TMA copies bytes).
    pub(crate) const FP8: MapElem = MapElem {
        map_type: sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_UINT8,
        bytes: 1,
    };
}

/// A rank-3 tiled map of `elem` data: `dims` innermost first, `strides` in bytes of the outer
/// two dimensions, read in `boxes`, with the 128-byte swizzle the kernels' shared-memory
/// descriptors expect. Elements past the edges read as zero.
fn encode_tiled(
    ptr: u64,
    elem: MapElem,
    dims: [u64; 3],
    strides: [u64; 2],
    boxes: [u32; 3],
) -> Result<TmaMap> {
    check(ptr, &dims, &strides)?;
    let reach = reach(&dims, &strides, elem.bytes)?;
    let map_type = elem.map_type;
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
    Ok(TmaMap {
        // SAFETY: the driver wrote the map on success (and it was zeroed before).
        desc: TmaDesc(unsafe { map.assume_init() }),
        base: ptr,
        reach,
    })
}

/// The tensor map of an f16/bf16 operand stored as `rows` rows of `cols` contiguous elements,
/// `ld` apart, `batch` matrices `stride` apart, read in boxes of `box_rows` rows × 64 elements
/// with the 128-byte swizzle the kernel's shared-memory descriptors expect. Elements past the
/// edges read as zero. (A K-major operand has K as its columns; an MN-major one has M or N.)
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
) -> Result<TmaMap> {
    let elem = MapElem::half(dtype)?;
    tiled_of(ptr, elem, [cols, rows, batch], ld, stride, box_rows)
}

/// [`tiled`] for `elem` data (`[cols, rows, batch]`): boxes of `box_rows` rows × 128 bytes.
pub(crate) fn tiled_of(
    ptr: u64,
    elem: MapElem,
    [cols, rows, batch]: [usize; 3],
    ld: usize,
    stride: usize,
    box_rows: u32,
) -> Result<TmaMap> {
    let stride = if batch == 1 {
        rows.saturating_mul(ld)
    } else {
        stride
    };
    let dims = [cols as u64, rows as u64, batch as u64];
    let bytes = |v: usize| (v as u64).saturating_mul(elem.bytes);
    let strides = [bytes(ld), bytes(stride)];
    encode_tiled(
        ptr,
        elem,
        dims,
        strides,
        [(128 / elem.bytes) as u32, box_rows, 1],
    )
}

// The Hopper convolution's maps: the input as an im2col map (NHWC, pixel boxes whose corners
// follow padding and dilation, traversed with the convolution stride) and the filter as a tiled
// `[K][R·S][C]` map, both with the 128-byte swizzle the kernel's wgmma descriptors expect.

/// The filter (`K` rows of `R·S·C`, KRSC) as a `[K][rs][C]` tensor read in boxes of 64 channels ×
/// one filter tap × `box_k` output channels: channels past C read as zero.
pub(crate) fn filter(
    ptr: u64,
    dtype: Dtype,
    k: usize,
    rs: usize,
    c: usize,
    box_k: u32,
) -> Result<TmaMap> {
    let dims = [c as u64, rs as u64, k as u64];
    let strides = [c as u64 * 2, (rs * c) as u64 * 2];
    encode_tiled(ptr, MapElem::half(dtype)?, dims, strides, [64, 1, box_k])
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
) -> Result<TmaMap> {
    let [n, h, w, c] = nhwc;
    let dims = [c as u64, w as u64, h as u64, n as u64];
    let strides = [c as u64 * 2, (w * c) as u64 * 2, (h * w * c) as u64 * 2];
    check(ptr, &dims, &strides)?;
    let reach = reach(&dims, &strides, 2)?;
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
    Ok(TmaMap {
        // SAFETY: the driver wrote the map on success (and it was zeroed before).
        desc: TmaDesc(unsafe { map.assume_init() }),
        base: ptr,
        reach,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_reaches_its_last_element() {
        // 3 batches of 4 rows of 5 columns, rows 8 apart, batches 40 apart (2-byte elements).
        assert_eq!(reach(&[5, 4, 3], &[16, 80], 2).unwrap(), 2 * 40 + 3 * 8 + 5);
        assert_eq!(reach(&[7, 1, 1], &[16, 16], 2).unwrap(), 7);
        assert!(reach(&[2, u64::MAX, 2], &[1 << 39, 16], 2).is_err());
    }
}
