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
//!
//! ## Soundness
//!
//! Safe code cannot reach undefined behaviour through this crate. The invariants, who upholds
//! them, and the tests that fail if one breaks:
//!
//! | invariant | upheld by | proved by |
//! |---|---|---|
//! | A buffer's allocation never changes under it; views cannot outlive or alias a writer | `DeviceBuffer` owns its memory behind an `Arc` it never hands out; views borrow it | `tests/compile-fail` (`buffer_allocation_is_not_exposed`, `slice_outlives_buffer`, `write_while_viewed`) |
//! | Every use of memory is ordered after the uses it must follow, on any stream or thread | each allocation's access log (`memory::access`): the last write and every read since, one per stream, numbered on it; an event is recorded only when another stream, the host or a free must wait; every operation takes its pointers through an `Access` | GPU tests `soundness::write_waits_for_every_reader`, `soundness::one_context_three_ways`, `pool::*hand_over*` |
//! | A plan launched from several threads at once never shares its workspace unordered | [`ops::matmul::Matmul`] locks its split-K workspace from taking its address until the launch is noted in its log, which orders the next launch (any stream) after it | GPU test `matmul_api::one_plan_four_threads` |
//! | Memory is freed or reused only after every pending use | the log travels with a pool block; frees wait for it on a private stream; pinned host views wait for it | `soundness::pool_reuse_waits_for_every_reader`, `soundness::pinned_view_waits_for_every_copy` |
//! | A graph never touches freed memory, and replays in order | a capture collects every allocation its nodes touch; the [`Graph`] keeps them alive and replays through an `Access`; its resources are only lent out read-only | `soundness::graph_keeps_what_it_touches`, `soundness::replay_is_ordered_both_ways`, `compile-fail/graph_resources_are_not_swappable` |
//! | Capturing stops nothing else | thread-local capture mode; per-stream capture state, begun only after the stream's eager work in flight has been noted; another thread's work on the capturing stream and a stream joined into a capture are refused | `soundness::capture_stops_no_other_thread`, `soundness::joined_stream_refused_in_capture` |
//! | Nothing a replay reads from the host can change or vanish | pinned copies and wide fills (host staging) are refused inside a capture | `soundness::wide_fill_refused_in_capture` |
//! | One context per GPU | [`Device::open`] hands out the process's one context for the GPU, however it is named | `soundness::one_context_three_ways` |
//! | No kernel touches memory outside its buffers | sizes, strides and offsets validated with checked arithmetic when a plan is made (`size`, the plans' `validate`), and again in the launch layer right before each launch: a kernel's parameters are a struct of `launch::args`/`gemm`/`conv` made only by a constructor that checks every operand's length (taken with its address through an `Access`) against the furthest element the kernel reaches with those scalars, and `run` refuses a grid the kernel does not bound and launches only a kernel of the struct's own family (a `Kernel<A>` handle, loaded by the launch layer from the family's symbol); tensor maps must lie inside their operands; vectorised paths only where the extent covers the vector | `launch::*` unit tests (among them: every symbol a plan can load is a kernel of its PTX), `tests/properties.rs`, the GPU kernel tests under `compute-sanitizer` |
//! | cudarc cannot undo the above | the raw stream is behind the `unsafe` [`Stream::cuda_stream`]; no buffer exposes its cudarc allocation | `compile-fail/raw_stream_is_unsafe` |
//!
//! `unsafe` appears in the driver wrappers (`device`, `stream`, `graph`, `memory`), the launch
//! layer (`launch`: the one `unsafe` block of each of its two launch functions, the
//! `unsafe impl`s of its `KernelArgs` trait for the checked argument structs, and the TMA
//! encoder's FFI) and the FFI of NCCL and cuBLAS/cuDNN, each with its `// SAFETY:` proof. The
//! operations (`ops`) hold none: they take their operands through an `Access` and launch through
//! safe functions of the launch layer. Those functions take a `Kernel<A>` handle with the
//! argument struct `A`, and a handle is made only by the launch layer from `A`'s own symbol for
//! a typed variant, so the types forbid launching a kernel with another kernel's parameters,
//! and the PTX target that decides an early (PDL) launch is the one the handle was loaded from.

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

pub mod catalog;
mod context;
mod device;
mod error;
mod event;
pub mod fp8;
mod graph;
mod launch;
mod memory;
pub mod modules;
#[cfg(feature = "nvml")]
pub mod monitor;
pub mod multi;
pub mod ops;
#[cfg(any(feature = "cublas", feature = "cudnn"))]
pub mod reference;
mod registry;
mod size;
mod stream;
mod tiles;
mod timing;

pub use catalog::{Architecture, ComputeCapability, PtxArch};
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
#[cfg(feature = "nvml")]
pub use monitor::{GpuMetrics, MachineState, Monitor};
pub use ops::{Dtype, Float, KernelOptions};
pub use stream::Stream;
pub use timing::{time_on_stream, Timings};

/// The README's examples, compiled as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Re-exported so users name the same `f16`/`bf16` types the crate uses.
pub use float8;
pub use half;
/// Re-exported for array interop.
pub use ndarray;
