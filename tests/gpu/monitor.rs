//! Monitoring: NVML joined to CUDA devices by UUID and checked against `nvidia-smi`, the sampler
//! under a GEMM load, the Prometheus exporter scraped by an HTTP client (a fake source
//! everywhere, NVML on a GPU), and the `hikube-gpu` command line.

use crate::{any_test, ensure, fail, gpu, gpu_test};
use hikube_gpu::half::f16;
use hikube_gpu::monitor::exporter::{
    DeviceLabels, DeviceReading, Exporter, MetricsSource, NvmlSource, CONTENT_TYPE,
};
use hikube_gpu::monitor::{GpuMetrics, GpuProcess, ThrottleReasons};
use hikube_gpu::ops::matmul::{Epilogue, Matmul, MatmulDesc};
use hikube_gpu::{Device, DeviceBuffer, Error, Monitor, Result};
use libtest_mimic::{Completion, Failed, Trial};
use rand::Rng;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn trials() -> Vec<Trial> {
    vec![
        any_test(
            "monitor::exporter_serves_a_fake_source",
            exporter_serves_a_fake_source,
        ),
        any_test(
            "monitor::missing_gpu_is_a_typed_error",
            missing_gpu_is_a_typed_error,
        ),
        gpu_test("monitor::metrics_joined_by_uuid", metrics_joined_by_uuid),
        gpu_test("monitor::agrees_with_nvidia_smi", agrees_with_nvidia_smi),
        gpu_test(
            "monitor::sampler_sees_power_rise_under_gemm",
            sampler_sees_power_rise_under_gemm,
        ),
        gpu_test(
            "monitor::exporter_serves_nvml_metrics",
            exporter_serves_nvml_metrics,
        ),
        cli_test("monitor::cli", cli),
    ]
}

// ---- the exporter, over HTTP ----

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build(),
    )
}

/// `(status, content type, body)` of a GET.
fn get(url: &str) -> Result<(u16, String, String), Failed> {
    let mut response = agent().get(url).call().map_err(fail)?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response.body_mut().read_to_string().map_err(fail)?;
    Ok((status, content_type, body))
}

fn parse(text: &str) -> Result<prometheus_parse::Scrape, Failed> {
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).map_err(fail)?;
    // The parser skips lines it cannot read: every sample line must have become a sample.
    let lines = text.lines().filter(|l| !l.starts_with('#')).count();
    ensure!(
        scrape.samples.len() == lines,
        "{} samples parsed from {lines} sample lines:\n{text}",
        scrape.samples.len()
    );
    Ok(scrape)
}

/// The value of `metric` for the GPU labelled `index`.
fn value(scrape: &prometheus_parse::Scrape, metric: &str, index: &str) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && s.labels.get("gpu") == Some(index))
        .and_then(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

fn fake_reading(index: usize) -> DeviceReading {
    let uuid = format!("GPU-{index:08x}-4c24-8d11-962e-8a996b823d68");
    DeviceReading {
        labels: DeviceLabels {
            index,
            uuid: uuid.clone(),
            name: "NVIDIA H100 80GB HBM3".into(),
            pci_bus_id: format!("0000:{:02x}:00.0", 0x19 + index),
            model: "H100 SXM".into(),
            instance_type: None,
            hostname: "node-1".into(),
            driver_version: "580.95.05".into(),
        },
        metrics: GpuMetrics {
            uuid,
            name: "NVIDIA H100 80GB HBM3".into(),
            gpu_utilization_percent: Some(90 + index as u32),
            memory_utilization_percent: Some(40),
            memory_used_bytes: 3 << 30,
            memory_free_bytes: 76 << 30,
            memory_total_bytes: 85_520_809_984,
            temperature_c: Some(55),
            power_w: Some(400.5 + index as f64),
            power_limit_w: Some(700.0),
            sm_clock_mhz: Some(1980),
            memory_clock_mhz: Some(2619),
            throttle_reasons: Some(ThrottleReasons::SW_POWER_CAP),
            processes: vec![GpuProcess {
                pid: 1000 + index as u32,
                used_memory_bytes: Some(1 << 30),
            }],
        },
        pool: None,
    }
}

/// Two fake GPUs, or an error while `failing`.
struct Fake {
    scrapes: Arc<AtomicUsize>,
    failing: bool,
}

impl MetricsSource for Fake {
    fn collect(&self) -> Result<Vec<DeviceReading>> {
        self.scrapes.fetch_add(1, Ordering::SeqCst);
        if self.failing {
            return Err(Error::Nvml {
                call: "power usage of GPU-1".into(),
                reason: "GPU is lost".into(),
            });
        }
        Ok(vec![fake_reading(0), fake_reading(1)])
    }
}

fn exporter_serves_a_fake_source() -> Result<(), Failed> {
    let scrapes = Arc::new(AtomicUsize::new(0));
    let exporter = Exporter::start(
        "127.0.0.1:0",
        Fake {
            scrapes: scrapes.clone(),
            failing: false,
        },
    )
    .map_err(fail)?;
    let url = exporter.url();
    ensure!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"),
        "{url}"
    );
    let (status, content_type, body) = get(&url)?;
    ensure!(status == 200, "status {status}: {body}");
    ensure!(content_type == CONTENT_TYPE, "content type {content_type}");
    let scrape = parse(&body)?;
    for index in ["0", "1"] {
        ensure!(
            value(&scrape, "hikube_gpu_info", index) == Some(1.0),
            "no info for GPU {index}:\n{body}"
        );
    }
    ensure!(
        value(&scrape, "hikube_gpu_power_watts", "1") == Some(401.5),
        "power of GPU 1:\n{body}"
    );
    ensure!(
        value(&scrape, "hikube_gpu_utilization_ratio", "0") == Some(0.9),
        "utilization of GPU 0:\n{body}"
    );
    ensure!(
        value(&scrape, "hikube_gpu_memory_total_bytes", "0") == Some(85_520_809_984.0),
        "memory of GPU 0:\n{body}"
    );
    let info = scrape
        .samples
        .iter()
        .find(|s| s.metric == "hikube_gpu_info" && s.labels.get("gpu") == Some("1"))
        .ok_or("no info")?;
    ensure!(
        info.labels.get("UUID") == Some("GPU-00000001-4c24-8d11-962e-8a996b823d68")
            && info.labels.get("model") == Some("H100 SXM")
            && info.labels.get("modelName") == Some("NVIDIA H100 80GB HBM3"),
        "labels {:?}",
        info.labels
    );
    // Scrapes are answered from the last sample: they do not read the source (sampled every
    // 2 s by default).
    let before = scrapes.load(Ordering::SeqCst);
    for _ in 0..5 {
        get(&url)?;
    }
    let after = scrapes.load(Ordering::SeqCst);
    ensure!(
        after <= before + 1,
        "5 scrapes read the source {} times",
        after - before
    );
    let base = url.trim_end_matches("/metrics");
    let (status, _, _) = get(&format!("{base}/nothing-here"))?;
    ensure!(status == 404, "unknown path: {status}");
    let (status, _, body) = get(&format!("{base}/"))?;
    ensure!(
        status == 200 && body.contains("/metrics"),
        "{status} {body}"
    );
    let addr = exporter.local_addr();
    exporter.stop();
    ensure!(
        agent().get(&url).call().is_err(),
        "still serving on {addr} after stop"
    );

    // A failing source answers 500 with the error.
    let exporter = Exporter::start(
        "127.0.0.1:0",
        Fake {
            scrapes,
            failing: true,
        },
    )
    .map_err(fail)?;
    let (status, _, body) = get(&exporter.url())?;
    ensure!(
        status == 500 && body.contains("GPU is lost") && body.lines().count() == 1,
        "{status}: {body}"
    );
    Ok(())
}

fn exporter_serves_nvml_metrics(device: &Device) -> Result<(), Failed> {
    let monitor = Monitor::new().map_err(fail)?;
    let source = NvmlSource::new(monitor.clone()).map_err(fail)?;
    let p = device.properties();
    let labels = source
        .devices()
        .iter()
        .find(|d| d.index == device.ordinal())
        .ok_or("the source lacks the device")?
        .clone();
    ensure!(labels.uuid == p.uuid, "{} vs {}", labels.uuid, p.uuid);
    ensure!(labels.model == device.model().name, "{labels:?}");
    let exporter = Exporter::start("127.0.0.1:0", source).map_err(fail)?;
    let (status, content_type, body) = get(&exporter.url())?;
    ensure!(status == 200, "status {status}: {body}");
    ensure!(content_type == CONTENT_TYPE, "{content_type}");
    let scrape = parse(&body)?;
    let index = device.ordinal().to_string();
    let sample = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "hikube_gpu_memory_total_bytes" && s.labels.get("gpu") == Some(&index)
        })
        .ok_or_else(|| format!("no memory total for GPU {index}:\n{body}"))?;
    ensure!(
        sample.labels.get("UUID") == Some(&p.uuid),
        "UUID label {:?}, device {}",
        sample.labels.get("UUID"),
        p.uuid
    );
    let direct = monitor.device_metrics(device).map_err(fail)?;
    ensure!(
        value(&scrape, "hikube_gpu_memory_total_bytes", &index)
            == Some(direct.memory_total_bytes as f64),
        "memory total differs from NVML's {}",
        direct.memory_total_bytes
    );
    for metric in [
        "hikube_gpu_info",
        "hikube_gpu_power_watts",
        "hikube_gpu_temperature_celsius",
        "hikube_gpu_sm_clock_hertz",
        "hikube_gpu_utilization_ratio",
    ] {
        ensure!(
            value(&scrape, metric, &index).is_some(),
            "{metric} missing:\n{body}"
        );
    }
    eprintln!(
        "scraped {} samples, {} W",
        scrape.samples.len(),
        value(&scrape, "hikube_gpu_power_watts", &index).unwrap_or(f64::NAN)
    );
    Ok(())
}

// ---- NVML against the device and nvidia-smi ----

fn missing_gpu_is_a_typed_error() -> Result<(), Failed> {
    let count = match Device::count() {
        Ok(n) => n,
        Err(e) => {
            // No driver: describing a device and monitoring fail with typed errors.
            ensure!(e.is_no_gpu(), "{e:?}");
            let d = Device::describe(0).map(|_| ()).unwrap_err();
            ensure!(d.is_no_gpu(), "describe without a driver: {d:?}");
            if let Err(e) = Monitor::new() {
                ensure!(matches!(e, Error::NoNvml { .. }), "{e:?}");
            }
            return Ok(());
        }
    };
    match Device::describe(count) {
        Err(Error::DeviceIndexOutOfRange { index, count: c }) if index == count && c == count => {}
        Err(Error::NoDevice) if count == 0 => {}
        other => return Err(format!("describe({count}) of {count} devices: {other:?}").into()),
    }
    Ok(())
}

fn metrics_joined_by_uuid(device: &Device) -> Result<(), Failed> {
    // Described without a context, the device is the one opened.
    let (props, model) = Device::describe(device.ordinal()).map_err(fail)?;
    ensure!(props == *device.properties(), "{props:?}");
    ensure!(model == *device.model(), "{model:?}");
    let monitor = Monitor::new().map_err(fail)?;
    let m = monitor.device_metrics(device).map_err(fail)?;
    let p = device.properties();
    ensure!(m.uuid == p.uuid, "NVML {} vs CUDA {}", m.uuid, p.uuid);
    ensure!(
        m.memory_used_bytes > 0
            && m.memory_used_bytes + m.memory_free_bytes <= m.memory_total_bytes,
        "{m:?}"
    );
    // CUDA's total leaves out what the driver reserves; NVML's counts it (H100: 79.2 vs 79.6 GiB).
    let cuda_total = p.total_memory as f64;
    let nvml_total = m.memory_total_bytes as f64;
    ensure!(
        (nvml_total / cuda_total - 1.0).abs() < 0.05,
        "CUDA total {cuda_total}, NVML total {nvml_total}"
    );
    ensure!(
        m.temperature_c.is_some_and(|t| (5..110).contains(&t)),
        "{m:?}"
    );
    ensure!(m.sm_clock_mhz.is_some_and(|c| c > 0), "{m:?}");
    ensure!(m.power_w.is_some_and(|w| w > 0.0), "{m:?}");
    // This process has a context on the GPU; in a container NVML may list host PIDs.
    let me = std::process::id();
    eprintln!(
        "{}: {:?} W, {:?} °C, {:?} MHz, limited by {:?}; processes {:?} (this one: {me})",
        m.name, m.power_w, m.temperature_c, m.sm_clock_mhz, m.throttle_reasons, m.processes
    );
    let link = monitor.pcie_link(&p.uuid).map_err(fail)?;
    eprintln!(
        "PCIe: {link:?}, peak {:?} GB/s",
        link.and_then(|l| l.peak_gbs())
    );
    // Another spelling of the UUID finds the same GPU; a made-up one is a typed error.
    let by_upper = monitor
        .metrics_by_uuid(&p.uuid.trim_start_matches("GPU-").to_uppercase())
        .map_err(fail)?;
    ensure!(by_upper.uuid == p.uuid, "{}", by_upper.uuid);
    match monitor.metrics_by_uuid("GPU-00000000-0000-0000-0000-000000000000") {
        Err(Error::NvmlDeviceNotFound { nvml_count, .. }) => {
            ensure!(nvml_count >= 1, "count {nvml_count}")
        }
        other => return Err(format!("made-up UUID: {other:?}").into()),
    }
    Ok(())
}

/// `(memory.total MiB, power.draw W)` of the GPU `uuid`, from nvidia-smi.
fn nvidia_smi(uuid: &str) -> Result<(f64, f64), Failed> {
    let args = [
        "--query-gpu=uuid,memory.total,power.draw",
        "--format=csv,noheader,nounits",
    ];
    let output = [
        "nvidia-smi",
        "/usr/local/nvidia/bin/nvidia-smi",
        "/usr/bin/nvidia-smi",
    ]
    .iter()
    .find_map(|cmd| Command::new(cmd).args(args).output().ok())
    .ok_or(
        "nvidia-smi was not found (on PATH, /usr/local/nvidia/bin or /usr/bin): this check \
             compares NVML's readings with it; install the driver's utilities",
    )?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "nvidia-smi failed ({}): {text}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(uuid))
        .ok_or_else(|| format!("nvidia-smi does not list {uuid}:\n{text}"))?;
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    ensure!(fields.len() == 3, "unexpected nvidia-smi line: {line}");
    let number = |s: &str, what: &str| -> Result<f64, Failed> {
        s.parse()
            .map_err(|_| format!("nvidia-smi's {what} is `{s}` in `{line}`").into())
    };
    Ok((
        number(fields[1], "memory.total")?,
        number(fields[2], "power.draw")?,
    ))
}

fn agrees_with_nvidia_smi(device: &Device) -> Result<(), Failed> {
    let monitor = Monitor::new().map_err(fail)?;
    let uuid = &device.properties().uuid;
    let before = monitor.device_metrics(device).map_err(fail)?;
    let (smi_mib, smi_w) = nvidia_smi(uuid)?;
    let after = monitor.device_metrics(device).map_err(fail)?;
    ensure!(before.uuid == *uuid, "{} vs {uuid}", before.uuid);
    let ours_mib = before.memory_total_bytes as f64 / (1u64 << 20) as f64;
    ensure!(
        (ours_mib / smi_mib - 1.0).abs() <= 0.01,
        "memory total: NVML {ours_mib:.0} MiB, nvidia-smi {smi_mib} MiB"
    );
    let ours_w = match (before.power_w, after.power_w) {
        (Some(a), Some(b)) => (a + b) / 2.0,
        _ => return Err("NVML gives no power reading, nvidia-smi does".into()),
    };
    eprintln!("memory {ours_mib:.0} vs {smi_mib} MiB; power {ours_w:.1} vs {smi_w} W");
    ensure!(
        (ours_w - smi_w).abs() <= 0.10 * smi_w,
        "power: NVML {ours_w:.1} W (readings {:?} and {:?}), nvidia-smi {smi_w} W",
        before.power_w,
        after.power_w
    );
    Ok(())
}

fn random_f16(stream: &hikube_gpu::Stream, len: usize) -> Result<DeviceBuffer<f16>, Failed> {
    // One random block, repeated: random enough to toggle the multipliers as real data does.
    let mut rng = rand::rng();
    let block: Vec<f16> = (0..1 << 20)
        .map(|_| f16::from_f32(rng.random_range(-1.0f32..1.0)))
        .collect();
    let mut buf = DeviceBuffer::<f16>::alloc(stream, len).map_err(fail)?;
    for start in (0..len).step_by(block.len()) {
        let end = (start + block.len()).min(len);
        buf.slice_mut(start..end)
            .map_err(fail)?
            .copy_from_host(stream, &block[..end - start])
            .map_err(fail)?;
    }
    Ok(buf)
}

fn sampler_sees_power_rise_under_gemm(device: &Device) -> Result<(), Failed> {
    const PERIOD: Duration = Duration::from_millis(50);
    let monitor = Monitor::new().map_err(fail)?;
    let stream = device.new_stream().map_err(fail)?;
    let s = 8192;
    let a = random_f16(&stream, s * s)?;
    let b = random_f16(&stream, s * s)?;
    let mut d = DeviceBuffer::<f16>::alloc(&stream, s * s).map_err(fail)?;
    let mm = Matmul::<f16, f16>::new(&stream, MatmulDesc::new(s, s, s)).map_err(fail)?;
    mm.launch(&stream, &a, &b, &mut d, Epilogue::new())
        .map_err(fail)?;
    stream.synchronize().map_err(fail)?;
    // Power readings average over about a second: let the earlier tests' load fade.
    std::thread::sleep(Duration::from_millis(1500));

    let sampler = monitor.sampler(device, PERIOD).map_err(fail)?;
    std::thread::sleep(Duration::from_millis(1500));
    let idle_end = sampler.elapsed();
    let load_start = sampler.elapsed();
    let t = Instant::now();
    let mut launches = 0;
    while t.elapsed() < Duration::from_secs(3) {
        for _ in 0..4 {
            mm.launch(&stream, &a, &b, &mut d, Epilogue::new())
                .map_err(fail)?;
        }
        stream.synchronize().map_err(fail)?;
        launches += 4;
    }
    let load_end = sampler.elapsed();
    let series = sampler.stop().map_err(fail)?;

    let idle = series.window(Duration::ZERO..idle_end);
    // The first second of load still averages in idle power.
    let busy = series.window(load_start + Duration::from_secs(1)..load_end);
    let tflops = 2.0 * (s as f64).powi(3) * launches as f64 / (t.elapsed().as_secs_f64() * 1e12);
    eprintln!(
        "{} readings; idle {:?} W, {:?} MHz; busy ({launches} GEMMs, {tflops:.0} TFLOP/s) {:?} W, \
         {:?} MHz, {:?} °C, {:?} % utilization, limited by {}",
        series.samples.len(),
        idle.mean_power_w,
        idle.mean_sm_clock_mhz,
        busy.mean_power_w,
        busy.mean_sm_clock_mhz,
        busy.max_temperature_c,
        busy.mean_gpu_utilization_percent,
        busy.throttle_reasons
    );
    // 4.5 s at 50 ms: 90 readings; allow for slow NVML calls.
    let expected = load_end.as_secs_f64() / PERIOD.as_secs_f64();
    ensure!(
        series.samples.len() as f64 >= 0.7 * expected,
        "{} readings in {load_end:?} at {PERIOD:?}",
        series.samples.len()
    );
    ensure!(
        idle.samples >= 15 && busy.samples >= 20,
        "idle {} and busy {} readings",
        idle.samples,
        busy.samples
    );
    let (idle_w, busy_w) = match (idle.mean_power_w, busy.mean_power_w) {
        (Some(i), Some(b)) => (i, b),
        _ => return Err("no power readings".into()),
    };
    ensure!(
        busy_w > 1.5 * idle_w,
        "power under load {busy_w:.0} W is not well above idle {idle_w:.0} W"
    );
    ensure!(
        busy.mean_gpu_utilization_percent.is_some_and(|u| u > 50.0),
        "utilization under load {:?}",
        busy.mean_gpu_utilization_percent
    );
    Ok(())
}

// ---- the command line ----

/// The `hikube-gpu` binary: `HIKUBE_GPU_BIN`, the one cargo built for this test, or one beside
/// the test binary's directory (`target/<profile>/hikube-gpu`, or `bin/hikube-gpu` in a bundle
/// whose tests are in `tests/`).
fn cli_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HIKUBE_GPU_BIN") {
        return Some(path.into());
    }
    let built = option_env!("CARGO_BIN_EXE_hikube-gpu").map(PathBuf::from);
    let up = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()));
    let beside = up.as_ref().map(|dir| dir.join("hikube-gpu"));
    let bundled = up.as_ref().map(|dir| dir.join("bin").join("hikube-gpu"));
    [built, beside, bundled]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
}

/// A test of the command line, ignored (with the reason) where the binary is not at hand.
fn cli_test(name: &str, test: fn(&std::path::Path) -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || match cli_binary() {
        Some(bin) => test(&bin).map(|()| Completion::Completed),
        None => Ok(Completion::ignored_with(
            "the hikube-gpu binary is not here: build it, or set HIKUBE_GPU_BIN",
        )),
    })
}

fn run_cli(bin: &std::path::Path, args: &[&str]) -> Result<(bool, String, String), Failed> {
    let out = Command::new(bin).args(args).output().map_err(fail)?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn cli(bin: &std::path::Path) -> Result<(), Failed> {
    let (ok, help, _) = run_cli(bin, &["--help"])?;
    ensure!(
        ok && help.contains("bench") && help.contains("export"),
        "{help}"
    );
    let device = match gpu() {
        Ok(device) => device,
        Err(_) => {
            // No GPU or driver: every subcommand says so in one line and fails.
            for args in [
                &["info"][..],
                &["info", "--json"],
                &["monitor", "--count", "1"],
                &["bench", "--quick", "--out", "/nonexistent/never-written"],
                &[
                    "bench",
                    "--quick",
                    "--json",
                    "--out",
                    "/nonexistent/never-written",
                ],
                &["export", "--prometheus", "--port", "0"],
            ] {
                let (ok, stdout, stderr) = run_cli(bin, args)?;
                ensure!(!ok, "{args:?} succeeded without a GPU: {stdout}");
                ensure!(
                    stderr.lines().count() == 1 && stderr.starts_with("hikube-gpu: "),
                    "{args:?} should print one line, printed:\n{stderr}"
                );
                ensure!(
                    !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
                    "{args:?} panicked: {stderr}"
                );
                if args == ["info", "--json"] {
                    // Still one JSON object: no devices, and why.
                    let v: serde_json::Value = serde_json::from_str(&stdout).map_err(fail)?;
                    ensure!(
                        v["schema"] == "hikube-gpu/info"
                            && v["devices"].as_array().is_some_and(Vec::is_empty)
                            && v["error"].as_str().is_some_and(|e| stderr.contains(e)),
                        "info --json without a GPU: {stdout}"
                    );
                } else if args.contains(&"bench") {
                    ensure!(stdout.is_empty(), "{args:?} printed {stdout}");
                }
            }
            return Ok(());
        }
    };
    let uuid = &device.properties().uuid;
    let (ok, stdout, stderr) = run_cli(bin, &["info"])?;
    ensure!(ok, "info failed: {stderr}");
    ensure!(
        stdout.contains(uuid) && stdout.contains(&*device.model().name),
        "info:\n{stdout}"
    );
    let (ok, stdout, stderr) = run_cli(bin, &["info", "--json"])?;
    ensure!(ok, "info --json failed: {stderr}");
    let info: serde_json::Value = serde_json::from_str(&stdout).map_err(fail)?;
    let listed = info["devices"].as_array().ok_or("no devices array")?;
    ensure!(
        info["error"].is_null()
            && listed.len() == Device::count().map_err(fail)?
            && listed.iter().any(|d| d["uuid"] == uuid.as_str()
                && d["model"]["name"].as_str() == Some(&*device.model().name)),
        "info --json:\n{stdout}"
    );
    let (ok, stdout, stderr) = run_cli(
        bin,
        &["monitor", "--count", "2", "--interval", "0.2", "--json"],
    )?;
    ensure!(ok, "monitor failed: {stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()
        .map_err(fail)?;
    let count = Device::count().map_err(fail)?;
    ensure!(
        lines.len() == 2 * count,
        "{} lines for {count} GPU(s)",
        lines.len()
    );
    ensure!(
        lines
            .iter()
            .any(|l| l["uuid"] == uuid.as_str() && l["index"] == device.ordinal()),
        "{stdout}"
    );
    let out = std::env::temp_dir().join(format!("hikube-gpu-cli-{}", std::process::id()));
    let out_str = out.to_string_lossy().into_owned();
    let index = device.ordinal().to_string();
    let bench = |what: &[&str]| {
        let tail = ["--device", &index, "--out", &out_str, "--json"];
        run_cli(bin, &[&["bench", "--quick"], what, &tail].concat())
    };
    let (ok, stdout, stderr) = bench(&["--only", "copy,launch", "--seconds", "0.3"])?;
    ensure!(ok, "bench failed:\n{stdout}\n{stderr}");
    let json = std::fs::read_to_string(out.join("report.json")).map_err(fail)?;
    ensure!(
        stdout == json,
        "bench --json prints report.json on stdout, and only it:\n{stdout}"
    );
    let report: serde_json::Value = serde_json::from_str(&json).map_err(fail)?;
    ensure!(
        report["schema"] == "hikube-gpu/bench-report" && report["version"] == 1,
        "{json}"
    );
    ensure!(report["device"]["uuid"] == uuid.as_str(), "{json}");
    let results = report["results"].as_array().ok_or("no results")?;
    ensure!(
        results.len() == 7,
        "5 copies and 2 launch figures expected:\n{json}"
    );
    ensure!(
        results
            .iter()
            .all(|r| r["state"]["mean_power_w"].as_f64().is_some_and(|w| w > 0.0)),
        "every result carries the power:\n{json}"
    );
    let d2d = results
        .iter()
        .find(|r| r["params"]["direction"] == "d2d")
        .ok_or("no d2d")?;
    ensure!(
        d2d["percent_of_peak"]
            .as_f64()
            .is_some_and(|p| p > 10.0 && p < 110.0),
        "d2d at {} % of peak",
        d2d["percent_of_peak"]
    );
    let md = std::fs::read_to_string(out.join("report.md")).map_err(fail)?;
    let svg = std::fs::read_to_string(out.join("chart.svg")).map_err(fail)?;
    ensure!(
        md.contains("## Copy bandwidth") && svg.starts_with("<svg"),
        "{md}"
    );
    // The GEMM suite, quick, without cuBLAS: f16, bf16 and e4m3 at two sizes (e4m3 skipped, with
    // the plan's reason, on a GPU without FP8 tensor cores).
    let gemm = ["--only", "gemm", "--no-cublas", "--seconds", "0.2"];
    let (ok, stdout, stderr) = bench(&gemm)?;
    ensure!(ok, "bench --only gemm failed:\n{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).map_err(fail)?;
    let results = report["results"].as_array().ok_or("no results")?;
    let e4m3 = results
        .iter()
        .filter(|r| r["params"]["dtype"] == "e4m3")
        .count();
    let fp8 = device.compute_capability() >= hikube_gpu::ComputeCapability::new(8, 9);
    ensure!(
        results.len() == 4 + e4m3 && e4m3 == if fp8 { 2 } else { 0 },
        "{} results, {e4m3} of them e4m3:\n{stdout}",
        results.len()
    );
    std::fs::remove_dir_all(&out).map_err(fail)?;
    Ok(())
}
