//! Upload, compute and download overlapped on two streams with pinned buffers: how much of the
//! copy time the GPU hides behind its compute.
//!
//!     cargo run --release --example transfer_pipeline
//!
//! The data is 12 chunks of 4096 × 4096 f16 (32 MiB each) in page-locked host memory
//! ([`PinnedBuffer`]); each chunk goes up, through three 4096³ GEMMs, and back down. **Serial**:
//! everything on one stream, each phase timed with CUDA events, which gives the H2D and D2H
//! bandwidths and the compute time. **Overlapped**: chunk `i` on stream `i % 2`, each stream with
//! its own device buffers, so one chunk's upload, another's GEMMs and a third's download run at
//! once (the GPU's copy engines work in both directions beside the SMs). Hidden copy time =
//! (serial − overlapped) / (H2D + D2H time). Then the same bytes, as ordinary pageable `Vec`s,
//! through a [`TransferPipeline`] (a ring of pinned staging buffers from a [`PinnedPool`]).
//!
//! The check: both runs produce identical outputs, a row of the first chunk matches an f64 CPU
//! reference, and at least 40 % of the copy time was hidden. Exit status 1 otherwise.

use hikube_gpu::half::f16;
use hikube_gpu::ops::matmul::{Epilogue, Matmul, MatmulDesc};
use hikube_gpu::{
    Device, DeviceBuffer, Event, PinnedBuffer, PinnedPool, Result, Stream, TransferPipeline,
};
use std::process::ExitCode;
use std::time::Instant;

const CHUNKS: usize = 12;
const N: usize = 4096; // each chunk is N × N f16
const GEMMS: usize = 3; // per chunk

/// What one stream owns: its chunk buffers and GEMM plan.
struct Lane {
    stream: Stream,
    input: DeviceBuffer<f16>,
    tmp: [DeviceBuffer<f16>; 2],
    mm: Matmul<f16, f16>,
}

impl Lane {
    fn new(stream: Stream) -> Result<Lane> {
        Ok(Lane {
            input: DeviceBuffer::alloc(&stream, N * N)?,
            tmp: [
                DeviceBuffer::alloc(&stream, N * N)?,
                DeviceBuffer::alloc(&stream, N * N)?,
            ],
            mm: Matmul::new(&stream, MatmulDesc::new(N, N, N))?,
            stream,
        })
    }

    /// Chunk through GEMMS products with `w`; the result ends in `tmp[(GEMMS - 1) % 2]`.
    fn compute(&mut self, w: &DeviceBuffer<f16>) -> Result<()> {
        let s = &self.stream;
        self.mm
            .launch(s, &self.input, w, &mut self.tmp[0], Epilogue::new())?;
        for g in 1..GEMMS {
            let (a, b) = self.tmp.split_at_mut(1);
            if g % 2 == 1 {
                self.mm.launch(s, &a[0], w, &mut b[0], Epilogue::new())?;
            } else {
                self.mm.launch(s, &b[0], w, &mut a[0], Epilogue::new())?;
            }
        }
        Ok(())
    }

    fn result(&self) -> &DeviceBuffer<f16> {
        &self.tmp[(GEMMS - 1) % 2]
    }
}

struct Serial {
    h2d_ms: f64,
    compute_ms: f64,
    d2h_ms: f64,
    total_ms: f64,
}

fn serial(
    lane: &mut Lane,
    w: &DeviceBuffer<f16>,
    inputs: &[PinnedBuffer<f16>],
    outputs: &mut [PinnedBuffer<f16>],
) -> Result<Serial> {
    let dev = lane.stream.device().clone();
    let mut marks = Vec::new();
    for (input, output) in inputs.iter().zip(outputs.iter_mut()) {
        let e: Vec<Event> = (0..4).map(|_| Event::new(&dev)).collect::<Result<_>>()?;
        e[0].record(&lane.stream)?;
        lane.input.copy_from_pinned(&lane.stream, input)?;
        e[1].record(&lane.stream)?;
        lane.compute(w)?;
        e[2].record(&lane.stream)?;
        lane.result().copy_to_pinned(&lane.stream, output)?;
        e[3].record(&lane.stream)?;
        marks.push(e);
    }
    let mut s = Serial {
        h2d_ms: 0.0,
        compute_ms: 0.0,
        d2h_ms: 0.0,
        total_ms: f64::from(marks[0][0].elapsed_ms(&marks[marks.len() - 1][3])?),
    };
    for e in &marks {
        s.h2d_ms += f64::from(e[0].elapsed_ms(&e[1])?);
        s.compute_ms += f64::from(e[1].elapsed_ms(&e[2])?);
        s.d2h_ms += f64::from(e[2].elapsed_ms(&e[3])?);
    }
    Ok(s)
}

fn overlapped(
    lanes: &mut [Lane; 2],
    w: &DeviceBuffer<f16>,
    inputs: &[PinnedBuffer<f16>],
    outputs: &mut [PinnedBuffer<f16>],
) -> Result<f64> {
    let dev = lanes[0].stream.device().clone();
    let (start, end) = (Event::new(&dev)?, Event::new(&dev)?);
    start.record(&lanes[0].stream)?;
    lanes[1].stream.wait(&start)?;
    for (i, (input, output)) in inputs.iter().zip(outputs.iter_mut()).enumerate() {
        let lane = &mut lanes[i % 2];
        lane.input.copy_from_pinned(&lane.stream, input)?;
        lane.compute(w)?;
        lane.result().copy_to_pinned(&lane.stream, output)?;
    }
    lanes[0].stream.wait(&lanes[1].stream.record()?)?;
    end.record(&lanes[0].stream)?;
    Ok(f64::from(start.elapsed_ms(&end)?))
}

fn run() -> Result<bool> {
    let device = Device::open(0)?;
    println!("{} ({})", device.model().name, device.properties().name);
    let mut lanes = [
        Lane::new(device.new_stream()?)?,
        Lane::new(device.new_stream()?)?,
    ];
    let s0 = lanes[0].stream.clone();
    // Entries of about ±1/√N keep the products' magnitudes near those of the inputs.
    let wh: Vec<f16> = (0..N * N)
        .map(|i| {
            f16::from_f32((((i * 7919) % 1001) as f32 / 1000.0 - 0.5) * 3.4 / (N as f32).sqrt())
        })
        .collect();
    let w = DeviceBuffer::from_slice(&s0, &wh)?;
    let chunk_bytes = N * N * 2;
    let t = Instant::now();
    let inputs: Vec<PinnedBuffer<f16>> = (0..CHUNKS)
        .map(|c| {
            let data: Vec<f16> = (0..N * N)
                .map(|i| f16::from_f32(((i * 31 + c * 17) % 997) as f32 / 997.0 - 0.5))
                .collect();
            PinnedBuffer::from_slice(&device, &data)
        })
        .collect::<Result<_>>()?;
    let mut out_serial: Vec<PinnedBuffer<f16>> = (0..CHUNKS)
        .map(|_| PinnedBuffer::zeroed(&device, N * N))
        .collect::<Result<_>>()?;
    let mut out_overlap: Vec<PinnedBuffer<f16>> = (0..CHUNKS)
        .map(|_| PinnedBuffer::zeroed(&device, N * N))
        .collect::<Result<_>>()?;
    println!(
        "{CHUNKS} chunks of {N}x{N} f16 ({} MiB each; inputs and two sets of outputs, {:.2} GiB, \
         page-locked in {:.2} s), {GEMMS} GEMMs of {N}^3 per chunk",
        chunk_bytes >> 20,
        (3 * CHUNKS * chunk_bytes) as f64 / (1u64 << 30) as f64,
        t.elapsed().as_secs_f64()
    );
    // Warm-up: load the kernels, wake the copy engines.
    serial(&mut lanes[0], &w, &inputs[..2], &mut out_serial[..2])?;
    overlapped(&mut lanes, &w, &inputs[..2], &mut out_overlap[..2])?;

    let s = serial(&mut lanes[0], &w, &inputs, &mut out_serial)?;
    let o = overlapped(&mut lanes, &w, &inputs, &mut out_overlap)?;
    let total_bytes = (CHUNKS * chunk_bytes) as f64;
    let gbs = |ms: f64| total_bytes / (ms * 1e6);
    let flops = (2 * N * N * N * GEMMS * CHUNKS) as f64;
    let copy_ms = s.h2d_ms + s.d2h_ms;
    let hidden = ((s.total_ms - o) / copy_ms).clamp(0.0, 1.0);
    println!(
        "serial (one stream): H2D {:.1} ms ({:.1} GB/s), compute {:.1} ms ({:.0} TFLOP/s), D2H {:.1} ms ({:.1} GB/s); total {:.1} ms",
        s.h2d_ms,
        gbs(s.h2d_ms),
        s.compute_ms,
        flops / (s.compute_ms * 1e9),
        s.d2h_ms,
        gbs(s.d2h_ms),
        s.total_ms
    );
    println!(
        "overlapped (two streams): total {o:.1} ms ({:.1} GB/s each way over the whole run); \
         lower bound max(H2D, compute, D2H) = {:.1} ms",
        gbs(o),
        s.h2d_ms.max(s.compute_ms).max(s.d2h_ms)
    );
    println!(
        "copy time hidden behind compute: {:.1} of {copy_ms:.1} ms = {:.0} %; speed-up {:.2}x",
        s.total_ms - o,
        100.0 * hidden,
        s.total_ms / o
    );

    // Pageable memory through the pinned staging ring.
    let pool = PinnedPool::new(&device);
    let mut pipe = TransferPipeline::new(&pool, 16 << 20)?;
    let host: Vec<f16> = inputs[0].as_slice()?.repeat(4);
    let mut gpu = DeviceBuffer::<f16>::alloc(&s0, host.len())?;
    pipe.upload(&s0, &host, &mut gpu)?; // warm-up: takes the staging buffers
    s0.synchronize()?;
    let t = Instant::now();
    pipe.upload(&s0, &host, &mut gpu)?;
    s0.synchronize()?;
    let up = t.elapsed().as_secs_f64();
    let mut back = vec![f16::ZERO; host.len()];
    let t = Instant::now();
    pipe.download(&s0, &gpu, &mut back)?;
    let down = t.elapsed().as_secs_f64();
    let bytes = (host.len() * 2) as f64;
    println!(
        "pageable Vec through TransferPipeline (16 MiB staging): upload {:.1} GB/s, download {:.1} GB/s ({} MiB)",
        bytes / up / 1e9,
        bytes / down / 1e9,
        (host.len() * 2) >> 20
    );

    // Checks.
    let mut same = back == host;
    for c in 0..CHUNKS {
        same &= out_serial[c].as_slice()? == out_overlap[c].as_slice()?;
    }
    // Row 0 of chunk 0 through the GEMMs on the CPU, in f64 from the f16 inputs (the GPU rounds
    // each intermediate to f16; so does the reference, between products).
    let x0 = inputs[0].as_slice()?;
    let mut row: Vec<f64> = x0[..N].iter().map(|v| f64::from(v.to_f32())).collect();
    for _ in 0..GEMMS {
        let mut next = vec![0.0f64; N];
        for (k, &a) in row.iter().enumerate() {
            for (j, o) in next.iter_mut().enumerate() {
                *o += a * f64::from(wh[k * N + j].to_f32());
            }
        }
        row = next
            .into_iter()
            .map(|v| f64::from(f16::from_f64(v).to_f32()))
            .collect();
    }
    let got = &out_overlap[0].as_slice()?[..N];
    let (mut num, mut den) = (0.0, 0.0);
    for (g, r) in got.iter().zip(&row) {
        num += (f64::from(g.to_f32()) - r).powi(2);
        den += r * r;
    }
    let err = (num / den).sqrt();
    println!("outputs of both runs identical: {same}; row 0 vs f64 CPU reference: relative error {err:.1e}");
    let ok = same && err < 2e-2 && hidden >= 0.4;
    if ok {
        println!(
            "check passed: results identical and correct, {:.0} % of the copy time hidden",
            100.0 * hidden
        );
    } else {
        println!(
            "check FAILED: identical {same}, error {err:.1e} (< 2e-2), hidden {:.0} % (>= 40 %)",
            100.0 * hidden
        );
    }
    Ok(ok)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("transfer_pipeline: {e}");
            ExitCode::FAILURE
        }
    }
}
