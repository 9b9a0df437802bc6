//! The one place that launches kernels.

use crate::catalog::PtxArch;
use crate::error::Result;
use crate::stream::Stream;
use cudarc::driver::{sys, CudaFunction, DriverError, LaunchArgs, LaunchConfig};
use std::ffi::c_void;

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

/// Launches the kernel whose arguments `args` holds.
///
/// # Safety
/// The arguments pushed on `args` must match the kernel's parameters in number, order and type,
/// and every buffer argument must be large enough for every element the kernel touches with
/// these arguments and this configuration (the callers in `ops/` check sizes before they get
/// here).
pub(crate) unsafe fn launch(mut args: LaunchArgs<'_>, config: LaunchConfig) -> Result<()> {
    // SAFETY: the caller's contract above is exactly `LaunchArgs::launch`'s.
    unsafe { args.launch(config) }?;
    Ok(())
}

/// Launches `func` with programmatic dependent launch when it was compiled for `compute_90a`
/// (`target`): the GPU may start the kernel while the previous kernel on the
/// stream still runs, which hides most of the launch latency of a chain of small kernels (and
/// is kept when the launch is captured into a graph). Other targets, including older PTX forced
/// onto a Hopper GPU (whose code has no `griddepcontrol.wait`), get an ordinary launch.
///
/// `params` holds one pointer per kernel parameter, to a value of the parameter's type. Buffer
/// arguments are passed as device addresses taken with cudarc's `device_ptr`/`device_ptr_mut`,
/// whose guards the caller keeps alive until this returns (they order the launch after other
/// streams' work on those buffers and record it).
///
/// # Safety
/// As [`launch`]; `target` must be the PTX target `func` was loaded from, and the kernel must
/// include `kernels/common/pdl.cuh` and call `hk::pdl_wait()` before its first global-memory
/// access: that is what keeps it from running ahead of the kernel it depends on.
pub(crate) unsafe fn launch_early(
    stream: &Stream,
    func: &CudaFunction,
    target: PtxArch,
    config: LaunchConfig,
    params: &mut [*mut c_void],
) -> Result<()> {
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
    // parameter (the caller's contract), and the function belongs to the stream's context,
    // which is current (bound above).
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
