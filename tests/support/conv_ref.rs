//! The f64 CPU reference of the 2-D convolution and its two gradients (issue 20), NHWC
//! activations and KRSC filters, any stride, padding and dilation, dense or grouped. The GPU
//! tests compare the kernels with it; `tests/conv_reference.rs` checks the gradients against
//! finite differences of the forward.

/// A convolution's shape: input `n × h × w × c`, `k` filters of `r × s × c / groups`.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub k: usize,
    pub r: usize,
    pub s: usize,
    pub stride: (usize, usize),
    pub pad: (usize, usize),
    pub dil: (usize, usize),
    pub groups: usize,
}

impl Shape {
    /// Output height and width (0 where the dilated filter does not fit the padded input).
    pub fn pq(&self) -> (usize, usize) {
        let out = |len: usize, pad: usize, f: usize, dil: usize, stride: usize| {
            let reach = (f - 1) * dil + 1;
            (len + 2 * pad)
                .checked_sub(reach)
                .map_or(0, |d| d / stride + 1)
        };
        (
            out(self.h, self.pad.0, self.r, self.dil.0, self.stride.0),
            out(self.w, self.pad.1, self.s, self.dil.1, self.stride.1),
        )
    }

    pub fn x_len(&self) -> usize {
        self.n * self.h * self.w * self.c
    }

    pub fn w_len(&self) -> usize {
        self.k * self.r * self.s * (self.c / self.groups)
    }

    pub fn y_len(&self) -> usize {
        let (p, q) = self.pq();
        self.n * p * q * self.k
    }

    /// Calls `f(x index, w index, y index)` for every multiply-add of the convolution: the one
    /// loop the forward and both gradients share, so they cannot disagree on the indexing.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (p, q) = self.pq();
        let (cpg, kpg) = (self.c / self.groups, self.k / self.groups);
        for n in 0..self.n {
            for op in 0..p {
                for oq in 0..q {
                    for k in 0..self.k {
                        let y = ((n * p + op) * q + oq) * self.k + k;
                        let c0 = (k / kpg) * cpg;
                        for r in 0..self.r {
                            let ih = (op * self.stride.0 + r * self.dil.0) as isize
                                - self.pad.0 as isize;
                            if ih < 0 || ih >= self.h as isize {
                                continue;
                            }
                            for s in 0..self.s {
                                let iw = (oq * self.stride.1 + s * self.dil.1) as isize
                                    - self.pad.1 as isize;
                                if iw < 0 || iw >= self.w as isize {
                                    continue;
                                }
                                let x0 = ((n * self.h + ih as usize) * self.w + iw as usize)
                                    * self.c
                                    + c0;
                                let w0 = ((k * self.r + r) * self.s + s) * cpg;
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
    pub fn forward(&self, x: &[f64], w: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; self.y_len()];
        self.for_each_tap(|xi, wi, yi| y[yi] += x[xi] * w[wi]);
        y
    }

    /// `dx = ∂(Σ dy·y)/∂x`: the data gradient.
    pub fn dgrad(&self, dy: &[f64], w: &[f64]) -> Vec<f64> {
        let mut dx = vec![0.0; self.x_len()];
        self.for_each_tap(|xi, wi, yi| dx[xi] += dy[yi] * w[wi]);
        dx
    }

    /// `dw = ∂(Σ dy·y)/∂w`: the weight gradient.
    pub fn wgrad(&self, x: &[f64], dy: &[f64]) -> Vec<f64> {
        let mut dw = vec![0.0; self.w_len()];
        self.for_each_tap(|xi, wi, yi| dw[wi] += dy[yi] * x[xi]);
        dw
    }

    /// `db[k] = Σ dy[…, k]`: the bias gradient.
    pub fn bgrad(&self, dy: &[f64]) -> Vec<f64> {
        let mut db = vec![0.0; self.k];
        for (i, v) in dy.iter().enumerate() {
            db[i % self.k] += v;
        }
        db
    }
}
