//! [`Monitor`]: NVML, initialized once, and its devices found by UUID.

use super::metrics::{GpuMetrics, GpuProcess, PcieLink, ThrottleReasons};
use super::sampler::{Measured, Sampler};
use crate::device::{normalize_uuid, Device};
use crate::error::{Error, Result};
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use std::sync::Arc;
use std::time::Duration;

/// NVML's view of the GPUs, joined to the crate's [`Device`]s by UUID. Cheap to clone (clones
/// share one NVML session) and usable from any thread.
///
/// CUDA numbers the GPUs it may use (after `CUDA_VISIBLE_DEVICES`, fastest first or in PCI
/// order, by `CUDA_DEVICE_ORDER`); NVML numbers every GPU of the machine in PCI order. The two
/// indices often differ, so the monitor never uses an index across them: it finds the NVML device
/// whose UUID is the CUDA device's.
///
/// ```no_run
/// use hikube_gpu::{monitor::Monitor, Device};
/// let monitor = Monitor::new()?;
/// let device = Device::open(0)?;
/// let m = monitor.device_metrics(&device)?;
/// println!("{}: {:?} W, {:?} °C, {} of {} bytes used", m.uuid, m.power_w, m.temperature_c,
///          m.memory_used_bytes, m.memory_total_bytes);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone)]
pub struct Monitor {
    nvml: Arc<Nvml>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

/// An NVML failure of `call` on the GPU `uuid`.
pub(crate) fn nvml_error(call: &str, uuid: &str) -> impl FnOnce(NvmlError) -> Error {
    let call = if uuid.is_empty() {
        call.to_string()
    } else {
        format!("{call} of {uuid}")
    };
    move |e| Error::Nvml {
        call,
        reason: e.to_string(),
    }
}

/// `Ok(None)` where the GPU, the driver or our permissions do not give this reading.
fn optional<T>(
    result: std::result::Result<T, NvmlError>,
    call: &str,
    uuid: &str,
) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(
            NvmlError::NotSupported
            | NvmlError::NoPermission
            | NvmlError::FunctionNotFound
            | NvmlError::FailedToLoadSymbol(_),
        ) => Ok(None),
        Err(e) => Err(nvml_error(call, uuid)(e)),
    }
}

/// Reads the metrics of one NVML device; processes only if `processes`.
pub(crate) fn read_metrics(
    dev: &nvml_wrapper::Device<'_>,
    uuid: &str,
    processes: bool,
) -> Result<GpuMetrics> {
    let name = dev.name().map_err(nvml_error("name", uuid))?;
    let memory = dev.memory_info().map_err(nvml_error("memory info", uuid))?;
    let util = optional(dev.utilization_rates(), "utilization", uuid)?;
    let mw_to_w = |mw: u32| f64::from(mw) / 1e3;
    let mut metrics = GpuMetrics {
        uuid: uuid.to_string(),
        name,
        gpu_utilization_percent: util.as_ref().map(|u| u.gpu),
        memory_utilization_percent: util.as_ref().map(|u| u.memory),
        memory_used_bytes: memory.used,
        memory_free_bytes: memory.free,
        memory_total_bytes: memory.total,
        temperature_c: optional(dev.temperature(TemperatureSensor::Gpu), "temperature", uuid)?,
        power_w: optional(dev.power_usage(), "power usage", uuid)?.map(mw_to_w),
        power_limit_w: optional(dev.enforced_power_limit(), "power limit", uuid)?.map(mw_to_w),
        sm_clock_mhz: optional(dev.clock_info(Clock::SM), "SM clock", uuid)?,
        memory_clock_mhz: optional(dev.clock_info(Clock::Memory), "memory clock", uuid)?,
        throttle_reasons: optional(dev.current_throttle_reasons(), "clock event reasons", uuid)?
            .map(|r| ThrottleReasons::from_bits(r.bits())),
        processes: Vec::new(),
    };
    if processes {
        let mut list: Vec<GpuProcess> = Vec::new();
        for found in [
            optional(dev.running_compute_processes(), "compute processes", uuid)?,
            optional(dev.running_graphics_processes(), "graphics processes", uuid)?,
        ]
        .into_iter()
        .flatten()
        .flatten()
        {
            let used = match found.used_gpu_memory {
                UsedGpuMemory::Used(bytes) => Some(bytes),
                UsedGpuMemory::Unavailable => None,
            };
            // A process with both a compute and a graphics context is listed twice.
            match list.iter_mut().find(|p| p.pid == found.pid) {
                Some(p) => p.used_memory_bytes = p.used_memory_bytes.max(used),
                None => list.push(GpuProcess {
                    pid: found.pid,
                    used_memory_bytes: used,
                }),
            }
        }
        list.sort_by_key(|p| p.pid);
        metrics.processes = list;
    }
    Ok(metrics)
}

impl Monitor {
    /// Loads NVML (`libnvidia-ml.so.1`, installed with the NVIDIA driver) and initializes it.
    /// Without it this is an [`Error::NoNvml`] that says why; nothing else in the crate needs
    /// NVML.
    pub fn new() -> Result<Monitor> {
        match Nvml::init() {
            Ok(nvml) => Ok(Monitor {
                nvml: Arc::new(nvml),
            }),
            Err(NvmlError::LibloadingError(e)) => Err(Error::NoNvml {
                reason: format!(
                    "libnvidia-ml.so.1 could not be loaded (is the NVIDIA driver installed?): {e}"
                ),
            }),
            Err(NvmlError::DriverNotLoaded) => Err(Error::NoNvml {
                reason: "the NVIDIA kernel driver is not loaded".into(),
            }),
            Err(e) => Err(Error::NoNvml {
                reason: format!("nvmlInit failed: {e}"),
            }),
        }
    }

    /// The driver's version as NVML and `nvidia-smi` print it, e.g. `580.95.05`.
    pub fn driver_version(&self) -> Result<String> {
        self.nvml
            .sys_driver_version()
            .map_err(nvml_error("driver version", ""))
    }

    /// How many GPUs NVML sees: every GPU of the machine, whatever `CUDA_VISIBLE_DEVICES` says.
    pub fn nvml_device_count(&self) -> Result<usize> {
        Ok(self
            .nvml
            .device_count()
            .map_err(nvml_error("device count", ""))? as usize)
    }

    /// NVML's index of the GPU whose UUID is `uuid` (`GPU-…`; prefix and case do not matter).
    pub(crate) fn nvml_index(&self, uuid: &str) -> Result<u32> {
        let want = normalize_uuid(uuid);
        let count = self
            .nvml
            .device_count()
            .map_err(nvml_error("device count", ""))?;
        for index in 0..count {
            let dev = self
                .nvml
                .device_by_index(index)
                .map_err(nvml_error("device by index", ""))?;
            let found = dev.uuid().map_err(nvml_error("UUID", ""))?;
            if normalize_uuid(&found) == want {
                return Ok(index);
            }
        }
        Err(Error::NvmlDeviceNotFound {
            uuid: uuid.to_string(),
            nvml_count: count as usize,
        })
    }

    pub(crate) fn with_device<T>(
        &self,
        uuid: &str,
        f: impl FnOnce(&nvml_wrapper::Device<'_>) -> Result<T>,
    ) -> Result<T> {
        let index = self.nvml_index(uuid)?;
        let dev = self
            .nvml
            .device_by_index(index)
            .map_err(nvml_error("device by index", uuid))?;
        f(&dev)
    }

    /// NVML itself, for the crate's other NVML readers (the multi-GPU topology).
    pub(crate) fn nvml(&self) -> &Nvml {
        &self.nvml
    }

    /// The metrics of `device` now, processes included.
    pub fn device_metrics(&self, device: &Device) -> Result<GpuMetrics> {
        self.metrics_by_uuid(&device.properties().uuid)
    }

    /// The metrics now of the GPU whose UUID is `uuid` (as
    /// [`DeviceProperties::uuid`](crate::DeviceProperties::uuid) or `nvidia-smi -L` give it),
    /// processes included. With
    /// [`Device::describe`] this monitors a GPU without opening a CUDA context on it.
    pub fn metrics_by_uuid(&self, uuid: &str) -> Result<GpuMetrics> {
        let uuid = canonical_uuid(uuid);
        self.with_device(&uuid, |dev| read_metrics(dev, &uuid, true))
    }

    /// The PCIe link of the GPU whose UUID is `uuid`; `None` where NVML does not report it
    /// (e.g. SXM boards in some virtual machines).
    pub fn pcie_link(&self, uuid: &str) -> Result<Option<PcieLink>> {
        let uuid = canonical_uuid(uuid);
        self.with_device(&uuid, |dev| {
            let read = |r, call| optional(r, call, &uuid);
            Ok(
                match (
                    read(dev.current_pcie_link_gen(), "PCIe generation")?,
                    read(dev.current_pcie_link_width(), "PCIe width")?,
                    read(dev.max_pcie_link_gen(), "max PCIe generation")?,
                    read(dev.max_pcie_link_width(), "max PCIe width")?,
                ) {
                    (Some(generation), Some(width), Some(max_generation), Some(max_width)) => {
                        Some(PcieLink {
                            generation,
                            width,
                            max_generation,
                            max_width,
                        })
                    }
                    _ => None,
                },
            )
        })
    }

    /// Starts recording `device`'s metrics every `period` on a background thread (without the
    /// process list, to keep each reading cheap). See [`Sampler`].
    pub fn sampler(&self, device: &Device, period: Duration) -> Result<Sampler> {
        self.sampler_by_uuid(&device.properties().uuid, period)
    }

    /// [`Monitor::sampler`] for the GPU whose UUID is `uuid`.
    pub fn sampler_by_uuid(&self, uuid: &str, period: Duration) -> Result<Sampler> {
        let uuid = canonical_uuid(uuid);
        let index = self.nvml_index(&uuid)?;
        let nvml = self.nvml.clone();
        Sampler::spawn(period, move || {
            // A handle by index is a table look-up in NVML; taking it per reading keeps the
            // thread free of a borrow of `nvml`.
            let dev = nvml
                .device_by_index(index)
                .map_err(nvml_error("device by index", &uuid))?;
            read_metrics(&dev, &uuid, false)
        })
    }

    /// Runs `work` while sampling `device` every `period`, and returns its value with the
    /// machine's state meanwhile: mean power and SM clock, peak temperature, clock-limiting
    /// reasons. Benchmarks use it to report FLOP/s per watt and to catch throttling.
    ///
    /// Recent GPUs average their power reading over about a second, so measure for two seconds
    /// or more and take [`Measured::state_after`] one second for a power figure that belongs to
    /// `work` alone.
    ///
    /// ```no_run
    /// use hikube_gpu::{monitor::Monitor, ops, Device, DeviceBuffer};
    /// use std::time::Duration;
    /// let device = Device::open(0)?;
    /// let stream = device.default_stream();
    /// let x = DeviceBuffer::<f32>::zeroed(&stream, 1 << 24)?;
    /// let mut y = DeviceBuffer::<f32>::zeroed(&stream, 1 << 24)?;
    /// let run = Monitor::new()?.measure(&device, Duration::from_millis(50), || {
    ///     for _ in 0..2000 {
    ///         ops::axpy(&stream, 1.0, &x, &mut y)?;
    ///     }
    ///     stream.synchronize()
    /// })?;
    /// println!("{:?} W at {:?} MHz, throttled: {}", run.state.mean_power_w,
    ///          run.state.mean_sm_clock_mhz, run.state.throttle_reasons);
    /// # Ok::<(), hikube_gpu::Error>(())
    /// ```
    pub fn measure<T>(
        &self,
        device: &Device,
        period: Duration,
        work: impl FnOnce() -> Result<T>,
    ) -> Result<Measured<T>> {
        let sampler = self.sampler(device, period)?;
        let value = work()?;
        let wall = sampler.elapsed();
        let series = sampler.stop()?;
        Ok(Measured {
            value,
            state: series.summary(),
            wall,
            series,
        })
    }
}

/// `GPU-` followed by the lower-case UUID, the form NVML and `nvidia-smi` print.
fn canonical_uuid(uuid: &str) -> String {
    format!("GPU-{}", normalize_uuid(uuid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_canonical() {
        assert_eq!(
            canonical_uuid(" 00112233-4455-6677-8899-AABBCCDDEEFF"),
            "GPU-00112233-4455-6677-8899-aabbccddeeff"
        );
        assert_eq!(
            canonical_uuid("GPU-00112233-4455-6677-8899-aabbccddeeff"),
            "GPU-00112233-4455-6677-8899-aabbccddeeff"
        );
    }

    #[test]
    fn unsupported_readings_are_none_and_failures_errors() {
        assert_eq!(
            optional::<u32>(Err(NvmlError::NotSupported), "x", "u").unwrap(),
            None
        );
        assert_eq!(optional(Ok(3), "x", "u").unwrap(), Some(3));
        let e = optional::<u32>(Err(NvmlError::GpuLost), "power usage", "GPU-1").unwrap_err();
        assert!(matches!(e, Error::Nvml { .. }));
        assert!(
            e.to_string()
                .starts_with("NVML power usage of GPU-1 failed:"),
            "{e}"
        );
    }

    #[test]
    fn no_nvml_is_a_typed_error() {
        // Here (CI, no driver) NVML is absent; on a GPU machine it initializes.
        match Monitor::new() {
            Ok(m) => assert!(m.nvml_device_count().is_ok()),
            Err(e) => {
                assert!(matches!(e, Error::NoNvml { .. }), "{e:?}");
                assert!(e.to_string().starts_with("NVML is unavailable: "), "{e}");
            }
        }
    }
}
