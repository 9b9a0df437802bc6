//! Device and pinned host memory.

mod array;
mod device;
mod pinned;
pub(crate) mod pool;
mod transfer;

pub use device::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice, DeviceSliceMut};
pub use pinned::PinnedBuffer;
pub use pool::{Cap, MemoryPool, PoolOptions, PoolStat, PoolStats, MEMORY_FRACTION_ENV};
pub use transfer::{PinnedBlock, PinnedPool, Prefetcher, TransferPipeline};
