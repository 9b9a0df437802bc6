//! Streams: ordered queues of GPU work.

use crate::device::Device;
use crate::error::Result;
use crate::event::Event;
use cudarc::driver::CudaStream;
use std::sync::Arc;

/// A queue of GPU work on one device. Work on one stream runs in order; work on different streams
/// may overlap unless ordered with [`Event`]s. Cheap to clone (clones are the same stream).
///
/// ```no_run
/// use hikube_gpu::Device;
/// let device = Device::open(0)?;
/// let (a, b) = (device.new_stream()?, device.new_stream()?);
/// // ... queue work on `a` ...
/// b.wait(&a.record()?)?; // work queued on `b` from now on starts after `a`'s work so far
/// b.synchronize()?;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Stream {
    device: Device,
    pub(crate) raw: Arc<CudaStream>,
}

impl Stream {
    pub(crate) fn new(device: Device, raw: Arc<CudaStream>) -> Self {
        Stream { device, raw }
    }

    /// The device this stream belongs to.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The underlying cudarc stream, for interop with cudarc and vendor libraries (cuBLAS,
    /// cuDNN, NCCL handles take one).
    pub fn cuda_stream(&self) -> &Arc<CudaStream> {
        &self.raw
    }

    /// Blocks until all work queued on this stream has finished. Inside a graph capture this
    /// is an [`Error::Capture`](crate::Error::Capture) (and the capture stays valid).
    pub fn synchronize(&self) -> Result<()> {
        self.refuse_in_capture("synchronizing the stream")?;
        Ok(self.raw.synchronize()?)
    }

    /// Whether the stream is capturing a graph now.
    pub fn is_capturing(&self) -> Result<bool> {
        use cudarc::driver::sys::CUstreamCaptureStatus as S;
        Ok(self.raw.capture_status()? != S::CU_STREAM_CAPTURE_STATUS_NONE)
    }

    /// [`Error::Capture`](crate::Error::Capture) naming `what` if the stream is capturing.
    pub(crate) fn refuse_in_capture(&self, what: &str) -> Result<()> {
        if self.is_capturing()? {
            return Err(crate::Error::Capture {
                reason: format!("{what} is not allowed inside a capture"),
            });
        }
        Ok(())
    }

    /// Records an event at the current end of this stream.
    pub fn record(&self) -> Result<Event> {
        let event = Event::new(&self.device)?;
        event.record(self)?;
        Ok(event)
    }

    /// Makes work queued on this stream from now on wait until `event` has completed.
    pub fn wait(&self, event: &Event) -> Result<()> {
        Ok(self.raw.wait(&event.raw)?)
    }
}
