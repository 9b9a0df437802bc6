//! The pool's cap: [`Cap`], [`PoolOptions`] and the environment variable that sets a cap.

use crate::error::{Error, Result};

/// The environment variable that caps a pool created without an explicit cap, as a fraction of
/// the device's memory in (0, 1], e.g. `HIKUBE_GPU_MEMORY_FRACTION=0.5`. Unset or empty: no cap.
pub const MEMORY_FRACTION_ENV: &str = "HIKUBE_GPU_MEMORY_FRACTION";

/// A limit on the bytes a [`MemoryPool`](crate::MemoryPool) may reserve.
///
/// ```
/// use hikube_gpu::Cap;
/// let h100 = 80 << 30;
/// assert_eq!(Cap::Fraction(0.5).to_bytes(h100)?, 40 << 30);
/// assert_eq!(Cap::Bytes(1 << 30).to_bytes(h100)?, 1 << 30);
/// assert!(Cap::Fraction(1.5).to_bytes(h100).is_err());
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cap {
    /// At most this many bytes (more than 0).
    Bytes(u64),
    /// At most this fraction of the device's total memory, in (0, 1].
    Fraction(f64),
}

impl Cap {
    /// The cap in bytes on a device with `total_memory` bytes; [`Error::InvalidArgument`] for a
    /// fraction outside (0, 1] (or not a number) and for 0 bytes.
    pub fn to_bytes(self, total_memory: usize) -> Result<usize> {
        match self {
            Cap::Bytes(0) => Err(Error::InvalidArgument {
                what: "a memory cap of 0 bytes allows no allocation".into(),
            }),
            Cap::Bytes(b) => Ok(usize::try_from(b).unwrap_or(usize::MAX)),
            Cap::Fraction(f) if f > 0.0 && f <= 1.0 => Ok((f * total_memory as f64) as usize),
            Cap::Fraction(f) => Err(Error::InvalidArgument {
                what: format!("memory cap fraction {f} is not in (0, 1]"),
            }),
        }
    }
}

/// The cap set by the value of [`MEMORY_FRACTION_ENV`] (`None`: unset or empty).
pub(super) fn cap_from_env(value: Option<&str>) -> Result<Option<Cap>> {
    let Some(text) = value.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    match text.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(Some(Cap::Fraction(f))),
        _ => Err(Error::InvalidArgument {
            what: format!("{MEMORY_FRACTION_ENV}={text:?} is not a fraction in (0, 1]"),
        }),
    }
}

/// How a [`MemoryPool`](crate::MemoryPool) is set up.
///
/// ```no_run
/// use hikube_gpu::{Cap, Device, MemoryPool, PoolOptions};
/// let device = Device::open(0)?;
/// // Share the GPU: this process's pool reserves at most a quarter of its memory.
/// let pool = MemoryPool::new(&device, PoolOptions { cap: Some(Cap::Fraction(0.25)) })?;
/// # let _ = pool;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PoolOptions {
    /// The most the pool may reserve from the driver. `None`: the cap given by
    /// [`MEMORY_FRACTION_ENV`] if it is set, otherwise no cap. `Some(Cap::Fraction(1.0))` ignores
    /// the environment.
    pub cap: Option<Cap>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn caps_are_validated() {
        let total = 80 * 1024 * MIB;
        assert_eq!(Cap::Bytes(5).to_bytes(total).unwrap(), 5);
        assert_eq!(Cap::Fraction(1.0).to_bytes(total).unwrap(), total);
        assert_eq!(Cap::Fraction(0.25).to_bytes(total).unwrap(), total / 4);
        for bad in [0.0, -0.5, 1.0001, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(
                    Cap::Fraction(bad).to_bytes(total),
                    Err(Error::InvalidArgument { .. })
                ),
                "fraction {bad}"
            );
        }
        assert!(matches!(
            Cap::Bytes(0).to_bytes(total),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn environment_fraction_parses() {
        assert_eq!(cap_from_env(None).unwrap(), None);
        assert_eq!(cap_from_env(Some("")).unwrap(), None);
        assert_eq!(cap_from_env(Some("  ")).unwrap(), None);
        assert_eq!(
            cap_from_env(Some(" 0.5\n")).unwrap(),
            Some(Cap::Fraction(0.5))
        );
        assert_eq!(cap_from_env(Some("1")).unwrap(), Some(Cap::Fraction(1.0)));
        for bad in ["0", "1.5", "-0.1", "half", "50%", "NaN", "inf"] {
            match cap_from_env(Some(bad)) {
                Err(Error::InvalidArgument { what }) => {
                    assert!(what.contains(MEMORY_FRACTION_ENV), "{what}")
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}
