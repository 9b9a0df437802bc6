//! The one place that launches kernels.

use crate::error::Result;
use cudarc::driver::{LaunchArgs, LaunchConfig};

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
