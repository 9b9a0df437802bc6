//! The f64 CPU reference of the 2-D convolution and its two gradients (issue 20) for a
//! [`Conv2dDesc`]: NHWC activations and KRSC filters, any stride, padding and dilation, dense or
//! grouped. The GPU tests compare the kernels with it; `tests/conv_reference.rs` checks the
//! gradients against finite differences of the forward.

use hikube_gpu::ops::conv2d::Conv2dDesc;

/// Calls `f(x index, w index, y index)` for every multiply-add of the convolution: the one loop
/// the forward and both gradients share, so they cannot disagree on the indexing.
fn for_each_tap(d: &Conv2dDesc, mut f: impl FnMut(usize, usize, usize)) {
    let (p, q) = d.output_hw();
    let (cpg, kpg) = (d.c / d.groups, d.k / d.groups);
    for n in 0..d.n {
        for op in 0..p {
            for oq in 0..q {
                for k in 0..d.k {
                    let y = ((n * p + op) * q + oq) * d.k + k;
                    let c0 = (k / kpg) * cpg;
                    for r in 0..d.r {
                        let ih =
                            (op * d.stride.0 + r * d.dilation.0) as isize - d.padding.0 as isize;
                        if ih < 0 || ih >= d.h as isize {
                            continue;
                        }
                        for s in 0..d.s {
                            let iw = (oq * d.stride.1 + s * d.dilation.1) as isize
                                - d.padding.1 as isize;
                            if iw < 0 || iw >= d.w as isize {
                                continue;
                            }
                            let x0 = ((n * d.h + ih as usize) * d.w + iw as usize) * d.c + c0;
                            let w0 = ((k * d.r + r) * d.s + s) * cpg;
                            for ci in 0..cpg {
                                f(x0 + ci, w0 + ci, y);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y = conv(x, w)`.
pub fn forward(d: &Conv2dDesc, x: &[f64], w: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; d.output_len()];
    for_each_tap(d, |xi, wi, yi| y[yi] += x[xi] * w[wi]);
    y
}

/// `dx = ∂(Σ dy·y)/∂x`: the data gradient.
pub fn dgrad(d: &Conv2dDesc, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; d.input_len()];
    for_each_tap(d, |xi, wi, yi| dx[xi] += dy[yi] * w[wi]);
    dx
}

/// `dw = ∂(Σ dy·y)/∂w`: the weight gradient.
pub fn wgrad(d: &Conv2dDesc, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; d.filter_len()];
    for_each_tap(d, |xi, wi, yi| dw[wi] += dy[yi] * x[xi]);
    dw
}

/// `db[k] = Σ dy[…, k]`: the bias gradient.
pub fn bgrad(d: &Conv2dDesc, dy: &[f64]) -> Vec<f64> {
    let mut db = vec![0.0; d.k];
    for (i, v) in dy.iter().enumerate() {
        db[i % d.k] += v;
    }
    db
}
