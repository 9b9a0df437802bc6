//! Copy bandwidth with the crate's own buffers: host→device and device→host from pinned and
//! from pageable memory, and device→device, at 256 MiB (and 1 MiB, 1 GiB with `--sizes all`).
//!
//!     cargo bench --bench memory
//!
//! Group names start with the GPU model. Device→device counts bytes read plus bytes written,
//! as PyTorch's and the vendors' copy figures do.

use criterion::{Criterion, Throughput};
use hikube_gpu::{time_on_stream, Device, DeviceBuffer, PinnedBuffer, Result, Stream};
use std::time::Duration;

const MIB: usize = 1 << 20;

struct Case {
    name: &'static str,
    /// Bytes counted per copy.
    bytes: usize,
}

fn run_copy(
    name: &str,
    stream: &Stream,
    dev: &mut [DeviceBuffer<u8>],
    pinned: &mut PinnedBuffer<u8>,
    pageable: &mut [u8],
    i: usize,
) -> Result<()> {
    // Rotate between two device buffers so no copy finds its data in L2 from the one before.
    let (a, b) = dev.split_at_mut(1);
    let (src, dst) = if i.is_multiple_of(2) {
        (&a[0], &mut b[0])
    } else {
        (&b[0], &mut a[0])
    };
    match name {
        "h2d_pinned" => dst.copy_from_pinned(stream, pinned),
        "h2d_pageable" => dst.copy_from_host(stream, pageable),
        "d2h_pinned" => src.copy_to_pinned(stream, pinned),
        "d2h_pageable" => src.copy_to_host(stream, pageable),
        _ => dst.copy_from(stream, src),
    }
}

fn main() -> Result<()> {
    let device = match Device::open(0) {
        Ok(d) => d,
        Err(e) if e.is_no_gpu() => {
            eprintln!("memory bench: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let model = device.model().name.to_string();
    let stream = device.new_stream()?;
    let all = std::env::args().any(|a| a == "all");
    let sizes: Vec<usize> = if all {
        vec![MIB, 256 * MIB, 1024 * MIB]
    } else {
        vec![256 * MIB]
    };
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let mut summary = Vec::new();
    for &size in &sizes {
        let mut dev = vec![
            DeviceBuffer::<u8>::alloc(&stream, size)?,
            DeviceBuffer::<u8>::alloc(&stream, size)?,
        ];
        dev[0].fill(&stream, 0x5A)?;
        dev[1].fill(&stream, 0xA5)?;
        let mut pinned = PinnedBuffer::<u8>::zeroed(&device, size)?;
        pinned
            .as_mut_slice()?
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
        let mut pageable: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
        let cases = [
            Case {
                name: "h2d_pinned",
                bytes: size,
            },
            Case {
                name: "h2d_pageable",
                bytes: size,
            },
            Case {
                name: "d2h_pinned",
                bytes: size,
            },
            Case {
                name: "d2h_pageable",
                bytes: size,
            },
            Case {
                name: "d2d",
                bytes: 2 * size,
            },
        ];
        let label = format!("{}MiB", size / MIB);
        let mut group = c.benchmark_group(format!("{model}/memory"));
        for case in &cases {
            group.throughput(Throughput::Bytes(case.bytes as u64));
            group.bench_function(format!("{}/{label}", case.name), |b| {
                b.iter_custom(|iters| {
                    let t = time_on_stream(&stream, 0, iters as usize, |i| {
                        run_copy(case.name, &stream, &mut dev, &mut pinned, &mut pageable, i)
                    })
                    .expect("copy failed");
                    Duration::from_secs_f64(t.samples_ms.iter().sum::<f64>() / 1e3)
                })
            });
            let t = time_on_stream(&stream, 3, 20, |i| {
                run_copy(case.name, &stream, &mut dev, &mut pinned, &mut pageable, i)
            })?;
            summary.push((
                case.name,
                label.clone(),
                case.bytes as f64 / (t.median_ms() * 1e6),
            ));
        }
        group.finish();
    }
    println!("\n{model}: median of 20 timed copies (CUDA events), GB/s = 1e9 bytes/s");
    println!("| copy | size | GB/s |\n|---|---|---|");
    for (name, label, gbs) in summary {
        println!("| {name} | {label} | {gbs:.1} |");
    }
    Ok(())
}
