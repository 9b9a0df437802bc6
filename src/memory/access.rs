//! Stream ordering of memory: who used an allocation, on which stream, until when.
//!
//! Every allocation the GPU can touch (device memory, pinned host memory) carries an
//! [`AccessLog`]: the last write and every read since, each as a [`Use`] (a stream and the
//! number of the operation among those noted on it). An operation takes the pointers it hands
//! to the GPU through an [`Access`] on its stream:
//! - before its work is queued, the stream waits for the uses the new one must follow (the last
//!   write; for a write, every read too) that were made on *other* streams: same-stream uses are
//!   ordered by the stream itself, so the common case costs no driver call;
//! - after its work is queued, the stream numbers it and every log notes the number: still no
//!   driver call.
//!
//! A [`Marker`] (an event) is recorded only when something must wait for a use: another
//! stream, the host, or a free. It is recorded at the stream's end then, which is after the use
//! (stream order), and kept as the stream's newest marker, so one serves every use before it.
//!
//! So no allocation is reused (by the pool), freed (by the driver) or shown to the host (pinned
//! memory) while any use is pending, whatever the streams and threads.
//!
//! Inside a graph capture nothing runs: an [`Access`] on the capturing stream waits for nothing
//! and notes nothing; it hands the allocations it touched to the capture, and the
//! [`Graph`](crate::Graph) keeps them alive and replays through an `Access` of its own. A
//! capture records a marker after every use noted before it, so no marker is ever needed on a
//! capturing stream.

use crate::context::{Marker, StreamState};
use crate::error::{Error, Result};
use crate::stream::Stream;
use cudarc::driver::sys;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A device address of elements of `T`, as a kernel parameter (`T*` or `const T*`): the `u64`
/// the driver takes, with the element type. Made only here, in the memory layer, from a buffer
/// taken through an [`Access`] (which orders the use and notes it), or [`DevPtr::NULL`], the
/// kernels' "none".
#[repr(transparent)]
pub(crate) struct DevPtr<T> {
    addr: sys::CUdeviceptr,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for DevPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for DevPtr<T> {}

impl<T> std::fmt::Debug for DevPtr<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DevPtr({:#x})", self.addr)
    }
}

impl<T> DevPtr<T> {
    /// The null address: "no operand" to the kernels that take optional ones.
    pub(crate) const NULL: DevPtr<T> = DevPtr {
        addr: 0,
        _t: PhantomData,
    };

    /// The address of an allocation's element (memory layer only).
    pub(super) fn at(addr: sys::CUdeviceptr) -> Self {
        DevPtr {
            addr,
            _t: PhantomData,
        }
    }

    /// The address, for alignment checks, caches and FFI.
    pub(crate) fn addr(self) -> sys::CUdeviceptr {
        self.addr
    }

    /// True for [`DevPtr::NULL`].
    pub(crate) fn is_null(self) -> bool {
        self.addr == 0
    }
}

/// A buffer an operation hands to the GPU: its address and its length in elements, as taken
/// through an [`Access`] (`read`, `write`, ...). The launch layer checks `len` against the
/// furthest element a kernel can touch before it launches. [`Operand::NONE`] (null, length 0)
/// is an absent optional operand.
#[derive(Debug)]
pub(crate) struct Operand<T> {
    ptr: DevPtr<T>,
    len: usize,
}

impl<T> Clone for Operand<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Operand<T> {}

impl<T> Operand<T> {
    /// No operand: a null address, no element.
    pub(crate) const NONE: Operand<T> = Operand {
        ptr: DevPtr::NULL,
        len: 0,
    };

    /// `len` elements at `addr` (memory layer only: `addr` must address that many elements of a
    /// live allocation taken through an [`Access`]).
    pub(super) fn at(addr: sys::CUdeviceptr, len: usize) -> Self {
        Operand {
            ptr: DevPtr::at(addr),
            len,
        }
    }

    /// `len` elements at `addr`, addressing nothing real: for checks that never launch.
    #[cfg(test)]
    pub(crate) fn unchecked_for_test(addr: sys::CUdeviceptr, len: usize) -> Self {
        Operand::at(addr, len)
    }

    /// The device address.
    pub(crate) fn ptr(&self) -> DevPtr<T> {
        self.ptr
    }

    /// The raw address (for alignment checks, caches and FFI).
    pub(crate) fn addr(&self) -> sys::CUdeviceptr {
        self.ptr.addr()
    }

    /// Elements of `T` the buffer holds from the address on.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True for [`Operand::NONE`].
    pub(crate) fn is_none(&self) -> bool {
        self.ptr.is_null()
    }

    /// Elements `start .. start + len` of the buffer ([`Error::BufferTooSmall`] unless they
    /// lie inside it): one of several tensors a kernel reads from one allocation.
    pub(crate) fn sub(&self, operand: &'static str, start: usize, len: usize) -> Result<Self> {
        let end = start.saturating_add(len);
        super::ensure_len(operand, end, self.len)?;
        // In bounds: `start` elements from the address stay inside the allocation.
        let bytes = (start * std::mem::size_of::<T>()) as sys::CUdeviceptr;
        Ok(Operand::at(self.addr() + bytes, len))
    }

    /// The same buffer as pairs of its one-byte elements (the FP8 GEMM's compute_89 kernels
    /// move two FP8 values as one 16-bit element): the whole pairs it holds.
    pub(crate) fn pairs(self) -> Operand<u16> {
        const { assert!(std::mem::size_of::<T>() == 1) };
        Operand {
            ptr: DevPtr::at(self.addr()),
            len: self.len / 2,
        }
    }

    /// The same buffer with its element type left to a separate code (the epilogue's bias,
    /// whose kernels read it as the type `bias_dtype` names); the length stays in elements of
    /// `T`.
    pub(crate) fn erased(self) -> Operand<()> {
        Operand {
            ptr: DevPtr::at(self.addr()),
            len: self.len,
        }
    }
}

/// One use of an allocation: the stream it was queued on, and its number among the operations
/// noted on that stream. Its marker is recorded only when something must wait for it (another
/// stream, the host, a free): see [`StreamState::marker_after`].
#[derive(Clone)]
pub(crate) struct Use {
    stream: Arc<StreamState>,
    seq: u64,
}

impl Use {
    /// The operation numbered `seq` on `stream`.
    pub(crate) fn new(stream: Arc<StreamState>, seq: u64) -> Use {
        Use { stream, seq }
    }

    /// A marker after the use (recorded now if the stream has none after it yet).
    pub(crate) fn marker(&self) -> Result<Arc<Marker>> {
        self.stream.marker_after(self.seq)
    }

    /// True if the use is known to have finished (without recording a marker).
    fn known_done(&self) -> bool {
        self.stream
            .marker_covering(self.seq)
            .is_some_and(|m| m.is_done())
    }

    fn on(&self, stream: &Stream) -> bool {
        self.stream.id() == stream.id()
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
        for u in self.must_follow(write).filter(|u| !u.on(stream)) {
            u.marker()?.wait_on(stream.cu())?;
        }
        Ok(())
    }

    /// Notes a use that was ordered by [`order`](Self::order).
    fn note(&mut self, u: &Use, write: bool) {
        if write {
            self.readers.clear();
            self.writer = Some(u.clone());
        } else {
            self.readers.retain(|r| r.stream.id() != u.stream.id());
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
            u.marker()?.synchronize()?;
        }
        Ok(())
    }

    /// True if work queued on `stream` needs no wait for this memory: every use was made on
    /// that stream or is known to have finished. Records no marker.
    pub(crate) fn all_on(&self, stream: &Stream) -> bool {
        self.pending().all(|u| u.on(stream) || u.known_done())
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
fn merge(all: Touched) -> Touched {
    let mut out = Touched::new();
    for (t, write) in all {
        touch(&mut out, t, write);
    }
    out
}

thread_local! {
    /// The crate's captures running on this thread (by stream id), with what their work touched
    /// so far. Only the capturing thread may work on a capturing stream (see [`Access::new`]),
    /// so this thread's list is the whole of each.
    static CAPTURES: RefCell<Vec<(u64, Touched)>> = const { RefCell::new(Vec::new()) };
}

/// Begins the crate's capture on `stream` for this thread (after the eager work in flight there,
/// see [`Access::new`]); false if one runs on the stream already.
pub(crate) fn begin_capture(stream: &Stream) -> Result<bool> {
    if !stream.state().begin_capture()? {
        return Ok(false);
    }
    CAPTURES.with_borrow_mut(|c| c.push((stream.id(), Touched::new())));
    Ok(true)
}

/// Ends the crate's capture on `stream` and returns what its work touched, once per allocation.
pub(crate) fn end_capture(stream: &Stream) -> Touched {
    let id = stream.id();
    let touched = CAPTURES.with_borrow_mut(|c| {
        let at = c.iter().position(|(s, _)| *s == id);
        at.map(|i| c.swap_remove(i).1).unwrap_or_default()
    });
    stream.state().end_capture();
    merge(touched)
}

/// Hands what an operation on `stream`, inside this thread's capture there, touched to it.
fn add_to_capture(stream: &Stream, touched: Touched) {
    let id = stream.id();
    CAPTURES.with_borrow_mut(|c| {
        if let Some((_, all)) = c.iter_mut().find(|(s, _)| *s == id) {
            all.extend(touched);
        }
    });
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
    /// Counted among the stream's eager operations in flight (until dropped).
    counted: bool,
    /// Record the marker right after the work (see [`exact`](Self::exact)).
    exact: bool,
    touched: Touched,
    finished: bool,
}

impl<'s> Access<'s> {
    /// An access on `stream`: eager, or recording for the crate's capture when this thread
    /// captures on the stream. Another thread's work on a capturing stream is an
    /// [`Error::Capture`]: it would land in the graph, unordered with that thread's buffers.
    /// Eager work is counted in flight until the access is dropped, and a capture begins only
    /// when none is, so every eager use is noted before the capture starts and none after.
    /// Other streams cannot be capturing: the crate begins captures only through
    /// [`Graph`](crate::Graph), [`Stream::wait`] refuses events recorded in one (the only safe
    /// way to join a stream into it), and cudarc's stream is behind an `unsafe fn`. (The legacy
    /// stream used by the capturing thread is refused by the driver itself: the work fails and
    /// nothing is noted.) So this costs no driver call.
    pub(crate) fn new(stream: &'s Stream) -> Result<Self> {
        let mut access = Access {
            stream,
            capture: false,
            counted: stream.state().enter(),
            exact: false,
            touched: Vec::with_capacity(4),
            finished: false,
        };
        if !access.counted {
            if !stream.state().captured_by_this_thread() {
                return Err(Error::Capture {
                    reason: "the stream is capturing a graph on another thread".into(),
                });
            }
            access.capture = true;
        }
        Ok(access)
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

    /// Has the marker recorded right after the work instead of when something first waits for
    /// it: for copies to and from the host, which the host or another stream waits for while
    /// the stream runs ahead (a marker recorded later, at the stream's end, would make them wait
    /// for the later work too: a readback behind the next kernels, a consumer behind the
    /// producer's next batches). Costs one event record.
    pub(crate) fn exact(&mut self) {
        self.exact = true;
    }

    /// A use for work the caller queued on the stream itself (an allocation), numbered now.
    pub(crate) fn note_queued(&self) -> Use {
        Use::new(self.stream.state().clone(), self.stream.state().note())
    }

    /// Notes the work in every log touched (or gives them to the capture).
    pub(crate) fn finish(mut self) -> Result<()> {
        self.settle();
        Ok(())
    }

    /// [`finish`](Self::finish), returning the use the work made (none in a capture or when
    /// nothing was touched).
    pub(crate) fn finish_noted(mut self) -> Option<Use> {
        self.settle()
    }

    fn settle(&mut self) -> Option<Use> {
        if std::mem::replace(&mut self.finished, true) || self.touched.is_empty() {
            return None;
        }
        let touched = std::mem::take(&mut self.touched);
        if self.capture {
            add_to_capture(self.stream, touched);
            return None;
        }
        let u = self.note_queued();
        if self.exact {
            if let Err(Error::Driver(e)) = u.marker() {
                self.stream.device().record_err(e);
            }
        }
        for (t, write) in &touched {
            lock(t.log()).note(&u, *write);
        }
        Some(u)
    }
}

impl Drop for Access<'_> {
    fn drop(&mut self) {
        // An operation that returned early (an error after some work was queued) still notes
        // what it touched; the error it returns already says what went wrong.
        self.settle();
        if self.counted {
            self.stream.state().leave();
        }
    }
}

/// Replays the uses a graph captured on `stream`: waits for what they must follow, then (after
/// `work` queued the replay) notes it in each, and returns the use.
pub(crate) fn replay(
    stream: &Stream,
    touched: &Touched,
    work: impl FnOnce() -> Result<()>,
) -> Result<Option<Use>> {
    let mut access = Access::eager(stream, "replaying a graph")?;
    for (t, write) in touched {
        access.touch(t.clone(), *write)?;
    }
    work()?;
    Ok(access.finish_noted())
}
