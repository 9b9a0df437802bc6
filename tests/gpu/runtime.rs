//! Runtime: CUDA graphs (capture, replay, in-place update, capture errors), the pinned transfer
//! pipeline and the prefetcher.

use crate::{ensure, fail, gpu_test};
use hikube_gpu::half::f16;
use hikube_gpu::ops::{self, matmul::Epilogue, matmul::Matmul, matmul::MatmulDesc};
use hikube_gpu::{
    Device, DeviceBuffer, Error, Graph, KernelOptions, PinnedPool, Prefetcher, PtxArch,
    TransferPipeline,
};
use libtest_mimic::{Failed, Trial};
use rand::Rng;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu_test("graph::capture_and_replay", capture_and_replay),
        gpu_test("graph::borrowed_resources", borrowed_resources),
        gpu_test(
            "graph::update_in_place_and_topology_change",
            update_in_place,
        ),
        gpu_test("graph::illegal_work_in_capture", illegal_work_in_capture),
        gpu_test(
            "graph::matmul_replay_matches_eager",
            matmul_replay_matches_eager,
        ),
        gpu_test("graph::dependent_chain_eager_and_replayed", dependent_chain),
        gpu_test("transfer::pipeline_round_trip", pipeline_round_trip),
        gpu_test("transfer::pinned_pool_reuses", pinned_pool_reuses),
        gpu_test(
            "transfer::prefetcher_delivers_every_batch",
            prefetcher_delivers_every_batch,
        ),
        gpu_test(
            "transfer::prefetcher_page_locks_once_per_pool",
            prefetcher_page_locks_once_per_pool,
        ),
    ]
}

fn random(n: usize) -> Vec<f32> {
    let mut rng = rand::rng();
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn close(a: &[f32], b: &[f64], tol: f64) -> Result<(), Failed> {
    ensure!(a.len() == b.len(), "lengths {} {}", a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        ensure!(
            (f64::from(*x) - y).abs() <= tol * y.abs().max(1.0),
            "element {i}: {x} vs {y}"
        );
    }
    Ok(())
}

fn capture_and_replay(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let other = device.new_stream().map_err(fail)?;
    let n = 4099;
    let (xh, yh) = (random(n), random(n));
    let x = DeviceBuffer::from_slice(&stream, &xh).map_err(fail)?;
    let y = DeviceBuffer::from_slice(&stream, &yh).map_err(fail)?;
    let mut g = Graph::capture(&stream, (x, y), |s, (x, y)| {
        for _ in 0..100 {
            ops::axpy(s, 0.5, x, y)?;
        }
        Ok(())
    })
    .map_err(fail)?;
    ensure!(g.node_count() == 100, "{} nodes", g.node_count());
    g.launch(&stream).map_err(fail)?;
    g.launch(&other).map_err(fail)?; // any stream of the device
    g.launch(&stream).map_err(fail)?;
    let (_, y) = g.into_resources().map_err(fail)?;
    let want: Vec<f64> = xh
        .iter()
        .zip(&yh)
        .map(|(x, y)| f64::from(*y) + 150.0 * f64::from(*x))
        .collect();
    close(&y.to_vec(&stream).map_err(fail)?, &want, 1e-4)
}

/// Kernels that depend on each other back to back (Fibonacci: y += x, then x += y, ...), eager
/// and replayed from a graph. On Hopper the crate's element-wise kernels start early
/// (programmatic dependent launch); a kernel that read before its predecessor finished would
/// leave a wrong number. The buffers are large enough that each kernel runs for a while.
fn dependent_chain(device: &Device) -> Result<(), Failed> {
    const STEPS: usize = 30; // fib(31) = 1346269 < 2^24: exact in f32
    let stream = device.new_stream().map_err(fail)?;
    let n = (8 << 20) + 13;
    let fib = |steps: usize, x0: f64, y0: f64| {
        let (mut x, mut y) = (x0, y0);
        for i in 0..steps {
            if i % 2 == 0 {
                y += x
            } else {
                x += y
            }
        }
        (x, y)
    };
    // `targets[i % targets.len()]` is the PTX target of step i (None: the device's own).
    let chain = |s: &hikube_gpu::Stream,
                 x: &mut DeviceBuffer<f32>,
                 y: &mut DeviceBuffer<f32>,
                 targets: &[Option<PtxArch>]| {
        for i in 0..STEPS {
            let options = KernelOptions {
                arch: targets[i % targets.len()],
            };
            if i % 2 == 0 {
                ops::axpy_with(s, 1.0, &*x, y, options)?;
            } else {
                ops::axpy_with(s, 1.0, &*y, x, options)?;
            }
        }
        Ok::<(), Error>(())
    };
    let check = |x: &DeviceBuffer<f32>, y: &DeviceBuffer<f32>, times: usize| {
        let (mut want_x, mut want_y) = (1.0, 2.0);
        for _ in 0..times {
            (want_x, want_y) = fib(STEPS, want_x, want_y);
        }
        for (name, buf, want) in [("x", x, want_x), ("y", y, want_y)] {
            let got = buf.to_vec(&stream).map_err(fail)?;
            if let Some((i, v)) = got.iter().enumerate().find(|(_, v)| f64::from(**v) != want) {
                return Err(Failed::from(format!("{name}[{i}] = {v}, want {want}")));
            }
        }
        Ok(())
    };
    // Eager: the device's own target (early start on Hopper); an older target forced onto the
    // device (its code has no grid-dependency wait, so it must launch the ordinary way); and
    // the two mixed, where an early-starting kernel follows an ordinary one and the reverse.
    let own = None;
    let old = Some(PtxArch::Compute80);
    for targets in [vec![own], vec![old], vec![own, old, own], vec![old, own]] {
        let mut x = DeviceBuffer::from_slice(&stream, &vec![1.0f32; n]).map_err(fail)?;
        let mut y = DeviceBuffer::from_slice(&stream, &vec![2.0f32; n]).map_err(fail)?;
        chain(&stream, &mut x, &mut y, &targets).map_err(fail)?;
        check(&x, &y, 1)?;
    }
    // Captured, then replayed once from a fresh start (1, 2).
    let x = DeviceBuffer::from_slice(&stream, &vec![1.0f32; n]).map_err(fail)?;
    let y = DeviceBuffer::from_slice(&stream, &vec![2.0f32; n]).map_err(fail)?;
    let mut g = Graph::capture(&stream, (x, y), |s, (x, y)| {
        chain(s, x, y, &[None, Some(PtxArch::Compute80), None])
    })
    .map_err(fail)?;
    g.launch(&stream).map_err(fail)?;
    let (x, y) = g.into_resources().map_err(fail)?;
    check(&x, &y, 1)
}

fn borrowed_resources(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let x = DeviceBuffer::from_slice(&stream, &[2.0f32; 64]).map_err(fail)?;
    let mut y = DeviceBuffer::from_slice(&stream, &[1.0f32; 64]).map_err(fail)?;
    {
        // The graph borrows x and y: neither can be dropped or touched while it lives.
        let mut g = Graph::capture(&stream, (&x, &mut y), |s, (x, y)| ops::axpy(s, 1.0, *x, *y))
            .map_err(fail)?;
        for _ in 0..5 {
            g.launch(&stream).map_err(fail)?;
        }
    }
    ensure!(
        y.to_vec(&stream).map_err(fail)? == [11.0; 64],
        "borrowed replay"
    );
    Ok(())
}

fn update_in_place(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let n = 1000;
    let mk = |v: f32| DeviceBuffer::from_slice(&stream, &vec![v; n]);
    let (x1, y1) = (mk(1.0).map_err(fail)?, mk(0.0).map_err(fail)?);
    let mut g =
        Graph::capture(&stream, (x1, y1), |s, (x, y)| ops::axpy(s, 1.0, x, y)).map_err(fail)?;
    g.launch(&stream).map_err(fail)?;
    // New buffers of the same shape and a new scalar: same topology, updated in place.
    let (x2, y2) = (mk(3.0).map_err(fail)?, mk(1.0).map_err(fail)?);
    let mut g = g
        .update(&stream, (x2, y2), |s, (x, y)| ops::axpy(s, 2.0, x, y))
        .map_err(fail)?;
    ensure!(
        g.updated_in_place(),
        "same topology was not updated in place"
    );
    g.launch(&stream).map_err(fail)?;
    g.launch(&stream).map_err(fail)?;
    // Two kernels instead of one: a new topology, instantiated anew.
    let (x3, y3) = (mk(1.0).map_err(fail)?, mk(0.0).map_err(fail)?);
    let (_, y2) = {
        let r = g.resources();
        (
            r.0.to_vec(&stream).map_err(fail)?,
            r.1.to_vec(&stream).map_err(fail)?,
        )
    };
    ensure!(y2 == vec![13.0; n], "updated graph wrote {:?}", &y2[..2]);
    let mut g = g
        .update(&stream, (x3, y3), |s, (x, y)| {
            ops::axpy(s, 1.0, x, y)?;
            ops::axpy(s, 1.0, x, y)
        })
        .map_err(fail)?;
    ensure!(
        !g.updated_in_place() && g.node_count() == 2,
        "topology change"
    );
    g.launch(&stream).map_err(fail)?;
    let (_, y3) = g.into_resources().map_err(fail)?;
    ensure!(
        y3.to_vec(&stream).map_err(fail)? == vec![2.0; n],
        "re-instantiated graph"
    );
    Ok(())
}

fn expect_capture_error<R>(what: &str, r: hikube_gpu::Result<R>) -> Result<(), Failed> {
    match r {
        Err(Error::Capture { reason }) => {
            eprintln!("{what}: {reason}");
            Ok(())
        }
        Err(e) => Err(format!("{what}: expected a capture error, got {e}").into()),
        Ok(_) => Err(format!("{what}: capture succeeded").into()),
    }
}

fn illegal_work_in_capture(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let side = device.new_stream().map_err(fail)?;
    let x = DeviceBuffer::from_slice(&stream, &[1.0f32; 256]).map_err(fail)?;
    let y = DeviceBuffer::from_slice(&stream, &[0.0f32; 256]).map_err(fail)?;
    let mut r = (x, y);
    let res = Graph::capture(&stream, &mut r, |s, (x, y)| {
        ops::axpy(s, 1.0, x, y)?;
        s.synchronize()
    });
    expect_capture_error("synchronize", res)?;
    let res = Graph::capture(&stream, &mut r, |s, _| {
        DeviceBuffer::<f32>::alloc(s, 16).map(drop)
    });
    expect_capture_error("allocation", res)?;
    let res = Graph::capture(&stream, &mut r, |s, (_, y)| y.to_vec(s).map(drop));
    expect_capture_error("copy to pageable memory", res)?;
    let res = Graph::capture(&stream, &mut r, |s, (x, y)| {
        side.wait(&s.record()?)?; // `side` joins the capture ...
        ops::axpy(&side, 1.0, x, y) // ... and is never joined back
    });
    expect_capture_error("unjoined second stream", res)?;
    // The stream works afterwards, and nothing captured ran.
    let (x, mut y) = r;
    ops::axpy(&stream, 2.0, &x, &mut y).map_err(fail)?;
    ensure!(
        y.to_vec(&stream).map_err(fail)? == [2.0; 256],
        "stream after failed captures"
    );
    Ok(())
}

fn matmul_replay_matches_eager(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let (m, n, k) = (96, 200, 1536); // split-K: its workspace was allocated by the plan
    let mut rng = rand::rng();
    let mut r = |len: usize| {
        (0..len)
            .map(|_| f16::from_f32(rng.random_range(-1.0f32..1.0)))
            .collect::<Vec<_>>()
    };
    let a = DeviceBuffer::from_slice(&stream, &r(m * k)).map_err(fail)?;
    let b = DeviceBuffer::from_slice(&stream, &r(k * n)).map_err(fail)?;
    let mut eager = DeviceBuffer::<f32>::alloc(&stream, m * n).map_err(fail)?;
    let plan = Matmul::<f16, f32>::new(&stream, MatmulDesc::new(m, n, k)).map_err(fail)?;
    plan.launch(&stream, &a, &b, &mut eager, Epilogue::new())
        .map_err(fail)?;
    let d = DeviceBuffer::from_slice(&stream, &vec![f32::NAN; m * n]).map_err(fail)?;
    let mut g = Graph::capture(&stream, (plan, &a, &b, d), |s, (plan, a, b, d)| {
        plan.launch(s, *a, *b, d, Epilogue::new())
    })
    .map_err(fail)?;
    g.launch(&stream).map_err(fail)?;
    let (_, _, _, d) = g.into_resources().map_err(fail)?;
    let (got, want) = (
        d.to_vec(&stream).map_err(fail)?,
        eager.to_vec(&stream).map_err(fail)?,
    );
    ensure!(got == want, "graph replay differs from the eager launch");
    Ok(())
}

fn pipeline_round_trip(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let pool = PinnedPool::new(device);
    let mut pipe = TransferPipeline::new(&pool, 1 << 20).map_err(fail)?;
    for n in [1usize, 1000, 3 * (1 << 18) + 17, 7 << 20] {
        let host = random(n);
        let mut gpu = DeviceBuffer::from_slice(&stream, &vec![f32::NAN; n]).map_err(fail)?;
        pipe.upload(&stream, &host, &mut gpu).map_err(fail)?;
        ensure!(gpu.to_vec(&stream).map_err(fail)? == host, "upload of {n}");
        let mut back = vec![f32::NAN; n];
        pipe.download(&stream, &gpu, &mut back).map_err(fail)?;
        ensure!(back == host, "download of {n}");
    }
    let mut short = DeviceBuffer::<f32>::alloc(&stream, 5).map_err(fail)?;
    match pipe.upload(&stream, &[1.0f32; 6], &mut short) {
        Err(Error::LengthMismatch {
            expected: 5,
            actual: 6,
        }) => Ok(()),
        other => Err(format!("length mismatch: {other:?}").into()),
    }
}

fn pinned_pool_reuses(device: &Device) -> Result<(), Failed> {
    let pool = PinnedPool::new(device);
    let a = pool.take(3 << 20).map_err(fail)?;
    ensure!(a.len() >= 3 << 20 && pool.cached_bytes() == 0, "take");
    drop(a);
    ensure!(
        pool.cached_bytes() == 3 << 20,
        "returned: {}",
        pool.cached_bytes()
    );
    let t = std::time::Instant::now();
    let b = pool.take((3 << 20) - 5).map_err(fail)?;
    let reuse = t.elapsed();
    ensure!(pool.cached_bytes() == 0 && b.len() == 3 << 20, "not reused");
    ensure!(reuse.as_micros() < 100, "a cached take took {reuse:?}");
    drop(b);
    pool.trim();
    ensure!(pool.cached_bytes() == 0, "trim");
    Ok(())
}

/// Two epochs through one `PinnedPool`: the first page-locks `depth + 2` staging buffers at its
/// first batch, the second reuses them (the cache holds the same bytes after both), and every
/// batch arrives intact.
fn prefetcher_page_locks_once_per_pool(device: &Device) -> Result<(), Failed> {
    let compute = device.new_stream().map_err(fail)?;
    let pool = PinnedPool::new(device);
    let batches: Vec<Vec<f32>> = (0..12).map(|i| random(300_000 + i)).collect();
    let (depth, class) = (3, 2 << 20); // 1.2 MB batches: 2 MiB blocks
    let mut cached = Vec::new();
    for epoch in 0..2 {
        let mut loader = Prefetcher::with_pool(&pool, batches.clone(), depth).map_err(fail)?;
        let mut seen = 0;
        while let Some(batch) = loader.next(&compute) {
            let got = batch.map_err(fail)?.to_vec(&compute).map_err(fail)?;
            ensure!(got == batches[seen], "epoch {epoch}, batch {seen}");
            seen += 1;
        }
        ensure!(seen == batches.len(), "epoch {epoch}: {seen} batches");
        drop(loader);
        cached.push(pool.cached_bytes());
    }
    ensure!(
        cached[0] >= (depth + 2) * class && cached[1] == cached[0],
        "cached staging bytes after each epoch: {cached:?}"
    );
    Ok(())
}

fn prefetcher_delivers_every_batch(device: &Device) -> Result<(), Failed> {
    let compute = device.new_stream().map_err(fail)?;
    let batches: Vec<Vec<f32>> = (0..24).map(|i| random(1000 + 4093 * i)).collect();
    let expect = batches.clone();
    let mut loader = Prefetcher::new(device, batches, 3).map_err(fail)?;
    let mut seen = 0;
    while let Some(batch) = loader.next(&compute) {
        let batch = batch.map_err(fail)?;
        // Compute on the batch on the compute stream, then check it.
        let mut y = DeviceBuffer::from_slice(&compute, &vec![0.0f32; batch.len()]).map_err(fail)?;
        ops::axpy(&compute, 1.0, &batch, &mut y).map_err(fail)?;
        ensure!(
            y.to_vec(&compute).map_err(fail)? == expect[seen],
            "batch {seen}"
        );
        seen += 1;
    }
    ensure!(seen == expect.len(), "{seen} of {} batches", expect.len());
    Ok(())
}
