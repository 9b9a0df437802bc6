//! What the training examples share: a seeded random generator both sides of a check use, the
//! UCI digits embedded from `examples/data/digits.bin`, batches, and accuracy.

use hikube_gpu::half::f16;
use hikube_gpu::{DeviceBuffer, Graph, Result, Stream};

/// Deterministic random numbers (SplitMix64), the same on both sides.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// The index of each row's largest value.
pub fn argmax_rows(logits: &[f32], cols: usize) -> Vec<usize> {
    logits
        .chunks(cols)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (j, &v)| {
                    if v > best.1 {
                        (j, v)
                    } else {
                        best
                    }
                })
                .0
        })
        .collect()
}

/// Percent of `pred` equal to `labels`.
pub fn accuracy(pred: &[usize], labels: &[u32]) -> f64 {
    let right = pred
        .iter()
        .zip(labels)
        .filter(|(p, &l)| **p == l as usize)
        .count();
    100.0 * right as f64 / labels.len() as f64
}

/// Rows `idx` of `x` (cols wide) and their labels.
pub fn gather(x: &[f32], y: &[u32], cols: usize, idx: &[usize]) -> (Vec<f32>, Vec<u32>) {
    let mut xs = Vec::with_capacity(idx.len() * cols);
    for &i in idx {
        xs.extend_from_slice(&x[i * cols..(i + 1) * cols]);
    }
    (xs, idx.iter().map(|&i| y[i]).collect())
}

pub fn to_f16(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f32(x)).collect()
}

/// `examples/data/digits.bin`: 65-byte records, 64 pixels (0-16) then the label. Returns the
/// pixel count per image, the pixels scaled to 0-1, and the labels.
pub fn load_digits() -> (usize, Vec<f32>, Vec<u32>) {
    const PIXELS: usize = 64;
    let records = include_bytes!("../data/digits.bin").chunks_exact(PIXELS + 1);
    let mut x = Vec::with_capacity(records.len() * PIXELS);
    let mut y = Vec::with_capacity(records.len());
    for r in records {
        let (pixels, label) = r.split_at(PIXELS);
        x.extend(pixels.iter().map(|&v| f32::from(v) / 16.0));
        y.extend(label.iter().map(|&l| u32::from(l)));
    }
    (PIXELS, x, y)
}

/// The training data both sides of a check see: the pixel count per image, the images and
/// labels, and the indices of the training images (the rest are the test set).
pub struct Training<'a> {
    pub features: usize,
    pub x: &'a [f32],
    pub y: &'a [u32],
    pub order: Vec<usize>,
}

/// Trains `epochs` epochs of `batch`-image batches (the order reshuffled by `rng` each epoch):
/// `gpu(images, labels)` and `cpu(images, labels)` each take one step and return its mean
/// loss; prints both sides' mean losses at epoch 1 and every fifth. Returns the steps taken and
/// the seconds each side spent.
pub fn train_epochs<E>(
    data: &mut Training<'_>,
    rng: &mut Rng,
    (epochs, batch): (usize, usize),
    mut gpu: impl FnMut(&[f32], &[u32]) -> Result<f64, E>,
    mut cpu: impl FnMut(&[f32], &[u32]) -> f64,
) -> Result<(usize, f64, f64), E> {
    let steps_per_epoch = data.order.len() / batch;
    let (mut gpu_secs, mut cpu_secs) = (0.0f64, 0.0f64);
    println!("epoch   GPU loss   CPU loss");
    for epoch in 1..=epochs {
        rng.shuffle(&mut data.order);
        let (mut gpu_loss, mut cpu_loss) = (0.0f64, 0.0f64);
        for b in 0..steps_per_epoch {
            let rows = &data.order[b * batch..(b + 1) * batch];
            let (xb, yb) = gather(data.x, data.y, data.features, rows);
            let t = std::time::Instant::now();
            gpu_loss += gpu(&xb, &yb)?;
            gpu_secs += t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            cpu_loss += cpu(&xb, &yb);
            cpu_secs += t.elapsed().as_secs_f64();
        }
        if epoch == 1 || epoch % 5 == 0 {
            let per = steps_per_epoch as f64;
            println!(
                "{epoch:>5}   {:>8.4}   {:>8.4}",
                gpu_loss / per,
                cpu_loss / per
            );
        }
    }
    Ok((epochs * steps_per_epoch, gpu_secs, cpu_secs))
}

/// One training step on the GPU: copies a batch into the graph's input buffers (ordered after
/// the previous replay, which read them), replays the captured step, and returns the batch's
/// mean loss (`row_loss` of the step's resources, one per image).
pub fn replay_batch<R>(
    stream: &Stream,
    graph: &mut Graph<R>,
    (x, labels): (&mut DeviceBuffer<f16>, &mut DeviceBuffer<u32>),
    (xb, yb): (&[f32], &[u32]),
    row_loss: impl Fn(&R) -> &DeviceBuffer<f32>,
) -> Result<f64> {
    x.copy_from_host(stream, &to_f16(xb))?;
    labels.copy_from_host(stream, yb)?;
    graph.launch(stream)?;
    let losses = row_loss(graph.resources()).to_vec(stream)?;
    Ok(losses.iter().map(|&v| f64::from(v)).sum::<f64>() / yb.len() as f64)
}
