//! Data-loader style streaming: a host thread produces batches, the [`Prefetcher`] stages them in
//! pinned memory and copies them on a stream of their own, and the GPU computes on each batch
//! as soon as it is there. Compares the time with and without overlap.
//!
//!     cargo run --release --example prefetch

use hikube_gpu::half::f16;
use hikube_gpu::ops::matmul::{Epilogue, Matmul, MatmulDesc};
use hikube_gpu::{Device, DeviceBuffer, Prefetcher, Result, Stream};
use std::process::ExitCode;
use std::time::Instant;

const BATCHES: usize = 48;
const ROWS: usize = 4096; // samples per batch
const FEATURES: usize = 2048;

fn batches() -> impl Iterator<Item = Vec<f16>> + Send + 'static {
    (0..BATCHES).map(|b| {
        (0..ROWS * FEATURES)
            .map(|i| f16::from_f32(((i * 31 + b * 7) % 1000) as f32 / 1000.0 - 0.5))
            .collect()
    })
}

/// One pass over the data: each batch (ROWS×FEATURES) times a FEATURES×FEATURES weight.
fn run(device: &Device, compute: &Stream, prefetch_depth: usize) -> Result<f64> {
    let weight =
        DeviceBuffer::from_slice(compute, &vec![f16::from_f32(0.01); FEATURES * FEATURES])?;
    let mut out = DeviceBuffer::<f16>::alloc(compute, ROWS * FEATURES)?;
    let mm = Matmul::<f16, f16>::new(compute, MatmulDesc::new(ROWS, FEATURES, FEATURES))?;
    compute.synchronize()?;
    let start = Instant::now();
    let mut loader = Prefetcher::new(device, batches(), prefetch_depth)?;
    while let Some(batch) = loader.next(compute) {
        let batch = batch?;
        mm.launch(compute, &batch, &weight, &mut out, Epilogue::new())?;
        if prefetch_depth == 1 {
            compute.synchronize()?; // no overlap: wait for each batch before fetching the next
        }
    }
    compute.synchronize()?;
    Ok(start.elapsed().as_secs_f64())
}

fn main() -> ExitCode {
    let go = || -> Result<()> {
        let device = Device::open(0)?;
        let compute = device.new_stream()?;
        let bytes = (BATCHES * ROWS * FEATURES * 2) as f64;
        let serial = run(&device, &compute, 1)?;
        let overlapped = run(&device, &compute, 4)?;
        println!(
            "{} batches of {} MiB through a {FEATURES}x{FEATURES} layer on {}:",
            BATCHES,
            (ROWS * FEATURES * 2) >> 20,
            device.model().name
        );
        println!(
            "  one batch at a time: {serial:.3} s ({:.1} GB/s)",
            bytes / serial / 1e9
        );
        println!(
            "  prefetching 4 ahead: {overlapped:.3} s ({:.1} GB/s), {:.0} % of the serial time hidden",
            bytes / overlapped / 1e9,
            100.0 * (1.0 - overlapped / serial)
        );
        Ok(())
    };
    match go() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prefetch: {e}");
            ExitCode::FAILURE
        }
    }
}
