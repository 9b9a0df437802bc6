//! The benchmark report: `report.json` in a versioned schema, `report.md` for people, and the
//! chart (see `chart.rs`).
//!
//! # `report.json`: schema `hikube-gpu/bench-report`, version 1
//!
//! One object:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema` | string | always `hikube-gpu/bench-report` |
//! | `version` | integer | 1; bumped when a field is removed or changes meaning (new optional fields keep it) |
//! | `created` | string | RFC 3339 UTC time the run started |
//! | `tool_version` | string | the `hikube-gpu` crate version |
//! | `command` | string | the command line |
//! | `device` | object | [`DeviceInfo`]: index, name, uuid, pci_bus_id, compute_capability, architecture, sms, memory_bytes, cuda_driver, driver_version?, power_limit_w?, pcie?, model |
//! | `device.model` | object | [`ModelInfo`]: name, provenance (`catalog`/`derived`), instance_type?, fp16_tflops, bf16_tflops?, fp32_tflops, fp16_acc16_tflops?, fp8_tflops?, memory_bandwidth_gbs |
//! | `results[]` | array | [`BenchResult`], in the order run |
//! | `results[].suite` | string | `gemm`, `copy` or `launch` |
//! | `results[].name` | string | what was measured, e.g. `f16 4096×4096×4096` (unique with `implementation`) |
//! | `results[].implementation` | string | `hikube-gpu` or `cuBLAS` |
//! | `results[].params` | object | by `kind`: `gemm` {dtype, m, n, k}; `copy` {direction, memory, bytes}; `launch` {clock, launches_per_run, elements} |
//! | `results[].value`, `unit` | number, string | the figure: `TFLOP/s`, `GB/s` (10⁹ bytes/s) or `µs` |
//! | `results[].higher_is_better` | bool | false for latencies |
//! | `results[].peak` | object? | {value, what}: the model's peak for this figure, same unit |
//! | `results[].percent_of_peak` | number? | 100 × value / peak |
//! | `results[].median_ms` | number | median time of one operation, ms (CUDA events) |
//! | `results[].runs`, `ops_per_run` | integers | timed runs, and operations in each |
//! | `results[].state` | object? | the GPU while it ran (NVML every 50 ms, less the first half of the measurement, at most 1 s; absent without NVML): samples, mean_power_w?, max_power_w?, mean_sm_clock_mhz?, min_sm_clock_mhz?, max_temperature_c?, mean_gpu_utilization_percent?, throttle_reasons (list of names) |
//! | `results[].per_watt` | number? | value / mean power (e.g. TFLOP/s per W) |
//! | `skipped[]` | array | {what, reason}: benchmarks not run, and why |
//!
//! `?` marks a field that may be `null`.

use crate::Suite;
use hikube_gpu::monitor::{MachineState, PcieLink};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// The `schema` field of every report.
pub const SCHEMA: &str = "hikube-gpu/bench-report";
/// The schema version this tool writes and reads.
pub const VERSION: u32 = 1;

/// A benchmark run on one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// [`VERSION`].
    pub version: u32,
    /// RFC 3339 UTC.
    pub created: String,
    /// The crate version.
    pub tool_version: String,
    /// The command line.
    pub command: String,
    /// The device measured.
    pub device: DeviceInfo,
    /// The results, in the order run.
    pub results: Vec<BenchResult>,
    /// Benchmarks not run, and why.
    pub skipped: Vec<Skipped>,
}

/// The device a report measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// CUDA index.
    pub index: usize,
    /// The driver's device name.
    pub name: String,
    /// `GPU-…`.
    pub uuid: String,
    /// PCI address.
    pub pci_bus_id: String,
    /// E.g. `9.0`.
    pub compute_capability: String,
    /// E.g. `Hopper`.
    pub architecture: String,
    /// Streaming multiprocessors.
    pub sms: u32,
    /// Device memory, bytes.
    pub memory_bytes: u64,
    /// The CUDA version of the driver, e.g. `13.0`.
    pub cuda_driver: String,
    /// The driver version (NVML), e.g. `580.95.05`.
    pub driver_version: Option<String>,
    /// The enforced power limit, W (NVML).
    pub power_limit_w: Option<f64>,
    /// The PCIe link (NVML).
    pub pcie: Option<PcieLink>,
    /// The model and its peaks.
    pub model: ModelInfo,
}

/// A GPU model's figures, as the catalog gives them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// E.g. `H100 SXM`.
    pub name: String,
    /// `catalog` (published figures) or `derived` (estimated from the properties).
    pub provenance: String,
    /// The Hikube instance type, if any.
    pub instance_type: Option<String>,
    /// Dense FP16 tensor TFLOP/s, FP32 accumulate.
    pub fp16_tflops: f64,
    /// Dense BF16 tensor TFLOP/s, FP32 accumulate.
    pub bf16_tflops: Option<f64>,
    /// FP32 TFLOP/s.
    pub fp32_tflops: f64,
    /// Dense FP16 tensor TFLOP/s, FP16 accumulate (absent in reports written before it).
    #[serde(default)]
    pub fp16_acc16_tflops: Option<f64>,
    /// Dense FP8 tensor TFLOP/s, FP32 accumulate, if the GPU has FP8.
    #[serde(default)]
    pub fp8_tflops: Option<f64>,
    /// Memory bandwidth, GB/s.
    pub memory_bandwidth_gbs: f64,
}

impl From<&hikube_gpu::GpuModel> for ModelInfo {
    fn from(model: &hikube_gpu::GpuModel) -> Self {
        ModelInfo {
            name: model.name.to_string(),
            provenance: match model.provenance {
                hikube_gpu::Provenance::Catalog => "catalog",
                hikube_gpu::Provenance::Derived => "derived",
            }
            .into(),
            instance_type: model.instance_type.map(String::from),
            fp16_tflops: model.fp16_tflops,
            bf16_tflops: model.bf16_tflops,
            fp32_tflops: model.fp32_tflops,
            fp16_acc16_tflops: Some(model.fp16_acc16_tflops),
            fp8_tflops: model.fp8_tflops,
            memory_bandwidth_gbs: model.memory_bandwidth_gbs,
        }
    }
}

/// What a result measured, by kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Params {
    /// D (M×N) = A (M×K) · B (K×N), row-major, output in the input type.
    Gemm {
        /// `f16` or `bf16`.
        dtype: String,
        /// Rows of A and D.
        m: usize,
        /// Columns of B and D.
        n: usize,
        /// The inner dimension.
        k: usize,
    },
    /// One copy.
    Copy {
        /// `h2d`, `d2h` or `d2d`.
        direction: String,
        /// Host memory: `pinned` or `pageable`; `device` for d2d.
        memory: String,
        /// Bytes copied (d2d counts them read and written: 2 × the buffer).
        bytes: u64,
    },
    /// A chain of tiny kernel launches.
    Launch {
        /// `gpu`: CUDA-event time per launch in a chain; `host`: CPU time to queue one.
        clock: String,
        /// Launches per timed run.
        launches_per_run: usize,
        /// Elements each launch touches.
        elements: usize,
    },
}

/// A peak figure to compare with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Peak {
    /// In the result's unit.
    pub value: f64,
    /// Which peak, e.g. `FP16 dense tensor (catalog)`.
    pub what: String,
}

/// One measured figure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// The suite.
    pub suite: Suite,
    /// What was measured (unique with `implementation`).
    pub name: String,
    /// `hikube-gpu` or `cuBLAS`.
    pub implementation: String,
    /// The parameters.
    pub params: Params,
    /// The figure.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// False for latencies.
    pub higher_is_better: bool,
    /// The peak for this figure, if the model gives one.
    pub peak: Option<Peak>,
    /// 100 × value / peak.
    pub percent_of_peak: Option<f64>,
    /// Median time of one operation, ms.
    pub median_ms: f64,
    /// Timed runs.
    pub runs: usize,
    /// Operations per timed run.
    pub ops_per_run: usize,
    /// The GPU while it ran.
    pub state: Option<MachineState>,
    /// `value` per watt of mean power.
    pub per_watt: Option<f64>,
}

/// A benchmark not run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// What.
    pub what: String,
    /// Why.
    pub reason: String,
}

impl BenchResult {
    /// Fills in `percent_of_peak` and `per_watt` from `value`, `peak` and `state`.
    pub fn derive_figures(mut self) -> Self {
        self.percent_of_peak = self
            .peak
            .as_ref()
            .filter(|p| p.value > 0.0)
            .map(|p| 100.0 * self.value / p.value);
        self.per_watt = if self.higher_is_better {
            self.state.as_ref().and_then(|s| s.per_watt(self.value))
        } else {
            None
        };
        self
    }
}

impl Report {
    /// The JSON text of `report.json`.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// Reads `report.json`, refusing another schema or a newer version (what a reader of the
    /// schema does; the tool itself only writes reports).
    #[cfg(test)]
    pub fn from_json(text: &str) -> Result<Report, String> {
        #[derive(Deserialize)]
        struct Head {
            schema: String,
            version: u32,
        }
        let head: Head =
            serde_json::from_str(text).map_err(|e| format!("not a hikube-gpu report: {e}"))?;
        if head.schema != SCHEMA {
            return Err(format!("schema is `{}`, not `{SCHEMA}`", head.schema));
        }
        if head.version != VERSION {
            return Err(format!(
                "report version {} (this tool reads version {VERSION})",
                head.version
            ));
        }
        serde_json::from_str(text).map_err(|e| format!("malformed report: {e}"))
    }

    /// `report.md`.
    pub fn to_markdown(&self, chart_file: Option<&str>) -> String {
        let d = &self.device;
        let m = &d.model;
        let mut md = String::new();
        let _ = writeln!(md, "# hikube-gpu bench: {}\n", m.name);
        let _ = writeln!(
            md,
            "- Device {}: {} ({}, {}), compute {} ({}), {} SMs, {:.1} GiB",
            d.index,
            d.name,
            d.uuid,
            d.pci_bus_id,
            d.compute_capability,
            d.architecture,
            d.sms,
            d.memory_bytes as f64 / (1u64 << 30) as f64
        );
        let _ = writeln!(
            md,
            "- Model: {} ({}), instance type {}; peaks FP16 {:.1} / BF16 {} / FP8 {} TFLOP/s dense \
             tensor (FP32 accumulate), FP16 {} TFLOP/s with FP16 accumulate, FP32 {:.1} TFLOP/s, \
             {:.0} GB/s",
            m.name,
            m.provenance,
            m.instance_type.as_deref().unwrap_or("none"),
            m.fp16_tflops,
            one_decimal_or_dash(m.bf16_tflops),
            one_decimal_or_dash(m.fp8_tflops),
            one_decimal_or_dash(m.fp16_acc16_tflops),
            m.fp32_tflops,
            m.memory_bandwidth_gbs
        );
        let mut driver = format!(
            "- Driver: {} (CUDA {})",
            d.driver_version.as_deref().unwrap_or("version unknown"),
            d.cuda_driver
        );
        if let Some(w) = d.power_limit_w {
            let _ = write!(driver, "; power limit {w:.0} W");
        }
        if let Some(link) = &d.pcie {
            let _ = write!(
                driver,
                "; PCIe gen {} x{} (now gen {} x{}), {} GB/s per direction",
                link.max_generation,
                link.max_width,
                link.generation,
                link.width,
                one_decimal_or_dash(link.peak_gbs())
            );
        }
        let _ = writeln!(md, "{driver}");
        let _ = writeln!(
            md,
            "- Date: {}; command: `{}`; hikube-gpu {}; schema {SCHEMA} v{}",
            self.created, self.command, self.tool_version, self.version
        );
        let _ = writeln!(
            md,
            "- Times: CUDA events, median of the timed runs. Power, SM clock and temperature: \
             NVML every 50 ms during each measurement, less its first half (at most 1 s), as \
             power readings average over about a second.\n"
        );
        let sections = [
            (
                Suite::Gemm,
                "GEMM",
                "D = A·B, row-major, output in the input type, FP32 accumulate; rotating inputs. \
                 e4m3: FP8 inputs (A row-major, B column-major, scales of 1), f16 out, the FP8 \
                 peak.",
            ),
            (
                Suite::Copy,
                "Copy bandwidth",
                "GB/s = 10⁹ bytes/s; device-to-device counts bytes read and written. Host-to-device \
                 peaks are the PCIe link's line rate.",
            ),
            (
                Suite::Launch,
                "Launch latency",
                "A chain of one-block `axpy` launches on one stream: `gpu` is the CUDA-event time \
                 per launch, `host` the CPU time to queue one.",
            ),
        ];
        for (suite, title, note) in sections {
            let rows: Vec<&BenchResult> =
                self.results.iter().filter(|r| r.suite == suite).collect();
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(md, "## {title}\n\n{note}\n");
            let _ = writeln!(
                md,
                "| benchmark | implementation | result | % of peak | mean power | mean SM clock | max temp | per watt | clocks limited by |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
            for r in rows {
                let s = r.state.as_ref();
                let dash = || "-".to_string();
                let limits = s.map_or(dash(), |s| {
                    let names = s.throttle_reasons.to_string();
                    if s.throttled() {
                        format!("**{names}**")
                    } else {
                        names
                    }
                });
                let _ = writeln!(
                    md,
                    "| {} | {} | {} {} | {} | {} | {} | {} | {} | {} |",
                    r.name,
                    r.implementation,
                    fmt_value(r.value),
                    r.unit,
                    r.percent_of_peak.map_or(dash(), |p| format!("{p:.1} %")),
                    s.and_then(|s| s.mean_power_w)
                        .map_or(dash(), |w| format!("{w:.0} W")),
                    s.and_then(|s| s.mean_sm_clock_mhz)
                        .map_or(dash(), |c| format!("{c:.0} MHz")),
                    s.and_then(|s| s.max_temperature_c)
                        .map_or(dash(), |t| format!("{t} °C")),
                    r.per_watt
                        .map_or(dash(), |p| format!("{} {}/W", fmt_value(p), r.unit)),
                    limits
                );
            }
            let _ = writeln!(md);
        }
        if self
            .results
            .iter()
            .any(|r| r.state.as_ref().is_some_and(MachineState::throttled))
        {
            let _ = writeln!(
                md,
                "**Throttled**: in the rows whose clock limits are in bold, a power cap or a \
                 thermal or hardware slowdown held the clocks down; those figures are below what \
                 the GPU does when cool and under its limit.\n"
            );
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(md, "## Not measured\n");
            for s in &self.skipped {
                let _ = writeln!(md, "- {}: {}", s.what, s.reason);
            }
            let _ = writeln!(md);
        }
        if let Some(chart) = chart_file {
            let _ = writeln!(md, "![% of peak per benchmark]({chart})");
        }
        md
    }
}

/// `v` with one decimal, or `-` for none.
fn one_decimal_or_dash(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

/// Three significant figures or one decimal, whichever is longer: `989.4`, `52.1`, `4.35`,
/// `0.0123`.
pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 10.0 || a == 0.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        let digits = (-a.log10().floor()) as usize + 2;
        format!("{v:.digits$}")
    }
}

/// `t` in RFC 3339, UTC: `2026-11-25T08:40:01Z`, or with milliseconds `…:01.250Z`.
pub fn rfc3339(t: SystemTime, millis: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if millis {
        format!(
            "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
            d.subsec_millis()
        )
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use hikube_gpu::monitor::ThrottleReasons;
    use std::time::Duration;

    fn state(power: f64, clock: f64, reasons: ThrottleReasons) -> MachineState {
        MachineState {
            samples: 20,
            mean_power_w: Some(power),
            max_power_w: Some(power + 10.0),
            mean_sm_clock_mhz: Some(clock),
            min_sm_clock_mhz: Some(clock as u32 - 15),
            max_temperature_c: Some(63),
            mean_gpu_utilization_percent: Some(100.0),
            throttle_reasons: reasons,
        }
    }

    /// A report as an H100 run would write it.
    pub fn sample_report() -> Report {
        let gemm = |implementation: &str, value: f64, reasons| {
            BenchResult {
                suite: Suite::Gemm,
                name: "f16 4096×4096×4096".into(),
                implementation: implementation.into(),
                params: Params::Gemm {
                    dtype: "f16".into(),
                    m: 4096,
                    n: 4096,
                    k: 4096,
                },
                value,
                unit: "TFLOP/s".into(),
                higher_is_better: true,
                peak: Some(Peak {
                    value: 989.4,
                    what: "FP16 dense tensor (catalog)".into(),
                }),
                percent_of_peak: None,
                median_ms: 2.0 * 4096f64.powi(3) / (value * 1e9),
                runs: 200,
                ops_per_run: 1,
                state: Some(state(650.0, 1755.0, reasons)),
                per_watt: None,
            }
            .derive_figures()
        };
        Report {
            schema: SCHEMA.into(),
            version: VERSION,
            created: "2026-11-25T08:40:01Z".into(),
            tool_version: "0.1.0".into(),
            command: "hikube-gpu bench --out reports/h100".into(),
            device: DeviceInfo {
                index: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                uuid: "GPU-03da17df-4c24-8d11-962e-8a996b823d68".into(),
                pci_bus_id: "00000000:00:06.0".into(),
                compute_capability: "9.0".into(),
                architecture: "Hopper".into(),
                sms: 132,
                memory_bytes: 85_028_880_384,
                cuda_driver: "13.0".into(),
                driver_version: Some("580.95.05".into()),
                power_limit_w: Some(700.0),
                pcie: Some(PcieLink {
                    generation: 5,
                    width: 16,
                    max_generation: 5,
                    max_width: 16,
                }),
                model: ModelInfo {
                    name: "H100 SXM".into(),
                    provenance: "catalog".into(),
                    instance_type: None,
                    fp16_tflops: 989.4,
                    bf16_tflops: Some(989.4),
                    fp32_tflops: 67.0,
                    fp16_acc16_tflops: Some(989.4),
                    fp8_tflops: Some(1978.9),
                    memory_bandwidth_gbs: 3350.0,
                },
            },
            results: vec![
                gemm("hikube-gpu", 612.3, ThrottleReasons::NONE),
                gemm("cuBLAS", 701.9, ThrottleReasons::SW_POWER_CAP),
                BenchResult {
                    suite: Suite::Copy,
                    name: "d2d 256 MiB".into(),
                    implementation: "hikube-gpu".into(),
                    params: Params::Copy {
                        direction: "d2d".into(),
                        memory: "device".into(),
                        bytes: 512 << 20,
                    },
                    value: 2870.5,
                    unit: "GB/s".into(),
                    higher_is_better: true,
                    peak: Some(Peak {
                        value: 3350.0,
                        what: "memory bandwidth (catalog)".into(),
                    }),
                    percent_of_peak: None,
                    median_ms: 0.187,
                    runs: 100,
                    ops_per_run: 1,
                    state: None,
                    per_watt: None,
                }
                .derive_figures(),
                BenchResult {
                    suite: Suite::Launch,
                    name: "axpy chain".into(),
                    implementation: "hikube-gpu".into(),
                    params: Params::Launch {
                        clock: "gpu".into(),
                        launches_per_run: 1000,
                        elements: 256,
                    },
                    value: 2.31,
                    unit: "µs".into(),
                    higher_is_better: false,
                    peak: None,
                    percent_of_peak: None,
                    median_ms: 0.00231,
                    runs: 50,
                    ops_per_run: 1000,
                    state: Some(state(120.0, 1980.0, ThrottleReasons::NONE)),
                    per_watt: None,
                }
                .derive_figures(),
            ],
            skipped: vec![Skipped {
                what: "conv2d".into(),
                reason: "not in this command's suite".into(),
            }],
        }
    }

    #[test]
    fn derived_figures() {
        let r = sample_report();
        let ours = &r.results[0];
        assert!((ours.percent_of_peak.unwrap() - 61.885).abs() < 0.01);
        assert!((ours.per_watt.unwrap() - 612.3 / 650.0).abs() < 1e-12);
        assert_eq!(r.results[2].per_watt, None, "no power known");
        assert_eq!(r.results[3].per_watt, None, "no per-watt for a latency");
        assert_eq!(r.results[3].percent_of_peak, None);
    }

    #[test]
    fn json_round_trips_and_names_its_schema() {
        let report = sample_report();
        let text = report.to_json().unwrap();
        assert_eq!(Report::from_json(&text).unwrap(), report);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["version"], 1);
        assert_eq!(v["results"][0]["suite"], "gemm");
        assert_eq!(v["results"][0]["params"]["kind"], "gemm");
        assert_eq!(v["results"][0]["params"]["k"], 4096);
        assert_eq!(
            v["results"][1]["state"]["throttle_reasons"],
            serde_json::json!(["sw_power_cap"])
        );
        assert_eq!(v["results"][2]["params"]["kind"], "copy");
        assert_eq!(v["results"][3]["params"]["clock"], "gpu");
        assert_eq!(v["device"]["pcie"]["max_generation"], 5);
        assert_eq!(v["skipped"][0]["what"], "conv2d");
        // Every documented top-level field, and no other.
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "command",
                "created",
                "device",
                "results",
                "schema",
                "skipped",
                "tool_version",
                "version"
            ]
        );
    }

    #[test]
    fn json_of_another_schema_or_version_is_refused() {
        let mut v: serde_json::Value = serde_json::to_value(sample_report()).unwrap();
        v["version"] = 2.into();
        let e = Report::from_json(&v.to_string()).unwrap_err();
        assert!(e.contains("version 2"), "{e}");
        v["schema"] = "something-else".into();
        assert!(Report::from_json(&v.to_string())
            .unwrap_err()
            .contains("schema"));
        assert!(Report::from_json("[]").is_err());
        let mut v = serde_json::to_value(sample_report()).unwrap();
        v["results"][0]["suite"] = "conv".into();
        assert!(Report::from_json(&v.to_string())
            .unwrap_err()
            .starts_with("malformed"));
    }

    #[test]
    fn markdown_has_a_table_per_suite() {
        let md = sample_report().to_markdown(Some("chart.svg"));
        assert!(md.starts_with("# hikube-gpu bench: H100 SXM\n"), "{md}");
        assert!(md.contains("- Driver: 580.95.05 (CUDA 13.0); power limit 700 W; PCIe gen 5 x16 (now gen 5 x16), 63.0 GB/s per direction\n"), "{md}");
        assert!(md.contains(
            "| f16 4096×4096×4096 | hikube-gpu | 612.3 TFLOP/s | 61.9 % | 650 W | 1755 MHz | 63 °C | 0.942 TFLOP/s/W | none |"
        ), "{md}");
        assert!(md.contains("| cuBLAS | 701.9 TFLOP/s | 70.9 % |"), "{md}");
        assert!(md.contains("| **sw_power_cap** |"), "{md}");
        assert!(md.contains("**Throttled**"), "{md}");
        assert!(
            md.contains("| d2d 256 MiB | hikube-gpu | 2870.5 GB/s | 85.7 % | - | - | - | - | - |"),
            "{md}"
        );
        assert!(
            md.contains("| axpy chain | hikube-gpu | 2.31 µs | - |"),
            "{md}"
        );
        assert!(
            md.contains("## Not measured\n\n- conv2d: not in this command's suite"),
            "{md}"
        );
        assert!(md
            .trim_end()
            .ends_with("![% of peak per benchmark](chart.svg)"));
        for title in ["## GEMM", "## Copy bandwidth", "## Launch latency"] {
            assert_eq!(md.matches(title).count(), 1, "{title}");
        }
        // Every table row has as many cells as its header.
        for line in md.lines().filter(|l| l.starts_with('|')) {
            assert_eq!(line.matches('|').count(), 10, "{line}");
        }
    }

    #[test]
    fn values_and_times_format() {
        assert_eq!(fmt_value(989.44), "989.4");
        assert_eq!(fmt_value(52.13), "52.1");
        assert_eq!(fmt_value(4.346), "4.35");
        assert_eq!(fmt_value(0.942), "0.942");
        assert_eq!(fmt_value(0.01234), "0.0123");
        assert_eq!(rfc3339(UNIX_EPOCH, false), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_596_001_250);
        assert_eq!(rfc3339(t, true), "2026-11-25T08:40:01.250Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap, false), "2000-02-29T00:00:00Z");
    }
}
