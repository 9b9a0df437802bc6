//! The memory pool: [`MemoryPool`], a caching stream-ordered allocator of [`DeviceBuffer`]s,
//! with PyTorch's statistics ([`PoolStats`]) and a per-process cap ([`Cap`]).

mod cache;
mod cap;
mod stats;

pub use cap::{Cap, PoolOptions, MEMORY_FRACTION_ENV};
pub use stats::{PoolStat, PoolStats};

use crate::device::Device;
use crate::error::{Error, Result};
use crate::memory::access::AccessLog;
use crate::memory::device::{Lease, Recycle, Storage};
use crate::memory::DeviceBuffer;
use crate::stream::Stream;
use bytemuck::Pod;
use cache::{Block, Cache};
use cap::cap_from_env;
use cudarc::driver::{result, sys, CudaContext};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What the pool's one lock guards.
struct State {
    cache: Cache,
    /// The cap in bytes.
    cap: Option<usize>,
    /// Bytes being allocated from the driver now: counted against the cap, not yet reserved.
    pending: usize,
    stats: PoolStats,
}

pub(crate) struct PoolInner {
    device: Device,
    ctx: Arc<CudaContext>,
    state: Mutex<State>,
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // No buffer holds a lease any more (each holds the pool): give the cache back.
        self.free_cached();
    }
}

/// A caching allocator of device memory for one device, with the statistics PyTorch users know
/// from `torch.cuda.memory_stats` and a per-process cap. Cheap to clone (clones share the cache
/// and the statistics); `Send + Sync`: one lock, held for a hash-map lookup by size class.
///
/// Asking the driver for memory costs microseconds (`cuMemAllocAsync`) to tens of microseconds
/// (`cuMemAlloc`, which also synchronizes on free). A pool keeps the blocks its buffers give back
/// and hands them out again: a request served from the cache of its own stream allocates
/// nothing (its one driver call asks whether the stream is capturing a graph). Its buffers are
/// ordinary [`DeviceBuffer`]s, so every operation takes them; when one is dropped its block
/// returns to the pool instead of to the driver.
///
/// ```no_run
/// use hikube_gpu::{Cap, Device, MemoryPool, PoolOptions};
///
/// let device = Device::open(0)?;
/// // At most half of the GPU, e.g. for two containers sharing it.
/// let pool = MemoryPool::new(&device, PoolOptions { cap: Some(Cap::Fraction(0.5)) })?;
/// let stream = device.new_stream()?;
///
/// let x = pool.from_slice(&stream, &[1.0f32; 1000])?;
/// drop(x); // the block goes back to the pool's cache
/// let mut y = pool.alloc::<f32>(&stream, 1000)?; // the same block, from the cache
/// y.fill(&stream, 2.0)?;
///
/// let stats = pool.stats();
/// assert_eq!(stats.device_alloc_count, 1);
/// println!(
///     "{} B allocated, {} B reserved (peak {} B)",
///     stats.allocated_bytes.current, stats.reserved_bytes.current, stats.reserved_bytes.peak
/// );
/// drop(y);
/// pool.trim()?; // give every cached block back to the driver, and the driver's to the device
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
///
/// # Size classes
///
/// Requests are rounded up, as PyTorch does: to a multiple of 512 bytes up to 1 MiB (0 bytes
/// takes 512), to a multiple of 2 MiB above. A block serves only requests of its own class, so
/// the bytes a live buffer holds are exactly [`MemoryPool::size_class`] of what it asked for.
///
/// # Streams
///
/// A cached block can be reused on any stream of the device. Each block keeps the log of its
/// last buffer: every stream that used it, and its last use there (`memory::access`). A request prefers a block used only on its own stream (no ordering
/// needed, no driver call); a block used elsewhere is handed out after its stream waits for
/// every one of those uses, so no block is reused while any stream still reads or writes it.
/// Blocks go back to the driver on the device's private stream, after the same uses.
///
/// # The cap
///
/// [`PoolOptions::cap`] bounds the bytes the pool *reserves* (live and cached blocks). A request
/// that would cross it first gives the cached blocks back to the driver (again, up to a few
/// times, when other threads cache blocks meanwhile), then fails with
/// [`Error::OutOfMemory`]: `requested` is the rounded block size, `free` the room left under the
/// cap, `total` the cap. A driver out-of-memory also gives the cache back (and waits for the
/// device, so that queued frees finish) and retries once. Either way the pool stays usable.
/// Without a cap in the options, the environment variable [`MEMORY_FRACTION_ENV`]
/// (`HIKUBE_GPU_MEMORY_FRACTION=0.25`) sets one as a fraction of the device's memory: it is how
/// containers sharing one GPU keep out of each other's way. The cap counts this pool's memory
/// only: use one pool per device and process for it to be a per-process cap.
///
/// # Graph capture
///
/// Allocating from a pool on a stream that is capturing a graph is an [`Error::Capture`]: a block
/// handed out there would be written by every replay of the graph, long after its buffer went
/// back to the cache. Allocate before capturing. Buffers freed while a graph that touches them
/// lives go back to the cache only when the graph is dropped.
///
/// [`Graph`]: crate::Graph
#[derive(Clone)]
pub struct MemoryPool {
    inner: Arc<PoolInner>,
}

impl fmt::Debug for MemoryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("MemoryPool")
            .field("device", &self.inner.device.ordinal())
            .field("cap", &state.cap)
            .field("stats", &state.stats)
            .finish()
    }
}

impl Recycle for PoolInner {
    fn recycle(&self, ptr: sys::CUdeviceptr, lease: &Lease, log: AccessLog) {
        let mut state = self.lock();
        state.stats.on_release(lease.size, lease.requested, true);
        state.cache.put(lease.size, Block { ptr, log });
    }
}

/// Bytes counted against the cap while a driver allocation runs; uncounted on drop unless
/// committed.
struct Pending<'a> {
    pool: &'a PoolInner,
    size: usize,
}

impl Pending<'_> {
    /// The allocation succeeded: the bytes move from pending to reserved, in one step.
    fn commit(self, requested: usize) {
        let mut state = self.pool.lock();
        state.pending = state.pending.saturating_sub(self.size);
        state.stats.on_device_alloc(self.size, requested);
        drop(state);
        std::mem::forget(self);
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        state.pending = state.pending.saturating_sub(self.size);
    }
}

fn driver_oom(e: &Error) -> bool {
    matches!(e, Error::Driver(d) if d.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY)
}

/// How many times a request at the cap empties the cache and tries again before it reports
/// out of memory: other threads may fill the cache again in between.
const CAP_RETRIES: usize = 8;

impl PoolInner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the state is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn out_of_memory(&self, requested: usize) -> Error {
        self.lock().stats.oom_count += 1;
        let info = self.device.memory_info();
        Error::OutOfMemory {
            requested,
            free: info.as_ref().map_or(0, |i| i.free),
            total: info.map_or(self.device.properties().total_memory, |i| i.total),
        }
    }

    /// A buffer's storage over `block`, handed out on `stream`.
    fn lend(self: &Arc<Self>, block: Block, size: usize, requested: usize) -> Arc<Storage> {
        let lease = Lease {
            pool: self.clone(),
            size,
            requested,
        };
        Storage::pooled(block.ptr, size, self.device.clone(), block.log, lease)
    }

    fn acquire(
        self: &Arc<Self>,
        stream: &Stream,
        requested: usize,
        size: usize,
    ) -> Result<Arc<Storage>> {
        // A block handed out inside a capture would be written by every replay of the graph,
        // long after the buffer went back to the cache: buffers for a graph are allocated
        // before capturing.
        stream.refuse_in_capture(
            "allocating from a memory pool (allocate before capturing and give the buffers to the \
             graph)",
        )?;
        let taken = self.lock().cache.take(size, stream);
        let Some(block) = taken else {
            return self.allocate(stream, requested, size);
        };
        // A block used on other streams: order this stream after every one of those uses (the
        // fast path, a block of this stream's own, needs no driver call).
        if !block.log.all_on(stream) {
            if let Err(e) = block.log.order_all(stream) {
                self.lock().cache.put(size, block);
                return Err(e);
            }
        }
        self.lock().stats.on_hit(size, requested);
        Ok(self.lend(block, size, requested))
    }

    /// Counts `size` bytes against the cap. At the cap, gives the cached blocks back and tries
    /// again (a few times: other threads may cache blocks in between), so that blocks cached for
    /// other size classes never turn the cap into a smaller one.
    fn reserve(&self, size: usize) -> Result<Pending<'_>> {
        let mut retries = 0;
        loop {
            let mut state = self.lock();
            let used = state
                .stats
                .reserved_bytes
                .current
                .saturating_add(state.pending);
            match state.cap {
                Some(cap) if used.saturating_add(size) > cap => {
                    if retries < CAP_RETRIES && state.stats.cached_blocks > 0 {
                        state.stats.alloc_retries += 1;
                        retries += 1;
                        drop(state);
                        self.free_cached();
                        continue;
                    }
                    state.stats.oom_count += 1;
                    return Err(Error::OutOfMemory {
                        requested: size,
                        free: cap.saturating_sub(used),
                        total: cap,
                    });
                }
                _ => {
                    state.pending = state.pending.saturating_add(size);
                    return Ok(Pending { pool: self, size });
                }
            }
        }
    }

    /// A new block from the driver (the cache had none of this size class for this request).
    fn allocate(
        self: &Arc<Self>,
        stream: &Stream,
        requested: usize,
        size: usize,
    ) -> Result<Arc<Storage>> {
        if size > self.device.properties().total_memory {
            return Err(self.out_of_memory(size));
        }
        let pending = self.reserve(size)?;
        let (ptr, log) = match self.device.alloc_raw(stream, size) {
            Ok(got) => got,
            Err(e) if driver_oom(&e) => {
                // Give the cache back, let the queued frees finish, and try once more.
                self.lock().stats.alloc_retries += 1;
                self.free_cached();
                self.ctx.synchronize()?;
                self.trim_driver_pool()?;
                match self.device.alloc_raw(stream, size) {
                    Ok(got) => got,
                    Err(e) if driver_oom(&e) => {
                        drop(pending);
                        return Err(self.out_of_memory(size));
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        pending.commit(requested);
        Ok(self.lend(Block { ptr, log }, size, requested))
    }

    /// Gives every cached block back to the driver, each after the uses of its last buffer (on
    /// the device's private stream, without waiting); returns the bytes.
    fn free_cached(&self) -> usize {
        let blocks: Vec<(usize, Block)> = self.lock().cache.drain().collect();
        for (_, block) in &blocks {
            self.device.free_raw(block.ptr, &block.log);
        }
        let mut state = self.lock();
        let mut bytes = 0usize;
        for (size, _) in &blocks {
            state.stats.on_device_free(*size);
            bytes = bytes.saturating_add(*size);
        }
        bytes
    }

    /// Returns the driver's stream-ordered pool memory that nothing uses to the device.
    fn trim_driver_pool(&self) -> Result<()> {
        if !self.ctx.has_async_alloc() {
            return Ok(()); // cuMemFree gave everything back already
        }
        let dev = self.ctx.cu_device();
        // SAFETY: `dev` is the device of this live context; the pools are the driver's own
        // (current and default) for it, valid for the process; trimming releases only memory
        // no allocation holds.
        unsafe {
            let current = result::device::get_mem_pool(dev)?;
            result::mem_pool::trim_to(current, 0)?;
            let default = result::device::get_default_mem_pool(dev)?;
            if default != current {
                result::mem_pool::trim_to(default, 0)?;
            }
        }
        Ok(())
    }
}

impl MemoryPool {
    /// A new, empty pool for `device`. With no cap in `options`, [`MEMORY_FRACTION_ENV`] sets
    /// one if present. [`Error::InvalidArgument`] for an invalid cap (or environment value).
    pub fn new(device: &Device, options: PoolOptions) -> Result<MemoryPool> {
        let cap = match options.cap {
            Some(cap) => Some(cap),
            None => match std::env::var(MEMORY_FRACTION_ENV) {
                Ok(value) => cap_from_env(Some(&value))?,
                Err(std::env::VarError::NotPresent) => None,
                Err(std::env::VarError::NotUnicode(value)) => {
                    return Err(Error::InvalidArgument {
                        what: format!("{MEMORY_FRACTION_ENV}={value:?} is not a fraction"),
                    })
                }
            },
        };
        let total = device.properties().total_memory;
        let cap = cap.map(|c| c.to_bytes(total)).transpose()?;
        Ok(MemoryPool {
            inner: Arc::new(PoolInner {
                device: device.clone(),
                ctx: device.inner.ctx.clone(),
                state: Mutex::new(State {
                    cache: Cache::default(),
                    cap,
                    pending: 0,
                    stats: PoolStats::default(),
                }),
            }),
        })
    }

    /// The device the pool allocates on.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// The size class of a request of `bytes`: what a buffer of that many bytes holds. `None`
    /// if rounding up overflows.
    ///
    /// ```
    /// use hikube_gpu::MemoryPool;
    /// assert_eq!(MemoryPool::size_class(1), Some(512));
    /// assert_eq!(MemoryPool::size_class(4000), Some(4096));
    /// assert_eq!(MemoryPool::size_class((1 << 20) + 1), Some(2 << 20));
    /// ```
    pub fn size_class(bytes: usize) -> Option<usize> {
        cache::size_class(bytes)
    }

    /// `len` elements on `stream`'s device, from the cache if it holds a block of the size class,
    /// else from the driver. The contents are unspecified (any bit pattern is a valid `T`). When
    /// the buffer is dropped, its block goes back to the pool.
    ///
    /// [`Error::OutOfMemory`] at the cap (`requested` is the rounded size, `free` the room left
    /// under the cap, `total` the cap) or when the device is full even after the cache was given
    /// back (`free` and `total` are the device's); [`Error::WrongDevice`] for a stream of another
    /// device; [`Error::Capture`] on a stream that is capturing a graph.
    pub fn alloc<T: Pod>(&self, stream: &Stream, len: usize) -> Result<DeviceBuffer<T>> {
        let inner = &self.inner;
        inner.device.check_same(stream.device())?;
        let size = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| Self::size_class(b).map(|size| (b, size)));
        let Some((requested, size)) = size else {
            return Err(Error::InvalidArgument {
                what: format!(
                    "len = {len} elements of {} bytes overflows the address space",
                    std::mem::size_of::<T>()
                ),
            });
        };
        let storage = inner.acquire(stream, requested, size)?;
        Ok(DeviceBuffer::from_storage(storage, len))
    }

    /// `len` elements set to all-zero bits (a memset on `stream`).
    pub fn zeroed<T: Pod>(&self, stream: &Stream, len: usize) -> Result<DeviceBuffer<T>> {
        let mut buf = self.alloc(stream, len)?;
        buf.set_zero(stream)?;
        Ok(buf)
    }

    /// A copy of `data`.
    pub fn from_slice<T: Pod>(&self, stream: &Stream, data: &[T]) -> Result<DeviceBuffer<T>> {
        let mut buf = self.alloc(stream, data.len())?;
        buf.copy_from_host(stream, data)?;
        Ok(buf)
    }

    /// A snapshot of the statistics (taken under the pool's lock: consistent with itself).
    pub fn stats(&self) -> PoolStats {
        self.inner.lock().stats
    }

    /// Sets every peak to its current value (`torch.cuda.reset_peak_memory_stats`).
    pub fn reset_peak(&self) {
        self.inner.lock().stats.reset_peaks();
    }

    /// Gives every cached block back to the driver, waits for the device (so that the queued
    /// frees complete), then has the driver return its unused pool memory to the device
    /// (`cuMemPoolTrimTo(pool, 0)`): free device memory goes up by about the bytes released. Live
    /// buffers are untouched. Returns the bytes released from the cache
    /// (`torch.cuda.empty_cache`).
    pub fn trim(&self) -> Result<usize> {
        let bytes = self.inner.free_cached();
        self.inner.ctx.synchronize()?;
        self.inner.trim_driver_pool()?;
        Ok(bytes)
    }

    /// The cap in bytes, if any.
    pub fn cap(&self) -> Option<usize> {
        self.inner.lock().cap
    }

    /// Sets the cap (`None`: no cap; the environment is not read again). Buffers already live are
    /// kept even above it; later requests that would cross it fail.
    pub fn set_cap(&self, cap: Option<Cap>) -> Result<()> {
        let total = self.inner.device.properties().total_memory;
        let cap = cap.map(|c| c.to_bytes(total)).transpose()?;
        self.inner.lock().cap = cap;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_buffers_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<MemoryPool>();
        check::<PoolStats>();
        check::<DeviceBuffer<f32>>();
    }
}
