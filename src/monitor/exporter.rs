//! The metrics over HTTP in the Prometheus text format: [`Exporter`] serves what a
//! [`MetricsSource`] collects at each scrape; [`NvmlSource`] is the real source, [`render`] the
//! encoding (by `prometheus-client`, in the OpenMetrics text format that Prometheus scrapes).
//!
//! ```no_run
//! use hikube_gpu::monitor::{exporter::{Exporter, NvmlSource}, Monitor};
//! let source = NvmlSource::new(Monitor::new()?)?;
//! let exporter = Exporter::start("127.0.0.1:9400", source)?;
//! println!("scrape {}", exporter.url());
//! exporter.wait(); // serves until the process ends
//! # Ok::<(), hikube_gpu::Error>(())
//! ```
//!
//! Every series carries the labels `index` (the CUDA device index), `uuid`, `name` (the
//! driver's) and `model` (the catalog's); the metrics, prefixed `hikube_gpu_`, are `info` (1),
//! `utilization_ratio`, `memory_utilization_ratio`, `memory_used_bytes`, `memory_free_bytes`, `memory_total_bytes`,
//! `temperature_celsius`, `power_watts`, `power_limit_watts`, `sm_clock_hertz`,
//! `memory_clock_hertz`, `throttle_reason` (1 or 0 per `reason` label) and `processes`. A reading
//! the GPU does not report is left out rather than given as 0.

use super::metrics::{GpuMetrics, ThrottleReasons};
use super::nvml::Monitor;
use crate::device::Device;
use crate::error::{Error, Result};
use prometheus_client::encoding::text;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Who a reading is about: the labels of every series of one GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceLabels {
    /// CUDA device index (after `CUDA_VISIBLE_DEVICES`), as [`Device::open`] takes it.
    pub index: usize,
    /// UUID, `GPU-…`.
    pub uuid: String,
    /// The driver's device name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// The catalog's model name, e.g. `H100 SXM`.
    pub model: String,
}

impl DeviceLabels {
    fn pairs(&self) -> Vec<(String, String)> {
        vec![
            ("index".into(), self.index.to_string()),
            ("uuid".into(), self.uuid.clone()),
            ("name".into(), self.name.clone()),
            ("model".into(), self.model.clone()),
        ]
    }
}

/// One GPU's metrics at a scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceReading {
    /// Which GPU.
    pub labels: DeviceLabels,
    /// Its metrics.
    pub metrics: GpuMetrics,
}

/// Where an [`Exporter`] gets its readings, once per scrape. [`NvmlSource`] reads the GPUs;
/// tests give a fake one.
pub trait MetricsSource: Send + Sync + 'static {
    /// The readings of every GPU now. An error answers the scrape with HTTP 500 and its message.
    fn collect(&self) -> Result<Vec<DeviceReading>>;
}

/// The GPUs CUDA can see (after `CUDA_VISIBLE_DEVICES`), read through NVML and joined by UUID.
/// It opens no CUDA context ([`Device::describe`]): the exporter takes no GPU memory and does
/// not show as a process on the GPUs it watches.
#[derive(Clone, Debug)]
pub struct NvmlSource {
    monitor: Monitor,
    devices: Vec<DeviceLabels>,
}

impl NvmlSource {
    /// Lists the CUDA devices and checks that NVML sees each of them.
    pub fn new(monitor: Monitor) -> Result<NvmlSource> {
        let count = Device::count()?;
        if count == 0 {
            return Err(Error::NoDevice);
        }
        let devices = (0..count)
            .map(|index| {
                let (props, model) = Device::describe(index)?;
                monitor.nvml_index(&props.uuid)?;
                Ok(DeviceLabels {
                    index,
                    uuid: props.uuid,
                    name: props.name,
                    model: model.name.into_owned(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(NvmlSource { monitor, devices })
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
                    labels: labels.clone(),
                })
            })
            .collect()
    }
}

type Labels = Vec<(String, String)>;
type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;

/// A gauge of one value per GPU: its name (before the unit), help, unit, and how to read it.
struct Spec {
    name: &'static str,
    help: &'static str,
    unit: Option<&'static str>,
    value: fn(&GpuMetrics) -> Option<f64>,
}

const SPECS: &[Spec] = &[
    Spec {
        name: "utilization",
        help: "Fraction of the last sample period in which a kernel ran on the GPU",
        unit: Some("ratio"),
        value: |m| m.gpu_utilization_percent.map(|p| f64::from(p) / 100.0),
    },
    Spec {
        name: "memory_utilization",
        help: "Fraction of the last sample period in which device memory was read or written",
        unit: Some("ratio"),
        value: |m| m.memory_utilization_percent.map(|p| f64::from(p) / 100.0),
    },
    Spec {
        name: "memory_used",
        help: "Device memory in use",
        unit: Some("bytes"),
        value: |m| Some(m.memory_used_bytes as f64),
    },
    Spec {
        name: "memory_free",
        help: "Device memory free (neither used nor reserved by the driver)",
        unit: Some("bytes"),
        value: |m| Some(m.memory_free_bytes as f64),
    },
    Spec {
        name: "memory_total",
        help: "Device memory in all",
        unit: Some("bytes"),
        value: |m| Some(m.memory_total_bytes as f64),
    },
    Spec {
        name: "temperature",
        help: "GPU temperature",
        unit: Some("celsius"),
        value: |m| m.temperature_c.map(f64::from),
    },
    Spec {
        name: "power",
        help: "Power draw",
        unit: Some("watts"),
        value: |m| m.power_w,
    },
    Spec {
        name: "power_limit",
        help: "Power limit the driver enforces",
        unit: Some("watts"),
        value: |m| m.power_limit_w,
    },
    Spec {
        name: "sm_clock",
        help: "SM clock",
        unit: Some("hertz"),
        value: |m| m.sm_clock_mhz.map(|c| f64::from(c) * 1e6),
    },
    Spec {
        name: "memory_clock",
        help: "Memory clock",
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

/// The readings in the OpenMetrics text format (Prometheus's exposition format, [`CONTENT_TYPE`]),
/// ending with `# EOF`.
pub fn render(readings: &[DeviceReading]) -> String {
    let mut registry = Registry::with_prefix("hikube_gpu");
    let info = GaugeFamily::default();
    registry.register(
        "info",
        "GPU identity (always 1): CUDA index, UUID, driver name, catalog model",
        info.clone(),
    );
    let families: Vec<GaugeFamily> = SPECS
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
        .collect();
    let throttle = GaugeFamily::default();
    registry.register(
        "throttle_reason",
        "1 while this reason holds the clocks below their maximum (NVML clock event reasons)",
        throttle.clone(),
    );
    for reading in readings {
        let labels = reading.labels.pairs();
        info.get_or_create(&labels).set(1.0);
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
    }
    let mut out = String::new();
    #[allow(clippy::expect_used)] // reason: writing into a String cannot fail
    text::encode(&mut out, &registry).expect("formatting into a String");
    out
}

/// An HTTP server of the metrics: `GET /metrics` answers with [`render`] of what the source
/// collects then. One thread serves the requests in turn. Dropping the exporter (or
/// [`Exporter::stop`]) stops it.
pub struct Exporter {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("addr", &self.addr)
            .finish()
    }
}

#[allow(clippy::expect_used)] // reason: the Content-Type header values are constant ASCII strings
fn respond(request: tiny_http::Request, source: &dyn MetricsSource) {
    let path = request.url().split('?').next().unwrap_or("");
    let header = |value: &str| {
        tiny_http::Header::from_bytes("Content-Type", value).expect("a valid header is ASCII")
    };
    let response = match (request.method(), path) {
        (tiny_http::Method::Get, "/metrics") => match source.collect() {
            Ok(readings) => tiny_http::Response::from_string(render(&readings))
                .with_header(header(CONTENT_TYPE)),
            Err(e) => tiny_http::Response::from_string(format!("hikube-gpu: {e}\n"))
                .with_status_code(500)
                .with_header(header("text/plain; charset=utf-8")),
        },
        (tiny_http::Method::Get, "/") => tiny_http::Response::from_string(
            "hikube-gpu exporter: the GPU metrics are at /metrics\n",
        )
        .with_header(header("text/plain; charset=utf-8")),
        _ => tiny_http::Response::from_string("not found: the metrics are at /metrics\n")
            .with_status_code(404)
            .with_header(header("text/plain; charset=utf-8")),
    };
    // A scraper that hung up before the answer loses only its own scrape.
    let _ = request.respond(response);
}

impl Exporter {
    /// Listens on `addr` (`127.0.0.1:9400`; port 0 picks a free port, see
    /// [`Exporter::local_addr`]) and serves `source`'s metrics on a background thread.
    pub fn start(addr: impl ToSocketAddrs, source: impl MetricsSource) -> Result<Exporter> {
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
        let server = tiny_http::Server::http(&addrs[..]).map_err(|e| Error::Serve {
            addr: shown.clone(),
            reason: e.to_string(),
        })?;
        let addr = server.server_addr().to_ip().ok_or_else(|| Error::Serve {
            addr: shown,
            reason: "the server is not on an IP address".into(),
        })?;
        let server = Arc::new(server);
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("hikube-gpu-exporter".into())
            .spawn(move || {
                // Ends when `stop` unblocks the server.
                for request in serving.incoming_requests() {
                    respond(request, &source);
                }
            })
            .map_err(|e| Error::Serve {
                addr: addr.to_string(),
                reason: format!("could not start the server thread: {e}"),
            })?;
        Ok(Exporter {
            server,
            thread: Some(thread),
            addr,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to scrape, `http://127.0.0.1:9400/metrics`.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Stops serving and waits for the server thread.
    pub fn stop(self) {}
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            // The thread only serves; a panic in it has already been printed.
            let _ = thread.join();
        }
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
                model: "H100 SXM".into(),
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
        }
    }

    fn parse(text: &str) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    }

    fn value(scrape: &prometheus_parse::Scrape, metric: &str, index: &str) -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get("index") == Some(index))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{metric} is not a gauge: {other:?}"),
            })
    }

    #[test]
    fn renders_every_metric_with_device_labels() {
        let mut second = reading(1);
        second.metrics.power_w = None;
        second.metrics.throttle_reasons = None;
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
            .find(|s| s.metric == "hikube_gpu_info" && s.labels.get("index") == Some("0"))
            .unwrap();
        assert_eq!(info.labels.get("model"), Some("H100 SXM"));
        assert_eq!(info.labels.get("name"), Some("NVIDIA H100 80GB HBM3"));
        assert_eq!(
            info.labels.get("uuid"),
            Some("GPU-00000000-4c24-8d11-962e-8a996b823d68")
        );
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
        assert!(scrape.docs.contains_key("hikube_gpu_power_watts"));
    }

    #[test]
    fn no_device_renders_an_empty_exposition() {
        // prometheus-client leaves out the families without series.
        assert_eq!(render(&[]), "# EOF\n");
    }

    #[test]
    fn a_taken_port_is_a_typed_error() {
        struct Empty;
        impl MetricsSource for Empty {
            fn collect(&self) -> Result<Vec<DeviceReading>> {
                Ok(vec![])
            }
        }
        let first = Exporter::start("127.0.0.1:0", Empty).unwrap();
        let e = Exporter::start(first.local_addr(), Empty).unwrap_err();
        assert!(matches!(e, Error::Serve { .. }), "{e:?}");
        assert!(
            e.to_string().contains(&first.local_addr().to_string()),
            "{e}"
        );
        first.stop();
    }
}
