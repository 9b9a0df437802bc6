//! The GPU model catalog: every seed GPU is known under the names its driver reports, with the
//! figures and instance types the product promises; unknown GPUs get derived figures.

use hikube_gpu::catalog::{self, DeviceFacts, CATALOG};
use hikube_gpu::{Architecture, ComputeCapability, Provenance};

/// (driver name, catalog model, instance type, FP16 TFLOP/s with FP32 accumulation)
const SEEN: &[(&str, &str, Option<&str>, f64)] = &[
    (
        "NVIDIA GeForce RTX 4090",
        "RTX 4090",
        Some("gpu.rtx4090"),
        165.2,
    ),
    ("NVIDIA GeForce RTX 4080", "RTX 4080", None, 97.5),
    (
        "NVIDIA GeForce RTX 3090",
        "RTX 3090",
        Some("gpu.rtx3090"),
        71.0,
    ),
    (
        "NVIDIA GeForce RTX 3080",
        "RTX 3080",
        Some("gpu.rtx3080"),
        59.5,
    ),
    (
        "Tesla V100-SXM2-32GB",
        "Tesla V100 SXM2",
        Some("gpu.tesla-v100"),
        125.0,
    ),
    (
        "Tesla V100-PCIE-32GB",
        "Tesla V100 PCIe",
        Some("gpu.tesla-v100"),
        112.0,
    ),
    ("Tesla T4", "Tesla T4", Some("gpu.tesla-t4"), 65.0),
    ("NVIDIA A100-SXM4-80GB", "A100 80GB", None, 312.0),
    ("NVIDIA A100-SXM4-40GB", "A100 40GB", None, 312.0),
    ("NVIDIA H100 80GB HBM3", "H100 SXM", None, 989.4),
    ("NVIDIA H100 PCIe", "H100 PCIe", None, 756.5),
    ("NVIDIA H200", "H200", None, 989.4),
    ("NVIDIA L4", "L4", None, 121.0),
    ("NVIDIA L40S", "L40S", None, 362.05),
];

#[test]
fn every_seed_gpu_is_known() {
    for &(driver_name, model, instance, fp16) in SEEN {
        let spec = catalog::lookup(driver_name).unwrap_or_else(|| panic!("{driver_name} unknown"));
        assert_eq!(spec.name, model, "{driver_name}");
        assert_eq!(spec.instance_type, instance, "{driver_name}");
        assert_eq!(spec.fp16_tflops, fp16, "{driver_name}");
    }
}

#[test]
fn the_five_instance_types_are_offered() {
    let mut types: Vec<&str> = CATALOG.iter().filter_map(|s| s.instance_type).collect();
    types.sort();
    types.dedup();
    assert_eq!(
        types,
        [
            "gpu.rtx3080",
            "gpu.rtx3090",
            "gpu.rtx4090",
            "gpu.tesla-t4",
            "gpu.tesla-v100"
        ]
    );
}

#[test]
fn geforce_fp32_accumulate_is_half_rate_and_bf16_needs_ampere() {
    // The Ada whitepaper's FP16-accumulate figure for the 4090 is 330.3 TFLOP/s: the catalog
    // holds the FP32-accumulate one, half of it.
    let rtx4090 = catalog::lookup("NVIDIA GeForce RTX 4090").unwrap();
    assert!((rtx4090.fp16_tflops * 2.0 - 330.3).abs() < 0.5);
    for spec in CATALOG {
        let pre_ampere = spec.compute_capability < ComputeCapability::new(8, 0);
        assert_eq!(spec.bf16_tflops.is_none(), pre_ampere, "{}", spec.name);
        assert_eq!(
            spec.compute_capability.architecture(),
            spec.architecture,
            "{}",
            spec.name
        );
        assert!(spec.fp16_tflops > spec.fp32_tflops, "{}", spec.name);
    }
}

/// The precision peaks (issue 19): FP16 accumulation twice the FP32-accumulate rate on the
/// GeForce cards and the same on the data-center ones; FP8 (FP32 accumulate) from compute
/// capability 8.9 on, at twice the FP16 rate; and a derived model agrees with the catalog.
#[test]
fn fp16_accumulate_and_fp8_peaks() {
    for spec in CATALOG {
        let geforce = spec.name.starts_with("RTX");
        let ratio = spec.fp16_acc16_tflops / spec.fp16_tflops;
        let want = if geforce { 2.0 } else { 1.0 };
        assert!((ratio - want).abs() < 0.01, "{}: {ratio}", spec.name);
        let fp8 = spec.compute_capability >= ComputeCapability::new(8, 9);
        assert_eq!(spec.fp8_tflops.is_some(), fp8, "{}", spec.name);
        if let Some(t) = spec.fp8_tflops {
            // Within the datasheets' rounding (L40S: 733 against 2 × 362.05).
            assert!(
                (t / spec.fp16_tflops - 2.0).abs() < 0.03,
                "{}: {t}",
                spec.name
            );
        }
    }
    let h100 = catalog::lookup("NVIDIA H100 80GB HBM3").unwrap();
    assert_eq!(h100.fp8_tflops, Some(1978.9));
    let rtx3090 = catalog::lookup("NVIDIA GeForce RTX 3090").unwrap();
    assert_eq!(
        (rtx3090.fp16_acc16_tflops, rtx3090.fp8_tflops),
        (142.0, None)
    );
}

#[test]
fn variants_not_in_the_catalog_are_not_mistaken() {
    for name in [
        "NVIDIA GeForce RTX 3080 Ti",
        "NVIDIA GeForce RTX 3090 Ti",
        "NVIDIA GeForce RTX 4080 SUPER",
        "NVIDIA H100 NVL",
        "NVIDIA A100 80GB PCIe",
        "Quadro T4000",
    ] {
        assert!(
            catalog::lookup(name).is_none(),
            "{name} matched {:?}",
            catalog::lookup(name)
        );
    }
}

fn h100_facts(name: &str, sms: u32) -> DeviceFacts<'_> {
    DeviceFacts {
        name,
        compute_capability: ComputeCapability::new(9, 0),
        sms,
        sm_clock_khz: 1_980_000,
        memory_clock_khz: 2_619_000,
        memory_bus_width_bits: 5120,
        total_memory: 85_045_510_144,
    }
}

#[test]
fn identify_uses_the_catalog_only_when_the_sm_count_agrees() {
    let known = catalog::identify(&h100_facts("NVIDIA H100 80GB HBM3", 132));
    assert_eq!(known.provenance, Provenance::Catalog);
    assert_eq!(known.name, "H100 SXM");
    // Same name, other SM count (a cut-down part): derived, under the driver's name.
    let cut = catalog::identify(&h100_facts("NVIDIA H100 80GB HBM3", 114));
    assert_eq!(cut.provenance, Provenance::Derived);
    assert_eq!(cut.name, "NVIDIA H100 80GB HBM3");
    assert_eq!(cut.sms, 114);
}

#[test]
fn derived_figures_are_close_to_published_ones() {
    // Deriving the H100 SXM's figures from its properties lands within 10 % of the datasheet.
    let d = catalog::derive(&h100_facts("some future GPU", 132));
    let spec = catalog::lookup("NVIDIA H100 80GB HBM3").unwrap();
    assert_eq!(d.architecture, Architecture::Hopper);
    for (got, want) in [
        (d.fp16_tflops, spec.fp16_tflops),
        (d.fp16_acc16_tflops, spec.fp16_acc16_tflops),
        (d.fp8_tflops.unwrap_or(0.0), spec.fp8_tflops.unwrap_or(1.0)),
        (d.fp32_tflops, spec.fp32_tflops),
        (d.memory_bandwidth_gbs, spec.memory_bandwidth_gbs),
        (f64::from(d.cuda_cores), f64::from(spec.cuda_cores)),
    ] {
        assert!(
            (got / want - 1.0).abs() < 0.1,
            "derived {got} vs published {want}"
        );
    }
}

#[test]
fn unknown_and_odd_devices_never_panic() {
    for (major, minor, sms, clock) in [
        (5, 2, 0, 0),
        (6, 1, 28, 1_500_000),
        (12, 0, 170, 2_400_000),
        (99, 9, 1, 1),
    ] {
        let facts = DeviceFacts {
            name: "NVIDIA GeForce Mystery",
            compute_capability: ComputeCapability::new(major, minor),
            sms,
            sm_clock_khz: clock,
            memory_clock_khz: 0,
            memory_bus_width_bits: 0,
            total_memory: 0,
        };
        let m = catalog::identify(&facts);
        assert_eq!(m.provenance, Provenance::Derived);
        for v in [
            m.fp16_tflops,
            m.fp32_tflops,
            m.memory_bandwidth_gbs,
            m.vram_gb,
        ] {
            assert!(v.is_finite() && v >= 0.0, "{m:?}");
        }
        assert_eq!(m.bf16_tflops.is_some(), major >= 8, "{m:?}");
    }
}
