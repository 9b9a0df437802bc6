//! The metrics over HTTP in the Prometheus text format: an [`Exporter`] samples a
//! [`MetricsSource`] on a background thread every [`ExporterOptions::sample_period`] and serves
//! the last sample; [`NvmlSource`] is the real source (the GPUs through NVML, and the
//! [`MemoryPool`]s it is given), [`render`] the encoding (by `prometheus-client`, in the
//! OpenMetrics text format that Prometheus scrapes).
//!
//! ```no_run
//! use hikube_gpu::monitor::{exporter::{Exporter, NvmlSource}, Monitor};
//! let source = NvmlSource::new(Monitor::new()?)?;
//! let exporter = Exporter::start("127.0.0.1:9477", source)?;
//! println!("scrape {}", exporter.url());
//! exporter.wait(); // serves until the process ends
//! # Ok::<(), hikube_gpu::Error>(())
//! ```
//!
//! # Endpoints
//!
//! | path | answer |
//! |---|---|
//! | `/metrics` | the last sample's exposition (200), or the error that failed it (500, one line); before the first sample, waits for it up to 5 s (then 503) |
//! | `/healthz` | 200 while the process serves (liveness) |
//! | `/readyz` | 200 once a sample has succeeded, 503 before (readiness) |
//! | `/` | 200, a line that points to `/metrics` |
//!
//! Other paths are 404, other methods than `GET` and `HEAD` 405. NVML is never read on the
//! request path: a scrape costs a copy of the bytes rendered at the last sample.
//!
//! # Limits
//!
//! The server is hyper's HTTP/1 on a one-thread tokio runtime: one thread serves every
//! connection, and one more samples. [`ExporterOptions`] bounds the rest: the open connections
//! (a connection past [`max_connections`](ExporterOptions::max_connections) is closed as soon as
//! it is accepted), the request head (past
//! [`max_header_bytes`](ExporterOptions::max_header_bytes), `431 Request Header Fields Too
//! Large` and the connection is closed), the time a client may take to send a request head —
//! which is also how long an idle keep-alive connection is kept
//! ([`header_timeout`](ExporterOptions::header_timeout)) — and the time a write may stall on a
//! client that does not read ([`write_timeout`](ExporterOptions::write_timeout)).
//!
//! # Metrics
//!
//! Names follow Prometheus's conventions (base units, `_total` counters, prefix `hikube_gpu_`);
//! where NVIDIA's dcgm-exporter exports the same quantity, the table names its field, so that a
//! dashboard made for it carries over by renaming the metric (and dividing or multiplying by the
//! unit: dcgm-exporter gives percent, MiB and MHz). Every GPU series carries dcgm-exporter's
//! labels — `gpu` (the CUDA index), `UUID`, `pci_bus_id`, `modelName` (the driver's name),
//! `Hostname` (`NODE_NAME` where set, as in Kubernetes, else the host name) — and this crate's
//! `model` (the catalog's model name) and `instance_type` (the Hikube instance type, empty when
//! the model has none). A reading the GPU does not report is left out rather than given as 0.
//!
//! | metric | type | dcgm-exporter field | what |
//! |---|---|---|---|
//! | `hikube_gpu_info` | gauge | (labels, `DCGM_FI_DRIVER_VERSION`) | 1, with `driver_version` besides the GPU labels |
//! | `hikube_gpu_utilization_ratio` | gauge | `DCGM_FI_DEV_GPU_UTIL` (%) | fraction of the last period a kernel ran |
//! | `hikube_gpu_memory_utilization_ratio` | gauge | `DCGM_FI_DEV_MEM_COPY_UTIL` (%) | fraction of the last period memory was read or written |
//! | `hikube_gpu_memory_used_bytes` | gauge | `DCGM_FI_DEV_FB_USED` (MiB) | device memory in use |
//! | `hikube_gpu_memory_free_bytes` | gauge | `DCGM_FI_DEV_FB_FREE` (MiB) | device memory free |
//! | `hikube_gpu_memory_total_bytes` | gauge | `DCGM_FI_DEV_FB_TOTAL` (MiB) | device memory in all |
//! | `hikube_gpu_temperature_celsius` | gauge | `DCGM_FI_DEV_GPU_TEMP` | GPU temperature |
//! | `hikube_gpu_power_watts` | gauge | `DCGM_FI_DEV_POWER_USAGE` | power draw |
//! | `hikube_gpu_power_limit_watts` | gauge | `DCGM_FI_DEV_ENFORCED_POWER_LIMIT` | power limit enforced |
//! | `hikube_gpu_sm_clock_hertz` | gauge | `DCGM_FI_DEV_SM_CLOCK` (MHz) | SM clock |
//! | `hikube_gpu_memory_clock_hertz` | gauge | `DCGM_FI_DEV_MEM_CLOCK` (MHz) | memory clock |
//! | `hikube_gpu_throttle_reason` | gauge | `DCGM_FI_DEV_CLOCK_THROTTLE_REASONS` (bit mask) | 1 or 0 per `reason` label |
//! | `hikube_gpu_processes` | gauge | — | processes with a context on the GPU |
//! | `hikube_gpu_pool_{allocated,requested,reserved,cached,inactive_split}_bytes` | gauge | — | a [`MemoryPool`]'s bytes now ([`PoolStats`]) |
//! | `hikube_gpu_pool_{allocated,reserved}_peak_bytes` | gauge | — | their highest |
//! | `hikube_gpu_pool_{active,cached}_blocks` | gauge | — | blocks live and cached |
//! | `hikube_gpu_pool_{allocations,frees,device_allocations,device_frees,cache_hits,ooms,alloc_retries}_total` | counter | — | the pool's counts |
//! | `hikube_gpu_exporter_samples_total`, `…_sample_errors_total` | counter | — | samples taken, and failed |
//! | `hikube_gpu_exporter_last_sample_timestamp_seconds` | gauge | — | when the sample served was taken (Unix time) |
//! | `hikube_gpu_exporter_sample_duration_seconds` | gauge | — | how long it took |
//!
//! The pool series exist only for the pools an [`NvmlSource`] was given
//! ([`NvmlSource::with_pool`]): a pool lives in the process that allocates from it, so they are
//! for an exporter started inside an application, not for `hikube-gpu export`.

use super::metrics::{GpuMetrics, ThrottleReasons};
use super::nvml::Monitor;
use super::sampler::Periodic;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::memory::{MemoryPool, PoolStats};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE as CONTENT_TYPE_HEADER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::convert::Infallible;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{oneshot, watch, Semaphore};

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// How long a scrape that comes before the first sample waits for it.
const FIRST_SAMPLE_WAIT: Duration = Duration::from_secs(5);

/// The longest timeout or period [`ExporterOptions`] takes (a day): longer ones would overflow
/// the clocks of the timers.
const LONGEST: Duration = Duration::from_secs(24 * 3600);

/// The most [`ExporterOptions::max_header_bytes`] may be.
pub const MAX_HEADER_BYTES_LIMIT: usize = 1 << 20;

/// Who a reading is about: the labels of every series of one GPU.
///
/// ```no_run
/// use hikube_gpu::monitor::exporter::NvmlSource;
/// use hikube_gpu::Monitor;
/// // The GPUs an exporter would watch, named as its series will be.
/// let source = NvmlSource::new(Monitor::new()?)?;
/// for (i, gpu) in source.devices().iter().enumerate() {
///     assert_eq!(gpu.index, i); // the CUDA index, as `Device::open` takes it
///     println!("gpu={} UUID={} model={} instance_type={}", gpu.index, gpu.uuid, gpu.model,
///              gpu.instance_type.as_deref().unwrap_or(""));
/// }
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceLabels {
    /// CUDA device index (after `CUDA_VISIBLE_DEVICES`), as [`Device::open`] takes it: label
    /// `gpu`.
    pub index: usize,
    /// UUID, `GPU-…`: label `UUID`.
    pub uuid: String,
    /// The driver's device name, e.g. `NVIDIA H100 80GB HBM3`: label `modelName`.
    pub name: String,
    /// PCI bus id, e.g. `0000:19:00.0`: label `pci_bus_id`.
    pub pci_bus_id: String,
    /// The catalog's model name, e.g. `H100 SXM`: label `model`.
    pub model: String,
    /// The Hikube instance type of the model, if it has one: label `instance_type` (empty if
    /// not).
    pub instance_type: Option<String>,
    /// The node: label `Hostname`. [`NvmlSource`] takes `NODE_NAME` where set (Kubernetes'
    /// downward API), else the host name.
    pub hostname: String,
    /// The NVIDIA driver's version, e.g. `580.95.05`: label `driver_version` of
    /// `hikube_gpu_info` only.
    pub driver_version: String,
}

impl DeviceLabels {
    fn pairs(&self) -> Labels {
        vec![
            ("gpu".into(), self.index.to_string()),
            ("UUID".into(), self.uuid.clone()),
            ("pci_bus_id".into(), self.pci_bus_id.clone()),
            ("modelName".into(), self.name.clone()),
            ("Hostname".into(), self.hostname.clone()),
            ("model".into(), self.model.clone()),
            (
                "instance_type".into(),
                self.instance_type.clone().unwrap_or_default(),
            ),
        ]
    }
}

/// One GPU's metrics at a sample.
///
/// A reading with a memory pool's statistics gets the `hikube_gpu_pool_*` series too:
///
/// ```
/// use hikube_gpu::monitor::exporter::{render, DeviceLabels, DeviceReading};
/// use hikube_gpu::{GpuMetrics, PoolStat, PoolStats};
/// let metrics = GpuMetrics {
///     uuid: "GPU-1".into(), name: "NVIDIA H200".into(), gpu_utilization_percent: Some(80),
///     memory_utilization_percent: None, memory_used_bytes: 1 << 30, memory_free_bytes: 1 << 30,
///     memory_total_bytes: 2 << 30, temperature_c: None, power_w: None, power_limit_w: None,
///     sm_clock_mhz: None, memory_clock_mhz: None, throttle_reasons: None, processes: vec![],
/// };
/// let allocated_bytes = PoolStat { current: 512 << 20, peak: 768 << 20 };
/// let pool = Some(PoolStats { allocated_bytes, ..Default::default() });
/// let labels = DeviceLabels { uuid: metrics.uuid.clone(), ..Default::default() };
/// let text = render(&[DeviceReading { labels, metrics, pool }]);
/// let peak = text.lines().find(|l| l.starts_with("hikube_gpu_pool_allocated_peak_bytes{"));
/// assert!(peak.unwrap().ends_with(" 805306368.0"), "{text}"); // 768 MiB
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceReading {
    /// Which GPU.
    pub labels: DeviceLabels,
    /// Its metrics.
    pub metrics: GpuMetrics,
    /// The statistics of a [`MemoryPool`] on it, if the source has one.
    pub pool: Option<PoolStats>,
}

/// Where an [`Exporter`] gets its readings, once per sample period, on its sampling thread (never
/// while answering a request). [`NvmlSource`] reads the GPUs; a closure returning readings is a
/// source too (tests give fake ones; an empty list is a machine without GPUs).
///
/// A source of one made-up GPU (e.g. readings relayed from elsewhere), and the series it gives:
///
/// ```
/// use hikube_gpu::monitor::exporter::{render, DeviceLabels, DeviceReading, MetricsSource};
/// use hikube_gpu::GpuMetrics;
/// let source = || -> hikube_gpu::Result<Vec<DeviceReading>> {
///     let labels = DeviceLabels {
///         uuid: "GPU-0000".into(),
///         model: "H100 SXM".into(),
///         ..Default::default()
///     };
///     let metrics = GpuMetrics {
///         uuid: labels.uuid.clone(),
///         name: "NVIDIA H100 80GB HBM3".into(),
///         gpu_utilization_percent: Some(97),
///         memory_utilization_percent: None,
///         memory_used_bytes: 40 << 30,
///         memory_free_bytes: 40 << 30,
///         memory_total_bytes: 80 << 30,
///         temperature_c: Some(61),
///         power_w: Some(650.0),
///         power_limit_w: Some(700.0),
///         sm_clock_mhz: Some(1980),
///         memory_clock_mhz: None,
///         throttle_reasons: None,
///         processes: Vec::new(),
///     };
///     Ok(vec![DeviceReading { labels, metrics, pool: None }])
/// };
/// let text = render(&source.collect()?);
/// let line = text.lines().find(|l| l.starts_with("hikube_gpu_utilization_ratio{")).unwrap();
/// assert!(line.contains(r#"UUID="GPU-0000""#) && line.ends_with(" 0.97"), "{line}");
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub trait MetricsSource: Send + 'static {
    /// The readings of every GPU now. An error is served as HTTP 500 with its message until a
    /// later sample succeeds.
    fn collect(&self) -> Result<Vec<DeviceReading>>;
}

impl<F> MetricsSource for F
where
    F: Fn() -> Result<Vec<DeviceReading>> + Send + 'static,
{
    fn collect(&self) -> Result<Vec<DeviceReading>> {
        self()
    }
}

/// The GPUs CUDA can see (after `CUDA_VISIBLE_DEVICES`), read through NVML and joined by UUID,
/// and the memory pools it was given. It opens no CUDA context ([`Device::describe`]): the
/// exporter takes no GPU memory and does not show as a process on the GPUs it watches.
///
/// ```no_run
/// use hikube_gpu::monitor::exporter::{Exporter, NvmlSource};
/// use hikube_gpu::Monitor;
/// let source = NvmlSource::new(Monitor::new()?)?;
/// let exporter = Exporter::start("0.0.0.0:9477", source)?; // GET /metrics, /healthz, /readyz
/// std::thread::park(); // serve until the process is stopped
/// # drop(exporter);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct NvmlSource {
    monitor: Monitor,
    devices: Vec<DeviceLabels>,
    pools: Vec<MemoryPool>,
}

/// `NODE_NAME` (set from the pod's `spec.nodeName` in Kubernetes), else the kernel's host name,
/// as dcgm-exporter labels its series.
fn hostname() -> String {
    std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_default()
}

impl NvmlSource {
    /// Lists the CUDA devices and checks that NVML sees each of them.
    pub fn new(monitor: Monitor) -> Result<NvmlSource> {
        let count = Device::count()?;
        if count == 0 {
            return Err(Error::NoDevice);
        }
        let hostname = hostname();
        let driver_version = monitor.driver_version()?;
        let devices = (0..count)
            .map(|index| {
                let (props, model) = Device::describe(index)?;
                monitor.nvml_index(&props.uuid)?;
                Ok(DeviceLabels {
                    index,
                    uuid: props.uuid,
                    name: props.name,
                    pci_bus_id: props.pci_bus_id,
                    model: model.name.into_owned(),
                    instance_type: model.instance_type.map(String::from),
                    hostname: hostname.clone(),
                    driver_version: driver_version.clone(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(NvmlSource {
            monitor,
            devices,
            pools: Vec::new(),
        })
    }

    /// Also exports `pool`'s statistics, on its device's series (`hikube_gpu_pool_*`). One pool
    /// per device: a second pool on the same device replaces the first.
    pub fn with_pool(mut self, pool: MemoryPool) -> NvmlSource {
        let ordinal = pool.device().ordinal();
        self.pools.retain(|p| p.device().ordinal() != ordinal);
        self.pools.push(pool);
        self
    }

    /// The GPUs watched.
    pub fn devices(&self) -> &[DeviceLabels] {
        &self.devices
    }
}

impl MetricsSource for NvmlSource {
    fn collect(&self) -> Result<Vec<DeviceReading>> {
        self.devices
            .iter()
            .map(|labels| {
                Ok(DeviceReading {
                    metrics: self.monitor.metrics_by_uuid(&labels.uuid)?,
                    pool: self
                        .pools
                        .iter()
                        .find(|p| p.device().ordinal() == labels.index)
                        .map(MemoryPool::stats),
                    labels: labels.clone(),
                })
            })
            .collect()
    }
}

type Labels = Vec<(String, String)>;
type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;
type CounterFamily = Family<Labels, Counter<u64>>;

/// A gauge of one value per GPU: its name (before the unit), help, unit, and how to read it.
struct Spec<T> {
    name: &'static str,
    help: &'static str,
    unit: Option<&'static str>,
    value: fn(&T) -> Option<f64>,
}

const SPECS: &[Spec<GpuMetrics>] = &[
    Spec {
        name: "utilization",
        help: "Fraction of the last sample period in which a kernel ran on the GPU (DCGM_FI_DEV_GPU_UTIL / 100)",
        unit: Some("ratio"),
        value: |m| m.gpu_utilization_percent.map(|p| f64::from(p) / 100.0),
    },
    Spec {
        name: "memory_utilization",
        help: "Fraction of the last sample period in which device memory was read or written (DCGM_FI_DEV_MEM_COPY_UTIL / 100)",
        unit: Some("ratio"),
        value: |m| m.memory_utilization_percent.map(|p| f64::from(p) / 100.0),
    },
    Spec {
        name: "memory_used",
        help: "Device memory in use (DCGM_FI_DEV_FB_USED, in bytes)",
        unit: Some("bytes"),
        value: |m| Some(m.memory_used_bytes as f64),
    },
    Spec {
        name: "memory_free",
        help: "Device memory free, neither used nor reserved by the driver (DCGM_FI_DEV_FB_FREE, in bytes)",
        unit: Some("bytes"),
        value: |m| Some(m.memory_free_bytes as f64),
    },
    Spec {
        name: "memory_total",
        help: "Device memory in all (DCGM_FI_DEV_FB_TOTAL, in bytes)",
        unit: Some("bytes"),
        value: |m| Some(m.memory_total_bytes as f64),
    },
    Spec {
        name: "temperature",
        help: "GPU temperature (DCGM_FI_DEV_GPU_TEMP)",
        unit: Some("celsius"),
        value: |m| m.temperature_c.map(f64::from),
    },
    Spec {
        name: "power",
        help: "Power draw (DCGM_FI_DEV_POWER_USAGE)",
        unit: Some("watts"),
        value: |m| m.power_w,
    },
    Spec {
        name: "power_limit",
        help: "Power limit the driver enforces (DCGM_FI_DEV_ENFORCED_POWER_LIMIT)",
        unit: Some("watts"),
        value: |m| m.power_limit_w,
    },
    Spec {
        name: "sm_clock",
        help: "SM clock (DCGM_FI_DEV_SM_CLOCK, in hertz)",
        unit: Some("hertz"),
        value: |m| m.sm_clock_mhz.map(|c| f64::from(c) * 1e6),
    },
    Spec {
        name: "memory_clock",
        help: "Memory clock (DCGM_FI_DEV_MEM_CLOCK, in hertz)",
        unit: Some("hertz"),
        value: |m| m.memory_clock_mhz.map(|c| f64::from(c) * 1e6),
    },
    Spec {
        name: "processes",
        help: "Processes with a context on the GPU",
        unit: None,
        value: |m| Some(m.processes.len() as f64),
    },
];

const POOL_GAUGES: &[Spec<PoolStats>] = &[
    Spec {
        name: "pool_allocated",
        help: "Bytes of the memory pool's blocks that live buffers hold",
        unit: Some("bytes"),
        value: |p| Some(p.allocated_bytes.current as f64),
    },
    Spec {
        name: "pool_allocated_peak",
        help: "Highest bytes held by live buffers of the memory pool since its creation or last peak reset",
        unit: Some("bytes"),
        value: |p| Some(p.allocated_bytes.peak as f64),
    },
    Spec {
        name: "pool_requested",
        help: "Bytes the memory pool's live buffers asked for, before rounding",
        unit: Some("bytes"),
        value: |p| Some(p.requested_bytes.current as f64),
    },
    Spec {
        name: "pool_reserved",
        help: "Bytes the memory pool holds from the driver, live and cached",
        unit: Some("bytes"),
        value: |p| Some(p.reserved_bytes.current as f64),
    },
    Spec {
        name: "pool_reserved_peak",
        help: "Highest bytes the memory pool held from the driver since its creation or last peak reset",
        unit: Some("bytes"),
        value: |p| Some(p.reserved_bytes.peak as f64),
    },
    Spec {
        name: "pool_cached",
        help: "Bytes in the memory pool's cached blocks, waiting to be reused",
        unit: Some("bytes"),
        value: |p| Some(p.cached_bytes() as f64),
    },
    Spec {
        name: "pool_inactive_split",
        help: "Bytes the memory pool reserves that no live buffer can use (its fragmentation)",
        unit: Some("bytes"),
        value: |p| Some(p.inactive_split_bytes.current as f64),
    },
    Spec {
        name: "pool_active_blocks",
        help: "Live buffers of the memory pool",
        unit: None,
        value: |p| Some(p.active_blocks.current as f64),
    },
    Spec {
        name: "pool_cached_blocks",
        help: "Blocks in the memory pool's cache",
        unit: None,
        value: |p| Some(p.cached_blocks as f64),
    },
];

/// A counter per GPU: its name (before `_total`), help, and how to read it.
struct CounterSpec {
    name: &'static str,
    help: &'static str,
    value: fn(&PoolStats) -> u64,
}

const POOL_COUNTERS: &[CounterSpec] = &[
    CounterSpec {
        name: "pool_allocations",
        help: "Buffers the memory pool handed out, from its cache or the driver",
        value: |p| p.allocation_count,
    },
    CounterSpec {
        name: "pool_frees",
        help: "Buffers given back to the memory pool",
        value: |p| p.free_count,
    },
    CounterSpec {
        name: "pool_device_allocations",
        help: "Blocks the memory pool allocated from the driver",
        value: |p| p.device_alloc_count,
    },
    CounterSpec {
        name: "pool_device_frees",
        help: "Blocks the memory pool gave back to the driver",
        value: |p| p.device_free_count,
    },
    CounterSpec {
        name: "pool_cache_hits",
        help: "Requests the memory pool served from its cache",
        value: PoolStats::cache_hits,
    },
    CounterSpec {
        name: "pool_ooms",
        help: "Requests to the memory pool that failed for want of memory",
        value: |p| p.oom_count,
    },
    CounterSpec {
        name: "pool_alloc_retries",
        help: "Requests that emptied the memory pool's cache to fit",
        value: |p| p.alloc_retries,
    },
];

/// What the exporter says about its own sampling.
#[derive(Clone, Copy, Debug, Default)]
struct SamplerStats {
    samples: u64,
    errors: u64,
    /// Unix time of the sample, seconds.
    timestamp: f64,
    duration: Duration,
}

fn gauges<T>(registry: &mut Registry, specs: &[Spec<T>]) -> Vec<GaugeFamily> {
    specs
        .iter()
        .map(|spec| {
            let family = GaugeFamily::default();
            match spec.unit {
                Some(unit) => registry.register_with_unit(
                    spec.name,
                    spec.help,
                    Unit::Other(unit.into()),
                    family.clone(),
                ),
                None => registry.register(spec.name, spec.help, family.clone()),
            }
            family
        })
        .collect()
}

/// The registry of the readings' series, and the exporter's own when `stats` is given.
fn registry(readings: &[DeviceReading], stats: Option<&SamplerStats>) -> Registry {
    let mut registry = Registry::with_prefix("hikube_gpu");
    let info = GaugeFamily::default();
    registry.register(
        "info",
        "GPU identity (always 1): CUDA index, UUID, PCI bus, driver name, catalog model, instance type, driver version",
        info.clone(),
    );
    let families = gauges(&mut registry, SPECS);
    let throttle = GaugeFamily::default();
    registry.register(
        "throttle_reason",
        "1 while this reason holds the clocks below their maximum (NVML clock event reasons, DCGM_FI_DEV_CLOCK_THROTTLE_REASONS)",
        throttle.clone(),
    );
    let pool_gauges = gauges(&mut registry, POOL_GAUGES);
    let pool_counters: Vec<CounterFamily> = POOL_COUNTERS
        .iter()
        .map(|spec| {
            let family = CounterFamily::default();
            registry.register(spec.name, spec.help, family.clone());
            family
        })
        .collect();
    for reading in readings {
        let labels = reading.labels.pairs();
        let mut info_labels = labels.clone();
        info_labels.push((
            "driver_version".into(),
            reading.labels.driver_version.clone(),
        ));
        info.get_or_create(&info_labels).set(1.0);
        for (spec, family) in SPECS.iter().zip(&families) {
            if let Some(v) = (spec.value)(&reading.metrics) {
                family.get_or_create(&labels).set(v);
            }
        }
        if let Some(reasons) = reading.metrics.throttle_reasons {
            for (reason, name) in ThrottleReasons::ALL {
                let mut labels = labels.clone();
                labels.push(("reason".into(), name.into()));
                throttle
                    .get_or_create(&labels)
                    .set(if reasons.contains(reason) { 1.0 } else { 0.0 });
            }
        }
        if let Some(pool) = &reading.pool {
            for (spec, family) in POOL_GAUGES.iter().zip(&pool_gauges) {
                if let Some(v) = (spec.value)(pool) {
                    family.get_or_create(&labels).set(v);
                }
            }
            for (spec, family) in POOL_COUNTERS.iter().zip(&pool_counters) {
                family.get_or_create(&labels).inc_by((spec.value)(pool));
            }
        }
    }
    if let Some(stats) = stats {
        let exporter = registry.sub_registry_with_prefix("exporter");
        let samples = Counter::<u64>::default();
        samples.inc_by(stats.samples);
        exporter.register("samples", "Samples the exporter has taken", samples);
        let errors = Counter::<u64>::default();
        errors.inc_by(stats.errors);
        exporter.register(
            "sample_errors",
            "Samples that failed (served as HTTP 500 until one succeeds)",
            errors,
        );
        let at = Gauge::<f64, AtomicU64>::default();
        at.set(stats.timestamp);
        exporter.register_with_unit(
            "last_sample_timestamp",
            "When the sample served was taken, Unix time",
            Unit::Seconds,
            at,
        );
        let took = Gauge::<f64, AtomicU64>::default();
        took.set(stats.duration.as_secs_f64());
        exporter.register_with_unit(
            "sample_duration",
            "How long the sample served took to read",
            Unit::Seconds,
            took,
        );
    }
    registry
}

fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    #[allow(clippy::expect_used)] // reason: writing into a String cannot fail
    text::encode(&mut out, registry).expect("formatting into a String");
    out
}

/// The readings in the OpenMetrics text format (Prometheus's exposition format, [`CONTENT_TYPE`]),
/// ending with `# EOF`. (An [`Exporter`] adds its own `hikube_gpu_exporter_*` series.)
///
/// ```
/// use hikube_gpu::monitor::exporter::render;
/// let text = render(&[]); // a machine without GPUs: the metric families, no samples
/// assert!(text.ends_with("# EOF\n"));
/// ```
pub fn render(readings: &[DeviceReading]) -> String {
    encode(&registry(readings, None))
}

/// The bounds of an [`Exporter`]'s server and its sampling period. `Default` gives the values
/// documented on each field; [`Exporter::start_with`] refuses zero and values past the stated
/// limits.
///
/// ```
/// use hikube_gpu::monitor::exporter::ExporterOptions;
/// use std::time::Duration;
/// let defaults = ExporterOptions::default();
/// assert_eq!((defaults.sample_period, defaults.max_connections), (Duration::from_secs(2), 4096));
/// // A busier scrape target: sample every half second, cut idle clients after 5 s.
/// let busy = ExporterOptions {
///     sample_period: Duration::from_millis(500),
///     header_timeout: Duration::from_secs(5),
///     ..defaults
/// };
/// # let _ = busy;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExporterOptions {
    /// How often the source is read (default 2 s; at most a day). Scrapes get the last reading.
    pub sample_period: Duration,
    /// Connections open at once (default 4096); one past it is closed as soon as it is
    /// accepted. Each idle connection costs a few KiB of memory and a file descriptor.
    pub max_connections: usize,
    /// The longest request head, request line and headers, in bytes (default 8 KiB, at most
    /// [`MAX_HEADER_BYTES_LIMIT`]); a longer one is answered `431 Request Header Fields Too
    /// Large` and its connection closed.
    pub max_header_bytes: usize,
    /// The time a client has to send a whole request head, from the connection's start or the
    /// end of its last response (default 10 s; at most a day): it cuts off slow clients and idle
    /// keep-alive connections.
    pub header_timeout: Duration,
    /// The time a write of the response may stall on a client that does not read (default
    /// 10 s; at most a day); then the connection is closed.
    pub write_timeout: Duration,
}

impl Default for ExporterOptions {
    fn default() -> Self {
        ExporterOptions {
            sample_period: Duration::from_secs(2),
            max_connections: 4096,
            max_header_bytes: 8 << 10,
            header_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

impl ExporterOptions {
    fn validate(&self) -> Result<()> {
        let invalid = |what: String| Err(Error::InvalidArgument { what });
        for (name, value) in [
            ("sample_period", self.sample_period),
            ("header_timeout", self.header_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            if value.is_zero() || value > LONGEST {
                return invalid(format!(
                    "the exporter's {name} = {value:?} must be more than zero and at most a day"
                ));
            }
        }
        if self.max_connections == 0 || self.max_connections > Semaphore::MAX_PERMITS {
            return invalid(format!(
                "the exporter's max_connections = {} must be at least 1 (and at most {})",
                self.max_connections,
                Semaphore::MAX_PERMITS
            ));
        }
        if self.max_header_bytes == 0 || self.max_header_bytes > MAX_HEADER_BYTES_LIMIT {
            return invalid(format!(
                "the exporter's max_header_bytes = {} must be in 1..={MAX_HEADER_BYTES_LIMIT}",
                self.max_header_bytes
            ));
        }
        Ok(())
    }
}

/// The last sample, rendered: the body of `/metrics`, or the error that failed it.
type Snapshot = Option<Arc<std::result::Result<Bytes, String>>>;

/// What the request handlers share.
struct State {
    latest: watch::Receiver<Snapshot>,
    ready: Arc<AtomicBool>,
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    response(status, TEXT_PLAIN, Bytes::from_static(body.as_bytes()))
}

async fn metrics(state: &State) -> Response<Full<Bytes>> {
    let mut latest = state.latest.clone();
    let snapshot = latest.borrow_and_update().clone();
    let snapshot = match snapshot {
        Some(s) => s,
        None => {
            // Started a moment ago: the first sample is on its way.
            match tokio::time::timeout(FIRST_SAMPLE_WAIT, latest.wait_for(Option::is_some)).await {
                Ok(Ok(s)) => match &*s {
                    Some(s) => s.clone(),
                    None => return text(StatusCode::SERVICE_UNAVAILABLE, "no sample yet\n"),
                },
                _ => return text(StatusCode::SERVICE_UNAVAILABLE, "no sample yet\n"),
            }
        }
    };
    match &*snapshot {
        Ok(body) => response(StatusCode::OK, CONTENT_TYPE, body.clone()),
        Err(message) => response(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT_PLAIN,
            Bytes::from(message.clone()),
        ),
    }
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
) -> std::result::Result<Response<Full<Bytes>>, Infallible> {
    let known = matches!(
        request.uri().path(),
        "/metrics" | "/healthz" | "/readyz" | "/"
    );
    if !known {
        return Ok(text(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        ));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut answer = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        answer
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(answer);
    }
    Ok(match request.uri().path() {
        "/metrics" => metrics(&state).await,
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if state.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no sample has succeeded yet\n",
        ),
        _ => text(
            StatusCode::OK,
            "hikube-gpu exporter: the GPU metrics are at /metrics\n",
        ),
    })
}

/// Accepts connections until `shutdown`, each served on its own task, at most
/// `options.max_connections` at once.
async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    options: ExporterOptions,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_header_size(options.max_header_bytes)
        // The read buffer never needs more than the head: requests here have no body.
        .max_buf_size(options.max_header_bytes.max(8192).saturating_add(1024));
    let slots = Arc::new(Semaphore::new(options.max_connections));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, say: the connection waits in the backlog, and
                // trying again at once would spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Over the limit: closed now rather than left to wait unbounded.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut io = tokio_io_timeout::TimeoutStream::new(stream);
        io.set_write_timeout(Some(options.write_timeout));
        let io = TokioIo::new(Box::pin(io));
        let state = state.clone();
        let connection = http.serve_connection(
            io,
            hyper::service::service_fn(move |request| handle(request, state.clone())),
        );
        tokio::spawn(async move {
            // A client that hung up, timed out or sent garbage loses only its connection.
            let _ = connection.await;
            drop(slot);
        });
    }
}

/// An HTTP server of the metrics (see the [module](self) for its endpoints, limits and metrics):
/// one thread runs the server, one samples the source. Dropping the exporter (or
/// [`Exporter::stop`]) stops both and closes every connection.
///
/// ```
/// use hikube_gpu::monitor::exporter::{Exporter, ExporterOptions};
/// use std::time::Duration;
/// // A machine without GPUs (a closure is a source); `NvmlSource` reads the real ones.
/// let options = ExporterOptions { sample_period: Duration::from_millis(500), ..Default::default() };
/// let exporter = Exporter::start_with("127.0.0.1:0", || Ok(Vec::new()), options)?;
/// println!("metrics on http://{}/metrics", exporter.local_addr());
/// exporter.stop();
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct Exporter {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    sampler: Periodic,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Binds the first of `addrs` that can be bound, with a backlog deep enough for bursts of
/// connections. Must run inside the runtime.
fn bind(addrs: &[SocketAddr]) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "the address resolved to nothing",
    );
    for addr in addrs {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        };
        let bound = socket.and_then(|socket| {
            socket.set_reuseaddr(true)?;
            socket.bind(*addr)?;
            socket.listen(1024)
        });
        match bound {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Exporter {
    /// Listens on `addr` (`127.0.0.1:9477`; port 0 picks a free port, see
    /// [`Exporter::local_addr`]) and serves `source`'s metrics, with the default
    /// [`ExporterOptions`].
    pub fn start(addr: impl ToSocketAddrs, source: impl MetricsSource) -> Result<Exporter> {
        Exporter::start_with(addr, source, ExporterOptions::default())
    }

    /// [`Exporter::start`] with other bounds or sampling period.
    pub fn start_with(
        addr: impl ToSocketAddrs,
        source: impl MetricsSource,
        options: ExporterOptions,
    ) -> Result<Exporter> {
        options.validate()?;
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| Error::Serve {
                addr: "(unresolved)".into(),
                reason: e.to_string(),
            })?
            .collect();
        let shown = addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let serve_error = |reason: String| Error::Serve {
            addr: shown.clone(),
            reason,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| serve_error(format!("could not start the runtime: {e}")))?;
        let listener = {
            let _inside = runtime.enter();
            bind(&addrs).map_err(|e| serve_error(e.to_string()))?
        };
        let addr = listener
            .local_addr()
            .map_err(|e| serve_error(e.to_string()))?;

        let (publish, latest) = watch::channel::<Snapshot>(None);
        let ready = Arc::new(AtomicBool::new(false));
        let sampled = ready.clone();
        let mut stats = SamplerStats::default();
        let sampler = Periodic::spawn(
            "hikube-gpu-exporter-sampler",
            Instant::now(),
            options.sample_period,
            move |_| {
                let started = Instant::now();
                // A source that panics fails this sample, not the sampling.
                let collected =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source.collect()))
                        .unwrap_or_else(|_| {
                            Err(Error::InvalidArgument {
                                what: "the metrics source panicked".into(),
                            })
                        });
                stats.samples = stats.samples.saturating_add(1);
                stats.duration = started.elapsed();
                stats.timestamp = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                let body = match collected {
                    Ok(readings) => Ok(Bytes::from(encode(&registry(&readings, Some(&stats))))),
                    Err(e) => {
                        stats.errors = stats.errors.saturating_add(1);
                        // One line, whatever the error's text holds.
                        let line = e
                            .to_string()
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ");
                        Err(format!("hikube-gpu: {line}\n"))
                    }
                };
                let succeeded = body.is_ok();
                // Nobody listens once the server has stopped; the sampler stops next.
                let _ = publish.send(Some(Arc::new(body)));
                // Ready only once /metrics serves the good sample (not the failure before it).
                if succeeded {
                    sampled.store(true, Ordering::Release);
                }
                Ok(())
            },
            |_| {},
        )?;

        let state = Arc::new(State { latest, ready });
        let (shutdown, stopped) = oneshot::channel();
        let server = std::thread::Builder::new()
            .name("hikube-gpu-exporter".into())
            .spawn(move || {
                runtime.block_on(serve(listener, state, options, stopped));
                // Dropping the runtime drops every connection's task: their sockets close.
            })
            .map_err(|e| Error::Serve {
                addr: addr.to_string(),
                reason: format!("could not start the server thread: {e}"),
            })?;
        Ok(Exporter {
            addr,
            shutdown: Some(shutdown),
            server: Some(server),
            sampler,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to scrape, `http://127.0.0.1:9477/metrics`.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }

    /// Stops serving and sampling, and waits for both threads.
    pub fn stop(self) {}
}

impl Drop for Exporter {
    fn drop(&mut self) {
        // Dropping the sender ends the accept loop.
        self.shutdown.take();
        if let Some(server) = self.server.take() {
            // The thread only serves; a panic in it has already been printed.
            let _ = server.join();
        }
        self.sampler.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::GpuProcess;

    fn reading(index: usize) -> DeviceReading {
        DeviceReading {
            labels: DeviceLabels {
                index,
                uuid: format!("GPU-0000000{index}-4c24-8d11-962e-8a996b823d68"),
                name: "NVIDIA H100 80GB HBM3".into(),
                pci_bus_id: format!("0000:{:02x}:00.0", 0x19 + index),
                model: "H100 SXM".into(),
                instance_type: Some("gpu.h100".into()),
                hostname: "node-1".into(),
                driver_version: "580.95.05".into(),
            },
            metrics: GpuMetrics {
                uuid: format!("GPU-0000000{index}-4c24-8d11-962e-8a996b823d68"),
                name: "NVIDIA H100 80GB HBM3".into(),
                gpu_utilization_percent: Some(97),
                memory_utilization_percent: Some(41),
                memory_used_bytes: 1 << 30,
                memory_free_bytes: 0,
                memory_total_bytes: 85_520_809_984,
                temperature_c: Some(61),
                power_w: Some(512.25),
                power_limit_w: Some(700.0),
                sm_clock_mhz: Some(1980),
                memory_clock_mhz: Some(2619),
                throttle_reasons: Some(ThrottleReasons::SW_POWER_CAP),
                processes: vec![GpuProcess {
                    pid: 4242,
                    used_memory_bytes: Some(1 << 30),
                }],
            },
            pool: None,
        }
    }

    fn parse(text: &str) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    }

    fn value(scrape: &prometheus_parse::Scrape, metric: &str, gpu: &str) -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get("gpu") == Some(gpu))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{metric} is not a gauge: {other:?}"),
            })
    }

    #[test]
    fn renders_every_metric_with_device_labels() {
        let mut second = reading(1);
        second.metrics.power_w = None;
        second.metrics.throttle_reasons = None;
        second.labels.instance_type = None;
        let text = render(&[reading(0), second]);
        assert!(text.ends_with("# EOF\n"), "{text}");
        let scrape = parse(&text);
        let lines = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(scrape.samples.len(), lines, "every sample line parses");
        let v = |m, i| value(&scrape, m, i);
        assert_eq!(v("hikube_gpu_info", "0"), Some(1.0));
        assert_eq!(v("hikube_gpu_utilization_ratio", "0"), Some(0.97));
        assert_eq!(
            v("hikube_gpu_memory_total_bytes", "0"),
            Some(85_520_809_984.0)
        );
        assert_eq!(v("hikube_gpu_power_watts", "0"), Some(512.25));
        assert_eq!(
            v("hikube_gpu_power_watts", "1"),
            None,
            "unknown is absent, not 0"
        );
        assert_eq!(v("hikube_gpu_sm_clock_hertz", "0"), Some(1.98e9));
        assert_eq!(v("hikube_gpu_temperature_celsius", "1"), Some(61.0));
        assert_eq!(v("hikube_gpu_processes", "0"), Some(1.0));
        let info = scrape
            .samples
            .iter()
            .find(|s| s.metric == "hikube_gpu_info" && s.labels.get("gpu") == Some("0"))
            .unwrap();
        assert_eq!(info.labels.get("model"), Some("H100 SXM"));
        assert_eq!(info.labels.get("modelName"), Some("NVIDIA H100 80GB HBM3"));
        assert_eq!(
            info.labels.get("UUID"),
            Some("GPU-00000000-4c24-8d11-962e-8a996b823d68")
        );
        assert_eq!(info.labels.get("pci_bus_id"), Some("0000:19:00.0"));
        assert_eq!(info.labels.get("Hostname"), Some("node-1"));
        assert_eq!(info.labels.get("instance_type"), Some("gpu.h100"));
        assert_eq!(info.labels.get("driver_version"), Some("580.95.05"));
        let power = scrape
            .samples
            .iter()
            .find(|s| s.metric == "hikube_gpu_power_watts")
            .unwrap();
        assert_eq!(power.labels.get("driver_version"), None, "on info only");
        let throttle: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "hikube_gpu_throttle_reason")
            .collect();
        assert_eq!(
            throttle.len(),
            ThrottleReasons::ALL.len(),
            "device 1 has none"
        );
        let active: Vec<_> = throttle
            .iter()
            .filter(|s| s.value == prometheus_parse::Value::Gauge(1.0))
            .map(|s| s.labels.get("reason").unwrap())
            .collect();
        assert_eq!(active, ["sw_power_cap"]);
        assert!(!text.contains("hikube_gpu_pool_"), "no pool, no series");
    }

    #[test]
    fn every_metric_has_help_and_type() {
        let mut with_pool = reading(0);
        let mut pool = PoolStats::default();
        pool.allocated_bytes.current = 3 << 20;
        pool.reserved_bytes.current = 4 << 20;
        pool.allocation_count = 7;
        pool.device_alloc_count = 2;
        with_pool.pool = Some(pool);
        let stats = SamplerStats {
            samples: 3,
            errors: 1,
            timestamp: 1.7e9,
            duration: Duration::from_millis(2),
        };
        let text = encode(&registry(&[with_pool], Some(&stats)));
        let scrape = parse(&text);
        let mut families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        families.sort_unstable();
        for sample in &scrape.samples {
            let family = sample
                .metric
                .strip_suffix("_total")
                .unwrap_or(&sample.metric);
            assert!(
                families.binary_search(&family).is_ok(),
                "{} has no TYPE",
                sample.metric
            );
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "{family} has no HELP"
            );
        }
        let v = |m| value(&scrape, m, "0");
        assert_eq!(v("hikube_gpu_pool_allocated_bytes"), Some(3.0 * 1048576.0));
        assert_eq!(v("hikube_gpu_pool_cached_bytes"), Some(1048576.0));
        assert_eq!(v("hikube_gpu_pool_allocations_total"), Some(7.0));
        assert_eq!(v("hikube_gpu_pool_cache_hits_total"), Some(5.0));
        let exporter = |m: &str| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == m)
                .map(|s| s.value.clone())
        };
        assert!(
            matches!(
                exporter("hikube_gpu_exporter_samples_total"),
                Some(prometheus_parse::Value::Counter(3.0) | prometheus_parse::Value::Untyped(3.0))
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE hikube_gpu_exporter_samples counter"));
        assert!(text.contains("hikube_gpu_exporter_last_sample_timestamp_seconds 1700000000"));
    }

    #[test]
    fn no_device_renders_an_empty_exposition() {
        // prometheus-client leaves out the families without series.
        assert_eq!(render(&[]), "# EOF\n");
    }

    #[test]
    fn options_out_of_range_are_refused() {
        let empty = || Ok(vec![]);
        for options in [
            ExporterOptions {
                sample_period: Duration::ZERO,
                ..Default::default()
            },
            ExporterOptions {
                header_timeout: Duration::MAX,
                ..Default::default()
            },
            ExporterOptions {
                write_timeout: Duration::from_secs(1 << 40),
                ..Default::default()
            },
            ExporterOptions {
                max_connections: 0,
                ..Default::default()
            },
            ExporterOptions {
                max_connections: usize::MAX,
                ..Default::default()
            },
            ExporterOptions {
                max_header_bytes: 0,
                ..Default::default()
            },
            ExporterOptions {
                max_header_bytes: usize::MAX,
                ..Default::default()
            },
        ] {
            let e = Exporter::start_with("127.0.0.1:0", empty, options.clone()).unwrap_err();
            assert!(
                matches!(e, Error::InvalidArgument { .. }),
                "{options:?}: {e:?}"
            );
        }
        // The smallest values hyper's buffers allow for are taken.
        let small = ExporterOptions {
            max_header_bytes: 1,
            max_connections: 1,
            ..Default::default()
        };
        Exporter::start_with("127.0.0.1:0", empty, small)
            .unwrap()
            .stop();
    }

    #[test]
    fn a_panicking_source_fails_its_samples_not_the_exporter() {
        use std::io::{Read, Write};
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let source = move || {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("a bug in the source");
            }
            Ok(vec![reading(0)])
        };
        let options = ExporterOptions {
            sample_period: Duration::from_millis(50),
            ..Default::default()
        };
        let exporter = Exporter::start_with("127.0.0.1:0", source, options).unwrap();
        let get = || {
            let mut s = std::net::TcpStream::connect(exporter.local_addr()).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).unwrap();
            answer
        };
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = get();
            if answer.starts_with("HTTP/1.1 200 ") {
                assert!(
                    answer.contains("hikube_gpu_exporter_sample_errors_total 1"),
                    "{answer}"
                );
                break;
            }
            assert!(answer.contains("panicked"), "{answer}");
            assert!(Instant::now() < until, "no sample after the panic");
            std::thread::sleep(Duration::from_millis(20));
        }
        exporter.stop();
    }

    #[test]
    fn a_taken_port_is_a_typed_error() {
        let empty = || Ok(vec![]);
        let first = Exporter::start("127.0.0.1:0", empty).unwrap();
        let e = Exporter::start(first.local_addr(), empty).unwrap_err();
        assert!(matches!(e, Error::Serve { .. }), "{e:?}");
        assert!(
            e.to_string().contains(&first.local_addr().to_string()),
            "{e}"
        );
        first.stop();
    }
}
