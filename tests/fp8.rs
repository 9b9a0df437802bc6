//! FP8 storage (issue 19), no GPU needed: every one of the 256 codes of each format against a
//! table computed in f64 from the bit fields, rounding to nearest even at every midpoint between
//! neighbouring values, saturation, NaN, and the scaled conversions.

use hikube_gpu::fp8::{self, Fp8, Fp8Format, F8E4M3, F8E5M2};
use hikube_gpu::ndarray::{array, Array1};

/// The value of `bits` in `format`, computed in f64 from its sign, exponent and mantissa.
fn decode(bits: u8, format: Fp8Format) -> f64 {
    let (e_bits, m_bits, bias) = if format == Fp8Format::E4M3 {
        (4u32, 3u32, 7i32)
    } else {
        assert_eq!(format, Fp8Format::E5M2);
        (5, 2, 15)
    };
    let sign = if bits & 0x80 != 0 { -1.0 } else { 1.0 };
    let e = i32::from((bits >> m_bits) & ((1 << e_bits) - 1) as u8);
    let m = f64::from(bits & ((1 << m_bits) - 1) as u8);
    let e_max = (1 << e_bits) - 1;
    let m_max = f64::from((1u32 << m_bits) - 1);
    if format == Fp8Format::E4M3 && e == e_max && m == m_max {
        return f64::NAN; // E4M3 keeps only S.1111.111 for NaN
    }
    if format == Fp8Format::E5M2 && e == e_max {
        return if m == 0.0 {
            sign * f64::INFINITY
        } else {
            f64::NAN
        };
    }
    let frac = m / f64::from(1u32 << m_bits);
    if e == 0 {
        sign * frac * 2f64.powi(1 - bias)
    } else {
        sign * (1.0 + frac) * 2f64.powi(e - bias)
    }
}

fn encode<T: Fp8>(x: f32) -> u8 {
    T::saturating_from_f32(x).to_bits()
}

/// The next f32 towards +∞ (positive, finite `x`).
fn up(x: f32) -> f32 {
    f32::from_bits(x.to_bits() + 1)
}

/// The next f32 towards 0 (positive `x`).
fn down(x: f32) -> f32 {
    f32::from_bits(x.to_bits() - 1)
}

fn exhaustive<T: Fp8>() {
    let format = T::FORMAT;
    let mut finite = Vec::new();
    for bits in 0..=255u8 {
        let want = decode(bits, format);
        let got = T::from_bits(bits).to_f32();
        if want.is_nan() {
            assert!(got.is_nan(), "{format:?} {bits:#04x}: {got}, want NaN");
            assert!(T::from_bits(encode::<T>(got)).to_f32().is_nan());
            continue;
        }
        assert_eq!(f64::from(got), want, "{format:?} {bits:#04x}");
        if want.is_finite() {
            // Every finite value encodes to itself (-0 to the negative zero).
            assert_eq!(encode::<T>(got), bits, "{format:?} {bits:#04x} = {got}");
            finite.push((got, bits));
        }
    }
    let max = finite.iter().map(|(v, _)| *v).fold(0.0f32, f32::max);
    assert_eq!(max, format.max(), "{format:?}");
    let max_bits = encode::<T>(max);

    // Ties to even between neighbours; just off a tie, the nearer one.
    let mut positive: Vec<(f32, u8)> = finite.iter().copied().filter(|(v, _)| *v > 0.0).collect();
    positive.sort_by(|a, b| a.0.total_cmp(&b.0));
    positive.insert(0, (0.0, 0));
    for pair in positive.windows(2) {
        let ((a, a_bits), (b, b_bits)) = (pair[0], pair[1]);
        let mid = (a + b) / 2.0;
        assert_eq!(
            f64::from(mid),
            (f64::from(a) + f64::from(b)) / 2.0,
            "the midpoint is an f32"
        );
        let even = if a_bits & 1 == 0 { a_bits } else { b_bits };
        assert_eq!(encode::<T>(mid), even, "{format:?} tie {a} / {b}");
        assert_eq!(encode::<T>(up(mid)), b_bits, "{format:?} above {mid}");
        assert_eq!(encode::<T>(down(mid)), a_bits, "{format:?} below {mid}");
        // The same, negative.
        assert_eq!(encode::<T>(-mid), even | 0x80, "{format:?} tie -{mid}");
    }

    // Saturation: beyond the largest finite value (past its rounding boundary too) and ∞.
    for x in [
        up(max),
        max * 1.0625,
        max * 1.5,
        max * 2.0,
        1e30,
        f32::MAX,
        f32::INFINITY,
    ] {
        assert_eq!(encode::<T>(x), max_bits, "{format:?} {x}");
        assert_eq!(encode::<T>(-x), max_bits | 0x80, "{format:?} -{x}");
    }
    assert!(T::saturating_from_f32(f32::NAN).to_f32().is_nan());
    assert!(T::saturating_from_f32(-f32::NAN).to_f32().is_nan());
}

#[test]
fn e4m3_every_code_rounding_and_saturation() {
    exhaustive::<F8E4M3>();
}

#[test]
fn e5m2_every_code_rounding_and_saturation() {
    exhaustive::<F8E5M2>();
}

#[test]
fn scaled_conversions() {
    let x = array![0.0f32, 1.0, -2.5, 300.0, -1000.0, f32::NAN];
    assert_eq!(fp8::amax(x.view()), 1000.0);
    assert_eq!(fp8::amax(Array1::<f32>::zeros(0).view()), 0.0);
    assert_eq!(fp8::scale_for(0.0, Fp8Format::E4M3).unwrap(), 1.0);
    let scale = fp8::scale_for(1000.0, Fp8Format::E4M3).unwrap();
    assert_eq!(scale, 1000.0 / 448.0);
    let q = fp8::quantize::<F8E4M3, _>(x.view(), scale).unwrap();
    let back = fp8::dequantize(q.view(), scale).unwrap();
    // Within half a step of three mantissa bits (2^-4 relative), and the largest exactly.
    for (a, b) in x.iter().zip(&back) {
        if a.is_nan() {
            assert!(b.is_nan());
        } else {
            assert!((a - b).abs() <= a.abs() / 16.0 + 1e-6, "{a} -> {b}");
        }
    }
    assert_eq!(back[4], -1000.0);
    // Beyond the scale's range: saturated, not NaN or ∞.
    let big = fp8::quantize::<F8E5M2, _>(array![1e9f32].view(), 1.0).unwrap();
    assert_eq!(big[0].to_f32(), Fp8Format::E5M2.max());
    for bad in [0.0f32, -1.0, f32::NAN, f32::INFINITY, 1e-45] {
        assert!(fp8::quantize::<F8E4M3, _>(x.view(), bad).is_err(), "{bad}");
        assert!(fp8::dequantize(q.view(), bad).is_err(), "{bad}");
    }
    for bad in [-1.0f32, f32::NAN, f32::INFINITY] {
        assert!(fp8::scale_for(bad, Fp8Format::E5M2).is_err(), "{bad}");
    }
}

#[test]
fn fp8_is_one_byte_pod() {
    assert_eq!(std::mem::size_of::<F8E4M3>(), 1);
    let one = [F8E5M2::from_bits(0x3c)];
    let bytes: &[u8] = bytemuck::cast_slice(&one);
    assert_eq!(bytes, [0x3c]);
    assert_eq!(F8E5M2::from_bits(0x3c).to_f32(), 1.0);
}
