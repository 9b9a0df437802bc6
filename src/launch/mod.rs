//! The one place that launches kernels, and the only one with `unsafe` around a launch.
//!
//! Every kernel's parameters are a struct of [`args`] (one per kernel signature family), made
//! only by its checked constructor: from [`Operand`](crate::memory::access::Operand)s (device
//! addresses with the lengths of their buffers, taken through an `Access`) and the scalars the
//! kernel gets, it checks, in safe code and with checked arithmetic, that every buffer holds the
//! furthest element the kernel can touch for those scalars. A family's kernels are loaded only
//! here, as a [`Kernel<A>`] handle for its argument struct `A`: the family names its module and
//! forms each kernel's symbol from a small typed variant ([`KernelArgs::symbol`]), so the ops
//! choose *which* kernel but never name one, and a handle can be launched with no other
//! struct's parameters. [`run`] and [`run_early`] then check the launch configuration against
//! what the kernel assumes of it and launch: their one `unsafe` block each rests on
//! [`KernelArgs`]' contract.

pub(crate) mod args;
pub(crate) mod conv;
pub(crate) mod gemm;
pub(crate) mod tma;

use crate::catalog::PtxArch;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::stream::Stream;
use cudarc::driver::{result, sys, CudaFunction, DriverError, LaunchConfig};
use std::borrow::Cow;
use std::ffi::c_void;
use std::fmt;
use std::marker::PhantomData;

/// The parameters of the kernels of one signature family, ready to launch, and where those
/// kernels are.
///
/// # Safety
/// Implemented only in the launch layer, for `#[repr(C)]` structs such that:
/// - [`symbol`](Self::symbol) names, for every variant, a kernel of the family the struct
///   documents (the `.cu` file named at the struct), instantiated for the struct's type
///   parameters where its name carries a type;
/// - [`params`](Self::params) returns, in order, one pointer per parameter of those kernels,
///   each to a field of the parameter's type and layout (a
///   [`DevPtr<T>`](crate::memory::access::DevPtr) for a `T*`), or one pointer to the whole
///   parameter block for kernels that take one struct by value;
/// - a value exists only through the struct's constructor, which checks that every buffer holds
///   the furthest element those kernels touch with the scalars stored beside it (null only
///   where the kernels test for null);
/// - [`check_config`](Self::check_config) refuses every launch configuration under which the
///   kernels would touch more than that (an index overflowing, a block shape the kernel's
///   shared memory does not fit, blocks past the ones it bounds).
pub(crate) unsafe trait KernelArgs: Sized {
    /// The pointer array, `[*mut c_void; N]`.
    type Params: AsMut<[*mut c_void]>;

    /// Which kernel of the family (a tile configuration, a layout, a path; `()` where the
    /// struct's type parameters alone decide).
    type Variant: Copy + fmt::Debug;

    /// Where `variant`'s kernel is: the one place its name is written.
    fn symbol(variant: &Self::Variant) -> Symbol;

    /// Loads `variant`'s kernel on `device` (once per device: `registry.rs`), from the target
    /// its [`Symbol`] pins, else from `forced`, else from the newest the device runs.
    fn kernel(
        device: &Device,
        variant: Self::Variant,
        forced: Option<PtxArch>,
    ) -> Result<Kernel<Self>> {
        Kernel::load(device, variant, forced)
    }

    /// One pointer per kernel parameter, into `self` (valid while `self` is borrowed).
    fn params(&mut self) -> Self::Params;

    /// [`Error::InvalidArgument`] for a configuration the kernels are not safe under.
    fn check_config(&self, config: &LaunchConfig) -> Result<()>;
}

/// Where a kernel is: its module, its symbol, and the PTX target it must be loaded from where
/// its module is one path's (`None`: any target the module ships).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Symbol {
    pub module: &'static str,
    pub name: Cow<'static, str>,
    pub target: Option<PtxArch>,
}

impl Symbol {
    /// A kernel of `module` that every target of the module ships.
    pub(crate) fn any(module: &'static str, name: impl Into<Cow<'static, str>>) -> Self {
        Symbol {
            module,
            name: name.into(),
            target: None,
        }
    }

    /// A kernel of `module` to be loaded from `target`.
    pub(crate) fn at(
        module: &'static str,
        name: impl Into<Cow<'static, str>>,
        target: PtxArch,
    ) -> Self {
        Symbol {
            module,
            name: name.into(),
            target: Some(target),
        }
    }
}

/// A loaded kernel of `A`'s family: what [`run`] and [`run_early`] launch with an `A`. Made only
/// by [`KernelArgs::kernel`], so the function and the argument struct always belong together;
/// it remembers the PTX target it was loaded from and its variant. Cheap to clone.
pub(crate) struct Kernel<A: KernelArgs> {
    func: CudaFunction,
    target: PtxArch,
    variant: A::Variant,
    // `fn(A)`: the handle holds no `A`, so it is `Send` and `Sync` whatever `A` is.
    args: PhantomData<fn(A)>,
}

impl<A: KernelArgs> Kernel<A> {
    fn load(device: &Device, variant: A::Variant, forced: Option<PtxArch>) -> Result<Self> {
        let symbol = A::symbol(&variant);
        let (func, target) =
            device.function_and_target(symbol.module, &symbol.name, symbol.target.or(forced))?;
        Ok(Kernel {
            func,
            target,
            variant,
            args: PhantomData,
        })
    }

    /// Lets the kernel take `bytes` of dynamic shared memory (needed above 48 KiB).
    pub(crate) fn set_max_dynamic_shared_memory(&self, bytes: u32) -> Result<()> {
        let bytes = i32::try_from(bytes).map_err(|_| Error::TooLarge {
            what: "dynamic shared memory per block".into(),
            value: bytes as usize,
            max: i32::MAX as usize,
        })?;
        self.func.set_attribute(
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            bytes,
        )?;
        Ok(())
    }
}

impl<A: KernelArgs> Clone for Kernel<A> {
    fn clone(&self) -> Self {
        Kernel {
            func: self.func.clone(),
            target: self.target,
            variant: self.variant,
            args: PhantomData,
        }
    }
}

impl<A: KernelArgs> fmt::Debug for Kernel<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernel")
            .field("variant", &self.variant)
            .field("target", &self.target)
            .finish()
    }
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

/// Launches `kernel` with `args` on `stream` after checking the configuration.
pub(crate) fn run<A: KernelArgs>(
    stream: &Stream,
    kernel: &Kernel<A>,
    config: LaunchConfig,
    args: &mut A,
) -> Result<()> {
    args.check_config(&config)?;
    stream.raw.context().bind_to_thread()?;
    let mut params = args.params();
    // SAFETY: `kernel` is one of `A`'s family (a `Kernel<A>` is made only from `A::symbol`), so
    // `params` has one pointer per parameter of its kernel, to values of the parameters'
    // types, living across the call (`args` is borrowed), and every buffer among them holds
    // what the kernel touches under `config`: `KernelArgs`' contract, whose constructor and
    // `check_config` ran above. The function belongs to the stream's context, current on this
    // thread (bound above); the driver copies the parameters before returning.
    unsafe {
        result::launch_kernel(
            kernel.func.cu_function(),
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

/// Launches `kernel` with programmatic dependent launch when it was loaded from `compute_90a`
/// (the target the handle remembers): the GPU may start the kernel while the previous kernel on
/// the stream still runs, which hides most of the launch latency of a chain of small kernels (and
/// is kept when the launch is captured into a graph). Other targets, including older PTX forced
/// onto a Hopper GPU (whose code has no `griddepcontrol.wait`), get an ordinary launch.
pub(crate) fn run_early<A: EarlyKernelArgs>(
    stream: &Stream,
    kernel: &Kernel<A>,
    config: LaunchConfig,
    args: &mut A,
) -> Result<()> {
    args.check_config(&config)?;
    let mut params = args.params();
    let params = params.as_mut();
    stream.raw.context().bind_to_thread()?;
    let early = kernel.target == PtxArch::Compute90a;
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
    // SAFETY: `launch` and `attr` live across the call; `kernel` is one of `A`'s family (made
    // only from `A::symbol`) and `params` has one valid pointer per parameter of it, each buffer
    // holding what the kernel touches under `config` (`KernelArgs`'
    // contract; its constructor and `check_config` ran above), and the kernel waits for the
    // kernels before it before touching memory (`EarlyKernelArgs`' contract), so starting early
    // races with nothing (and `early` only for the `compute_90a` code the kernel was loaded
    // from). The function belongs to the stream's context, current (bound above).
    unsafe {
        sys::cuLaunchKernelEx(
            &launch,
            kernel.func.cu_function(),
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    }
    .result()
    .map_err(|e: DriverError| e.into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::args::*;
    use super::conv::{Conv, ConvGrad, ConvGradKernel, ConvKernel, Grad, ImplicitPath};
    use super::gemm::{
        Fp8Kernel, Fp8TileKernel, GemmFp8, GemmFp8Tiles, GemmPersistent, GemmTiles,
        PersistentKernel, Reduction, SplitKReduce, TileKernel,
    };
    use super::*;
    use crate::modules;
    use crate::ops::conv2d::ConvPath;
    use crate::ops::matmul::{ComputeType, GemmPath, Layout};
    use half::{bf16, f16};
    use std::collections::{HashMap, HashSet};

    /// The `.entry` names of each (module, target) this build ships, decompressed once.
    #[derive(Default)]
    pub(crate) struct Shipped(HashMap<(&'static str, PtxArch), Option<HashSet<String>>>);

    impl Shipped {
        /// Asserts that `variant`'s symbol is a kernel of every target it can be loaded from.
        pub(crate) fn assert_defined<A: KernelArgs>(&mut self, variant: A::Variant) {
            let symbol = A::symbol(&variant);
            let targets = match symbol.target {
                Some(t) => vec![t],
                None => modules::targets(symbol.module),
            };
            assert!(!targets.is_empty() || !modules::left_out(symbol.module).is_empty());
            for arch in targets {
                let entries = self
                    .0
                    .entry((symbol.module, arch))
                    .or_insert_with(|| modules::entries(symbol.module, arch));
                // None: the target is left out of this build by its cargo feature.
                if let Some(entries) = entries {
                    assert!(
                        entries.contains(&*symbol.name),
                        "{} {arch}: no kernel {} ({variant:?})",
                        symbol.module,
                        symbol.name
                    );
                }
            }
        }
    }

    #[test]
    fn every_simple_kernel_exists() {
        fn typed<T: crate::ops::Float>(s: &mut Shipped) {
            s.assert_defined::<Axpy<T>>(());
            s.assert_defined::<GlobalAvgPool<T>>(());
            s.assert_defined::<SoftmaxXent<T>>(());
            s.assert_defined::<ReluBackward<T>>(());
            s.assert_defined::<BiasGrad<T>>(());
            s.assert_defined::<CastF32<T>>(());
            s.assert_defined::<SgdStep<T>>(());
            s.assert_defined::<Transpose<T>>(());
        }
        let mut s = Shipped::default();
        typed::<f32>(&mut s);
        typed::<f16>(&mut s);
        typed::<bf16>(&mut s);
        s.assert_defined::<NonfiniteCheck>(());
        s.assert_defined::<LossScaleUpdate>(());
        s.assert_defined::<PadPixels<f16>>(());
        s.assert_defined::<PadRows<bf16>>(());
        s.assert_defined::<FlipFilter<f16>>(());
        s.assert_defined::<Transpose<crate::fp8::F8E4M3>>(());
        s.assert_defined::<Transpose<crate::fp8::F8E5M2>>(());
    }

    /// Every GEMM kernel a matmul plan can load: each path's tile configurations aligned, its
    /// last one general (`plan::choose_general`), the Hopper path's persistent kernels, the
    /// reductions; for f16 (with f32 and, where the path has them, f16 accumulators), and bf16
    /// where the path has it.
    #[test]
    fn every_gemm_kernel_exists() {
        fn typed<I: crate::ops::Float>(s: &mut Shipped, path: GemmPath, accumulation: ComputeType) {
            let layouts = [Layout::RowMajor, Layout::ColMajor];
            let configs = path.configs();
            for a_layout in layouts {
                for b_layout in layouts {
                    for (i, c) in configs.iter().enumerate() {
                        let tiling = c.tiling;
                        if path == GemmPath::Sm90 {
                            s.assert_defined::<GemmPersistent<I, f32>>(PersistentKernel {
                                tiling,
                                a_layout,
                                b_layout,
                            });
                            continue;
                        }
                        let tile = TileKernel {
                            path,
                            tiling,
                            a_layout,
                            b_layout,
                            aligned: true,
                            accumulation,
                        };
                        s.assert_defined::<GemmTiles<I, f32>>(tile);
                        if i + 1 == configs.len() {
                            let general = TileKernel {
                                aligned: false,
                                ..tile
                            };
                            s.assert_defined::<GemmTiles<I, f32>>(general);
                        }
                    }
                }
            }
        }
        let mut s = Shipped::default();
        for path in [
            GemmPath::Sm70,
            GemmPath::Sm75,
            GemmPath::Sm80,
            GemmPath::Sm90,
        ] {
            typed::<f16>(&mut s, path, ComputeType::F32);
            if path.accumulation(ComputeType::F16) == ComputeType::F16 {
                typed::<f16>(&mut s, path, ComputeType::F16);
            }
            if path.supports_bf16() {
                typed::<bf16>(&mut s, path, ComputeType::F32);
            }
            if path != GemmPath::Sm90 {
                s.assert_defined::<SplitKReduce<f16, f32>>(Reduction::Gemm(path));
            }
        }
        s.assert_defined::<SplitKReduce<f16, f16>>(Reduction::ConvSm90);
        for c in crate::ops::gemm::fp8_configs() {
            for fast_accum in [false, true] {
                let which = Fp8Kernel {
                    tiling: c.tiling,
                    fast_accum,
                };
                s.assert_defined::<GemmFp8<crate::fp8::F8E4M3, f16>>(which);
                s.assert_defined::<GemmFp8<crate::fp8::F8E5M2, f32>>(which);
            }
        }
        for c in crate::ops::gemm::fp8_sm89_configs() {
            let which = Fp8TileKernel { tiling: c.tiling };
            s.assert_defined::<GemmFp8Tiles<crate::fp8::F8E4M3, bf16>>(which);
            s.assert_defined::<GemmFp8Tiles<crate::fp8::F8E5M2, f32>>(which);
        }
    }

    /// Every convolution kernel a `Conv2d` plan can load but the Hopper ones (whose variants
    /// `ops::conv2d` (the Hopper path)'s tests walk).
    #[test]
    fn every_conv_kernel_exists() {
        let mut s = Shipped::default();
        s.assert_defined::<Conv<f16, f32>>(ConvKernel::Direct);
        s.assert_defined::<Conv<bf16, bf16>>(ConvKernel::Direct);
        for (conv, path, vec) in [
            (ConvPath::Sm80, ImplicitPath::Sm80, 8),
            (ConvPath::Sm80, ImplicitPath::Sm80, 4),
            (ConvPath::Sm75, ImplicitPath::Sm75, 8),
        ] {
            for c in conv.configs_for(vec) {
                let which = ConvKernel::Implicit {
                    path,
                    tiling: c.tiling,
                    c4: vec == 4,
                };
                s.assert_defined::<Conv<f16, f32>>(which);
                if conv.supports_bf16() {
                    s.assert_defined::<Conv<bf16, f16>>(which);
                }
            }
        }
        // The backward kernels: direct, and every tile of the tensor-core ones (f16 on both
        // paths, bf16 on compute_80).
        let tiling = |t: &crate::tiles::Tile| crate::ops::gemm::Tiling {
            bm: t.bm,
            bn: t.bn,
            bk: t.bk,
            stages: t.stages,
        };
        let sm80 = crate::tiles::CONV_GRAD_SM80
            .iter()
            .map(|t| Some((ImplicitPath::Sm80, tiling(t))));
        let sm75 = crate::tiles::CONV_GRAD_SM75
            .iter()
            .map(|t| Some((ImplicitPath::Sm75, tiling(t))));
        for tiling in sm80.chain(sm75).chain([None]) {
            for grad in [Grad::Data, Grad::Filter] {
                let which = ConvGradKernel { grad, tiling };
                s.assert_defined::<ConvGrad<f16, f32>>(which);
                if !matches!(tiling, Some((ImplicitPath::Sm75, _))) {
                    s.assert_defined::<ConvGrad<bf16, bf16>>(which);
                }
            }
        }
    }
}
