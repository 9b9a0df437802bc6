//! Allocation cost: the memory pool serving from its cache, against the driver's allocators
//! (`cuMemAlloc`/`cuMemFree` and the stream-ordered `cuMemAllocAsync`/`cuMemFreeAsync`), and the
//! crate's unpooled `DeviceBuffer::alloc`. Host time per alloc+free pair, from
//! `std::time::Instant` over batches of pairs: the median of the batches.
//!
//! Issue target (H100): pool alloc+free from the cache ≤ 1 µs.

use criterion::Criterion;
use cudarc::driver::{result, CudaStream};
use hikube_gpu::{Cap, Device, DeviceBuffer, MemoryPool, PoolOptions, Result, Stream};
use std::hint::black_box;
use std::time::Instant;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// Batches timed per case; the median is reported.
const BATCHES: usize = 21;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Microseconds per call of `pair` (one alloc and one free): median over [`BATCHES`] batches of
/// `per_batch` calls, after one warm-up batch.
fn per_pair_us(per_batch: usize, mut pair: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut batches = Vec::with_capacity(BATCHES);
    for batch in 0..=BATCHES {
        let start = Instant::now();
        for _ in 0..per_batch {
            pair()?;
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / per_batch as f64;
        if batch > 0 {
            batches.push(us);
        }
    }
    Ok(median(batches))
}

fn label(bytes: usize) -> String {
    if bytes >= MIB {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{} KiB", bytes / KIB)
    }
}

/// `cuMemAlloc` + `cuMemFree` of `bytes` (the free synchronizes the device).
fn driver_sync_pair(raw: &CudaStream, bytes: usize) -> Result<()> {
    raw.context().bind_to_thread()?;
    // SAFETY: the context is current on this thread; the pointer is freed right away, unused.
    unsafe {
        let ptr = result::malloc_sync(bytes)?;
        result::free_sync(black_box(ptr))?;
    }
    Ok(())
}

/// `cuMemAllocAsync` + `cuMemFreeAsync` of `bytes` on `raw` (the driver's stream-ordered pool).
fn driver_async_pair(raw: &CudaStream, bytes: usize) -> Result<()> {
    raw.context().bind_to_thread()?;
    // SAFETY: the context is current; the pointer is allocated and freed in `raw`'s order, and
    // never used in between.
    unsafe {
        let ptr = result::malloc_async(raw.cu_stream(), bytes)?;
        result::free_async(black_box(ptr), raw.cu_stream())?;
    }
    Ok(())
}

/// Registers the allocator benchmarks with `c` (group `{GPU model}/pool`) and pushes one row per
/// case to `summary`: `| case | µs per alloc+free | anchor |`.
pub fn bench(c: &mut Criterion, device: &Device, summary: &mut Vec<String>) -> Result<()> {
    let model = device.model().name.to_string();
    let stream = device.new_stream()?;
    let other = device.new_stream()?;
    // SAFETY: the raw stream only allocates and frees memory of its own (the driver's own
    // stream-ordered pool, the anchor); no buffer of the crate is touched through it.
    let raw = unsafe { stream.cuda_stream() }.clone();
    let pool = MemoryPool::new(
        device,
        PoolOptions {
            cap: Some(Cap::Fraction(1.0)),
        },
    )?;
    let sizes = [MIB, 64 * KIB];
    for &bytes in &sizes {
        drop(pool.alloc::<u8>(&stream, bytes)?); // the block the timed pairs reuse
        drop(pool.alloc::<u8>(&other, bytes)?);
    }

    let pool_pair = |s: &Stream, bytes: usize| -> Result<()> {
        black_box(pool.alloc::<u8>(s, bytes)?);
        Ok(())
    };
    let mut row = |case: String, us: f64, anchor: &str| {
        summary.push(format!("| {case} | {us:.2} µs | {anchor} |"));
    };
    for &bytes in &sizes {
        let size = label(bytes);
        let us = per_pair_us(100_000, || pool_pair(&stream, bytes))?;
        row(
            format!("pool alloc+free {size}, from the cache"),
            us,
            "target ≤ 1 µs",
        );
    }
    // Each pair on the other stream than the last: the block changes hands (an event).
    let mut turn = 0usize;
    let us = per_pair_us(20_000, || {
        turn += 1;
        pool_pair(
            if turn.is_multiple_of(2) {
                &stream
            } else {
                &other
            },
            MIB,
        )
    })?;
    row(
        "pool alloc+free 1 MiB, alternating 2 streams".into(),
        us,
        "",
    );
    for &bytes in &sizes {
        let size = label(bytes);
        let us = per_pair_us(20_000, || driver_async_pair(&raw, bytes))?;
        stream.synchronize()?;
        row(format!("cuMemAllocAsync+cuMemFreeAsync {size}"), us, "");
        let us = per_pair_us(200, || driver_sync_pair(&raw, bytes))?;
        row(format!("cuMemAlloc+cuMemFree {size}"), us, "");
        let us = per_pair_us(5_000, || {
            black_box(DeviceBuffer::<u8>::alloc(&stream, bytes)?);
            Ok(())
        })?;
        stream.synchronize()?;
        row(
            format!("DeviceBuffer::alloc+drop {size} (unpooled)"),
            us,
            "",
        );
    }

    let mut group = c.benchmark_group(format!("{model}/pool"));
    group.bench_function("alloc+free/1MiB/cache", |b| {
        b.iter(|| pool_pair(&stream, MIB).expect("pool allocation failed"))
    });
    group.bench_function("alloc+free/1MiB/cuMemAllocAsync", |b| {
        b.iter(|| driver_async_pair(&raw, MIB).expect("cuMemAllocAsync failed"))
    });
    group.bench_function("alloc+free/1MiB/cuMemAlloc", |b| {
        b.iter(|| driver_sync_pair(&raw, MIB).expect("cuMemAlloc failed"))
    });
    group.finish();
    stream.synchronize()?;
    pool.trim()?;
    Ok(())
}
