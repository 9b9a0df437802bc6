//! The one place that launches kernels, and the only one with `unsafe` around a launch.
//!
//! Every kernel's parameters are a struct of [`args`] (one per kernel signature family), made
//! only by its checked constructor: from [`Operand`](crate::memory::access::Operand)s (device
//! addresses with the lengths of their buffers, taken through an `Access`) and the scalars the
//! kernel gets, it checks, in safe code and with checked arithmetic, that every buffer holds the
//! furthest element the kernel can touch for those scalars. [`run`] and [`run_early`] then
//! check the launch configuration against what the kernel assumes of it and launch: their one
//! `unsafe` block each rests on [`KernelArgs`]' contract.

pub(crate) mod args;
pub(crate) mod conv;
pub(crate) mod gemm;
pub(crate) mod tma;

use crate::catalog::PtxArch;
use crate::error::{Error, Result};
use crate::stream::Stream;
use cudarc::driver::{result, sys, CudaFunction, DriverError, LaunchConfig};
use std::ffi::c_void;

/// The parameters of the kernels of one signature family, ready to launch.
///
/// # Safety
/// Implemented only in the launch layer, for `#[repr(C)]` structs such that:
/// - [`params`](Self::params) returns, in order, one pointer per parameter of the kernels the
///   struct documents (the `.cu` file named at the struct), each to a field of the parameter's
///   type and layout (a [`DevPtr<T>`](crate::memory::access::DevPtr) for a `T*`), or one pointer
///   to the whole parameter block for kernels that take one struct by value;
/// - a value exists only through the struct's constructor, which checks that every buffer holds
///   the furthest element those kernels touch with the scalars stored beside it (null only
///   where the kernels test for null);
/// - [`check_config`](Self::check_config) refuses every launch configuration under which the
///   kernels would touch more than that (an index overflowing, a block shape the kernel's
///   shared memory does not fit, blocks past the ones it bounds).
pub(crate) unsafe trait KernelArgs {
    /// The pointer array, `[*mut c_void; N]`.
    type Params: AsMut<[*mut c_void]>;

    /// One pointer per kernel parameter, into `self` (valid while `self` is borrowed).
    fn params(&mut self) -> Self::Params;

    /// [`Error::InvalidArgument`] for a configuration the kernels are not safe under.
    fn check_config(&self, config: &LaunchConfig) -> Result<()>;
}

/// Kernels that may start before the previous kernel on their stream has finished.
///
/// # Safety
/// As [`KernelArgs`], and every kernel the struct documents includes `kernels/common/pdl.cuh`
/// and calls `hk::pdl_wait()` before its first global-memory access, in every PTX target.
pub(crate) unsafe trait EarlyKernelArgs: KernelArgs {}

/// A pointer to a kernel parameter held in `field`.
pub(crate) fn param<T>(field: &mut T) -> *mut c_void {
    (field as *mut T).cast()
}

/// [`Error::InvalidArgument`] naming a refused launch configuration.
pub(crate) fn bad_config(kernel: &str, why: &str, config: &LaunchConfig) -> Error {
    Error::InvalidArgument {
        what: format!(
            "launch configuration of {kernel}: {why} (grid {:?}, block {:?}, {} bytes of shared \
             memory)",
            config.grid_dim, config.block_dim, config.shared_mem_bytes
        ),
    }
}

/// A one-dimensional grid of one-dimensional blocks: what the grid-stride kernels index by
/// (a second dimension would run every element twice, racing with itself).
pub(crate) fn one_dim(kernel: &str, config: &LaunchConfig) -> Result<()> {
    let (g, b) = (config.grid_dim, config.block_dim);
    if g.1 == 1 && g.2 == 1 && b.1 == 1 && b.2 == 1 {
        Ok(())
    } else {
        Err(bad_config(
            kernel,
            "a one-dimensional grid is required",
            config,
        ))
    }
}

/// `config` is `expected` exactly: kernels whose indices or shared memory assume their grid.
pub(crate) fn exactly(kernel: &str, config: &LaunchConfig, expected: &LaunchConfig) -> Result<()> {
    let same = config.grid_dim == expected.grid_dim
        && config.block_dim == expected.block_dim
        && config.shared_mem_bytes == expected.shared_mem_bytes;
    if same {
        Ok(())
    } else {
        Err(bad_config(
            kernel,
            &format!(
                "the kernel needs grid {:?}, block {:?}",
                expected.grid_dim, expected.block_dim
            ),
            config,
        ))
    }
}

/// Launches `func` with `args` on `stream` after checking the configuration.
pub(crate) fn run<A: KernelArgs>(
    stream: &Stream,
    func: &CudaFunction,
    config: LaunchConfig,
    args: &mut A,
) -> Result<()> {
    args.check_config(&config)?;
    stream.raw.context().bind_to_thread()?;
    let mut params = args.params();
    // SAFETY: `params` has one pointer per parameter of `func`'s kernel, to values of the
    // parameters' types, living across the call (`args` is borrowed), and every buffer among
    // them holds what the kernel touches under `config`: `KernelArgs`' contract, whose
    // constructor and `check_config` ran above. The function belongs to the stream's context,
    // current on this thread (bound above); the driver copies the parameters before returning.
    unsafe {
        result::launch_kernel(
            func.cu_function(),
            config.grid_dim,
            config.block_dim,
            config.shared_mem_bytes,
            stream.raw.cu_stream(),
            params.as_mut(),
        )
    }?;
    Ok(())
}

/// Threads per block for the simple element-wise kernels.
pub(crate) const ELEMENTWISE_THREADS: u32 = 256;

/// A grid for a grid-stride kernel over `n` elements: enough blocks to cover `n`, capped at a few
/// waves of the device so huge `n` does not make a huge grid.
pub(crate) fn grid_stride_config(n: usize, sm_count: u32) -> LaunchConfig {
    let blocks = n.div_ceil(ELEMENTWISE_THREADS as usize).max(1);
    let cap = (sm_count.max(1) * 8) as usize;
    LaunchConfig {
        grid_dim: (blocks.min(cap) as u32, 1, 1),
        block_dim: (ELEMENTWISE_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Launches `func` with programmatic dependent launch when it was compiled for `compute_90a`
/// (`target`): the GPU may start the kernel while the previous kernel on the
/// stream still runs, which hides most of the launch latency of a chain of small kernels (and
/// is kept when the launch is captured into a graph). Other targets, including older PTX forced
/// onto a Hopper GPU (whose code has no `griddepcontrol.wait`), get an ordinary launch.
/// `target` is the PTX target `func` was loaded from (`Device::function_and_target`).
pub(crate) fn run_early<A: EarlyKernelArgs>(
    stream: &Stream,
    func: &CudaFunction,
    target: PtxArch,
    config: LaunchConfig,
    args: &mut A,
) -> Result<()> {
    args.check_config(&config)?;
    let mut params = args.params();
    let params = params.as_mut();
    stream.raw.context().bind_to_thread()?;
    let early = target == PtxArch::Compute90a;
    let mut attr = sys::CUlaunchAttribute {
        id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
        pad: [0; 4],
        value: sys::CUlaunchAttributeValue {
            programmaticStreamSerializationAllowed: 1,
        },
    };
    let launch = sys::CUlaunchConfig {
        gridDimX: config.grid_dim.0,
        gridDimY: config.grid_dim.1,
        gridDimZ: config.grid_dim.2,
        blockDimX: config.block_dim.0,
        blockDimY: config.block_dim.1,
        blockDimZ: config.block_dim.2,
        sharedMemBytes: config.shared_mem_bytes,
        hStream: stream.raw.cu_stream(),
        attrs: &mut attr,
        numAttrs: u32::from(early),
    };
    // SAFETY: `launch` and `attr` live across the call; `params` has one valid pointer per
    // parameter, each buffer holding what the kernel touches under `config` (`KernelArgs`'
    // contract; its constructor and `check_config` ran above), and the kernel waits for the
    // kernels before it before touching memory (`EarlyKernelArgs`' contract), so starting early
    // races with nothing. The function belongs to the stream's context, current (bound above).
    unsafe {
        sys::cuLaunchKernelEx(
            &launch,
            func.cu_function(),
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    }
    .result()
    .map_err(|e: DriverError| e.into())
}
