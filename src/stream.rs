//! Streams: ordered queues of GPU work.

use crate::device::Device;
use crate::error::Result;
use crate::event::Event;
use crate::memory::access::Touched;
use cudarc::driver::{sys, CudaStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What clones of one stream share: a process-unique id (the access logs tell streams apart by
/// it) and the crate's capture, if one runs on the stream.
#[derive(Default)]
pub(crate) struct StreamState {
    id: u64,
    capturing: AtomicBool,
    touched: Mutex<Touched>,
}

impl std::fmt::Debug for StreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("id", &self.id).finish()
    }
}

impl StreamState {
    pub(crate) fn new() -> Arc<StreamState> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Arc::new(StreamState {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            ..StreamState::default()
        })
    }
}

/// A queue of GPU work on one device. Work on one stream runs in order; work on different streams
/// may overlap unless ordered with [`Event`]s. Cheap to clone (clones are the same stream).
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
    pub(crate) fn new(device: Device, raw: Arc<CudaStream>, state: Arc<StreamState>) -> Self {
        Stream { device, raw, state }
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
    /// stream before and after, or use [`Event`]s); keep every buffer it touches alive until
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
        self.state.id
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
        self.state.capturing.load(Ordering::Acquire)
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

    /// Marks the crate's capture as running on this stream; false if one already runs.
    pub(crate) fn start_capture_state(&self) -> bool {
        self.state
            .capturing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Ends the crate's capture on this stream and returns what it touched.
    pub(crate) fn end_capture_state(&self) -> Touched {
        let touched = std::mem::take(
            &mut *self
                .state
                .touched
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        self.state.capturing.store(false, Ordering::Release);
        touched
    }

    /// Hands what an operation touched inside the capture to it.
    pub(crate) fn add_to_capture(&self, touched: Touched) {
        self.state
            .touched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(touched);
    }

    /// Records an event at the current end of this stream.
    pub fn record(&self) -> Result<Event> {
        let event = Event::new(&self.device)?;
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
