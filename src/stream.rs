//! Streams: ordered queues of GPU work.

use crate::context::StreamState;
use crate::device::Device;
use crate::error::Result;
use cudarc::driver::{sys, CudaStream};
use std::sync::Arc;

/// A queue of GPU work on one device. Work on one stream runs in order; work on different streams
/// may overlap unless ordered with [`Event`](crate::Event)s. Cheap to clone (clones are the same stream).
///
/// Buffers need no manual ordering: each remembers the streams that use it, so a buffer written
/// on one stream and read on another is read after the write, whatever the streams and threads.
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
    state: Arc<StreamState>,
}

impl Stream {
    pub(crate) fn new(device: Device, state: Arc<StreamState>) -> Self {
        Stream {
            device,
            raw: state.raw().clone(),
            state,
        }
    }

    /// The device this stream belongs to.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The underlying cudarc stream, for interop with vendor libraries (cuBLAS, cuDNN, NCCL
    /// handles take one).
    ///
    /// # Safety
    /// Work queued through the returned stream bypasses the crate's bookkeeping. The caller
    /// must: order it with the crate's own work on every buffer it touches (synchronize this
    /// stream before and after, or use [`Event`](crate::Event)s); keep every buffer it touches alive until
    /// that work has finished; and not begin, end or join a graph capture through it (cudarc's
    /// capture API would let a graph outlive the buffers it uses).
    pub unsafe fn cuda_stream(&self) -> &Arc<CudaStream> {
        &self.raw
    }

    /// The driver's handle.
    pub(crate) fn cu(&self) -> sys::CUstream {
        self.raw.cu_stream()
    }

    /// The process-unique id of the stream (shared by its clones).
    pub(crate) fn id(&self) -> u64 {
        self.state.id()
    }

    /// What the stream's clones share.
    pub(crate) fn state(&self) -> &Arc<StreamState> {
        &self.state
    }

    /// Blocks until all work queued on this stream has finished. Inside a graph capture this
    /// is an [`Error::Capture`](crate::Error::Capture) (and the capture stays valid).
    pub fn synchronize(&self) -> Result<()> {
        self.refuse_in_capture("synchronizing the stream")?;
        self.synchronize_raw()
    }

    /// Synchronizes without the capture check (the caller knows there is none).
    pub(crate) fn synchronize_raw(&self) -> Result<()> {
        Ok(self.raw.synchronize()?)
    }

    /// Whether the stream is capturing a graph now.
    pub fn is_capturing(&self) -> Result<bool> {
        Ok(self.is_capturing_here() || self.driver_capturing()?)
    }

    /// Whether the crate's own capture runs on this stream.
    pub(crate) fn is_capturing_here(&self) -> bool {
        self.state.is_capturing()
    }

    /// Whether the driver reports the stream capturing (or cannot tell: the legacy stream
    /// while this thread captures).
    pub(crate) fn driver_capturing(&self) -> Result<bool> {
        let mut status = sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
        // SAFETY: a live stream of this device and a valid out pointer.
        let r = unsafe { sys::cuStreamIsCapturing(self.cu(), &mut status) };
        Ok(r != sys::CUresult::CUDA_SUCCESS
            || status != sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE)
    }

    /// [`Error::Capture`](crate::Error::Capture) naming `what` if the stream is capturing.
    pub(crate) fn refuse_in_capture(&self, what: &str) -> Result<()> {
        if self.is_capturing()? {
            return Err(crate::Error::not_in_capture(what));
        }
        Ok(())
    }
}

/// Streams of a device.
impl Device {
    /// The device's default stream (the legacy NULL stream).
    pub fn default_stream(&self) -> Stream {
        Stream::new(self.clone(), self.inner.default_state.clone())
    }

    /// A new stream, independent of the others.
    pub fn new_stream(&self) -> Result<Stream> {
        Ok(Stream::new(
            self.clone(),
            StreamState::new(self.inner.ctx.new_stream()?, self.inner.events.clone()),
        ))
    }
}
