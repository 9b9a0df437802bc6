//! A data loader feeding the GPU: worker threads read batches of samples from a file on disk
//! (`pread`, as PyTorch's `DataLoader` workers read shards), the [`Prefetcher`] stages them in
//! pinned memory (page-locked once, in a [`PinnedPool`] kept across passes, as a training loop
//! keeps it across epochs) and copies them on a stream of its own, and the GPU runs a three-layer MLP
//! forward pass on each batch as soon as it is there.
//!
//!     cargo run --release --example prefetch
//!
//! The readers alone are timed first (how fast the loader delivers), then three passes over the
//! same data: the forward passes alone (the batches already on the GPU); one batch at a time
//! (each batch staged, copied and computed before the next is asked for); and prefetching four
//! batches ahead. Each pass starts its clock once the readers have delivered the first batch
//! (as a loader's persistent workers have it ready when an epoch starts): nothing can hide that
//! wait. The time the second pass adds to the first (waiting for, staging and copying
//! the batches) is what prefetching can hide behind the compute; the example prints how much of
//! it the third pass hid, and checks that the last batch's output is bit-for-bit the same in both
//! passes. Exit status 1 if it is not, or if less than 80 % was hidden. The model is sized so
//! that the GPU, not the readers, is the bottleneck (8 MiB batches, about 2.5 TFLOP each), as it
//! is in training with a well-provisioned loader.

use hikube_gpu::half::f16;
use hikube_gpu::ops::matmul::{Activation, Epilogue, Matmul, MatmulDesc};
use hikube_gpu::{Device, DeviceBuffer, PinnedPool, Prefetcher, Result, Stream};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::Instant;

const BATCHES: usize = 32;
const ROWS: usize = 4096; // samples per batch
const FEATURES: usize = 1024;
const HIDDEN: usize = 16384;
const WORKERS: usize = 8;
const BATCH_BYTES: usize = ROWS * FEATURES * 2;

/// Writes the data set: `BATCHES` batches of `ROWS` samples of `FEATURES` f16 values.
fn write_dataset(path: &Path) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(File::create(path)?);
    for b in 0..BATCHES {
        let batch: Vec<f16> = (0..ROWS * FEATURES)
            .map(|i| f16::from_f32(((i * 31 + b * 7) % 1000) as f32 / 1000.0 - 0.5))
            .collect();
        file.write_all(bytemuck::cast_slice(&batch))?;
    }
    file.flush()
}

/// The batches in order, read by `WORKERS` threads (worker `w` reads batches `w`, `w + WORKERS`,
/// …, each up to two ahead of the consumer).
fn loader(path: PathBuf) -> impl Iterator<Item = Vec<f16>> + Send + 'static {
    let workers: Vec<Receiver<Vec<f16>>> = (0..WORKERS)
        .map(|w| {
            let (tx, rx) = sync_channel(2);
            let path = path.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                let file = File::open(path)?;
                for b in (w..BATCHES).step_by(WORKERS) {
                    let mut batch = vec![f16::ZERO; ROWS * FEATURES];
                    let bytes = bytemuck::cast_slice_mut(&mut batch);
                    file.read_exact_at(bytes, (b * BATCH_BYTES) as u64)?;
                    if tx.send(batch).is_err() {
                        break;
                    }
                }
                Ok(())
            });
            rx
        })
        .collect();
    (0..BATCHES).map_while(move |b| workers[b % WORKERS].recv().ok())
}

/// The model: FEATURES → HIDDEN → HIDDEN → FEATURES, ReLU between, f16 with f32 accumulation.
struct Mlp {
    weights: [DeviceBuffer<f16>; 3],
    layers: [Matmul<f16, f16>; 3],
    h1: DeviceBuffer<f16>,
    h2: DeviceBuffer<f16>,
}

impl Mlp {
    fn new(stream: &Stream) -> Result<Mlp> {
        let dims = [(FEATURES, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, FEATURES)];
        let weight = |(k, n): (usize, usize)| {
            let scale = 1.0 / (k as f32).sqrt();
            let w: Vec<f16> = (0..k * n)
                .map(|i| f16::from_f32(((i * 17 % 101) as f32 / 50.0 - 1.0) * scale))
                .collect();
            DeviceBuffer::from_slice(stream, &w)
        };
        let layer = |(k, n): (usize, usize), act| {
            Matmul::new(stream, MatmulDesc::new(ROWS, n, k).activation(act))
        };
        Ok(Mlp {
            weights: [weight(dims[0])?, weight(dims[1])?, weight(dims[2])?],
            layers: [
                layer(dims[0], Activation::Relu)?,
                layer(dims[1], Activation::Relu)?,
                layer(dims[2], Activation::None)?,
            ],
            h1: DeviceBuffer::alloc(stream, ROWS * HIDDEN)?,
            h2: DeviceBuffer::alloc(stream, ROWS * HIDDEN)?,
        })
    }

    fn forward(
        &mut self,
        s: &Stream,
        x: &DeviceBuffer<f16>,
        y: &mut DeviceBuffer<f16>,
    ) -> Result<()> {
        self.layers[0].launch(s, x, &self.weights[0], &mut self.h1, Epilogue::new())?;
        self.layers[1].launch(s, &self.h1, &self.weights[1], &mut self.h2, Epilogue::new())?;
        self.layers[2].launch(s, &self.h2, &self.weights[2], y, Epilogue::new())
    }
}

/// Seconds for one pass of the data through the model, prefetching `depth` batches ahead (0:
/// the batches are on the GPU already); the last batch's output.
fn pass(
    staging: &PinnedPool,
    s: &Stream,
    mlp: &mut Mlp,
    path: &Path,
    depth: usize,
) -> Result<(f64, Vec<f16>, [f64; 2])> {
    let mut y = DeviceBuffer::<f16>::alloc(s, ROWS * FEATURES)?;
    // Host seconds spent getting batches (staging, queueing copies) and queueing the forwards.
    let mut host = [0.0f64; 2];
    let resident = match depth {
        0 => loader(path.to_path_buf())
            .map(|b| DeviceBuffer::from_slice(s, &b))
            .collect::<Result<Vec<_>>>()?,
        _ => Vec::new(),
    };
    // The readers start before the clock, as a loader's persistent workers do between epochs:
    // the wait for the first batch has no compute to hide behind, in either pass.
    let mut reading = (depth > 0).then(|| loader(path.to_path_buf()).peekable());
    if let Some(r) = reading.as_mut() {
        r.peek();
    }
    s.synchronize()?;
    let start = Instant::now();
    if let Some(reading) = reading {
        let mut batches = Prefetcher::with_pool(staging, reading, depth)?;
        let mut t = Instant::now();
        while let Some(x) = batches.next(s) {
            host[0] += t.elapsed().as_secs_f64();
            t = Instant::now();
            mlp.forward(s, &x?, &mut y)?;
            host[1] += t.elapsed().as_secs_f64();
            if depth == 1 {
                s.synchronize()?; // one batch at a time: nothing overlaps
            }
            t = Instant::now();
        }
    } else {
        for x in &resident {
            mlp.forward(s, x, &mut y)?;
        }
    }
    s.synchronize()?;
    Ok((start.elapsed().as_secs_f64(), y.to_vec(s)?, host))
}

fn main() -> ExitCode {
    let path = std::env::temp_dir().join(format!("hikube-gpu-prefetch-{}.bin", std::process::id()));
    let go = || -> Result<bool> {
        let device = Device::open(0)?;
        let s = device.new_stream()?;
        write_dataset(&path).map_err(|e| hikube_gpu::Error::InvalidArgument {
            what: format!("writing the data set to {}: {e}", path.display()),
        })?;
        let mut mlp = Mlp::new(&s)?;
        // The page-locked staging buffers, kept from one pass (epoch) to the next.
        let staging = PinnedPool::new(&device);
        // Warm-up: loads the kernels, fills the page cache, page-locks the staging buffers.
        pass(&staging, &s, &mut mlp, &path, 4)?;
        let t0 = Instant::now();
        let read = loader(path.clone()).count();
        let reading = t0.elapsed().as_secs_f64();
        let (compute, _, _) = pass(&staging, &s, &mut mlp, &path, 0)?;
        let (serial, y1, _) = pass(&staging, &s, &mut mlp, &path, 1)?;
        let (ahead, y4, host) = pass(&staging, &s, &mut mlp, &path, 4)?;
        let loading = serial - compute;
        let hidden = (serial - ahead) / loading;
        let gb = (BATCHES * BATCH_BYTES) as f64 / 1e9;
        println!(
            "{BATCHES} batches of {} MiB, read from disk by {WORKERS} threads, through a \
             {FEATURES}-{HIDDEN}-{HIDDEN}-{FEATURES} MLP on {}:",
            BATCH_BYTES >> 20,
            device.model().name
        );
        println!(
            "  the readers alone: {read} batches in {:.1} ms ({:.1} GB/s)",
            reading * 1e3,
            gb / reading
        );
        println!(
            "  forward passes alone (data on the GPU): {:.1} ms",
            compute * 1e3
        );
        println!(
            "  one batch at a time: {:.1} ms ({:.1} ms more: waiting for, staging and copying \
             the batches, {:.1} GB/s)",
            serial * 1e3,
            loading * 1e3,
            gb / loading
        );
        println!(
            "  prefetching 4 ahead: {:.1} ms: {:.0} % of those {:.1} ms hidden behind the compute",
            ahead * 1e3,
            100.0 * hidden,
            loading * 1e3
        );
        println!(
            "    (the host in that pass: {:.1} ms getting batches, {:.1} ms queueing the forwards)",
            host[0] * 1e3,
            host[1] * 1e3
        );
        let same = y1 == y4;
        println!("  last batch's output identical in both passes: {same}");
        Ok(same && hidden >= 0.8)
    };
    let outcome = go();
    let _ = std::fs::remove_file(&path);
    match outcome {
        Ok(true) => {
            println!("check passed");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("check failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("prefetch: {e}");
            ExitCode::FAILURE
        }
    }
}
