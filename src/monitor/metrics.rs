//! What NVML tells about a GPU at one moment: [`GpuMetrics`], [`ThrottleReasons`], [`GpuProcess`],
//! [`PcieLink`].

use serde::{Deserialize, Serialize};
use std::fmt;

/// One reading of a GPU's state. Fields that the GPU or driver does not report (some GeForce
/// cards have no power limit; containers may hide processes) are `None`.
///
/// ```no_run
/// use hikube_gpu::{Device, Monitor};
/// let device = Device::open(0)?;
/// let m = Monitor::new()?.device_metrics(&device)?;
/// println!("{}: {:?} W, {:?} °C, {} MiB used", m.name, m.power_w, m.temperature_c,
///          m.memory_used_bytes >> 20);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuMetrics {
    /// UUID as NVML and `nvidia-smi` print it, `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub uuid: String,
    /// NVML's device name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Percent of the last sample period (1/6 s to 1 s, by GPU) in which a kernel ran.
    pub gpu_utilization_percent: Option<u32>,
    /// Percent of the last sample period in which device memory was read or written.
    pub memory_utilization_percent: Option<u32>,
    /// Device memory in use, in bytes (all processes, without the driver's reserve).
    pub memory_used_bytes: u64,
    /// Device memory free, in bytes (what is neither used nor reserved by the driver).
    pub memory_free_bytes: u64,
    /// Device memory in all, in bytes.
    pub memory_total_bytes: u64,
    /// GPU die temperature in °C.
    pub temperature_c: Option<u32>,
    /// Power draw in watts (NVML's `power.draw`, averaged over about a second on recent GPUs).
    pub power_w: Option<f64>,
    /// The power limit the driver enforces, in watts.
    pub power_limit_w: Option<f64>,
    /// SM clock in MHz.
    pub sm_clock_mhz: Option<u32>,
    /// Memory clock in MHz.
    pub memory_clock_mhz: Option<u32>,
    /// Why the clocks are below their maximum, if they are.
    pub throttle_reasons: Option<ThrottleReasons>,
    /// Processes using the GPU (compute and graphics). Empty when not asked for (the
    /// [`Sampler`](super::Sampler) skips them) or when NVML may not list them.
    pub processes: Vec<GpuProcess>,
}

impl GpuMetrics {
    /// Fraction of device memory in use, 0 to 1 (0 when the total is unknown).
    pub fn memory_used_fraction(&self) -> f64 {
        if self.memory_total_bytes == 0 {
            0.0
        } else {
            self.memory_used_bytes as f64 / self.memory_total_bytes as f64
        }
    }
}

/// A process with a context on the GPU.
///
/// ```no_run
/// use hikube_gpu::{Device, DeviceBuffer, Monitor};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let buf = DeviceBuffer::<u8>::zeroed(&stream, 256 << 20)?;
/// let m = Monitor::new()?.device_metrics(&device)?;
/// // NVML gives host PIDs: in a container with its own PID namespace this process is not listed.
/// if let Some(me) = m.processes.iter().find(|p| p.pid == std::process::id()) {
///     println!("this process holds {:?} bytes", me.used_memory_bytes);
///     assert!(me.used_memory_bytes.is_none_or(|b| b >= buf.num_bytes() as u64));
/// }
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuProcess {
    /// Process id (in the host's PID namespace: in a container it may name no local process).
    pub pid: u32,
    /// Device memory the process holds, in bytes, where the driver reports it.
    pub used_memory_bytes: Option<u64>,
}

/// The PCIe link between host and GPU.
///
/// ```no_run
/// use hikube_gpu::{Device, Monitor};
/// let device = Device::open(0)?;
/// if let Some(link) = Monitor::new()?.pcie_link(&device.properties().uuid)? {
///     // An idle GPU may run its link at a lower generation than it can.
///     assert!(link.generation <= link.max_generation && link.width <= link.max_width);
///     println!("PCIe gen {} x{} now, gen {} x{} at most: {:?} GB/s per direction",
///              link.generation, link.width, link.max_generation, link.max_width, link.peak_gbs());
/// }
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcieLink {
    /// Generation in use now (idle GPUs drop to a lower one to save power).
    pub generation: u32,
    /// Lanes in use now.
    pub width: u32,
    /// The highest generation this GPU and this host support together.
    pub max_generation: u32,
    /// The most lanes this GPU and this host support together.
    pub max_width: u32,
}

impl PcieLink {
    /// Peak bandwidth of the link at its maximum generation and width, in GB/s per direction:
    /// transfer rate × lanes × line-code efficiency (8b/10b up to gen 2, 128b/130b for gen 3 to
    /// 5, 242/256 FLIT for gen 6). Protocol overhead keeps real copies some 10-15 % below it.
    ///
    /// ```
    /// let link = hikube_gpu::monitor::PcieLink { generation: 5, width: 16, max_generation: 5, max_width: 16 };
    /// assert!((link.peak_gbs().unwrap() - 63.0).abs() < 0.1);
    /// ```
    pub fn peak_gbs(&self) -> Option<f64> {
        let (gt_per_s, efficiency) = match self.max_generation {
            1 => (2.5, 0.8),
            2 => (5.0, 0.8),
            3 => (8.0, 128.0 / 130.0),
            4 => (16.0, 128.0 / 130.0),
            5 => (32.0, 128.0 / 130.0),
            6 => (64.0, 242.0 / 256.0),
            _ => return None,
        };
        (self.max_width > 0).then(|| gt_per_s * f64::from(self.max_width) * efficiency / 8.0)
    }
}

/// Why a GPU's clocks are below their maximum: a set of NVML's `nvmlClocksEventReason*` flags
/// (formerly "throttle reasons"), with the same bit values. Serialized as a list of names.
///
/// ```
/// use hikube_gpu::monitor::ThrottleReasons;
/// let r = ThrottleReasons::SW_POWER_CAP | ThrottleReasons::GPU_IDLE;
/// assert_eq!(r.names(), ["gpu_idle", "sw_power_cap"]);
/// assert!(r.limits_performance());
/// assert!(!ThrottleReasons::GPU_IDLE.limits_performance());
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "Vec<String>", try_from = "Vec<String>")]
pub struct ThrottleReasons(u64);

impl ThrottleReasons {
    /// No reason: the clocks are as high as they go.
    pub const NONE: Self = Self(0);
    /// Nothing runs on the GPU.
    pub const GPU_IDLE: Self = Self(0x1);
    /// Clocks held by the applications-clocks setting (`nvidia-smi -ac`).
    pub const APPLICATIONS_CLOCKS_SETTING: Self = Self(0x2);
    /// The power cap: software lowers clocks to stay under the power limit.
    pub const SW_POWER_CAP: Self = Self(0x4);
    /// Hardware slowdown (clocks halved or worse): too hot, power brake, or power spike.
    pub const HW_SLOWDOWN: Self = Self(0x8);
    /// Held back by another GPU of its sync-boost group.
    pub const SYNC_BOOST: Self = Self(0x10);
    /// Software thermal slowdown: GPU or memory above its operating temperature.
    pub const SW_THERMAL_SLOWDOWN: Self = Self(0x20);
    /// Hardware thermal slowdown: the GPU is too hot.
    pub const HW_THERMAL_SLOWDOWN: Self = Self(0x40);
    /// Hardware power brake: an external power-brake signal (e.g. from the power supply).
    pub const HW_POWER_BRAKE_SLOWDOWN: Self = Self(0x80);
    /// Clocks held by the display clock setting.
    pub const DISPLAY_CLOCK_SETTING: Self = Self(0x100);

    /// Every known reason with its name, in bit order.
    pub const ALL: [(Self, &'static str); 9] = [
        (Self::GPU_IDLE, "gpu_idle"),
        (
            Self::APPLICATIONS_CLOCKS_SETTING,
            "applications_clocks_setting",
        ),
        (Self::SW_POWER_CAP, "sw_power_cap"),
        (Self::HW_SLOWDOWN, "hw_slowdown"),
        (Self::SYNC_BOOST, "sync_boost"),
        (Self::SW_THERMAL_SLOWDOWN, "sw_thermal_slowdown"),
        (Self::HW_THERMAL_SLOWDOWN, "hw_thermal_slowdown"),
        (Self::HW_POWER_BRAKE_SLOWDOWN, "hw_power_brake_slowdown"),
        (Self::DISPLAY_CLOCK_SETTING, "display_clock_setting"),
    ];

    /// The reasons whose bits are set in NVML's bit mask (unknown bits are kept).
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// NVML's bit mask.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// True when no reason is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when every reason of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The names of the known reasons set, in bit order.
    pub fn names(self) -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|(r, _)| self.contains(*r))
            .map(|&(_, name)| name)
            .collect()
    }

    /// True when a reason that costs performance under load is set: the power cap, or a
    /// thermal, hardware or power-brake slowdown (idle, sync boost and clock settings are not).
    pub const fn limits_performance(self) -> bool {
        let limiting = Self::SW_POWER_CAP.0
            | Self::HW_SLOWDOWN.0
            | Self::SW_THERMAL_SLOWDOWN.0
            | Self::HW_THERMAL_SLOWDOWN.0
            | Self::HW_POWER_BRAKE_SLOWDOWN.0;
        self.0 & limiting != 0
    }
}

impl std::ops::BitOr for ThrottleReasons {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for ThrottleReasons {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for ThrottleReasons {
    /// The names joined by `, `, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.names();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

impl fmt::Debug for ThrottleReasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ThrottleReasons({self} = {:#x})", self.0)
    }
}

impl From<ThrottleReasons> for Vec<String> {
    fn from(r: ThrottleReasons) -> Self {
        r.names().into_iter().map(String::from).collect()
    }
}

impl TryFrom<Vec<String>> for ThrottleReasons {
    type Error = String;
    fn try_from(names: Vec<String>) -> Result<Self, String> {
        names.iter().try_fold(Self::NONE, |acc, name| {
            Self::ALL
                .iter()
                .find(|(_, n)| n == name)
                .map(|&(r, _)| acc | r)
                .ok_or_else(|| format!("unknown throttle reason `{name}`"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_reasons_match_nvml_bits_and_round_trip() {
        // nvml.h: nvmlClocksEventReasonSwPowerCap 0x4, ...HwThermalSlowdown 0x40.
        let r = ThrottleReasons::from_bits(0x44);
        assert_eq!(r.names(), ["sw_power_cap", "hw_thermal_slowdown"]);
        assert_eq!(r.to_string(), "sw_power_cap, hw_thermal_slowdown");
        assert_eq!(ThrottleReasons::NONE.to_string(), "none");
        let json = serde_json_like(&r);
        assert_eq!(json, ["sw_power_cap", "hw_thermal_slowdown"]);
        assert_eq!(ThrottleReasons::try_from(json).unwrap(), r);
        assert!(ThrottleReasons::try_from(vec!["warp_drive".to_string()]).is_err());
        let mut all = ThrottleReasons::NONE;
        for (reason, _) in ThrottleReasons::ALL {
            assert_eq!(reason.bits().count_ones(), 1);
            assert!(!all.contains(reason), "two reasons share a bit");
            all |= reason;
        }
        assert_eq!(all.bits(), 0x1ff);
    }

    fn serde_json_like(r: &ThrottleReasons) -> Vec<String> {
        (*r).into()
    }

    #[test]
    fn pcie_peaks() {
        let link = |max_generation, max_width| PcieLink {
            generation: 1,
            width: 1,
            max_generation,
            max_width,
        };
        assert!((link(4, 16).peak_gbs().unwrap() - 31.5).abs() < 0.05);
        assert!((link(3, 8).peak_gbs().unwrap() - 7.88).abs() < 0.01);
        assert_eq!(link(0, 16).peak_gbs(), None);
        assert_eq!(link(5, 0).peak_gbs(), None);
    }
}
