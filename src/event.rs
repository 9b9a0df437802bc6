//! Events: points in a stream, for ordering streams and timing GPU work.

use crate::device::Device;
use crate::error::Result;
use crate::stream::Stream;
use cudarc::driver::{sys, CudaEvent};

/// A point in a stream's work. Record it on a stream, then wait on it from another stream, block
/// on it, or measure the time between two events.
///
/// ```no_run
/// use hikube_gpu::{Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let (copy, compute) = (device.new_stream()?, device.new_stream()?);
/// let start = copy.record()?;
/// let x = DeviceBuffer::<f32>::zeroed(&copy, 1 << 24)?;
/// let ready = copy.record()?;
/// compute.wait(&ready)?; // work queued on `compute` from now on starts after the zeroing
/// ready.synchronize()?;
/// println!("zeroing took {:.3} ms", start.elapsed_ms(&ready)?);
/// # drop(x);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Debug)]
pub struct Event {
    pub(crate) raw: CudaEvent,
    /// Recorded inside a capture (a graph node, not a point in time): waiting on it would pull
    /// the waiting stream into the capture, so [`Stream::wait`] refuses it.
    in_capture: std::sync::atomic::AtomicBool,
}

impl Event {
    /// A new event with timing enabled.
    pub fn new(device: &Device) -> Result<Event> {
        let raw = device
            .inner
            .ctx
            .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
        Ok(Event {
            raw,
            in_capture: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Marks the current end of `stream`'s work.
    pub fn record(&self, stream: &Stream) -> Result<()> {
        self.raw.record(&stream.raw)?;
        self.in_capture.store(
            stream.is_capturing_here(),
            std::sync::atomic::Ordering::Release,
        );
        Ok(())
    }

    /// Whether the last record was inside a capture.
    pub(crate) fn recorded_in_capture(&self) -> bool {
        self.in_capture.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Blocks until the work before the event has completed.
    pub fn synchronize(&self) -> Result<()> {
        Ok(self.raw.synchronize()?)
    }

    /// Whether the work before the event has completed.
    pub fn is_complete(&self) -> Result<bool> {
        Ok(self.raw.try_is_complete()?)
    }

    /// Milliseconds from `self` to `end` (both recorded; waits for `end` to complete).
    pub fn elapsed_ms(&self, end: &Event) -> Result<f32> {
        end.synchronize()?;
        Ok(self.raw.elapsed_ms(&end.raw)?)
    }
}

/// Events on streams.
impl Stream {
    /// Records an event at the current end of this stream.
    pub fn record(&self) -> Result<Event> {
        let event = Event::new(self.device())?;
        event.record(self)?;
        Ok(event)
    }

    /// Makes work queued on this stream from now on wait until `event` has completed. An event
    /// recorded inside a capture is an [`Error::Capture`](crate::Error::Capture) on any other
    /// stream: the wait would pull this stream into the capture, where only the capture's own
    /// stream may work.
    pub fn wait(&self, event: &Event) -> Result<()> {
        if event.recorded_in_capture() && !self.is_capturing_here() {
            return Err(crate::Error::Capture {
                reason: "waiting on an event recorded inside a capture (only the capture's own \
                         stream may join it)"
                    .into(),
            });
        }
        Ok(self.raw.wait(&event.raw)?)
    }
}
