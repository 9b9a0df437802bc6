//! Device memory from the driver: allocated in a stream's order, freed after every use.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::memory::access::{Access, AccessLog};
use crate::stream::Stream;
use cudarc::driver::{result, sys};

impl Device {
    /// Allocates `bytes` (at least one) of device memory, in `stream`'s order where the driver
    /// has stream-ordered allocation. Returns the address and the log of the allocation, whose
    /// first use is the allocation itself on `stream`.
    pub(crate) fn alloc_raw(
        &self,
        stream: &Stream,
        bytes: usize,
    ) -> Result<(sys::CUdeviceptr, AccessLog)> {
        let access = Access::eager(stream, "allocating device memory")?;
        self.inner.ctx.bind_to_thread()?;
        let bytes = bytes.max(1);
        let ptr = if self.inner.ctx.has_async_alloc() {
            // SAFETY: a live stream of this context; the memory is handed out uninitialized,
            // which the callers allow (any bit pattern is a valid `Pod` value).
            unsafe { result::malloc_async(stream.cu(), bytes) }?
        } else {
            // SAFETY: as above, without stream order.
            unsafe { result::malloc_sync(bytes) }?
        };
        let mut log = AccessLog::default();
        log.note_alloc(access.note_queued());
        Ok((ptr, log))
    }

    /// Frees device memory after every use in `log`: on the private service stream, which waits
    /// for them (stream-ordered), or on the host after them (no stream-ordered allocation).
    /// Never fails: errors are kept on the context, and memory whose uses cannot be waited for
    /// is leaked rather than freed early.
    pub(crate) fn free_raw(&self, ptr: sys::CUdeviceptr, log: &AccessLog) {
        let ctx = &self.inner.ctx;
        let markers: Result<Vec<_>> = log.pending().map(|u| u.marker()).collect();
        let markers = match (ctx.bind_to_thread(), markers) {
            (Ok(()), Ok(markers)) => markers,
            (Err(e), _) | (_, Err(Error::Driver(e))) => return ctx.record_err::<()>(Err(e)),
            (_, Err(_)) => return,
        };
        if ctx.has_async_alloc() {
            let service = self.inner.service.cu_stream();
            for m in &markers {
                // SAFETY: live events, waited on by the live service stream.
                ctx.record_err(unsafe {
                    result::stream::wait_event(
                        service,
                        m.event(),
                        sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
                    )
                });
            }
            // SAFETY: `ptr` came from `malloc_async` on this context and nothing uses it after
            // the uses the service stream now waits for.
            ctx.record_err(unsafe { result::free_async(ptr, service) });
        } else {
            for m in &markers {
                ctx.record_err(m.synchronize());
            }
            // SAFETY: `ptr` came from `malloc_sync`, and every use of it has finished.
            ctx.record_err(unsafe { result::free_sync(ptr) });
        }
    }
}
