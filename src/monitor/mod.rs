//! Monitoring through NVML, joined to [`Device`](crate::Device)s by UUID: utilization, memory,
//! temperature, power, clocks and why they are low, processes; a [`Sampler`] that records them
//! on a background thread; [`Monitor::measure`], which runs work and returns the machine state
//! meanwhile (how benchmarks report FLOP/s per watt and catch throttling); and, with the
//! `exporter` feature, a Prometheus exporter (`monitor::exporter`).
//!
//! NVML (`libnvidia-ml.so.1`) ships with the NVIDIA driver and is loaded at run time by
//! [`Monitor::new`]; where it is missing, that returns [`Error::NoNvml`](crate::Error::NoNvml)
//! and the rest of the crate works as before.
//!
//! ```no_run
//! use hikube_gpu::{monitor::Monitor, Device};
//! use std::time::Duration;
//!
//! let monitor = Monitor::new()?;
//! let device = Device::open(0)?;
//! let now = monitor.device_metrics(&device)?;
//! println!("{}: {:?} °C, {:?} W of {:?} W, clocks limited by: {}", device.model().name,
//!          now.temperature_c, now.power_w, now.power_limit_w,
//!          now.throttle_reasons.unwrap_or_default());
//!
//! let sampler = monitor.sampler(&device, Duration::from_millis(50))?;
//! // ... work on the GPU ...
//! let state = sampler.stop()?.summary();
//! println!("mean {:?} W, mean SM clock {:?} MHz, max {:?} °C",
//!          state.mean_power_w, state.mean_sm_clock_mhz, state.max_temperature_c);
//! # Ok::<(), hikube_gpu::Error>(())
//! ```

#[cfg(feature = "exporter")]
pub mod exporter;
mod metrics;
mod nvml;
mod sampler;

pub use metrics::{GpuMetrics, GpuProcess, PcieLink, ThrottleReasons};
pub use nvml::Monitor;
pub use sampler::{MachineState, Measured, Sample, Sampler, Series};
