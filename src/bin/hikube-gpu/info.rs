//! `hikube-gpu info`: every GPU, what it is and what it can do at most.

use crate::{visible_devices, CliResult};
use hikube_gpu::{driver_version, Device, GpuModel, Monitor, Provenance};

const GIB: f64 = (1u64 << 30) as f64;

/// `13000` → `13.0`.
pub fn cuda_version(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// The model's peak figures on one line.
pub fn peaks(model: &GpuModel) -> String {
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

/// `catalog` or `derived`.
pub fn provenance(model: &GpuModel) -> &'static str {
    match model.provenance {
        Provenance::Catalog => "catalog",
        Provenance::Derived => "derived from the device's properties",
    }
}

pub fn run() -> CliResult {
    let count = visible_devices()?;
    // NVML gives free memory without a CUDA context; without NVML, open the device.
    let monitor = Monitor::new();
    let cuda = cuda_version(driver_version()?);
    match monitor.as_ref().map(Monitor::driver_version) {
        Ok(Ok(v)) => println!("driver {v} (CUDA {cuda}), {count} GPU(s)"),
        _ => println!("driver CUDA {cuda}, {count} GPU(s)"),
    }
    for index in 0..count {
        let (p, model) = Device::describe(index)?;
        let (free, total) = match &monitor {
            Ok(m) => {
                let metrics = m.metrics_by_uuid(&p.uuid)?;
                (metrics.memory_free_bytes, metrics.memory_total_bytes)
            }
            Err(_) => {
                let info = Device::open(index)?.memory_info()?;
                (info.free as u64, info.total as u64)
            }
        };
        println!("\nGPU {index}: {}", p.name);
        println!(
            "  model     {} ({}, {}), {}, compute {}, {} SMs at {} MHz",
            model.name,
            provenance(&model),
            model
                .instance_type
                .map_or("no Hikube instance type".into(), |t| format!(
                    "instance type {t}"
                )),
            model.architecture,
            p.compute_capability,
            p.sm_count,
            p.sm_clock_khz / 1000
        );
        println!("  peak      {}", peaks(&model));
        println!(
            "  memory    {:.1} GiB free of {:.1} GiB",
            free as f64 / GIB,
            total as f64 / GIB
        );
        println!("  uuid      {}", p.uuid);
        println!("  pci       {}", p.pci_bus_id);
    }
    if let Err(e) = monitor {
        println!("\n(monitoring off: {e})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_peaks_read_well() {
        assert_eq!(cuda_version(13000), "13.0");
        assert_eq!(cuda_version(12040), "12.4");
        let spec = hikube_gpu::catalog::lookup("NVIDIA H100 80GB HBM3").unwrap();
        let model = GpuModel::from(spec);
        assert_eq!(
            peaks(&model),
            "FP16 989.4 / BF16 989.4 TFLOP/s dense tensor (FP32 accumulate), FP32 67.0 TFLOP/s, 3350 GB/s"
        );
        assert_eq!(provenance(&model), "catalog");
        let t4 = GpuModel::from(hikube_gpu::catalog::lookup("Tesla T4").unwrap());
        assert!(peaks(&t4).contains("no tensor-core BF16"), "{}", peaks(&t4));
    }
}
