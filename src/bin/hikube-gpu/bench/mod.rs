//! `hikube-gpu bench`: the built-in suite — GEMM (hikube-gpu and cuBLAS), copy bandwidth, launch
//! latency — each result with the GPU's power, clock and temperature while it ran; then the
//! report (`report.md`, `report.json`, `chart.svg`, each written atomically). With `--json`, the
//! report's JSON also goes to stdout and the lines printed as the run goes to stderr.
//!
//! Convolutions are measured by `cargo bench --bench conv` (the crate's kernels beside cuDNN),
//! not by this command; the report says so under "Not measured".

mod copy;
mod gemm;
mod launch;

use crate::info::cuda_version;
use crate::report::{
    rfc3339, BenchResult, DeviceInfo, ModelInfo, Params, Peak, Report, Skipped, SCHEMA, VERSION,
};
use crate::{chart, BenchArgs, CliResult, Suite};
use hikube_gpu::{
    driver_version, time_on_stream, Device, Error, MachineState, Monitor, Result, Stream,
};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, SystemTime};

/// NVML's sampling period while a benchmark runs.
const SAMPLE_PERIOD: Duration = Duration::from_millis(50);

/// What every benchmark needs: the device, a stream, the monitor if NVML is here, and how long
/// to measure.
pub struct Ctx<'a> {
    pub device: &'a Device,
    pub stream: &'a Stream,
    pub monitor: Option<&'a Monitor>,
    pub seconds: Duration,
    pub quick: bool,
    /// `--json`: the lines printed as the run goes go to stderr.
    json: bool,
    progress: &'a ProgressBar,
    results: Vec<BenchResult>,
    skipped: Vec<Skipped>,
}

/// The timing of one benchmark.
pub struct Timed {
    /// Median time of one operation, ms.
    pub median_ms: f64,
    /// Timed runs.
    pub runs: usize,
    /// Operations per timed run.
    pub ops_per_run: usize,
    /// The GPU meanwhile.
    pub state: Option<MachineState>,
}

impl Ctx<'_> {
    /// Runs `op` (given a running count, to rotate inputs) while sampling the GPU: warm-up, a
    /// calibration, then timed runs of enough operations each to last `min_run_ms` (so that
    /// event resolution and launch gaps do not count), for about `seconds` in all.
    pub fn time(&self, min_run_ms: f64, mut op: impl FnMut(usize) -> Result<()>) -> Result<Timed> {
        let mut count = 0usize;
        let mut next = |op: &mut dyn FnMut(usize) -> Result<()>| {
            count += 1;
            op(count)
        };
        let single = time_on_stream(self.stream, 3, 5, |_| next(&mut op))?.median_ms();
        let single = single.max(1e-4);
        let ops_per_run = ((min_run_ms / single).ceil() as usize).clamp(1, 100_000);
        let runs = ((self.seconds.as_secs_f64() * 1e3 / (single * ops_per_run as f64)).ceil()
            as usize)
            .clamp(5, 2000);
        let measure = || {
            time_on_stream(self.stream, 0, runs, |_| {
                for _ in 0..ops_per_run {
                    next(&mut op)?;
                }
                Ok(())
            })
        };
        let (timings, state) = self.with_state(measure)?;
        Ok(Timed {
            median_ms: timings.median_ms() / ops_per_run as f64,
            runs,
            ops_per_run,
            state,
        })
    }

    /// Runs `work` while sampling the GPU, if NVML is here. The state leaves out the first half
    /// of the run, up to a second: power readings average over about a second, and the first
    /// ones still hold what ran before.
    pub fn with_state<T>(
        &self,
        work: impl FnOnce() -> Result<T>,
    ) -> Result<(T, Option<MachineState>)> {
        match self.monitor {
            Some(m) => {
                let measured = m.measure(self.device, SAMPLE_PERIOD, work)?;
                let settle = (measured.wall / 2).min(Duration::from_secs(1));
                let state = measured.state_after(settle);
                Ok((measured.value, Some(state)))
            }
            None => Ok((work()?, None)),
        }
    }

    /// Prints a line of the run above the progress bar: on stdout, or stderr with `--json`.
    fn say(&self, line: &str) {
        let json = self.json;
        self.progress.suspend(|| {
            if json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        });
    }

    /// Says what runs now.
    pub fn running(&self, what: &str) {
        self.progress.set_message(what.to_string());
    }

    /// Records a result (completing its figures) and prints it.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        suite: Suite,
        name: String,
        implementation: &str,
        params: Params,
        (value, unit, higher_is_better): (f64, &str, bool),
        peak: Option<Peak>,
        timed: Timed,
    ) {
        let result = BenchResult {
            suite,
            name,
            implementation: implementation.to_string(),
            params,
            value,
            unit: unit.to_string(),
            higher_is_better,
            peak,
            percent_of_peak: None,
            median_ms: timed.median_ms,
            runs: timed.runs,
            ops_per_run: timed.ops_per_run,
            state: timed.state,
            per_watt: None,
        }
        .derive_figures();
        let line = summary_line(&result);
        self.say(&line);
        self.progress.inc(1);
        self.results.push(result);
    }

    /// Records a benchmark not run. Driver errors (a broken context) stop the suite instead.
    pub fn skip(&mut self, what: String, e: Error, results_lost: u64) -> Result<()> {
        if matches!(e, Error::Driver(_)) {
            return Err(e);
        }
        let reason = e.to_string();
        self.say(&format!("{what}: not measured: {reason}"));
        self.progress.inc(results_lost);
        self.skipped.push(Skipped { what, reason });
        Ok(())
    }
}

/// One line per result, as the run goes.
pub fn summary_line(r: &BenchResult) -> String {
    use crate::report::fmt_value;
    let mut line = format!(
        "{:<7} {:<28} {:<11} {:>9} {}",
        format!("{:?}", r.suite).to_lowercase(),
        r.name,
        r.implementation,
        fmt_value(r.value),
        r.unit
    );
    if let Some(p) = r.percent_of_peak {
        line += &format!(" ({p:.1} % of peak)");
    }
    if let Some(s) = &r.state {
        if let Some(w) = s.mean_power_w {
            line += &format!(", {w:.0} W");
        }
        if let Some(c) = s.mean_sm_clock_mhz {
            line += &format!(", {c:.0} MHz");
        }
        if s.throttled() {
            line += &format!(", clocks limited by {}", s.throttle_reasons);
        }
    }
    line
}

fn device_info(device: &Device, monitor: Option<&Monitor>) -> Result<DeviceInfo> {
    let p = device.properties();
    let model = device.model();
    let metrics = monitor.map(|m| m.device_metrics(device)).transpose()?;
    Ok(DeviceInfo {
        index: p.ordinal,
        name: p.name.clone(),
        uuid: p.uuid.clone(),
        pci_bus_id: p.pci_bus_id.clone(),
        compute_capability: p.compute_capability.to_string(),
        architecture: model.architecture.to_string(),
        sms: p.sm_count,
        memory_bytes: p.total_memory as u64,
        cuda_driver: cuda_version(driver_version()?),
        driver_version: monitor.map(Monitor::driver_version).transpose()?,
        power_limit_w: metrics.and_then(|m| m.power_limit_w),
        pcie: match monitor {
            Some(m) => m.pcie_link(&p.uuid)?,
            None => None,
        },
        model: ModelInfo::from(model),
    })
}

/// The command line, for the report.
fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut() {
        *first = "hikube-gpu".into();
    }
    args.join(" ")
}

pub fn run(args: &BenchArgs) -> CliResult {
    crate::visible_devices()?;
    let created = rfc3339(SystemTime::now(), false);
    let device = Device::open(args.device)?;
    // An unwritable --out fails now, not after the measurements.
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let stream = device.new_stream()?;
    let mut skipped = Vec::new();
    // NVML, and the device among its GPUs (a MIG instance, say, is not).
    let monitor = match Monitor::new().and_then(|m| m.device_metrics(&device).map(|_| m)) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("hikube-gpu: results will carry no power, clock or temperature: {e}");
            skipped.push(Skipped {
                what: "machine state (power, clocks, temperature)".into(),
                reason: e.to_string(),
            });
            None
        }
    };
    let suites: Vec<Suite> = if args.only.is_empty() {
        vec![Suite::Gemm, Suite::Copy, Suite::Launch]
    } else {
        args.only.clone()
    };
    let blas = if !suites.contains(&Suite::Gemm) {
        None
    } else if args.no_cublas {
        skipped.push(Skipped {
            what: "cuBLAS".into(),
            reason: "left out (--no-cublas)".into(),
        });
        None
    } else {
        match hikube_gpu::reference::load_cublas(&stream) {
            Ok(b) => Some(b),
            Err(reason) => {
                skipped.push(Skipped {
                    what: "cuBLAS".into(),
                    reason,
                });
                None
            }
        }
    };
    let device_info = device_info(&device, monitor.as_ref())?;
    let gemm_sizes = gemm::sizes(args.quick);
    let total: u64 = suites
        .iter()
        .map(|s| match s {
            Suite::Gemm => gemm::results(&gemm_sizes, blas.is_some()),
            Suite::Copy => copy::CASES.len() as u64,
            Suite::Launch => 2,
        })
        .sum();
    // On stderr, and only where it is a terminal (indicatif hides it elsewhere); it ticks on
    // its own so that the elapsed time moves during a benchmark of several seconds.
    let progress = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed}, ~{eta} left] {msg}")
    {
        progress.set_style(style);
    }
    progress.enable_steady_tick(Duration::from_millis(250));
    let start_line = format!(
        "{}: {} ({}), measuring {} s per benchmark",
        device_info.model.name,
        device_info.name,
        device_info.uuid,
        args.seconds.as_secs_f64()
    );
    if args.json {
        eprintln!("{start_line}");
    } else {
        println!("{start_line}");
    }
    let mut ctx = Ctx {
        device: &device,
        stream: &stream,
        monitor: monitor.as_ref(),
        seconds: args.seconds,
        quick: args.quick,
        json: args.json,
        progress: &progress,
        results: Vec::new(),
        skipped,
    };
    for suite in &suites {
        match suite {
            Suite::Gemm => gemm::run(&mut ctx, blas.as_ref(), &gemm_sizes)?,
            Suite::Copy => copy::run(&mut ctx, device_info.pcie.as_ref())?,
            Suite::Launch => launch::run(&mut ctx)?,
        }
    }
    progress.finish_and_clear();
    ctx.skipped.push(Skipped {
        what: "conv2d".into(),
        reason: CONV_NOT_HERE.into(),
    });
    let report = Report {
        schema: SCHEMA.into(),
        version: VERSION,
        created,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        command: command_line(),
        device: device_info,
        results: ctx.results,
        skipped: ctx.skipped,
    };
    write(&report, &args.out, args.json)
}

/// Why the report has no convolution.
const CONV_NOT_HERE: &str =
    "not in this command's suite: `cargo bench --bench conv` measures the convolutions, beside cuDNN";

/// Writes `report.json`, `chart.svg` and `report.md` into `dir`, each atomically (whole or not
/// at all). With `json`, prints the report's JSON on stdout and what was written on stderr.
pub fn write(report: &Report, dir: &std::path::Path, json: bool) -> CliResult {
    let io = |what: &str, e: std::io::Error| format!("cannot write {what}: {e}");
    std::fs::create_dir_all(dir).map_err(|e| io(&dir.display().to_string(), e))?;
    let report_json = report.to_json()? + "\n";
    let files = [
        ("report.json", report_json.clone()),
        ("chart.svg", chart::svg(report)?),
        ("report.md", report.to_markdown(Some("chart.svg"))),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        crate::files::write_atomic(&path, text.as_bytes())
            .map_err(|e| io(&path.display().to_string(), e))?;
    }
    let wrote = format!(
        "wrote {0}/report.md, {0}/report.json, {0}/chart.svg",
        dir.display()
    );
    if json {
        eprintln!("{wrote}");
        print!("{report_json}");
    } else {
        println!("{wrote}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_report;

    #[test]
    fn summary_lines_carry_the_state() {
        let r = sample_report();
        assert_eq!(
            summary_line(&r.results[1]),
            "gemm    f16 4096×4096×4096           cuBLAS          701.9 TFLOP/s (70.9 % of peak), \
             650 W, 1755 MHz, clocks limited by sw_power_cap"
        );
        assert_eq!(
            summary_line(&r.results[2]),
            "copy    d2d 256 MiB                  hikube-gpu     2870.5 GB/s (85.7 % of peak)"
        );
    }

    #[test]
    fn writes_the_three_files() {
        let dir = std::env::temp_dir().join(format!("hikube-gpu-report-{}", std::process::id()));
        write(&sample_report(), &dir, false).unwrap();
        let json = std::fs::read_to_string(dir.join("report.json")).unwrap();
        assert_eq!(Report::from_json(&json).unwrap(), sample_report());
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(md.contains("![% of peak per benchmark](chart.svg)"));
        let svg = std::fs::read_to_string(dir.join("chart.svg")).unwrap();
        roxmltree::Document::parse(&svg).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
