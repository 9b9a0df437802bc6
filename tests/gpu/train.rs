//! Training operations (`ops::train`) against f64 CPU references: softmax cross-entropy, ReLU
//! backward, bias gradient, f32 → f16/bf16 cast, dynamic loss scaling and the SGD step. Outputs
//! are poisoned (NaN) before each launch, so an element a kernel forgets fails the comparison.

use crate::{ensure, fail, gpu_test};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::ops::train::{self, LossScaler, Sgd};
use hikube_gpu::{Device, DeviceBuffer, Error, Float, Stream};
use libtest_mimic::{Failed, Trial};
use rand::Rng;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu_test("train::softmax_xent_f32", |d| softmax_xent::<f32>(d, 1e-5)),
        gpu_test("train::softmax_xent_f16", |d| softmax_xent::<f16>(d, 2e-3)),
        gpu_test("train::softmax_xent_bf16", |d| {
            softmax_xent::<bf16>(d, 1e-2)
        }),
        gpu_test("train::softmax_xent_bad_label_is_nan", bad_label_is_nan),
        gpu_test("train::relu_backward", relu_backward_all),
        gpu_test("train::bias_grad_f16", |d| bias_grad::<f16>(d, 1e-5)),
        gpu_test("train::bias_grad_f32", |d| bias_grad::<f32>(d, 1e-5)),
        gpu_test("train::cast_f32_rounds_to_nearest_even", cast_exact),
        gpu_test("train::sgd_step_with_loss_scale", sgd_step),
        gpu_test("train::loss_scaler_skips_halves_grows", loss_scaler_policy),
        gpu_test("train::shape_errors", shape_errors),
    ]
}

fn random(n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = rand::rng();
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// ‖out − ref‖ / ‖ref‖ (NaN in `out` gives NaN).
fn rel_err(out: &[f64], reference: &[f64]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (o, r) in out.iter().zip(reference) {
        num += (o - r) * (o - r);
        den += r * r;
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

fn to_f64<T: Float>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| f64::from(x.to_f32())).collect()
}

fn poisoned<T: Float>(stream: &Stream, n: usize) -> Result<DeviceBuffer<T>, Failed> {
    DeviceBuffer::from_slice(stream, &vec![T::from_f32(f32::NAN); n]).map_err(fail)
}

const SOFTMAX_SHAPES: [(usize, usize); 6] = [
    (1, 1),
    (7, 10),
    (33, 1000),
    (257, 31),
    (64, 4099),
    (1024, 10),
];

/// Rows 1, 2 and 3 of every 4 (where there are) moved out of the gentle `[-6, 6)`: around +100
/// (`exp` overflows f32 past 88.7), around −100 (`exp` underflows to 0, the sum with it), and
/// all equal, so that a softmax that does not subtract the row's maximum fails the comparison.
fn extreme_rows(mut logits: Vec<f32>, cols: usize) -> Vec<f32> {
    for (r, row) in logits.chunks_mut(cols).enumerate() {
        match r % 4 {
            1 => row.iter_mut().for_each(|x| *x += 100.0),
            2 => row.iter_mut().for_each(|x| *x -= 100.0),
            3 => row.fill(42.5),
            _ => {}
        }
    }
    logits
}

fn softmax_xent<G: Float>(device: &Device, bound: f64) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let mut rng = rand::rng();
    for (rows, cols) in SOFTMAX_SHAPES {
        for scale in [None, Some(256.0f32)] {
            let logits = extreme_rows(random(rows * cols, -6.0, 6.0), cols);
            let labels: Vec<u32> = (0..rows)
                .map(|_| rng.random_range(0..cols as u32))
                .collect();
            let gl = DeviceBuffer::from_slice(&stream, &logits).map_err(fail)?;
            let glab = DeviceBuffer::from_slice(&stream, &labels).map_err(fail)?;
            let mut grad = poisoned::<G>(&stream, rows * cols)?;
            let mut loss = poisoned::<f32>(&stream, rows)?;
            let scaler = match scale {
                Some(s) => Some(LossScaler::new(&stream, s, 0).map_err(fail)?),
                None => None,
            };
            train::softmax_cross_entropy(
                &stream,
                &gl,
                &glab,
                cols,
                scaler.as_ref(),
                &mut grad,
                &mut loss,
            )
            .map_err(fail)?;
            let (mut want_g, mut want_l) = (vec![0.0f64; rows * cols], vec![0.0f64; rows]);
            let s = f64::from(scale.unwrap_or(1.0));
            for r in 0..rows {
                let x: Vec<f64> = logits[r * cols..(r + 1) * cols]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect();
                let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = x.iter().map(|v| (v - m).exp()).sum();
                let label = labels[r] as usize;
                want_l[r] = sum.ln() + m - x[label];
                for j in 0..cols {
                    let p = (x[j] - m).exp() / sum;
                    let onehot = if j == label { 1.0 } else { 0.0 };
                    want_g[r * cols + j] = s * (p - onehot) / rows as f64;
                }
            }
            let got_g = to_f64(&grad.to_vec(&stream).map_err(fail)?);
            let got_l = to_f64(&loss.to_vec(&stream).map_err(fail)?);
            let (eg, el) = (rel_err(&got_g, &want_g), rel_err(&got_l, &want_l));
            ensure!(
                eg.is_finite() && eg <= bound,
                "{rows}x{cols} scale {scale:?}: gradient error {eg:e} > {bound:e}"
            );
            ensure!(
                el.is_finite() && el <= 1e-5,
                "{rows}x{cols} scale {scale:?}: loss error {el:e}"
            );
        }
    }
    Ok(())
}

fn bad_label_is_nan(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let (rows, cols) = (3, 5);
    let gl = DeviceBuffer::from_slice(&stream, &random(rows * cols, -1.0, 1.0)).map_err(fail)?;
    let glab = DeviceBuffer::from_slice(&stream, &[0u32, 5, 4]).map_err(fail)?;
    let mut grad = DeviceBuffer::<f32>::zeroed(&stream, rows * cols).map_err(fail)?;
    let mut loss = DeviceBuffer::<f32>::zeroed(&stream, rows).map_err(fail)?;
    train::softmax_cross_entropy(&stream, &gl, &glab, cols, None, &mut grad, &mut loss)
        .map_err(fail)?;
    let (g, l) = (
        grad.to_vec(&stream).map_err(fail)?,
        loss.to_vec(&stream).map_err(fail)?,
    );
    ensure!(
        l[0].is_finite() && l[1].is_nan() && l[2].is_finite(),
        "losses {l:?}"
    );
    ensure!(
        g[cols..2 * cols].iter().all(|v| v.is_nan()),
        "row 1 gradient {:?}",
        &g[cols..2 * cols]
    );
    ensure!(
        g[..cols]
            .iter()
            .chain(&g[2 * cols..])
            .all(|v| v.is_finite()),
        "valid rows not finite"
    );
    Ok(())
}

fn relu_backward_typed<T: Float>(stream: &Stream) -> Result<(), Failed> {
    for n in [1usize, 2, 31, 256, 257, 65_521, 1_000_003] {
        let mut y = random(n, -1.0, 1.0);
        for v in y.iter_mut().step_by(7) {
            *v = 0.0; // exactly zero: the ReLU's flat side, gradient 0
        }
        let y: Vec<T> = y.into_iter().map(T::from_f32).collect();
        let dy: Vec<T> = random(n, -1.0, 1.0).into_iter().map(T::from_f32).collect();
        let gy = DeviceBuffer::from_slice(stream, &y).map_err(fail)?;
        let mut gdy = DeviceBuffer::from_slice(stream, &dy).map_err(fail)?;
        train::relu_backward(stream, &gy, &mut gdy).map_err(fail)?;
        let got = to_f64(&gdy.to_vec(stream).map_err(fail)?);
        for i in 0..n {
            let want = if y[i].to_f32() > 0.0 {
                f64::from(dy[i].to_f32())
            } else {
                0.0
            };
            ensure!(
                got[i] == want,
                "{} n={n}: element {i} is {} not {want}",
                T::SUFFIX,
                got[i]
            );
        }
    }
    Ok(())
}

fn relu_backward_all(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    relu_backward_typed::<f32>(&stream)?;
    relu_backward_typed::<f16>(&stream)?;
    relu_backward_typed::<bf16>(&stream)
}

fn bias_grad<T: Float>(device: &Device, bound: f64) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    for (rows, cols) in [
        (1, 1),
        (5, 3),
        (257, 33),
        (1000, 129),
        (8192, 40),
        (64, 4096),
    ] {
        let dy: Vec<T> = random(rows * cols, -1.0, 1.0)
            .into_iter()
            .map(T::from_f32)
            .collect();
        let gdy = DeviceBuffer::from_slice(&stream, &dy).map_err(fail)?;
        let mut db = poisoned::<f32>(&stream, cols)?;
        train::bias_grad(&stream, &gdy, &mut db).map_err(fail)?;
        let mut want = vec![0.0f64; cols];
        for r in 0..rows {
            for (j, w) in want.iter_mut().enumerate() {
                *w += f64::from(dy[r * cols + j].to_f32());
            }
        }
        let err = rel_err(&to_f64(&db.to_vec(&stream).map_err(fail)?), &want);
        ensure!(
            err.is_finite() && err <= bound,
            "{} {rows}x{cols}: error {err:e} > {bound:e}",
            T::SUFFIX
        );
    }
    Ok(())
}

fn cast_exact(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    for n in [1usize, 257, 65_521] {
        let mut src = random(n, -70000.0, 70000.0);
        src.extend(random(n, -1e-3, 1e-3));
        let g = DeviceBuffer::from_slice(&stream, &src).map_err(fail)?;
        let mut h = poisoned::<f16>(&stream, src.len())?;
        let mut b = poisoned::<bf16>(&stream, src.len())?;
        train::cast_f32(&stream, &g, &mut h).map_err(fail)?;
        train::cast_f32(&stream, &g, &mut b).map_err(fail)?;
        let (h, b) = (
            h.to_vec(&stream).map_err(fail)?,
            b.to_vec(&stream).map_err(fail)?,
        );
        for (i, &x) in src.iter().enumerate() {
            ensure!(
                h[i].to_bits() == f16::from_f32(x).to_bits(),
                "f16 of {x}: {} not {}",
                h[i],
                f16::from_f32(x)
            );
            ensure!(
                b[i].to_bits() == bf16::from_f32(x).to_bits(),
                "bf16 of {x}: {} not {}",
                b[i],
                bf16::from_f32(x)
            );
        }
    }
    Ok(())
}

fn sgd_step(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let sgd = Sgd {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 1e-3,
    };
    let scale = 512.0f32;
    for n in [1usize, 31, 257, 1_000_003] {
        let (w, v, g) = (
            random(n, -1.0, 1.0),
            random(n, -0.1, 0.1),
            random(n, -100.0, 100.0),
        );
        let mut gw = DeviceBuffer::from_slice(&stream, &w).map_err(fail)?;
        let mut gv = DeviceBuffer::from_slice(&stream, &v).map_err(fail)?;
        let gg = DeviceBuffer::from_slice(&stream, &g).map_err(fail)?;
        let mut lp = poisoned::<f16>(&stream, n)?;
        let mut scaler = LossScaler::new(&stream, scale, 0).map_err(fail)?;
        scaler.check(&stream, &gg).map_err(fail)?;
        sgd.step(&stream, &scaler, &mut gw, &mut gv, &gg, &mut lp)
            .map_err(fail)?;
        scaler.update(&stream).map_err(fail)?;
        let (mut want_w, mut want_v) = (vec![0.0; n], vec![0.0; n]);
        for i in 0..n {
            let d =
                f64::from(g[i]) / f64::from(scale) + f64::from(sgd.weight_decay) * f64::from(w[i]);
            want_v[i] = f64::from(sgd.momentum) * f64::from(v[i]) + d;
            want_w[i] = f64::from(w[i]) - f64::from(sgd.lr) * want_v[i];
        }
        let got_w = to_f64(&gw.to_vec(&stream).map_err(fail)?);
        let got_v = to_f64(&gv.to_vec(&stream).map_err(fail)?);
        let got_lp = to_f64(&lp.to_vec(&stream).map_err(fail)?);
        for (what, got, want, bound) in [
            ("w", &got_w, &want_w, 1e-6),
            ("v", &got_v, &want_v, 1e-6),
            ("w as f16", &got_lp, &want_w, 1e-3),
        ] {
            let err = rel_err(got, want);
            ensure!(
                err.is_finite() && err <= bound,
                "n={n} {what}: error {err:e} > {bound:e}"
            );
        }
        let st = scaler.state(&stream).map_err(fail)?;
        ensure!(
            st.scale == scale && st.skipped_steps == 0 && !st.found_nonfinite,
            "state after a good step: {st:?}"
        );
        // f32-only variant: same update, no copy.
        let mut gw2 = DeviceBuffer::from_slice(&stream, &w).map_err(fail)?;
        let mut gv2 = DeviceBuffer::from_slice(&stream, &v).map_err(fail)?;
        sgd.step_f32(&stream, &scaler, &mut gw2, &mut gv2, &gg)
            .map_err(fail)?;
        let err = rel_err(&to_f64(&gw2.to_vec(&stream).map_err(fail)?), &want_w);
        ensure!(err <= 1e-6, "n={n} step_f32: error {err:e}");
    }
    Ok(())
}

fn loss_scaler_policy(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let sgd = Sgd {
        lr: 0.1,
        momentum: 0.0,
        weight_decay: 0.0,
    };
    let n = 4099;
    let w = random(n, -1.0, 1.0);
    let mut gw = DeviceBuffer::from_slice(&stream, &w).map_err(fail)?;
    let mut gv = DeviceBuffer::<f32>::zeroed(&stream, n).map_err(fail)?;
    let mut lp = DeviceBuffer::from_slice(&stream, &vec![f16::from_f32(7.0); n]).map_err(fail)?;
    let mut scaler = LossScaler::new(&stream, 1024.0, 2).map_err(fail)?;
    // An overflow anywhere (here one NaN in a second gradient tensor) skips every step.
    let good = DeviceBuffer::from_slice(&stream, &random(n, -1.0, 1.0)).map_err(fail)?;
    let mut bad_h = random(n, -1.0, 1.0);
    bad_h[n - 1] = f32::NAN;
    let bad = DeviceBuffer::from_slice(&stream, &bad_h).map_err(fail)?;
    scaler.check(&stream, &good).map_err(fail)?;
    scaler.check(&stream, &bad).map_err(fail)?;
    ensure!(
        scaler.state(&stream).map_err(fail)?.found_nonfinite,
        "NaN not flagged"
    );
    sgd.step(&stream, &scaler, &mut gw, &mut gv, &good, &mut lp)
        .map_err(fail)?;
    scaler.update(&stream).map_err(fail)?;
    ensure!(
        gw.to_vec(&stream).map_err(fail)? == w,
        "weights changed on a skipped step"
    );
    ensure!(
        lp.to_vec(&stream)
            .map_err(fail)?
            .iter()
            .all(|x| x.to_f32() == 7.0),
        "working copy written on a skipped step"
    );
    let st = scaler.state(&stream).map_err(fail)?;
    ensure!(
        st.scale == 512.0 && st.skipped_steps == 1 && st.good_steps == 0 && !st.found_nonfinite,
        "after an overflow: {st:?}"
    );
    // Two good steps in a row (growth interval 2) double the scale.
    for _ in 0..2 {
        scaler.check(&stream, &good).map_err(fail)?;
        sgd.step(&stream, &scaler, &mut gw, &mut gv, &good, &mut lp)
            .map_err(fail)?;
        scaler.update(&stream).map_err(fail)?;
    }
    let st = scaler.state(&stream).map_err(fail)?;
    ensure!(
        st.scale == 1024.0 && st.skipped_steps == 1 && st.good_steps == 0,
        "after two good steps: {st:?}"
    );
    ensure!(
        gw.to_vec(&stream).map_err(fail)? != w,
        "good steps did not move the weights"
    );
    Ok(())
}

fn shape_errors(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let logits = DeviceBuffer::<f32>::zeroed(&stream, 30).map_err(fail)?;
    let labels = DeviceBuffer::<u32>::zeroed(&stream, 3).map_err(fail)?;
    let mut grad = DeviceBuffer::<f16>::zeroed(&stream, 30).map_err(fail)?;
    let mut loss = DeviceBuffer::<f32>::zeroed(&stream, 3).map_err(fail)?;
    let r = train::softmax_cross_entropy(&stream, &logits, &labels, 7, None, &mut grad, &mut loss);
    ensure!(
        matches!(r, Err(Error::ShapeMismatch { .. })),
        "30 % 7: {r:?}"
    );
    let r = train::softmax_cross_entropy(&stream, &logits, &labels, 0, None, &mut grad, &mut loss);
    ensure!(
        matches!(r, Err(Error::InvalidDimension { .. })),
        "0 classes: {r:?}"
    );
    let r = train::softmax_cross_entropy(&stream, &logits, &labels, 5, None, &mut grad, &mut loss);
    ensure!(
        matches!(r, Err(Error::LengthMismatch { .. })),
        "6 rows, 3 labels: {r:?}"
    );
    let mut db = DeviceBuffer::<f32>::zeroed(&stream, 4).map_err(fail)?;
    let r = train::bias_grad(&stream, &grad, &mut db);
    ensure!(
        matches!(r, Err(Error::ShapeMismatch { .. })),
        "30 % 4: {r:?}"
    );
    let y = DeviceBuffer::<f16>::zeroed(&stream, 29).map_err(fail)?;
    let r = train::relu_backward(&stream, &y, &mut grad);
    ensure!(
        matches!(r, Err(Error::LengthMismatch { .. })),
        "relu: {r:?}"
    );
    let r = LossScaler::new(&stream, 1.0, LossScaler::MAX_GROWTH_INTERVAL + 1);
    ensure!(
        matches!(r, Err(Error::TooLarge { max, .. }) if max == 1 << 24),
        "growth interval past 2^24: {r:?}"
    );
    LossScaler::new(&stream, 1.0, LossScaler::MAX_GROWTH_INTERVAL).map_err(fail)?;
    for bad in [0.0f32, -1.0, f32::INFINITY, f32::NAN, 1e30] {
        let r = LossScaler::new(&stream, bad, 10);
        ensure!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "scale {bad}: {r:?}"
        );
    }
    let scaler = LossScaler::new(&stream, 1.0, 10).map_err(fail)?;
    let mut w = DeviceBuffer::<f32>::zeroed(&stream, 10).map_err(fail)?;
    let mut v = DeviceBuffer::<f32>::zeroed(&stream, 9).map_err(fail)?;
    let g = DeviceBuffer::<f32>::zeroed(&stream, 10).map_err(fail)?;
    let sgd = Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let r = sgd.step_f32(&stream, &scaler, &mut w, &mut v, &g);
    ensure!(matches!(r, Err(Error::LengthMismatch { .. })), "sgd: {r:?}");
    Ok(())
}
