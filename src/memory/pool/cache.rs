//! The pool's cache: size classes, the blocks buffers gave back, and which block a request on a
//! stream takes (one of its own stream's if it can, so that no ordering is needed).

use crate::memory::access::AccessLog;
use crate::stream::Stream;
use cudarc::driver::sys;
use std::collections::HashMap;

/// Requests up to this size are rounded to [`SMALL_GRANULE`].
const SMALL_LIMIT: usize = 1 << 20;
/// Rounding of small requests (and the smallest block).
const SMALL_GRANULE: usize = 512;
/// Rounding of requests above [`SMALL_LIMIT`].
const LARGE_GRANULE: usize = 2 << 20;
/// How many blocks of a size class a request looks through for one of its own stream before it
/// takes another stream's: bounded, so that a lookup stays O(1).
const SAME_STREAM_SCAN: usize = 8;

/// The size class of a request of `bytes` (see [`MemoryPool::size_class`]).
///
/// [`MemoryPool::size_class`]: crate::MemoryPool::size_class
pub(super) fn size_class(bytes: usize) -> Option<usize> {
    if bytes <= SMALL_LIMIT {
        Some(bytes.max(1).div_ceil(SMALL_GRANULE) * SMALL_GRANULE)
    } else {
        bytes.checked_next_multiple_of(LARGE_GRANULE)
    }
}

/// A block in the cache: device memory, and the uses of the last buffer over it.
pub(super) struct Block {
    pub(super) ptr: sys::CUdeviceptr,
    pub(super) log: AccessLog,
}

/// Cached blocks by size class; the last put is taken first (warm in L2 and TLBs).
#[derive(Default)]
pub(super) struct Cache {
    free: HashMap<usize, Vec<Block>>,
}

impl Cache {
    /// Takes a block of the size class out of the cache: one used only on `stream` (or whose
    /// uses are known to be over) if among the last few cached, else the last cached.
    pub(super) fn take(&mut self, size: usize, stream: &Stream) -> Option<Block> {
        let list = self.free.get_mut(&size)?;
        let n = list.len();
        let own = list
            .iter()
            .rev()
            .take(SAME_STREAM_SCAN)
            .position(|b| b.log.all_on(stream));
        let at = n.checked_sub(1 + own.unwrap_or(0))?;
        Some(list.swap_remove(at))
    }

    /// Puts a block of the size class in the cache (a buffer gave it back, or a request did
    /// not use it after all).
    pub(super) fn put(&mut self, size: usize, block: Block) {
        self.free.entry(size).or_default().push(block);
    }

    /// Empties the cache: every block, with its size class.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = (usize, Block)> {
        std::mem::take(&mut self.free)
            .into_iter()
            .flat_map(|(size, list)| list.into_iter().map(move |b| (size, b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn size_classes_round_like_pytorch() {
        let class = size_class;
        for (bytes, expect) in [
            (0, 512),
            (1, 512),
            (511, 512),
            (512, 512),
            (513, 1024),
            (4000, 4096),
            (MIB - 1, MIB),
            (MIB, MIB),
            (MIB + 1, 2 * MIB),
            (2 * MIB, 2 * MIB),
            (2 * MIB + 1, 4 * MIB),
            (7 * MIB + 3, 8 * MIB),
        ] {
            assert_eq!(class(bytes), Some(expect), "{bytes} bytes");
        }
        assert_eq!(class(usize::MAX), None);
        let top = usize::MAX - LARGE_GRANULE + 1; // the largest multiple of 2 MiB
        assert_eq!(class(top), Some(top));
        assert_eq!(class(top + 1), None);
        // Every class is a fixed point, and never below the request.
        for bytes in (0..3 * MIB).step_by(4099) {
            let c = class(bytes).unwrap();
            assert!(c >= bytes && class(c) == Some(c), "{bytes} -> {c}");
        }
    }
}
