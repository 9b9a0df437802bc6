//! Convolution throughput: hikube-gpu's `Conv2d` and cuDNN in the same process, on the same
//! NHWC / KRSC inputs: ResNet-50's layers at batch 64, 8 and 1, f16 and bf16, f32
//! accumulation, output in the input type, bias + ReLU fused.
//!
//!     cargo bench --features cudnn --bench conv            # criterion groups, then the summary table
//!     cargo bench --features cudnn --bench conv -- summary # only the summary table
//!     cargo bench --features cudnn --bench conv -- tune    # every compute_80 tile on the batch-64 layers
//!     cargo bench --features cudnn --bench conv -- grad    # the backward pass (dgrad, wgrad)
//!     cargo bench --features cudnn --bench conv -- grad ours  # ours alone (to run under ncu)
//!     (add `f16` to skip bf16)
//!
//! cuDNN runs the algorithm its own search (`cudnnFindConvolutionForwardAlgorithm`) measured
//! fastest, with its workspace, through `cudnnConvolutionBiasActivationForward` (bias + ReLU,
//! like ours) where it takes the shape, else `cudnnConvolutionForward` alone (marked "conv
//! only": cuDNN then does less work than we do). Each timing is the median of CUDA-event-timed
//! runs rotating over three input sets (so no run finds its inputs in L2 from the one before),
//! after warm-up. The backward table puts `Conv2dGrad`'s data and filter gradients (dw in the
//! input type, as cuDNN's) beside cuDNN's `cudnnConvolutionBackward{Data,Filter}` with the
//! algorithms its searches measured fastest; the strided layers' dgrad asks for the Hopper
//! phases (`Conv2dDesc::hopper`), opt-in for now.

#[path = "support/random.rs"]
mod random;

use criterion::{Criterion, Throughput};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::ops::conv2d::{
    Conv2d, Conv2dDesc, Conv2dGrad, ConvPath, FilterGrad, HopperOptions,
};
use hikube_gpu::ops::{Activation, Epilogue};
use hikube_gpu::reference::CudnnConv;
use hikube_gpu::{time_on_stream, AsDeviceSlice, Device, DeviceBuffer, Float, Result, Stream};
use std::time::Duration;

const SETS: usize = 3;

/// A layer: (name, C, H=W, K, R=S, stride, padding).
type Layer = (&'static str, usize, usize, usize, usize, usize, usize);

/// ResNet-50's distinct layer shapes.
const LAYERS: [Layer; 6] = [
    ("conv2 3x3 C64", 64, 56, 64, 3, 1, 1),
    ("conv2 1x1 C64->256", 64, 56, 256, 1, 1, 0),
    ("conv3 3x3 C128", 128, 28, 128, 3, 1, 1),
    ("conv4 3x3 C256", 256, 14, 256, 3, 1, 1),
    ("conv5 3x3 C512", 512, 7, 512, 3, 1, 1),
    ("conv1 7x7/2 C3->64", 3, 224, 64, 7, 2, 3),
];
const BATCHES: [usize; 3] = [64, 8, 1];
/// ResNet-50's strided layers (the first block of conv3 to conv5: the 3×3 stride-2 convolution
/// and the 1×1 stride-2 downsample), which only the backward table runs.
const STRIDED: [Layer; 4] = [
    ("conv3_1 3x3/2 C128", 128, 56, 128, 3, 2, 1),
    ("conv4_1 3x3/2 C256", 256, 28, 256, 3, 2, 1),
    ("conv5_1 3x3/2 C512", 512, 14, 512, 3, 2, 1),
    ("conv3 down 1x1/2 C256->512", 256, 56, 512, 1, 2, 0),
];

fn desc(layer: usize, n: usize) -> Conv2dDesc {
    layer_desc(LAYERS[layer], n)
}

fn layer_desc((_, c, hw, k, rs, stride, pad): Layer, n: usize) -> Conv2dDesc {
    Conv2dDesc::input(n, hw, hw, c)
        .filters(k, rs, rs)
        .stride(stride, stride)
        .padding(pad, pad)
        .activation(Activation::Relu)
}

struct Inputs<T: Float> {
    x: Vec<DeviceBuffer<T>>,
    w: Vec<DeviceBuffer<T>>,
    bias: DeviceBuffer<T>,
    y: DeviceBuffer<T>,
}

fn inputs<T: Float>(stream: &Stream, d: &Conv2dDesc) -> Result<Inputs<T>> {
    let rand_buf = |len: usize, scale: f32| -> Result<DeviceBuffer<T>> {
        DeviceBuffer::from_slice(stream, &random::uniform(len, scale, T::from_f32))
    };
    Ok(Inputs {
        x: (0..SETS)
            .map(|_| rand_buf(d.input_len(), 1.0))
            .collect::<Result<_>>()?,
        w: (0..SETS)
            .map(|_| rand_buf(d.filter_len(), 0.1))
            .collect::<Result<_>>()?,
        bias: rand_buf(d.k, 1.0)?,
        y: DeviceBuffer::alloc(stream, d.output_len())?,
    })
}

struct Row {
    dtype: &'static str,
    layer: &'static str,
    n: usize,
    path: ConvPath,
    tiling: String,
    ours: f64,
    cudnn: f64,
    algo: String,
    fused: bool,
    peak: f64,
}

fn bench_type<T: Float>(
    c: &mut Option<Criterion>,
    device: &Device,
    stream: &Stream,
    peak: f64,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let model = device.model().name.to_string();
    for n in BATCHES {
        for (layer, &(name, ..)) in LAYERS.iter().enumerate() {
            let d = desc(layer, n);
            let flops = d.flops();
            let mut x = inputs::<T>(stream, &d)?;
            let mut plan = Conv2d::<T, T>::new(stream, d)?;
            let mut dnn = match CudnnConv::new::<T>(stream, &d) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{} n={n} {}: cuDNN: {e}", name, T::SUFFIX);
                    continue;
                }
            };
            dnn.try_fuse(stream, &x.x[0], &x.w[0], &x.bias, &mut x.y)?;
            stream.synchronize()?;
            let mut ours = |x: &mut Inputs<T>, i: usize| {
                let set = i % SETS;
                let epilogue = Epilogue::new().bias(&x.bias);
                plan.launch(stream, &x.x[set], &x.w[set], &mut x.y, epilogue)
            };
            let mut theirs = |x: &mut Inputs<T>, i: usize| {
                let set = i % SETS;
                let bias = x.bias.as_device_slice();
                dnn.launch(stream, &x.x[set], &x.w[set], Some(bias), &mut x.y)
            };
            let t_ours = time_on_stream(stream, 5, 30, |i| ours(&mut x, i))?.median_ms();
            let t_dnn = time_on_stream(stream, 5, 30, |i| theirs(&mut x, i))?.median_ms();
            if let Some(c) = c.as_mut() {
                let mut group = c.benchmark_group(format!(
                    "{model}/conv/{}/{}/n{n}",
                    T::SUFFIX,
                    name.replace(' ', "_")
                ));
                group.throughput(Throughput::Elements(flops as u64));
                let mut timed = |name: &str, f: &mut dyn FnMut(usize) -> Result<()>| {
                    group.bench_function(name, |bch| {
                        bch.iter_custom(|iters| {
                            let t = time_on_stream(stream, 0, iters as usize, &mut *f)
                                .expect("launch failed");
                            Duration::from_secs_f64(t.samples_ms.iter().sum::<f64>() / 1e3)
                        })
                    });
                };
                timed("hikube", &mut |i| ours(&mut x, i));
                timed("cudnn", &mut |i| theirs(&mut x, i));
                group.finish();
            }
            let tiling = match plan.tiling() {
                Some((t, s)) => format!("{t} ({s})"),
                None => "-".into(),
            };
            rows.push(Row {
                dtype: T::SUFFIX,
                layer: name,
                n,
                path: plan.path(),
                tiling: if plan.padded() {
                    format!("{tiling}, C padded")
                } else {
                    tiling
                },
                ours: flops / (t_ours * 1e9),
                cudnn: flops / (t_dnn * 1e9),
                algo: dnn.algorithm(),
                fused: dnn.fused(),
                peak,
            });
        }
    }
    Ok(())
}

/// Every compute_80 tile on the batch-64 and batch-8 layers (1×1 ones through the implicit GEMM
/// rather than the GEMM), TFLOP/s.
fn tune<T: Float>(device: &Device, stream: &Stream) -> Result<()> {
    let tilings = Conv2d::<T, T>::tilings(ConvPath::Sm80);
    println!(
        "\n{} {}: compute_80 implicit GEMM, TFLOP/s per tile (split-K by the heuristic)",
        device.model().name,
        T::SUFFIX
    );
    println!(
        "| layer | batch | {} | chosen |",
        tilings
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|{}---|", "---|".repeat(tilings.len()));
    for n in [64, 8] {
        for (layer, &(name, ..)) in LAYERS.iter().enumerate() {
            // 1x1 layers: through the implicit-GEMM kernels here (the GEMM in the table).
            let d = desc(layer, n).gemm_for_1x1(false);
            let mut x = inputs::<T>(stream, &d)?;
            let mut cells = Vec::new();
            for &t in &tilings {
                // Not every tile exists for every channel gather (the `_c4` kernels).
                let Ok(mut plan) = Conv2d::<T, T>::new(stream, d.tiling(t)) else {
                    cells.push("-".to_string());
                    continue;
                };
                let ms = time_on_stream(stream, 3, 15, |i| {
                    let epilogue = Epilogue::new().bias(&x.bias);
                    plan.launch(stream, &x.x[i % SETS], &x.w[i % SETS], &mut x.y, epilogue)
                })?
                .median_ms();
                cells.push(format!("{:.1}", d.flops() / (ms * 1e9)));
            }
            let chosen = Conv2d::<T, T>::new(stream, d)?
                .tiling()
                .map_or("-".into(), |(t, s)| format!("{t} ({s})"));
            println!("| {} | {n} | {} | {chosen} |", name, cells.join(" | "));
        }
    }
    Ok(())
}

/// The backward pass on the batch-64 layers (LAYERS, then STRIDED) whose channels the
/// tensor-core kernels take (C and K multiples of 8): dgrad and wgrad TFLOP/s (each 2·N·P·Q·K·R·S·C per pass), ours and, unless
/// `ours_only` (for a profiler, which cuDNN's searches would slow to a crawl), cuDNN's.
fn grad<T: FilterGrad<T>>(
    device: &Device,
    stream: &Stream,
    peak: f64,
    ours_only: bool,
) -> Result<()> {
    println!(
        "\n{} {}: convolution backward at batch 64, TFLOP/s, median of 30 (CUDA events), 3 \
         rotating input sets; cuDNN's algorithms from its Find searches",
        device.model().name,
        T::SUFFIX
    );
    println!("| layer | path, tiles dgrad / wgrad (split-K) | dgrad ours | cuDNN (algo) | ratio | wgrad ours | cuDNN (algo) | ratio | % of peak (dgrad, wgrad) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for layer in LAYERS.iter().chain(&STRIDED).filter(|l| l.1 % 8 == 0) {
        let name = layer.0;
        let d = layer_desc(*layer, 64).activation(Activation::None);
        // The strided layers' dgrad by phases on the Hopper forward kernel is opt-in for now.
        let d = match layer.5 {
            1 => d,
            _ => d.hopper(HopperOptions::default()),
        };
        let x = inputs::<T>(stream, &d)?;
        let dy: Vec<DeviceBuffer<T>> = (0..SETS)
            .map(|_| inputs::<T>(stream, &d).map(|i| i.y))
            .collect::<Result<_>>()?;
        let mut dx = DeviceBuffer::<T>::alloc(stream, d.input_len())?;
        let mut dw = DeviceBuffer::<T>::alloc(stream, d.filter_len())?;
        let mut plan = Conv2dGrad::<T, T>::new(stream, d)?;
        let time = |f: &mut dyn FnMut(usize) -> Result<()>| -> Result<f64> {
            Ok(d.flops() / (time_on_stream(stream, 5, 30, f)?.median_ms() * 1e9))
        };
        let (w, xs) = (&x.w, &x.x);
        let ours = [
            time(&mut |i| plan.data(stream, &dy[i % SETS], &w[i % SETS], &mut dx))?,
            time(&mut |i| plan.filter(stream, &xs[i % SETS], &dy[i % SETS], &mut dw))?,
        ];
        let mut dnn = if ours_only {
            None
        } else {
            cudnn_backward::<T>(stream, &d)
        };
        let theirs = match dnn.as_mut() {
            Some(dnn) => [
                time(&mut |i| dnn.launch_data(stream, &dy[i % SETS], &w[i % SETS], &mut dx))?,
                time(&mut |i| dnn.launch_filter(stream, &xs[i % SETS], &dy[i % SETS], &mut dw))?,
            ],
            None => [f64::NAN; 2],
        };
        let algos = dnn
            .and_then(|d| d.backward_algorithms())
            .unwrap_or_default();
        grad_row(name, &plan, ours, theirs, algos, peak);
    }
    Ok(())
}

/// cuDNN's backward for `d` with the algorithms its searches picked; `None` (said why) where
/// cuDNN is missing or refuses the shape.
fn cudnn_backward<T: Float>(stream: &Stream, d: &Conv2dDesc) -> Option<CudnnConv> {
    let dnn = CudnnConv::new::<T>(stream, d).and_then(|mut r| r.find_backward(stream).map(|()| r));
    dnn.map_err(|e| eprintln!("{}: cuDNN backward: {e}", T::SUFFIX))
        .ok()
}

/// One row of the backward table: the plan's path and tiles, ours and cuDNN's TFLOP/s (data,
/// filter), cuDNN's algorithms.
fn grad_row<T: FilterGrad<T>>(
    name: &str,
    plan: &Conv2dGrad<T, T>,
    ours: [f64; 2],
    theirs: [f64; 2],
    (algo_d, algo_w): (String, String),
    peak: f64,
) {
    let tiles = match plan.tilings() {
        Some(_) if plan.data_on_hopper() => "Hopper forward / ".to_string(),
        Some([(td, sd), _]) => format!("{td} ({sd}) / "),
        None => "- / ".into(),
    } + &match (plan.filter_on_hopper(), plan.tilings()) {
        (Some((tw, sw)), _) => format!("Hopper {tw} ({sw})"),
        (None, Some([_, (tw, sw)])) => format!("{tw} ({sw})"),
        (None, None) => "-".into(),
    };
    let ([od, ow], [td, tw]) = (ours, theirs);
    println!(
        "| {name} | {:?} {tiles} | {od:.1} | {td:.1} ({algo_d}) | {:.2} | {ow:.1} | {tw:.1} ({algo_w}) | {:.2} | {:.0} %, {:.0} % |",
        plan.path(),
        od / td,
        ow / tw,
        100.0 * od / peak,
        100.0 * ow / peak
    );
}

fn main() -> Result<()> {
    let device = match Device::open(0) {
        Ok(d) => d,
        Err(e) if e.is_no_gpu() => {
            eprintln!("conv bench: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let stream = device.new_stream()?;
    let f16_only = std::env::args().any(|a| a == "f16");
    let model = device.model().clone();
    if std::env::args().any(|a| a == "grad") {
        let ours_only = std::env::args().any(|a| a == "ours");
        grad::<f16>(&device, &stream, model.fp16_tflops, ours_only)?;
        if !f16_only {
            let peak = model.bf16_tflops.unwrap_or(f64::NAN);
            grad::<bf16>(&device, &stream, peak, ours_only)?;
        }
        return Ok(());
    }
    if std::env::args().any(|a| a == "tune") {
        tune::<f16>(&device, &stream)?;
        if !f16_only {
            tune::<bf16>(&device, &stream)?;
        }
        return Ok(());
    }
    let summary_only = std::env::args().any(|a| a == "summary");
    let mut c = (!summary_only).then(|| {
        Criterion::default()
            .configure_from_args()
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1))
    });
    let mut rows = Vec::new();
    bench_type::<f16>(&mut c, &device, &stream, model.fp16_tflops, &mut rows)?;
    if !f16_only {
        let peak = model.bf16_tflops.unwrap_or(f64::NAN);
        bench_type::<bf16>(&mut c, &device, &stream, peak, &mut rows)?;
    }
    println!(
        "\n{} ({} SMs): ResNet-50 conv layers, NHWC, TFLOP/s (2·N·P·Q·K·R·S·C / time), median \
         of 30 runs (CUDA events), 3 rotating input sets; ours with bias + ReLU fused; cuDNN's \
         algorithm from cudnnFindConvolutionForwardAlgorithm",
        model.name, model.sms
    );
    println!("| dtype | layer | batch | path, tile (split-K) | hikube-gpu | cuDNN (algorithm) | ratio | % of peak |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:?} {} | {:.1} | {:.1} ({}{}) | {:.2} | {:.1} % |",
            r.dtype,
            r.layer,
            r.n,
            r.path,
            r.tiling,
            r.ours,
            r.cudnn,
            r.algo,
            if r.fused { "" } else { ", conv only" },
            r.ours / r.cudnn,
            100.0 * r.ours / r.peak
        );
    }
    Ok(())
}
