//! GEMM, f16 and bf16, square sizes: the crate's `Matmul` and, where it loads, cuBLAS, on the
//! same inputs; and FP8 (e4m3, f16 out) with the crate's `ScaledMatmul` where the GPU has it.

use super::Ctx;
use crate::report::{Params, Peak};
use crate::Suite;
use cudarc::cublas::CudaBlas;
use hikube_gpu::fp8::{Fp8, F8E4M3};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::ops::matmul::{
    scale_on_device, Epilogue, Layout, Matmul, MatmulDesc, ScaledMatmul, Scales,
};
use hikube_gpu::{DeviceBuffer, Float, Result};

/// Input sets the timed runs rotate over, so that no run finds its inputs in L2.
const SETS: usize = 3;

/// The square sizes measured.
pub fn sizes(quick: bool) -> Vec<usize> {
    if quick {
        vec![1024, 4096]
    } else {
        vec![1024, 2048, 4096, 8192]
    }
}

/// The results a run records: f16 and bf16, ours and cuBLAS's where it loads, and FP8 (ours).
pub fn results(sizes: &[usize], cublas: bool) -> u64 {
    (sizes.len() * (2 * (1 + usize::from(cublas)) + 1)) as u64
}

/// Values in [-1, 1) from a xorshift generator: random enough that the multipliers toggle as
/// they do on real data (zeros would flatter the power figures), and quick to make.
pub fn pseudo_random<T: Float>(len: usize, seed: u64) -> Vec<T> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            T::from_f32((x >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
        })
        .collect()
}

struct Inputs<T: Float> {
    a: Vec<DeviceBuffer<T>>,
    b: Vec<DeviceBuffer<T>>,
    d: DeviceBuffer<T>,
}

fn inputs<T: Float>(ctx: &Ctx<'_>, s: usize) -> Result<Inputs<T>> {
    let host = pseudo_random::<T>(s * s, 0x9E37_79B9_7F4A_7C15);
    let upload = || DeviceBuffer::from_slice(ctx.stream, &host);
    Ok(Inputs {
        a: (0..SETS).map(|_| upload()).collect::<Result<_>>()?,
        b: (0..SETS).map(|_| upload()).collect::<Result<_>>()?,
        d: DeviceBuffer::alloc(ctx.stream, s * s)?,
    })
}

fn one_type<T: Float>(
    ctx: &mut Ctx<'_>,
    blas: Option<&CudaBlas>,
    sizes: &[usize],
    peak: Option<f64>,
) -> Result<()> {
    let model = ctx.device.model();
    let provenance = match model.provenance {
        hikube_gpu::Provenance::Catalog => "catalog",
        hikube_gpu::Provenance::Derived => "derived",
    };
    let per_size = 1 + u64::from(blas.is_some());
    for &s in sizes {
        let name = format!("{} {s}×{s}×{s} NT", T::SUFFIX);
        let flops = 2.0 * (s as f64).powi(3);
        let params = || Params::Gemm {
            dtype: T::SUFFIX.into(),
            m: s,
            n: s,
            k: s,
        };
        let peak = || {
            peak.map(|value| Peak {
                value,
                what: format!(
                    "{} dense tensor, FP32 accumulate ({provenance})",
                    T::SUFFIX.to_uppercase()
                ),
            })
        };
        ctx.running(&format!("gemm {name}"));
        // B column-major (stored N×K), as nn.Linear's weight: the layout of the Hopper path.
        let prepared = Matmul::<T, T>::new(
            ctx.stream,
            MatmulDesc::new(s, s, s).b_layout(Layout::ColMajor),
        )
        .and_then(|plan| Ok((plan, inputs::<T>(ctx, s)?)));
        let (plan, mut x) = match prepared {
            Ok(p) => p,
            Err(e) => {
                ctx.skip(format!("gemm {name}"), e, per_size)?;
                continue;
            }
        };
        let stream = ctx.stream;
        let ours = ctx.time(1.0, |i| {
            let set = i % SETS;
            plan.launch(stream, &x.a[set], &x.b[set], &mut x.d, Epilogue::new())
        });
        match ours {
            Ok(t) => {
                let tflops = flops / (t.median_ms * 1e9);
                ctx.record(
                    Suite::Gemm,
                    name.clone(),
                    "hikube-gpu",
                    params(),
                    (tflops, "TFLOP/s", true),
                    peak(),
                    t,
                );
            }
            Err(e) => ctx.skip(format!("gemm {name} (hikube-gpu)"), e, 1)?,
        }
        if let Some(blas) = blas {
            ctx.running(&format!("gemm {name} cuBLAS"));
            let theirs = ctx.time(1.0, |i| {
                let set = i % SETS;
                hikube_gpu::reference::cublas_gemm(
                    blas,
                    stream,
                    &x.a[set],
                    &x.b[set],
                    &mut x.d,
                    (s, s, s),
                    Layout::ColMajor,
                )
            });
            match theirs {
                Ok(t) => {
                    let tflops = flops / (t.median_ms * 1e9);
                    ctx.record(
                        Suite::Gemm,
                        name.clone(),
                        "cuBLAS",
                        params(),
                        (tflops, "TFLOP/s", true),
                        peak(),
                        t,
                    );
                }
                Err(e) => ctx.skip(format!("gemm {name} (cuBLAS)"), e, 1)?,
            }
        }
    }
    Ok(())
}

/// FP8 as `torch._scaled_mm` runs it: e4m3 A (row-major) and B (column-major), scales of 1 on
/// the device, f16 out. A GPU without FP8 tensor cores skips it with the plan's error.
fn fp8(ctx: &mut Ctx<'_>, sizes: &[usize], peak: Option<f64>) -> Result<()> {
    for &s in sizes {
        let name = format!("e4m3 {s}×{s}×{s} NT, f16 out");
        ctx.running(&format!("gemm {name}"));
        let desc = MatmulDesc::new(s, s, s).b_layout(Layout::ColMajor);
        let prepared = ScaledMatmul::<F8E4M3, f16>::new(ctx.stream, desc).and_then(|plan| {
            let host: Vec<F8E4M3> = pseudo_random::<f32>(s * s, 0x2545_F491_4F6C_DD1D)
                .into_iter()
                .map(|x| F8E4M3::saturating_from_f32(4.0 * x))
                .collect();
            let upload = || DeviceBuffer::from_slice(ctx.stream, &host);
            let sets = (0..SETS).map(|_| upload()).collect::<Result<Vec<_>>>()?;
            let d = DeviceBuffer::<f16>::alloc(ctx.stream, s * s)?;
            Ok((plan, sets, d, scale_on_device(ctx.stream, 1.0)?))
        });
        let (plan, sets, mut d, one) = match prepared {
            Ok(p) => p,
            Err(e) => {
                ctx.skip(format!("gemm {name}"), e, 1)?;
                continue;
            }
        };
        let stream = ctx.stream;
        let timed = ctx.time(1.0, |i| {
            let (a, b) = (&sets[i % SETS], &sets[(i + 1) % SETS]);
            plan.launch(
                stream,
                a,
                b,
                &mut d,
                Scales::new(&one, &one),
                Epilogue::new(),
            )
        });
        match timed {
            Ok(t) => {
                let tflops = 2.0 * (s as f64).powi(3) / (t.median_ms * 1e9);
                let params = Params::Gemm {
                    dtype: "e4m3".into(),
                    m: s,
                    n: s,
                    k: s,
                };
                let peak = peak.map(|value| Peak {
                    value,
                    what: "FP8 dense tensor, FP32 accumulate (catalog)".into(),
                });
                let value = (tflops, "TFLOP/s", true);
                ctx.record(Suite::Gemm, name, "hikube-gpu", params, value, peak, t);
            }
            Err(e) => ctx.skip(format!("gemm {name} (hikube-gpu)"), e, 1)?,
        }
    }
    Ok(())
}

/// Both types, every size, then FP8.
pub fn run(ctx: &mut Ctx<'_>, blas: Option<&CudaBlas>, sizes: &[usize]) -> Result<()> {
    let model = ctx.device.model().clone();
    one_type::<f16>(ctx, blas, sizes, Some(model.fp16_tflops))?;
    one_type::<bf16>(ctx, blas, sizes, model.bf16_tflops)?;
    fp8(ctx, sizes, model.fp8_tflops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_spread_over_minus_one_to_one() {
        let v = pseudo_random::<f32>(100_000, 42);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.02, "mean {mean}");
        let below = v.iter().filter(|&&x| x < -0.5).count() as f64 / v.len() as f64;
        assert!((below - 0.25).abs() < 0.02, "{below}");
        assert_eq!(pseudo_random::<f32>(5, 42), v[..5]);
        assert_eq!(sizes(true).len(), 2);
        assert_eq!(*sizes(false).last().unwrap(), 8192);
        assert_eq!(results(&sizes(true), true), 2 * (2 * 2 + 1));
    }
}
