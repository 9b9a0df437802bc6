//! `hikube-gpu monitor`: the GPUs' metrics every interval, as a table or as JSON lines.

use crate::report::rfc3339;
use crate::{visible_devices, CliResult, MonitorArgs};
use hikube_gpu::monitor::exporter::{DeviceReading, MetricsSource, NvmlSource};
use hikube_gpu::{GpuMetrics, Monitor};
use serde::Serialize;
use std::io::Write;
use std::time::{Instant, SystemTime};

const GIB: f64 = (1u64 << 30) as f64;
/// Table rows between two headers.
const HEADER_EVERY: usize = 20;

/// One line of `--json`: when, which GPU, and its metrics.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    index: usize,
    model: &'a str,
    #[serde(flatten)]
    metrics: &'a GpuMetrics,
}

fn opt<T: std::fmt::Display>(v: Option<T>, suffix: &str) -> String {
    v.map_or("-".to_string(), |v| format!("{v}{suffix}"))
}

/// The table's header.
pub fn header() -> String {
    format!(
        "{:<8} {:>3} {:<12} {:>5} {:>5} {:>13} {:>5} {:>9} {:>6} {:>6} {:>5}  {}",
        "time",
        "gpu",
        "model",
        "util",
        "mem",
        "used/total G",
        "temp",
        "power W",
        "SM MHz",
        "memMHz",
        "procs",
        "clocks limited by"
    )
}

/// One table row.
pub fn row(time: &str, r: &DeviceReading) -> String {
    let m = &r.metrics;
    let model: String = r.labels.model.chars().take(12).collect();
    let power = match (m.power_w, m.power_limit_w) {
        (Some(p), Some(l)) => format!("{p:.0}/{l:.0}"),
        (Some(p), None) => format!("{p:.0}"),
        _ => "-".into(),
    };
    format!(
        "{:<8} {:>3} {:<12} {:>5} {:>5} {:>13} {:>5} {:>9} {:>6} {:>6} {:>5}  {}",
        time,
        r.labels.index,
        model,
        opt(m.gpu_utilization_percent, "%"),
        opt(m.memory_utilization_percent, "%"),
        format!(
            "{:.1}/{:.1}",
            m.memory_used_bytes as f64 / GIB,
            m.memory_total_bytes as f64 / GIB
        ),
        opt(m.temperature_c, "C"),
        power,
        opt(m.sm_clock_mhz, ""),
        opt(m.memory_clock_mhz, ""),
        m.processes.len(),
        m.throttle_reasons
            .map_or("-".to_string(), |r| r.to_string()),
    )
}

/// One `--json` line.
pub fn json_line(time: &str, r: &DeviceReading) -> serde_json::Result<String> {
    serde_json::to_string(&JsonLine {
        time: time.to_string(),
        index: r.labels.index,
        model: &r.labels.model,
        metrics: &r.metrics,
    })
}

pub fn run(args: &MonitorArgs) -> CliResult {
    let count = visible_devices()?;
    if let Some(&bad) = args.devices.iter().find(|&&d| d >= count) {
        return Err(hikube_gpu::Error::DeviceIndexOutOfRange { index: bad, count }.into());
    }
    let source = NvmlSource::new(Monitor::new()?)?;
    let start = Instant::now();
    let mut stdout = std::io::stdout().lock();
    let mut rows = 0usize;
    let mut reading = 0u64;
    loop {
        let now = rfc3339(SystemTime::now(), true);
        let readings = source.collect()?;
        for r in readings
            .iter()
            .filter(|r| args.devices.is_empty() || args.devices.contains(&r.labels.index))
        {
            if args.json {
                writeln!(stdout, "{}", json_line(&now, r)?)?;
            } else {
                if rows.is_multiple_of(HEADER_EVERY) {
                    writeln!(stdout, "{}", header())?;
                }
                writeln!(stdout, "{}", row(&now[11..19], r))?;
                rows += 1;
            }
        }
        stdout.flush()?;
        reading += 1;
        if args.count.is_some_and(|n| reading >= n) {
            return Ok(());
        }
        // Keep to the schedule: a slow reading does not shift the next ones.
        let next = args.interval.mul_f64(reading as f64);
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hikube_gpu::monitor::exporter::DeviceLabels;
    use hikube_gpu::monitor::{GpuProcess, ThrottleReasons};

    fn reading() -> DeviceReading {
        DeviceReading {
            labels: DeviceLabels {
                index: 0,
                uuid: "GPU-03da17df-4c24-8d11-962e-8a996b823d68".into(),
                name: "NVIDIA H100 80GB HBM3".into(),
                model: "H100 SXM".into(),
                ..DeviceLabels::default()
            },
            metrics: GpuMetrics {
                uuid: "GPU-03da17df-4c24-8d11-962e-8a996b823d68".into(),
                name: "NVIDIA H100 80GB HBM3".into(),
                gpu_utilization_percent: Some(97),
                memory_utilization_percent: None,
                memory_used_bytes: 12 << 30,
                memory_free_bytes: 67 << 30,
                memory_total_bytes: 80 << 30,
                temperature_c: Some(61),
                power_w: Some(512.4),
                power_limit_w: Some(700.0),
                sm_clock_mhz: Some(1980),
                memory_clock_mhz: Some(2619),
                throttle_reasons: Some(ThrottleReasons::SW_POWER_CAP),
                processes: vec![GpuProcess {
                    pid: 7,
                    used_memory_bytes: Some(1 << 30),
                }],
            },
            pool: None,
        }
    }

    #[test]
    fn table_rows_line_up_with_the_header() {
        let row = row("08:40:01", &reading());
        assert_eq!(
            row,
            "08:40:01   0 H100 SXM       97%     -     12.0/80.0   61C   512/700   1980   2619     1  sw_power_cap"
        );
        let h = header();
        // Right-aligned columns end where their header ends.
        for name in ["util", "temp", "power W", "SM MHz", "procs"] {
            let end = h.find(name).unwrap() + name.len();
            assert_ne!(row.as_bytes()[end - 1], b' ', "{name}");
            assert_eq!(row.as_bytes()[end], b' ', "{name}");
        }
    }

    #[test]
    fn json_lines_are_flat_objects() {
        let line = json_line("2026-11-25T08:40:01.250Z", &reading()).unwrap();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2026-11-25T08:40:01.250Z");
        assert_eq!(v["index"], 0);
        assert_eq!(v["model"], "H100 SXM");
        assert_eq!(v["uuid"], "GPU-03da17df-4c24-8d11-962e-8a996b823d68");
        assert_eq!(v["power_w"], 512.4);
        assert_eq!(v["memory_utilization_percent"], serde_json::Value::Null);
        assert_eq!(v["throttle_reasons"], serde_json::json!(["sw_power_cap"]));
        assert_eq!(v["processes"][0]["pid"], 7);
    }
}
