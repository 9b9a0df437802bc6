//! [`Sampler`]: a GPU's metrics recorded at a fixed period on a background thread, and their
//! summaries ([`MachineState`]).

use super::metrics::{GpuMetrics, ThrottleReasons};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One reading of a [`Sampler`].
///
/// ```no_run
/// use hikube_gpu::{Device, Monitor};
/// use std::time::Duration;
/// let device = Device::open(0)?;
/// let sampler = Monitor::new()?.sampler(&device, Duration::from_millis(100))?;
/// std::thread::sleep(Duration::from_secs(2)); // ... run work on the GPU meanwhile ...
/// let series = sampler.stop()?;
/// if let Some(hottest) = series.samples.iter().max_by_key(|s| s.metrics.temperature_c) {
///     println!("{:?} °C, {:?} after the start", hottest.metrics.temperature_c, hottest.at);
///     assert_eq!(hottest.metrics.temperature_c, series.summary().max_temperature_c);
/// }
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// When it was taken, from the sampler's start.
    pub at: Duration,
    /// What it read (without processes).
    pub metrics: GpuMetrics,
}

/// The readings of a [`Sampler`], oldest first.
///
/// A series made by hand (e.g. to test code that reports on one), summarized whole and over a
/// window:
///
/// ```
/// use hikube_gpu::monitor::{GpuMetrics, Sample, Series};
/// use std::time::Duration;
/// let reading = |ms, watts| Sample {
///     at: Duration::from_millis(ms),
///     metrics: GpuMetrics {
///         uuid: "GPU-1".into(), name: "GPU".into(), gpu_utilization_percent: None,
///         memory_utilization_percent: None, memory_used_bytes: 0, memory_free_bytes: 0,
///         memory_total_bytes: 0, temperature_c: None, power_w: Some(watts), power_limit_w: None,
///         sm_clock_mhz: None, memory_clock_mhz: None, throttle_reasons: None, processes: vec![],
///     },
/// };
/// let samples = vec![reading(0, 90.0), reading(500, 610.0), reading(1000, 650.0)];
/// let series = Series { period: Duration::from_millis(500), samples };
/// assert_eq!(series.summary().mean_power_w, Some(450.0));
/// // Leave out the idle first reading.
/// let busy = series.window(Duration::from_millis(400)..Duration::MAX);
/// assert_eq!((busy.samples, busy.mean_power_w), (2, Some(630.0)));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// The period asked for.
    pub period: Duration,
    /// The readings.
    pub samples: Vec<Sample>,
}

impl Series {
    /// The state over the whole series.
    pub fn summary(&self) -> MachineState {
        MachineState::from_metrics(self.samples.iter().map(|s| &s.metrics))
    }

    /// The state over the readings taken in `window` (times from the sampler's start, as
    /// [`Sampler::elapsed`] gives them).
    pub fn window(&self, window: Range<Duration>) -> MachineState {
        MachineState::from_metrics(
            self.samples
                .iter()
                .filter(|s| window.contains(&s.at))
                .map(|s| &s.metrics),
        )
    }
}

/// A GPU's state over a time window: what a benchmark result carries so that a report can give
/// FLOP/s per watt and show throttling. Figures are `None` when no reading had them.
///
/// ```
/// use hikube_gpu::monitor::{MachineState, ThrottleReasons};
/// // As a benchmark report holds it: 40 readings at 680 W, clocks held by the power cap.
/// let state = MachineState {
///     samples: 40,
///     mean_power_w: Some(680.0),
///     throttle_reasons: ThrottleReasons::SW_POWER_CAP,
///     ..Default::default()
/// };
/// assert!(state.throttled());
/// let tflops_per_watt = state.per_watt(748.0).unwrap();
/// assert!((tflops_per_watt - 1.1).abs() < 1e-9);
/// assert_eq!(MachineState::default().per_watt(748.0), None); // no power reading
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineState {
    /// Readings summarized.
    pub samples: usize,
    /// Mean power draw, W.
    pub mean_power_w: Option<f64>,
    /// Highest power draw, W.
    pub max_power_w: Option<f64>,
    /// Mean SM clock, MHz.
    pub mean_sm_clock_mhz: Option<f64>,
    /// Lowest SM clock, MHz.
    pub min_sm_clock_mhz: Option<u32>,
    /// Highest GPU temperature, °C.
    pub max_temperature_c: Option<u32>,
    /// Mean GPU utilization, percent.
    pub mean_gpu_utilization_percent: Option<f64>,
    /// Every clock-limiting reason seen in the window.
    pub throttle_reasons: ThrottleReasons,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

impl MachineState {
    /// The state over some readings.
    ///
    /// ```
    /// use hikube_gpu::monitor::{GpuMetrics, MachineState};
    /// let reading = |power, clock| GpuMetrics {
    ///     uuid: "GPU-1".into(), name: "GPU".into(), gpu_utilization_percent: Some(100),
    ///     memory_utilization_percent: None, memory_used_bytes: 0, memory_free_bytes: 1,
    ///     memory_total_bytes: 1,
    ///     temperature_c: Some(60), power_w: Some(power), power_limit_w: None,
    ///     sm_clock_mhz: Some(clock), memory_clock_mhz: None, throttle_reasons: None,
    ///     processes: vec![],
    /// };
    /// let s = MachineState::from_metrics(&[reading(600.0, 1980), reading(700.0, 1800)]);
    /// assert_eq!((s.mean_power_w, s.mean_sm_clock_mhz), (Some(650.0), Some(1890.0)));
    /// assert_eq!(s.min_sm_clock_mhz, Some(1800));
    /// ```
    pub fn from_metrics<'a>(readings: impl IntoIterator<Item = &'a GpuMetrics>) -> MachineState {
        let readings: Vec<&GpuMetrics> = readings.into_iter().collect();
        let power = || readings.iter().filter_map(|m| m.power_w);
        let clock = || readings.iter().filter_map(|m| m.sm_clock_mhz);
        MachineState {
            samples: readings.len(),
            mean_power_w: mean(power()),
            max_power_w: power().reduce(f64::max),
            mean_sm_clock_mhz: mean(clock().map(f64::from)),
            min_sm_clock_mhz: clock().min(),
            max_temperature_c: readings.iter().filter_map(|m| m.temperature_c).max(),
            mean_gpu_utilization_percent: mean(
                readings
                    .iter()
                    .filter_map(|m| m.gpu_utilization_percent)
                    .map(f64::from),
            ),
            throttle_reasons: readings
                .iter()
                .filter_map(|m| m.throttle_reasons)
                .fold(ThrottleReasons::NONE, |a, b| a | b),
        }
    }

    /// True when a clock-limiting reason that costs performance was seen (power cap, thermal or
    /// hardware slowdown): the figures measured meanwhile are below what the GPU can do.
    pub fn throttled(&self) -> bool {
        self.throttle_reasons.limits_performance()
    }

    /// `rate` (e.g. TFLOP/s) per watt of mean power, if the power is known.
    pub fn per_watt(&self, rate: f64) -> Option<f64> {
        self.mean_power_w.filter(|&w| w > 0.0).map(|w| rate / w)
    }
}

/// What [`Monitor::measure`](super::Monitor::measure) returns: the work's value and the machine
/// state while it ran.
///
/// ```no_run
/// use hikube_gpu::{ops, Device, DeviceBuffer, Monitor};
/// use std::time::Duration;
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let (x, mut y) = (DeviceBuffer::<f32>::zeroed(&stream, 1 << 26)?, DeviceBuffer::<f32>::zeroed(&stream, 1 << 26)?);
/// let run = Monitor::new()?.measure(&device, Duration::from_millis(50), || {
///     let (start, mut launches) = (std::time::Instant::now(), 0);
///     while start.elapsed() < Duration::from_secs(3) {
///         ops::axpy(&stream, 1.0, &x, &mut y)?;
///         stream.synchronize()?;
///         launches += 1;
///     }
///     Ok(launches as f64 * 12.0 * 2f64.powi(26)) // bytes moved: x and y read, y written
/// })?;
/// // Power readings average over about a second: leave the first one out.
/// let steady = run.state_after(Duration::from_secs(1));
/// println!("{:?} B/J, throttled: {}", steady.per_watt(run.value / run.wall.as_secs_f64()),
///          steady.throttled());
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Measured<T> {
    /// What the work returned.
    pub value: T,
    /// The GPU's state while it ran (all the readings).
    pub state: MachineState,
    /// How long it ran (wall clock).
    pub wall: Duration,
    /// The readings, for other windows.
    pub series: Series,
}

impl<T> Measured<T> {
    /// The state without the first `settle` of the run. Recent GPUs average their power reading
    /// over about a second, so the readings of a run's first second still hold some of what ran
    /// before: `state_after(Duration::from_secs(1))` of a 2-second run is the run's own power.
    pub fn state_after(&self, settle: Duration) -> MachineState {
        self.series.window(settle..Duration::MAX)
    }
}

#[derive(Default)]
struct Shared {
    samples: Mutex<Vec<Sample>>,
    error: Mutex<Option<Error>>,
}

/// Locks a mutex even if a thread panicked while holding it: the data (readings) stays valid.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A background thread that calls a function now and every `period` after, on a fixed schedule
/// (a late call does not shift the next; missed slots are skipped), until it is dropped or the
/// function returns an error (given to `on_error`). Dropping it wakes the thread at once and
/// waits for it. The engine of [`Sampler`] and of the exporter's background sampling.
pub(crate) struct Periodic {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Periodic {
    /// Starts the thread `name`; `tick` is given the time since `start`.
    pub(crate) fn spawn(
        name: &str,
        start: Instant,
        period: Duration,
        mut tick: impl FnMut(Duration) -> Result<()> + Send + 'static,
        on_error: impl FnOnce(Error) + Send + 'static,
    ) -> Result<Periodic> {
        if period.is_zero() {
            return Err(Error::InvalidArgument {
                what: "the sampling period must be longer than zero".into(),
            });
        }
        if start.checked_add(period).is_none() {
            return Err(Error::InvalidArgument {
                what: format!("the sampling period = {period:?} overflows the clock"),
            });
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let result = (|| -> Result<()> {
                    let mut next = start;
                    loop {
                        tick(start.elapsed())?;
                        let Some(due) = next.checked_add(period) else {
                            // No later reading the clock can express: wait for the stop.
                            let _ = stopped.recv();
                            return Ok(());
                        };
                        // Fell behind (a slow reading): skip the missed slots.
                        let now = Instant::now();
                        next = due.max(now);
                        match stopped.recv_timeout(next.saturating_duration_since(now)) {
                            Err(RecvTimeoutError::Timeout) => continue,
                            // A stop message, or the owner is gone.
                            _ => return Ok(()),
                        }
                    }
                })();
                if let Err(e) = result {
                    on_error(e);
                }
            })
            .map_err(|e| Error::InvalidArgument {
                what: format!("could not start the {name} thread: {e}"),
            })?;
        Ok(Periodic {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn halt(&mut self) {
        // Dropping the sender wakes the thread at once.
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            // The thread catches its errors; a panic in it (none is expected) has been printed.
            let _ = thread.join();
        }
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Records a GPU's metrics every `period` on a background thread, from
/// [`Monitor::sampler`](super::Monitor::sampler) until [`Sampler::stop`]. The first reading is
/// taken at once; readings keep to a fixed schedule (a late one does not shift the next).
/// Dropping a sampler stops its thread and waits for it, discarding the readings.
///
/// ```no_run
/// use hikube_gpu::{monitor::Monitor, Device};
/// use std::time::Duration;
/// let device = Device::open(0)?;
/// let sampler = Monitor::new()?.sampler(&device, Duration::from_millis(50))?;
/// std::thread::sleep(Duration::from_secs(1));
/// let idle_end = sampler.elapsed();
/// // ... run work on the GPU ...
/// let series = sampler.stop()?;
/// let (idle, busy) = (series.window(Duration::ZERO..idle_end), series.window(idle_end..Duration::MAX));
/// println!("idle {:?} W, busy {:?} W", idle.mean_power_w, busy.mean_power_w);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct Sampler {
    shared: Arc<Shared>,
    thread: Periodic,
    start: Instant,
    period: Duration,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("period", &self.period)
            .field("samples", &lock(&self.shared.samples).len())
            .finish()
    }
}

impl Sampler {
    /// Starts a thread that calls `read` now and every `period` after, until stopped or until
    /// `read` fails.
    pub(crate) fn spawn(
        period: Duration,
        mut read: impl FnMut() -> Result<GpuMetrics> + Send + 'static,
    ) -> Result<Sampler> {
        let start = Instant::now();
        let shared = Arc::new(Shared::default());
        let (samples, errors) = (shared.clone(), shared.clone());
        let thread = Periodic::spawn(
            "hikube-gpu-sampler",
            start,
            period,
            move |at| {
                let metrics = read()?;
                lock(&samples.samples).push(Sample { at, metrics });
                Ok(())
            },
            move |e| *lock(&errors.error) = Some(e),
        )?;
        Ok(Sampler {
            shared,
            thread,
            start,
            period,
        })
    }

    /// Time since the sampler started: the clock of [`Sample::at`], to mark windows.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The period asked for.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// A copy of the readings so far.
    pub fn series(&self) -> Series {
        Series {
            period: self.period,
            samples: lock(&self.shared.samples).clone(),
        }
    }

    /// Stops the thread, waits for it, and returns the readings; or the NVML error that
    /// stopped it early.
    pub fn stop(mut self) -> Result<Series> {
        self.thread.halt();
        if let Some(e) = lock(&self.shared.error).take() {
            return Err(e);
        }
        Ok(Series {
            period: self.period,
            samples: std::mem::take(&mut *lock(&self.shared.samples)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(power: Option<f64>, clock: u32, temp: u32, reasons: u64) -> GpuMetrics {
        GpuMetrics {
            uuid: "GPU-x".into(),
            name: "test".into(),
            gpu_utilization_percent: Some(50),
            memory_utilization_percent: Some(10),
            memory_used_bytes: 1,
            memory_free_bytes: 0,
            memory_total_bytes: 2,
            temperature_c: Some(temp),
            power_w: power,
            power_limit_w: Some(700.0),
            sm_clock_mhz: Some(clock),
            memory_clock_mhz: Some(2619),
            throttle_reasons: Some(ThrottleReasons::from_bits(reasons)),
            processes: vec![],
        }
    }

    #[test]
    fn sampler_keeps_its_period_and_stops() {
        let sampler = Sampler::spawn(Duration::from_millis(20), || {
            Ok(reading(Some(100.0), 1000, 50, 0))
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(210));
        assert!(sampler.series().samples.len() >= 2);
        let mark = sampler.elapsed();
        let series = sampler.stop().unwrap();
        let n = series.samples.len();
        // 0, 20, ..., 200 ms: 11 readings; allow for a loaded machine.
        assert!((6..=12).contains(&n), "{n} readings in 210 ms at 20 ms");
        assert!(series.samples.windows(2).all(|w| w[0].at < w[1].at));
        assert!(series.samples.iter().all(|s| s.at <= mark));
        assert_eq!(series.summary().mean_power_w, Some(100.0));
    }

    #[test]
    fn a_period_past_the_clock_is_invalid_not_a_panic() {
        let e = Sampler::spawn(Duration::MAX, || Ok(reading(None, 0, 0, 0))).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { what } if what.contains("period")),
            "{e:?}"
        );
        // A period the clock takes once but not twice: the thread waits for the stop.
        let sampler = Sampler::spawn(Duration::from_secs(u64::MAX / 4), || {
            Ok(reading(None, 0, 0, 0))
        });
        if let Ok(sampler) = sampler {
            assert_eq!(sampler.stop().unwrap().samples.len(), 1);
        }
    }

    #[test]
    fn sampler_reports_the_error_that_stopped_it() {
        let mut calls = 0;
        let sampler = Sampler::spawn(Duration::from_millis(1), move || {
            calls += 1;
            if calls < 3 {
                Ok(reading(Some(1.0), 1, 1, 0))
            } else {
                Err(Error::Nvml {
                    call: "power usage of GPU-x".into(),
                    reason: "GPU is lost".into(),
                })
            }
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(sampler.series().samples.len(), 2);
        let e = sampler.stop().unwrap_err();
        assert!(e.to_string().contains("GPU is lost"), "{e}");
    }

    #[test]
    fn dropping_a_sampler_joins_its_thread_at_once() {
        let alive = Arc::new(());
        let held = alive.clone();
        let sampler = Sampler::spawn(Duration::from_secs(3600), move || {
            let _ = &held;
            Ok(reading(None, 1, 1, 0))
        })
        .unwrap();
        let t = Instant::now();
        drop(sampler);
        assert!(t.elapsed() < Duration::from_secs(5), "drop waited a period");
        assert_eq!(Arc::strong_count(&alive), 1, "the thread still runs");
        assert!(Sampler::spawn(Duration::ZERO, || Ok(reading(None, 1, 1, 0))).is_err());
    }

    #[test]
    fn windows_summarize_their_readings() {
        let ms = Duration::from_millis;
        let series = Series {
            period: ms(50),
            samples: vec![
                Sample {
                    at: ms(0),
                    metrics: reading(Some(70.0), 345, 30, 0x1),
                },
                Sample {
                    at: ms(50),
                    metrics: reading(Some(90.0), 1980, 40, 0x0),
                },
                Sample {
                    at: ms(100),
                    metrics: reading(Some(690.0), 1755, 61, 0x4),
                },
                Sample {
                    at: ms(150),
                    metrics: reading(None, 1785, 65, 0x4),
                },
            ],
        };
        let idle = series.window(ms(0)..ms(100));
        assert_eq!(idle.samples, 2);
        assert_eq!(idle.mean_power_w, Some(80.0));
        assert_eq!(idle.max_temperature_c, Some(40));
        assert!(!idle.throttled());
        let busy = series.window(ms(100)..Duration::MAX);
        assert_eq!(
            busy.mean_power_w,
            Some(690.0),
            "a missing reading is skipped"
        );
        assert_eq!(busy.mean_sm_clock_mhz, Some(1770.0));
        assert_eq!(busy.min_sm_clock_mhz, Some(1755));
        assert!(busy.throttled());
        assert_eq!(busy.per_watt(345.0), Some(0.5));
        let all = series.summary();
        assert_eq!(all.samples, 4);
        assert_eq!(all.max_power_w, Some(690.0));
        assert_eq!(all.throttle_reasons.names(), ["gpu_idle", "sw_power_cap"]);
        let empty = series.window(ms(500)..ms(600));
        assert_eq!(empty, MachineState::default());
        assert_eq!(empty.per_watt(1.0), None);
    }
}
