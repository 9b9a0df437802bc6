//! The exporter's bounds under abuse, without a GPU (a fake source): 2000 idle connections leave
//! the threads and memory bounded and scrapes fast; an oversized request head gets 431 and
//! memory stays flat; slow clients are cut off after the header timeout; a client that does not
//! read is cut off after the write timeout; a connection over the limit is closed at once.
//!
//! Threads and resident memory are the process's (`/proc/self/status`), so the tests take turns.

use hikube_gpu::monitor::exporter::{
    DeviceLabels, DeviceReading, Exporter, ExporterOptions, CONTENT_TYPE,
};
use hikube_gpu::monitor::{GpuMetrics, ThrottleReasons};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One test at a time: they read process-wide figures.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
}

fn threads() -> u64 {
    status_field("Threads:")
}

/// Resident memory, bytes.
fn rss() -> u64 {
    status_field("VmRSS:") * 1024
}

const MIB: f64 = 1024.0 * 1024.0;

fn fake(index: usize) -> DeviceReading {
    let uuid = format!("GPU-{index:08x}-4c24-8d11-962e-8a996b823d68");
    DeviceReading {
        labels: DeviceLabels {
            index,
            uuid: uuid.clone(),
            name: "NVIDIA H200".into(),
            pci_bus_id: format!("0000:{:02x}:00.0", index % 256),
            model: "H200 SXM".into(),
            instance_type: None,
            hostname: "node-1".into(),
            driver_version: "580.95.05".into(),
        },
        metrics: GpuMetrics {
            uuid,
            name: "NVIDIA H200".into(),
            gpu_utilization_percent: Some(50),
            memory_utilization_percent: Some(10),
            memory_used_bytes: 1 << 30,
            memory_free_bytes: 100 << 30,
            memory_total_bytes: 150 << 30,
            temperature_c: Some(40),
            power_w: Some(120.0),
            power_limit_w: Some(700.0),
            sm_clock_mhz: Some(1980),
            memory_clock_mhz: Some(3201),
            throttle_reasons: Some(ThrottleReasons::GPU_IDLE),
            processes: vec![],
        },
        pool: None,
    }
}

fn two_gpus() -> hikube_gpu::Result<Vec<DeviceReading>> {
    Ok(vec![fake(0), fake(1)])
}

fn quick_sampling() -> ExporterOptions {
    ExporterOptions {
        sample_period: Duration::from_millis(100),
        ..Default::default()
    }
}

/// One request on a new connection: `(status line, body, time to the whole answer)`.
fn request(addr: SocketAddr, path: &str) -> std::io::Result<(String, String, Duration)> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let took = start.elapsed();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    Ok((status, body.to_string(), took))
}

/// Waits for the first sample.
fn wait_ready(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok((status, _, _)) = request(addr, "/readyz") {
            if status.contains(" 200 ") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("not ready after 10 s");
}

/// Raises the soft limit on open files to `want` (or the hard limit).
fn raise_open_files(want: u64) {
    // SAFETY: getrlimit and setrlimit read and write a plain struct we own.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        assert!(
            limit.rlim_cur >= want,
            "the open-files limit is {} (hard {}): this test needs {want}",
            limit.rlim_cur,
            limit.rlim_max
        );
    }
}

#[test]
fn two_thousand_idle_connections_leave_threads_memory_and_scrapes_bounded() {
    let _turn = turn();
    raise_open_files(6000);
    let exporter = Exporter::start_with("127.0.0.1:0", two_gpus, quick_sampling()).unwrap();
    let addr = exporter.local_addr();
    wait_ready(addr);
    // Warm: the first scrapes allocate what every later one reuses.
    for _ in 0..20 {
        request(addr, "/metrics").unwrap();
    }
    let (threads_before, rss_before) = (threads(), rss());

    let idle: Vec<TcpStream> = (0..2000)
        .map(|i| TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    // Half of them start a request and stop: the server buffers what they sent.
    for s in idle.iter().step_by(2) {
        (&*s)
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
    }
    // Accepts are in order: once a later connection is answered, every idle one has been
    // accepted (and holds its buffers).
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let (status, body, took) = request(addr, "/metrics").unwrap();
        assert!(status.contains(" 200 "), "{status}: {body}");
        assert!(body.contains("hikube_gpu_power_watts"), "{body}");
        latencies.push(took);
    }
    let (threads_after, rss_after) = (threads(), rss());
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let max = latencies[latencies.len() - 1];
    let grown = rss_after.saturating_sub(rss_before) as f64 / MIB;
    eprintln!(
        "2000 idle connections: threads {threads_before} -> {threads_after}, \
         RSS {:.1} -> {:.1} MiB (+{grown:.1} MiB, {:.1} KiB per connection), \
         scrape median {median:?}, max {max:?}",
        rss_before as f64 / MIB,
        rss_after as f64 / MIB,
        grown * 1024.0 / 2000.0,
    );
    assert!(
        threads_after <= threads_before + 2,
        "threads grew from {threads_before} to {threads_after}"
    );
    assert!(grown < 64.0, "resident memory grew by {grown:.1} MiB");
    assert!(
        median < Duration::from_millis(100),
        "scrapes took {latencies:?}"
    );
    // The idle ones are still held open (below the limit, within the header timeout).
    let mut first = &idle[1];
    first.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(
        first.read(&mut byte).map_err(|e| e.kind()).unwrap_err(),
        ErrorKind::WouldBlock,
        "an idle connection under the limit was closed"
    );
    drop(idle);
    exporter.stop();
}

#[test]
fn an_oversized_header_gets_431_and_memory_stays_flat() {
    let _turn = turn();
    let exporter = Exporter::start_with("127.0.0.1:0", two_gpus, quick_sampling()).unwrap();
    let addr = exporter.local_addr();
    wait_ready(addr);
    request(addr, "/metrics").unwrap();
    let rss_before = rss();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    // Up to 512 MiB of one header line, as fast as the server takes it, in another thread.
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 20];
        let mut sent = 0usize;
        if writer
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ")
            .is_err()
        {
            return sent;
        }
        for _ in 0..512 {
            match writer.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !answer.is_empty() => break,
            Err(e) => panic!("after {} bytes: {e}", answer.len()),
        }
    }
    let sent = sender.join().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 431 "),
        "answer to a big header: {answer}"
    );
    let grown = rss().saturating_sub(rss_before) as f64 / MIB;
    eprintln!(
        "oversized header: {:.1} MiB sent before the server closed, RSS +{grown:.1} MiB",
        sent as f64 / MIB
    );
    assert!(grown < 16.0, "resident memory grew by {grown:.1} MiB");
    assert!(
        sent < 256 << 20,
        "the server read {sent} bytes of one header"
    );
    // The server still serves.
    let (status, _, _) = request(addr, "/metrics").unwrap();
    assert!(status.contains(" 200 "), "{status}");
    // Too many headers: 431 too.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = String::from("GET /metrics HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        head += &format!("X-{i}: y\r\n");
    }
    head += "\r\n";
    s.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    exporter.stop();
}

/// How long until the server closes `s` (reads return 0 or an error), at most `limit`.
fn time_to_close(s: &mut TcpStream, since: Instant, limit: Duration) -> Duration {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return since.elapsed(),
            // A 408 may come first.
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("still open after {limit:?}")
            }
            Err(_) => return since.elapsed(),
        }
    }
}

#[test]
fn slow_clients_are_cut_off_after_the_header_timeout() {
    let _turn = turn();
    let timeout = Duration::from_secs(1);
    let options = ExporterOptions {
        header_timeout: timeout,
        ..quick_sampling()
    };
    let exporter = Exporter::start_with("127.0.0.1:0", two_gpus, options).unwrap();
    let addr = exporter.local_addr();
    wait_ready(addr);

    // Half a request, then nothing.
    let start = Instant::now();
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let cut = time_to_close(&mut half, start, Duration::from_secs(10));
    eprintln!("half a request: closed after {cut:?} (header timeout {timeout:?})");
    assert!(
        cut >= timeout - Duration::from_millis(50) && cut < timeout * 4,
        "closed after {cut:?}"
    );

    // Nothing at all.
    let start = Instant::now();
    let mut silent = TcpStream::connect(addr).unwrap();
    let cut = time_to_close(&mut silent, start, Duration::from_secs(10));
    assert!(
        cut < timeout * 4,
        "a silent connection closed after {cut:?}"
    );

    // A byte every 100 ms: the timeout is on the whole head, not between bytes.
    let start = Instant::now();
    let mut drip = TcpStream::connect(addr).unwrap();
    let mut closed = None;
    for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if drip.write_all(&[*byte]).is_err() {
            closed = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if start.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let cut = closed.unwrap_or_else(|| time_to_close(&mut drip, start, Duration::from_secs(10)));
    eprintln!("a byte every 100 ms: closed after {cut:?}");
    assert!(cut < timeout * 4, "a dripping client held on for {cut:?}");

    // And a whole request on a kept-alive connection is still answered.
    let (status, _, _) = request(addr, "/metrics").unwrap();
    assert!(status.contains(" 200 "), "{status}");
    exporter.stop();
}

#[test]
fn a_client_that_does_not_read_is_cut_off_and_the_connection_limit_holds() {
    let _turn = turn();
    // 400 GPUs: about 2 MB an answer, so that pipelined answers fill the socket buffers.
    let many = || Ok((0..400).map(fake).collect());
    let options = ExporterOptions {
        max_connections: 1,
        write_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(60),
        sample_period: Duration::from_secs(1),
        ..Default::default()
    };
    let exporter = Exporter::start_with("127.0.0.1:0", many, options).unwrap();
    let addr = exporter.local_addr();
    wait_ready(addr);
    let (status, body, _) = request(addr, "/metrics").unwrap();
    assert!(status.contains(" 200 ") && body.len() > 1 << 20, "{status}");

    // Forty requests in one go, and no reading.
    let start = Instant::now();
    let mut stalled = TcpStream::connect(addr).unwrap();
    let mut pipeline = String::new();
    for _ in 0..40 {
        pipeline += "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    }
    stalled.write_all(pipeline.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // Meanwhile it holds the only slot: another connection is closed unanswered.
    match request(addr, "/healthz") {
        Ok((status, _, _)) => assert!(status.is_empty(), "answered over the limit: {status}"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof
            ),
            "{e}"
        ),
    }

    // Once the write timeout has cut the stalled client, the slot is free again.
    let until = Instant::now() + Duration::from_secs(10);
    let freed = loop {
        if let Ok((status, _, _)) = request(addr, "/healthz") {
            if status.contains(" 200 ") {
                break start.elapsed();
            }
        }
        assert!(
            Instant::now() < until,
            "the stalled client still holds its slot"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("a client that does not read: slot freed after {freed:?} (write timeout 1 s)");
    assert!(freed >= Duration::from_millis(900), "freed after {freed:?}");
    drop(stalled);
    exporter.stop();
}

#[test]
fn endpoints_answer_without_a_gpu() {
    let _turn = turn();
    // No GPU: the source has no readings; the exporter serves its own series.
    let none = || Ok(vec![]);
    let exporter = Exporter::start_with("127.0.0.1:0", none, quick_sampling()).unwrap();
    let addr = exporter.local_addr();
    wait_ready(addr);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer
            .to_ascii_lowercase()
            .contains(&format!("content-type: {CONTENT_TYPE}")),
        "{answer}"
    );
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert!(scrape
        .samples
        .iter()
        .all(|s| s.metric.starts_with("hikube_gpu_exporter_")));
    assert!(body.ends_with("# EOF\n"), "{body}");
    for (path, want) in [
        ("/healthz", " 200 "),
        ("/readyz", " 200 "),
        ("/", " 200 "),
        ("/nothing", " 404 "),
    ] {
        let (status, _, _) = request(addr, path).unwrap();
        assert!(status.contains(want), "{path}: {status}");
    }
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    exporter.stop();
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after stop"
    );
}

#[test]
fn readiness_waits_for_a_sample_and_errors_are_500() {
    let _turn = turn();
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // The first two samples fail, the later ones succeed.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let flaky = move || {
        if counted.fetch_add(1, Ordering::SeqCst) < 2 {
            Err(hikube_gpu::Error::Nvml {
                call: "power usage of GPU-1".into(),
                reason: "GPU is lost\nreally".into(),
            })
        } else {
            two_gpus()
        }
    };
    let options = ExporterOptions {
        sample_period: Duration::from_millis(500),
        ..Default::default()
    };
    let exporter = Exporter::start_with("127.0.0.1:0", flaky, options).unwrap();
    let addr = exporter.local_addr();
    let (status, body, _) = request(addr, "/metrics").unwrap();
    assert!(
        status.contains(" 500 ")
            && body.contains("GPU is lost really")
            && body.lines().count() == 1,
        "{status}: {body}"
    );
    let (status, _, _) = request(addr, "/readyz").unwrap();
    assert!(
        status.contains(" 503 "),
        "ready before a sample succeeded: {status}"
    );
    let (status, _, _) = request(addr, "/healthz").unwrap();
    assert!(status.contains(" 200 "), "{status}");
    wait_ready(addr);
    let (status, body, _) = request(addr, "/metrics").unwrap();
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        body.contains("hikube_gpu_exporter_sample_errors_total 2"),
        "{body}"
    );
    exporter.stop();
}
