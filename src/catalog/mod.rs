//! The GPU model catalog: what each card can do at most, so that benchmarks can say how close
//! they come. Every figure names its source. Tensor-core figures are *dense* (no sparsity) and
//! for FP16/BF16 inputs **with FP32 accumulation**, the mode every kernel of this crate uses:
//! GeForce cards run it at half their FP16-accumulate rate (RTX 4090: 165.2, not 330.3).

mod arch;

pub use arch::{Architecture, ComputeCapability, PtxArch};
use std::borrow::Cow;

/// Published figures for one GPU model.
///
/// ```
/// use hikube_gpu::catalog::lookup;
/// let t4 = lookup("Tesla T4").unwrap();
/// assert_eq!(t4.fp8_tflops, None); // Turing has no FP8 tensor cores
/// let rtx4090 = lookup("NVIDIA GeForce RTX 4090").unwrap();
/// let ratio = rtx4090.fp16_acc16_tflops / rtx4090.fp16_tflops;
/// assert!((ratio - 2.0).abs() < 0.01); // GeForce: f16 accumulation at twice the f32 rate
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GpuSpec {
    /// Model name, e.g. `H100 SXM`.
    pub name: &'static str,
    /// Lower-case fragments that the driver's device name must all contain.
    pub matches: &'static [&'static str],
    /// Lower-case fragments the driver's device name must not contain.
    pub excludes: &'static [&'static str],
    /// Architecture family.
    pub architecture: Architecture,
    /// Compute capability.
    pub compute_capability: ComputeCapability,
    /// Streaming multiprocessors.
    pub sms: u32,
    /// FP32 CUDA cores.
    pub cuda_cores: u32,
    /// Memory in GB (10^9 bytes), as marketed.
    pub vram_gb: f64,
    /// Peak memory bandwidth in GB/s.
    pub memory_bandwidth_gbs: f64,
    /// Dense FP16 tensor-core TFLOP/s with FP32 accumulation.
    pub fp16_tflops: f64,
    /// Dense BF16 tensor-core TFLOP/s with FP32 accumulation; `None` where BF16 has no tensor-core
    /// support (before Ampere).
    pub bf16_tflops: Option<f64>,
    /// FP32 (non-tensor) TFLOP/s.
    pub fp32_tflops: f64,
    /// Dense FP16 tensor-core TFLOP/s with FP16 accumulation (`ComputeType::F16`): twice
    /// `fp16_tflops` on GeForce cards, the same on the data-center ones.
    pub fp16_acc16_tflops: f64,
    /// Dense FP8 (E4M3, E5M2) tensor-core TFLOP/s with FP32 accumulation; `None` where the
    /// tensor cores have no FP8 (before compute capability 8.9).
    pub fp8_tflops: Option<f64>,
    /// The Hikube instance type that offers this GPU.
    pub instance_type: Option<&'static str>,
}

/// Where a [`GpuModel`]'s figures come from.
///
/// ```
/// use hikube_gpu::{GpuModel, Provenance};
/// // How a report labels a figure.
/// fn label(model: &GpuModel) -> &'static str {
///     match model.provenance {
///         Provenance::Catalog => "published",
///         Provenance::Derived => "estimated from the device's properties",
///     }
/// }
/// # let facts = hikube_gpu::catalog::DeviceFacts { name: "NVIDIA Future GPU",
/// #     compute_capability: hikube_gpu::ComputeCapability::new(9, 0), sms: 100,
/// #     sm_clock_khz: 2_000_000, memory_clock_khz: 2_000_000, memory_bus_width_bits: 4096,
/// #     total_memory: 64 << 30 };
/// # let derived = hikube_gpu::catalog::derive(&facts);
/// # assert_eq!(label(&derived), "estimated from the device's properties");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// The catalog: published figures.
    Catalog,
    /// Derived from the device's properties (SMs, clocks, bus width): an estimate.
    Derived,
}

/// The model of a device and its peak figures: from the catalog when the device is known, derived
/// from its properties otherwise.
///
/// ```no_run
/// let device = hikube_gpu::Device::open(0)?;
/// let model = device.model();
/// let achieved = 600.0; // TFLOP/s measured by a benchmark
/// println!("{}: {:.0} % of the FP16 peak", model.name, 100.0 * achieved / model.fp16_tflops);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GpuModel {
    /// Model name: the catalog's, or the driver's device name for an unknown GPU.
    pub name: Cow<'static, str>,
    /// Architecture family.
    pub architecture: Architecture,
    /// Streaming multiprocessors.
    pub sms: u32,
    /// FP32 CUDA cores.
    pub cuda_cores: u32,
    /// Memory in GB (10^9 bytes).
    pub vram_gb: f64,
    /// Peak memory bandwidth in GB/s.
    pub memory_bandwidth_gbs: f64,
    /// Dense FP16 tensor-core TFLOP/s with FP32 accumulation.
    pub fp16_tflops: f64,
    /// Dense BF16 tensor-core TFLOP/s with FP32 accumulation, if supported.
    pub bf16_tflops: Option<f64>,
    /// FP32 (non-tensor) TFLOP/s.
    pub fp32_tflops: f64,
    /// Dense FP16 tensor-core TFLOP/s with FP16 accumulation.
    pub fp16_acc16_tflops: f64,
    /// Dense FP8 tensor-core TFLOP/s with FP32 accumulation, if supported.
    pub fp8_tflops: Option<f64>,
    /// The Hikube instance type, if one offers this GPU.
    pub instance_type: Option<&'static str>,
    /// Published or derived.
    pub provenance: Provenance,
}

impl From<&GpuSpec> for GpuModel {
    fn from(s: &GpuSpec) -> Self {
        GpuModel {
            name: Cow::Borrowed(s.name),
            architecture: s.architecture,
            sms: s.sms,
            cuda_cores: s.cuda_cores,
            vram_gb: s.vram_gb,
            memory_bandwidth_gbs: s.memory_bandwidth_gbs,
            fp16_tflops: s.fp16_tflops,
            bf16_tflops: s.bf16_tflops,
            fp32_tflops: s.fp32_tflops,
            fp16_acc16_tflops: s.fp16_acc16_tflops,
            fp8_tflops: s.fp8_tflops,
            instance_type: s.instance_type,
            provenance: Provenance::Catalog,
        }
    }
}

const fn cc(major: u32, minor: u32) -> ComputeCapability {
    ComputeCapability::new(major, minor)
}

/// Every GPU the catalog knows, most specific name patterns first.
///
/// The FP16-accumulate and FP8 figures come from the same documents as each entry's others: the
/// GeForce cards' "FP16 Tensor TFLOPS with FP16 Accumulate" and "FP8 Tensor TFLOPS with FP32
/// Accumulate" rows (Ada whitepaper appendix tables 1 and 2; GA102 whitepaper table 9), the
/// datasheets' FP8 Tensor Core rows halved for dense (H100, H200, L40S, L4); the data-center
/// tensor cores (Volta to Hopper) accumulate in FP16 at their FP32-accumulate rate.
///
/// ```
/// use hikube_gpu::catalog::CATALOG;
/// // The cards with FP8 tensor cores, and their dense FP8 peak in TFLOP/s.
/// let fp8: Vec<(&str, f64)> =
///     CATALOG.iter().filter_map(|s| Some((s.name, s.fp8_tflops?))).collect();
/// assert!(fp8.iter().any(|(name, _)| name.contains("H100")));
/// assert!(fp8.iter().all(|&(_, tflops)| tflops > 0.0));
/// ```
pub static CATALOG: &[GpuSpec] = &[
    // NVIDIA H100 Tensor Core GPU datasheet (2023), SXM column: FP16/BF16 Tensor Core
    // 1,979 TFLOPS with sparsity (989.4 dense), FP32 67, 80 GB HBM3 at 3.35 TB/s.
    // SMs and cores: NVIDIA H100 Tensor Core GPU Architecture whitepaper, table 3 (H100 SXM5).
    GpuSpec {
        name: "H100 SXM",
        matches: &["h100"],
        excludes: &["pcie", "nvl"],
        architecture: Architecture::Hopper,
        compute_capability: cc(9, 0),
        sms: 132,
        cuda_cores: 16896,
        vram_gb: 80.0,
        memory_bandwidth_gbs: 3350.0,
        fp16_tflops: 989.4,
        bf16_tflops: Some(989.4),
        fp32_tflops: 67.0,
        fp16_acc16_tflops: 989.4,
        fp8_tflops: Some(1978.9),
        instance_type: None,
    },
    // H100 datasheet, PCIe column: FP16/BF16 1,513 TFLOPS with sparsity (756.5 dense), FP32 51,
    // 80 GB HBM2e at 2 TB/s. SMs and cores: H100 whitepaper, table 3 (H100 PCIe).
    GpuSpec {
        name: "H100 PCIe",
        matches: &["h100", "pcie"],
        excludes: &[],
        architecture: Architecture::Hopper,
        compute_capability: cc(9, 0),
        sms: 114,
        cuda_cores: 14592,
        vram_gb: 80.0,
        memory_bandwidth_gbs: 2000.0,
        fp16_tflops: 756.5,
        bf16_tflops: Some(756.5),
        fp32_tflops: 51.0,
        fp16_acc16_tflops: 756.5,
        fp8_tflops: Some(1513.0),
        instance_type: None,
    },
    // NVIDIA H200 Tensor Core GPU datasheet (2024), SXM column: FP16/BF16 1,979 TFLOPS with
    // sparsity (989.4 dense), FP32 67, 141 GB HBM3e at 4.8 TB/s; same GH100 configuration as the
    // H100 SXM (132 SMs, 16,896 cores).
    GpuSpec {
        name: "H200",
        matches: &["h200"],
        excludes: &["nvl"],
        architecture: Architecture::Hopper,
        compute_capability: cc(9, 0),
        sms: 132,
        cuda_cores: 16896,
        vram_gb: 141.0,
        memory_bandwidth_gbs: 4800.0,
        fp16_tflops: 989.4,
        bf16_tflops: Some(989.4),
        fp32_tflops: 67.0,
        fp16_acc16_tflops: 989.4,
        fp8_tflops: Some(1978.9),
        instance_type: None,
    },
    // NVIDIA A100 Tensor Core GPU datasheet (2021), 80GB SXM column: FP16/BF16 Tensor Core 312
    // TFLOPS dense, FP32 19.5, 2,039 GB/s. SMs and cores: NVIDIA A100 Tensor Core GPU
    // Architecture whitepaper, table 1.
    GpuSpec {
        name: "A100 80GB",
        matches: &["a100", "80gb"],
        excludes: &["pcie"],
        architecture: Architecture::Ampere,
        compute_capability: cc(8, 0),
        sms: 108,
        cuda_cores: 6912,
        vram_gb: 80.0,
        memory_bandwidth_gbs: 2039.0,
        fp16_tflops: 312.0,
        bf16_tflops: Some(312.0),
        fp32_tflops: 19.5,
        fp16_acc16_tflops: 312.0,
        fp8_tflops: None,
        instance_type: None,
    },
    // A100 datasheet, 40GB columns: same compute figures, 1,555 GB/s.
    GpuSpec {
        name: "A100 40GB",
        matches: &["a100"],
        excludes: &["80gb"],
        architecture: Architecture::Ampere,
        compute_capability: cc(8, 0),
        sms: 108,
        cuda_cores: 6912,
        vram_gb: 40.0,
        memory_bandwidth_gbs: 1555.0,
        fp16_tflops: 312.0,
        bf16_tflops: Some(312.0),
        fp32_tflops: 19.5,
        fp16_acc16_tflops: 312.0,
        fp8_tflops: None,
        instance_type: None,
    },
    // NVIDIA Tesla V100 datasheet (2020), SXM2 column: Tensor Performance 125 TFLOPS (FP16 inputs,
    // FP32 accumulation at full rate), FP32 15.7, 32 GB HBM2 at 900 GB/s. 80 SMs and 5,120 cores:
    // NVIDIA Tesla V100 GPU Architecture whitepaper, table 1.
    GpuSpec {
        name: "Tesla V100 SXM2",
        matches: &["v100"],
        excludes: &["pcie"],
        architecture: Architecture::Volta,
        compute_capability: cc(7, 0),
        sms: 80,
        cuda_cores: 5120,
        vram_gb: 32.0,
        memory_bandwidth_gbs: 900.0,
        fp16_tflops: 125.0,
        bf16_tflops: None,
        fp32_tflops: 15.7,
        fp16_acc16_tflops: 125.0,
        fp8_tflops: None,
        instance_type: Some("gpu.tesla-v100"),
    },
    // V100 datasheet, PCIe column: Tensor 112 TFLOPS, FP32 14, 900 GB/s.
    GpuSpec {
        name: "Tesla V100 PCIe",
        matches: &["v100", "pcie"],
        excludes: &[],
        architecture: Architecture::Volta,
        compute_capability: cc(7, 0),
        sms: 80,
        cuda_cores: 5120,
        vram_gb: 32.0,
        memory_bandwidth_gbs: 900.0,
        fp16_tflops: 112.0,
        bf16_tflops: None,
        fp32_tflops: 14.0,
        fp16_acc16_tflops: 112.0,
        fp8_tflops: None,
        instance_type: Some("gpu.tesla-v100"),
    },
    // NVIDIA T4 datasheet (2019): Mixed Precision (FP16/FP32) 65 TFLOPS, FP32 8.1, 16 GB GDDR6
    // at 320 GB/s, 2,560 CUDA cores (40 SMs: NVIDIA Turing GPU Architecture whitepaper, table 4).
    GpuSpec {
        name: "Tesla T4",
        matches: &["t4"],
        excludes: &["t400", "t4000"],
        architecture: Architecture::Turing,
        compute_capability: cc(7, 5),
        sms: 40,
        cuda_cores: 2560,
        vram_gb: 16.0,
        memory_bandwidth_gbs: 320.0,
        fp16_tflops: 65.0,
        bf16_tflops: None,
        fp32_tflops: 8.1,
        fp16_acc16_tflops: 65.0,
        fp8_tflops: None,
        instance_type: Some("gpu.tesla-t4"),
    },
    // NVIDIA Ada GPU Architecture whitepaper (v2.1), appendix table 1 (RTX 4090): Peak FP16
    // Tensor TFLOPS with FP32 Accumulate 165.2 (330.4 sparse), BF16 165.2, FP32 82.6, 24 GB
    // GDDR6X at 1,008 GB/s, 128 SMs, 16,384 cores.
    GpuSpec {
        name: "RTX 4090",
        matches: &["rtx 4090"],
        excludes: &["laptop", "mobile"],
        architecture: Architecture::Ada,
        compute_capability: cc(8, 9),
        sms: 128,
        cuda_cores: 16384,
        vram_gb: 24.0,
        memory_bandwidth_gbs: 1008.0,
        fp16_tflops: 165.2,
        bf16_tflops: Some(165.2),
        fp32_tflops: 82.6,
        fp16_acc16_tflops: 330.3,
        fp8_tflops: Some(330.3),
        instance_type: Some("gpu.rtx4090"),
    },
    // Ada whitepaper, appendix table 2 (RTX 4080): FP16 with FP32 Accumulate 97.5 dense, FP32
    // 48.7, 16 GB GDDR6X at 716.8 GB/s, 76 SMs, 9,728 cores.
    GpuSpec {
        name: "RTX 4080",
        matches: &["rtx 4080"],
        excludes: &["super", "laptop", "mobile"],
        architecture: Architecture::Ada,
        compute_capability: cc(8, 9),
        sms: 76,
        cuda_cores: 9728,
        vram_gb: 16.0,
        memory_bandwidth_gbs: 716.8,
        fp16_tflops: 97.5,
        bf16_tflops: Some(97.5),
        fp32_tflops: 48.7,
        fp16_acc16_tflops: 194.9,
        fp8_tflops: Some(194.9),
        instance_type: None,
    },
    // NVIDIA Ampere GA102 GPU Architecture whitepaper (v2.0), table 9 (RTX 3090): Peak FP16
    // Tensor TFLOPS with FP32 Accumulate 71 (142 sparse), BF16 71, FP32 35.6, 24 GB GDDR6X at
    // 936 GB/s, 82 SMs, 10,496 cores.
    GpuSpec {
        name: "RTX 3090",
        matches: &["rtx 3090"],
        excludes: &[" ti", "laptop", "mobile"],
        architecture: Architecture::Ampere,
        compute_capability: cc(8, 6),
        sms: 82,
        cuda_cores: 10496,
        vram_gb: 24.0,
        memory_bandwidth_gbs: 936.0,
        fp16_tflops: 71.0,
        bf16_tflops: Some(71.0),
        fp32_tflops: 35.6,
        fp16_acc16_tflops: 142.0,
        fp8_tflops: None,
        instance_type: Some("gpu.rtx3090"),
    },
    // GA102 whitepaper, table 9 (RTX 3080): FP16 with FP32 Accumulate 59.5 (119 sparse), FP32
    // 29.8, 10 GB GDDR6X at 760 GB/s, 68 SMs, 8,704 cores.
    GpuSpec {
        name: "RTX 3080",
        matches: &["rtx 3080"],
        excludes: &[" ti", "laptop", "mobile"],
        architecture: Architecture::Ampere,
        compute_capability: cc(8, 6),
        sms: 68,
        cuda_cores: 8704,
        vram_gb: 10.0,
        memory_bandwidth_gbs: 760.0,
        fp16_tflops: 59.5,
        bf16_tflops: Some(59.5),
        fp32_tflops: 29.8,
        fp16_acc16_tflops: 119.0,
        fp8_tflops: None,
        instance_type: Some("gpu.rtx3080"),
    },
    // NVIDIA L40S datasheet (2023): FP16/BF16 Tensor Core 362.05 TFLOPS dense (733 sparse), FP32
    // 91.6, 48 GB GDDR6 at 864 GB/s, 18,176 cores (142 SMs).
    GpuSpec {
        name: "L40S",
        matches: &["l40s"],
        excludes: &[],
        architecture: Architecture::Ada,
        compute_capability: cc(8, 9),
        sms: 142,
        cuda_cores: 18176,
        vram_gb: 48.0,
        memory_bandwidth_gbs: 864.0,
        fp16_tflops: 362.05,
        bf16_tflops: Some(362.05),
        fp32_tflops: 91.6,
        fp16_acc16_tflops: 362.05,
        fp8_tflops: Some(733.0),
        instance_type: None,
    },
    // NVIDIA L4 datasheet (2023): FP16/BF16 Tensor Core 242 TFLOPS with sparsity (121 dense),
    // FP32 30.3, 24 GB GDDR6 at 300 GB/s, 7,424 cores (58 SMs).
    GpuSpec {
        name: "L4",
        matches: &["nvidia l4"],
        excludes: &["l40"],
        architecture: Architecture::Ada,
        compute_capability: cc(8, 9),
        sms: 58,
        cuda_cores: 7424,
        vram_gb: 24.0,
        memory_bandwidth_gbs: 300.0,
        fp16_tflops: 121.0,
        bf16_tflops: Some(121.0),
        fp32_tflops: 30.3,
        fp16_acc16_tflops: 121.0,
        fp8_tflops: Some(242.5),
        instance_type: None,
    },
];

/// What the driver tells about a device, as the catalog needs it.
///
/// ```
/// use hikube_gpu::catalog::{identify, DeviceFacts};
/// use hikube_gpu::{ComputeCapability, Provenance};
/// let h100 = DeviceFacts {
///     name: "NVIDIA H100 80GB HBM3",
///     compute_capability: ComputeCapability::new(9, 0),
///     sms: 132,
///     sm_clock_khz: 1_980_000,
///     memory_clock_khz: 2_619_000,
///     memory_bus_width_bits: 5120,
///     total_memory: 80 << 30,
/// };
/// let model = identify(&h100);
/// assert_eq!(model.provenance, Provenance::Catalog); // a known card: the published figures
/// assert_eq!(model.fp16_tflops, 989.4);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceFacts<'a> {
    /// The driver's device name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: &'a str,
    /// Compute capability.
    pub compute_capability: ComputeCapability,
    /// Streaming multiprocessors.
    pub sms: u32,
    /// Peak SM clock in kHz.
    pub sm_clock_khz: u32,
    /// Peak memory clock in kHz.
    pub memory_clock_khz: u32,
    /// Memory bus width in bits.
    pub memory_bus_width_bits: u32,
    /// Total memory in bytes.
    pub total_memory: usize,
}

/// The catalog entry whose name patterns match `device_name`, if any (without checking SMs).
///
/// ```
/// let spec = hikube_gpu::catalog::lookup("NVIDIA GeForce RTX 4090").unwrap();
/// assert_eq!(spec.fp16_tflops, 165.2);
/// assert_eq!(spec.instance_type, Some("gpu.rtx4090"));
/// ```
pub fn lookup(device_name: &str) -> Option<&'static GpuSpec> {
    let name = device_name.to_lowercase();
    CATALOG.iter().find(|s| {
        s.matches.iter().all(|m| name.contains(m)) && !s.excludes.iter().any(|x| name.contains(x))
    })
}

/// The model of a device: the catalog's entry when its name matches and its SM count agrees
/// (a cut-down variant with the same name gets derived figures instead), else figures derived
/// from its properties. Never fails.
///
/// ```
/// use hikube_gpu::catalog::{identify, DeviceFacts};
/// use hikube_gpu::{ComputeCapability, Provenance};
/// let facts = DeviceFacts {
///     name: "NVIDIA H100 80GB HBM3",
///     compute_capability: ComputeCapability::new(9, 0),
///     sms: 132,
///     sm_clock_khz: 1_980_000,
///     memory_clock_khz: 2_619_000,
///     memory_bus_width_bits: 5120,
///     total_memory: 80 << 30,
/// };
/// let model = identify(&facts);
/// assert_eq!((model.provenance, model.fp8_tflops), (Provenance::Catalog, Some(1978.9)));
/// let cut_down = identify(&DeviceFacts { sms: 114, ..facts }); // not the catalog's H100 SXM
/// assert_eq!(cut_down.provenance, Provenance::Derived);
/// ```
pub fn identify(facts: &DeviceFacts<'_>) -> GpuModel {
    match lookup(facts.name) {
        Some(spec)
            if spec.sms == facts.sms && spec.compute_capability == facts.compute_capability =>
        {
            spec.into()
        }
        _ => derive(facts),
    }
}

/// Tensor-core FLOPs per SM per clock for FP16 inputs with FP32 accumulation, dense, by compute
/// capability. From the architecture whitepapers: Volta/Turing 8 tensor cores × 64 FMA; GA100 4 ×
/// 256 FMA; GA10x/AD10x 4 × 128 FMA at FP16 accumulate, halved for FP32 accumulate on GeForce;
/// GH100 4 × 512 FMA.
fn tensor_flops_per_sm_clock(cc: ComputeCapability, geforce: bool) -> f64 {
    let full = match (cc.major, cc.minor) {
        (7, _) => 1024.0,
        (8, 0) => 2048.0,
        (8, _) => 1024.0,
        (9, 0) => 4096.0,
        (10, _) => 8192.0,
        _ => 1024.0,
    };
    if geforce && matches!((cc.major, cc.minor), (7, 5) | (8, 6) | (8, 9) | (12, _)) {
        full / 2.0
    } else {
        full
    }
}

/// FP32 cores per SM by compute capability (CUDA C++ Programming Guide, "Arithmetic
/// Instructions" throughput table: 64 results per clock per SM for 7.x and 8.0, 128 for 8.6+).
fn fp32_cores_per_sm(cc: ComputeCapability) -> u32 {
    match (cc.major, cc.minor) {
        (7, _) | (8, 0) => 64,
        _ => 128,
    }
}

/// Figures derived from a device's properties: peak rates from SMs × per-SM throughput × clock,
/// bandwidth from the memory clock (double data rate) and bus width.
///
/// ```
/// use hikube_gpu::catalog::{derive, DeviceFacts};
/// use hikube_gpu::{ComputeCapability, Provenance};
/// // A GPU the catalog does not know: an estimate from what the driver says.
/// let facts = DeviceFacts {
///     name: "NVIDIA Future GPU",
///     compute_capability: ComputeCapability::new(9, 0),
///     sms: 100,
///     sm_clock_khz: 2_000_000,
///     memory_clock_khz: 2_000_000,
///     memory_bus_width_bits: 4096,
///     total_memory: 64 << 30,
/// };
/// let model = derive(&facts);
/// assert_eq!(model.provenance, Provenance::Derived);
/// assert!((model.fp16_tflops - 100.0 * 4096.0 * 2.0 / 1e3).abs() < 1e-6); // SMs x FLOP/clk x GHz
/// ```
pub fn derive(facts: &DeviceFacts<'_>) -> GpuModel {
    let cc = facts.compute_capability;
    let clock_ghz = f64::from(facts.sm_clock_khz) / 1e6;
    let sms = f64::from(facts.sms);
    let geforce = facts.name.to_lowercase().contains("geforce");
    let fp16 = sms * tensor_flops_per_sm_clock(cc, geforce) * clock_ghz / 1e3;
    // FP16 accumulation runs at the full rate everywhere; FP8 (8.9 and newer) at twice the FP16
    // rate with FP32 accumulation (halved on GeForce cards like FP16's).
    let fp16_acc16 = sms * tensor_flops_per_sm_clock(cc, false) * clock_ghz / 1e3;
    let fp8 = (cc >= ComputeCapability::new(8, 9)).then_some(2.0 * fp16);
    let cores = facts.sms * fp32_cores_per_sm(cc);
    GpuModel {
        name: Cow::Owned(facts.name.to_string()),
        architecture: cc.architecture(),
        sms: facts.sms,
        cuda_cores: cores,
        vram_gb: facts.total_memory as f64 / 1e9,
        memory_bandwidth_gbs: 2.0
            * f64::from(facts.memory_clock_khz)
            * 1e3
            * f64::from(facts.memory_bus_width_bits)
            / 8.0
            / 1e9,
        fp16_tflops: fp16,
        bf16_tflops: (cc.major >= 8).then_some(fp16),
        fp32_tflops: f64::from(cores) * 2.0 * clock_ghz / 1e3,
        fp16_acc16_tflops: fp16_acc16,
        fp8_tflops: fp8,
        instance_type: None,
        provenance: Provenance::Derived,
    }
}
