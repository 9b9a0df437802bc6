//! CNN inference: a ResNet-style network on 224×224 images, run on the GPU in f16 with f32
//! accumulation, timed at batch 1, 8 and 64, and one batch checked against the CPU.
//!
//!     cargo run --release --example cnn_inference
//!     cargo run --release --example cnn_inference -- --serve   # then keep serving batches of 64
//!
//! With `--serve` (what the Kubernetes Deployment in `deploy/k8s/` runs) it keeps replaying the
//! batch-64 graph after the check, as an inference service would, and prints the throughput every
//! ten seconds until stopped; where `HIKUBE_GPU_HEARTBEAT` names a file, it rewrites that file
//! with each figure, for the Deployment's probes.
//!
//! The network (random He-initialized weights with a fixed seed; this example measures and checks
//! the arithmetic, it does not classify anything):
//!
//! | layer | op | output |
//! |---|---|---|
//! | stem | conv 7×7 stride 2, pad 3, 3→64, bias + ReLU | 112×112×64 |
//! | down1 | conv 3×3 stride 2, 64→64, bias + ReLU | 56×56×64 |
//! | block1 | conv 3×3 64→64 + ReLU, conv 3×3 64→64 + ReLU, plus the block's input | 56×56×64 |
//! | down2 | conv 3×3 stride 2, 64→128, then conv 1×1 128→128, bias + ReLU | 28×28×128 |
//! | down3 | conv 3×3 stride 2, 128→256, bias + ReLU | 14×14×256 |
//! | block3 | conv 3×3 256→256 + ReLU, conv 3×3 256→256 + ReLU, plus the block's input | 14×14×256 |
//! | down4 | conv 3×3 stride 2, 256→512, then conv 1×1 512→512, bias + ReLU | 7×7×512 |
//! | pool | global average pooling | 512 |
//! | head | GEMM 512→1000 + bias, f32 logits | 1000 |
//!
//! Activations stay NHWC on the GPU from layer to layer (`ops::conv2d::Conv2d` plans, the
//! residual additions with `ops::axpy`, `ops::global_avg_pool`, and a `Matmul` head). Each batch
//! size's forward pass is captured once as a CUDA graph and replayed; the time per batch is the
//! median of CUDA-event timings. The check runs the same network in f64 on the CPU (rounding each
//! layer's output to f16 as the GPU stores it) for the first images of the batch-8 run and
//! compares the logits by ‖gpu − cpu‖ / ‖cpu‖. The example exits with status 1 if it fails.

use hikube_gpu::half::f16;
use hikube_gpu::ops::conv2d::{Conv2d, Conv2dDesc};
use hikube_gpu::ops::matmul::{Layout, Matmul, MatmulDesc};
use hikube_gpu::ops::{Activation, Epilogue};
use hikube_gpu::{ops, time_on_stream, AsDeviceSlice, Device, DeviceBuffer, Graph, Result, Stream};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::process::ExitCode;

const IMAGE: usize = 224;
const CLASSES: usize = 1000;
const CHECKED_IMAGES: usize = 2;
const TOLERANCE: f64 = 1e-2;

/// One convolution of the network: shape and weights on the host (for the CPU twin) and on the
/// GPU, and its plan.
struct Conv {
    desc: Conv2dDesc,
    w: Vec<f16>,
    b: Vec<f16>,
    w_dev: DeviceBuffer<f16>,
    b_dev: DeviceBuffer<f16>,
    plan: Conv2d<f16, f16>,
    relu: bool,
}

/// A layer: a convolution, or the end of a residual block (add the block's input).
enum Step {
    Conv(usize),
    /// `out += the output of step `from``.
    AddResidual {
        from: usize,
    },
}

/// The network for one batch size, with its activations.
struct Net {
    n: usize,
    convs: Vec<Conv>,
    steps: Vec<Step>,
    /// The activation after each step; `acts[0]` is the input batch.
    acts: Vec<DeviceBuffer<f16>>,
    pooled: DeviceBuffer<f16>,
    head_w: Vec<f16>,
    head_b: Vec<f32>,
    head_w_dev: DeviceBuffer<f16>,
    head_b_dev: DeviceBuffer<f32>,
    head: Matmul<f16, f32>,
    logits: DeviceBuffer<f32>,
    /// (H, W, C) after each step.
    shapes: Vec<(usize, usize, usize)>,
}

/// A convolution's (kernel size, stride, padding, input channels, output channels).
type ConvSpec = (usize, usize, usize, usize, usize);

/// The convolutions of the network, and the steps.
fn architecture() -> (Vec<ConvSpec>, Vec<Step>) {
    let convs = vec![
        (7, 2, 3, 3, 64),    // 0 stem
        (3, 2, 1, 64, 64),   // 1 down1
        (3, 1, 1, 64, 64),   // 2 block1.a
        (3, 1, 1, 64, 64),   // 3 block1.b
        (3, 2, 1, 64, 128),  // 4 down2
        (1, 1, 0, 128, 128), // 5 down2 1x1
        (3, 2, 1, 128, 256), // 6 down3
        (3, 1, 1, 256, 256), // 7 block3.a
        (3, 1, 1, 256, 256), // 8 block3.b
        (3, 2, 1, 256, 512), // 9 down4
        (1, 1, 0, 512, 512), // 10 down4 1x1
    ];
    // Steps index into `acts`: step i reads acts[i] and writes acts[i + 1].
    let steps = vec![
        Step::Conv(0),
        Step::Conv(1),
        Step::Conv(2),
        Step::Conv(3),
        Step::AddResidual { from: 2 }, // acts[5] = acts[4] + acts[2] (the block's input)
        Step::Conv(4),
        Step::Conv(5),
        Step::Conv(6),
        Step::Conv(7),
        Step::Conv(8),
        Step::AddResidual { from: 8 }, // acts[11] = acts[10] + acts[8]
        Step::Conv(9),
        Step::Conv(10),
    ];
    (convs, steps)
}

fn he(rng: &mut StdRng, len: usize, fan_in: usize) -> Vec<f16> {
    let scale = (6.0 / fan_in as f32).sqrt();
    (0..len)
        .map(|_| f16::from_f32(rng.random_range(-scale..scale)))
        .collect()
}

impl Net {
    fn new(stream: &Stream, n: usize, seed: u64) -> Result<Net> {
        let mut rng = StdRng::seed_from_u64(seed);
        let (specs, steps) = architecture();
        let mut convs = Vec::new();
        let (mut h, mut w) = (IMAGE, IMAGE);
        let mut shapes = vec![(h, w, 3)];
        for step in &steps {
            match step {
                Step::Conv(i) => {
                    let (r, stride, pad, c, k) = specs[*i];
                    let desc = Conv2dDesc::input(n, h, w, c)
                        .filters(k, r, r)
                        .stride(stride, stride)
                        .padding(pad, pad)
                        .activation(Activation::Relu);
                    let wts = he(&mut rng, desc.filter_len(), r * r * c);
                    let bias: Vec<f16> = (0..k)
                        .map(|_| f16::from_f32(rng.random_range(-0.1f32..0.1)))
                        .collect();
                    let (p, q) = desc.output_hw();
                    convs.push(Conv {
                        w_dev: DeviceBuffer::from_slice(stream, &wts)?,
                        b_dev: DeviceBuffer::from_slice(stream, &bias)?,
                        plan: Conv2d::new(stream, desc)?,
                        desc,
                        w: wts,
                        b: bias,
                        relu: true,
                    });
                    (h, w) = (p, q);
                    shapes.push((h, w, k));
                }
                Step::AddResidual { .. } => shapes.push(*shapes.last().unwrap()),
            }
        }
        let acts = shapes
            .iter()
            .map(|&(h, w, c)| DeviceBuffer::alloc(stream, n * h * w * c))
            .collect::<Result<Vec<_>>>()?;
        let c = shapes.last().unwrap().2;
        let head_w = he(&mut rng, c * CLASSES, c);
        let head_b: Vec<f32> = (0..CLASSES)
            .map(|_| rng.random_range(-0.1f32..0.1))
            .collect();
        let head = Matmul::new(
            stream,
            MatmulDesc::new(n, CLASSES, c).b_layout(Layout::ColMajor),
        )?;
        Ok(Net {
            n,
            convs,
            steps,
            acts,
            pooled: DeviceBuffer::alloc(stream, n * c)?,
            head_w_dev: DeviceBuffer::from_slice(stream, &head_w)?,
            head_b_dev: DeviceBuffer::from_slice(stream, &head_b)?,
            head_w,
            head_b,
            head,
            logits: DeviceBuffer::alloc(stream, n * CLASSES)?,
            shapes,
        })
    }

    /// The FLOPs of one forward pass (convolutions and the head; 2 per multiply-add).
    fn flops(&self) -> f64 {
        let c = self.shapes.last().unwrap().2;
        self.convs.iter().map(|c| c.desc.flops()).sum::<f64>() + 2.0 * (self.n * c * CLASSES) as f64
    }

    fn forward(&mut self, stream: &Stream) -> Result<()> {
        let mut conv_index = 0;
        for (i, step) in self.steps.iter().enumerate() {
            let (before, after) = self.acts.split_at_mut(i + 1);
            let (input, output) = (&before[i], &mut after[0]);
            match step {
                Step::Conv(_) => {
                    let conv = &mut self.convs[conv_index];
                    conv_index += 1;
                    let epilogue = Epilogue::new().bias(&conv.b_dev);
                    conv.plan
                        .launch(stream, input, &conv.w_dev, output, epilogue)?;
                }
                Step::AddResidual { from } => {
                    output.copy_from(stream, input)?;
                    ops::axpy(stream, 1.0, &before[*from], output)?;
                }
            }
        }
        let (h, w, c) = *self.shapes.last().unwrap();
        ops::global_avg_pool(
            stream,
            self.n,
            h * w,
            c,
            self.acts.last().unwrap(),
            &mut self.pooled,
        )?;
        let bias = self.head_b_dev.as_device_slice();
        self.head.launch(
            stream,
            &self.pooled,
            &self.head_w_dev,
            &mut self.logits,
            Epilogue::new().bias(&bias),
        )
    }
}

/// The CPU twin in f64: NHWC direct convolution, each layer's output rounded to f16.
mod cpu {
    use super::*;

    fn round(v: f64) -> f64 {
        f64::from(f16::from_f64(v).to_f32())
    }

    pub fn conv(x: &[f64], (h, w, c): (usize, usize, usize), conv: &Conv) -> Vec<f64> {
        let d = &conv.desc;
        let (p, q) = d.output_hw();
        let (k, r, s) = (d.k, d.r, d.s);
        let (sh, sw) = d.stride;
        let (ph, pw) = d.padding;
        let wts: Vec<f64> = conv.w.iter().map(|v| f64::from(v.to_f32())).collect();
        let mut y = vec![0.0; p * q * k];
        for oy in 0..p {
            for ox in 0..q {
                for oc in 0..k {
                    let mut acc = f64::from(conv.b[oc].to_f32());
                    for ky in 0..r {
                        let iy = (oy * sh + ky) as isize - ph as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..s {
                            let ix = (ox * sw + kx) as isize - pw as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let xi = (iy as usize * w + ix as usize) * c;
                            let wi = ((oc * r + ky) * s + kx) * c;
                            acc += x[xi..xi + c]
                                .iter()
                                .zip(&wts[wi..wi + c])
                                .map(|(a, b)| a * b)
                                .sum::<f64>();
                        }
                    }
                    if conv.relu {
                        acc = acc.max(0.0);
                    }
                    y[(oy * q + ox) * k + oc] = round(acc);
                }
            }
        }
        y
    }

    /// The logits of one image.
    pub fn forward(net: &Net, image: &[f16]) -> Vec<f64> {
        let mut acts: Vec<Vec<f64>> = vec![image.iter().map(|v| f64::from(v.to_f32())).collect()];
        let mut conv_index = 0;
        for (i, step) in net.steps.iter().enumerate() {
            let out = match step {
                Step::Conv(_) => {
                    let out = conv(&acts[i], net.shapes[i], &net.convs[conv_index]);
                    conv_index += 1;
                    out
                }
                Step::AddResidual { from } => acts[i]
                    .iter()
                    .zip(&acts[*from])
                    .map(|(a, b)| round(a + b))
                    .collect(),
            };
            acts.push(out);
        }
        let (h, w, c) = *net.shapes.last().unwrap();
        let last = acts.last().unwrap();
        let pooled: Vec<f64> = (0..c)
            .map(|ch| round((0..h * w).map(|p| last[p * c + ch]).sum::<f64>() / (h * w) as f64))
            .collect();
        (0..CLASSES)
            .map(|j| {
                f64::from(net.head_b[j])
                    + (0..c)
                        .map(|i| pooled[i] * f64::from(net.head_w[j * c + i].to_f32()))
                        .sum::<f64>()
            })
            .collect()
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cnn_inference: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool> {
    let device = Device::open(0)?;
    let stream = device.new_stream()?;
    let model = device.model();
    println!(
        "{} ({}): ResNet-style CNN, 224x224 f16 NHWC, 11 convolutions + pool + GEMM head",
        device.properties().name,
        model.name
    );
    println!("| batch | ms per batch | images/s | TFLOP/s |\n|---|---|---|---|");
    let mut rng = StdRng::seed_from_u64(7);
    let mut passed = true;
    let serve = std::env::args().any(|a| a == "--serve");
    for n in [1usize, 8, 64] {
        let mut net = Net::new(&stream, n, 2026)?;
        let images: Vec<f16> = (0..n * IMAGE * IMAGE * 3)
            .map(|_| f16::from_f32(rng.random_range(-1.0f32..1.0)))
            .collect();
        net.acts[0].copy_from_host(&stream, &images)?;
        let flops = net.flops();
        let mut graph = Graph::capture(&stream, net, |s, net| net.forward(s))?;
        let t = time_on_stream(&stream, 3, 20, |_| graph.launch(&stream))?;
        let ms = t.median_ms();
        println!(
            "| {n} | {ms:.3} | {:.0} | {:.1} |",
            n as f64 / (ms * 1e-3),
            flops / (ms * 1e9)
        );
        if serve && n == 64 && passed {
            println!("serving batches of {n} (stop with Ctrl-C or SIGTERM)");
            loop {
                let start = std::time::Instant::now();
                let mut batches = 0usize;
                while start.elapsed().as_secs() < 10 {
                    graph.launch(&stream)?;
                    stream.synchronize()?;
                    batches += 1;
                }
                let secs = start.elapsed().as_secs_f64();
                let rate = (batches * n) as f64 / secs;
                println!("{rate:.0} images/s");
                // The Kubernetes probes read this file's age (`hikube-gpu k8s` sets the path).
                if let Some(path) = std::env::var_os("HIKUBE_GPU_HEARTBEAT") {
                    if let Err(e) = std::fs::write(&path, format!("{rate:.0} images/s\n")) {
                        eprintln!("heartbeat {}: {e}", std::path::Path::new(&path).display());
                    }
                }
            }
        }
        let net = graph.into_resources()?;
        if n == 8 {
            let logits = net.logits.to_vec(&stream)?;
            let per = IMAGE * IMAGE * 3;
            let (mut num, mut den) = (0.0f64, 0.0f64);
            let refs: Vec<Vec<f64>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..CHECKED_IMAGES)
                    .map(|i| {
                        let (net, image) = (&net, &images[i * per..(i + 1) * per]);
                        scope.spawn(move || cpu::forward(net, image))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (i, r) in refs.iter().enumerate() {
                for (j, want) in r.iter().enumerate() {
                    let d = f64::from(logits[i * CLASSES + j]) - want;
                    num += d * d;
                    den += want * want;
                }
            }
            let err = (num / den).sqrt();
            let ok = err <= TOLERANCE;
            passed &= ok;
            println!(
                "check: batch 8, images 0..{CHECKED_IMAGES} against the f64 CPU twin: \
                 ‖gpu − cpu‖/‖cpu‖ = {err:.2e} (bound {TOLERANCE:.0e}): {}",
                if ok { "check passed" } else { "CHECK FAILED" }
            );
        }
    }
    Ok(passed)
}
