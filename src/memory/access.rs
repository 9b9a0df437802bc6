//! Stream ordering of memory: who used an allocation, on which stream, until when.
//!
//! Every allocation the GPU can touch (device memory, pinned host memory) carries an
//! [`AccessLog`]: the last write and every read since, each as a [`Use`] (a stream and a
//! [`Marker`] recorded on it after the work). An operation takes the pointers it hands to the
//! GPU through an [`Access`] on its stream:
//! - before its work is queued, the stream waits for the uses the new one must follow (the last
//!   write; for a write, every read too) that were made on *other* streams: same-stream uses are
//!   ordered by the stream itself, so the common case costs no driver call;
//! - after its work is queued, one marker is recorded on the stream and noted in every log.
//!
//! So no allocation is reused (by the pool), freed (by the driver) or shown to the host (pinned
//! memory) while any use is pending, whatever the streams and threads.
//!
//! Inside a graph capture nothing runs: an [`Access`] on the capturing stream waits for nothing
//! and notes nothing; it hands the allocations it touched to the capture, and the
//! [`Graph`](crate::Graph) keeps them alive and replays through an `Access` of its own.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::stream::Stream;
use cudarc::driver::{sys, DriverError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A point in one stream's work: an event recorded once, given back to its device's free list
/// when the last log forgets it.
pub(crate) struct Marker {
    event: sys::CUevent,
    device: Device,
}

// SAFETY: a CUevent is a driver handle, usable from any thread of the process; the marker is
// never recorded again after construction (its only use is waiting on it).
unsafe impl Send for Marker {}
// SAFETY: as above: every method only waits on or queries the event.
unsafe impl Sync for Marker {}

impl Marker {
    /// Records a marker at the current end of `stream`.
    pub(crate) fn record(stream: &Stream) -> Result<Arc<Marker>> {
        let device = stream.device().clone();
        let event = device.take_event()?;
        let marker = Marker { event, device };
        // SAFETY: `event` and the stream belong to the same live context.
        unsafe { sys::cuEventRecord(marker.event, stream.cu()) }.result()?;
        Ok(Arc::new(marker))
    }

    /// True if the work before the marker has finished.
    pub(crate) fn is_done(&self) -> bool {
        // SAFETY: a live event of this device.
        let r = unsafe { sys::cuEventQuery(self.event) };
        r == sys::CUresult::CUDA_SUCCESS
    }

    /// Makes work queued on `stream` from now on wait for the marker (any device).
    fn wait_on(&self, stream: &Stream) -> std::result::Result<(), DriverError> {
        // SAFETY: a live event and a live stream; waits on events of other contexts are allowed.
        unsafe { sys::cuStreamWaitEvent(stream.cu(), self.event, 0) }.result()
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
        self.device.give_back_event(self.event);
    }
}

/// One use of an allocation: the stream it was queued on, and a marker after it.
#[derive(Clone)]
pub(crate) struct Use {
    stream: u64,
    marker: Arc<Marker>,
}

impl Use {
    /// A use on the stream with id `stream`, before `marker`.
    pub(crate) fn new(stream: u64, marker: Arc<Marker>) -> Use {
        Use { stream, marker }
    }

    /// The marker after the use.
    pub(crate) fn marker(&self) -> &Marker {
        &self.marker
    }
}

/// The uses of one allocation that later uses must be ordered after: the last write, and every
/// read since it (one per stream: a later read on a stream covers the earlier ones there).
#[derive(Default)]
pub(crate) struct AccessLog {
    writer: Option<Use>,
    readers: Vec<Use>,
}

impl AccessLog {
    /// The uses an access (`write` or read) must follow: the last write, and for a write every
    /// read since.
    fn must_follow(&self, write: bool) -> impl Iterator<Item = &Use> {
        let readers = self.readers.iter().filter(move |_| write);
        self.writer.iter().chain(readers)
    }

    /// Makes `stream` wait for what an access (`write` or read) must follow, skipping uses on
    /// `stream` itself.
    fn order(&self, stream: &Stream, write: bool) -> Result<()> {
        let id = stream.id();
        for u in self.must_follow(write).filter(|u| u.stream != id) {
            u.marker.wait_on(stream)?;
        }
        Ok(())
    }

    /// Notes a use that was ordered by [`order`](Self::order).
    fn note(&mut self, u: &Use, write: bool) {
        if write {
            self.readers.clear();
            self.writer = Some(u.clone());
        } else {
            self.readers.retain(|r| r.stream != u.stream);
            self.readers.push(u.clone());
        }
    }

    /// Notes the allocation of the memory (its first write).
    pub(crate) fn note_alloc(&mut self, u: Use) {
        self.writer = Some(u);
    }

    /// Blocks the host until what a host access (`write` or read) must follow has finished.
    pub(crate) fn wait_host(&self, write: bool) -> Result<()> {
        for u in self.must_follow(write) {
            u.marker.synchronize()?;
        }
        Ok(())
    }

    /// True if work queued on stream `stream_id` needs no wait for this memory: every use was
    /// made on that stream or has finished.
    pub(crate) fn all_on(&self, stream_id: u64) -> bool {
        self.pending()
            .all(|u| u.stream == stream_id || u.marker.is_done())
    }

    /// Makes `stream` wait for every use (a new owner of the memory).
    pub(crate) fn order_all(&self, stream: &Stream) -> Result<()> {
        self.order(stream, true)
    }

    /// Every use that may still be pending.
    pub(crate) fn pending(&self) -> impl Iterator<Item = &Use> {
        self.must_follow(true)
    }
}

/// Something whose memory the GPU can touch, with its log.
pub(crate) trait Tracked: Send + Sync {
    /// The allocation's log.
    fn log(&self) -> &Mutex<AccessLog>;
}

/// Locks a log; nothing panics while one is held, so a poisoned lock still holds a whole log.
pub(crate) fn lock(log: &Mutex<AccessLog>) -> MutexGuard<'_, AccessLog> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The allocations a capture touched, each with whether it was written.
pub(crate) type Touched = Vec<(Arc<dyn Tracked>, bool)>;

/// The same uses, once per allocation (a write wins over a read).
pub(crate) fn merge(all: Touched) -> Touched {
    let mut out = Touched::new();
    for (t, write) in all {
        touch(&mut out, t, write);
    }
    out
}

/// Adds `t` to `touched`, once per allocation (a write wins over a read).
fn touch(touched: &mut Touched, t: Arc<dyn Tracked>, write: bool) {
    let at = touched
        .iter()
        .position(|(u, _)| std::ptr::addr_eq(Arc::as_ptr(u), Arc::as_ptr(&t)));
    match at.and_then(|i| touched.get_mut(i)) {
        Some((_, w)) => *w |= write,
        None => touched.push((t, write)),
    }
}

/// The uses of one operation on one stream: created before its pointers are taken, finished
/// after its work is queued (see the module docs).
pub(crate) struct Access<'s> {
    stream: &'s Stream,
    capture: bool,
    touched: Touched,
    finished: bool,
}

impl<'s> Access<'s> {
    /// An access on `stream`. Inside the crate's own capture on this stream it records for the
    /// graph. No other stream can be capturing: the crate begins captures only through
    /// [`Graph`](crate::Graph), [`Stream::wait`] refuses events recorded in one (the only safe
    /// way to join a stream into it), and cudarc's stream is behind an `unsafe fn`. (The legacy
    /// stream used by the capturing thread is refused by the driver itself: the work fails and
    /// nothing is noted.) So this costs no driver call.
    pub(crate) fn new(stream: &'s Stream) -> Result<Self> {
        Ok(Access {
            stream,
            capture: stream.is_capturing_here(),
            touched: Vec::with_capacity(4),
            finished: false,
        })
    }

    /// An access that refuses a capture: for work a graph cannot own (other streams, vendor
    /// handles, host memory that is not pinned).
    pub(crate) fn eager(stream: &'s Stream, what: &str) -> Result<Self> {
        let access = Access::new(stream)?;
        access.refuse_capture(what)?;
        Ok(access)
    }

    /// [`Error::Capture`] naming `what` if the access records for a capture.
    pub(crate) fn refuse_capture(&self, what: &str) -> Result<()> {
        if self.capture {
            return Err(Error::not_in_capture(what));
        }
        Ok(())
    }

    /// The stream of the access.
    pub(crate) fn stream(&self) -> &'s Stream {
        self.stream
    }

    /// Orders the stream for a use of `t` (`write` or read) and remembers it. The device is
    /// checked by the caller (the memory types do it in their pointer accessors).
    pub(crate) fn touch(&mut self, t: Arc<dyn Tracked>, write: bool) -> Result<()> {
        if !self.capture {
            lock(t.log()).order(self.stream, write)?;
        }
        touch(&mut self.touched, t, write);
        Ok(())
    }

    /// Records the marker after the work and notes it in every log touched (or gives them to
    /// the capture). If the marker cannot be recorded, waits for the stream on the host instead,
    /// so that no use is left unordered.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.settle().map(drop)
    }

    /// [`finish`](Self::finish), returning the marker after the work (none in a capture or when
    /// nothing was touched).
    pub(crate) fn finish_marked(mut self) -> Result<Option<Arc<Marker>>> {
        self.settle()
    }

    fn settle(&mut self) -> Result<Option<Arc<Marker>>> {
        if std::mem::replace(&mut self.finished, true) || self.touched.is_empty() {
            return Ok(None);
        }
        let touched = std::mem::take(&mut self.touched);
        if self.capture {
            self.stream.add_to_capture(touched);
            return Ok(None);
        }
        match Marker::record(self.stream) {
            Ok(marker) => {
                let u = Use {
                    stream: self.stream.id(),
                    marker,
                };
                for (t, write) in &touched {
                    lock(t.log()).note(&u, *write);
                }
                Ok(Some(u.marker))
            }
            Err(e) => {
                self.stream.synchronize_raw()?;
                Err(e)
            }
        }
    }
}

impl Drop for Access<'_> {
    fn drop(&mut self) {
        // An operation that returned early (an error after some work was queued) still notes
        // what it touched; the error it returns already says what went wrong.
        if let Err(Error::Driver(e)) = self.settle().map(drop) {
            self.stream.device().record_err(e);
        }
    }
}

/// Replays the uses a graph captured on `stream`: waits for what they must follow, then (after
/// `work` queued the replay) notes a marker in each, which it returns.
pub(crate) fn replay(
    stream: &Stream,
    touched: &Touched,
    work: impl FnOnce() -> Result<()>,
) -> Result<Option<Arc<Marker>>> {
    let mut access = Access::eager(stream, "replaying a graph")?;
    for (t, write) in touched {
        access.touch(t.clone(), *write)?;
    }
    work()?;
    access.finish_marked()
}
