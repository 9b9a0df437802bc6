//! Timing GPU work with events: warm-up, repeated runs, medians. Benchmarks use this.

use crate::error::Result;
use crate::event::Event;
use crate::stream::Stream;

/// Times of repeated runs, in milliseconds, in the order they ran.
///
/// ```
/// use hikube_gpu::Timings;
/// let t = Timings { samples_ms: vec![3.0, 1.0, 2.0] };
/// assert_eq!((t.median_ms(), t.min_ms(), t.max_ms()), (2.0, 1.0, 3.0));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Timings {
    /// One time per run.
    pub samples_ms: Vec<f64>,
}

impl Timings {
    fn sorted(&self) -> Vec<f64> {
        let mut s = self.samples_ms.clone();
        s.sort_by(f64::total_cmp);
        s
    }

    /// The median run time (the mean of the middle two for an even count); NaN when empty.
    ///
    /// ```
    /// let t = hikube_gpu::Timings { samples_ms: vec![3.0, 1.0, 2.0, 10.0] };
    /// assert_eq!(t.median_ms(), 2.5);
    /// ```
    pub fn median_ms(&self) -> f64 {
        let s = self.sorted();
        let mid = s.len() / 2;
        match (mid.checked_sub(1).and_then(|i| s.get(i)), s.get(mid)) {
            (_, None) => f64::NAN,
            (Some(lo), Some(hi)) if s.len().is_multiple_of(2) => (lo + hi) / 2.0,
            (_, Some(m)) => *m,
        }
    }

    /// The fastest run; NaN when empty.
    pub fn min_ms(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    /// The slowest run; NaN when empty.
    pub fn max_ms(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

/// Runs `work` `warmup` times untimed, then `runs` times, each between two events on `stream`,
/// and returns the GPU time of each run. `work` gets the run number (warm-ups included), so it
/// can rotate among several input sets and keep caches from flattering the result.
///
/// ```no_run
/// use hikube_gpu::{time_on_stream, Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let src = DeviceBuffer::<f32>::zeroed(&stream, 1 << 26)?;
/// let mut dst = DeviceBuffer::<f32>::zeroed(&stream, 1 << 26)?;
/// let t = time_on_stream(&stream, 3, 20, |_| dst.copy_from(&stream, &src))?;
/// println!("{:.1} GB/s", 2.0 * src.num_bytes() as f64 / (t.median_ms() * 1e6));
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn time_on_stream(
    stream: &Stream,
    warmup: usize,
    runs: usize,
    mut work: impl FnMut(usize) -> Result<()>,
) -> Result<Timings> {
    for i in 0..warmup {
        work(i)?;
    }
    let events: Vec<(Event, Event)> = (0..runs)
        .map(|_| Ok((Event::new(stream.device())?, Event::new(stream.device())?)))
        .collect::<Result<_>>()?;
    for (i, (start, end)) in events.iter().enumerate() {
        start.record(stream)?;
        work(warmup + i)?;
        end.record(stream)?;
    }
    let samples_ms = events
        .iter()
        .map(|(s, e)| Ok(f64::from(s.elapsed_ms(e)?)))
        .collect::<Result<_>>()?;
    Ok(Timings { samples_ms })
}
