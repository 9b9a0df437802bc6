//! Multi-GPU figures, for every GPU the process sees (one or more):
//!
//! 1. copies between ranks: peer (`cuMemcpyPeerAsync`) and staged through pinned host memory,
//!    GB/s, for every ordered pair of GPUs (with one GPU: between two ranks on it);
//! 2. NCCL all-reduce (f32 sum, in place and out of place) from 1 MiB to 1 GiB: algorithm
//!    bandwidth and bus bandwidth `busbw = algbw · 2(n−1)/n`, the figure nccl-tests prints
//!    (undefined for n = 1); `scripts/reference/torch_allreduce.py` prints torch.distributed's
//!    (in place) on the same machine;
//! 3. the data-parallel step (3 GEMM layers, hidden 4096, 4096 rows per GPU, f16) on 1..N
//!    GPUs: step time, TFLOP/s, scaling (throughput on n GPUs over one GPU's), and the same
//!    step without the gradient exchange (`GradientSync::None`): what the exchange costs once
//!    overlapped with the backward pass.
//!
//!     cargo bench --features nccl --bench multi [-- --quick]
//!
//! Plain timing: warm-up, then the median of timed repetitions, with CUDA events (all-reduce:
//! the slowest rank's events) or the host clock around fully synchronized work (copies between
//! two devices, the step).

use hikube_gpu::multi::{
    nccl_version, Communicator, CopyPath, DataParallel, DataParallelConfig, DeviceSet,
    GradientSync, PeerCopy, ReduceOp,
};
use hikube_gpu::{Device, DeviceBuffer, Event, Result};
use std::time::Instant;

const MIB: usize = 1 << 20;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn copies(all: &DeviceSet, quick: bool) -> Result<()> {
    let bytes = 256 * MIB;
    let reps = if quick { 5 } else { 20 };
    let n = all.len();
    // With one GPU, two ranks on it: the peer path is then a copy within the GPU and the staged
    // path a round trip through host memory.
    let set = if n == 1 {
        DeviceSet::from_devices(vec![all.devices()[0].clone(), all.devices()[0].clone()])?
    } else {
        all.clone()
    };
    println!(
        "\n## Copies between ranks, {} MiB, median of {reps}",
        bytes / MIB
    );
    println!("| from | to | link | path | GB/s |\n|---|---|---|---|---|");
    let topo = set.topology();
    let streams = set.new_streams()?;
    let mut copier = PeerCopy::new(&set, 16 * MIB)?;
    for from in 0..set.len() {
        for to in 0..set.len() {
            if from == to {
                continue;
            }
            let src = DeviceBuffer::<u8>::zeroed(&streams[from], bytes)?;
            let mut dst = DeviceBuffer::<u8>::zeroed(&streams[to], bytes)?;
            for path in [CopyPath::Peer, CopyPath::Staged] {
                let mut times = Vec::new();
                for i in 0..reps + 2 {
                    set.synchronize()?;
                    let t = Instant::now();
                    copier.copy(path, &streams[from], &src, &streams[to], &mut dst)?;
                    streams[to].synchronize()?;
                    streams[from].synchronize()?;
                    if i >= 2 {
                        times.push(t.elapsed().as_secs_f64());
                    }
                }
                let gbs = bytes as f64 / median(times) / 1e9;
                println!(
                    "| {} (GPU {}) | {} (GPU {}) | {:?} | {path:?} | {gbs:.1} |",
                    from,
                    set.devices()[from].ordinal(),
                    to,
                    set.devices()[to].ordinal(),
                    topo.links[from][to].kind
                );
            }
        }
    }
    Ok(())
}

fn all_reduce(set: &DeviceSet, quick: bool) -> Result<()> {
    let comm = Communicator::new(set)?;
    let n = set.len();
    let sizes: Vec<usize> = if quick {
        vec![MIB, 16 * MIB, 256 * MIB, 1024 * MIB]
    } else {
        (0..=10).map(|p| MIB << p).collect()
    };
    println!(
        "\n## NCCL {} all-reduce, f32 sum in place, {n} rank(s)",
        nccl_version()?
    );
    if n == 1 {
        println!(
            "(one rank: busbw = algbw·2(n−1)/n is undefined; in place NCCL has nothing to do, \
             out of place it copies send to recv)"
        );
    }
    println!(
        "| size | in place (µs) | algbw (GB/s) | busbw (GB/s) | out of place (µs) | algbw (GB/s) \
         | busbw (GB/s) |\n|---|---|---|---|---|---|---|"
    );
    for bytes in sizes {
        let len = bytes / 4;
        let make = || {
            comm.streams()
                .iter()
                .map(|s| DeviceBuffer::<f32>::zeroed(s, len))
                .collect::<Result<Vec<_>>>()
        };
        let mut bufs = make()?;
        let send = make()?;
        let iters = if bytes >= 256 * MIB { 5 } else { 20 };
        let reps = if quick { 5 } else { 10 };
        let mut row = format!("| {} MiB |", bytes / MIB);
        for in_place in [true, false] {
            let run = |bufs: &mut Vec<DeviceBuffer<f32>>| {
                if in_place {
                    comm.all_reduce_in_place(bufs, ReduceOp::Sum)
                } else {
                    comm.all_reduce(&send, bufs, ReduceOp::Sum)
                }
            };
            for _ in 0..3 {
                run(&mut bufs)?;
            }
            comm.synchronize()?;
            let mut times = Vec::new();
            for _ in 0..reps {
                let starts: Vec<Event> = comm
                    .streams()
                    .iter()
                    .map(|s| s.record())
                    .collect::<Result<_>>()?;
                for _ in 0..iters {
                    run(&mut bufs)?;
                }
                let ends: Vec<Event> = comm
                    .streams()
                    .iter()
                    .map(|s| s.record())
                    .collect::<Result<_>>()?;
                let mut worst = 0.0f64;
                for (s, e) in starts.iter().zip(&ends) {
                    worst = worst.max(f64::from(s.elapsed_ms(e)?));
                }
                times.push(worst / 1e3 / iters as f64);
            }
            let t = median(times);
            let algbw = bytes as f64 / t / 1e9;
            let busbw = if n > 1 {
                format!("{:.1}", algbw * 2.0 * (n - 1) as f64 / n as f64)
            } else {
                "undefined".to_string()
            };
            row += &format!(" {:.1} | {algbw:.1} | {busbw} |", t * 1e6);
        }
        println!("{row}");
    }
    Ok(())
}

fn data_parallel(all: &DeviceSet, quick: bool) -> Result<()> {
    let config = DataParallelConfig {
        hidden: 4096,
        layers: 3,
        batch_per_rank: 4096,
        lr: 1e-3,
    };
    let steps = if quick { 10 } else { 30 };
    println!(
        "\n## Data-parallel step: {} GEMM layers, hidden {}, {} rows per GPU, f16, NCCL \
         gradient all-reduce overlapped with backward; median of {steps} steps",
        config.layers, config.hidden, config.batch_per_rank
    );
    println!(
        "| GPUs | step (ms) | TFLOP/s | samples/s | scaling vs 1 GPU | step without exchange (ms) \
         | exchange cost |\n|---|---|---|---|---|---|---|"
    );
    let mut base = None;
    for n in 1..=all.len() {
        let set = DeviceSet::from_devices(all.devices()[..n].to_vec())?;
        let time = |sync| -> Result<(f64, f64)> {
            let mut dp = DataParallel::random(&set, config, sync, 1)?;
            for _ in 0..3 {
                dp.step()?;
            }
            dp.synchronize()?;
            let mut times = Vec::new();
            for _ in 0..steps {
                let t = Instant::now();
                dp.step()?;
                dp.synchronize()?;
                times.push(t.elapsed().as_secs_f64());
            }
            Ok((median(times), dp.flops_per_step()))
        };
        let (t, flops) = time(GradientSync::Nccl)?;
        let (t_alone, _) = time(GradientSync::None)?;
        let samples = (config.batch_per_rank * n) as f64 / t;
        let base = *base.get_or_insert(samples);
        println!(
            "| {n} | {:.3} | {:.0} | {:.0} | {:.2}x | {:.3} | {:+.1} % |",
            t * 1e3,
            flops / t / 1e12,
            samples,
            samples / base,
            t_alone * 1e3,
            (t / t_alone - 1.0) * 100.0
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let set = match DeviceSet::all() {
        Ok(s) => s,
        Err(e) if e.is_no_gpu() => {
            eprintln!("multi bench: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let names: Vec<String> = set
        .devices()
        .iter()
        .map(|d: &Device| d.model().name.to_string())
        .collect();
    println!("# multi-GPU: {} GPU(s): {}", set.len(), names.join(", "));
    print!("{}", set.topology());
    copies(&set, quick)?;
    all_reduce(&set, quick)?;
    data_parallel(&set, quick)?;
    Ok(())
}
