//! Mixed-precision training of an MLP on the GPU, checked against the same model trained on the
//! CPU.
//!
//!     cargo run --release --example mlp_train               # the 8x8 digits, GPU vs CPU
//!     cargo run --release --example mlp_train -- --synthetic   # throughput: hidden 4096, batch 8192
//!
//! The step: forward through the crate's FP16 GEMMs with bias and ReLU fused in the epilogue,
//! logits in f32, softmax cross-entropy ([`train::softmax_cross_entropy`]) whose gradient is
//! multiplied by a dynamic loss scale, backward GEMMs (`dW = Xᵀ·dY` with A column-major, f32
//! output; `dX = dY·Wᵀ` with B column-major, f16 output) with the ReLU mask and bias gradients,
//! an overflow check, and SGD with momentum on f32 master weights that unscales the gradients,
//! skips the step after an overflow and refreshes the f16 working copy. The whole step (some 30
//! kernels) is captured once as a CUDA [`Graph`] and replayed; each step's batch is copied into
//! the graph's input buffers before its replay.
//!
//! **Data.** The UCI optical-recognition handwritten digits (1797 images of 8×8 pixels, values
//! 0-16, ten classes; the set scikit-learn ships as `load_digits`), embedded from
//! `examples/data/digits.bin` (its README says where it comes from): a real data set, small
//! enough to ship inside a crate, so nothing is downloaded at build or run time, and hard enough that
//! an MLP's accuracy (about 97 %) says whether the training works. 80 % of the images (seeded
//! shuffle) train, 20 % test.
//!
//! **The CPU twin.** The same model (64 → 256 → 256 → 10), the same seeded initialization, the
//! same batches in the same order and the same SGD, in f32 with `ndarray`, trained step for step
//! beside the GPU. The check passes (exit status 0) when the GPU's test accuracy is within
//! 2 points of the CPU's and at least 90 %; otherwise the example exits with status 1.
//!
//! **`--synthetic`.** Four 4096 × 4096 layers (4096 classes), batch 8192, random inputs and
//! labels, fixed on the GPU (no per-step copy: this measures the step): it reports samples/s
//! and the TFLOP/s of the step's GEMMs (forward, data and weight gradients, 2·M·N·K each),
//! timed with CUDA events over graph replays after warm-up. `--hidden N`, `--batch N`,
//! `--layers N` and `--steps N` change the sizes. Its check: the loss stays finite and the
//! loss scaler skipped no more than a few steps.

use hikube_gpu::half::f16;
use hikube_gpu::ndarray::{Array1, Array2, Axis};
use hikube_gpu::ops::matmul::{Activation, Epilogue, Layout, Matmul, MatmulDesc};
use hikube_gpu::ops::train::{self, LossScaler, Sgd};
use hikube_gpu::{Device, DeviceBuffer, Event, Graph, Result, Stream};
use std::process::ExitCode;

#[path = "shared/digits.rs"]
mod digits;
use digits::{
    accuracy, argmax_rows, gather, load_digits, replay_batch, to_f16, train_epochs, Rng, Training,
};

/// Initial parameters (He-uniform weights, zero biases), as host arrays shared by both sides.
struct Init {
    dims: Vec<usize>,
    w: Vec<Vec<f32>>,
    b: Vec<Vec<f32>>,
}

impl Init {
    fn new(dims: &[usize], seed: u64) -> Init {
        let mut rng = Rng(seed);
        let mut w = Vec::new();
        let mut b = Vec::new();
        for l in 0..dims.len() - 1 {
            let bound = (6.0 / dims[l] as f32).sqrt();
            w.push(
                (0..dims[l] * dims[l + 1])
                    .map(|_| rng.uniform(-bound, bound))
                    .collect(),
            );
            b.push(vec![0.0; dims[l + 1]]);
        }
        Init {
            dims: dims.to_vec(),
            w,
            b,
        }
    }
}

/// One layer's parameters on the GPU: f32 master weights and bias, their momentum and
/// gradients, and the f16 working copy the GEMMs read.
struct Layer {
    w: DeviceBuffer<f32>,
    w16: DeviceBuffer<f16>,
    vw: DeviceBuffer<f32>,
    dw: DeviceBuffer<f32>,
    b: DeviceBuffer<f32>,
    vb: DeviceBuffer<f32>,
    db: DeviceBuffer<f32>,
}

/// Everything a training step reads and writes, and its GEMM plans: the resources of the
/// captured graph.
struct Step {
    batch: usize,
    classes: usize,
    layers: Vec<Layer>,
    /// f16 copies of the hidden layers' biases (the last layer's f32 bias feeds its f32
    /// epilogue directly).
    b16: Vec<DeviceBuffer<f16>>,
    /// Hidden layers' outputs (after ReLU) and the gradients with respect to them.
    acts: Vec<DeviceBuffer<f16>>,
    dacts: Vec<DeviceBuffer<f16>>,
    logits: DeviceBuffer<f32>,
    dlogits: DeviceBuffer<f16>,
    row_loss: DeviceBuffer<f32>,
    hidden_fwd: Vec<Matmul<f16, f16>>,
    out_fwd: Matmul<f16, f32>,
    wgrad: Vec<Matmul<f16, f32>>,
    /// dgrad[l - 1] computes the gradient of layer l's input.
    dgrad: Vec<Matmul<f16, f16>>,
    scaler: LossScaler,
    sgd: Sgd,
}

/// One batch on the GPU: the step's inputs, kept outside the step so that new batches can be
/// written between replays of the captured step.
struct Inputs {
    x: DeviceBuffer<f16>,
    labels: DeviceBuffer<u32>,
}

impl Inputs {
    fn new(stream: &Stream, batch: usize, features: usize) -> Result<Inputs> {
        Ok(Inputs {
            x: DeviceBuffer::zeroed(stream, batch * features)?,
            labels: DeviceBuffer::zeroed(stream, batch)?,
        })
    }
}

const INITIAL_LOSS_SCALE: f32 = 1024.0;

impl Step {
    fn new(stream: &Stream, init: &Init, batch: usize, sgd: Sgd, growth: u32) -> Result<Step> {
        let dims = &init.dims;
        let nl = dims.len() - 1;
        let classes = dims[nl];
        let mut layers = Vec::new();
        let mut b16 = Vec::new();
        let (mut hidden_fwd, mut wgrad, mut dgrad) = (Vec::new(), Vec::new(), Vec::new());
        let (mut acts, mut dacts) = (Vec::new(), Vec::new());
        for l in 0..nl {
            let (fan_in, fan_out) = (dims[l], dims[l + 1]);
            layers.push(Layer {
                w: DeviceBuffer::alloc(stream, fan_in * fan_out)?,
                w16: DeviceBuffer::alloc(stream, fan_in * fan_out)?,
                vw: DeviceBuffer::alloc(stream, fan_in * fan_out)?,
                dw: DeviceBuffer::alloc(stream, fan_in * fan_out)?,
                b: DeviceBuffer::alloc(stream, fan_out)?,
                vb: DeviceBuffer::alloc(stream, fan_out)?,
                db: DeviceBuffer::alloc(stream, fan_out)?,
            });
            // dW (fan_in × fan_out) = Xᵀ · dY: X is batch × fan_in row-major, i.e. Xᵀ
            // column-major.
            wgrad.push(Matmul::new(
                stream,
                MatmulDesc::new(fan_in, fan_out, batch).a_layout(Layout::ColMajor),
            )?);
            if l > 0 {
                // dX (batch × fan_in) = dY · Wᵀ: W is fan_in × fan_out row-major, i.e. Wᵀ
                // column-major.
                dgrad.push(Matmul::new(
                    stream,
                    MatmulDesc::new(batch, fan_in, fan_out).b_layout(Layout::ColMajor),
                )?);
            }
            if l + 1 < nl {
                b16.push(DeviceBuffer::alloc(stream, fan_out)?);
                acts.push(DeviceBuffer::alloc(stream, batch * fan_out)?);
                dacts.push(DeviceBuffer::alloc(stream, batch * fan_out)?);
                hidden_fwd.push(Matmul::new(
                    stream,
                    MatmulDesc::new(batch, fan_out, fan_in).activation(Activation::Relu),
                )?);
            }
        }
        let out_fwd = Matmul::new(stream, MatmulDesc::new(batch, classes, dims[nl - 1]))?;
        let mut step = Step {
            batch,
            classes,
            layers,
            b16,
            acts,
            dacts,
            logits: DeviceBuffer::alloc(stream, batch * classes)?,
            dlogits: DeviceBuffer::alloc(stream, batch * classes)?,
            row_loss: DeviceBuffer::alloc(stream, batch)?,
            hidden_fwd,
            out_fwd,
            wgrad,
            dgrad,
            scaler: LossScaler::new(stream, INITIAL_LOSS_SCALE, growth)?,
            sgd,
        };
        step.reset(stream, init, growth)?;
        Ok(step)
    }

    /// Sets the parameters to `init`, the momentum to zero and the loss scaler to its start.
    fn reset(&mut self, stream: &Stream, init: &Init, growth: u32) -> Result<()> {
        for (l, layer) in self.layers.iter_mut().enumerate() {
            layer.w.copy_from_host(stream, &init.w[l])?;
            layer.b.copy_from_host(stream, &init.b[l])?;
            layer.vw.fill(stream, 0.0)?;
            layer.vb.fill(stream, 0.0)?;
            train::cast_f32(stream, &layer.w, &mut layer.w16)?;
            if let Some(b16) = self.b16.get_mut(l) {
                train::cast_f32(stream, &layer.b, b16)?;
            }
        }
        self.scaler = LossScaler::new(stream, INITIAL_LOSS_SCALE, growth)?;
        Ok(())
    }

    /// Queues one training step on `s` (eagerly, or into a capture) for the batch `inputs`
    /// holds. A graph that captures it keeps the inputs' memory alive: new batches are copied
    /// into the same buffers between replays.
    fn queue(&mut self, s: &Stream, inputs: &Inputs) -> Result<()> {
        let nl = self.layers.len();
        for l in 0..nl {
            let (before, rest) = self.acts.split_at_mut(l);
            let input = if l == 0 { &inputs.x } else { &before[l - 1] };
            let layer = &self.layers[l];
            if l + 1 < nl {
                let epilogue = Epilogue::new().bias(&self.b16[l]);
                self.hidden_fwd[l].launch(s, input, &layer.w16, &mut rest[0], epilogue)?;
            } else {
                let epilogue = Epilogue::new().bias(&layer.b);
                self.out_fwd
                    .launch(s, input, &layer.w16, &mut self.logits, epilogue)?;
            }
        }
        train::softmax_cross_entropy(
            s,
            &self.logits,
            &inputs.labels,
            self.classes,
            Some(&self.scaler),
            &mut self.dlogits,
            &mut self.row_loss,
        )?;
        for l in (0..nl).rev() {
            let (below, here) = self.dacts.split_at_mut(l);
            let dz = if l + 1 == nl { &self.dlogits } else { &here[0] };
            let input = if l == 0 { &inputs.x } else { &self.acts[l - 1] };
            let layer = &mut self.layers[l];
            self.wgrad[l].launch(s, input, dz, &mut layer.dw, Epilogue::new())?;
            train::bias_grad(s, dz, &mut layer.db)?;
            if l > 0 {
                let dx = &mut below[l - 1];
                self.dgrad[l - 1].launch(s, dz, &layer.w16, dx, Epilogue::new())?;
                train::relu_backward(s, &self.acts[l - 1], dx)?;
            }
        }
        for layer in &self.layers {
            self.scaler.check(s, &layer.dw)?;
            self.scaler.check(s, &layer.db)?;
        }
        for (l, layer) in self.layers.iter_mut().enumerate() {
            let (sgd, scaler) = (&self.sgd, &self.scaler);
            sgd.step(
                s,
                scaler,
                &mut layer.w,
                &mut layer.vw,
                &layer.dw,
                &mut layer.w16,
            )?;
            match self.b16.get_mut(l) {
                Some(b16) => sgd.step(s, scaler, &mut layer.b, &mut layer.vb, &layer.db, b16)?,
                None => sgd.step_f32(s, scaler, &mut layer.b, &mut layer.vb, &layer.db)?,
            }
        }
        self.scaler.update(s)
    }

    /// GEMM FLOPs of one step: forward, weight gradient, and data gradient for all but the
    /// first layer, 2·M·N·K each.
    fn gemm_flops(&self, dims: &[usize]) -> f64 {
        let b = self.batch as f64;
        (0..dims.len() - 1)
            .map(|l| {
                let mnk = 2.0 * b * dims[l] as f64 * dims[l + 1] as f64;
                if l == 0 {
                    2.0 * mnk
                } else {
                    3.0 * mnk
                }
            })
            .sum()
    }
}

/// The model's class predictions for `x` (rows × dims[0], f16) with the step's current f16
/// weights, on the GPU.
fn predict(stream: &Stream, step: &Step, dims: &[usize], x: &[f16]) -> Result<Vec<usize>> {
    let rows = x.len() / dims[0];
    let nl = dims.len() - 1;
    let mut input = DeviceBuffer::from_slice(stream, x)?;
    for l in 0..nl - 1 {
        let mut out = DeviceBuffer::<f16>::alloc(stream, rows * dims[l + 1])?;
        let mm = Matmul::<f16, f16>::new(
            stream,
            MatmulDesc::new(rows, dims[l + 1], dims[l]).activation(Activation::Relu),
        )?;
        let epilogue = Epilogue::new().bias(&step.b16[l]);
        mm.launch(stream, &input, &step.layers[l].w16, &mut out, epilogue)?;
        input = out;
    }
    let mut logits = DeviceBuffer::<f32>::alloc(stream, rows * dims[nl])?;
    let mm = Matmul::<f16, f32>::new(stream, MatmulDesc::new(rows, dims[nl], dims[nl - 1]))?;
    let last = &step.layers[nl - 1];
    mm.launch(
        stream,
        &input,
        &last.w16,
        &mut logits,
        Epilogue::new().bias(&last.b),
    )?;
    Ok(argmax_rows(&logits.to_vec(stream)?, dims[nl]))
}

/// The same MLP on the CPU, f32, `ndarray`.
struct CpuMlp {
    w: Vec<Array2<f32>>,
    b: Vec<Array1<f32>>,
    vw: Vec<Array2<f32>>,
    vb: Vec<Array1<f32>>,
    sgd: Sgd,
}

impl CpuMlp {
    fn new(init: &Init, sgd: Sgd) -> CpuMlp {
        let d = &init.dims;
        let w: Vec<Array2<f32>> = (0..d.len() - 1)
            .map(|l| {
                Array2::from_shape_vec((d[l], d[l + 1]), init.w[l].clone())
                    .expect("init has dims[l] * dims[l + 1] weights")
            })
            .collect();
        let b: Vec<Array1<f32>> = init.b.iter().map(|b| Array1::from(b.clone())).collect();
        CpuMlp {
            vw: w.iter().map(|w| Array2::zeros(w.raw_dim())).collect(),
            vb: b.iter().map(|b| Array1::zeros(b.raw_dim())).collect(),
            w,
            b,
            sgd,
        }
    }

    /// Activations of every layer: the input, the hidden outputs, then the logits.
    fn forward(&self, x: Array2<f32>) -> Vec<Array2<f32>> {
        let nl = self.w.len();
        let mut acts = vec![x];
        for l in 0..nl {
            let mut z = acts[l].dot(&self.w[l]) + &self.b[l];
            if l + 1 < nl {
                z.mapv_inplace(|v| v.max(0.0));
            }
            acts.push(z);
        }
        acts
    }

    /// One SGD step on a batch; returns the mean loss.
    fn step(&mut self, x: Array2<f32>, labels: &[u32]) -> f32 {
        let nl = self.w.len();
        let acts = self.forward(x);
        let logits = &acts[nl];
        let rows = logits.nrows();
        let mut dz = logits.clone();
        let mut loss = 0.0;
        for (r, mut row) in dz.rows_mut().into_iter().enumerate() {
            let m = row.fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            row.mapv_inplace(|v| (v - m).exp());
            let s = row.sum();
            row.mapv_inplace(|v| v / s);
            let label = labels[r] as usize;
            loss -= row[label].ln();
            row[label] -= 1.0;
        }
        dz.mapv_inplace(|v| v / rows as f32);
        for l in (0..nl).rev() {
            let dw = acts[l].t().dot(&dz);
            let db = dz.sum_axis(Axis(0));
            if l > 0 {
                let mut dx = dz.dot(&self.w[l].t());
                dx.zip_mut_with(&acts[l], |g, &a| {
                    if a <= 0.0 {
                        *g = 0.0
                    }
                });
                self.update(l, &dw, &db);
                dz = dx;
            } else {
                self.update(l, &dw, &db);
            }
        }
        loss / rows as f32
    }

    fn update(&mut self, l: usize, dw: &Array2<f32>, db: &Array1<f32>) {
        let Sgd {
            lr,
            momentum,
            weight_decay,
        } = self.sgd;
        let rule = |w: &mut f32, v: &mut f32, g: f32| {
            *v = momentum * *v + g + weight_decay * *w;
            *w -= lr * *v;
        };
        for ((w, v), &g) in self.w[l].iter_mut().zip(self.vw[l].iter_mut()).zip(dw) {
            rule(w, v, g);
        }
        for ((w, v), &g) in self.b[l].iter_mut().zip(self.vb[l].iter_mut()).zip(db) {
            rule(w, v, g);
        }
    }

    fn predict(&self, x: Array2<f32>) -> Vec<usize> {
        let acts = self.forward(x);
        let logits = &acts[self.w.len()];
        argmax_rows(logits.as_slice().expect("standard layout"), logits.ncols())
    }
}

fn train_digits(device: &Device) -> Result<bool> {
    const EPOCHS: usize = 40;
    const BATCH: usize = 128;
    const SEED: u64 = 2026;
    let (features, x, y) = load_digits();
    let n = y.len();
    let mut rng = Rng(SEED);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let n_train = n * 4 / 5;
    let (train_idx, test_idx) = order.split_at(n_train);
    let (x_test, y_test) = gather(&x, &y, features, test_idx);
    let dims = [features, 256, 256, 10];
    let init = Init::new(&dims, SEED + 1);
    let sgd = Sgd {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 1e-4,
    };
    let growth = 100;
    println!(
        "digits (UCI, 8x8, examples/data): {n} images, {} train / {} test; MLP {:?}, batch {BATCH}, \
         {EPOCHS} epochs, SGD lr {} momentum {} weight decay {}",
        train_idx.len(),
        test_idx.len(),
        dims,
        sgd.lr,
        sgd.momentum,
        sgd.weight_decay
    );

    let stream = device.new_stream()?;
    let mut step = Step::new(&stream, &init, BATCH, sgd, growth)?;
    let mut inputs = Inputs::new(&stream, BATCH, dims[0])?;
    // One eager step loads every kernel (module loads cannot happen inside a capture), then
    // the parameters go back to their start so that both sides train from the same point.
    step.queue(&stream, &inputs)?;
    step.reset(&stream, &init, growth)?;
    let mut graph = Graph::capture(&stream, step, |s, step| step.queue(s, &inputs))?;
    println!(
        "training step captured as a CUDA graph of {} nodes",
        graph.node_count()
    );
    let mut cpu = CpuMlp::new(&init, sgd);

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
    let cpu_step = |xb: &[f32], yb: &[u32]| {
        let xb = Array2::from_shape_vec((BATCH, features), xb.to_vec()).expect("BATCH rows");
        f64::from(cpu.step(xb, yb))
    };
    let (steps, gpu_secs, cpu_secs) =
        train_epochs(&mut data, &mut rng, (EPOCHS, BATCH), gpu_step, cpu_step)?;
    let step = graph.into_resources()?;
    let state = step.scaler.state(&stream)?;
    let gpu_acc = accuracy(&predict(&stream, &step, &dims, &to_f16(&x_test))?, &y_test);
    let x_test = Array2::from_shape_vec((test_idx.len(), features), x_test).expect("test rows");
    let cpu_acc = accuracy(&cpu.predict(x_test), &y_test);
    println!(
        "{steps} steps: GPU {:.2} s ({:.0} steps/s, each: batch copy, graph replay, loss read back), \
         CPU {:.2} s",
        gpu_secs,
        steps as f64 / gpu_secs,
        cpu_secs
    );
    println!(
        "loss scale at the end {} ({} overflowed steps skipped)",
        state.scale, state.skipped_steps
    );
    println!("test accuracy: GPU (f16 GEMMs, f32 master weights) {gpu_acc:.2} %, CPU (f32) {cpu_acc:.2} %");
    let ok = (gpu_acc - cpu_acc).abs() <= 2.0 && gpu_acc >= 90.0;
    if ok {
        println!("check passed: the GPU model's accuracy is within 2 points of its CPU twin's");
    } else {
        println!("check FAILED: GPU {gpu_acc:.2} % vs CPU {cpu_acc:.2} % (need within 2 points, and at least 90 %)");
    }
    Ok(ok)
}

struct SyntheticArgs {
    hidden: usize,
    batch: usize,
    layers: usize,
    steps: usize,
}

fn synthetic(device: &Device, a: &SyntheticArgs) -> Result<bool> {
    let dims = vec![a.hidden; a.layers + 1];
    let init = Init::new(&dims, 7);
    let sgd = Sgd {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let stream = device.new_stream()?;
    let mut step = Step::new(&stream, &init, a.batch, sgd, 2000)?;
    let mut inputs = Inputs::new(&stream, a.batch, a.hidden)?;
    let mut rng = Rng(8);
    let x: Vec<f16> = (0..a.batch * a.hidden)
        .map(|_| f16::from_f32(rng.uniform(-1.0, 1.0)))
        .collect();
    let labels: Vec<u32> = (0..a.batch).map(|_| rng.below(a.hidden) as u32).collect();
    inputs.x.copy_from_host(&stream, &x)?;
    inputs.labels.copy_from_host(&stream, &labels)?;
    step.queue(&stream, &inputs)?;
    let flops = step.gemm_flops(&dims);
    let params: usize = (0..a.layers)
        .map(|l| dims[l] * dims[l + 1] + dims[l + 1])
        .sum();
    let mut graph = Graph::capture(&stream, step, |s, step| step.queue(s, &inputs))?;
    println!(
        "synthetic MLP: {} layers of {h}x{h} ({:.1} M parameters), batch {}, {} graph nodes per step",
        a.layers,
        params as f64 / 1e6,
        a.batch,
        graph.node_count(),
        h = a.hidden
    );
    for _ in 0..3 {
        graph.launch(&stream)?;
    }
    let (start, end) = (Event::new(device)?, Event::new(device)?);
    start.record(&stream)?;
    for _ in 0..a.steps {
        graph.launch(&stream)?;
    }
    end.record(&stream)?;
    let ms = f64::from(start.elapsed_ms(&end)?) / a.steps as f64;
    let step = graph.into_resources()?;
    let loss: f64 = step
        .row_loss
        .to_vec(&stream)?
        .iter()
        .map(|&v| f64::from(v))
        .sum::<f64>()
        / a.batch as f64;
    let state = step.scaler.state(&stream)?;
    let tflops = flops / (ms * 1e-3) / 1e12;
    let peak = device.model().fp16_tflops;
    println!(
        "{:.3} ms per step (mean over {} replays), {:.0} samples/s, GEMMs {:.1} TFLOP/s \
         ({:.0} % of the {:.0} TFLOP/s FP16 dense peak)",
        ms,
        a.steps,
        a.batch as f64 / (ms * 1e-3),
        tflops,
        100.0 * tflops / peak,
        peak
    );
    println!(
        "loss after {} steps {loss:.4} (random labels: ln {} = {:.4}), loss scale {}, {} steps skipped",
        a.steps + 4,
        a.hidden,
        (a.hidden as f64).ln(),
        state.scale,
        state.skipped_steps
    );
    let ok = loss.is_finite() && state.skipped_steps <= 3;
    if ok {
        println!("check passed: the loss is finite and the loss scaler skipped at most 3 steps");
    } else {
        println!(
            "check FAILED: loss {loss}, {} steps skipped",
            state.skipped_steps
        );
    }
    Ok(ok)
}

fn parse() -> std::result::Result<Option<SyntheticArgs>, String> {
    let mut synthetic = None;
    let mut args = std::env::args().skip(1);
    let mut a = SyntheticArgs {
        hidden: 4096,
        batch: 8192,
        layers: 4,
        steps: 20,
    };
    while let Some(arg) = args.next() {
        let mut num = |name: &str| -> std::result::Result<usize, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|&v: &usize| v > 0)
                .ok_or(format!("{name} needs a positive number"))
        };
        match arg.as_str() {
            "--synthetic" => synthetic = Some(()),
            "--hidden" => a.hidden = num("--hidden")?,
            "--batch" => a.batch = num("--batch")?,
            "--layers" => a.layers = num("--layers")?,
            "--steps" => a.steps = num("--steps")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(synthetic.map(|()| a))
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mlp_train: {e}\nusage: mlp_train [--synthetic [--hidden N] [--batch N] [--layers N] [--steps N]]");
            return ExitCode::from(2);
        }
    };
    let run = || -> Result<bool> {
        let device = Device::open(0)?;
        println!("{} ({})", device.model().name, device.properties().name);
        match &args {
            None => train_digits(&device),
            Some(a) => synthetic(&device, a),
        }
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mlp_train: {e}");
            ExitCode::FAILURE
        }
    }
}
