//! Quickstart: name the GPU, its model and peak figures, then run a kernel and check it.
//!
//!     cargo run --release --example quickstart
//!
//! Without a GPU it says so in one line and exits with status 1.

use hikube_gpu::half::f16;
use hikube_gpu::{driver_version, ops, Device, DeviceBuffer, Provenance};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> hikube_gpu::Result<()> {
    let device = Device::open(0)?;
    let p = device.properties();
    let m = device.model();
    let driver = driver_version()?;
    println!(
        "device {}: {} ({}, {})",
        p.ordinal, p.name, p.uuid, p.pci_bus_id
    );
    println!(
        "  compute capability {}, {} SMs at {} MHz, {:.1} GiB, driver CUDA {}.{}",
        p.compute_capability,
        p.sm_count,
        p.sm_clock_khz / 1000,
        p.total_memory as f64 / (1u64 << 30) as f64,
        driver / 1000,
        driver % 1000 / 10
    );
    let source = match m.provenance {
        Provenance::Catalog => "catalog",
        Provenance::Derived => "derived from the device's properties",
    };
    println!(
        "  model {} ({}), instance type {}",
        m.name,
        source,
        m.instance_type.unwrap_or("none")
    );
    println!(
        "  peak: FP16 {:.1} / BF16 {} TFLOP/s dense tensor (FP32 accumulate), FP32 {:.1} TFLOP/s, {:.0} GB/s",
        m.fp16_tflops,
        m.bf16_tflops.map_or("n/a".to_string(), |t| format!("{t:.1}")),
        m.fp32_tflops,
        m.memory_bandwidth_gbs
    );

    let stream = device.default_stream();
    let load = device.load_module("elementwise", None)?;
    let n = 1 << 20;
    let x: Vec<f16> = (0..n)
        .map(|i| f16::from_f32((i % 1000) as f32 / 1000.0))
        .collect();
    let y: Vec<f16> = (0..n).map(|i| f16::from_f32((i % 7) as f32)).collect();
    let gx = DeviceBuffer::from_slice(&stream, &x)?;
    let mut gy = DeviceBuffer::from_slice(&stream, &y)?;
    ops::axpy(&stream, 0.5, &gx, &mut gy)?;
    let out = gy.to_vec(&stream)?;
    let worst = out
        .iter()
        .zip(x.iter().zip(&y))
        .map(|(o, (x, y))| {
            (f64::from(o.to_f32()) - (0.5 * f64::from(x.to_f32()) + f64::from(y.to_f32()))).abs()
        })
        .fold(0.0, f64::max);
    // One f16 rounding of a value below 8: at most half an ulp, 2^-8.
    let ok = worst <= 1.0 / 256.0;
    println!(
        "  axpy f16 on {} ({} PTX, loaded in {:.1} ms): {} elements, max error {worst:.1e}: {}",
        m.name,
        load.arch,
        load.elapsed.as_secs_f64() * 1e3,
        n,
        if ok { "check passed" } else { "CHECK FAILED" }
    );
    if ok {
        Ok(())
    } else {
        std::process::exit(2)
    }
}
