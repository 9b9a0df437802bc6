//! Device and pinned host memory.

mod array;
mod device;
mod pinned;

pub use device::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice, DeviceSliceMut};
pub use pinned::PinnedBuffer;
