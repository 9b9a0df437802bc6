//! `hikube-gpu`: the GPUs of this machine from the command line — what they are (`info`), how
//! they run (`monitor`), how fast they go (`bench`), and their metrics for Prometheus
//! (`export`); and Kubernetes manifests that run it on each Hikube instance type (`k8s`). Every failure, a missing GPU or driver included, is one line on stderr and a
//! non-zero exit status.

mod bench;
mod chart;
mod files;
mod info;
mod k8s;
mod report;
mod watch;

use clap::{Args, Parser, Subcommand, ValueEnum};
use hikube_gpu::Device;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The error type of the subcommands: the crate's errors, I/O and the like, shown as one line.
pub type CliResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// The exporter's port by default. Not 9835 (nvidia_gpu_exporter's), 9400 (DCGM exporter's) nor
/// 9445 (NVIDIA GPU exporter's): a node may run one of them beside this one.
pub const DEFAULT_EXPORTER_PORT: u16 = 9477;

/// GPUs from Rust: what they are, how they run, how fast they go.
#[derive(Debug, Parser)]
#[command(
    name = "hikube-gpu",
    version,
    about,
    long_about = "GPUs from Rust: what they are, how they run, how fast they go.\n\n\
        Devices are numbered as CUDA numbers them (after CUDA_VISIBLE_DEVICES) and matched to \
        NVML's readings by UUID. Needs the NVIDIA driver (R550 or newer); no CUDA toolkit.",
    after_help = "Examples:\n  \
        hikube-gpu info\n  \
        hikube-gpu info --json | jq '.devices[].uuid'\n  \
        hikube-gpu monitor --interval 0.5            # a table, one row per GPU per reading\n  \
        hikube-gpu monitor --json --count 10 > log.jsonl\n  \
        hikube-gpu bench --out reports/h100          # report.md, report.json, chart.svg\n  \
        hikube-gpu bench --quick --json > run.json   # the report's JSON on stdout too\n  \
        hikube-gpu export --prometheus --port 9477   # scrape http://127.0.0.1:9477/metrics\n  \
        hikube-gpu k8s --out deploy/k8s              # kustomize tree: kubectl apply -k …"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every GPU: model, architecture, instance type, peak figures, driver, free/total memory.
    Info(InfoArgs),
    /// Live metrics: utilization, memory, temperature, power, clocks and what limits them.
    Monitor(MonitorArgs),
    /// The built-in benchmarks (GEMM with cuBLAS beside it, copy bandwidth, launch latency),
    /// with the GPU's power and clocks while each ran; writes report.md, report.json and
    /// chart.svg.
    Bench(BenchArgs),
    /// Serve the metrics over HTTP for Prometheus to scrape.
    Export(ExportArgs),
    /// Kubernetes manifests (YAML, a kustomize tree) for the Hikube instance types: a benchmark
    /// Job with a volume for its report, an inference Deployment, the exporter on every GPU node,
    /// the namespace (Pod Security `restricted`), its GPU quota and network policies. Needs no
    /// GPU.
    K8s(k8s::K8sArgs),
}

/// Options of `info`.
#[derive(Debug, Args, PartialEq)]
pub struct InfoArgs {
    /// One JSON object (schema `hikube-gpu/info`) on stdout. Without a GPU or driver it is
    /// still printed, with no devices and the reason in `error`, and the exit status is 1.
    #[arg(long)]
    pub json: bool,
}

/// Options of `monitor`.
#[derive(Debug, Args, PartialEq)]
pub struct MonitorArgs {
    /// Seconds between readings.
    #[arg(short, long, default_value = "1", value_parser = positive_seconds, value_name = "SECONDS")]
    pub interval: Duration,
    /// Stop after this many readings (default: until interrupted).
    #[arg(short = 'n', long, value_name = "N")]
    pub count: Option<u64>,
    /// One JSON object per GPU per reading, one per line, processes included.
    #[arg(long)]
    pub json: bool,
    /// Only these devices (CUDA indices; repeat or separate with commas).
    #[arg(short, long = "device", value_name = "INDEX", value_delimiter = ',')]
    pub devices: Vec<usize>,
}

/// A benchmark suite.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Suite {
    /// Matrix multiplication, f16 and bf16, hikube-gpu and cuBLAS.
    Gemm,
    /// Host↔device (pinned and pageable) and device↔device copies.
    Copy,
    /// Kernel launch latency.
    Launch,
}

/// Options of `bench`.
#[derive(Debug, Args, PartialEq)]
pub struct BenchArgs {
    /// Directory for report.md, report.json and chart.svg (created if missing).
    #[arg(short, long, default_value = "hikube-gpu-report", value_name = "DIR")]
    pub out: PathBuf,
    /// The device to measure (CUDA index).
    #[arg(short, long, default_value_t = 0, value_name = "INDEX")]
    pub device: usize,
    /// Only these suites (default: all).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SUITE")]
    pub only: Vec<Suite>,
    /// Seconds of measurement per benchmark, after warm-up. Power, clocks and temperature are
    /// read during it, less its first half (at most its first second): GPUs average their power
    /// over about a second, so 2 or more gives power figures of the benchmark alone.
    #[arg(long, default_value = "2", value_parser = positive_seconds, value_name = "SECONDS")]
    pub seconds: Duration,
    /// Fewer sizes and smaller copies: a smoke run in seconds.
    #[arg(long)]
    pub quick: bool,
    /// Leave cuBLAS out even where it loads.
    #[arg(long)]
    pub no_cublas: bool,
    /// Also print the report's JSON (as report.json) on stdout; the lines printed as the run
    /// goes move to stderr.
    #[arg(long)]
    pub json: bool,
}

/// Options of `export`.
#[derive(Debug, Args, PartialEq)]
pub struct ExportArgs {
    /// Serve the Prometheus text format at /metrics (the only format for now).
    #[arg(long, required = true)]
    pub prometheus: bool,
    /// TCP port.
    #[arg(short, long, default_value_t = DEFAULT_EXPORTER_PORT)]
    pub port: u16,
    /// Address to listen on (0.0.0.0 to serve other machines).
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: std::net::IpAddr,
    /// Seconds between readings of the GPUs; scrapes are answered from the last one.
    #[arg(long, default_value = "2", value_parser = positive_seconds, value_name = "SECONDS")]
    pub sample_interval: Duration,
    /// Connections served at once; one more is closed as soon as it is accepted.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub max_connections: u32,
    /// Seconds a client has to send its request head (also how long an idle connection is
    /// kept); the same bound on a response's write to a client that does not read.
    #[arg(long, default_value = "10", value_parser = positive_seconds, value_name = "SECONDS")]
    pub timeout: Duration,
}

fn positive_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if secs.is_finite() && secs > 0.0 && secs < 1e6 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!(
            "{s} seconds: must be more than 0 (and less than 1e6)"
        ))
    }
}

/// How many devices CUDA sees, as an error when none.
pub fn visible_devices() -> CliResult<usize> {
    match Device::count()? {
        0 => Err(hikube_gpu::Error::NoDevice.into()),
        n => Ok(n),
    }
}

fn export(args: &ExportArgs) -> CliResult {
    use hikube_gpu::monitor::exporter::{Exporter, ExporterOptions, NvmlSource};
    visible_devices()?;
    let source = NvmlSource::new(hikube_gpu::Monitor::new()?)?;
    let gpus = source.devices().len();
    let options = ExporterOptions {
        sample_period: args.sample_interval,
        max_connections: args.max_connections as usize,
        header_timeout: args.timeout,
        write_timeout: args.timeout,
        ..ExporterOptions::default()
    };
    let exporter = Exporter::start_with((args.bind, args.port), source, options)?;
    println!(
        "hikube-gpu: serving the metrics of {gpus} GPU(s) at {} (Ctrl-C stops)",
        exporter.url()
    );
    exporter.wait();
    Ok(())
}

fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Info(args) => info::run(&args),
        Command::Monitor(args) => watch::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Export(args) => export(&args),
        Command::K8s(args) => k8s::run(&args),
    }
}

/// One line, whatever the error's text holds.
pub fn one_line(e: &dyn std::error::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `hikube-gpu monitor | head`: the reader has had enough.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hikube-gpu: {}", one_line(&*e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("hikube-gpu").chain(args.iter().copied()))
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn monitor_options() {
        let Command::Monitor(m) = parse(&["monitor"]).unwrap().command else {
            panic!("not monitor")
        };
        assert_eq!(
            m,
            MonitorArgs {
                interval: Duration::from_secs(1),
                count: None,
                json: false,
                devices: vec![],
            }
        );
        let Command::Monitor(m) = parse(&[
            "monitor", "-i", "0.25", "--count", "3", "--json", "-d", "0,2",
        ])
        .unwrap()
        .command
        else {
            panic!("not monitor")
        };
        assert_eq!(m.interval, Duration::from_millis(250));
        assert_eq!((m.count, m.json, m.devices), (Some(3), true, vec![0, 2]));
        assert!(parse(&["monitor", "--interval", "-1"]).is_err());
        for bad in ["0", "0.0", "soon", "inf", "NaN"] {
            let e = parse(&["monitor", "--interval", bad]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
    }

    #[test]
    fn bench_options() {
        let Command::Bench(b) = parse(&["bench"]).unwrap().command else {
            panic!("not bench")
        };
        assert_eq!(b.out, PathBuf::from("hikube-gpu-report"));
        assert_eq!(
            (b.device, b.quick, b.no_cublas, b.json),
            (0, false, false, false)
        );
        assert!(b.only.is_empty());
        assert_eq!(b.seconds, Duration::from_secs(2));
        let Command::Bench(b) = parse(&[
            "bench",
            "--out",
            "reports/h100",
            "--only",
            "gemm,launch",
            "--quick",
            "-d",
            "1",
            "--seconds",
            "0.5",
            "--json",
        ])
        .unwrap()
        .command
        else {
            panic!("not bench")
        };
        assert_eq!(b.out, PathBuf::from("reports/h100"));
        assert_eq!(b.only, [Suite::Gemm, Suite::Launch]);
        assert_eq!((b.device, b.quick), (1, true));
        assert_eq!(b.seconds, Duration::from_millis(500));
        assert!(b.json);
        assert!(parse(&["bench", "--only", "conv"]).is_err());
    }

    #[test]
    fn info_options() {
        let Command::Info(i) = parse(&["info"]).unwrap().command else {
            panic!("not info")
        };
        assert!(!i.json);
        let Command::Info(i) = parse(&["info", "--json"]).unwrap().command else {
            panic!("not info")
        };
        assert!(i.json);
        assert!(parse(&["info", "--yaml"]).is_err());
    }

    #[test]
    fn export_options() {
        let Command::Export(x) = parse(&["export", "--prometheus"]).unwrap().command else {
            panic!("not export")
        };
        assert_eq!(
            (x.port, x.bind.to_string()),
            (DEFAULT_EXPORTER_PORT, "127.0.0.1".to_string())
        );
        let Command::Export(x) =
            parse(&["export", "--prometheus", "--port", "9100", "--bind", "::1"])
                .unwrap()
                .command
        else {
            panic!("not export")
        };
        assert_eq!((x.port, x.bind.to_string()), (9100, "::1".to_string()));
        assert_eq!(
            (x.sample_interval, x.max_connections, x.timeout),
            (Duration::from_secs(2), 4096, Duration::from_secs(10))
        );
        let Command::Export(x) = parse(&[
            "export",
            "--prometheus",
            "--sample-interval",
            "0.5",
            "--max-connections",
            "64",
            "--timeout",
            "3",
        ])
        .unwrap()
        .command
        else {
            panic!("not export")
        };
        assert_eq!(
            (x.sample_interval, x.max_connections, x.timeout),
            (Duration::from_millis(500), 64, Duration::from_secs(3))
        );
        assert!(parse(&["export", "--prometheus", "--max-connections", "0"]).is_err());
        assert!(parse(&["export", "--prometheus", "--timeout", "0"]).is_err());
        let e = parse(&["export", "--port", "9100"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(parse(&["export", "--prometheus", "--port", "70000"]).is_err());
        assert!(parse(&["export", "--prometheus", "--bind", "localhost:80"]).is_err());
    }

    #[test]
    fn help_names_every_subcommand() {
        let help = Cli::command().render_long_help().to_string();
        for sub in ["info", "monitor", "bench", "export", "k8s"] {
            assert!(help.contains(sub), "{help}");
        }
        assert!(parse(&[]).is_err(), "a subcommand is required");
        assert_eq!(
            parse(&["--help"]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelp
        );
    }

    #[test]
    fn k8s_options() {
        let Command::K8s(k) = parse(&["k8s"]).unwrap().command else {
            panic!("not k8s")
        };
        assert_eq!(
            (k.instance.as_str(), k.image.as_str(), k.namespace.as_str()),
            ("all", k8s::DEFAULT_IMAGE, k8s::DEFAULT_NAMESPACE)
        );
        assert_eq!((k.gpu_quota, k.out, k.image_digest), (None, None, None));
        assert_eq!(k.exporter_port, DEFAULT_EXPORTER_PORT);
        assert_eq!(k.inference_command, k8s::DEFAULT_INFERENCE_COMMAND);
        let Command::K8s(k) = parse(&[
            "k8s",
            "--instance",
            "gpu.tesla-t4",
            "--image",
            "r/i:t",
            "-n",
            "ml",
            "--out",
            "deploy/k8s",
        ])
        .unwrap()
        .command
        else {
            panic!("not k8s")
        };
        assert_eq!(
            (k.instance.as_str(), k.image.as_str()),
            ("gpu.tesla-t4", "r/i:t")
        );
        assert_eq!(k.namespace, "ml");
        assert_eq!(k.out, Some(PathBuf::from("deploy/k8s")));
        let unknown = k8s::run(&k8s::K8sArgs {
            instance: "gpu.a100".into(),
            ..k
        })
        .unwrap_err();
        assert!(unknown.to_string().contains("gpu.rtx4090"), "{unknown}");
    }

    #[test]
    fn errors_print_as_one_line() {
        let e: Box<dyn std::error::Error> = "two\nlines  and\tspaces".into();
        assert_eq!(one_line(&*e), "two lines and spaces");
    }
}
