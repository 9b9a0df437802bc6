//! The same step of many small kernels launched eagerly and replayed as a CUDA graph: the time
//! per step of each.
//!
//!     cargo run --release --example graph_replay
//!
//! The step is what small-batch inference or an optimizer looks like to the GPU: four 256 × 256
//! layers (GEMM with bias and ReLU fused, f16) and 24 element-wise kernels (`axpy` on 64 K
//! floats): 28 kernels of a few microseconds each, so launching them one by one from the host
//! costs more than running them. [`Graph::capture`] records the step once; each replay is one
//! launch. Both are timed with CUDA events over 2000 steps after warm-up, and the result of one
//! eager step and one replay, from the same inputs, must be bit-for-bit identical. The check
//! passes when they are and the graph is faster; exit status 1 otherwise.

use hikube_gpu::half::f16;
use hikube_gpu::ops::matmul::{Activation, Epilogue, Matmul, MatmulDesc};
use hikube_gpu::{ops, Device, DeviceBuffer, Event, Graph, Result, Stream};
use std::process::ExitCode;

const BATCH: usize = 256;
const WIDTH: usize = 256;
const LAYERS: usize = 4;
const AXPYS: usize = 24;
const VECTOR: usize = 65_536;
const STEPS: usize = 2000;

struct Work {
    x: DeviceBuffer<f16>,
    h: [DeviceBuffer<f16>; 2],
    w: Vec<DeviceBuffer<f16>>,
    bias: DeviceBuffer<f16>,
    mm: Matmul<f16, f16>,
    u: DeviceBuffer<f32>,
    v: DeviceBuffer<f32>,
}

impl Work {
    fn step(&mut self, s: &Stream) -> Result<()> {
        for l in 0..LAYERS {
            let [h0, h1] = &mut self.h;
            let (input, out) = match l {
                0 => (&self.x, h0),
                l if l % 2 == 1 => (&*h0, h1),
                _ => (&*h1, h0),
            };
            self.mm
                .launch(s, input, &self.w[l], out, Epilogue::new().bias(&self.bias))?;
        }
        for i in 0..AXPYS {
            let alpha = if i % 2 == 0 { 0.5 } else { -0.25 };
            ops::axpy(s, alpha, &self.u, &mut self.v)?;
        }
        Ok(())
    }

    /// The step's outputs, as raw bits.
    fn outputs(&self, s: &Stream) -> Result<(Vec<u16>, Vec<u32>)> {
        let h = self.h[(LAYERS - 1) % 2].to_vec(s)?;
        let v = self.v.to_vec(s)?;
        Ok((
            h.iter().map(|x| x.to_bits()).collect(),
            v.iter().map(|x| x.to_bits()).collect(),
        ))
    }

    fn reset(&mut self, s: &Stream) -> Result<()> {
        self.v.fill(s, 1.0)?;
        for h in &mut self.h {
            h.fill(s, f16::ZERO)?;
        }
        Ok(())
    }
}

fn time_steps(s: &Stream, steps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..50 {
        f()?;
    }
    let (start, end) = (Event::new(s.device())?, Event::new(s.device())?);
    start.record(s)?;
    for _ in 0..steps {
        f()?;
    }
    end.record(s)?;
    Ok(f64::from(start.elapsed_ms(&end)?) * 1e3 / steps as f64)
}

fn run() -> Result<bool> {
    let device = Device::open(0)?;
    println!("{} ({})", device.model().name, device.properties().name);
    let s = device.new_stream()?;
    let val = |i: usize, k: usize| f16::from_f32(((i * k) % 113) as f32 / 113.0 - 0.5);
    let mut work = Work {
        x: DeviceBuffer::from_slice(
            &s,
            &(0..BATCH * WIDTH).map(|i| val(i, 7)).collect::<Vec<_>>(),
        )?,
        h: [
            DeviceBuffer::alloc(&s, BATCH * WIDTH)?,
            DeviceBuffer::alloc(&s, BATCH * WIDTH)?,
        ],
        w: (0..LAYERS)
            .map(|l| {
                let w: Vec<f16> = (0..WIDTH * WIDTH)
                    .map(|i| f16::from_f32(val(i, 11 + l).to_f32() * 0.2))
                    .collect();
                DeviceBuffer::from_slice(&s, &w)
            })
            .collect::<Result<_>>()?,
        bias: DeviceBuffer::from_slice(&s, &vec![f16::from_f32(0.01); WIDTH])?,
        mm: Matmul::new(
            &s,
            MatmulDesc::new(BATCH, WIDTH, WIDTH).activation(Activation::Relu),
        )?,
        u: DeviceBuffer::from_slice(&s, &vec![0.001f32; VECTOR])?,
        v: DeviceBuffer::alloc(&s, VECTOR)?,
    };
    // One eager step from a known state: the reference result (and every kernel loaded).
    work.reset(&s)?;
    work.step(&s)?;
    let eager_out = work.outputs(&s)?;
    let eager_us = time_steps(&s, STEPS, || work.step(&s))?;

    work.reset(&s)?;
    s.synchronize()?;
    let mut graph = Graph::capture(&s, work, |s, w| w.step(s))?;
    graph.launch(&s)?;
    let graph_out = graph.resources().outputs(&s)?;
    let graph_us = time_steps(&s, STEPS, || graph.launch(&s))?;
    let nodes = graph.node_count();

    let same = eager_out == graph_out;
    println!(
        "step: {LAYERS} GEMMs {BATCH}x{WIDTH}x{WIDTH} (bias + ReLU fused) + {AXPYS} axpy on {VECTOR} floats = {nodes} graph nodes"
    );
    println!(
        "eager: {eager_us:.1} us per step ({:.2} us per kernel)",
        eager_us / nodes as f64
    );
    println!(
        "graph: {graph_us:.1} us per step ({:.2} us per kernel), {:.2}x faster",
        graph_us / nodes as f64,
        eager_us / graph_us
    );
    println!("one eager step and one replay give bit-identical results: {same}");
    let ok = same && graph_us < eager_us;
    if ok {
        println!(
            "check passed: identical results, the graph is {:.2}x faster",
            eager_us / graph_us
        );
    } else {
        println!(
            "check FAILED: identical {same}, graph {graph_us:.1} us vs eager {eager_us:.1} us"
        );
    }
    Ok(ok)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("graph_replay: {e}");
            ExitCode::FAILURE
        }
    }
}
