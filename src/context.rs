//! What every handle of one GPU and of one stream share, at the bottom of the crate: the
//! recycled marker events of a device, and each stream's ordering state (the numbering of the
//! operations noted on it, its newest marker, its capture). Streams, the access logs and graphs
//! stand on it; it imports nothing of the crate but its errors.

use crate::error::Result;
use cudarc::driver::{result, sys, CudaContext, CudaStream, DriverError};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

/// The events of one device's markers, recycled: creating one costs a driver call.
pub(crate) struct Events {
    ctx: Arc<CudaContext>,
    free: Mutex<Vec<FreeEvent>>,
}

/// An event no marker holds.
struct FreeEvent(sys::CUevent);

// SAFETY: a CUevent is a driver handle usable from any thread; a free one is used by nobody.
unsafe impl Send for FreeEvent {}

impl Events {
    pub(crate) fn new(ctx: Arc<CudaContext>) -> Arc<Events> {
        Arc::new(Events {
            ctx,
            free: Mutex::new(Vec::new()),
        })
    }

    /// A recycled event, or a new one (no timing: cheaper to record).
    fn take(&self) -> Result<sys::CUevent> {
        let recycled = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(FreeEvent(event)) = recycled {
            return Ok(event);
        }
        Ok(result::event::create(
            sys::CUevent_flags::CU_EVENT_DISABLE_TIMING,
        )?)
    }

    fn give_back(&self, event: sys::CUevent) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(FreeEvent(event));
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let free = std::mem::take(self.free.get_mut().unwrap_or_else(PoisonError::into_inner));
        for FreeEvent(event) in free {
            // SAFETY: an event of this (still live: `ctx` holds it) context that no marker holds.
            self.ctx
                .record_err(unsafe { result::event::destroy(event) });
        }
    }
}

/// A point in one stream's work: an event recorded once, given back to its device's free list
/// when the last holder forgets it.
pub(crate) struct Marker {
    event: sys::CUevent,
    events: Arc<Events>,
}

// SAFETY: a CUevent is a driver handle, usable from any thread of the process; the marker is
// never recorded again after construction (its only use is waiting on it).
unsafe impl Send for Marker {}
// SAFETY: as above: every method only waits on or queries the event.
unsafe impl Sync for Marker {}

impl Marker {
    /// Records a marker at the current end of `stream`, a stream of `events`' context.
    pub(crate) fn record(events: &Arc<Events>, stream: &CudaStream) -> Result<Arc<Marker>> {
        // The legacy stream (null) is the current context's: bind the stream's own.
        events.ctx.bind_to_thread()?;
        let marker = Marker {
            event: events.take()?,
            events: events.clone(),
        };
        // SAFETY: `event` and the stream belong to the same live context (bound above).
        unsafe { sys::cuEventRecord(marker.event, stream.cu_stream()) }.result()?;
        Ok(Arc::new(marker))
    }

    /// True if the work before the marker has finished.
    pub(crate) fn is_done(&self) -> bool {
        // SAFETY: a live event of this device.
        let r = unsafe { sys::cuEventQuery(self.event) };
        r == sys::CUresult::CUDA_SUCCESS
    }

    /// Makes work queued on `stream` from now on wait for the marker (any device).
    pub(crate) fn wait_on(&self, stream: sys::CUstream) -> std::result::Result<(), DriverError> {
        // SAFETY: a live event and a live stream; waits on events of other contexts are allowed.
        unsafe { sys::cuStreamWaitEvent(stream, self.event, 0) }.result()
    }

    /// Blocks the host until the work before the marker has finished.
    pub(crate) fn synchronize(&self) -> std::result::Result<(), DriverError> {
        // SAFETY: a live event of this device.
        unsafe { sys::cuEventSynchronize(self.event) }.result()
    }

    /// The raw event, for a service stream of the crate to wait on.
    pub(crate) fn event(&self) -> sys::CUevent {
        self.event
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        self.events.give_back(self.event);
    }
}

/// What clones of one stream share: a process-unique id (the access logs tell streams apart by
/// it), the numbering of the operations noted on it and its newest marker (see
/// `memory::access`), and the crate's capture, if one runs on it. Logs
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
        })
    }

    /// The process-unique id of the stream.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The driver's stream.
    pub(crate) fn raw(&self) -> &Arc<CudaStream> {
        &self.raw
    }

    /// Whether the crate's capture runs on the stream.
    pub(crate) fn is_capturing(&self) -> bool {
        self.capturing.load(Ordering::SeqCst)
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
    pub(crate) fn begin_capture(&self) -> Result<bool> {
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

    /// Ends the crate's capture.
    pub(crate) fn end_capture(&self) {
        *lock(&self.capturer) = None;
        self.capturing.store(false, Ordering::SeqCst);
    }
}
