//! Device and pinned host memory.

mod array;
mod device;
mod pinned;
mod transfer;

pub use device::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice, DeviceSliceMut};
pub use pinned::PinnedBuffer;
pub use transfer::{PinnedBlock, PinnedPool, Prefetcher, TransferPipeline};
