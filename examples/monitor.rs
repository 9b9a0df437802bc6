//! Watch the GPU's power, clocks and utilization while a workload runs.
//!
//!     cargo run --release --features nvml --example monitor
//!
//! A [`Sampler`](hikube_gpu::monitor::Sampler) reads NVML every 100 ms on a background thread:
//! one second idle, then about four seconds of 8192³ f16 GEMMs, then half a second idle again.
//! It prints a short table of the readings (one every half second), the idle and busy states
//! (mean power, SM clock, utilization, clock-limiting reasons) and the GEMMs' TFLOP/s and
//! TFLOP/s per watt. The busy state leaves out the first second of the run: NVML's utilization
//! and power are averages over the last sample period, so they lag.
//!
//! The check: utilization during the GEMMs is at least 80 % and above the idle utilization.
//! Exit status 1 otherwise (or where NVML is missing).

use hikube_gpu::half::f16;
use hikube_gpu::monitor::{MachineState, Monitor};
use hikube_gpu::ops::matmul::{Epilogue, Matmul, MatmulDesc};
use hikube_gpu::{Device, DeviceBuffer, Result};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const N: usize = 8192;
const PERIOD: Duration = Duration::from_millis(100);

fn opt<T: std::fmt::Display>(v: Option<T>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn describe(what: &str, s: &MachineState) {
    println!(
        "{what:<6} {:>3} readings: utilization {:>5} %, power {:>6} W (max {:>6}), SM clock {:>6} MHz (min {:>5}), max {:>3} °C, clocks limited by: {}",
        s.samples,
        opt(s.mean_gpu_utilization_percent, 0),
        opt(s.mean_power_w, 0),
        opt(s.max_power_w, 0),
        opt(s.mean_sm_clock_mhz, 0),
        opt(s.min_sm_clock_mhz, 0),
        opt(s.max_temperature_c, 0),
        s.throttle_reasons
    );
}

fn run() -> Result<bool> {
    let device = Device::open(0)?;
    let monitor = Monitor::new()?;
    println!(
        "{} ({}), driver {}",
        device.model().name,
        device.properties().name,
        monitor.driver_version()?
    );
    let stream = device.new_stream()?;
    let a = DeviceBuffer::from_slice(&stream, &vec![f16::from_f32(0.01); N * N])?;
    let b = DeviceBuffer::from_slice(&stream, &vec![f16::from_f32(0.02); N * N])?;
    let mut d = DeviceBuffer::<f16>::alloc(&stream, N * N)?;
    let mm = Matmul::<f16, f16>::new(&stream, MatmulDesc::new(N, N, N))?;
    mm.launch(&stream, &a, &b, &mut d, Epilogue::new())?; // load the kernels
    stream.synchronize()?;

    let sampler = monitor.sampler(&device, PERIOD)?;
    std::thread::sleep(Duration::from_secs(1));
    let busy_from = sampler.elapsed();
    let t = Instant::now();
    let mut gemms = 0usize;
    while t.elapsed() < Duration::from_secs(4) {
        for _ in 0..10 {
            mm.launch(&stream, &a, &b, &mut d, Epilogue::new())?;
        }
        gemms += 10;
        stream.synchronize()?;
    }
    let seconds = t.elapsed().as_secs_f64();
    let busy_to = sampler.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let series = sampler.stop()?;

    println!("  time   util %   power W   SM MHz   mem MHz   °C   clocks limited by");
    let mut next = Duration::ZERO;
    for s in &series.samples {
        if s.at + PERIOD / 2 < next {
            continue;
        }
        next = s.at + Duration::from_millis(500);
        let m = &s.metrics;
        let phase = if s.at < busy_from || s.at > busy_to {
            "idle"
        } else {
            "GEMM"
        };
        println!(
            "{:>5.1}s   {:>6}   {:>7}   {:>6}   {:>7}   {:>3}  {} ({phase})",
            s.at.as_secs_f64(),
            opt(m.gpu_utilization_percent, 0),
            opt(m.power_w, 0),
            opt(m.sm_clock_mhz, 0),
            opt(m.memory_clock_mhz, 0),
            opt(m.temperature_c, 0),
            m.throttle_reasons.unwrap_or_default()
        );
    }
    let idle = series.window(Duration::ZERO..busy_from);
    let busy = series.window(busy_from + Duration::from_secs(1)..busy_to);
    describe("idle", &idle);
    describe("GEMMs", &busy);
    let tflops = 2.0 * (N as f64).powi(3) * gemms as f64 / seconds / 1e12;
    println!(
        "{gemms} GEMMs of {N}^3 f16 in {seconds:.2} s: {tflops:.0} TFLOP/s{}",
        busy.per_watt(tflops)
            .map_or(String::new(), |r| format!(", {:.2} TFLOP/s per W", r))
    );
    let busy_util = busy.mean_gpu_utilization_percent.unwrap_or(0.0);
    let idle_util = idle.mean_gpu_utilization_percent.unwrap_or(0.0);
    let ok = busy_util >= 80.0 && busy_util > idle_util;
    if ok {
        println!(
            "check passed: utilization rose from {idle_util:.0} % idle to {busy_util:.0} % under the GEMMs"
        );
    } else {
        println!("check FAILED: utilization {idle_util:.0} % idle, {busy_util:.0} % busy (need >= 80 % and a rise)");
    }
    Ok(ok)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("monitor: {e}");
            ExitCode::FAILURE
        }
    }
}
