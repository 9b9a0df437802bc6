//! Matrix multiplication on tensor cores: `D = act(α·op(A)·op(B) + β·C + bias)`.
//!
//! Inputs are `f16` or `bf16`; the output `f16`, `bf16` or `f32`; accumulation is f32, or, for
//! f16 inputs that ask for it ([`ComputeType::F16`]), f16 on the mma.sync paths.
//! A is M×K and B is K×N, C and D M×N, each row- or column-major with its own leading
//! dimension (C in D's layout when it is read). The bias has N elements, one per column of D,
//! of any element type (D's, or e.g. f32 beside an f16 D, as cuBLASLt allows). Batches are strided. A [`Matmul`] plan validates the shapes once,
//! picks the kernel path (by compute capability, or forced) and the tile configuration (by a
//! heuristic on the shape and the SM count, with split-K for small M·N and long K), loads its
//! kernels and allocates its split-K workspace; launching it then allocates nothing and never
//! synchronizes, so a launch can be captured in a CUDA graph.
//!
//! As in cuBLAS: K = 0 is accepted and gives `D = act(β·C + bias)` (α is not applied; with
//! β = 0, `D = act(bias)` or 0), written by one element-wise kernel; M, N or a batch count of 0
//! makes a launch that checks its arguments and queues nothing.
//!
//! A column-major D is computed as its row-major transpose, `Dᵀ = op(B)ᵀ·op(A)ᵀ`: the plan
//! swaps A and B (and M and N) and flips their layouts, which costs nothing. The kernels add the
//! bias per column of what they store, which would be per row of D, so a bias with a
//! column-major D is refused ([`Error::InvalidArgument`](crate::Error::InvalidArgument)); put
//! it in C (β = 1) instead.
//!
//! Alignment: the fast kernels need A and B 16-byte aligned, `lda` and `ldb` (and the batch
//! strides of A and B) multiples of 8 elements, and, on the compute_80 path, A's and B's buffers
//! to reach each row's length rounded up to 8 elements (the last row included). Anything else
//! runs the general kernels, which assume nothing. Paired output stores need even `ldd`/`ldc`;
//! otherwise single stores are used.
//!
//! What runs, and what [`Matmul::path`] and [`Matmul::tiling`] report: the description decides
//! the leading dimensions and strides, so a plan whose description rules the fast kernel out
//! reports (and only loads) the general kernel; the buffers' addresses and lengths are only
//! known at launch, so the plan reports the fast kernel for aligned buffers (every buffer the
//! crate allocates, used whole, is), and [`Matmul::last_route`] says what the last launch ran.
//!
//! `β = 0` never reads C, so NaN or garbage in C cannot reach D (cuBLAS semantics). With `β ≠ 0`
//! and no C given, C is D itself (accumulate in place).
//!
//! A plan is [`Send`] and [`Sync`]: [`Matmul::launch`] takes `&self`, so one plan can be
//! launched from several threads at once, on any streams of its device. Its one piece of
//! mutable state, the split-K workspace (and the Hopper path's cached tensor maps), is locked
//! while a launch is queued, and the stream ordering of the memory orders each launch's use of
//! the workspace after every earlier one, on whatever stream.

pub(crate) mod desc;
mod plan;
mod run;
mod scaled;
mod staging;
mod tune;

pub use crate::ops::epilogue::{Activation, Epilogue};
pub use crate::ops::gemm::{ComputeType, GemmPath, Tiling};
pub use desc::{Layout, MatmulDesc};
pub use plan::Route;
pub use scaled::{scale_on_device, ScaledMatmul, ScaledOptions, Scales};
pub use tune::{TuneCache, TUNE_CACHE_ENV};

use crate::device::Device;
use crate::error::Result;
use crate::memory::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer};
use crate::ops::Float;
use crate::stream::Stream;
use desc::Strides;
use plan::Kernels;
use std::marker::PhantomData;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A validated matrix multiplication, ready to launch many times, from any thread.
///
/// ```no_run
/// use hikube_gpu::half::f16;
/// use hikube_gpu::ops::matmul::{Epilogue, Matmul, MatmulDesc, Activation};
/// use hikube_gpu::{Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let (m, n, k) = (256, 512, 1024);
/// let a = DeviceBuffer::from_slice(&stream, &vec![f16::from_f32(0.01); m * k])?;
/// let b = DeviceBuffer::from_slice(&stream, &vec![f16::from_f32(0.02); k * n])?;
/// let bias = DeviceBuffer::from_slice(&stream, &vec![1.0f32; n])?;
/// let mut d = DeviceBuffer::<f32>::alloc(&stream, m * n)?;
/// let mm = Matmul::<f16, f32>::new(&stream, MatmulDesc::new(m, n, k).activation(Activation::Relu))?;
/// mm.launch(&stream, &a, &b, &mut d, Epilogue::new().bias(&bias))?;
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
///
/// One plan, two threads, two streams:
///
/// ```no_run
/// # use hikube_gpu::half::f16;
/// # use hikube_gpu::ops::matmul::{Epilogue, Matmul, MatmulDesc};
/// # use hikube_gpu::{Device, DeviceBuffer};
/// let device = Device::open(0)?;
/// let stream = device.default_stream();
/// let mm = Matmul::<f16, f32>::new(&stream, MatmulDesc::new(64, 64, 64))?;
/// let run = || -> hikube_gpu::Result<Vec<f32>> {
///     let stream = device.new_stream()?;
///     let a = DeviceBuffer::from_slice(&stream, &vec![f16::from_f32(1.0); 64 * 64])?;
///     let mut d = DeviceBuffer::<f32>::alloc(&stream, 64 * 64)?;
///     mm.launch(&stream, &a, &a, &mut d, Epilogue::new())?;
///     d.to_vec(&stream)
/// };
/// let (x, y) = std::thread::scope(|s| {
///     let other = s.spawn(run);
///     (run(), other.join().expect("the thread panicked"))
/// });
/// assert_eq!(x?, y?);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct Matmul<I: Float, O: Float> {
    /// The description as given.
    desc: MatmulDesc,
    /// The product the kernels compute (row-major C and D), and its strides: `desc` itself, or
    /// its transpose for a column-major D (`MatmulDesc::row_major_view`).
    view: MatmulDesc,
    strides: Strides,
    transposed: bool,
    device: Device,
    kernels: Kernels<I, O>,
    scratch: Mutex<Scratch>,
    _t: PhantomData<(I, O)>,
}

/// What launches change, locked while one is queued.
struct Scratch {
    /// Split-K partial sums: slices × batch × M × N floats.
    workspace: Option<DeviceBuffer<f32>>,
    /// The Hopper path's tensor maps for the last (A, B) addresses: re-encoded (on the host,
    /// no allocation) only when the operands move.
    tma_cache: Option<TmaCache>,
    /// What the last launch ran.
    last: Option<Route>,
}

/// The addresses of A and B, and their tensor maps.
type TmaCache = (
    (u64, u64),
    (crate::launch::tma::TmaMap, crate::launch::tma::TmaMap),
);

/// Locks the scratch state. Nothing panics while it is held, so a poisoned lock still holds a
/// whole state.
fn lock(scratch: &Mutex<Scratch>) -> MutexGuard<'_, Scratch> {
    scratch.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<I: Float, O: Float> std::fmt::Debug for Matmul<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matmul")
            .field("desc", &self.desc)
            .field("transposed", &self.transposed)
            .field("route", &self.route())
            .field("grid_blocks", &self.grid_blocks())
            .finish()
    }
}

impl<I: Float, O: Float> Matmul<I, O> {
    /// Validates `desc` for `stream`'s device, picks the kernel path and tile configuration,
    /// loads the kernels and allocates the split-K workspace (on `stream`).
    pub fn new(stream: &Stream, desc: MatmulDesc) -> Result<Self> {
        let strides = desc.strides()?;
        let (view, transposed) = desc.row_major_view();
        let strides = if transposed {
            strides.transposed()
        } else {
            strides
        };
        let device = stream.device().clone();
        let kernels = Kernels::plan(&device, &view, &strides)?;
        let workspace = match kernels.workspace_len(&view)? {
            Some(len) => Some(DeviceBuffer::<f32>::alloc(stream, len)?),
            None => None,
        };
        Ok(Matmul {
            desc,
            view,
            strides,
            transposed,
            device,
            kernels,
            scratch: Mutex::new(Scratch {
                workspace,
                tma_cache: None,
                last: None,
            }),
            _t: PhantomData,
        })
    }

    /// What a launch runs when A's and B's buffers are aligned (16-byte aligned, and reaching
    /// the end of their last row's 16-byte chunk: every buffer the crate allocates, used whole,
    /// is). The description already decides the rest: leading dimensions or batch strides of
    /// A and B that are not multiples of 8 give the general kernel; K = 0 the epilogue alone;
    /// an empty product nothing.
    pub fn route(&self) -> Route {
        self.kernels.route()
    }

    /// What the last launch (from any thread) ran; `None` before the first.
    pub fn last_route(&self) -> Option<Route> {
        lock(&self.scratch).last
    }

    /// The kernel path of [`route`](Self::route) (for an empty product, the device's).
    pub fn path(&self) -> GemmPath {
        self.kernels.path()
    }

    /// The tile configuration and split-K factor of [`route`](Self::route); `None` when no
    /// GEMM kernel runs (K = 0, or an empty product).
    pub fn tiling(&self) -> Option<(Tiling, usize)> {
        self.route().tiling()
    }

    /// The tile configurations of a path, largest first (the last is also the general path's).
    pub fn tilings(path: GemmPath) -> Vec<Tiling> {
        path.configs().iter().map(|c| c.tiling).collect()
    }

    /// Hopper path: the blocks the fast kernel launches, which walk the work units (0 on other
    /// paths, and when the fast kernel cannot run).
    pub fn grid_blocks(&self) -> usize {
        self.kernels.grid_blocks()
    }

    /// Bytes of split-K workspace the plan holds.
    pub fn workspace_bytes(&self) -> usize {
        lock(&self.scratch)
            .workspace
            .as_ref()
            .map_or(0, |w| w.num_bytes())
    }

    /// The description the plan was made from.
    pub fn desc(&self) -> &MatmulDesc {
        &self.desc
    }

    /// Queues `D = act(α·op(A)·op(B) + β·C + bias)` on `stream`. Checks buffer sizes and
    /// devices; allocates nothing and does not synchronize. Several threads may launch one plan
    /// at once (see the module docs).
    pub fn launch<B: Float>(
        &self,
        stream: &Stream,
        a: &impl AsDeviceSlice<I>,
        b: &impl AsDeviceSlice<I>,
        d: &mut impl AsDeviceSliceMut<O>,
        epilogue: Epilogue<'_, O, B>,
    ) -> Result<()> {
        self.launch_impl(stream, a, b, d, epilogue)
    }
}

/// A plan can be shared by threads (`&Matmul` is `Send`) and moved to one.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Matmul<half::f16, f32>>();
    send_sync::<Matmul<half::bf16, half::bf16>>();
};
