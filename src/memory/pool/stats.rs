//! The pool's statistics, with the meaning of `torch.cuda.memory_stats`.

/// A statistic that moves up and down: its value now, and the highest it reached since the pool
/// was created or [`MemoryPool::reset_peak`](crate::MemoryPool::reset_peak) was called.
///
/// The peak of one phase of a program, measured alone:
///
/// ```no_run
/// use hikube_gpu::{Device, MemoryPool, PoolOptions};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let pool = MemoryPool::new(&device, PoolOptions::default())?;
/// let weights = pool.alloc::<f32>(&stream, 1 << 20)?; // 4 MiB, kept
/// pool.reset_peak();
/// let scratch = pool.alloc::<f32>(&stream, 4 << 20)?; // 16 MiB, for this phase only
/// drop(scratch);
/// let allocated = pool.stats().allocated_bytes;
/// assert_eq!(allocated.current, 4 << 20);
/// assert_eq!(allocated.peak, 20 << 20);
/// # drop(weights);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStat {
    /// The value now.
    pub current: usize,
    /// The highest value since creation or the last [`MemoryPool::reset_peak`](crate::MemoryPool::reset_peak).
    pub peak: usize,
}

impl PoolStat {
    fn set(&mut self, value: usize) {
        self.current = value;
        self.peak = self.peak.max(value);
    }

    fn add(&mut self, n: usize) {
        self.set(self.current.saturating_add(n));
    }

    fn sub(&mut self, n: usize) {
        self.set(self.current.saturating_sub(n));
    }

    fn reset_peak(&mut self) {
        self.peak = self.current;
    }
}

/// A [`MemoryPool`](crate::MemoryPool)'s statistics, with the meaning of `torch.cuda.memory_stats` (key in
/// parentheses). Bytes are counted in whole blocks, after rounding to size classes.
///
/// ```no_run
/// use hikube_gpu::{Device, MemoryPool, PoolOptions};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let pool = MemoryPool::new(&device, PoolOptions::default())?;
/// let buf = pool.alloc::<f32>(&stream, 1 << 20)?;
/// let s = pool.stats();
/// println!("allocated {} B (peak {}), reserved {} B", s.allocated_bytes.current,
///          s.allocated_bytes.peak, s.reserved_bytes.current);
/// # drop(buf);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes of the blocks live buffers hold (`allocated_bytes.all`).
    pub allocated_bytes: PoolStat,
    /// Bytes the live buffers asked for, before rounding (`requested_bytes.all`).
    pub requested_bytes: PoolStat,
    /// Bytes held from the driver: the live blocks and the cached ones (`reserved_bytes.all`).
    pub reserved_bytes: PoolStat,
    /// Bytes reserved that no live buffer can use: the cached blocks, plus the rounding slack at
    /// the end of the live blocks; `reserved - requested`. The pool does not split blocks, so this
    /// is the whole of its fragmentation (`inactive_split_bytes.all` counts free pieces of split
    /// blocks in PyTorch).
    pub inactive_split_bytes: PoolStat,
    /// Live buffers (`active.all`).
    pub active_blocks: PoolStat,
    /// Blocks in the cache now, waiting to be reused.
    pub cached_blocks: usize,
    /// Buffers handed out, from the cache or the driver (`allocation.all.allocated`).
    pub allocation_count: u64,
    /// Buffers given back (`allocation.all.freed`).
    pub free_count: u64,
    /// Blocks allocated from the driver (`num_device_alloc`).
    pub device_alloc_count: u64,
    /// Blocks given back to the driver (`num_device_free`).
    pub device_free_count: u64,
    /// Requests that failed with [`Error::OutOfMemory`](crate::Error::OutOfMemory) (`num_ooms`).
    pub oom_count: u64,
    /// Requests that emptied the cache to fit, at the cap or after a driver out-of-memory
    /// (`num_alloc_retries`).
    pub alloc_retries: u64,
}

impl PoolStats {
    /// Bytes in cached blocks: `reserved - allocated`.
    pub fn cached_bytes(&self) -> usize {
        self.reserved_bytes
            .current
            .saturating_sub(self.allocated_bytes.current)
    }

    /// Requests served from the cache, without a driver allocation.
    pub fn cache_hits(&self) -> u64 {
        self.allocation_count
            .saturating_sub(self.device_alloc_count)
    }

    pub(super) fn settle(&mut self) {
        let inactive = self
            .reserved_bytes
            .current
            .saturating_sub(self.requested_bytes.current);
        self.inactive_split_bytes.set(inactive);
    }

    pub(super) fn hand_out(&mut self, size: usize, requested: usize) {
        self.allocation_count += 1;
        self.allocated_bytes.add(size);
        self.requested_bytes.add(requested);
        self.active_blocks.add(1);
    }

    /// A request served from the cache.
    pub(super) fn on_hit(&mut self, size: usize, requested: usize) {
        self.cached_blocks = self.cached_blocks.saturating_sub(1);
        self.hand_out(size, requested);
        self.settle();
    }

    /// A request served by a new driver allocation.
    pub(super) fn on_device_alloc(&mut self, size: usize, requested: usize) {
        self.device_alloc_count += 1;
        self.reserved_bytes.add(size);
        self.hand_out(size, requested);
        self.settle();
    }

    /// A buffer given back: its block is cached, or (`cached` false) given to the driver.
    pub(super) fn on_release(&mut self, size: usize, requested: usize, cached: bool) {
        self.free_count += 1;
        self.allocated_bytes.sub(size);
        self.requested_bytes.sub(requested);
        self.active_blocks.sub(1);
        if cached {
            self.cached_blocks += 1;
        } else {
            self.device_free_count += 1;
            self.reserved_bytes.sub(size);
        }
        self.settle();
    }

    /// A cached block given back to the driver.
    pub(super) fn on_device_free(&mut self, size: usize) {
        self.cached_blocks = self.cached_blocks.saturating_sub(1);
        self.device_free_count += 1;
        self.reserved_bytes.sub(size);
        self.settle();
    }

    pub(super) fn reset_peaks(&mut self) {
        self.allocated_bytes.reset_peak();
        self.requested_bytes.reset_peak();
        self.reserved_bytes.reset_peak();
        self.inactive_split_bytes.reset_peak();
        self.active_blocks.reset_peak();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn stats_arithmetic() {
        let mut s = PoolStats::default();
        s.on_device_alloc(1024, 1000); // a miss
        s.on_device_alloc(2 * MIB, MIB + 1); // another
        assert_eq!(
            s.allocated_bytes,
            PoolStat {
                current: 1024 + 2 * MIB,
                peak: 1024 + 2 * MIB
            }
        );
        assert_eq!(s.requested_bytes.current, 1000 + MIB + 1);
        assert_eq!(s.reserved_bytes.current, 1024 + 2 * MIB);
        assert_eq!(s.inactive_split_bytes.current, 24 + MIB - 1);
        s.on_release(2 * MIB, MIB + 1, true); // cached
        assert_eq!(
            s.allocated_bytes,
            PoolStat {
                current: 1024,
                peak: 1024 + 2 * MIB
            }
        );
        assert_eq!(s.reserved_bytes.current, 1024 + 2 * MIB);
        assert_eq!(s.cached_bytes(), 2 * MIB);
        assert_eq!(s.inactive_split_bytes.current, 24 + 2 * MIB);
        assert_eq!((s.cached_blocks, s.active_blocks.current), (1, 1));
        s.on_hit(2 * MIB, 2 * MIB); // reused, no driver call
        assert_eq!(s.reserved_bytes.current, 1024 + 2 * MIB);
        assert_eq!(s.inactive_split_bytes.current, 24);
        assert_eq!(
            (s.allocation_count, s.device_alloc_count, s.cache_hits()),
            (3, 2, 1)
        );
        s.reset_peaks();
        assert_eq!(s.allocated_bytes.peak, s.allocated_bytes.current);
        s.on_release(2 * MIB, 2 * MIB, true);
        s.on_release(1024, 1000, false); // swapped block: straight to the driver
        s.on_device_free(2 * MIB); // trim
        assert_eq!(
            s.reserved_bytes,
            PoolStat {
                current: 0,
                peak: 1024 + 2 * MIB
            }
        );
        assert_eq!(
            s.allocated_bytes,
            PoolStat {
                current: 0,
                peak: 1024 + 2 * MIB
            }
        );
        assert_eq!(s.requested_bytes.current, 0);
        assert_eq!(s.inactive_split_bytes.current, 0);
        assert_eq!(
            (s.free_count, s.device_free_count, s.cached_blocks),
            (3, 2, 0)
        );
        assert_eq!(
            s.active_blocks,
            PoolStat {
                current: 0,
                peak: 2
            }
        );
    }
}
