//! Launch latency: a chain of one-block `axpy` launches on one stream.

use super::{Ctx, Timed};
use crate::report::Params;
use crate::Suite;
use hikube_gpu::{ops, time_on_stream, DeviceBuffer, Result};
use std::time::Instant;

/// Launches per timed run on the GPU clock.
const CHAIN: usize = 1000;
/// Launches per run on the host clock: few enough that the driver's queue never fills (a full
/// queue would make the host wait for the GPU).
const HOST_CHAIN: usize = 200;
/// Elements per launch: one block.
const ELEMENTS: usize = 256;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The GPU's time per launch in a chain (CUDA events around the chain), and the host's time to
/// queue one launch.
pub fn run(ctx: &mut Ctx<'_>) -> Result<()> {
    ctx.running("launch latency");
    let stream = ctx.stream;
    let x = DeviceBuffer::from_slice(stream, &[1.0f32; ELEMENTS])?;
    let mut y = DeviceBuffer::<f32>::zeroed(stream, ELEMENTS)?;
    // Loads the module and warms the path.
    for _ in 0..100 {
        ops::axpy(stream, 1.0, &x, &mut y)?;
    }
    stream.synchronize()?;
    let first = time_on_stream(stream, 1, 3, |_| {
        (0..CHAIN).try_for_each(|_| ops::axpy(stream, 1.0, &x, &mut y))
    })?
    .median_ms();
    let runs = ((ctx.seconds.as_secs_f64() * 1e3 / first.max(1e-3)).ceil() as usize).clamp(5, 500);
    let (gpu, state) = ctx.with_state(|| {
        time_on_stream(stream, 0, runs, |_| {
            (0..CHAIN).try_for_each(|_| ops::axpy(stream, 1.0, &x, &mut y))
        })
    })?;
    let per_launch_us = gpu.median_ms() * 1e3 / CHAIN as f64;
    ctx.record(
        Suite::Launch,
        format!("axpy chain of {CHAIN}, GPU clock"),
        "hikube-gpu",
        Params::Launch {
            clock: "gpu".into(),
            launches_per_run: CHAIN,
            elements: ELEMENTS,
        },
        (per_launch_us, "µs", false),
        None,
        Timed {
            median_ms: per_launch_us / 1e3,
            runs,
            ops_per_run: CHAIN,
            state,
        },
    );

    ctx.running("launch: host time per launch");
    let ((samples, runs), state) = ctx.with_state(|| {
        let start = Instant::now();
        let mut samples = Vec::new();
        while samples.len() < 5 || (start.elapsed() < ctx.seconds && samples.len() < 5000) {
            stream.synchronize()?;
            let t = Instant::now();
            for _ in 0..HOST_CHAIN {
                ops::axpy(stream, 1.0, &x, &mut y)?;
            }
            samples.push(t.elapsed().as_secs_f64() * 1e6 / HOST_CHAIN as f64);
        }
        stream.synchronize()?;
        let runs = samples.len();
        Ok((samples, runs))
    })?;
    let host_us = median(samples);
    ctx.record(
        Suite::Launch,
        format!("axpy chain of {HOST_CHAIN}, host clock"),
        "hikube-gpu",
        Params::Launch {
            clock: "host".into(),
            launches_per_run: HOST_CHAIN,
            elements: ELEMENTS,
        },
        (host_us, "µs", false),
        None,
        Timed {
            median_ms: host_us / 1e3,
            runs,
            ops_per_run: HOST_CHAIN,
            state,
        },
    );
    Ok(())
}
