//! `hikube-gpu info`: every GPU, what it is and what it can do at most; as text, or with
//! `--json` as one object.
//!
//! # `--json`: schema `hikube-gpu/info`, version 1
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema`, `version` | string, integer | `hikube-gpu/info`, 1 (bumped when a field is removed or changes meaning) |
//! | `tool_version` | string | the `hikube-gpu` crate version |
//! | `cuda_driver` | string? | the CUDA version of the driver, e.g. `13.0`; null without a driver |
//! | `driver_version` | string? | the NVIDIA driver's version (NVML), e.g. `580.95.05` |
//! | `devices[]` | array | [`GpuInfo`], in CUDA order; empty without a GPU |
//! | `devices[].model` | object | [`ModelInfo`], as in the bench report |
//! | `monitoring` | string? | why NVML is off, if it is (free memory then comes from a CUDA context) |
//! | `error` | string? | why the listing failed or stopped (no driver, no GPU, …); the exit status is then 1 |

use crate::report::ModelInfo;
use crate::{one_line, visible_devices, CliResult, InfoArgs};
use hikube_gpu::{driver_version, Device, Monitor};
use serde::{Deserialize, Serialize};

const GIB: f64 = (1u64 << 30) as f64;

/// The schema name of `info --json`.
pub const SCHEMA: &str = "hikube-gpu/info";
/// Its version.
pub const VERSION: u32 = 1;

/// `13000` → `13.0`.
pub fn cuda_version(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// The model's peak figures on one line.
pub fn peaks(model: &ModelInfo) -> String {
    let bf16 = model
        .bf16_tflops
        .map_or("no tensor-core BF16".to_string(), |t| {
            format!("BF16 {t:.1}")
        });
    format!(
        "FP16 {:.1} / {bf16} TFLOP/s dense tensor (FP32 accumulate), FP32 {:.1} TFLOP/s, {:.0} GB/s",
        model.fp16_tflops, model.fp32_tflops, model.memory_bandwidth_gbs
    )
}

/// Where the model's figures come from, for people.
pub fn provenance(model: &ModelInfo) -> &'static str {
    if model.provenance == "catalog" {
        "catalog"
    } else {
        "derived from the device's properties"
    }
}

/// What `info` says: the object `--json` prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Info {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// [`VERSION`].
    pub version: u32,
    /// The crate's version.
    pub tool_version: String,
    /// The driver's CUDA version, e.g. `13.0`.
    pub cuda_driver: Option<String>,
    /// The driver's version (NVML).
    pub driver_version: Option<String>,
    /// The GPUs, in CUDA order.
    pub devices: Vec<GpuInfo>,
    /// Why NVML is off, if it is.
    pub monitoring: Option<String>,
    /// Why the listing failed or stopped.
    pub error: Option<String>,
}

/// One GPU in [`Info`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
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
    /// The SM clock's maximum, MHz.
    pub sm_clock_mhz: u32,
    /// Device memory free now, bytes.
    pub memory_free_bytes: u64,
    /// Device memory in all, bytes.
    pub memory_total_bytes: u64,
    /// The model and its peaks.
    pub model: ModelInfo,
}

/// One GPU, described without a CUDA context where NVML gives the free memory.
fn describe(index: usize, monitor: Option<&Monitor>) -> CliResult<GpuInfo> {
    let (p, model) = Device::describe(index)?;
    let (free, total) = match monitor {
        Some(m) => {
            let metrics = m.metrics_by_uuid(&p.uuid)?;
            (metrics.memory_free_bytes, metrics.memory_total_bytes)
        }
        None => {
            let info = Device::open(index)?.memory_info()?;
            (info.free as u64, info.total as u64)
        }
    };
    Ok(GpuInfo {
        index,
        name: p.name,
        uuid: p.uuid,
        pci_bus_id: p.pci_bus_id,
        compute_capability: p.compute_capability.to_string(),
        architecture: model.architecture.to_string(),
        sms: p.sm_count,
        sm_clock_mhz: p.sm_clock_khz / 1000,
        memory_free_bytes: free,
        memory_total_bytes: total,
        model: ModelInfo::from(&model),
    })
}

/// Everything `info` shows; a failure is recorded in `error`, with what was found before it.
pub fn collect() -> Info {
    let mut info = Info {
        schema: SCHEMA.into(),
        version: VERSION,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        cuda_driver: None,
        driver_version: None,
        devices: Vec::new(),
        monitoring: None,
        error: None,
    };
    let mut listed = || -> CliResult {
        let count = visible_devices()?;
        info.cuda_driver = Some(cuda_version(driver_version()?));
        // NVML gives free memory without a CUDA context; without NVML, open the device.
        let monitor = match Monitor::new() {
            Ok(m) => {
                info.driver_version = m.driver_version().ok();
                Some(m)
            }
            Err(e) => {
                info.monitoring = Some(one_line(&e));
                None
            }
        };
        for index in 0..count {
            info.devices.push(describe(index, monitor.as_ref())?);
        }
        Ok(())
    };
    if let Err(e) = listed() {
        info.error = Some(one_line(&*e));
    }
    info
}

/// The text of `info`.
pub fn text(info: &Info) -> String {
    let mut out = String::new();
    if let Some(cuda) = &info.cuda_driver {
        match &info.driver_version {
            Some(v) => out += &format!("driver {v} (CUDA {cuda}), "),
            None => out += &format!("driver CUDA {cuda}, "),
        }
        out += &format!("{} GPU(s)\n", info.devices.len());
    }
    for d in &info.devices {
        let m = &d.model;
        out += &format!("\nGPU {}: {}\n", d.index, d.name);
        out += &format!(
            "  model     {} ({}, {}), {}, compute {}, {} SMs at {} MHz\n",
            m.name,
            provenance(m),
            m.instance_type
                .as_ref()
                .map_or("no Hikube instance type".into(), |t| format!(
                    "instance type {t}"
                )),
            d.architecture,
            d.compute_capability,
            d.sms,
            d.sm_clock_mhz
        );
        out += &format!("  peak      {}\n", peaks(m));
        out += &format!(
            "  memory    {:.1} GiB free of {:.1} GiB\n",
            d.memory_free_bytes as f64 / GIB,
            d.memory_total_bytes as f64 / GIB
        );
        out += &format!("  uuid      {}\n", d.uuid);
        out += &format!("  pci       {}\n", d.pci_bus_id);
    }
    if let Some(why) = &info.monitoring {
        out += &format!("\n(monitoring off: {why})\n");
    }
    out
}

pub fn run(args: &InfoArgs) -> CliResult {
    let info = collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print!("{}", text(&info));
    }
    match info.error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hikube_gpu::GpuModel;

    #[test]
    fn versions_and_peaks_read_well() {
        assert_eq!(cuda_version(13000), "13.0");
        assert_eq!(cuda_version(12040), "12.4");
        let model = h100_model();
        assert_eq!(
            peaks(&model),
            "FP16 989.4 / BF16 989.4 TFLOP/s dense tensor (FP32 accumulate), FP32 67.0 TFLOP/s, 3350 GB/s"
        );
        assert_eq!(provenance(&model), "catalog");
        let t4 = ModelInfo::from(&GpuModel::from(
            hikube_gpu::catalog::lookup("Tesla T4").unwrap(),
        ));
        assert!(peaks(&t4).contains("no tensor-core BF16"), "{}", peaks(&t4));
    }

    fn h100_model() -> ModelInfo {
        ModelInfo::from(&GpuModel::from(
            hikube_gpu::catalog::lookup("NVIDIA H100 80GB HBM3").unwrap(),
        ))
    }

    fn h100() -> Info {
        Info {
            schema: SCHEMA.into(),
            version: VERSION,
            tool_version: "0.1.0".into(),
            cuda_driver: Some("13.0".into()),
            driver_version: Some("580.95.05".into()),
            devices: vec![GpuInfo {
                index: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                uuid: "GPU-03da17df-4c24-8d11-962e-8a996b823d68".into(),
                pci_bus_id: "0000:19:00.0".into(),
                compute_capability: "9.0".into(),
                architecture: "Hopper".into(),
                sms: 132,
                sm_clock_mhz: 1980,
                memory_free_bytes: 80 << 30,
                memory_total_bytes: 85_520_809_984,
                model: h100_model(),
            }],
            monitoring: None,
            error: None,
        }
    }

    #[test]
    fn the_json_has_its_documented_shape() {
        let json = serde_json::to_string_pretty(&h100()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["schema"], "hikube-gpu/info");
        assert_eq!(v["version"], 1);
        assert_eq!(v["driver_version"], "580.95.05");
        assert_eq!(v["error"], serde_json::Value::Null);
        let d = &v["devices"][0];
        for (key, want) in [
            ("index", serde_json::json!(0)),
            (
                "uuid",
                serde_json::json!("GPU-03da17df-4c24-8d11-962e-8a996b823d68"),
            ),
            ("pci_bus_id", serde_json::json!("0000:19:00.0")),
            ("compute_capability", serde_json::json!("9.0")),
            ("architecture", serde_json::json!("Hopper")),
            ("sms", serde_json::json!(132)),
            ("memory_total_bytes", serde_json::json!(85_520_809_984u64)),
        ] {
            assert_eq!(d[key], want, "{key}");
        }
        assert_eq!(d["model"]["name"], "H100 SXM");
        assert_eq!(d["model"]["provenance"], "catalog");
        assert_eq!(d["model"]["fp16_tflops"], 989.4);
        assert_eq!(serde_json::from_str::<Info>(&json).unwrap(), h100());
    }

    #[test]
    fn the_text_shows_every_gpu() {
        let text = text(&h100());
        assert!(
            text.starts_with("driver 580.95.05 (CUDA 13.0), 1 GPU(s)\n"),
            "{text}"
        );
        assert!(text.contains("GPU 0: NVIDIA H100 80GB HBM3"), "{text}");
        assert!(text.contains("H100 SXM (catalog, no Hikube instance type), Hopper, compute 9.0, 132 SMs at 1980 MHz"), "{text}");
        assert!(
            text.contains(&format!("  peak      {}\n", peaks(&h100_model()))),
            "{text}"
        );
    }

    #[test]
    fn without_a_gpu_the_json_says_why() {
        // Here (CI, no GPU) the listing fails; on a GPU machine it lists every device.
        let info = collect();
        let json = serde_json::to_string(&info).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        match Device::count() {
            Ok(n) if n > 0 => {
                assert_eq!(info.error, None, "{json}");
                assert_eq!(info.devices.len(), n);
            }
            _ => {
                assert!(info.devices.is_empty(), "{json}");
                let error = info.error.as_deref().unwrap_or("");
                assert!(!error.is_empty() && !error.contains('\n'), "{json}");
            }
        }
    }
}
