//! The memory pool: reuse from the cache, statistics against a model, the cap, driver
//! out-of-memory, trim, cross-stream hand-over, capture, and 10^6 operations from 4 threads.

use crate::{ensure, fail, gpu_test};
use bytemuck::Pod;

use hikube_gpu::{
    ops, Cap, Device, DeviceBuffer, Error, Graph, MemoryPool, PinnedBuffer, PoolOptions, PoolStat,
    PoolStats, Stream,
};
use libtest_mimic::{Failed, Trial};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub fn trials() -> Vec<Trial> {
    vec![
        gpu_test("pool::reuse_from_cache", reuse_from_cache),
        gpu_test(
            "pool::pooled_buffers_work_with_ops",
            pooled_buffers_work_with_ops,
        ),
        gpu_test("pool::stats_follow_a_model", stats_follow_a_model),
        gpu_test("pool::cap_gives_out_of_memory", cap_gives_out_of_memory),
        gpu_test(
            "pool::driver_oom_empties_cache_and_retries",
            driver_oom_empties_cache_and_retries,
        ),
        gpu_test("pool::trim_returns_memory", trim_returns_memory),
        gpu_test(
            "pool::hand_over_without_event_tracking",
            hand_over_without_event_tracking,
        ),
        gpu_test(
            "pool::capture_refuses_pool_allocations",
            capture_refuses_pool_allocations,
        ),
        gpu_test(
            "pool::pool_serves_other_streams_during_a_capture",
            pool_serves_other_streams_during_a_capture,
        ),
        gpu_test("pool::outlives_its_handle", outlives_its_handle),
        gpu_test("pool::reliability_4_threads_2_streams", reliability),
    ]
}

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// How far free device memory may differ before a pool's first allocation and after its trim:
/// the driver maps stream-ordered pool memory in 2 MiB granules and unmaps all of them on
/// `cuMemPoolTrimTo(pool, 0)` once nothing is allocated; at most one granule of driver
/// bookkeeping may stay.
const TRIM_TOLERANCE: usize = 2 * MIB;

/// A pool that ignores `HIKUBE_GPU_MEMORY_FRACTION` (the tests set their own caps).
fn uncapped(device: &Device) -> Result<MemoryPool, Failed> {
    MemoryPool::new(
        device,
        PoolOptions {
            cap: Some(Cap::Fraction(1.0)),
        },
    )
    .map_err(fail)
}

fn class(bytes: usize) -> usize {
    MemoryPool::size_class(bytes).unwrap_or(usize::MAX)
}

/// The device address of a buffer's block.
fn address<T: Pod>(buf: &DeviceBuffer<T>, _stream: &Stream) -> u64 {
    buf.device_address()
}

fn seeded() -> (u64, StdRng) {
    let seed = rand::rng().random();
    (seed, StdRng::seed_from_u64(seed))
}

fn random_f32(rng: &mut impl Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-100.0f32..100.0)).collect()
}

/// Every allocation of a pool's life in one line, for failure messages.
fn show(s: &PoolStats) -> String {
    format!(
        "allocated {:?} requested {:?} reserved {:?} inactive {:?} active {:?} cached {} \
         allocs {} frees {} device allocs {} device frees {} ooms {} retries {}",
        s.allocated_bytes,
        s.requested_bytes,
        s.reserved_bytes,
        s.inactive_split_bytes,
        s.active_blocks,
        s.cached_blocks,
        s.allocation_count,
        s.free_count,
        s.device_alloc_count,
        s.device_free_count,
        s.oom_count,
        s.alloc_retries
    )
}

/// The relations that hold in every snapshot.
fn consistent(s: &PoolStats) -> Result<(), String> {
    let stats = [
        ("allocated", s.allocated_bytes),
        ("requested", s.requested_bytes),
        ("reserved", s.reserved_bytes),
        ("inactive", s.inactive_split_bytes),
        ("active", s.active_blocks),
    ];
    for (name, stat) in stats {
        if stat.peak < stat.current {
            return Err(format!("{name} peak below current: {}", show(s)));
        }
    }
    let ok = s.requested_bytes.current <= s.allocated_bytes.current
        && s.allocated_bytes.current <= s.reserved_bytes.current
        && s.inactive_split_bytes.current == s.reserved_bytes.current - s.requested_bytes.current
        && s.allocation_count.checked_sub(s.free_count) == Some(s.active_blocks.current as u64)
        && s.device_alloc_count.checked_sub(s.device_free_count)
            == Some((s.active_blocks.current + s.cached_blocks) as u64)
        && s.device_alloc_count <= s.allocation_count;
    if ok {
        Ok(())
    } else {
        Err(format!("inconsistent statistics: {}", show(s)))
    }
}

fn peaks_monotone(before: &PoolStats, after: &PoolStats) -> Result<(), String> {
    let pairs = [
        (before.allocated_bytes, after.allocated_bytes),
        (before.requested_bytes, after.requested_bytes),
        (before.reserved_bytes, after.reserved_bytes),
        (before.inactive_split_bytes, after.inactive_split_bytes),
        (before.active_blocks, after.active_blocks),
    ];
    if pairs.iter().all(|(b, a)| a.peak >= b.peak) {
        Ok(())
    } else {
        Err(format!(
            "a peak went down:\n  {}\n  {}",
            show(before),
            show(after)
        ))
    }
}

fn reuse_from_cache(device: &Device) -> Result<(), Failed> {
    let pool = uncapped(device)?;
    let (a, b) = (
        device.new_stream().map_err(fail)?,
        device.new_stream().map_err(fail)?,
    );
    let (seed, mut rng) = seeded();
    let data = random_f32(&mut rng, 1000);
    let x = pool.from_slice(&a, &data).map_err(fail)?;
    let first = address(&x, &a);
    let s = pool.stats();
    ensure!(
        s.device_alloc_count == 1
            && s.allocation_count == 1
            && s.reserved_bytes.current == 4096
            && s.allocated_bytes.current == 4096
            && s.requested_bytes.current == 4000
            && s.inactive_split_bytes.current == 96,
        "after the first allocation: {}",
        show(&s)
    );
    ensure!(
        x.len() == 1000 && x.num_bytes() == 4000 && x.reserved_bytes() == 4096,
        "lengths {} {} {}",
        x.len(),
        x.num_bytes(),
        x.reserved_bytes()
    );
    ensure!(
        x.to_vec(&a).map_err(fail)? == data,
        "round trip (seed {seed})"
    );
    drop(x);
    let s = pool.stats();
    ensure!(
        s.allocated_bytes.current == 0
            && s.reserved_bytes.current == 4096
            && s.cached_blocks == 1
            && s.free_count == 1
            && s.device_free_count == 0,
        "after the free: {}",
        show(&s)
    );

    // Same size class, other type, same stream: the cached block, no driver call.
    let mut y = pool.alloc::<u8>(&a, 4096 - 100).map_err(fail)?;
    ensure!(
        address(&y, &a) == first,
        "same-stream request missed the cache"
    );
    let s = pool.stats();
    ensure!(
        s.device_alloc_count == 1
            && s.allocation_count == 2
            && s.cache_hits() == 1
            && s.reserved_bytes.current == 4096
            && s.requested_bytes.current == 3996
            && s.cached_blocks == 0,
        "after the hit: {}",
        show(&s)
    );
    let pattern: u8 = rng.random_range(1..=255);
    y.fill(&a, pattern).map_err(fail)?;
    ensure!(
        y.to_vec(&a).map_err(fail)?.iter().all(|&v| v == pattern),
        "fill of a reused block"
    );
    drop(y);

    // Another stream takes the block over.
    let values: Vec<f64> = (0..512).map(|_| rng.random_range(-1e9..1e9)).collect();
    let mut z = pool.alloc::<f64>(&b, 512).map_err(fail)?;
    ensure!(
        address(&z, &b) == first,
        "cross-stream request missed the cache"
    );
    z.copy_from_host(&b, &values).map_err(fail)?;
    ensure!(
        z.to_vec(&b).map_err(fail)? == values,
        "round trip on the second stream"
    );
    let s = pool.stats();
    ensure!(
        s.device_alloc_count == 1 && s.cache_hits() == 2,
        "after the cross-stream hit: {}",
        show(&s)
    );
    drop(z);

    // Another size class is a miss.
    let w = pool.alloc::<u8>(&a, 4097).map_err(fail)?;
    let s = pool.stats();
    ensure!(
        s.device_alloc_count == 2
            && s.reserved_bytes.current == 4096 + 4608
            && s.cached_blocks == 1
            && address(&w, &a) != first,
        "a new class: {}",
        show(&s)
    );
    drop(w);

    // `zeroed` clears a block that held something else.
    let mut dirty = pool.alloc::<u32>(&a, MIB).map_err(fail)?;
    let big = address(&dirty, &a);
    dirty
        .fill(&a, rng.random_range(1..u32::MAX))
        .map_err(fail)?;
    drop(dirty);
    let zero = pool.zeroed::<u32>(&b, MIB).map_err(fail)?;
    ensure!(address(&zero, &b) == big, "zeroed missed the cache");
    ensure!(
        zero.to_vec(&b).map_err(fail)?.iter().all(|&v| v == 0),
        "zeroed left old data"
    );
    drop(zero);
    consistent(&pool.stats())?;
    pool.trim().map_err(fail)?;
    ensure!(pool.stats().reserved_bytes.current == 0, "trim kept blocks");
    Ok(())
}

fn pooled_buffers_work_with_ops(device: &Device) -> Result<(), Failed> {
    let pool = uncapped(device)?;
    let s = device.new_stream().map_err(fail)?;
    let (seed, mut rng) = seeded();
    // Poison a whole 4096-byte block, then reuse it for 1000 floats: 24 floats of slack.
    let mut poison = pool.alloc::<f32>(&s, 1024).map_err(fail)?;
    poison.fill(&s, f32::NAN).map_err(fail)?;
    let block = address(&poison, &s);
    drop(poison);
    let n = 1000;
    let xs = random_f32(&mut rng, n);
    let ys = random_f32(&mut rng, n);
    let mut x = pool.from_slice(&s, &xs).map_err(fail)?;
    ensure!(address(&x, &s) == block, "not the poisoned block");
    let mut y = pool.from_slice(&s, &ys).map_err(fail)?;
    ops::axpy(&s, 2.0, &x, &mut y).map_err(fail)?;
    let got = y.to_vec(&s).map_err(fail)?;
    ensure!(got.len() == n, "axpy output has {} elements", got.len());
    for i in 0..n {
        let want = 2.0 * xs[i] + ys[i];
        ensure!(
            (got[i] - want).abs() <= 1e-5 * want.abs().max(1.0),
            "axpy[{i}] = {} instead of {want} (seed {seed})",
            got[i]
        );
    }
    ensure!(x.to_vec(&s).map_err(fail)? == xs, "x changed");
    // The slack is out of reach.
    match x.slice(0..n + 1) {
        Err(Error::OutOfBounds { start, end, len }) => {
            ensure!((start, end, len) == (0, n + 1, n), "numbers")
        }
        other => {
            return Err(format!("slice into the slack gave {:?}", other.map(|v| v.len())).into())
        }
    }
    // A fill writes the buffer and nothing past it.
    x.fill(&s, 7.0).map_err(fail)?;
    drop(x);
    let whole = pool.alloc::<f32>(&s, 1024).map_err(fail)?;
    ensure!(address(&whole, &s) == block, "not the same block");
    let v = whole.to_vec(&s).map_err(fail)?;
    ensure!(
        v[..n].iter().all(|&e| e == 7.0) && v[n..].iter().all(|e| e.is_nan()),
        "fill wrote into the slack"
    );
    drop(whole);
    // Copies from and to plain buffers, sub-slices, pinned memory.
    let plain = DeviceBuffer::from_slice(&s, &xs).map_err(fail)?;
    let mut q = pool.alloc::<f32>(&s, n).map_err(fail)?;
    q.copy_from(&s, &plain).map_err(fail)?;
    q.slice_mut(10..20)
        .map_err(fail)?
        .fill(&s, -1.0)
        .map_err(fail)?;
    let mut expect = xs.clone();
    expect[10..20].iter_mut().for_each(|e| *e = -1.0);
    let mut host = PinnedBuffer::<f32>::zeroed(device, n).map_err(fail)?;
    host.as_mut_slice().map_err(fail)?.fill(f32::NAN);
    q.copy_to_pinned(&s, &mut host).map_err(fail)?;
    ensure!(
        host.as_slice().map_err(fail)? == expect,
        "pinned copy of a pooled buffer"
    );
    let mut back = DeviceBuffer::<f32>::from_slice(&s, &vec![f32::NAN; n]).map_err(fail)?;
    back.copy_from(&s, &q).map_err(fail)?;
    ensure!(
        back.to_vec(&s).map_err(fail)? == expect,
        "device copy out of a pooled buffer"
    );
    // Empty and zero-sized requests hold the smallest block.
    let empty = pool.zeroed::<f32>(&s, 0).map_err(fail)?;
    ensure!(
        empty.is_empty() && empty.to_vec(&s).map_err(fail)?.is_empty(),
        "empty"
    );
    ensure!(empty.reserved_bytes() == 512, "empty block size");
    Ok(())
}

/// A buffer of one of three types (blocks move between types).
enum Any {
    U8(DeviceBuffer<u8>),
    F32(DeviceBuffer<f32>),
    F64(DeviceBuffer<f64>),
}

impl Any {
    fn bytes(&self) -> usize {
        match self {
            Any::U8(b) => b.num_bytes(),
            Any::F32(b) => b.num_bytes(),
            Any::F64(b) => b.num_bytes(),
        }
    }
}

/// What the pool must report, computed on the side.
#[derive(Default)]
struct Model {
    cached: Vec<usize>,
    device_allocs: u64,
    allocs: u64,
    frees: u64,
    peaks: [usize; 5],
}

impl Model {
    fn reserved(&self, live: &[(Any, usize)]) -> usize {
        self.cached.iter().sum::<usize>() + live.iter().map(|(_, c)| c).sum::<usize>()
    }

    fn currents(&self, live: &[(Any, usize)]) -> [usize; 5] {
        let allocated: usize = live.iter().map(|(_, c)| c).sum();
        let requested: usize = live.iter().map(|(b, _)| b.bytes()).sum();
        let reserved = self.reserved(live);
        [
            allocated,
            requested,
            reserved,
            reserved - requested,
            live.len(),
        ]
    }

    fn observe(&mut self, live: &[(Any, usize)]) {
        let now = self.currents(live);
        for (p, c) in self.peaks.iter_mut().zip(now) {
            *p = (*p).max(c);
        }
    }

    fn check(&self, s: &PoolStats, live: &[(Any, usize)], step: usize) -> Result<(), String> {
        let now = self.currents(live);
        let got = [
            s.allocated_bytes,
            s.requested_bytes,
            s.reserved_bytes,
            s.inactive_split_bytes,
            s.active_blocks,
        ];
        let want: Vec<PoolStat> = now
            .iter()
            .zip(self.peaks)
            .map(|(&current, peak)| PoolStat { current, peak })
            .collect();
        let counts = (
            s.cached_blocks,
            s.allocation_count,
            s.free_count,
            s.device_alloc_count,
            s.oom_count,
        );
        let want_counts = (
            self.cached.len(),
            self.allocs,
            self.frees,
            self.device_allocs,
            0,
        );
        if got[..] != want[..] || counts != want_counts {
            return Err(format!(
                "step {step}: pool says {}\n  model says {want:?} {want_counts:?}",
                show(s)
            ));
        }
        consistent(s)
    }
}

fn random_request(rng: &mut impl Rng) -> usize {
    match rng.random_range(0..10) {
        0 => 0,
        1 => [1, 511, 512, 513, MIB - 1, MIB, MIB + 1, 2 * MIB][rng.random_range(0..8)],
        2 => rng.random_range(1..4 * KIB),
        _ => {
            let x: f64 = rng.random_range(0.0..(3.0 * MIB as f64).ln());
            x.exp() as usize
        }
    }
}

fn stats_follow_a_model(device: &Device) -> Result<(), Failed> {
    let pool = uncapped(device)?;
    let streams = [
        device.new_stream().map_err(fail)?,
        device.new_stream().map_err(fail)?,
    ];
    let (seed, mut rng) = seeded();
    let mut model = Model::default();
    let mut live: Vec<(Any, usize)> = Vec::new();
    let mut last = pool.stats();
    for step in 0..600 {
        let stream = &streams[rng.random_range(0..2)];
        if step == 300 {
            pool.reset_peak();
            model.peaks = model.currents(&live);
            let s = pool.stats();
            let at_current = [
                s.allocated_bytes,
                s.requested_bytes,
                s.reserved_bytes,
                s.inactive_split_bytes,
                s.active_blocks,
            ]
            .iter()
            .all(|st| st.peak == st.current);
            ensure!(at_current, "reset_peak: {}", show(&s));
            last = s;
        }
        let alloc = live.is_empty() || (live.len() < 40 && rng.random_bool(0.55));
        if alloc {
            let bytes = random_request(&mut rng);
            let buf = match rng.random_range(0..3) {
                0 => Any::U8(pool.alloc(stream, bytes).map_err(fail)?),
                1 => {
                    let data = random_f32(&mut rng, bytes / 4);
                    let b = pool.from_slice(stream, &data).map_err(fail)?;
                    ensure!(
                        b.to_vec(stream).map_err(fail)? == data,
                        "step {step}: round trip (seed {seed})"
                    );
                    Any::F32(b)
                }
                _ => Any::F64(pool.alloc(stream, bytes / 8).map_err(fail)?),
            };
            let c = class(buf.bytes());
            if let Some(i) = model.cached.iter().position(|&k| k == c) {
                model.cached.swap_remove(i);
            } else {
                model.device_allocs += 1;
            }
            model.allocs += 1;
            live.push((buf, c));
        } else {
            let (buf, c) = live.swap_remove(rng.random_range(0..live.len()));
            drop(buf);
            model.cached.push(c);
            model.frees += 1;
        }
        model.observe(&live);
        let s = pool.stats();
        model
            .check(&s, &live, step)
            .map_err(|e| format!("{e} (seed {seed})"))?;
        peaks_monotone(&last, &s)?;
        last = s;
    }
    // Trim gives back exactly the cached blocks; live buffers stay.
    let cached: usize = model.cached.iter().sum();
    let released = pool.trim().map_err(fail)?;
    let s = pool.stats();
    ensure!(
        released == cached
            && s.cached_blocks == 0
            && s.reserved_bytes.current == s.allocated_bytes.current
            && s.device_free_count == model.cached.len() as u64,
        "trim released {released} of {cached} cached: {}",
        show(&s)
    );
    let frees = model.frees + live.len() as u64;
    drop(live);
    let s = pool.stats();
    ensure!(
        s.allocated_bytes.current == 0
            && s.requested_bytes.current == 0
            && s.active_blocks.current == 0
            && s.free_count == frees,
        "all dropped: {}",
        show(&s)
    );
    consistent(&s)?;
    pool.trim().map_err(fail)?;
    let s = pool.stats();
    ensure!(
        s.reserved_bytes.current == 0
            && s.inactive_split_bytes.current == 0
            && s.device_free_count == s.device_alloc_count,
        "after the last trim: {}",
        show(&s)
    );
    Ok(())
}

fn expect_oom(
    result: hikube_gpu::Result<DeviceBuffer<u8>>,
    want: (usize, usize, usize),
    what: &str,
) -> Result<(), Failed> {
    match result {
        Err(Error::OutOfMemory {
            requested,
            free,
            total,
        }) => {
            ensure!(
                (requested, free, total) == want,
                "{what}: OutOfMemory numbers {:?}, expected {want:?}",
                (requested, free, total)
            );
            Ok(())
        }
        Err(e) => Err(format!("{what}: {e}").into()),
        Ok(b) => Err(format!("{what}: allocated {} bytes past the cap", b.num_bytes()).into()),
    }
}

fn check_filled(
    buf: &mut DeviceBuffer<u8>,
    stream: &Stream,
    rng: &mut impl Rng,
) -> Result<(), Failed> {
    let pattern: u8 = rng.random_range(1..=255);
    buf.fill(stream, pattern).map_err(fail)?;
    let n = buf.len();
    for start in [0, n / 2, n - 4096] {
        let mut host = vec![!pattern; 4096];
        buf.slice(start..start + 4096)
            .map_err(fail)?
            .copy_to_host(stream, &mut host)
            .map_err(fail)?;
        ensure!(host.iter().all(|&v| v == pattern), "fill at {start} of {n}");
    }
    Ok(())
}

fn cap_gives_out_of_memory(device: &Device) -> Result<(), Failed> {
    let total = device.properties().total_memory;
    for bad in [
        Cap::Fraction(0.0),
        Cap::Fraction(1.5),
        Cap::Fraction(f64::NAN),
        Cap::Bytes(0),
    ] {
        match MemoryPool::new(device, PoolOptions { cap: Some(bad) }) {
            Err(Error::InvalidArgument { .. }) => {}
            other => return Err(format!("cap {bad:?} gave {other:?}").into()),
        }
    }
    let cap = 64 * MIB;
    let pool = MemoryPool::new(
        device,
        PoolOptions {
            cap: Some(Cap::Bytes(cap as u64)),
        },
    )
    .map_err(fail)?;
    ensure!(pool.cap() == Some(cap), "cap {:?}", pool.cap());
    let s = device.new_stream().map_err(fail)?;
    let mut rng = rand::rng();
    let a = pool.alloc::<u8>(&s, 16 * MIB).map_err(fail)?;
    let b = pool.alloc::<u8>(&s, 16 * MIB).map_err(fail)?;
    let c = pool.alloc::<u8>(&s, 16 * MIB).map_err(fail)?;
    drop(b); // 48 MiB reserved, 16 of them cached
             // 48 + 32 > 64: the cache is given back first, then it fits exactly.
    let mut d = pool.alloc::<u8>(&s, 32 * MIB).map_err(fail)?;
    let st = pool.stats();
    ensure!(
        st.reserved_bytes.current == cap
            && st.cached_blocks == 0
            && st.alloc_retries == 1
            && st.device_free_count == 1
            && st.oom_count == 0,
        "filling up to the cap: {}",
        show(&st)
    );
    check_filled(&mut d, &s, &mut rng)?;
    // Nothing left to give back: OutOfMemory with the cap's numbers.
    expect_oom(pool.alloc::<u8>(&s, 1), (512, 0, cap), "1 byte at the cap")?;
    expect_oom(
        pool.alloc::<u8>(&s, cap + 1),
        (cap + 2 * MIB, 0, cap),
        "more than the cap",
    )?;
    let st = pool.stats();
    ensure!(
        st.oom_count == 2 && st.reserved_bytes.current == cap,
        "after two OOMs: {}",
        show(&st)
    );
    // The pool stays usable: free 16 MiB (cached), ask 10 MiB (the cache goes, 48 + 10 fit).
    drop(a);
    let mut e = pool.alloc::<u8>(&s, 10 * MIB).map_err(fail)?;
    check_filled(&mut e, &s, &mut rng)?;
    let st = pool.stats();
    ensure!(
        st.reserved_bytes.current == 58 * MIB && st.alloc_retries == 2,
        "after freeing under the cap: {}",
        show(&st)
    );
    // `free` is the room left under the cap.
    expect_oom(
        pool.alloc::<u8>(&s, 8 * MIB),
        (8 * MIB, 6 * MIB, cap),
        "8 MiB with 6 left",
    )?;
    ensure!(pool.stats().oom_count == 3, "oom count");
    // Raising the cap lets it through; an invalid cap changes nothing.
    match pool.set_cap(Some(Cap::Fraction(2.0))) {
        Err(Error::InvalidArgument { .. }) => {}
        other => return Err(format!("set_cap(2.0) gave {other:?}").into()),
    }
    ensure!(pool.cap() == Some(cap), "an invalid cap changed the cap");
    pool.set_cap(None).map_err(fail)?;
    let mut f = pool.alloc::<u8>(&s, 8 * MIB).map_err(fail)?;
    check_filled(&mut f, &s, &mut rng)?;
    drop((c, d, e, f));
    consistent(&pool.stats())?;
    pool.trim().map_err(fail)?;

    // A cap as a fraction of the device's memory.
    let fraction = (40 * MIB) as f64 / total as f64;
    let pool = MemoryPool::new(
        device,
        PoolOptions {
            cap: Some(Cap::Fraction(fraction)),
        },
    )
    .map_err(fail)?;
    let cap = (fraction * total as f64) as usize;
    ensure!(
        pool.cap() == Some(cap),
        "fraction cap {:?} != {cap}",
        pool.cap()
    );
    let g = pool.alloc::<u8>(&s, 32 * MIB).map_err(fail)?;
    expect_oom(
        pool.alloc::<u8>(&s, 8 * MIB + 1),
        (10 * MIB, cap - 32 * MIB, cap),
        "past a fraction cap",
    )?;
    drop(g);
    pool.trim().map_err(fail)?;
    Ok(())
}

fn driver_oom_empties_cache_and_retries(device: &Device) -> Result<(), Failed> {
    let pool = uncapped(device)?;
    pool.set_cap(None).map_err(fail)?; // no cap at all: the driver is the limit
    let s = device.new_stream().map_err(fail)?;
    let mut rng = rand::rng();
    pool.trim().map_err(fail)?;
    let info = device.memory_info().map_err(fail)?;
    // Cache 60% of the free memory, then ask for 60% in one block: the driver refuses until the
    // pool gives its cache back.
    let chunk = 1024 * MIB;
    let want = (info.free / 10 * 6) / chunk * chunk;
    let chunks: Vec<DeviceBuffer<u8>> = (0..want / chunk)
        .map(|_| pool.alloc::<u8>(&s, chunk))
        .collect::<hikube_gpu::Result<_>>()
        .map_err(fail)?;
    let n = chunks.len() as u64;
    drop(chunks);
    ensure!(
        pool.stats().cached_bytes() == want,
        "cached {}",
        show(&pool.stats())
    );
    let mut big = pool.alloc::<u8>(&s, want).map_err(fail)?;
    let st = pool.stats();
    ensure!(
        st.alloc_retries == 1
            && st.oom_count == 0
            && st.cached_blocks == 0
            && st.device_free_count == n
            && st.reserved_bytes.current == want,
        "retry after a driver OOM: {}",
        show(&st)
    );
    check_filled(&mut big, &s, &mut rng)?;
    // More than the device has free, with nothing cached: OutOfMemory with the device's numbers.
    let now = device.memory_info().map_err(fail)?;
    let ask = (now.free + 2 * chunk).min(now.total);
    match pool.alloc::<u8>(&s, ask) {
        Err(Error::OutOfMemory {
            requested,
            free,
            total,
        }) => ensure!(
            requested == class(ask) && total == info.total && free <= total,
            "numbers {requested} {free} {total} for {ask}"
        ),
        Err(e) => return Err(format!("asking {ask} of {} free gave {e}", now.free).into()),
        Ok(_) => return Err(format!("allocated {ask} with {} free", now.free).into()),
    }
    let st = pool.stats();
    ensure!(
        st.oom_count == 1 && st.alloc_retries == 2 && st.reserved_bytes.current == want,
        "after the OOM: {}",
        show(&st)
    );
    // Still usable.
    drop(big);
    let data = random_f32(&mut rng, 12345);
    let x = pool.from_slice(&s, &data).map_err(fail)?;
    ensure!(
        x.to_vec(&s).map_err(fail)? == data,
        "pool unusable after an OOM"
    );
    drop(x);
    consistent(&pool.stats())?;
    pool.trim().map_err(fail)?;
    ensure!(
        pool.stats().reserved_bytes.current == 0,
        "{}",
        show(&pool.stats())
    );
    Ok(())
}

/// Runs the streams' first allocations, memsets and copies once, and creates (and records) as
/// many events as the pool's blocks will hold, so that driver state they set up, which the driver
/// may keep, does not count as memory the pool kept.
fn warm_up(device: &Device, streams: &[&Stream]) -> Result<(), Failed> {
    for s in streams {
        // SAFETY: only events are recorded through the raw stream; no buffer is touched.
        let raw = unsafe { s.cuda_stream() };
        let events = (0..20_000)
            .map(|_| raw.record_event(None))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        s.synchronize().map_err(fail)?;
        drop(events);
    }
    let warm = uncapped(device)?;
    for s in streams {
        let mut b = warm.alloc::<u32>(s, MIB).map_err(fail)?;
        b.fill(s, 1).map_err(fail)?;
        let mut c = warm.alloc::<u8>(s, 3).map_err(fail)?;
        c.fill(s, 2).map_err(fail)?;
        b.slice(..16).map_err(fail)?.to_vec(s).map_err(fail)?;
        c.to_vec(s).map_err(fail)?;
    }
    warm.trim().map_err(fail)?;
    Ok(())
}

fn trim_returns_memory(device: &Device) -> Result<(), Failed> {
    let s = device.new_stream().map_err(fail)?;
    warm_up(device, &[&s])?;
    let pool = uncapped(device)?;
    pool.trim().map_err(fail)?; // also gives back what earlier tests left in the driver's pool
    let before = device.memory_info().map_err(fail)?.free;
    let (seed, mut rng) = seeded();
    let mut live = Vec::new();
    for _ in 0..64 {
        let bytes = rng.random_range(1..64 * MIB);
        let mut b = pool.alloc::<u8>(&s, bytes).map_err(fail)?;
        b.fill(&s, rng.random()).map_err(fail)?;
        live.push(b);
    }
    let held = pool.stats().reserved_bytes.current;
    let during = device.memory_info().map_err(fail)?.free;
    ensure!(
        during + held <= before + TRIM_TOLERANCE,
        "{held} bytes reserved but free memory went from {before} to {during} (seed {seed})"
    );
    live.truncate(20); // 44 blocks back to the cache
    let cached = pool.stats().cached_bytes();
    ensure!(
        device.memory_info().map_err(fail)?.free + held <= before + TRIM_TOLERANCE,
        "cached blocks went back to the device before trim"
    );
    let released = pool.trim().map_err(fail)?;
    ensure!(released == cached, "trim released {released} of {cached}");
    drop(live);
    let released = pool.trim().map_err(fail)?;
    let st = pool.stats();
    ensure!(
        released == held - cached && st.reserved_bytes.current == 0 && st.cached_blocks == 0,
        "second trim released {released}: {}",
        show(&st)
    );
    let after = device.memory_info().map_err(fail)?.free;
    ensure!(
        after.abs_diff(before) <= TRIM_TOLERANCE,
        "free memory {before} before the pool, {after} after trim ({} MiB apart)",
        after.abs_diff(before) as f64 / MIB as f64
    );
    Ok(())
}

/// The only thing ordering a block taken over by another stream after the work still queued
/// on its previous stream is the block's log (the crate never uses cudarc's per-buffer events).
fn hand_over_without_event_tracking(device: &Device) -> Result<(), Failed> {
    let a = device.new_stream().map_err(fail)?;
    let b = device.new_stream().map_err(fail)?;
    hand_over(device, &a, &b)
}

fn hand_over(device: &Device, a: &Stream, b: &Stream) -> Result<(), Failed> {
    let pool = uncapped(device)?;
    let mut rng = rand::rng();
    let n = 64 * MIB; // u32: 256 MiB, ~0.1 ms a memset
    let mut x = pool.alloc::<u32>(a, n).map_err(fail)?;
    let block = address(&x, a);
    let pa: u32 = rng.random();
    for i in 0..100u32 {
        x.fill(a, pa ^ i).map_err(fail)?; // keeps `a` busy for ~10 ms
    }
    drop(x); // back to the cache while `a` still writes it
    let mut y = pool.alloc::<u32>(b, n).map_err(fail)?;
    ensure!(address(&y, b) == block, "not a cross-stream hit");
    let pb = !pa;
    y.fill(b, pb).map_err(fail)?;
    let got = y.to_vec(b).map_err(fail)?;
    if let Some(i) = got.iter().position(|&v| v != pb) {
        return Err(format!(
            "element {i} is {:#x}, not {pb:#x}: the previous stream's writes landed after the \
             hand-over",
            got[i]
        )
        .into());
    }
    drop(y);
    // Given back to the driver on `a` (where it was allocated) after `b`'s work.
    pool.trim().map_err(fail)?;
    ensure!(pool.stats().reserved_bytes.current == 0, "trim");
    Ok(())
}

fn capture_refuses_pool_allocations(device: &Device) -> Result<(), Failed> {
    let pool = uncapped(device)?;
    let s = device.new_stream().map_err(fail)?;
    let mut rng = rand::rng();
    drop(pool.alloc::<u32>(&s, 1000).map_err(fail)?); // a cached block of `s`
    let before = pool.stats();
    // Allocating inside a capture: a typed error, the pool untouched.
    let refused = Graph::capture(&s, (), |s, _| pool.alloc::<u32>(s, 1000).map(drop));
    match refused {
        Err(Error::Capture { .. }) => {}
        Err(e) => return Err(format!("allocation in a capture gave {e}").into()),
        Ok(_) => return Err("a pool allocation inside a capture succeeded".into()),
    }
    let st = pool.stats();
    ensure!(
        (
            st.allocation_count,
            st.device_alloc_count,
            st.cached_blocks,
            st.oom_count
        ) == (
            before.allocation_count,
            before.device_alloc_count,
            before.cached_blocks,
            0
        ),
        "a refused allocation changed the pool: {}",
        show(&st)
    );
    // A pooled buffer given to the graph as a resource is what a graph writes.
    let pattern: u32 = rng.random_range(1..u32::MAX);
    let buf = pool.alloc::<u32>(&s, 1000).map_err(fail)?;
    let mut graph = Graph::capture(&s, buf, |s, b| b.fill(s, pattern)).map_err(fail)?;
    graph.launch(&s).map_err(fail)?;
    let buf = graph.into_resources().map_err(fail)?;
    let mut host = vec![!pattern; 1000];
    buf.copy_to_host(&s, &mut host).map_err(fail)?;
    ensure!(
        host.iter().all(|&v| v == pattern),
        "graph replay into a pooled buffer"
    );
    drop(buf);
    // The stream and the pool work as before.
    let data = random_f32(&mut rng, 3000);
    let x = pool.from_slice(&s, &data).map_err(fail)?;
    ensure!(
        x.to_vec(&s).map_err(fail)? == data,
        "stream unusable after the capture"
    );
    drop(x);
    consistent(&pool.stats())?;
    pool.trim().map_err(fail)?;
    Ok(())
}

/// A capture on one stream refuses allocations there (a block handed out inside a capture
/// would be written by every replay), while other streams keep allocating, from the cache too:
/// a block cached by the capturing stream before the capture is handed to another stream,
/// ordered after its earlier uses.
fn pool_serves_other_streams_during_a_capture(device: &Device) -> Result<(), Failed> {
    let pool = MemoryPool::new(
        device,
        PoolOptions {
            cap: Some(Cap::Bytes(8 * MIB as u64)),
        },
    )
    .map_err(fail)?;
    let free_stream = device.new_stream().map_err(fail)?;
    let captured = device.new_stream().map_err(fail)?;
    let mut x = pool.alloc::<u8>(&captured, 4 * MIB).map_err(fail)?;
    x.fill(&captured, 7).map_err(fail)?;
    let x_at = address(&x, &captured);
    drop(x); // cached, last used on `captured`
    let mut inside = None;
    let mut z = None;
    let graph = Graph::capture(&captured, (), |s, _| {
        inside = Some(pool.alloc::<u8>(s, MIB).map(drop));
        z = Some(pool.alloc::<u8>(&free_stream, 4 * MIB));
        Ok(())
    });
    match inside {
        Some(Err(Error::Capture { .. })) => {}
        other => return Err(format!("allocation on the capturing stream gave {other:?}").into()),
    }
    drop(graph);
    ensure!(
        !captured.is_capturing().map_err(fail)?,
        "the capture did not end"
    );
    let mut z = z.ok_or("no allocation")?.map_err(fail)?;
    ensure!(
        address(&z, &free_stream) == x_at && pool.stats().device_alloc_count == 1,
        "during the capture: {}",
        show(&pool.stats())
    );
    let pattern: u8 = rand::rng().random_range(1..=255);
    z.fill(&free_stream, pattern).map_err(fail)?;
    ensure!(
        z.to_vec(&free_stream)
            .map_err(fail)?
            .iter()
            .all(|&v| v == pattern),
        "the free stream's work"
    );
    drop(z);
    let released = pool.trim().map_err(fail)?;
    ensure!(
        released == 4 * MIB && pool.stats().reserved_bytes.current == 0,
        "trim after the capture released {released}: {}",
        show(&pool.stats())
    );
    Ok(())
}

fn outlives_its_handle(device: &Device) -> Result<(), Failed> {
    let s = device.default_stream();
    let pool = uncapped(device)?;
    let data = random_f32(&mut rand::rng(), 777);
    let x = pool.from_slice(&s, &data).map_err(fail)?;
    let clone = pool.clone();
    drop(pool);
    ensure!(
        clone.stats().active_blocks.current == 1,
        "clones share the statistics"
    );
    drop(clone);
    ensure!(
        x.to_vec(&s).map_err(fail)? == data,
        "buffer broken without its pool handle"
    );
    drop(x); // the last reference: the block goes back to the driver
    s.synchronize().map_err(fail)?;
    Ok(())
}

// ---- reliability --------------------------------------------------------------------------

const THREADS: usize = 4;
const OPS: usize = 1_000_000;
const MAX_LIVE: usize = 16;
const MAX_BYTES: usize = 8 * MIB;
/// Bytes written at each end of a large buffer (all of a small one): keeps the memsets of 10^6
/// operations to ~40 GB, a dozen seconds of H100 bandwidth.
const WINDOW: usize = 128 * KIB;

/// A live buffer and the pattern it must hold.
enum Live {
    Bytes(DeviceBuffer<u8>, u8),
    Words(DeviceBuffer<u32>, u32),
}

fn fill_ends<T: Pod>(buf: &mut DeviceBuffer<T>, s: &Stream, value: T) -> hikube_gpu::Result<()> {
    let n = buf.len();
    let w = WINDOW / std::mem::size_of::<T>();
    if n <= 2 * w {
        buf.fill(s, value)
    } else {
        buf.slice_mut(..w)?.fill(s, value)?;
        buf.slice_mut(n - w..)?.fill(s, value)
    }
}

fn check_ends<T: Pod + PartialEq + std::fmt::LowerHex>(
    buf: &DeviceBuffer<T>,
    s: &Stream,
    value: T,
    poison: T,
    rng: &mut impl Rng,
) -> Result<(), String> {
    let n = buf.len();
    let w = (WINDOW / std::mem::size_of::<T>()).min(n);
    let (lo, hi) = if rng.random_bool(0.5) {
        (0, w)
    } else {
        (n - w, n)
    };
    let k = (hi - lo).min(64);
    let start = rng.random_range(lo..=hi - k);
    let mut host = vec![poison; k];
    buf.slice(start..start + k)
        .and_then(|v| v.copy_to_host(s, &mut host))
        .map_err(|e| e.to_string())?;
    match host.iter().position(|v| *v != value) {
        None => Ok(()),
        Some(i) => Err(format!(
            "element {} of {n} is {:x}, expected {value:x}: the block was written by someone else",
            start + i,
            host[i]
        )),
    }
}

impl Live {
    fn new(pool: &MemoryPool, s: &Stream, rng: &mut impl Rng) -> hikube_gpu::Result<Live> {
        let x: f64 = rng.random_range(0.0..(MAX_BYTES as f64).ln());
        let bytes = (x.exp() as usize).clamp(1, MAX_BYTES);
        if bytes.is_multiple_of(4) {
            let mut b = pool.alloc::<u32>(s, bytes / 4)?;
            let p = rng.random();
            fill_ends(&mut b, s, p)?;
            Ok(Live::Words(b, p))
        } else {
            let mut b = pool.alloc::<u8>(s, bytes)?;
            let p = rng.random();
            fill_ends(&mut b, s, p)?;
            Ok(Live::Bytes(b, p))
        }
    }

    fn refill(&mut self, s: &Stream, rng: &mut impl Rng) -> hikube_gpu::Result<()> {
        match self {
            Live::Bytes(b, p) => {
                *p = rng.random();
                fill_ends(b, s, *p)
            }
            Live::Words(b, p) => {
                *p = rng.random();
                fill_ends(b, s, *p)
            }
        }
    }

    fn check(&self, s: &Stream, rng: &mut impl Rng) -> Result<(), String> {
        match self {
            Live::Bytes(b, p) => check_ends(b, s, *p, *p ^ rng.random_range(1..=255u8), rng),
            Live::Words(b, p) => check_ends(b, s, *p, *p ^ rng.random_range(1..=u32::MAX), rng),
        }
    }
}

#[derive(Default)]
struct Counts {
    allocs: u64,
    frees: u64,
    checks: u64,
}

fn worker(
    t: usize,
    seed: u64,
    pool: &MemoryPool,
    streams: &[Stream; 2],
    ops: usize,
) -> Result<Counts, String> {
    let mut rng = StdRng::seed_from_u64(seed ^ (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut live: Vec<Live> = Vec::with_capacity(MAX_LIVE);
    let mut n = Counts::default();
    let err = |i: usize, e: String| format!("thread {t}, op {i} (seed {seed}): {e}");
    for i in 0..ops {
        let s = &streams[(i + t) % 2];
        let alloc = live.is_empty() || (live.len() < MAX_LIVE && rng.random_bool(0.5));
        if alloc {
            live.push(Live::new(pool, s, &mut rng).map_err(|e| err(i, e.to_string()))?);
            n.allocs += 1;
        } else {
            let victim = live.swap_remove(rng.random_range(0..live.len()));
            if rng.random_range(0..8) == 0 {
                victim.check(s, &mut rng).map_err(|e| err(i, e))?;
                n.checks += 1;
            }
            drop(victim);
            n.frees += 1;
        }
        if i % 64 == 0 && !live.is_empty() {
            let k = rng.random_range(0..live.len());
            live[k].check(s, &mut rng).map_err(|e| err(i, e))?;
            n.checks += 1;
        }
        if i % 101 == 0 && !live.is_empty() {
            let k = rng.random_range(0..live.len());
            live[k]
                .refill(s, &mut rng)
                .map_err(|e| err(i, e.to_string()))?;
        }
    }
    for b in &live {
        b.check(&streams[t % 2], &mut rng)
            .map_err(|e| err(ops, e))?;
        n.checks += 1;
    }
    n.frees += live.len() as u64;
    Ok(n)
}

fn reliability(device: &Device) -> Result<(), Failed> {
    let streams = [
        device.new_stream().map_err(fail)?,
        device.new_stream().map_err(fail)?,
    ];
    warm_up(device, &[&streams[0], &streams[1]])?;
    let pool = uncapped(device)?;
    pool.trim().map_err(fail)?;
    let before = device.memory_info().map_err(fail)?.free;
    let seed: u64 = rand::rng().random();
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let (results, sampled) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut last = pool.stats();
            let mut samples = 0u64;
            while !done.load(Ordering::Relaxed) {
                let s = pool.stats();
                consistent(&s)?;
                peaks_monotone(&last, &s)?;
                last = s;
                samples += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok::<u64, String>(samples)
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (pool, streams) = (&pool, &streams);
                scope.spawn(move || worker(t, seed, pool, streams, OPS / THREADS))
            })
            .collect();
        let results: Vec<Result<Counts, String>> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("worker panicked".into())))
            .collect();
        done.store(true, Ordering::Relaxed);
        let sampled = sampler
            .join()
            .unwrap_or_else(|_| Err("sampler panicked".into()));
        (results, sampled)
    });
    let elapsed = start.elapsed();
    let mut total = Counts::default();
    for r in results {
        let c = r?;
        total.allocs += c.allocs;
        total.frees += c.frees;
        total.checks += c.checks;
    }
    let samples = sampled?;
    let s = pool.stats();
    eprintln!(
        "pool reliability: {OPS} ops from {THREADS} threads in {:.1} s ({:.0} ops/s), {} checks, \
         {samples} snapshots; {} of {} allocations from the cache; peak reserved {:.1} MiB, \
         allocated {:.1} MiB",
        elapsed.as_secs_f64(),
        OPS as f64 / elapsed.as_secs_f64(),
        total.checks,
        s.cache_hits(),
        s.allocation_count,
        s.reserved_bytes.peak as f64 / MIB as f64,
        s.allocated_bytes.peak as f64 / MIB as f64
    );
    consistent(&s)?;
    ensure!(
        s.allocation_count == total.allocs
            && s.free_count == total.frees
            && s.allocated_bytes.current == 0
            && s.requested_bytes.current == 0
            && s.active_blocks.current == 0
            && s.cached_bytes() == s.reserved_bytes.current
            && s.oom_count == 0
            && s.alloc_retries == 0,
        "after {} allocations and {} frees: {}",
        total.allocs,
        total.frees,
        show(&s)
    );
    ensure!(
        s.active_blocks.peak <= THREADS * MAX_LIVE
            && s.allocated_bytes.peak <= THREADS * MAX_LIVE * MAX_BYTES
            && s.reserved_bytes.peak >= s.allocated_bytes.peak,
        "peaks: {}",
        show(&s)
    );
    ensure!(
        s.cache_hits() * 10 >= s.allocation_count * 9,
        "only {} of {} allocations from the cache",
        s.cache_hits(),
        s.allocation_count
    );
    let reserved = s.reserved_bytes.current;
    let released = pool.trim().map_err(fail)?;
    let s = pool.stats();
    ensure!(
        released == reserved
            && s.reserved_bytes.current == 0
            && s.device_free_count == s.device_alloc_count,
        "trim released {released} of {reserved}: {}",
        show(&s)
    );
    let after = device.memory_info().map_err(fail)?.free;
    ensure!(
        after.abs_diff(before) <= TRIM_TOLERANCE,
        "free memory {before} before, {after} after trim ({} MiB apart)",
        after.abs_diff(before) as f64 / MIB as f64
    );
    Ok(())
}
