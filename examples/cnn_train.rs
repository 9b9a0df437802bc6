//! Mixed-precision training of a small CNN on the GPU, checked against the same model trained on
//! the CPU.
//!
//!     cargo run --release --example cnn_train
//!
//! **The model** (NHWC, f16 activations): the 8×8 digits (one channel) → conv 3×3, 16 filters,
//! padding 1, bias and ReLU fused in the epilogue → conv 3×3, stride 2 (the downsampling a
//! pooling layer would do), 32 filters, bias and ReLU → 4×4×32 = 512 features → a GEMM head to 10
//! classes (f32 logits) → softmax cross-entropy ([`train::softmax_cross_entropy`]) multiplied by a
//! dynamic loss scale.
//!
//! **The backward pass**: the head's weight and data gradients (GEMMs) and the ReLU mask, then for
//! each convolution its filter and bias gradients ([`Conv2dGrad::filter`], [`Conv2dGrad::bias`],
//! f32) and, for the second, the data gradient through the first one's ReLU, the mask fused in
//! the kernel's epilogue ([`Conv2dGrad::data_through_relu`]); an overflow check, and SGD with
//! momentum on f32 master weights, which refreshes their f16 copies. The whole step (forward,
//! backward, update: some 30 kernels) is captured once as a CUDA [`Graph`] and replayed; each
//! step's batch is copied into the graph's input buffers before its replay.
//!
//! **The CPU twin**: the same model in f32, the same seeded initialization, the same batches in
//! the same order and the same SGD, trained step for step beside the GPU. The check passes
//! (exit status 0) when the GPU's test accuracy is within 0.5 points of the CPU's and at least
//! 90 %. Then the captured step is replayed without copies, timed with CUDA events: images/s at
//! batch 64 (`scripts/reference/torch_cnn_train.py` is the same step in PyTorch).

use hikube_gpu::half::f16;
use hikube_gpu::ops::conv2d::{Conv2d, Conv2dDesc, Conv2dGrad};
use hikube_gpu::ops::matmul::{Epilogue, Layout, Matmul, MatmulDesc};
use hikube_gpu::ops::train::{self, LossScaler, Sgd};
use hikube_gpu::ops::Activation;
use hikube_gpu::{Device, DeviceBuffer, Event, Graph, Result, Stream};
use std::process::ExitCode;

#[path = "shared/digits.rs"]
mod digits;
use digits::{
    accuracy, argmax_rows, gather, load_digits, replay_batch, to_f16, train_epochs, Rng, Training,
};

const BATCH: usize = 64;
const CLASSES: usize = 10;
const EPOCHS: usize = 30;
const SEED: u64 = 2026;
const INITIAL_LOSS_SCALE: f32 = 1024.0;

/// The two convolutions for `n` images (bias and ReLU in their epilogues), and the head's
/// input width.
fn convs(n: usize) -> [Conv2dDesc; 2] {
    let relu = |d: Conv2dDesc| d.activation(Activation::Relu);
    [
        relu(
            Conv2dDesc::input(n, 8, 8, 1)
                .filters(16, 3, 3)
                .padding(1, 1),
        ),
        relu(
            Conv2dDesc::input(n, 8, 8, 16)
                .filters(32, 3, 3)
                .stride(2, 2)
                .padding(1, 1),
        ),
    ]
}
const FEATURES: usize = 4 * 4 * 32;

/// Initial parameters shared by both sides: He-uniform weights (the convolutions' KRSC, the
/// head's 512 × 10 row-major), zero biases.
struct Init {
    w: [Vec<f32>; 3],
    b: [Vec<f32>; 3],
}

impl Init {
    fn new(seed: u64) -> Init {
        let mut rng = Rng(seed);
        let [c1, c2] = convs(1);
        let mut weights = |fan_in: usize, len: usize| -> Vec<f32> {
            let bound = (6.0 / fan_in as f32).sqrt();
            (0..len).map(|_| rng.uniform(-bound, bound)).collect()
        };
        let w = [
            weights(9 * c1.c, c1.filter_len()),
            weights(9 * c2.c, c2.filter_len()),
            weights(FEATURES, FEATURES * CLASSES),
        ];
        Init {
            w,
            b: [vec![0.0; c1.k], vec![0.0; c2.k], vec![0.0; CLASSES]],
        }
    }
}

/// One layer's parameters on the GPU: f32 master weights and bias, their momentum and
/// gradients, and the f16 working copy of the weights (the f32 bias feeds the epilogues as it is).
struct Param {
    w: DeviceBuffer<f32>,
    w16: DeviceBuffer<f16>,
    vw: DeviceBuffer<f32>,
    dw: DeviceBuffer<f32>,
    b: DeviceBuffer<f32>,
    vb: DeviceBuffer<f32>,
    db: DeviceBuffer<f32>,
}

impl Param {
    fn new(stream: &Stream, w: &[f32], b: &[f32]) -> Result<Param> {
        let mut p = Param {
            w: DeviceBuffer::from_slice(stream, w)?,
            w16: DeviceBuffer::alloc(stream, w.len())?,
            vw: DeviceBuffer::zeroed(stream, w.len())?,
            dw: DeviceBuffer::zeroed(stream, w.len())?,
            b: DeviceBuffer::from_slice(stream, b)?,
            vb: DeviceBuffer::zeroed(stream, b.len())?,
            db: DeviceBuffer::zeroed(stream, b.len())?,
        };
        train::cast_f32(stream, &p.w, &mut p.w16)?;
        Ok(p)
    }
}

/// One batch on the GPU, written between replays of the captured step.
struct Inputs {
    x: DeviceBuffer<f16>,
    labels: DeviceBuffer<u32>,
}

/// Everything a training step reads and writes, and its plans: the captured graph's resources.
struct Step {
    p: [Param; 3],
    conv: [Conv2d<f16, f16>; 2],
    grad: [Conv2dGrad<f16>; 2],
    head: Matmul<f16, f32>,
    head_wgrad: Matmul<f16, f32>,
    head_dgrad: Matmul<f16, f16>,
    a1: DeviceBuffer<f16>,
    a2: DeviceBuffer<f16>,
    da1: DeviceBuffer<f16>,
    da2: DeviceBuffer<f16>,
    logits: DeviceBuffer<f32>,
    dlogits: DeviceBuffer<f16>,
    row_loss: DeviceBuffer<f32>,
    scaler: LossScaler,
    sgd: Sgd,
}

impl Step {
    fn new(stream: &Stream, init: &Init, sgd: Sgd) -> Result<Step> {
        let [c1, c2] = convs(BATCH);
        let p = [0, 1, 2].map(|l| Param::new(stream, &init.w[l], &init.b[l]));
        let [p0, p1, p2] = p;
        Ok(Step {
            p: [p0?, p1?, p2?],
            conv: [Conv2d::new(stream, c1)?, Conv2d::new(stream, c2)?],
            grad: [
                Conv2dGrad::new(stream, c1.activation(Activation::None))?,
                Conv2dGrad::new(stream, c2.activation(Activation::None))?,
            ],
            head: Matmul::new(stream, MatmulDesc::new(BATCH, CLASSES, FEATURES))?,
            // dW (512 × 10) = a2ᵀ · dlogits: a2 is batch × 512 row-major, a2ᵀ column-major.
            head_wgrad: Matmul::new(
                stream,
                MatmulDesc::new(FEATURES, CLASSES, BATCH).a_layout(Layout::ColMajor),
            )?,
            // da2 (batch × 512) = dlogits · Wᵀ: W row-major is Wᵀ column-major.
            head_dgrad: Matmul::new(
                stream,
                MatmulDesc::new(BATCH, FEATURES, CLASSES).b_layout(Layout::ColMajor),
            )?,
            a1: DeviceBuffer::alloc(stream, c1.output_len())?,
            a2: DeviceBuffer::alloc(stream, c2.output_len())?,
            da1: DeviceBuffer::alloc(stream, c1.output_len())?,
            da2: DeviceBuffer::alloc(stream, c2.output_len())?,
            logits: DeviceBuffer::alloc(stream, BATCH * CLASSES)?,
            dlogits: DeviceBuffer::alloc(stream, BATCH * CLASSES)?,
            row_loss: DeviceBuffer::alloc(stream, BATCH)?,
            scaler: LossScaler::new(stream, INITIAL_LOSS_SCALE, 100)?,
            sgd,
        })
    }

    /// Queues one training step on `s` (eagerly, or into a capture) for the batch in `inputs`.
    fn queue(&mut self, s: &Stream, inputs: &Inputs) -> Result<()> {
        let [p0, p1, p2] = &mut self.p;
        let [conv1, conv2] = &mut self.conv;
        conv1.launch(
            s,
            &inputs.x,
            &p0.w16,
            &mut self.a1,
            Epilogue::new().bias(&p0.b),
        )?;
        conv2.launch(
            s,
            &self.a1,
            &p1.w16,
            &mut self.a2,
            Epilogue::new().bias(&p1.b),
        )?;
        let head = Epilogue::new().bias(&p2.b);
        self.head
            .launch(s, &self.a2, &p2.w16, &mut self.logits, head)?;
        let labels = &inputs.labels;
        let scaler = Some(&self.scaler);
        let (dlogits, row_loss) = (&mut self.dlogits, &mut self.row_loss);
        train::softmax_cross_entropy(s, &self.logits, labels, CLASSES, scaler, dlogits, row_loss)?;

        self.head_wgrad
            .launch(s, &self.a2, &self.dlogits, &mut p2.dw, Epilogue::new())?;
        train::bias_grad(s, &self.dlogits, &mut p2.db)?;
        self.head_dgrad
            .launch(s, &self.dlogits, &p2.w16, &mut self.da2, Epilogue::new())?;
        train::relu_backward(s, &self.a2, &mut self.da2)?;
        let [grad1, grad2] = &mut self.grad;
        grad2.filter(s, &self.a1, &self.da2, &mut p1.dw)?;
        grad2.bias(s, &self.da2, &mut p1.db)?;
        grad2.data_through_relu(s, &self.da2, &p1.w16, &self.a1, &mut self.da1)?;
        grad1.filter(s, &inputs.x, &self.da1, &mut p0.dw)?;
        grad1.bias(s, &self.da1, &mut p0.db)?;

        for p in &self.p {
            self.scaler.check(s, &p.dw)?;
            self.scaler.check(s, &p.db)?;
        }
        let (sgd, scaler) = (&self.sgd, &self.scaler);
        for p in &mut self.p {
            sgd.step(s, scaler, &mut p.w, &mut p.vw, &p.dw, &mut p.w16)?;
            sgd.step_f32(s, scaler, &mut p.b, &mut p.vb, &p.db)?;
        }
        self.scaler.update(s)
    }
}

/// The model's class predictions for `x` (8×8 images, f16) with the step's f16 weights.
fn predict(stream: &Stream, step: &Step, x: &[f16]) -> Result<Vec<usize>> {
    let n = x.len() / 64;
    let [c1, c2] = convs(n);
    let x = DeviceBuffer::from_slice(stream, x)?;
    let mut a1 = DeviceBuffer::<f16>::alloc(stream, c1.output_len())?;
    let mut a2 = DeviceBuffer::<f16>::alloc(stream, c2.output_len())?;
    let mut logits = DeviceBuffer::<f32>::alloc(stream, n * CLASSES)?;
    let p = &step.p;
    Conv2d::new(stream, c1)?.launch(
        stream,
        &x,
        &p[0].w16,
        &mut a1,
        Epilogue::new().bias(&p[0].b),
    )?;
    Conv2d::new(stream, c2)?.launch(
        stream,
        &a1,
        &p[1].w16,
        &mut a2,
        Epilogue::new().bias(&p[1].b),
    )?;
    let head = Matmul::<f16, f32>::new(stream, MatmulDesc::new(n, CLASSES, FEATURES))?;
    head.launch(
        stream,
        &a2,
        &p[2].w16,
        &mut logits,
        Epilogue::new().bias(&p[2].b),
    )?;
    Ok(argmax_rows(&logits.to_vec(stream)?, CLASSES))
}

/// Calls `f(x index, w index, y index)` for every multiply-add of the convolution `d`.
fn taps(d: &Conv2dDesc, mut f: impl FnMut(usize, usize, usize)) {
    let (p, q) = d.output_hw();
    for n in 0..d.n {
        for (oh, ow) in (0..p).flat_map(|a| (0..q).map(move |b| (a, b))) {
            for (r, s) in (0..d.r).flat_map(|a| (0..d.s).map(move |b| (a, b))) {
                let ih = (oh * d.stride.0 + r)
                    .checked_sub(d.padding.0)
                    .filter(|&v| v < d.h);
                let iw = (ow * d.stride.1 + s)
                    .checked_sub(d.padding.1)
                    .filter(|&v| v < d.w);
                let (Some(ih), Some(iw)) = (ih, iw) else {
                    continue;
                };
                for k in 0..d.k {
                    let y = ((n * p + oh) * q + ow) * d.k + k;
                    for c in 0..d.c {
                        f(
                            ((n * d.h + ih) * d.w + iw) * d.c + c,
                            ((k * d.r + r) * d.s + s) * d.c + c,
                            y,
                        );
                    }
                }
            }
        }
    }
}

/// The same CNN on the CPU, f32.
struct Cpu {
    w: [Vec<f32>; 3],
    b: [Vec<f32>; 3],
    vw: [Vec<f32>; 3],
    vb: [Vec<f32>; 3],
    sgd: Sgd,
}

impl Cpu {
    fn new(init: &Init, sgd: Sgd) -> Cpu {
        let zeros = |v: &[Vec<f32>; 3]| v.clone().map(|v| vec![0.0; v.len()]);
        Cpu {
            vw: zeros(&init.w),
            vb: zeros(&init.b),
            w: init.w.clone(),
            b: init.b.clone(),
            sgd,
        }
    }

    /// a1, a2 (after ReLU) and the logits for `n` images.
    fn forward(&self, x: &[f32], n: usize) -> [Vec<f32>; 3] {
        let [c1, c2] = convs(n);
        let conv = |d: &Conv2dDesc, x: &[f32], w: &[f32], b: &[f32]| {
            let mut y = vec![0.0f32; d.output_len()];
            taps(d, |xi, wi, yi| y[yi] += x[xi] * w[wi]);
            for (i, v) in y.iter_mut().enumerate() {
                *v = (*v + b[i % d.k]).max(0.0);
            }
            y
        };
        let a1 = conv(&c1, x, &self.w[0], &self.b[0]);
        let a2 = conv(&c2, &a1, &self.w[1], &self.b[1]);
        let mut logits = vec![0.0f32; n * CLASSES];
        for (i, row) in logits.chunks_mut(CLASSES).enumerate() {
            for (j, out) in row.iter_mut().enumerate() {
                let dot: f32 = (0..FEATURES)
                    .map(|f| a2[i * FEATURES + f] * self.w[2][f * CLASSES + j])
                    .sum();
                *out = dot + self.b[2][j];
            }
        }
        [a1, a2, logits]
    }

    /// One SGD step on a batch; returns the mean loss.
    fn step(&mut self, x: &[f32], labels: &[u32]) -> f32 {
        let n = labels.len();
        let [c1, c2] = convs(n);
        let [a1, a2, mut dz] = self.forward(x, n);
        let mut loss = 0.0;
        for (row, &label) in dz.chunks_mut(CLASSES).zip(labels) {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            row.iter_mut().for_each(|v| *v = (*v - m).exp());
            let sum: f32 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= sum * n as f32);
            loss -= (row[label as usize] * n as f32).ln();
            row[label as usize] -= 1.0 / n as f32;
        }
        let mut dw = self.w.clone().map(|w| vec![0.0f32; w.len()]);
        let mut db = self.b.clone().map(|b| vec![0.0f32; b.len()]);
        let mut da2 = vec![0.0f32; a2.len()];
        for (i, row) in dz.chunks(CLASSES).enumerate() {
            for (j, &g) in row.iter().enumerate() {
                db[2][j] += g;
                for f in 0..FEATURES {
                    dw[2][f * CLASSES + j] += a2[i * FEATURES + f] * g;
                    da2[i * FEATURES + f] += self.w[2][f * CLASSES + j] * g;
                }
            }
        }
        let mask = |g: &mut [f32], a: &[f32]| {
            g.iter_mut().zip(a).for_each(|(g, &a)| {
                if a <= 0.0 {
                    *g = 0.0
                }
            })
        };
        mask(&mut da2, &a2);
        let mut da1 = vec![0.0f32; a1.len()];
        taps(&c2, |xi, wi, yi| {
            dw[1][wi] += a1[xi] * da2[yi];
            da1[xi] += self.w[1][wi] * da2[yi];
        });
        mask(&mut da1, &a1);
        taps(&c1, |xi, wi, yi| dw[0][wi] += x[xi] * da1[yi]);
        for (l, dy) in [(0, &da1), (1, &da2)] {
            let k = self.b[l].len();
            dy.iter().enumerate().for_each(|(i, &g)| db[l][i % k] += g);
        }
        for l in 0..3 {
            self.update(l, &dw[l], &db[l]);
        }
        loss / n as f32
    }

    fn update(&mut self, l: usize, dw: &[f32], db: &[f32]) {
        let Sgd {
            lr,
            momentum,
            weight_decay,
        } = self.sgd;
        let rule = |w: &mut f32, v: &mut f32, g: f32| {
            *v = momentum * *v + g + weight_decay * *w;
            *w -= lr * *v;
        };
        for ((w, v), &g) in self.w[l].iter_mut().zip(&mut self.vw[l]).zip(dw) {
            rule(w, v, g);
        }
        for ((w, v), &g) in self.b[l].iter_mut().zip(&mut self.vb[l]).zip(db) {
            rule(w, v, g);
        }
    }
}

fn train(device: &Device) -> Result<bool> {
    let (features, x, y) = load_digits();
    let n = y.len();
    let mut rng = Rng(SEED);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let (train_idx, test_idx) = order.split_at(n * 4 / 5);
    let (x_test, y_test) = gather(&x, &y, features, test_idx);
    let init = Init::new(SEED + 1);
    let sgd = Sgd {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 1e-4,
    };
    println!(
        "digits (UCI, 8x8): {} train / {} test; CNN conv3x3x16 -> conv3x3x32/2 -> head 512x10, \
         batch {BATCH}, {EPOCHS} epochs, SGD lr {} momentum {}",
        train_idx.len(),
        test_idx.len(),
        sgd.lr,
        sgd.momentum
    );
    let stream = device.new_stream()?;
    let mut inputs = Inputs {
        x: DeviceBuffer::zeroed(&stream, BATCH * features)?,
        labels: DeviceBuffer::zeroed(&stream, BATCH)?,
    };
    // One eager step loads every kernel (module loads cannot happen inside a capture); then a
    // fresh step, so that both sides train from the same point.
    Step::new(&stream, &init, sgd)?.queue(&stream, &inputs)?;
    let step = Step::new(&stream, &init, sgd)?;
    let mut graph = Graph::capture(&stream, step, |s, step| step.queue(s, &inputs))?;
    println!(
        "training step captured as a CUDA graph of {} nodes",
        graph.node_count()
    );
    let mut cpu = Cpu::new(&init, sgd);

    let mut data = Training {
        features,
        x: &x,
        y: &y,
        order: train_idx.to_vec(),
    };
    let gpu_step = |xb: &[f32], yb: &[u32]| {
        let buffers = (&mut inputs.x, &mut inputs.labels);
        replay_batch(&stream, &mut graph, buffers, (xb, yb), |step| {
            &step.row_loss
        })
    };
    let cpu_step = |xb: &[f32], yb: &[u32]| f64::from(cpu.step(xb, yb));
    let (steps, gpu_secs, cpu_secs) =
        train_epochs(&mut data, &mut rng, (EPOCHS, BATCH), gpu_step, cpu_step)?;
    println!(
        "{steps} steps: GPU {gpu_secs:.2} s (each: batch copy, graph replay, loss read back), CPU \
         {cpu_secs:.2} s"
    );
    let step = graph.into_resources()?;
    let state = step.scaler.state(&stream)?;
    println!(
        "loss scale {} ({} overflowed steps skipped)",
        state.scale, state.skipped_steps
    );
    let gpu_acc = accuracy(&predict(&stream, &step, &to_f16(&x_test))?, &y_test);
    let [_, _, logits] = cpu.forward(&x_test, y_test.len());
    let cpu_acc = accuracy(&argmax_rows(&logits, CLASSES), &y_test);
    println!(
        "test accuracy: GPU (f16 convolutions and GEMMs, f32 master weights) {gpu_acc:.2} %, \
         CPU (f32) {cpu_acc:.2} %"
    );
    time_step(device, &stream, &init, sgd, &inputs)?;
    let ok = (gpu_acc - cpu_acc).abs() <= 0.5 && gpu_acc >= 90.0;
    if ok {
        println!("check passed: the GPU model's accuracy is within 0.5 points of its CPU twin's");
    } else {
        println!("check FAILED: GPU {gpu_acc:.2} % vs CPU {cpu_acc:.2} % (need within 0.5 points, and at least 90 %)");
    }
    Ok(ok)
}

/// The captured step alone, on a fresh copy of the model: graph replays timed with CUDA events.
fn time_step(
    device: &Device,
    stream: &Stream,
    init: &Init,
    sgd: Sgd,
    inputs: &Inputs,
) -> Result<()> {
    const REPLAYS: usize = 200;
    let step = Step::new(stream, init, sgd)?;
    let mut graph = Graph::capture(stream, step, |s, step| step.queue(s, inputs))?;
    for _ in 0..10 {
        graph.launch(stream)?;
    }
    let (start, end) = (Event::new(device)?, Event::new(device)?);
    start.record(stream)?;
    for _ in 0..REPLAYS {
        graph.launch(stream)?;
    }
    end.record(stream)?;
    let ms = f64::from(start.elapsed_ms(&end)?) / REPLAYS as f64;
    println!(
        "one training step (graph replay, batch {BATCH}): {:.1} µs, {:.0} images/s",
        ms * 1e3,
        BATCH as f64 / (ms * 1e-3)
    );
    Ok(())
}

fn main() -> ExitCode {
    let run = || -> Result<bool> {
        let device = Device::open(0)?;
        println!("{} ({})", device.model().name, device.properties().name);
        train(&device)
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cnn_train: {e}");
            ExitCode::FAILURE
        }
    }
}
