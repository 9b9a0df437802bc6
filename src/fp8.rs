//! FP8 storage: the two encodings of the FP8 tensor cores (Ada and Hopper), as the `float8`
//! crate's [`F8E4M3`] and [`F8E5M2`] (one byte, [`Pod`], so they live in
//! [`DeviceBuffer`](crate::DeviceBuffer)s like any element), and the host conversions FP8
//! recipes use with a per-tensor scale, as `torch._scaled_mm` and cuBLASLt do: a tensor `x` is
//! stored as `q = x / scale` rounded to the nearest FP8 value (ties to even) and saturated to
//! the format's largest finite value, and read back as `q · scale`. [`scale_for`] picks the
//! scale that maps a tensor's largest magnitude ([`amax`]) onto that largest value.
//!
//! ```
//! use hikube_gpu::fp8::{self, F8E4M3};
//! use hikube_gpu::ndarray::array;
//! let x = array![[0.5f32, -3.0], [1000.0, 0.0]];
//! let scale = fp8::scale_for(fp8::amax(x.view()), fp8::Fp8Format::E4M3)?; // 1000 / 448
//! let q = fp8::quantize::<F8E4M3, _>(x.view(), scale)?;
//! let back = fp8::dequantize(q.view(), scale)?;
//! assert!((back[[1, 0]] - 1000.0).abs() < 1e-3);
//! assert!((back[[0, 1]] + 3.0).abs() < 0.2); // three mantissa bits
//! # Ok::<(), hikube_gpu::Error>(())
//! ```

use crate::error::{Error, Result};
use bytemuck::Pod;
use ndarray::{Array, ArrayView, Dimension};

pub use float8::{F8E4M3, F8E5M2};

/// An FP8 encoding.
///
/// ```
/// use hikube_gpu::fp8::{Fp8, Fp8Format, F8E4M3, F8E5M2};
/// assert_eq!(F8E4M3::FORMAT, Fp8Format::E4M3);
/// assert_eq!(Fp8Format::E4M3.max(), 448.0);
/// assert_eq!(F8E5M2::FORMAT.max(), 57344.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fp8Format {
    /// 4 exponent bits (bias 7), 3 mantissa bits; no infinities, one NaN code per sign;
    /// largest finite value 448 (PyTorch's `float8_e4m3fn`).
    E4M3,
    /// 5 exponent bits (bias 15), 2 mantissa bits; infinities and NaNs like IEEE half;
    /// largest finite value 57344 (`float8_e5m2`).
    E5M2,
}

impl Fp8Format {
    /// The largest finite value.
    pub const fn max(self) -> f32 {
        match self {
            Fp8Format::E4M3 => 448.0,
            Fp8Format::E5M2 => 57344.0,
        }
    }

    /// The name the kernels and PTX use: `e4m3`, `e5m2`.
    pub const fn suffix(self) -> &'static str {
        match self {
            Fp8Format::E4M3 => "e4m3",
            Fp8Format::E5M2 => "e5m2",
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::F8E4M3 {}
    impl Sealed for super::F8E5M2 {}
}

/// An FP8 storage type: [`F8E4M3`] or [`F8E5M2`].
///
/// ```
/// use hikube_gpu::fp8::{Fp8, F8E4M3};
/// assert_eq!(F8E4M3::saturating_from_f32(1.0625).to_f32(), 1.0); // a tie: to even
/// assert_eq!(F8E4M3::saturating_from_f32(1e6).to_f32(), 448.0); // saturated
/// assert_eq!(F8E4M3::from_bits(0x38).to_f32(), 1.0);
/// ```
pub trait Fp8: Pod + Send + Sync + sealed::Sealed {
    /// Its encoding.
    const FORMAT: Fp8Format;
    /// Rounds to the nearest value, ties to even; finite values beyond the largest finite one
    /// and infinities saturate to it (with their sign); NaN stays NaN.
    fn saturating_from_f32(x: f32) -> Self;
    /// The value (exact: every FP8 value is an f32).
    fn to_f32(self) -> f32;
    /// The stored byte.
    fn to_bits(self) -> u8;
    /// The value a byte encodes.
    fn from_bits(bits: u8) -> Self;
}

impl Fp8 for F8E4M3 {
    const FORMAT: Fp8Format = Fp8Format::E4M3;
    fn saturating_from_f32(x: f32) -> Self {
        F8E4M3::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        F8E4M3::to_f32(&self)
    }
    fn to_bits(self) -> u8 {
        F8E4M3::to_bits(&self)
    }
    fn from_bits(bits: u8) -> Self {
        F8E4M3::from_bits(bits)
    }
}

impl Fp8 for F8E5M2 {
    const FORMAT: Fp8Format = Fp8Format::E5M2;
    fn saturating_from_f32(x: f32) -> Self {
        F8E5M2::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        F8E5M2::to_f32(&self)
    }
    fn to_bits(self) -> u8 {
        F8E5M2::to_bits(&self)
    }
    fn from_bits(bits: u8) -> Self {
        F8E5M2::from_bits(bits)
    }
}

/// The largest magnitude of `x`, NaNs left out (0 for an empty array): what FP8 training
/// recipes record to choose the next scale.
///
/// ```
/// use hikube_gpu::{fp8, ndarray::array};
/// assert_eq!(fp8::amax(array![1.5f32, -3.0, f32::NAN].view()), 3.0);
/// ```
pub fn amax<D: Dimension>(x: ArrayView<'_, f32, D>) -> f32 {
    x.iter()
        .filter(|v| !v.is_nan())
        .fold(0.0f32, |m, v| m.max(v.abs()))
}

/// The scale that maps `amax` onto `format`'s largest finite value (`amax / max`), or 1 for
/// `amax` = 0. [`Error::InvalidArgument`] for a negative, infinite or NaN `amax`.
///
/// ```
/// use hikube_gpu::fp8::{scale_for, Fp8Format};
/// assert_eq!(scale_for(896.0, Fp8Format::E4M3)?, 2.0); // e4m3's largest value is 448
/// assert_eq!(scale_for(0.0, Fp8Format::E5M2)?, 1.0);
/// assert!(scale_for(f32::NAN, Fp8Format::E4M3).is_err());
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn scale_for(amax: f32, format: Fp8Format) -> Result<f32> {
    if !(amax.is_finite() && amax >= 0.0) {
        return Err(Error::InvalidArgument {
            what: format!("the FP8 scale of a tensor whose amax is {amax}"),
        });
    }
    Ok(if amax == 0.0 {
        1.0
    } else {
        amax / format.max()
    })
}

/// A scale must be a positive, finite number whose reciprocal is finite too.
pub(crate) fn check_scale(scale: f32) -> Result<()> {
    if scale.is_finite() && scale > 0.0 && (1.0 / scale).is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: format!("an FP8 scale must be positive and finite, got {scale}"),
        })
    }
}

/// `x / scale` (an f32 division) in FP8 (nearest, ties to even, saturating; NaN stays NaN),
/// element by element.
/// [`Error::InvalidArgument`] for a scale that is not positive and finite.
///
/// ```
/// use hikube_gpu::fp8::{self, Fp8, F8E4M3};
/// use hikube_gpu::ndarray::array;
/// let x = array![[0.5f32, -1.0], [1000.0, 3.0]];
/// let scale = fp8::scale_for(fp8::amax(x.view()), fp8::Fp8Format::E4M3)?;
/// let q = fp8::quantize::<F8E4M3, _>(x.view(), scale)?;
/// assert_eq!(q[[1, 0]].to_f32(), 448.0); // the amax lands on e4m3's largest value
/// let back = fp8::dequantize(q.view(), scale)?;
/// assert!((back[[1, 1]] - 3.0).abs() <= 3.0 / 16.0); // 3 significant bits
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn quantize<T: Fp8, D: Dimension>(x: ArrayView<'_, f32, D>, scale: f32) -> Result<Array<T, D>> {
    check_scale(scale)?;
    // The quotient in f32, then converted: PyTorch's `(x / scale).to(torch.float8_e4m3fn)`
    // (saturated beforehand by recipes, here by the conversion).
    Ok(x.mapv(|v| T::saturating_from_f32(v / scale)))
}

/// `q · scale` in f32, element by element. [`Error::InvalidArgument`] for a scale that is not
/// positive and finite.
///
/// ```
/// use hikube_gpu::fp8::{self, Fp8, F8E5M2};
/// use hikube_gpu::ndarray::array;
/// let q = array![F8E5M2::saturating_from_f32(1.5), F8E5M2::saturating_from_f32(-4.0)];
/// assert_eq!(fp8::dequantize(q.view(), 0.5)?, array![0.75f32, -2.0]);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn dequantize<T: Fp8, D: Dimension>(
    q: ArrayView<'_, T, D>,
    scale: f32,
) -> Result<Array<f32, D>> {
    check_scale(scale)?;
    Ok(q.mapv(|v| v.to_f32() * scale))
}
