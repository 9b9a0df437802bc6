//! Runtime figures: kernel launch latency eager and as graph replay, host↔device transfers
//! (pinned, pageable, and pageable through the pipeline) from 1 MiB to 1 GiB, device copies.
//!
//!     cargo bench --bench runtime            # the summary table (medians, CUDA events)
//!
//! Compare with `python3 scripts/reference/torch_launch.py` and
//! `python3 scripts/reference/torch_copy.py 256` run on the same machine.

use hikube_gpu::{
    ops, time_on_stream, Device, DeviceBuffer, Graph, PinnedBuffer, PinnedPool, Result, Stream,
    TransferPipeline,
};
use std::time::Instant;

mod pool;

const MIB: usize = 1 << 20;
const CHAIN: usize = 1000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Microseconds per kernel for a chain of `CHAIN` tiny kernels: issued one by one (wall clock
/// from the first launch to the end of the last kernel), and replayed from a graph (events).
fn launch_latency(
    stream: &Stream,
    streams: &str,
    with_graph: bool,
    rows: &mut Vec<String>,
) -> Result<()> {
    let x = DeviceBuffer::from_slice(stream, &[1.0f32; 256])?;
    let mut y = DeviceBuffer::from_slice(stream, &[0.0f32; 256])?;
    for _ in 0..3 {
        ops::axpy(stream, 1.0, &x, &mut y)?;
    }
    stream.synchronize()?;
    let mut eager = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        for _ in 0..CHAIN {
            ops::axpy(stream, 1.0, &x, &mut y)?;
        }
        stream.synchronize()?;
        eager.push(t.elapsed().as_secs_f64() * 1e6 / CHAIN as f64);
    }
    rows.push(format!(
        "| launch, eager ({streams} in process) | {:.2} µs per kernel | PyTorch 10.7 |",
        median(eager)
    ));
    if !with_graph {
        return Ok(());
    }
    let mut graph = Graph::capture(stream, (&x, &mut y), |s, (x, y)| {
        for _ in 0..CHAIN {
            ops::axpy(s, 1.0, *x, *y)?;
        }
        Ok(())
    })?;
    let replay = time_on_stream(stream, 3, 10, |_| graph.launch(stream))?;
    drop(graph);
    rows.push(format!(
        "| launch, graph replay | {:.2} µs per kernel | PyTorch 1.23 |",
        replay.median_ms() * 1e3 / CHAIN as f64
    ));
    Ok(())
}

/// The driver's own floor on this machine: `cuLaunchKernel` of an empty kernel (hand-written PTX,
/// JIT-compiled by the driver) with prebuilt arguments, in a loop, on `stream`. What the crate's
/// eager figure cannot go below; it depends on the host CPU more than on the GPU.
fn launch_floor(stream: &Stream, rows: &mut Vec<String>) -> Result<()> {
    use cudarc::driver::sys;
    const EMPTY: &str = ".version 8.4\n.target sm_70\n.address_size 64\n\
                         .visible .entry empty() { ret; }\n";
    // SAFETY: the raw stream launches an empty kernel that touches no memory; it is synchronized
    // before the crate's work continues.
    let raw = unsafe { stream.cuda_stream() };
    let module = raw
        .context()
        .load_module(cudarc::nvrtc::Ptx::from_src(EMPTY))?;
    let func = module.load_function("empty")?;
    raw.context().bind_to_thread()?;
    let launch_all = || -> Result<()> {
        for _ in 0..CHAIN {
            // SAFETY: `empty` takes no parameters and touches no memory; the function belongs
            // to the stream's context, current on this thread (bound above).
            unsafe {
                sys::cuLaunchKernel(
                    func.cu_function(),
                    1,
                    1,
                    1,
                    32,
                    1,
                    1,
                    0,
                    raw.cu_stream(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            }
            .result()?;
        }
        Ok(())
    };
    launch_all()?;
    stream.synchronize()?;
    let mut eager = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        launch_all()?;
        stream.synchronize()?;
        eager.push(t.elapsed().as_secs_f64() * 1e6 / CHAIN as f64);
    }
    rows.push(format!(
        "| launch floor: the driver's cuLaunchKernel of an empty kernel, eager | {:.2} µs per kernel | |",
        median(eager)
    ));
    Ok(())
}

fn rayon_copy(dst: &mut [u8], src: &[u8]) {
    use rayon::prelude::*;
    dst.par_chunks_mut(2 << 20)
        .zip(src.par_chunks(2 << 20))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

fn gbs(bytes: usize, ms: f64) -> f64 {
    bytes as f64 / (ms * 1e6)
}

fn transfers(device: &Device, stream: &Stream, rows: &mut Vec<String>) -> Result<()> {
    let pool = PinnedPool::new(device);
    let mut pipe = TransferPipeline::new(&pool, 16 * MIB)?;
    for size in [MIB, 16 * MIB, 256 * MIB, 1024 * MIB] {
        let runs = if size >= 256 * MIB { 5 } else { 20 };
        let mut dev = [
            DeviceBuffer::<u8>::alloc(stream, size)?,
            DeviceBuffer::<u8>::alloc(stream, size)?,
        ];
        dev[0].fill(stream, 0x5A)?;
        dev[1].fill(stream, 0xA5)?;
        let mut pinned = PinnedBuffer::<u8>::zeroed(device, size)?;
        pinned
            .as_mut_slice()?
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i * 13) as u8);
        let mut pageable: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
        let label = if size >= 1024 * MIB {
            "1 GiB".to_string()
        } else {
            format!("{} MiB", size / MIB)
        };
        let mut row = |name: &str, bytes: usize, ms: f64| {
            rows.push(format!(
                "| {name}, {label} | {:.1} GB/s | |",
                gbs(bytes, ms)
            ));
        };
        let t = time_on_stream(stream, 2, runs, |i| {
            dev[i % 2].copy_from_pinned(stream, &pinned)
        })?;
        row("H2D pinned", size, t.median_ms());
        let t = time_on_stream(stream, 1, runs, |i| {
            dev[i % 2].copy_from_host(stream, &pageable)
        })?;
        row("H2D pageable", size, t.median_ms());
        // The pipeline returns once the source is staged: time it on the host, to the end.
        let mut host_ms = Vec::new();
        for i in 0..runs + 1 {
            let t0 = Instant::now();
            pipe.upload(stream, &pageable, &mut dev[i % 2])?;
            stream.synchronize()?;
            host_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        host_ms.remove(0);
        row("H2D pageable via pipeline", size, median(host_ms));
        let t = time_on_stream(stream, 2, runs, |i| {
            dev[i % 2].copy_to_pinned(stream, &mut pinned)
        })?;
        row("D2H pinned", size, t.median_ms());
        let t = time_on_stream(stream, 1, runs, |i| {
            dev[i % 2].copy_to_host(stream, &mut pageable)
        })?;
        row("D2H pageable", size, t.median_ms());
        let mut host_ms = Vec::new();
        for i in 0..runs + 1 {
            let t0 = Instant::now();
            pipe.download(stream, &dev[i % 2], &mut pageable)?;
            host_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        host_ms.remove(0);
        row("D2H pageable via pipeline", size, median(host_ms));
        // Ceilings of the pageable paths on this host: a multi-threaded host copy into pinned
        // memory (what the pipeline must do), and pinning the pageable buffer in place.
        if size >= 256 * MIB {
            let mut copy_ms = Vec::new();
            for _ in 0..runs {
                let t0 = Instant::now();
                rayon_copy(pinned.as_mut_slice()?, &pageable);
                copy_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            row(
                "host copy pageable → pinned (16 threads)",
                size,
                median(copy_ms),
            );
            let t0 = Instant::now();
            let in_place = PinnedBuffer::from_vec(device, std::mem::take(&mut pageable))?;
            let reg_ms = t0.elapsed().as_secs_f64() * 1e3;
            let t = time_on_stream(stream, 1, runs, |i| {
                dev[i % 2].copy_from_pinned(stream, &in_place)
            })?;
            row(
                &format!(
                    "H2D pageable pinned in place, PinnedBuffer::from_vec ({reg_ms:.1} ms to pin)"
                ),
                size,
                t.median_ms(),
            );
            // Unpinned (and freed) here, inside the measured section's error handling.
            in_place.into_vec()?;
        }
        let (a, b) = dev.split_at_mut(1);
        let t = time_on_stream(stream, 3, runs, |i| {
            if i % 2 == 0 {
                b[0].copy_from(stream, &a[0])
            } else {
                a[0].copy_from(stream, &b[0])
            }
        })?;
        row("D2D (read + write)", 2 * size, t.median_ms());
    }
    Ok(())
}

fn main() -> Result<()> {
    let device = match Device::open(0) {
        Ok(d) => d,
        Err(e) if e.is_no_gpu() => {
            eprintln!("runtime bench: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let mut rows = Vec::new();
    // Launch latency first, on the default stream, before any other stream exists: the crate
    // then skips per-buffer events (one stream needs none).
    launch_latency(&device.default_stream(), "one stream", false, &mut rows)?;
    let stream = device.new_stream()?;
    launch_latency(&stream, "several streams", true, &mut rows)?;
    launch_floor(&stream, &mut rows)?;
    transfers(&device, &stream, &mut rows)?;
    let mut criterion = criterion::Criterion::default()
        .configure_from_args()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    pool::bench(&mut criterion, &device, &mut rows)?;
    println!("\n{}: runtime (medians)", device.model().name);
    println!("| what | hikube-gpu | anchor |\n|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
