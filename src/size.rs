//! Checked size arithmetic on values that come from the user: a product, sum or conversion that
//! does not fit is [`Error::InvalidArgument`] naming the field and its value, in debug and
//! release builds alike (never a wrap that a kernel then writes past, never a panic).

use crate::error::{Error, Result};
use std::fmt::Display;

/// The error of a size that does not fit: `field` names it, `value` says what it was.
pub(crate) fn invalid(field: &str, value: impl Display) -> Error {
    Error::InvalidArgument {
        what: format!("{field} = {value} overflows"),
    }
}

/// `a · b`.
pub(crate) fn mul(field: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| invalid(field, format_args!("{a} x {b}")))
}

/// `a + b`.
pub(crate) fn add(field: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_add(b)
        .ok_or_else(|| invalid(field, format_args!("{a} + {b}")))
}

/// The product of `factors` (1 for none).
pub(crate) fn product(field: &str, factors: &[usize]) -> Result<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| invalid(field, format_args!("{factors:?} multiplied")))
}

/// `value` rounded up to a multiple of `align` (`align` ≥ 1).
pub(crate) fn round_up(field: &str, value: usize, align: usize) -> Result<usize> {
    value
        .checked_next_multiple_of(align)
        .ok_or_else(|| invalid(field, format_args!("{value} rounded up to {align}")))
}

/// Bytes of `len` elements of `T`.
pub(crate) fn bytes_of<T>(field: &str, len: usize) -> Result<usize> {
    mul(field, len, std::mem::size_of::<T>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_names_the_field_and_its_value() {
        let e = mul("lda x rows", usize::MAX / 2, 3).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
        assert!(text.contains("lda x rows"), "{text}");
        assert!(text.contains(&(usize::MAX / 2).to_string()), "{text}");
        assert_eq!(add("x", 1, 2).unwrap(), 3);
        assert!(add("x", usize::MAX, 1).is_err());
        assert_eq!(product("p", &[2, 3, 7]).unwrap(), 42);
        assert!(product("p", &[usize::MAX, 2]).is_err());
        assert_eq!(round_up("r", 9, 8).unwrap(), 16);
        assert!(round_up("r", usize::MAX, 8).is_err());
        assert!(bytes_of::<u32>("b", usize::MAX / 2).is_err());
    }
}
