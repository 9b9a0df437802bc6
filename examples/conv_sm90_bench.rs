//! Throughput of `ops::conv2d`'s Hopper path (forced with `Conv2dDesc::hopper`) on ResNet-50 layers, NHWC f16 with
//! bias and ReLU: the plan's own choice ("auto"; "auto_1tile" with one block per tile instead of
//! persistent blocks), then every A-operand load and tile variant (without split-K). Timed with CUDA
//! events (median of 30 runs after 5 warm-ups, rotating over three input sets so that no run
//! finds its input in L2). Prints one `RESULT` line per layer and variant, in TFLOP/s, for
//! `scripts`-side joining with cuDNN's figures (PyTorch, channels_last, in the same session).
//!
//!     cargo run --release --example conv_sm90_bench            # the default layer list
//!     cargo run --release --example conv_sm90_bench -- quick   # only the plan's choice

use hikube_gpu::half::f16;
use hikube_gpu::ops::conv2d::{ALoad, Conv2d, Conv2dDesc, HopperOptions};
use hikube_gpu::ops::{Activation, Epilogue};
use hikube_gpu::{time_on_stream, Device, DeviceBuffer, Float, Result, Stream};
use rand::Rng;

const SETS: usize = 3;

/// (name, shape): the batch-64 ResNet-50 3x3 layers, the 1x1 expansion, and small batches.
fn layers() -> Vec<(String, Conv2dDesc)> {
    let mut v = Vec::new();
    for n in [64usize, 8, 1] {
        for (c, hw) in [(64usize, 56usize), (128, 28), (256, 14), (512, 7)] {
            v.push((
                format!("3x3_c{c}_{hw}x{hw}_n{n}"),
                Conv2dDesc::input(n, hw, hw, c)
                    .filters(c, 3, 3)
                    .padding(1, 1),
            ));
        }
        v.push((
            format!("1x1_c64k256_56x56_n{n}"),
            Conv2dDesc::input(n, 56, 56, 64).filters(256, 1, 1),
        ));
    }
    v.push((
        "7x7s2_c8k64_224x224_n64".into(),
        Conv2dDesc::input(64, 224, 224, 8)
            .filters(64, 7, 7)
            .stride(2, 2)
            .padding(3, 3),
    ));
    v
}

fn random<T: Float>(stream: &Stream, len: usize) -> Result<DeviceBuffer<T>> {
    let mut rng = rand::rng();
    let host: Vec<T> = (0..len)
        .map(|_| T::from_f32(rng.random_range(-1.0f32..1.0)))
        .collect();
    DeviceBuffer::from_slice(stream, &host)
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "quick");
    let device = Device::open(0)?;
    let stream = device.default_stream();
    println!("device: {}", device.properties().name);
    for (name, s) in layers() {
        let xs = (0..SETS)
            .map(|_| random::<f16>(&stream, s.input_len()))
            .collect::<Result<Vec<_>>>()?;
        let ws = (0..SETS)
            .map(|_| random::<f16>(&stream, s.filter_len()))
            .collect::<Result<Vec<_>>>()?;
        let bias = random::<f16>(&stream, s.k)?;
        let mut y = DeviceBuffer::<f16>::alloc(&stream, s.output_len())?;
        let mut variants = vec![
            ("auto".to_string(), HopperOptions::default()),
            (
                "auto_1tile".to_string(),
                HopperOptions {
                    grid_blocks: Some(usize::MAX),
                    ..Default::default()
                },
            ),
        ];
        if !quick {
            for a in [ALoad::Im2col, ALoad::Gather, ALoad::Packed] {
                let a_name = format!("{a:?}").to_lowercase();
                for (bn, blocks) in [(64, 1), (64, 2), (128, 1), (256, 1)] {
                    if bn > s.k.next_multiple_of(64) {
                        continue;
                    }
                    variants.push((
                        format!("{a_name}_bn{bn}x{blocks}"),
                        HopperOptions {
                            a_load: Some(a),
                            block_n: Some(bn),
                            blocks_per_sm: Some(blocks),
                            splits: None,
                            grid_blocks: None,
                        },
                    ));
                }
            }
        }
        for (label, options) in variants {
            let desc = s.hopper(options).activation(Activation::Relu);
            let mut plan = match Conv2d::<f16, f16>::new(&stream, desc) {
                Ok(p) => p,
                Err(e) => {
                    println!("SKIP {name} {label}: {e}");
                    continue;
                }
            };
            let t = time_on_stream(&stream, 5, 30, |i| {
                let set = i % SETS;
                let epilogue = Epilogue::new().bias(&bias);
                plan.launch(&stream, &xs[set], &ws[set], &mut y, epilogue)
            })?;
            let tflops = s.flops() / (t.median_ms() * 1e-3) / 1e12;
            println!(
                "RESULT {name} {label} {tflops:.1} TFLOP/s ({:.1} us; {:?})",
                t.median_ms() * 1e3,
                plan.hopper_choices()
            );
        }
    }
    Ok(())
}
