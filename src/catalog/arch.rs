//! Compute capabilities, GPU architectures, and the PTX targets the crate ships.

use std::fmt;

/// A device's compute capability, e.g. 9.0 for the H100.
///
/// ```
/// use hikube_gpu::{Architecture, ComputeCapability, PtxArch};
/// let rtx4090 = ComputeCapability::new(8, 9);
/// assert_eq!(rtx4090.architecture(), Architecture::Ada);
/// assert!(PtxArch::Compute80.runs_on(rtx4090));
/// assert!(!PtxArch::Compute90a.runs_on(rtx4090));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComputeCapability {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl ComputeCapability {
    /// A compute capability from its two numbers.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// The architecture family of this compute capability.
    ///
    /// ```
    /// use hikube_gpu::{Architecture, ComputeCapability};
    /// assert_eq!(ComputeCapability::new(8, 9).architecture(), Architecture::Ada);
    /// ```
    pub fn architecture(self) -> Architecture {
        match (self.major, self.minor) {
            (7, 0) | (7, 2) => Architecture::Volta,
            (7, 5) => Architecture::Turing,
            (8, 9) => Architecture::Ada,
            (8, _) => Architecture::Ampere,
            (9, _) => Architecture::Hopper,
            (10, _) | (12, _) => Architecture::Blackwell,
            _ => Architecture::Other,
        }
    }
}

impl fmt::Display for ComputeCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// NVIDIA GPU architecture families.
///
/// ```
/// use hikube_gpu::{Architecture, ComputeCapability};
/// assert_eq!(ComputeCapability::new(8, 9).architecture(), Architecture::Ada);
/// assert_eq!(ComputeCapability::new(9, 0).architecture(), Architecture::Hopper);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Architecture {
    /// Compute capability 7.0 (V100).
    Volta,
    /// 7.5 (T4, RTX 20).
    Turing,
    /// 8.0 and 8.6 (A100, RTX 30).
    Ampere,
    /// 8.9 (RTX 40, L4, L40S).
    Ada,
    /// 9.0 (H100, H200).
    Hopper,
    /// 10.x and 12.x (B200, RTX 50).
    Blackwell,
    /// Anything else.
    Other,
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A PTX target the crate's kernels are compiled for. The driver JIT-compiles the PTX for the
/// device at load time.
///
/// ```
/// use hikube_gpu::{ComputeCapability, PtxArch};
/// let rtx4090 = ComputeCapability::new(8, 9);
/// assert!(PtxArch::Compute80.runs_on(rtx4090));
/// assert!(!PtxArch::Compute90a.runs_on(rtx4090)); // arch-specific: Hopper only
/// assert_eq!(PtxArch::Compute89.name(), "compute_89");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum PtxArch {
    /// `compute_70`: Volta and newer (V100 path).
    Compute70,
    /// `compute_75`: Turing and newer (T4 path).
    Compute75,
    /// `compute_80`: Ampere and newer (A100, RTX 30/40, L4, L40S path).
    Compute80,
    /// `compute_89`: Ada and newer (RTX 40, L4, L40S): the FP8 `mma.sync` of the FP8 GEMM.
    Compute89,
    /// `compute_90a`: Hopper only (H100, H200): wgmma, TMA, setmaxnreg.
    Compute90a,
}

impl PtxArch {
    /// Every target, oldest first.
    pub const ALL: [PtxArch; 5] = [
        PtxArch::Compute70,
        PtxArch::Compute75,
        PtxArch::Compute80,
        PtxArch::Compute89,
        PtxArch::Compute90a,
    ];

    /// The name NVRTC and ptxas use, e.g. `compute_80`.
    pub fn name(self) -> &'static str {
        match self {
            PtxArch::Compute70 => "compute_70",
            PtxArch::Compute75 => "compute_75",
            PtxArch::Compute80 => "compute_80",
            PtxArch::Compute89 => "compute_89",
            PtxArch::Compute90a => "compute_90a",
        }
    }

    /// The lowest compute capability that runs this PTX.
    pub fn min_capability(self) -> ComputeCapability {
        match self {
            PtxArch::Compute70 => ComputeCapability::new(7, 0),
            PtxArch::Compute75 => ComputeCapability::new(7, 5),
            PtxArch::Compute80 => ComputeCapability::new(8, 0),
            PtxArch::Compute89 => ComputeCapability::new(8, 9),
            PtxArch::Compute90a => ComputeCapability::new(9, 0),
        }
    }

    /// Whether a device of this compute capability can run this PTX. Plain targets run on their
    /// capability and every later one; the arch-specific `compute_90a` runs on 9.0 only.
    ///
    /// ```
    /// use hikube_gpu::{ComputeCapability, PtxArch};
    /// assert!(PtxArch::Compute80.runs_on(ComputeCapability::new(9, 0)));
    /// assert!(!PtxArch::Compute90a.runs_on(ComputeCapability::new(10, 0)));
    /// ```
    pub fn runs_on(self, cc: ComputeCapability) -> bool {
        match self {
            PtxArch::Compute90a => cc == ComputeCapability::new(9, 0),
            PtxArch::Compute70 | PtxArch::Compute75 | PtxArch::Compute80 | PtxArch::Compute89 => {
                cc >= self.min_capability()
            }
        }
    }

    /// The best target among `available` for a device: the newest one it can run.
    ///
    /// ```
    /// use hikube_gpu::{ComputeCapability, PtxArch};
    /// let shipped = [PtxArch::Compute70, PtxArch::Compute80, PtxArch::Compute90a];
    /// assert_eq!(PtxArch::best_for(ComputeCapability::new(8, 9), &shipped), Some(PtxArch::Compute80));
    /// assert_eq!(PtxArch::best_for(ComputeCapability::new(6, 1), &shipped), None);
    /// ```
    pub fn best_for(cc: ComputeCapability, available: &[PtxArch]) -> Option<PtxArch> {
        available.iter().copied().filter(|a| a.runs_on(cc)).max()
    }
}

impl fmt::Display for PtxArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
