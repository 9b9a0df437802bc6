//! The f64 convolution reference's gradients (issue 20; `tests/support/conv_ref.rs`) against
//! central finite differences of its forward: the loss `L = Σ dy·conv(x, w)` is linear in x and
//! in w, so the differences are exact up to rounding, and every element of dx and dw is checked
//! on shapes with strides, padding wider than the filter's reach, dilation, R ≠ S, groups
//! (depthwise), and stride larger than the filter (taps that touch no output).

#[path = "support/conv_ref.rs"]
mod conv_ref;

use hikube_gpu::ops::conv2d::Conv2dDesc;
use rand::{Rng, SeedableRng};

fn shape(n: usize, h: usize, w: usize, c: usize, k: usize, r: usize, s: usize) -> Conv2dDesc {
    Conv2dDesc::input(n, h, w, c).filters(k, r, s)
}

fn random(len: usize, rng: &mut impl Rng) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn loss(s: &Conv2dDesc, x: &[f64], w: &[f64], dy: &[f64]) -> f64 {
    conv_ref::forward(s, x, w)
        .iter()
        .zip(dy)
        .map(|(a, b)| a * b)
        .sum()
}

/// Every element of `grad` against the central difference of the loss along it.
fn check(what: &str, s: &Conv2dDesc, grad: &[f64], mut at: impl FnMut(usize, f64) -> f64) {
    let h = 0.5;
    for (i, g) in grad.iter().enumerate() {
        let fd = (at(i, h) - at(i, -h)) / (2.0 * h);
        assert!(
            (fd - g).abs() <= 1e-9 * (1.0 + g.abs()),
            "{what} {s:?}: [{i}] {g} vs {fd}"
        );
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let shapes = [
        shape(1, 5, 6, 3, 4, 3, 3),
        shape(2, 7, 5, 2, 3, 3, 3).stride(2, 2).padding(1, 1),
        shape(1, 4, 6, 2, 2, 2, 3).padding(3, 2).dilation(2, 1),
        shape(1, 8, 7, 2, 2, 1, 2).stride(3, 3),
        shape(1, 5, 5, 4, 8, 3, 3).groups(4).padding(1, 1),
    ];
    for s in shapes {
        let (x, w) = (
            random(s.input_len(), &mut rng),
            random(s.filter_len(), &mut rng),
        );
        let dy = random(s.output_len(), &mut rng);
        assert!(s.output_len() > 0, "{s:?}");
        let dx = conv_ref::dgrad(&s, &dy, &w);
        check("dx", &s, &dx, |i, h| {
            let mut xh = x.clone();
            xh[i] += h;
            loss(&s, &xh, &w, &dy)
        });
        let dw = conv_ref::wgrad(&s, &x, &dy);
        check("dw", &s, &dw, |i, h| {
            let mut wh = w.clone();
            wh[i] += h;
            loss(&s, &x, &wh, &dy)
        });
        // The bias gradient: the loss with a bias b is L + Σ dy·b[k].
        let db = conv_ref::bgrad(&s, &dy);
        let per_k: f64 = db.iter().sum();
        assert!((per_k - dy.iter().sum::<f64>()).abs() < 1e-9);
    }
}

/// A stride-2 3×3 convolution's data gradient, one input pixel by hand: the taps that reach it.
#[test]
fn dgrad_by_hand() {
    let s = shape(1, 3, 3, 1, 1, 1, 1).stride(2, 2);
    // 1×1 filter, stride 2 over 3×3: outputs at (0,0), (0,2), (2,0), (2,2); (1,1) gets nothing.
    let dx = conv_ref::dgrad(&s, &[1.0, 2.0, 3.0, 4.0], &[0.5]);
    assert_eq!(dx, vec![0.5, 0.0, 1.0, 0.0, 0.0, 0.0, 1.5, 0.0, 2.0]);
}
