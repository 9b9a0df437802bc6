//! Launching a plan, step by step: the operands' checks, their addresses (through an `Access`,
//! which orders the launch after their earlier uses), the choice of kernel, the parameters, and
//! the launches.

use super::desc::{Layout, Strides};
use super::plan::{Fast, Gemm, Kernels, Route};
use super::{lock, Activation, Epilogue, GemmPath, Matmul, Scratch, TmaCache};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::launch::gemm::{
    fast_operands_fit, Bias, GemmOperands, GemmParams, GemmPersistent, GemmRun, GemmShape,
    GemmTiles, SplitKReduce,
};
use crate::launch::tma::{self, TmaMap};
use crate::launch::{grid_stride_config, run, Kernel};
use crate::memory::access::{Access, Operand};
use crate::memory::{ensure_len, AsDeviceSlice, AsDeviceSliceMut, DeviceSlice, DeviceSliceMut};
use crate::ops::gemm::Choice;
use crate::ops::Float;
use crate::stream::Stream;
use bytemuck::Pod;
use cudarc::driver::LaunchConfig;

/// The operands of one launch as the kernels see them: A and B swapped for a column-major D
/// (`Matmul`'s, and `ScaledMatmul`'s with FP8 A and B).
pub(super) struct Operands<'x, I: Pod, O: Pod, B: Pod> {
    pub(super) a: DeviceSlice<'x, I>,
    pub(super) b: DeviceSlice<'x, I>,
    /// C, when it is read (β ≠ 0) and given.
    pub(super) c: Option<&'x DeviceSlice<'x, O>>,
    pub(super) bias: Option<&'x DeviceSlice<'x, B>>,
}

impl<I: Pod, O: Pod, B: Pod> Operands<'_, I, O, B> {
    /// Checks the devices of the stream, the operands and `d` against the plan's `device`,
    /// and the buffers' lengths against the extents `s` gives (named as the caller names them:
    /// `swapped` for a column-major D's transpose; `n`, the bias's length).
    pub(super) fn check(
        &self,
        stream: &Stream,
        d: &DeviceSliceMut<'_, O>,
        device: &Device,
        (s, swapped, n): (&Strides, bool, usize),
    ) -> Result<()> {
        device.check_same(stream.device())?;
        for dev in [self.a.device(), self.b.device(), d.device()] {
            device.check_same(dev)?;
        }
        let (name_a, name_b) = if swapped { ("B", "A") } else { ("A", "B") };
        ensure_len(name_a, s.extent_a, self.a.len())?;
        ensure_len(name_b, s.extent_b, self.b.len())?;
        ensure_len("D", s.extent_d, d.len())?;
        if let Some(c) = self.c {
            device.check_same(c.device())?;
            ensure_len("C", s.extent_c, c.len())?;
        }
        if let Some(bias) = self.bias {
            if swapped {
                return Err(Error::InvalidArgument {
                    what: "a bias with a column-major D: the kernels store the row-major \
                           transpose and add a bias per column of it, i.e. per row of D (use a \
                           row-major D, or put the bias in C with beta = 1)"
                        .into(),
                });
            }
            device.check_same(bias.device())?;
            ensure_len("bias", n, bias.len())?;
        }
        Ok(())
    }
}

impl<I: Float, O: Float> Matmul<I, O> {
    /// [`launch`](Self::launch)'s body.
    pub(super) fn launch_impl<B: Float>(
        &self,
        stream: &Stream,
        a: &impl AsDeviceSlice<I>,
        b: &impl AsDeviceSlice<I>,
        d: &mut impl AsDeviceSliceMut<O>,
        epilogue: Epilogue<'_, O, B>,
    ) -> Result<()> {
        let activation = self.desc.activation;
        let (a, b, mut d) = (
            a.as_device_slice(),
            b.as_device_slice(),
            d.as_device_slice_mut(),
        );
        // The kernels' A and B (`MatmulDesc::row_major_view`).
        let (a, b) = if self.transposed { (b, a) } else { (a, b) };
        let use_c = self.view.beta != 0.0;
        let ops = Operands {
            a,
            b,
            c: epilogue.c_slice().filter(|_| use_c),
            bias: epilogue.bias_slice(),
        };
        let view = (&self.strides, self.transposed, self.desc.n);
        ops.check(stream, &d, &self.device, view)?;
        // Held until the launch is queued and noted: the workspace and the tensor-map cache
        // are one launch's at a time.
        let mut scratch = lock(&self.scratch);
        let route = match &self.kernels {
            Kernels::Empty { .. } => Route::Empty,
            Kernels::EpilogueOnly { path, reduce } => {
                self.launch_epilogue(stream, reduce, &ops, &mut d, activation)?;
                Route::EpilogueOnly { path: *path }
            }
            Kernels::Gemm(g) => {
                self.launch_gemm(stream, g, &mut scratch, &ops, &mut d, activation)?
            }
        };
        scratch.last = Some(route);
        Ok(())
    }

    /// K = 0: the split-K reduction with no slices writes `D = act(β·C + bias)`.
    fn launch_epilogue<B: Float>(
        &self,
        stream: &Stream,
        reduce: &Kernel<SplitKReduce<I, O>>,
        ops: &Operands<'_, I, O, B>,
        d: &mut DeviceSliceMut<'_, O>,
        activation: Activation,
    ) -> Result<()> {
        let mut acc = Access::new(stream)?;
        let p = GemmOperands {
            a: Operand::NONE,
            b: Operand::NONE,
            c: acc.read_or_null(ops.c)?,
            bias: Bias::of(acc.read_or_null(ops.bias)?),
            d: acc.write(d)?,
            workspace: Operand::NONE,
        };
        let params = self.params(&p, ops.c.is_some(), None, activation)?;
        let mut args = SplitKReduce::new(params);
        let cfg = grid_stride_config(args.outputs(), self.device.properties().sm_count);
        run(stream, reduce, cfg, &mut args)?;
        acc.finish()
    }

    /// A GEMM kernel (the fast one where the operands allow it), then the split-K reduction if
    /// the kernel splits K. Returns what ran.
    fn launch_gemm<B: Float>(
        &self,
        stream: &Stream,
        g: &Gemm<I, O>,
        scratch: &mut Scratch,
        ops: &Operands<'_, I, O, B>,
        d: &mut DeviceSliceMut<'_, O>,
        activation: Activation,
    ) -> Result<Route> {
        let mut acc = Access::new(stream)?;
        let p = GemmOperands {
            a: acc.read(&ops.a)?,
            b: acc.read(&ops.b)?,
            c: acc.read_or_null(ops.c)?,
            bias: Bias::of(acc.read_or_null(ops.bias)?),
            d: acc.write(d)?,
            workspace: acc.write_or_null(scratch.workspace.as_mut())?,
        };
        let fast = g.fast.as_ref().filter(|f| self.buffers_aligned(f.path, &p));
        let choice = fast.map_or(&g.general.choice, |f| &f.choice);
        let fast_granule = fast.map(|f| f.path.row_granule());
        let params = self.params(
            &p,
            ops.c.is_some(),
            Some((choice, fast_granule)),
            activation,
        )?;
        match fast.map(|f| &f.func) {
            Some(Fast::Persistent { func, blocks }) => {
                let maps = self.tma_maps(&mut scratch.tma_cache, &p, choice)?;
                let mut args = GemmPersistent::new(params, (&p.a, &p.b), (&maps.0, &maps.1))?;
                self.queue_persistent(stream, func, choice, &mut args, *blocks)?;
            }
            Some(Fast::Tiles(func)) => self.queue_tiles(stream, func, choice, params)?,
            None => self.queue_tiles(stream, &g.general.func, choice, params)?,
        }
        if choice.splits > 1 {
            self.queue_reduce(stream, &g.reduce, params)?;
        }
        acc.finish()?;
        Ok(g.route(fast.is_some()))
    }

    /// The buffer conditions of the fast kernels (the description's are met: the plan has
    /// one): `launch::gemm::fast_operands_fit`; tight buffers take the general kernels.
    fn buffers_aligned(&self, path: GemmPath, p: &GemmOperands<I, O>) -> bool {
        fast_operands_fit(
            &self.shape(false),
            path.row_granule(),
            (p.a.addr(), p.a.len()),
            (p.b.addr(), p.b.len()),
        )
    }

    /// The product as the kernels see it; C's leading dimension and stride are D's when C is
    /// read in place (β ≠ 0 without C: `own_c` false).
    fn shape(&self, own_c: bool) -> GemmShape {
        self.view.gemm_shape(&self.strides, own_c)
    }

    /// The kernels' parameters for a kernel running `choice` (and, for a fast kernel, the row
    /// granule of its 16-byte chunks), or, without one, for the K = 0 epilogue (no slices, α
    /// not applied: `D = act(β·C + bias)`, as cuBLAS).
    fn params(
        &self,
        p: &GemmOperands<I, O>,
        own_c: bool,
        kernel: Option<(&Choice, Option<usize>)>,
        activation: Activation,
    ) -> Result<GemmParams<I, O>> {
        let mut shape = self.shape(own_c);
        let c = if own_c { p.c } else { p.d }; // β ≠ 0 without C: in place
        let (splits, k_per_split, fast_granule) = match kernel {
            Some((choice, fast_granule)) => (choice.splits, choice.k_per_split, fast_granule),
            None => {
                shape.k = 0;
                shape.alpha = 0.0;
                (0, 0, None)
            }
        };
        let run = GemmRun {
            splits,
            k_per_split,
            activation: activation.code(),
            fast_granule,
            // The Hopper kernels read it as the 16-byte epilogue flag (gemm_params.cuh's
            // epilogue8); the others ignore it.
            want_vec8: true,
        };
        let ops = GemmOperands { c, ..*p };
        GemmParams::matmul(&ops, &shape, &run)
    }

    /// The Hopper kernel's tensor maps of A and B: the cached ones if the operands have not
    /// moved. K-major operands: boxes of 64 K × 128 rows (the tile's A; B in one or two of
    /// them); MN-major ones: boxes of 64 M (or N) × 64 K, several per tile.
    fn tma_maps(
        &self,
        cache: &mut Option<TmaCache>,
        p: &GemmOperands<I, O>,
        choice: &Choice,
    ) -> Result<(TmaMap, TmaMap)> {
        let key = (p.a.addr(), p.b.addr());
        if let Some((k, maps)) = cache {
            if *k == key {
                return Ok(*maps);
            }
        }
        let (desc, s) = (&self.view, &self.strides);
        let (m, n, k, batch) = (desc.m, desc.n, desc.k, desc.batch);
        let dtype = I::DTYPE;
        let bm = choice.config.bm as u32;
        let (a_ptr, b_ptr) = key;
        let a = match desc.a_layout {
            Layout::RowMajor => tma::tiled(a_ptr, dtype, k, m, batch, s.lda, s.stride_a, bm)?,
            Layout::ColMajor => tma::tiled(a_ptr, dtype, m, k, batch, s.lda, s.stride_a, 64)?,
        };
        let b = match desc.b_layout {
            Layout::ColMajor => tma::tiled(b_ptr, dtype, k, n, batch, s.ldb, s.stride_b, 128)?,
            Layout::RowMajor => tma::tiled(b_ptr, dtype, n, k, batch, s.ldb, s.stride_b, 64)?,
        };
        *cache = Some((key, (a, b)));
        Ok((a, b))
    }

    /// The Hopper kernel: `blocks` persistent blocks walk the tiles × batches × slices. The
    /// access orders the launch after earlier uses of every buffer and notes it; the caller
    /// holds the split-K workspace locked.
    fn queue_persistent(
        &self,
        stream: &Stream,
        kernel: &Kernel<GemmPersistent<I, O>>,
        choice: &Choice,
        args: &mut GemmPersistent<I, O>,
        blocks: usize,
    ) -> Result<()> {
        let config = &choice.config;
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (config.threads, 1, 1),
            shared_mem_bytes: config.smem_bytes,
        };
        run(stream, kernel, cfg, args)
    }

    /// An mma.sync or WMMA kernel: a block per output tile, batch and split-K slice.
    fn queue_tiles(
        &self,
        stream: &Stream,
        kernel: &Kernel<GemmTiles<I, O>>,
        choice: &Choice,
        params: GemmParams<I, O>,
    ) -> Result<()> {
        let config = &choice.config;
        let mut args = GemmTiles::new(params, (config.bm, config.bn))?;
        let cfg = args.config(config.threads, config.smem_bytes);
        run(stream, kernel, cfg, &mut args)
    }

    /// The split-K reduction: sums the slices in the workspace and applies the epilogue.
    fn queue_reduce(
        &self,
        stream: &Stream,
        reduce: &Kernel<SplitKReduce<I, O>>,
        params: GemmParams<I, O>,
    ) -> Result<()> {
        let mut args = SplitKReduce::new(params);
        let cfg = grid_stride_config(args.outputs(), self.device.properties().sm_count);
        run(stream, reduce, cfg, &mut args)
    }
}
