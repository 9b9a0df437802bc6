//! The soundness issue's runtime holes, each with a test that fails if it reopens: one context
//! per GPU, every reader remembered, no early reuse or host view, capture that stops nobody,
//! graphs that keep what they touch alive and replay in order, the capped pool under churn.
//!
//! "Slow" work below is a chain of memsets over 256 MiB (about 10 ms in all on an H100/H200),
//! queued before the operation under test on the stream that must be waited for: if the
//! ordering were missing, the operation would run before the chain ends and see the old value.

use crate::{ensure, fail, gpu_test};
use hikube_gpu::ops::{self, matmul::Epilogue, matmul::Matmul, matmul::MatmulDesc};
use hikube_gpu::{
    Cap, Device, DeviceBuffer, Error, Graph, MemoryPool, PinnedBuffer, PoolOptions, Selection,
    Stream,
};
use libtest_mimic::{Failed, Trial};
use rand::{Rng, SeedableRng};

pub fn trials() -> Vec<Trial> {
    vec![
        gpu_test("soundness::one_context_three_ways", one_context_three_ways),
        gpu_test(
            "soundness::write_waits_for_every_reader",
            write_waits_for_every_reader,
        ),
        gpu_test(
            "soundness::pool_reuse_waits_for_every_reader",
            pool_reuse_waits_for_every_reader,
        ),
        gpu_test(
            "soundness::pinned_view_waits_for_every_copy",
            pinned_view_waits_for_every_copy,
        ),
        gpu_test(
            "soundness::capture_stops_no_other_thread",
            capture_stops_no_other_thread,
        ),
        gpu_test(
            "soundness::other_thread_refused_on_capturing_stream",
            other_thread_refused_on_capturing_stream,
        ),
        gpu_test(
            "soundness::joined_stream_refused_in_capture",
            joined_stream_refused_in_capture,
        ),
        gpu_test(
            "soundness::graph_keeps_what_it_touches",
            graph_keeps_what_it_touches,
        ),
        gpu_test(
            "soundness::replay_is_ordered_both_ways",
            replay_is_ordered_both_ways,
        ),
        gpu_test(
            "soundness::wide_fill_refused_in_capture",
            wide_fill_refused_in_capture,
        ),
        gpu_test("soundness::capped_pool_churn", capped_pool_churn),
    ]
}

const SLOW: usize = 64 << 20; // u32 elements: 256 MiB

/// Keeps `stream` busy for several milliseconds on a scratch buffer of its own.
fn busy(stream: &Stream, scratch: &mut DeviceBuffer<u32>) -> Result<(), Failed> {
    for i in 0..40u32 {
        scratch.fill(stream, i).map_err(fail)?;
    }
    Ok(())
}

fn all_equal(v: &[u32], want: u32) -> bool {
    v.iter().all(|&x| x == want)
}

/// The same GPU opened by index, by UUID and by selection is one context: a value written
/// through one handle's stream, after slow work, is what another handle's stream reads.
fn one_context_three_ways(device: &Device) -> Result<(), Failed> {
    let uuid = device.properties().uuid.clone();
    let handles = [
        Device::open(device.ordinal()).map_err(fail)?,
        Device::by_uuid(&uuid).map_err(fail)?,
        Device::select(Selection::Uuid(uuid)).map_err(fail)?,
    ];
    for (i, h) in handles.iter().enumerate() {
        ensure!(h == device, "handle {i} is another device");
    }
    let (a, b, c) = (
        handles[0].new_stream().map_err(fail)?,
        handles[1].new_stream().map_err(fail)?,
        handles[2].new_stream().map_err(fail)?,
    );
    let mut x = DeviceBuffer::<u32>::zeroed(&a, SLOW).map_err(fail)?;
    busy(&a, &mut x)?;
    x.fill(&a, 0xA11CE).map_err(fail)?;
    // Read on b (another handle): must wait for a's chain.
    let mut y = DeviceBuffer::<u32>::alloc(&b, SLOW).map_err(fail)?;
    y.copy_from(&b, &x).map_err(fail)?;
    let got = y.to_vec(&c).map_err(fail)?;
    ensure!(
        all_equal(&got, 0xA11CE),
        "read through another handle saw an old value"
    );
    Ok(())
}

/// Three streams read `x` (each after slow work of its own); a write to `x` on a fourth stream
/// must wait for all three reads, not only the last one recorded.
fn write_waits_for_every_reader(device: &Device) -> Result<(), Failed> {
    let w = device.new_stream().map_err(fail)?;
    let mut x = DeviceBuffer::<u32>::alloc(&w, SLOW).map_err(fail)?;
    x.fill(&w, 1).map_err(fail)?;
    let mut readers = Vec::new();
    for slow in [true, true, false] {
        let s = device.new_stream().map_err(fail)?;
        let mut scratch = DeviceBuffer::<u32>::alloc(&s, SLOW).map_err(fail)?;
        if slow {
            busy(&s, &mut scratch)?;
        }
        let mut y = DeviceBuffer::<u32>::alloc(&s, SLOW).map_err(fail)?;
        y.copy_from(&s, &x).map_err(fail)?;
        readers.push((s, y, scratch));
    }
    x.fill(&w, 2).map_err(fail)?;
    for (i, (s, y, _)) in readers.iter().enumerate() {
        let got = y.to_vec(s).map_err(fail)?;
        ensure!(all_equal(&got, 1), "reader {i} saw the later write");
    }
    Ok(())
}

/// A pooled block read on another stream is not handed out again (even to its own stream, the
/// fast path) until that read is done.
fn pool_reuse_waits_for_every_reader(device: &Device) -> Result<(), Failed> {
    let pool = MemoryPool::new(device, PoolOptions::default()).map_err(fail)?;
    let a = device.new_stream().map_err(fail)?;
    let b = device.new_stream().map_err(fail)?;
    let mut x = pool.alloc::<u32>(&a, SLOW).map_err(fail)?;
    x.fill(&a, 5).map_err(fail)?;
    let at = x.device_address();
    let mut scratch = DeviceBuffer::<u32>::alloc(&b, SLOW).map_err(fail)?;
    busy(&b, &mut scratch)?;
    let mut y = DeviceBuffer::<u32>::alloc(&b, SLOW).map_err(fail)?;
    y.copy_from(&b, &x).map_err(fail)?;
    drop(x);
    let mut again = pool.alloc::<u32>(&a, SLOW).map_err(fail)?;
    ensure!(again.device_address() == at, "the block was not reused");
    again.fill(&a, 6).map_err(fail)?;
    let got = y.to_vec(&b).map_err(fail)?;
    ensure!(
        all_equal(&got, 5),
        "the reused block was written before the read ended"
    );
    Ok(())
}

/// A pinned buffer's host view waits for every copy from it, on every stream.
fn pinned_view_waits_for_every_copy(device: &Device) -> Result<(), Failed> {
    let n = 16 << 20;
    let mut host = PinnedBuffer::<u32>::from_slice(device, &vec![3u32; n]).map_err(fail)?;
    let (s1, s2) = (
        device.new_stream().map_err(fail)?,
        device.new_stream().map_err(fail)?,
    );
    let mut scratch = DeviceBuffer::<u32>::alloc(&s1, SLOW).map_err(fail)?;
    busy(&s1, &mut scratch)?;
    let mut d1 = DeviceBuffer::<u32>::alloc(&s1, n).map_err(fail)?;
    let mut d2 = DeviceBuffer::<u32>::alloc(&s2, n).map_err(fail)?;
    d1.copy_from_pinned(&s1, &host).map_err(fail)?; // slow: after s1's chain
    d2.copy_from_pinned(&s2, &host).map_err(fail)?; // quick, and last
    host.as_mut_slice().map_err(fail)?.fill(4);
    ensure!(
        all_equal(&d1.to_vec(&s1).map_err(fail)?, 3),
        "the slow copy saw the host write"
    );
    ensure!(
        all_equal(&d2.to_vec(&s2).map_err(fail)?, 3),
        "the quick copy saw the host write"
    );
    Ok(())
}

/// Two threads capture graphs at once while a third orders work across two streams: nobody's
/// ordering is switched off, and both graphs replay what they captured.
fn capture_stops_no_other_thread(device: &Device) -> Result<(), Failed> {
    let captures: Vec<std::thread::JoinHandle<Result<f32, String>>> = (0..2)
        .map(|t| {
            let device = device.clone();
            std::thread::spawn(move || {
                let s = device.new_stream().map_err(|e| e.to_string())?;
                let x = DeviceBuffer::from_slice(&s, &[1.0f32; 4096]).map_err(|e| e.to_string())?;
                let y = DeviceBuffer::from_slice(&s, &[0.0f32; 4096]).map_err(|e| e.to_string())?;
                let alpha = (t + 1) as f32;
                let mut g = Graph::capture(&s, (x, y), |s, (x, y)| {
                    std::thread::sleep(std::time::Duration::from_millis(30));
                    ops::axpy(s, alpha, x, y)
                })
                .map_err(|e| e.to_string())?;
                g.launch(&s).map_err(|e| e.to_string())?;
                g.launch(&s).map_err(|e| e.to_string())?;
                let (_, y) = g.into_resources().map_err(|e| e.to_string())?;
                Ok(y.to_vec(&s).map_err(|e| e.to_string())?[17])
            })
        })
        .collect();
    // Meanwhile, here: a write on one stream after slow work, read on another.
    let (a, b) = (
        device.new_stream().map_err(fail)?,
        device.new_stream().map_err(fail)?,
    );
    for round in 0..3u32 {
        let mut x = DeviceBuffer::<u32>::alloc(&a, SLOW).map_err(fail)?;
        busy(&a, &mut x)?;
        x.fill(&a, 100 + round).map_err(fail)?;
        let got = x.to_vec(&b).map_err(fail)?;
        ensure!(
            all_equal(&got, 100 + round),
            "round {round}: read before the write"
        );
    }
    for (t, h) in captures.into_iter().enumerate() {
        let y = h
            .join()
            .map_err(|_| "capture thread panicked")?
            .map_err(fail)?;
        ensure!(y == 2.0 * (t + 1) as f32, "graph {t} replayed to {y}");
    }
    Ok(())
}

/// Another thread's work on a stream while this thread captures on it is refused with a typed
/// error (it would land in the graph, unordered with that thread's buffers), the capture stays
/// valid, and that thread's work before the capture is waited for by later users elsewhere.
fn other_thread_refused_on_capturing_stream(device: &Device) -> Result<(), Failed> {
    let s = device.new_stream().map_err(fail)?;
    let other = device.new_stream().map_err(fail)?;
    // Eager work before the capture, noted on `s` without a marker (none is needed yet).
    let mut slow = DeviceBuffer::<u32>::alloc(&s, SLOW).map_err(fail)?;
    busy(&s, &mut slow)?;
    slow.fill(&s, 7).map_err(fail)?;
    let x = DeviceBuffer::from_slice(&s, &[1.0f32; 256]).map_err(fail)?;
    let y = DeviceBuffer::from_slice(&s, &[0.0f32; 256]).map_err(fail)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let (s2, x2) = (
        s.clone(),
        DeviceBuffer::from_slice(&s, &[1.0f32; 256]).map_err(fail)?,
    );
    let mut z2 = DeviceBuffer::from_slice(&s, &[0.0f32; 256]).map_err(fail)?;
    let mut refused = None;
    let mut g = Graph::capture(&s, (x, y), |s, (x, y)| {
        std::thread::scope(|scope| {
            scope.spawn(|| tx.send(ops::axpy(&s2, 1.0, &x2, &mut z2)));
        });
        refused = rx.recv().ok();
        ops::axpy(s, 2.0, x, y)
    })
    .map_err(fail)?;
    ensure!(
        matches!(refused, Some(Err(Error::Capture { .. }))),
        "another thread's axpy on the capturing stream gave {refused:?}"
    );
    // Read on another stream after the capture: must wait for the fill queued before it.
    let got = slow.to_vec(&other).map_err(fail)?;
    ensure!(
        all_equal(&got, 7),
        "read before the fill queued before the capture"
    );
    g.launch(&s).map_err(fail)?;
    let (_, y) = g.into_resources().map_err(fail)?;
    let y = y.to_vec(&s).map_err(fail)?;
    ensure!(y.iter().all(|&v| v == 2.0), "replay gave {}", y[0]);
    Ok(())
}

/// A stream cannot be pulled into a capture through an event (only the capture's own stream
/// may work there), and the capture fails cleanly.
fn joined_stream_refused_in_capture(device: &Device) -> Result<(), Failed> {
    let s = device.new_stream().map_err(fail)?;
    let other = device.new_stream().map_err(fail)?;
    let x = DeviceBuffer::from_slice(&s, &[1.0f32; 64]).map_err(fail)?;
    let mut y = DeviceBuffer::from_slice(&s, &[0.0f32; 64]).map_err(fail)?;
    let mut inner = None;
    let r = Graph::capture(&s, (), |s, _| {
        let e = s.record()?;
        inner = Some(other.wait(&e));
        Ok(())
    });
    ensure!(
        matches!(inner, Some(Err(Error::Capture { .. }))),
        "joining another stream to the capture gave {inner:?}"
    );
    drop(r);
    ensure!(!s.is_capturing().map_err(fail)?, "the capture did not end");
    ops::axpy(&s, 1.0, &x, &mut y).map_err(fail)?;
    ensure!(
        y.to_vec(&s).map_err(fail)?[0] == 1.0,
        "the stream is not usable after"
    );
    Ok(())
}

/// A graph whose closure borrowed inputs from outside and used a plan with a split-K workspace
/// keeps all of them alive: the user drops them, the pool gets other requests, and replays
/// still compute the right product (memcheck sees no freed memory).
fn graph_keeps_what_it_touches(device: &Device) -> Result<(), Failed> {
    let s = device.new_stream().map_err(fail)?;
    let pool = MemoryPool::new(device, PoolOptions::default()).map_err(fail)?;
    let (m, n, k) = (64, 96, 4096);
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::rng().random());
    let ah: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
    let bh: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let to16 = |v: &[f32]| -> Vec<hikube_gpu::half::f16> {
        v.iter()
            .map(|&x| hikube_gpu::half::f16::from_f32(x))
            .collect()
    };
    let a = pool.from_slice(&s, &to16(&ah)).map_err(fail)?;
    let b = pool.from_slice(&s, &to16(&bh)).map_err(fail)?;
    let (a_at, b_at) = (a.device_address(), b.device_address());
    let plan = Matmul::<hikube_gpu::half::f16, f32>::new(&s, MatmulDesc::new(m, n, k).split_k(4))
        .map_err(fail)?;
    plan.launch(
        &s,
        &a,
        &b,
        &mut DeviceBuffer::<f32>::alloc(&s, m * n).map_err(fail)?,
        Epilogue::new(),
    )
    .map_err(fail)?; // loads the kernels outside the capture
    let d = DeviceBuffer::<f32>::zeroed(&s, m * n).map_err(fail)?;
    let mut g =
        Graph::capture(&s, d, |s, d| plan.launch(s, &a, &b, d, Epilogue::new())).map_err(fail)?;
    drop((a, b, plan));
    // The pool must not hand the graph's blocks to anyone while the graph lives.
    let junk1 = pool
        .from_slice(&s, &vec![hikube_gpu::half::f16::NAN; m * k])
        .map_err(fail)?;
    let junk2 = pool
        .from_slice(&s, &vec![hikube_gpu::half::f16::NAN; k * n])
        .map_err(fail)?;
    ensure!(
        ![a_at, b_at].contains(&junk1.device_address())
            && ![a_at, b_at].contains(&junk2.device_address()),
        "the pool reused a block the graph holds"
    );
    g.launch(&s).map_err(fail)?;
    g.launch(&s).map_err(fail)?;
    let got = g.resources().to_vec(&s).map_err(fail)?;
    let round = |x: f32| f64::from(hikube_gpu::half::f16::from_f32(x).to_f32());
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for i in 0..m {
        for j in 0..n {
            let r: f64 = (0..k)
                .map(|p| round(ah[i * k + p]) * round(bh[p * n + j]))
                .sum();
            err += (f64::from(got[i * n + j]) - r).powi(2);
            norm += r * r;
        }
    }
    let rel = (err / norm).sqrt();
    ensure!(
        rel < 1e-3,
        "replay after the inputs and the plan were dropped: rel err {rel:.2e}"
    );
    Ok(())
}

/// A replay waits for a write on another stream to what it reads, and a read on a third stream
/// waits for the replay that writes it.
fn replay_is_ordered_both_ways(device: &Device) -> Result<(), Failed> {
    let (s1, s2, s3) = (
        device.new_stream().map_err(fail)?,
        device.new_stream().map_err(fail)?,
        device.new_stream().map_err(fail)?,
    );
    let n = SLOW;
    let mut x = DeviceBuffer::<f32>::zeroed(&s2, n).map_err(fail)?;
    let y = DeviceBuffer::<f32>::zeroed(&s2, n).map_err(fail)?;
    let mut g = Graph::capture(&s2, y, |s, y| ops::axpy(s, 1.0, &x, y)).map_err(fail)?;
    let mut scratch = DeviceBuffer::<u32>::alloc(&s1, SLOW).map_err(fail)?;
    busy(&s1, &mut scratch)?;
    x.fill(&s1, 7.0).map_err(fail)?; // after s1's chain
    g.launch(&s2).map_err(fail)?; // must wait for the fill
    let got = g.resources().to_vec(&s3).map_err(fail)?; // must wait for the replay
    ensure!(
        got.iter().all(|&v| v == 7.0),
        "replay or read out of order: {}",
        got[0]
    );
    Ok(())
}

/// A fill with an element wider than 4 bytes reads host memory, which a replay could not: it is
/// refused inside a capture; narrower fills are captured by value and replay right.
fn wide_fill_refused_in_capture(device: &Device) -> Result<(), Failed> {
    let s = device.new_stream().map_err(fail)?;
    let wide = DeviceBuffer::<f64>::zeroed(&s, 1000).map_err(fail)?;
    let r = Graph::capture(&s, wide, |s, w| w.fill(s, 42.0));
    ensure!(
        matches!(r, Err(Error::Capture { .. })),
        "an f64 fill in a capture gave {r:?}"
    );
    let narrow = DeviceBuffer::<f32>::zeroed(&s, 1000).map_err(fail)?;
    let mut g = Graph::capture(&s, narrow, |s, w| w.fill(s, 42.0)).map_err(fail)?;
    g.launch(&s).map_err(fail)?;
    let got = g.into_resources().map_err(fail)?.to_vec(&s).map_err(fail)?;
    ensure!(
        got.iter().all(|&v| v == 42.0),
        "replayed fill wrote {}",
        got[0]
    );
    Ok(())
}

/// Four threads on three streams allocate and free 1 B – 8 MiB through a pool capped at
/// 512 MiB, never holding more than half of it live: no out-of-memory, and every buffer keeps
/// what was written into it.
fn capped_pool_churn(device: &Device) -> Result<(), Failed> {
    const MIB: usize = 1 << 20;
    let pool = MemoryPool::new(
        device,
        PoolOptions {
            cap: Some(Cap::Bytes(512 * MIB as u64)),
        },
    )
    .map_err(fail)?;
    let streams: Vec<Stream> = (0..3)
        .map(|_| device.new_stream())
        .collect::<Result<_, _>>()
        .map_err(fail)?;
    let seed: u64 = rand::rng().random();
    let workers: Vec<std::thread::JoinHandle<Result<(), String>>> = (0..4usize)
        .map(|t| {
            let pool = pool.clone();
            let s = streams[t % 3].clone();
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ t as u64);
                let mut live: Vec<(DeviceBuffer<u8>, u8)> = Vec::new();
                let mut live_bytes = 0usize;
                for i in 0..400 {
                    let bytes = if rng.random_bool(0.5) {
                        rng.random_range(1..=4096)
                    } else {
                        rng.random_range(1..=8 * MIB)
                    };
                    while live_bytes + bytes > 60 * MIB {
                        let (b, v) = live.swap_remove(rng.random_range(0..live.len()));
                        if i % 16 == 0
                            && !b
                                .to_vec(&s)
                                .map_err(|e| e.to_string())?
                                .iter()
                                .all(|&x| x == v)
                        {
                            return Err(format!("thread {t}: a buffer lost its contents"));
                        }
                        live_bytes -= b.len();
                    }
                    let mut b = pool
                        .alloc::<u8>(&s, bytes)
                        .map_err(|e| format!("thread {t}, step {i}: {e}"))?;
                    let v = rng.random_range(1..=255u8);
                    b.fill(&s, v).map_err(|e| e.to_string())?;
                    live_bytes += bytes;
                    live.push((b, v));
                }
                for (b, v) in live {
                    if !b
                        .to_vec(&s)
                        .map_err(|e| e.to_string())?
                        .iter()
                        .all(|&x| x == v)
                    {
                        return Err(format!("thread {t}: a buffer lost its contents"));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in workers {
        h.join().map_err(|_| "worker panicked")?.map_err(fail)?;
    }
    let st = pool.stats();
    ensure!(st.oom_count == 0, "out of memory under the cap: {st:?}");
    Ok(())
}
