//! Several GPUs in one process: a [`DeviceSet`] with its [`Topology`], copies between GPUs
//! ([`PeerCopy`]: peer-to-peer where possible, staged through pinned host memory otherwise),
//! collectives (NCCL's `Communicator` with the `nccl` feature; [`CopyAllReduce`] without it),
//! and a data-parallel training step ([`DataParallel`]) whose gradient all-reduce overlaps the
//! backward pass.
//!
//! ```no_run
//! use hikube_gpu::multi::{CopyPath, DeviceSet, PeerCopy};
//! use hikube_gpu::DeviceBuffer;
//!
//! let set = DeviceSet::all()?; // or DeviceSet::open(&[0, 1]), DeviceSet::by_uuids(&[...])
//! print!("{}", set.topology()); // NVLink / PCIe path and peer access, like nvidia-smi topo -m
//! let streams = set.new_streams()?;
//! let last = set.len() - 1;
//! let a = DeviceBuffer::from_slice(&streams[0], &vec![1.0f32; 1 << 20])?;
//! let mut b = DeviceBuffer::<f32>::alloc(&streams[last], 1 << 20)?;
//! PeerCopy::new(&set, 16 << 20)?.copy(CopyPath::Auto, &streams[0], &a, &streams[last], &mut b)?;
//! # Ok::<(), hikube_gpu::Error>(())
//! ```

mod data_parallel;
mod device_set;
#[cfg(feature = "nccl")]
mod nccl;
mod p2p;
mod reduce;
mod topology;

pub use data_parallel::{DataParallel, DataParallelConfig, GradientSync};
pub use device_set::DeviceSet;
#[cfg(feature = "nccl")]
pub use nccl::{nccl_version, Communicator, ReduceOp};
pub use p2p::{CopyPath, PeerCopy};
pub use reduce::CopyAllReduce;
pub use topology::{Link, LinkKind, PciePath, Topology, TopologyDevice};
