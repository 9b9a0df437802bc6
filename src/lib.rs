//! # hikube-gpu
//!
//! Safe GPU computing on NVIDIA cards, from Rust: devices and their peak figures, streams and
//! events, device and pinned memory, and CUDA kernels that ship as PTX for every architecture
//! from Volta (sm_70) to Hopper (sm_90a), loaded by the driver — no CUDA toolkit needed to build
//! or to run. Users never write `unsafe`.
//!
//! ## Quickstart
//!
//! ```no_run
//! use hikube_gpu::{ops, Device, DeviceBuffer};
//!
//! let device = Device::open(0)?;
//! let model = device.model();
//! println!("{}: {:.0} TFLOP/s FP16 dense", model.name, model.fp16_tflops);
//!
//! let stream = device.default_stream();
//! let x = DeviceBuffer::from_slice(&stream, &[1.0f32, 2.0, 3.0])?;
//! let mut y = DeviceBuffer::from_slice(&stream, &[10.0f32, 20.0, 30.0])?;
//! ops::axpy(&stream, 2.0, &x, &mut y)?; // y = 2x + y, on the GPU
//! assert_eq!(y.to_vec(&stream)?, [12.0, 24.0, 36.0]);
//! # Ok::<(), hikube_gpu::Error>(())
//! ```
//!
//! Several GPUs of one process — device sets, peer copies, NCCL collectives (feature `nccl`) and a
//! data-parallel step — are in [`multi`].
//!
//! Without a GPU or driver, [`Device::open`] returns an [`Error`] for which
//! [`Error::is_no_gpu`] is true; nothing panics.

#![warn(missing_docs, unsafe_op_in_unsafe_fn)]
// No panic from a public function on any argument (issue 16): library code returns `Error`.
// Tests may unwrap. Modules that compute sizes from user input also warn on unchecked
// arithmetic (`clippy::arithmetic_side_effects`, set in each of them).
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod arch;
pub mod catalog;
mod device;
mod error;
mod event;
mod graph;
mod launch;
mod memory;
pub mod modules;
pub mod monitor;
pub mod multi;
pub mod ops;
#[cfg(any(feature = "cublas", feature = "cudnn"))]
pub mod reference;
mod size;
mod stream;
mod timing;

pub use arch::{Architecture, ComputeCapability, PtxArch};
pub use catalog::{GpuModel, Provenance};
pub use device::{driver_version, Device, DeviceProperties, MemoryInfo, Selection};
pub use error::{Error, Result};
pub use event::Event;
pub use graph::Graph;
pub use memory::{
    AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice, DeviceSliceMut, PinnedBlock,
    PinnedBuffer, PinnedPool, Prefetcher, TransferPipeline,
};
pub use memory::{Cap, MemoryPool, PoolOptions, PoolStat, PoolStats, MEMORY_FRACTION_ENV};
pub use modules::{LoadInfo, ModuleImage};
pub use monitor::{GpuMetrics, MachineState, Monitor};
pub use ops::{Float, KernelOptions};
pub use stream::Stream;
pub use timing::{time_on_stream, Timings};

/// The README's examples, compiled as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Re-exported so users name the same `f16`/`bf16` types the crate uses.
pub use half;
/// Re-exported for array interop.
pub use ndarray;
