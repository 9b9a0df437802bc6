//! Every descriptor, builder and constructor that needs no GPU, driven with extreme values:
//! each answers `Ok` or a typed `Error`, never a panic (issue 16), in debug and release alike.

use hikube_gpu::ops::conv2d::Conv2dDesc;
use hikube_gpu::ops::matmul::{Layout, MatmulDesc};
use hikube_gpu::{Cap, Error, MemoryPool};
use proptest::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// 0, 1, primes, the 32-bit edges, `isize::MAX`, `usize::MAX` and their neighbours, and small
/// and large values in between.
fn extreme() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => prop::sample::select(vec![
            0usize,
            1,
            2,
            3,
            7,
            8,
            64,
            127,
            128,
            65_521,
            2_147_483_647, // i32::MAX, a prime
            2_147_483_648, // i32::MAX + 1
            4_294_967_295,
            4_294_967_296, // u32::MAX + 1
            (1 << 61) - 1, // a Mersenne prime
            isize::MAX as usize,
            isize::MAX as usize + 1,
            usize::MAX / 2,
            usize::MAX / 3,
            usize::MAX - 1,
            usize::MAX,
        ]),
        1 => 0usize..4096,
        1 => any::<usize>(),
    ]
}

/// Runs `f`, failing the property if it panics.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => panic!("{what} panicked"),
    }
}

/// The typed errors a validation may answer with.
fn typed(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidArgument { .. } | Error::InvalidDimension { .. } | Error::TooLarge { .. }
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn matmul_desc_validates_without_panicking(
        (m, n, k, batch) in (extreme(), extreme(), extreme(), extreme()),
        (lda, ldb, ldc, ldd) in (
            prop::option::of(extreme()),
            prop::option::of(extreme()),
            prop::option::of(extreme()),
            prop::option::of(extreme()),
        ),
        (sa, sb, sc, sd) in (
            prop::option::of(extreme()),
            prop::option::of(extreme()),
            prop::option::of(extreme()),
            prop::option::of(extreme()),
        ),
        (split_k, grid_blocks) in (prop::option::of(extreme()), prop::option::of(extreme())),
        (col_a, col_b, col_c, col_d) in (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        beta in prop::sample::select(vec![0.0f32, 1.0]),
    ) {
        let layout = |col: bool| if col { Layout::ColMajor } else { Layout::RowMajor };
        let mut d = MatmulDesc::new(m, n, k)
            .batch(batch)
            .a_layout(layout(col_a))
            .b_layout(layout(col_b))
            .c_layout(layout(col_c))
            .d_layout(layout(col_d))
            .beta(beta);
        (d.lda, d.ldb, d.ldc, d.ldd) = (lda, ldb, ldc, ldd);
        (d.stride_a, d.stride_b, d.stride_c, d.stride_d) = (sa, sb, sc, sd);
        (d.split_k, d.grid_blocks) = (split_k, grid_blocks);
        if let Err(e) = no_panic("MatmulDesc::validate", || d.validate()) {
            prop_assert!(typed(&e), "{e:?}");
        }
    }

    #[test]
    fn conv2d_desc_validates_without_panicking(
        (n, h, w, c) in (extreme(), extreme(), extreme(), extreme()),
        (k, r, s, groups) in (extreme(), extreme(), extreme(), extreme()),
        (sh, sw, ph, pw) in (extreme(), extreme(), extreme(), extreme()),
        (dh, dw) in (extreme(), extreme()),
        (alpha, beta) in (
            prop::sample::select(vec![1.0f32, 0.0, -0.5, f32::NAN, f32::INFINITY, f32::MAX]),
            prop::sample::select(vec![0.0f32, 1.0, f32::NAN, -f32::INFINITY]),
        ),
    ) {
        let d = Conv2dDesc::input(n, h, w, c).filters(k, r, s)
            .stride(sh, sw)
            .padding(ph, pw)
            .dilation(dh, dw)
            .groups(groups)
            .alpha(alpha)
            .beta(beta);
        no_panic("Conv2dDesc sizes", || {
            (
                d.output_hw(),
                d.gemm_mnk(),
                d.input_len(),
                d.filter_len(),
                d.output_len(),
                d.flops(),
                d.is_depthwise(),
                d.is_pointwise(),
            )
        });
        match no_panic("Conv2dDesc::validate", || d.validate()) {
            Ok(()) => {
                // A valid description's sizes are exact, not saturated.
                prop_assert!(d.input_len() < usize::MAX && d.output_len() < usize::MAX);
            }
            Err(e) => prop_assert!(typed(&e), "{e:?}"),
        }
    }

    #[test]
    fn pool_sizes_and_caps_never_panic(bytes in extreme(), total in extreme(), f in any::<f64>()) {
        no_panic("MemoryPool::size_class", || MemoryPool::size_class(bytes));
        for cap in [Cap::Bytes(bytes as u64), Cap::Fraction(f)] {
            if let Err(e) = no_panic("Cap::to_bytes", || cap.to_bytes(total)) {
                prop_assert!(typed(&e), "{e:?}");
            }
        }
    }

    #[test]
    fn catalog_lookups_never_panic(name in ".{0,64}") {
        no_panic("catalog::lookup", || hikube_gpu::catalog::lookup(&name));
    }
}

/// The overflow of issue 16: a leading dimension of half the address space with three batches
/// wraps `(batch - 1)·stride + (rows - 1)·lda + cols`. It is `InvalidArgument` naming the field
/// and its value, in debug and release alike (this test runs in both).
#[test]
fn a_huge_leading_dimension_is_invalid_argument_naming_it() {
    let lda = usize::MAX / 2;
    let e = MatmulDesc::new(64, 64, 64)
        .lda(lda)
        .batch(3)
        .validate()
        .unwrap_err();
    let Error::InvalidArgument { what } = &e else {
        panic!("expected InvalidArgument, got {e:?}")
    };
    assert!(what.contains("lda"), "{what}");
    assert!(what.contains(&lda.to_string()), "{what}");
}

#[test]
fn a_huge_batch_stride_is_invalid_argument_naming_it() {
    let e = MatmulDesc::new(64, 64, 64)
        .stride_a(usize::MAX / 2)
        .batch(5)
        .validate()
        .unwrap_err();
    let Error::InvalidArgument { what } = &e else {
        panic!("expected InvalidArgument, got {e:?}")
    };
    assert!(what.contains("stride_a"), "{what}");
}

#[test]
fn a_stride_past_the_kernels_offsets_is_too_large() {
    // No overflow in usize, but more than the kernels' 64-bit offsets take.
    let e = MatmulDesc::new(1, 64, 64)
        .lda(isize::MAX as usize)
        .validate()
        .unwrap_err();
    assert!(
        matches!(&e, Error::TooLarge { what, .. } if what == "lda"),
        "{e:?}"
    );
}

#[test]
fn conv_lengths_that_overflow_are_errors() {
    let d = Conv2dDesc::input(usize::MAX / 2, 3, 3, 8).filters(8, 1, 1);
    assert!(d.validate().is_err());
    assert_eq!(d.input_len(), usize::MAX, "saturates instead of wrapping");
    // (taps - 1)·dilation + 1 overflows exactly: usize::MAX = 3 · (usize::MAX / 3).
    let tall = Conv2dDesc::input(1, 8, 8, 8)
        .filters(8, usize::MAX / 3 + 1, 1)
        .dilation(3, 1);
    assert_eq!(tall.output_hw().0, 0);
    assert!(tall.validate().is_err());
}

#[test]
fn valid_descriptions_stay_valid() {
    assert!(MatmulDesc::new(4096, 4096, 4096).validate().is_ok());
    assert!(MatmulDesc::new(7, 5, 3)
        .batch(3)
        .lda(8)
        .stride_a(64)
        .validate()
        .is_ok());
    let stem = Conv2dDesc::input(8, 224, 224, 3)
        .filters(64, 7, 7)
        .stride(2, 2)
        .padding(3, 3);
    assert!(stem.validate().is_ok());
    assert!(Conv2dDesc::input(8, 28, 28, 128)
        .filters(128, 3, 3)
        .padding(1, 1)
        .validate()
        .is_ok());
}
