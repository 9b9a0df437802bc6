//! The f64 convolution reference's gradients (issue 20; `tests/support/conv_ref.rs`) against
//! central finite differences of its forward: the loss `L = Σ dy·conv(x, w)` is linear in x and
//! in w, so the differences are exact up to rounding, and every element of dx and dw is checked
//! on shapes with strides, padding wider than the filter's reach, dilation, R ≠ S, groups
//! (depthwise), and stride larger than the filter (taps that touch no output).

#[path = "support/conv_ref.rs"]
mod conv_ref;

use conv_ref::Shape;
use rand::{Rng, SeedableRng};

fn shape(n: usize, h: usize, w: usize, c: usize, k: usize, r: usize, s: usize) -> Shape {
    Shape {
        n,
        h,
        w,
        c,
        k,
        r,
        s,
        stride: (1, 1),
        pad: (0, 0),
        dil: (1, 1),
        groups: 1,
    }
}

fn random(len: usize, rng: &mut impl Rng) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn loss(s: &Shape, x: &[f64], w: &[f64], dy: &[f64]) -> f64 {
    s.forward(x, w).iter().zip(dy).map(|(a, b)| a * b).sum()
}

/// Every element of `grad` against the central difference of the loss along it.
fn check(what: &str, s: &Shape, grad: &[f64], mut at: impl FnMut(usize, f64) -> f64) {
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
        Shape {
            stride: (2, 2),
            pad: (1, 1),
            ..shape(2, 7, 5, 2, 3, 3, 3)
        },
        Shape {
            pad: (3, 2),
            dil: (2, 1),
            ..shape(1, 4, 6, 2, 2, 2, 3)
        },
        Shape {
            stride: (3, 3),
            ..shape(1, 8, 7, 2, 2, 1, 2)
        },
        Shape {
            groups: 4,
            pad: (1, 1),
            ..shape(1, 5, 5, 4, 8, 3, 3)
        },
    ];
    for s in shapes {
        let (x, w) = (random(s.x_len(), &mut rng), random(s.w_len(), &mut rng));
        let dy = random(s.y_len(), &mut rng);
        assert!(s.y_len() > 0, "{s:?}");
        let dx = s.dgrad(&dy, &w);
        check("dx", &s, &dx, |i, h| {
            let mut xh = x.clone();
            xh[i] += h;
            loss(&s, &xh, &w, &dy)
        });
        let dw = s.wgrad(&x, &dy);
        check("dw", &s, &dw, |i, h| {
            let mut wh = w.clone();
            wh[i] += h;
            loss(&s, &x, &wh, &dy)
        });
        // The bias gradient: the loss with a bias b is L + Σ dy·b[k].
        let db = s.bgrad(&dy);
        let per_k: f64 = db.iter().sum();
        assert!((per_k - dy.iter().sum::<f64>()).abs() < 1e-9);
    }
}

/// A stride-2 3×3 convolution's data gradient, one input pixel by hand: the taps that reach it.
#[test]
fn dgrad_by_hand() {
    let s = Shape {
        stride: (2, 2),
        ..shape(1, 3, 3, 1, 1, 1, 1)
    };
    // 1×1 filter, stride 2 over 3×3: outputs at (0,0), (0,2), (2,0), (2,2); (1,1) gets nothing.
    let dx = s.dgrad(&[1.0, 2.0, 3.0, 4.0], &[0.5]);
    assert_eq!(dx, vec![0.5, 0.0, 1.0, 0.0, 0.0, 0.0, 1.5, 0.0, 2.0]);
}
