//! The PTX path end to end: every shipped target of the element-wise module, run on the device
//! through the driver's JIT and checked against an f64 CPU reference; streams, events, timing.

use crate::{ensure, fail, gpu_test};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::{
    modules, ops, time_on_stream, Device, DeviceBuffer, Error, Float, KernelOptions, PtxArch,
};
use libtest_mimic::{Failed, Trial};
use rand::Rng;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu_test("kernels::axpy_f32_every_target", |d| {
            axpy_every_target::<f32>(d, 1e-6)
        }),
        gpu_test("kernels::axpy_f16_every_target", |d| {
            axpy_every_target::<f16>(d, 1e-3)
        }),
        gpu_test("kernels::axpy_bf16_every_target", |d| {
            axpy_every_target::<bf16>(d, 8e-3)
        }),
        gpu_test("kernels::axpy_on_sub_slices", axpy_on_sub_slices),
        gpu_test("kernels::axpy_length_mismatch", axpy_length_mismatch),
        gpu_test("kernels::unsupported_targets", unsupported_targets),
        gpu_test(
            "kernels::module_load_once_per_device",
            module_load_once_per_device,
        ),
        gpu_test(
            "kernels::streams_ordered_by_events",
            streams_ordered_by_events,
        ),
        gpu_test("kernels::event_timing", event_timing),
    ]
}

const SIZES: [usize; 7] = [1, 2, 31, 256, 257, 65_521, 1_000_003];

fn random<T: Float>(n: usize) -> Vec<T> {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| T::from_f32(rng.random_range(-1.0f32..1.0)))
        .collect()
}

/// ‖out − ref‖ / ‖ref‖ with the reference `alpha·x + y` computed in f64 from the stored inputs.
fn axpy_error<T: Float>(alpha: f32, x: &[T], y: &[T], out: &[T]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for ((x, y), o) in x.iter().zip(y).zip(out) {
        let r = f64::from(alpha) * f64::from(x.to_f32()) + f64::from(y.to_f32());
        let d = f64::from(o.to_f32()) - r;
        num += d * d;
        den += r * r;
    }
    (num / den).sqrt()
}

fn axpy_every_target<T: Float>(device: &Device, bound: f64) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let cc = device.compute_capability();
    let targets: Vec<PtxArch> = modules::targets("elementwise")
        .into_iter()
        .filter(|a| a.runs_on(cc))
        .collect();
    ensure!(!targets.is_empty(), "no target runs on {cc}");
    for &arch in &targets {
        for n in SIZES {
            let x = random::<T>(n);
            let y = random::<T>(n);
            let alpha = rand::rng().random_range(-3.0f32..3.0);
            let gx = DeviceBuffer::from_slice(&stream, &x).map_err(fail)?;
            let mut gy = DeviceBuffer::from_slice(&stream, &y).map_err(fail)?;
            let opts = KernelOptions { arch: Some(arch) };
            ops::axpy_with(&stream, alpha, &gx, &mut gy, opts).map_err(fail)?;
            let out = gy.to_vec(&stream).map_err(fail)?;
            let err = axpy_error(alpha, &x, &y, &out);
            ensure!(
                err.is_finite() && err <= bound,
                "{arch} n={n}: relative error {err:e} > {bound:e}"
            );
        }
    }
    // The default choice is the newest target the device runs.
    let best = modules::select("elementwise", cc, None).map_err(fail)?;
    ensure!(Some(&best) == targets.iter().max(), "default target {best}");
    eprintln!("axpy {}: checked on {targets:?}", T::SUFFIX);
    Ok(())
}

fn axpy_on_sub_slices(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let n = 1000;
    let x = random::<f32>(n);
    let y = random::<f32>(n);
    let gx = DeviceBuffer::from_slice(&stream, &x).map_err(fail)?;
    let mut gy = DeviceBuffer::from_slice(&stream, &y).map_err(fail)?;
    ops::axpy(
        &stream,
        2.0,
        &gx.slice(100..200).map_err(fail)?,
        &mut gy.slice_mut(300..400).map_err(fail)?,
    )
    .map_err(fail)?;
    let out = gy.to_vec(&stream).map_err(fail)?;
    for (i, o) in out.iter().enumerate() {
        let want = if (300..400).contains(&i) {
            2.0 * x[i - 200] + y[i]
        } else {
            y[i]
        };
        ensure!(
            (o - want).abs() <= 1e-6 * want.abs().max(1.0),
            "element {i}: {o} != {want}"
        );
    }
    Ok(())
}

fn axpy_length_mismatch(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let x = DeviceBuffer::<f16>::zeroed(&stream, 5).map_err(fail)?;
    let mut y = DeviceBuffer::<f16>::zeroed(&stream, 6).map_err(fail)?;
    match ops::axpy(&stream, 1.0, &x, &mut y) {
        Err(Error::LengthMismatch {
            expected: 6,
            actual: 5,
        }) => Ok(()),
        other => Err(format!("gave {other:?}").into()),
    }
}

fn unsupported_targets(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let cc = device.compute_capability();
    let x = DeviceBuffer::from_slice(&stream, &[1.0f32; 8]).map_err(fail)?;
    let mut y = DeviceBuffer::from_slice(&stream, &[1.0f32; 8]).map_err(fail)?;
    for arch in PtxArch::ALL {
        let r = ops::axpy_with(&stream, 1.0, &x, &mut y, KernelOptions { arch: Some(arch) });
        if !hikube_gpu::modules::targets("elementwise").contains(&arch) {
            ensure!(
                matches!(r, Err(Error::InvalidArgument { .. })),
                "{arch}, which elementwise is not compiled for: {r:?}"
            );
        } else if arch.runs_on(cc) {
            ensure!(r.is_ok(), "{arch} runs on {cc} but failed: {r:?}");
        } else {
            ensure!(
                matches!(r, Err(Error::UnsupportedArch { .. })),
                "{arch} on {cc}: {r:?}"
            );
        }
    }
    match device.load_module("no_such_module", None) {
        Err(Error::UnsupportedArch {
            available,
            major,
            minor,
            ..
        }) => {
            ensure!(
                available == "none" && (major, minor) == (cc.major, cc.minor),
                "numbers"
            );
        }
        other => return Err(format!("unknown module gave {other:?}").into()),
    }
    Ok(())
}

fn module_load_once_per_device(device: &Device) -> Result<(), Failed> {
    // One registry per GPU, shared by every handle (one context per GPU): a target this
    // process has not loaded yet goes to the driver once, then every handle finds it cached.
    let other = Device::open(device.ordinal()).map_err(fail)?;
    let arch = hikube_gpu::PtxArch::Compute70;
    let first = device.load_module("pooling", Some(arch)).map_err(fail)?;
    let again = other.load_module("pooling", Some(arch)).map_err(fail)?;
    ensure!(
        !first.cached && first.elapsed.as_nanos() > 0,
        "first load: {first:?}"
    );
    ensure!(
        again.cached && again.arch == first.arch,
        "second load through another handle: {again:?}"
    );
    eprintln!(
        "elementwise {} ({}) loaded in {:?}",
        first.arch, first.image, first.elapsed
    );
    Ok(())
}

fn streams_ordered_by_events(device: &Device) -> Result<(), Failed> {
    // Stream a produces y = 1 + 64·(2·1) after 64 axpys; stream b, after waiting on a's event,
    // copies y. Without the wait, b could copy a partial result.
    let a = device.new_stream().map_err(fail)?;
    let b = device.new_stream().map_err(fail)?;
    let n = 1 << 22;
    let x = DeviceBuffer::from_slice(&a, &vec![1.0f32; n]).map_err(fail)?;
    let mut y = DeviceBuffer::from_slice(&a, &vec![1.0f32; n]).map_err(fail)?;
    a.synchronize().map_err(fail)?;
    for _ in 0..64 {
        ops::axpy(&a, 2.0, &x, &mut y).map_err(fail)?;
    }
    let done = a.record().map_err(fail)?;
    b.wait(&done).map_err(fail)?;
    let mut copy = DeviceBuffer::<f32>::alloc(&b, n).map_err(fail)?;
    copy.copy_from(&b, &y).map_err(fail)?;
    let out = copy.to_vec(&b).map_err(fail)?;
    ensure!(
        out.iter().all(|&v| v == 129.0),
        "stream b saw {:?}",
        out.iter().find(|&&v| v != 129.0)
    );
    ensure!(
        done.is_complete().map_err(fail)?,
        "event not complete after the wait"
    );
    Ok(())
}

fn event_timing(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let n = 1 << 24;
    let x = DeviceBuffer::from_slice(&stream, &random::<f32>(n)).map_err(fail)?;
    let mut y = DeviceBuffer::from_slice(&stream, &random::<f32>(n)).map_err(fail)?;
    let t =
        time_on_stream(&stream, 2, 10, |_| ops::axpy(&stream, 1.0, &x, &mut y)).map_err(fail)?;
    ensure!(t.samples_ms.len() == 10, "samples");
    ensure!(
        t.min_ms() > 0.0 && t.median_ms() >= t.min_ms() && t.max_ms() >= t.median_ms(),
        "{t:?}"
    );
    // 3 × 64 MiB moved per axpy: it cannot beat 10 TB/s, nor take a second.
    let bytes = 3.0 * 4.0 * n as f64;
    let gbs = bytes / (t.median_ms() * 1e6);
    ensure!(
        gbs < 10_000.0 && t.median_ms() < 1000.0,
        "implausible timing {gbs} GB/s"
    );
    eprintln!(
        "axpy f32 2^24: {:.3} ms median, {gbs:.0} GB/s",
        t.median_ms()
    );
    Ok(())
}
