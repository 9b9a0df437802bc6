//! Pooling ops against an f64 CPU reference: random inputs, poisoned outputs, odd sizes.

use crate::{ensure, fail, gpu_test};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::{ops, Device, DeviceBuffer, Error, Float};
use libtest_mimic::{Failed, Trial};
use rand::Rng;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu_test("pooling::global_avg_pool_f32", |d| grid::<f32>(d, 1e-6)),
        gpu_test("pooling::global_avg_pool_f16", |d| grid::<f16>(d, 1e-3)),
        gpu_test("pooling::global_avg_pool_bf16", |d| grid::<bf16>(d, 8e-3)),
        gpu_test("pooling::global_avg_pool_errors", errors),
    ]
}

fn grid<T: Float>(device: &Device, bound: f64) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let mut rng = rand::rng();
    // (n, hw, c): single pixel and channel, primes, a ResNet-50 head (7x7, 2048 channels).
    for (n, hw, c) in [
        (1, 1, 1),
        (3, 5, 7),
        (2, 49, 2048),
        (64, 49, 2048),
        (5, 97, 13),
    ] {
        let x: Vec<T> = (0..n * hw * c)
            .map(|_| T::from_f32(rng.random_range(-1.0f32..1.0) + 0.25))
            .collect();
        let xd = DeviceBuffer::from_slice(&stream, &x).map_err(fail)?;
        let poison = T::from_f32(f32::NAN);
        let mut yd = DeviceBuffer::from_slice(&stream, &vec![poison; n * c + 3]).map_err(fail)?;
        ops::global_avg_pool(&stream, n, hw, c, &xd, &mut yd).map_err(fail)?;
        let y = yd.to_vec(&stream).map_err(fail)?;
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for b in 0..n {
            for ch in 0..c {
                let r = (0..hw)
                    .map(|p| f64::from(x[(b * hw + p) * c + ch].to_f32()))
                    .sum::<f64>()
                    / hw as f64;
                let d = f64::from(y[b * c + ch].to_f32()) - r;
                num += d * d;
                den += r * r;
            }
        }
        let err = (num / den.max(1e-30)).sqrt();
        ensure!(
            err <= bound,
            "{n}x{hw}x{c}: relative error {err:.2e} > {bound:.0e}"
        );
        ensure!(
            y[n * c..].iter().all(|v| v.to_f32().is_nan()),
            "{n}x{hw}x{c}: wrote past n·c"
        );
    }
    Ok(())
}

fn errors(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let x = DeviceBuffer::<f32>::zeroed(&stream, 10).map_err(fail)?;
    let mut y = DeviceBuffer::<f32>::zeroed(&stream, 2).map_err(fail)?;
    let small = ops::global_avg_pool(&stream, 2, 3, 2, &x, &mut y);
    ensure!(
        matches!(
            small,
            Err(Error::BufferTooSmall {
                operand: "x",
                required: 12,
                actual: 10
            })
        ),
        "{small:?}"
    );
    let small = ops::global_avg_pool(&stream, 1, 3, 3, &x, &mut y);
    ensure!(
        matches!(
            small,
            Err(Error::BufferTooSmall {
                operand: "y",
                required: 3,
                actual: 2
            })
        ),
        "{small:?}"
    );
    let empty = ops::global_avg_pool(&stream, 1, 0, 2, &x, &mut y);
    ensure!(
        matches!(empty, Err(Error::InvalidDimension { .. })),
        "{empty:?}"
    );
    Ok(())
}
