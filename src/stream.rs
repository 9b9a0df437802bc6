//! Streams: ordered queues of GPU work.

use crate::device::Device;
use crate::error::Result;
use crate::event::Event;
use crate::memory::access::{Events, Marker, Touched};
use cudarc::driver::{sys, CudaStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

/// What clones of one stream share: a process-unique id (the access logs tell streams apart by
/// it), the numbering of the operations noted on it and its newest marker (see
/// [`memory::access`](crate::memory::access)), and the crate's capture, if one runs on it. Logs
/// hold it, so the driver's stream lives until no log needs a marker on it.
pub(crate) struct StreamState {
    id: u64,
    raw: Arc<CudaStream>,
    events: Arc<Events>,
    /// The number of the last operation noted on the stream.
    noted: AtomicU64,
    /// The newest marker, with the number of the last operation before it.
    tail: Mutex<Option<(u64, Arc<Marker>)>>,
    /// Eager operations between their capture check and their note.
    in_flight: AtomicUsize,
    capturing: AtomicBool,
    /// The thread that captures on the stream, while `capturing`.
    capturer: Mutex<Option<ThreadId>>,
    touched: Mutex<Touched>,
}

impl std::fmt::Debug for StreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("id", &self.id).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StreamState {
    pub(crate) fn new(raw: Arc<CudaStream>, events: Arc<Events>) -> Arc<StreamState> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Arc::new(StreamState {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            raw,
            events,
            noted: AtomicU64::new(0),
            tail: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            capturing: AtomicBool::new(false),
            capturer: Mutex::new(None),
            touched: Mutex::new(Touched::new()),
        })
    }

    /// The process-unique id of the stream.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Numbers an operation whose work has been queued (the work is before the number).
    pub(crate) fn note(&self) -> u64 {
        self.noted.fetch_add(1, Ordering::SeqCst).wrapping_add(1)
    }

    /// Counts an eager operation in flight; false (and not counted) while a capture runs.
    pub(crate) fn enter(&self) -> bool {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.capturing.load(Ordering::SeqCst) {
            self.leave();
            return false;
        }
        true
    }

    /// Ends an eager operation counted by [`enter`](Self::enter).
    pub(crate) fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether the calling thread runs the capture on this stream.
    pub(crate) fn captured_by_this_thread(&self) -> bool {
        self.capturing.load(Ordering::SeqCst)
            && *lock(&self.capturer) == Some(std::thread::current().id())
    }

    /// The newest marker if it follows operation `seq`.
    pub(crate) fn marker_covering(&self, seq: u64) -> Option<Arc<Marker>> {
        match &*lock(&self.tail) {
            Some((covers, m)) if *covers >= seq => Some(m.clone()),
            _ => None,
        }
    }

    /// A marker after operation `seq`: the newest one if it follows it, else one recorded now
    /// at the stream's end (after every operation noted so far) and kept as the newest. Never
    /// needed on a capturing stream (a capture begins with a marker after every noted use, and
    /// notes none); if it were, it is an error rather than a marker inside the graph.
    pub(crate) fn marker_after(&self, seq: u64) -> Result<Arc<Marker>> {
        let mut tail = lock(&self.tail);
        if let Some((covers, m)) = &*tail {
            if *covers >= seq {
                return Ok(m.clone());
            }
        }
        if self.capturing.load(Ordering::SeqCst) {
            return Err(crate::Error::Capture {
                reason: "a marker was needed on a capturing stream".into(),
            });
        }
        let covers = self.noted.load(Ordering::SeqCst);
        let marker = Marker::record(&self.events, &self.raw)?;
        *tail = Some((covers, marker.clone()));
        Ok(marker)
    }

    /// Begins the crate's capture for the calling thread: waits out the eager operations in
    /// flight, then records a marker after every noted one. False if a capture runs already.
    fn begin_capture(&self) -> Result<bool> {
        if self
            .capturing
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Ok(false);
        }
        *lock(&self.capturer) = Some(std::thread::current().id());
        while self.in_flight.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        let covers = self.noted.load(Ordering::SeqCst);
        let marked = match self.marker_covering(covers) {
            Some(_) => Ok(()),
            None => Marker::record(&self.events, &self.raw)
                .map(|m| *lock(&self.tail) = Some((covers, m))),
        };
        if let Err(e) = marked {
            self.end_capture();
            return Err(e);
        }
        Ok(true)
    }

    /// Ends the crate's capture and returns what it touched.
    fn end_capture(&self) -> Touched {
        let touched = std::mem::take(&mut *lock(&self.touched));
        *lock(&self.capturer) = None;
        self.capturing.store(false, Ordering::SeqCst);
        touched
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
    pub(crate) fn new(device: Device, state: Arc<StreamState>) -> Self {
        Stream {
            device,
            raw: state.raw.clone(),
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
        self.state.capturing.load(Ordering::SeqCst)
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

    /// Begins the crate's capture on this stream for the calling thread, after the eager work
    /// in flight (see [`Access::new`](crate::memory::access::Access::new)); false if one runs
    /// already.
    pub(crate) fn start_capture_state(&self) -> Result<bool> {
        self.state.begin_capture()
    }

    /// Ends the crate's capture on this stream and returns what it touched.
    pub(crate) fn end_capture_state(&self) -> Touched {
        self.state.end_capture()
    }

    /// Hands what an operation touched inside the capture to it.
    pub(crate) fn add_to_capture(&self, touched: Touched) {
        lock(&self.state.touched).extend(touched);
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
