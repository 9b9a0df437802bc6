//! Launching a plan, step by step: the operands' checks, their addresses (through an `Access`,
//! which orders the launch after their earlier uses), the choice of kernel, the parameters, and
//! the launches.

use super::desc::Layout;
use super::params::{out_dtype, GemmParams};
use super::plan::{Gemm, Kernel, Kernels, Route};
use super::{lock, tma, Activation, Epilogue, GemmPath, Matmul, Scratch, TmaCache};
use crate::error::{Error, Result};
use crate::launch::{grid_stride_config, launch};
use crate::memory::access::Access;
use crate::memory::{ensure_len, AsDeviceSlice, AsDeviceSliceMut, DeviceSlice, DeviceSliceMut};
use crate::ops::Float;
use crate::stream::Stream;
use cudarc::driver::{CudaFunction, LaunchConfig, PushKernelArg};

/// The device addresses of one launch's operands (0: none). `c` is C's own buffer, if given.
struct Pointers {
    a: u64,
    b: u64,
    c: u64,
    bias: u64,
    d: u64,
    workspace: u64,
}

/// The operands of one launch as the kernels see them: A and B swapped for a column-major D.
struct Operands<'x, I: Float, O: Float> {
    a: DeviceSlice<'x, I>,
    b: DeviceSlice<'x, I>,
    /// C, when it is read (β ≠ 0) and given.
    c: Option<&'x DeviceSlice<'x, O>>,
    bias: Option<&'x DeviceSlice<'x, O>>,
}

impl<I: Float, O: Float> Matmul<I, O> {
    /// [`launch`](Self::launch) with the activation given (the convolution's GEMM path sets its
    /// own per launch).
    pub(crate) fn launch_with(
        &self,
        stream: &Stream,
        a: &impl AsDeviceSlice<I>,
        b: &impl AsDeviceSlice<I>,
        d: &mut impl AsDeviceSliceMut<O>,
        epilogue: Epilogue<'_, O>,
        activation: Activation,
    ) -> Result<()> {
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
            c: epilogue.c.as_ref().filter(|_| use_c),
            bias: epilogue.bias.as_ref(),
        };
        self.check(stream, &ops, &d)?;
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

    /// Checks the devices of the stream and the operands, and the buffers' lengths against the
    /// extents the shape reaches (named as the caller names them, before any swap).
    fn check(
        &self,
        stream: &Stream,
        ops: &Operands<'_, I, O>,
        d: &DeviceSliceMut<'_, O>,
    ) -> Result<()> {
        let s = &self.strides;
        self.device.check_same(stream.device())?;
        for dev in [ops.a.device(), ops.b.device(), d.device()] {
            self.device.check_same(dev)?;
        }
        let (name_a, name_b) = if self.transposed {
            ("B", "A")
        } else {
            ("A", "B")
        };
        ensure_len(name_a, s.extent_a, ops.a.len())?;
        ensure_len(name_b, s.extent_b, ops.b.len())?;
        ensure_len("D", s.extent_d, d.len())?;
        if let Some(c) = ops.c {
            self.device.check_same(c.device())?;
            ensure_len("C", s.extent_c, c.len())?;
        }
        if let Some(bias) = ops.bias {
            if self.transposed {
                return Err(Error::InvalidArgument {
                    what: "a bias with a column-major D: the kernels store the row-major \
                           transpose and add a bias per column of it, i.e. per row of D (use a \
                           row-major D, or put the bias in C with beta = 1)"
                        .into(),
                });
            }
            self.device.check_same(bias.device())?;
            ensure_len("bias", self.desc.n, bias.len())?;
        }
        Ok(())
    }

    /// K = 0: the split-K reduction with no slices writes `D = act(β·C + bias)`.
    fn launch_epilogue(
        &self,
        stream: &Stream,
        reduce: &CudaFunction,
        ops: &Operands<'_, I, O>,
        d: &mut DeviceSliceMut<'_, O>,
        activation: Activation,
    ) -> Result<()> {
        let mut acc = Access::new(stream)?;
        let p = Pointers {
            a: 0,
            b: 0,
            c: acc.read_or_null(ops.c)?.addr(),
            bias: acc.read_or_null(ops.bias)?.addr(),
            d: acc.write(d)?.addr(),
            workspace: 0,
        };
        let params = self.params(&p, ops.c.is_some(), None, activation);
        // Elements of D; no more than D's extent, which was validated.
        let total = self
            .view
            .batch
            .saturating_mul(self.view.m)
            .saturating_mul(self.view.n);
        let cfg = grid_stride_config(total, self.device.properties().sm_count);
        let mut args = stream.raw.launch_builder(reduce);
        args.arg(&params);
        // SAFETY: the reduction kernel takes one GemmParams by value, which matches `params`
        // field for field. With `splits` = 0 it reads no workspace (its loop over the slices is
        // empty) and neither A nor B (null); for each of the batch × M × N elements of D it reads
        // C (only when β ≠ 0) and the bias at offsets within their checked extents, and writes
        // D within its checked extent. The access orders the launch after earlier uses of
        // these buffers and notes it.
        unsafe { launch(args, cfg) }?;
        acc.finish()
    }

    /// A GEMM kernel (the fast one where the operands allow it), then the split-K reduction if
    /// the kernel splits K. Returns what ran.
    fn launch_gemm(
        &self,
        stream: &Stream,
        g: &Gemm,
        scratch: &mut Scratch,
        ops: &Operands<'_, I, O>,
        d: &mut DeviceSliceMut<'_, O>,
        activation: Activation,
    ) -> Result<Route> {
        let mut acc = Access::new(stream)?;
        let p = Pointers {
            a: acc.read(&ops.a)?.addr(),
            b: acc.read(&ops.b)?.addr(),
            c: acc.read_or_null(ops.c)?.addr(),
            bias: acc.read_or_null(ops.bias)?.addr(),
            d: acc.write(d)?.addr(),
            workspace: acc.write_or_null(scratch.workspace.as_mut())?.addr(),
        };
        let fast = g
            .fast
            .as_ref()
            .filter(|f| self.buffers_aligned(f.kernel.path, &p, ops));
        let kernel: &Kernel = fast.map_or(&g.general, |f| &f.kernel);
        let params = self.params(&p, ops.c.is_some(), Some(kernel), activation);
        match fast.and_then(|f| f.persistent) {
            Some(blocks) => {
                let maps = self.tma_maps(&mut scratch.tma_cache, &p, kernel)?;
                self.queue_persistent(stream, kernel, &params, maps, blocks)?;
            }
            None => self.queue_tiles(stream, kernel, &params)?,
        }
        if kernel.choice.splits > 1 {
            self.queue_reduce(stream, &g.reduce, &params)?;
        }
        acc.finish()?;
        Ok(g.route(fast.is_some()))
    }

    /// The buffer conditions of the fast kernels (the description's are met: the plan has
    /// one): A and B 16-byte aligned, and their buffers reaching the end of each row's last
    /// chunk (compute_80's cp.async reads it whole); tight buffers take the general kernels.
    fn buffers_aligned(&self, path: GemmPath, p: &Pointers, ops: &Operands<'_, I, O>) -> bool {
        let s = &self.strides;
        let granule = path.row_granule();
        let chunk_tail = |cols: usize| cols.next_multiple_of(granule).saturating_sub(cols);
        p.a % 16 == 0
            && p.b % 16 == 0
            && ops.a.len()
                >= s.extent_a
                    .saturating_add(chunk_tail(self.view.stored_a().1))
            && ops.b.len()
                >= s.extent_b
                    .saturating_add(chunk_tail(self.view.stored_b().1))
    }

    /// The kernels' parameters for `kernel`, or, without one, for the K = 0 epilogue (no
    /// slices, α not applied: `D = act(β·C + bias)`, as cuBLAS).
    fn params(
        &self,
        p: &Pointers,
        own_c: bool,
        kernel: Option<&Kernel>,
        activation: Activation,
    ) -> GemmParams {
        let (desc, s) = (&self.view, &self.strides);
        let use_c = desc.beta != 0.0;
        let (c_ptr, ldc, stride_c) = if own_c {
            (p.c, s.ldc, s.stride_c)
        } else {
            (p.d, s.ldd, s.stride_d) // β ≠ 0 without C: in place
        };
        let osize = std::mem::size_of::<O>() as u64;
        let batches = desc.batch > 1;
        let pair = |ptr: u64, ld: usize, stride: usize| {
            ptr % (2 * osize) == 0 && ld % 2 == 0 && (!batches || stride % 2 == 0)
        };
        let pair_ok = pair(p.d, s.ldd, s.stride_d)
            && (!use_c || pair(c_ptr, ldc, stride_c))
            && p.bias % (2 * osize) == 0;
        // Eight-element (16-byte) access to the rows of D, C and the bias at every column that
        // is a multiple of 8: the persistent Hopper kernel's vectorized epilogue (`reserved`).
        let row16 = |ptr: u64, ld: usize, stride: usize| {
            ptr % 16 == 0
                && (ld as u64 * osize) % 16 == 0
                && (!batches || (stride as u64 * osize) % 16 == 0)
        };
        let vec8_ok = row16(p.d, s.ldd, s.stride_d)
            && (!use_c || row16(c_ptr, ldc, stride_c))
            && p.bias % 16 == 0;
        let (k, splits, k_per_split, alpha) = match kernel {
            Some(kernel) => (
                desc.k,
                kernel.choice.splits,
                kernel.choice.k_per_split,
                desc.alpha,
            ),
            None => (0, 0, 0, 0.0),
        };
        GemmParams {
            a: p.a,
            b: p.b,
            c: if use_c { c_ptr } else { 0 },
            bias: p.bias,
            d: p.d,
            workspace: p.workspace,
            lda: s.lda as i64,
            ldb: s.ldb as i64,
            ldc: ldc as i64,
            ldd: s.ldd as i64,
            stride_a: s.stride_a as i64,
            stride_b: s.stride_b as i64,
            stride_c: stride_c as i64,
            stride_d: s.stride_d as i64,
            m: desc.m as i32,
            n: desc.n as i32,
            k: k as i32,
            batch: desc.batch as i32,
            splits: splits as i32,
            k_per_split: k_per_split as i32,
            activation: match activation {
                Activation::None => 0,
                Activation::Relu => 1,
                Activation::Gelu => 2,
            },
            out_dtype: out_dtype(O::DTYPE),
            pair_ok: i32::from(pair_ok),
            // The Hopper kernels read it as the 16-byte epilogue flag (gemm_params.cuh's
            // epilogue8); the others ignore it.
            reserved: i32::from(vec8_ok),
            alpha,
            beta: desc.beta,
        }
    }

    /// The Hopper kernel's tensor maps of A and B: the cached ones if the operands have not
    /// moved. K-major operands: boxes of 64 K × 128 rows (the tile's A; B in one or two of
    /// them); MN-major ones: boxes of 64 M (or N) × 64 K, several per tile.
    fn tma_maps(
        &self,
        cache: &mut Option<TmaCache>,
        p: &Pointers,
        kernel: &Kernel,
    ) -> Result<(tma::TmaDesc, tma::TmaDesc)> {
        let key = (p.a, p.b);
        if let Some((k, maps)) = cache {
            if *k == key {
                return Ok(*maps);
            }
        }
        let (desc, s) = (&self.view, &self.strides);
        let (m, n, k, batch) = (desc.m, desc.n, desc.k, desc.batch);
        let dtype = I::DTYPE;
        let bm = kernel.choice.config.bm as u32;
        let a = match desc.a_layout {
            Layout::RowMajor => tma::tiled(p.a, dtype, k, m, batch, s.lda, s.stride_a, bm)?,
            Layout::ColMajor => tma::tiled(p.a, dtype, m, k, batch, s.lda, s.stride_a, 64)?,
        };
        let b = match desc.b_layout {
            Layout::ColMajor => tma::tiled(p.b, dtype, k, n, batch, s.ldb, s.stride_b, 128)?,
            Layout::RowMajor => tma::tiled(p.b, dtype, n, k, batch, s.ldb, s.stride_b, 64)?,
        };
        *cache = Some((key, (a, b)));
        Ok((a, b))
    }

    /// The Hopper kernel: `blocks` persistent blocks walk the tiles × batches × slices.
    fn queue_persistent(
        &self,
        stream: &Stream,
        kernel: &Kernel,
        params: &GemmParams,
        maps: (tma::TmaDesc, tma::TmaDesc),
        blocks: usize,
    ) -> Result<()> {
        let config = &kernel.choice.config;
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (config.threads, 1, 1),
            shared_mem_bytes: config.smem_bytes,
        };
        let mut args = stream.raw.launch_builder(&kernel.func);
        args.arg(params).arg(&maps.0).arg(&maps.1);
        // SAFETY: the Hopper kernels (persistent blocks walking every tile × batch × slice,
        // whatever the grid) take (GemmParams, TmaDesc, TmaDesc) by value. The tensor maps
        // describe exactly A and B as validated and size-checked in `check`; TMA reads only
        // inside them (zero fill past the edges); the epilogue writes D (and reads C, bias)
        // within the checked extents, or, with split-K, the plan's workspace of splits × batch
        // × M × N floats, which the caller holds locked. The access orders the launch after
        // earlier uses of every buffer and notes it.
        unsafe { launch(args, cfg) }
    }

    /// An mma.sync or WMMA kernel: a block per output tile, batch and split-K slice.
    fn queue_tiles(&self, stream: &Stream, kernel: &Kernel, params: &GemmParams) -> Result<()> {
        let (desc, config) = (&self.view, &kernel.choice.config);
        // Both fit the grid's limits (checked by the plan).
        let tiles = desc.m.div_ceil(config.bm) * desc.n.div_ceil(config.bn);
        let slices = desc.batch * kernel.choice.splits;
        let cfg = LaunchConfig {
            grid_dim: (tiles as u32, slices as u32, 1),
            block_dim: (config.threads, 1, 1),
            shared_mem_bytes: config.smem_bytes,
        };
        let mut args = stream.raw.launch_builder(&kernel.func);
        args.arg(params);
        // SAFETY: the kernel takes one GemmParams by value, which matches `params` field for
        // field. Every pointer in it addresses a live buffer of this device whose size was
        // checked in `check` against the furthest element the shape, leading dimensions and
        // batch strides reach (the kernels bound every access by M, N, K); the fast kernels'
        // whole 16-byte chunks at the rows' ends lie within the buffers (`buffers_aligned`); the
        // split-K workspace holds splits × batch × M × N floats for the larger split factor of
        // the plan's kernels, and the caller holds it locked. The access orders the launch
        // after earlier uses of every buffer and notes it.
        unsafe { launch(args, cfg) }
    }

    /// The split-K reduction: sums the slices in the workspace and applies the epilogue.
    fn queue_reduce(
        &self,
        stream: &Stream,
        reduce: &CudaFunction,
        params: &GemmParams,
    ) -> Result<()> {
        let desc = &self.view;
        let total = desc.batch * desc.m * desc.n; // no more than D's validated extent
        let cfg = grid_stride_config(total, self.device.properties().sm_count);
        let mut args = stream.raw.launch_builder(reduce);
        args.arg(params);
        // SAFETY: as for the GEMM kernel; the reduction reads the workspace the kernel before it
        // wrote on this stream (splits × batch × M × N floats) and writes D (and reads C and
        // bias) within the checked extents.
        unsafe { launch(args, cfg) }
    }
}
