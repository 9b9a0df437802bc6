//! Device and pinned host memory.

pub(crate) mod access;
mod array;
pub(crate) mod device;
mod pinned;
pub(crate) mod pool;
mod raw;
mod transfer;

pub use device::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice, DeviceSliceMut};
pub use pinned::PinnedBuffer;
pub use pool::{Cap, MemoryPool, PoolOptions, PoolStat, PoolStats, MEMORY_FRACTION_ENV};
pub use transfer::{PinnedBlock, PinnedPool, Prefetcher, TransferPipeline};

/// [`Error::BufferTooSmall`](crate::Error::BufferTooSmall) for `operand` unless a buffer of
/// `actual` elements holds the `required` ones an operation touches.
pub(crate) fn ensure_len(
    operand: &'static str,
    required: usize,
    actual: usize,
) -> crate::Result<()> {
    if actual >= required {
        Ok(())
    } else {
        Err(crate::Error::BufferTooSmall {
            operand,
            required,
            actual,
        })
    }
}
