//! The crate's one error type.

use crate::catalog::PtxArch;

/// Everything that can go wrong in hikube-gpu. Numbers live inside the variants so that a caller
/// can act on them (retry with a smaller batch, pick another device, ...).
///
/// ```no_run
/// use hikube_gpu::{Device, DeviceBuffer, Error};
/// let device = match Device::open(0) {
///     Ok(d) => d,
///     Err(e) if e.is_no_gpu() => return Ok(()), // no GPU or driver here: nothing to do
///     Err(e) => return Err(e),
/// };
/// let stream = device.default_stream();
/// match DeviceBuffer::<f32>::alloc(&stream, 1 << 40) {
///     Err(Error::OutOfMemory { requested, free, .. }) => {
///         println!("{requested} bytes asked, {free} free: use a smaller batch")
///     }
///     other => drop(other?),
/// }
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The CUDA driver library (`libcuda.so`) could not be loaded: no NVIDIA driver here.
    #[error("no CUDA driver: {reason}")]
    NoDriver {
        /// Why the driver could not be used.
        reason: String,
    },
    /// The driver loaded but sees no GPU (check `CUDA_VISIBLE_DEVICES`).
    #[error("the CUDA driver sees no GPU (CUDA_VISIBLE_DEVICES may hide them)")]
    NoDevice,
    /// A device index past the number of visible devices.
    #[error("device index {index} is out of range: {count} device(s) visible")]
    DeviceIndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// How many devices the driver sees.
        count: usize,
    },
    /// No visible device has this UUID.
    #[error("no visible device has UUID {uuid}")]
    DeviceNotFound {
        /// The UUID asked for.
        uuid: String,
    },
    /// Two objects that must live on one device (a buffer and a stream, say) do not.
    #[error("objects on different devices: expected device {expected}, got device {actual}")]
    WrongDevice {
        /// Ordinal of the device the operation runs on.
        expected: usize,
        /// Ordinal of the device the object belongs to.
        actual: usize,
    },
    /// An allocation larger than the device can give.
    #[error("out of device memory: requested {requested} bytes, {free} free of {total}")]
    OutOfMemory {
        /// Bytes asked for.
        requested: usize,
        /// Bytes free on the device when the allocation failed.
        free: usize,
        /// Total bytes on the device.
        total: usize,
    },
    /// Page-locked host memory could not be allocated.
    #[error("could not allocate {requested} bytes of pinned host memory: {source}")]
    PinnedAlloc {
        /// Bytes asked for.
        requested: usize,
        /// The driver's error.
        source: cudarc::driver::DriverError,
    },
    /// A copy between buffers whose lengths differ.
    #[error("length mismatch: destination holds {expected} elements, source has {actual}")]
    LengthMismatch {
        /// Elements the destination holds.
        expected: usize,
        /// Elements the source has.
        actual: usize,
    },
    /// A sub-slice range outside the buffer.
    #[error("range {start}..{end} is out of bounds for a buffer of {len} elements")]
    OutOfBounds {
        /// First element of the range.
        start: usize,
        /// One past the last element of the range.
        end: usize,
        /// Elements in the buffer.
        len: usize,
    },
    /// An array shape that does not hold the number of elements given.
    #[error("shape {shape:?} holds {expected} elements, the buffer has {actual}")]
    ShapeMismatch {
        /// The requested shape.
        shape: Vec<usize>,
        /// Elements that shape holds.
        expected: usize,
        /// Elements available.
        actual: usize,
    },
    /// A matrix dimension, leading dimension or stride that cannot describe the operation.
    #[error("{what} is {value}, but must be at least {min}")]
    InvalidDimension {
        /// Which dimension, e.g. `lda (A row-major, 4096 x 100)`.
        what: String,
        /// The value given.
        value: usize,
        /// The smallest value that works.
        min: usize,
    },
    /// A dimension beyond what the kernels index (32-bit rows and columns, grid limits).
    #[error("{what} is {value}, more than the supported {max}")]
    TooLarge {
        /// Which quantity.
        what: String,
        /// The value given.
        value: usize,
        /// The largest supported value.
        max: usize,
    },
    /// A buffer too small for the shape it is used with.
    #[error("{operand} needs {required} elements for this shape, the buffer has {actual}")]
    BufferTooSmall {
        /// Which operand (`A`, `B`, `C`, `D`, `bias`).
        operand: &'static str,
        /// Elements the shape reaches.
        required: usize,
        /// Elements in the buffer.
        actual: usize,
    },
    /// An element type the kernel path of this device has no tensor-core support for.
    #[error("{op} has no {dtype} kernels for compute capability {major}.{minor}")]
    UnsupportedDtype {
        /// The operation.
        op: &'static str,
        /// The element type, e.g. `bf16`.
        dtype: &'static str,
        /// Compute capability, major (of the path used).
        major: u32,
        /// Compute capability, minor.
        minor: u32,
    },
    /// Stream capture failed, or work that cannot be captured was attempted inside a capture
    /// (synchronizing, allocating, a second stream not joined back). The stream is usable again.
    #[error("CUDA graph capture failed: {reason}")]
    Capture {
        /// What went wrong.
        reason: String,
    },
    /// An argument outside what the operation supports.
    #[error("invalid argument: {what}")]
    InvalidArgument {
        /// What is wrong.
        what: String,
    },
    /// No kernel path exists for this compute capability (or a forced path the device cannot
    /// run).
    #[error(
        "no `{module}` kernels for compute capability {major}.{minor} (PTX shipped for: {available})"
    )]
    UnsupportedArch {
        /// The kernel module asked for.
        module: &'static str,
        /// Compute capability, major.
        major: u32,
        /// Compute capability, minor.
        minor: u32,
        /// The PTX targets the module ships, e.g. `compute_70, compute_80`.
        available: String,
    },
    /// The kernels needed were compiled for a PTX target that this build of the crate left out:
    /// its cargo feature (named after the target) is off.
    #[error(
        "the {arch} kernels of `{module}` are not in this build: enable hikube-gpu's cargo \
         feature `{feature}`"
    )]
    ArchLeftOut {
        /// The kernel module asked for.
        module: &'static str,
        /// The target that would have run.
        arch: PtxArch,
        /// The cargo feature that brings it back, e.g. `compute_90a`.
        feature: &'static str,
    },
    /// An embedded kernel image could not be decompressed: the binary is corrupt (the build
    /// checked every image's hash).
    #[error("the embedded {arch} image of `{module}` could not be decompressed: {reason}")]
    CorruptImage {
        /// The kernel module.
        module: &'static str,
        /// The target of the image.
        arch: PtxArch,
        /// What the decoder said.
        reason: String,
    },
    /// The driver refused to load (JIT-compile) a PTX module.
    #[error(
        "the driver (version {driver_version}) could not load `{module}` PTX for {arch} \
         (PTX ISA {ptx_isa}; ISA 8.4 needs driver R550 or newer): {source}"
    )]
    ModuleLoad {
        /// The kernel module.
        module: &'static str,
        /// The PTX target that failed.
        arch: PtxArch,
        /// The `.version` of the PTX text.
        ptx_isa: String,
        /// `cuDriverGetVersion`, e.g. 13000 for CUDA 13.0.
        driver_version: i32,
        /// The driver's error.
        source: cudarc::driver::DriverError,
    },
    /// NVML (`libnvidia-ml.so.1`, part of the NVIDIA driver) could not be loaded or initialized:
    /// monitoring is unavailable; the rest of the crate does not need it.
    #[error("NVML is unavailable: {reason}")]
    NoNvml {
        /// Why NVML could not be used.
        reason: String,
    },
    /// An NVML query failed.
    #[error("NVML {call} failed: {reason}")]
    Nvml {
        /// The query, e.g. `power usage of GPU-…`.
        call: String,
        /// NVML's error.
        reason: String,
    },
    /// NVML sees no GPU with the UUID of a CUDA device (a MIG instance, or a container that shows
    /// CUDA a GPU but hides it from NVML).
    #[error("NVML sees no GPU with UUID {uuid} (among its {nvml_count} device(s))")]
    NvmlDeviceNotFound {
        /// The CUDA device's UUID.
        uuid: String,
        /// How many GPUs NVML sees.
        nvml_count: usize,
    },
    /// The metrics server could not listen on an address.
    #[error("cannot serve metrics on {addr}: {reason}")]
    Serve {
        /// The address asked for, e.g. `127.0.0.1:9400`.
        addr: String,
        /// Why (address in use, permission denied, ...).
        reason: String,
    },
    /// A device that is not a member of the [`DeviceSet`](crate::multi::DeviceSet) used.
    #[error("device {ordinal} ({uuid}) is not in the device set")]
    NotInSet {
        /// Ordinal of the device.
        ordinal: usize,
        /// UUID of the device.
        uuid: String,
    },
    /// A multi-GPU call given a number of buffers (or streams) other than one per rank.
    #[error("one per rank needed: the set has {expected} rank(s), {actual} given")]
    RankCount {
        /// Ranks in the set.
        expected: usize,
        /// Buffers given.
        actual: usize,
    },
    /// Ranks of a collective whose buffers differ in length.
    #[error("rank {rank} has {actual} elements where rank 0 has {expected}")]
    RankLengthMismatch {
        /// The rank that differs.
        rank: usize,
        /// Elements on rank 0 (the expected count).
        expected: usize,
        /// Elements on `rank`.
        actual: usize,
    },
    /// A device named twice where every rank must own its GPU (NCCL refuses two ranks on one
    /// GPU).
    #[error("device {ordinal} appears twice in the set (ranks {first} and {second})")]
    DuplicateDevice {
        /// Ordinal of the device.
        ordinal: usize,
        /// First rank on it.
        first: usize,
        /// Second rank on it.
        second: usize,
    },
    /// The NCCL library (`libnccl.so.2`) could not be loaded.
    #[error("NCCL is unavailable: {reason}")]
    NoNccl {
        /// Why.
        reason: String,
    },
    /// An NCCL call failed.
    #[error("NCCL {call} failed with code {code}: {reason}")]
    Nccl {
        /// The call, e.g. `ncclAllReduce`.
        call: &'static str,
        /// The `ncclResult_t` value.
        code: u32,
        /// NCCL's text for the code.
        reason: String,
    },
    /// An NCCL communicator (`multi::Communicator`, feature `nccl`) whose collective failed
    /// part-way through a group: its NCCL communicators were aborted, so that no rank waits
    /// forever for peers whose operations were never queued, and it cannot be used again.
    #[error("the NCCL communicator was aborted after {call} failed; create a new one")]
    CommunicatorAborted {
        /// The NCCL call whose failure aborted it, e.g. `ncclAllReduce`.
        call: &'static str,
    },
    /// Any other error the CUDA driver returned.
    #[error("CUDA driver error: {0}")]
    Driver(#[from] cudarc::driver::DriverError),
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// [`Error::Capture`] for `what`, which a graph could not replay.
    pub(crate) fn not_in_capture(what: &str) -> Error {
        Error::Capture {
            reason: format!("{what} is not allowed inside a capture"),
        }
    }

    /// True when the error means "this machine has no usable GPU" (no driver or no device), as
    /// opposed to a failure on a GPU that exists.
    pub fn is_no_gpu(&self) -> bool {
        matches!(self, Error::NoDriver { .. } | Error::NoDevice)
    }
}
