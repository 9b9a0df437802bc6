//! The Hopper data gradient of a strided convolution (and of a stride-1 one whose padding the
//! transposed forward cannot express), for [`Conv2dGrad`](super::Conv2dGrad): the phases of dx
//! ([`DgradPhase`]: the pixels one remainder of the stride apart and the filter taps that reach
//! them), up to four in one launch of the forward kernel's phase variant (`conv_sm90_*_phases`:
//! persistent blocks walk every phase's tiles as one sequence, so that the short phases' tails
//! and launches overlap). A phase is the stride-1 convolution of dy by its taps, flipped and
//! transposed (C × taps × K), dilated by the phase's output step, with signed padding; the
//! kernel writes its pixels straight to their places in dx (every stride-th row and column) and
//! a phase no tap reaches gets zeros. No tap is read as a zero between output pixels, as
//! CUTLASS's strided dgrad does it. dy comes through TMA im2col maps whose boxes span each
//! phase's own rows and columns (signed corners); where they do not fit, or
//! [`Conv2dDesc::hopper`] forces another load, the implicit GEMM's phases run instead.

use super::sm90::{self, ALoad, Sm90Plan};
use super::Conv2dDesc;
use crate::error::{Error, Result};
use crate::launch::args::{FlipFilter, FlipTaps, TRANSPOSE_MAX_ROWS};
use crate::launch::conv::{dim, ConvRun, ConvSm90Phases, ConvSm90Shape, DgradPhase};
use crate::launch::conv::{Sm90Phase, SM90_PHASES};
use crate::launch::tma::{self, TmaMap};
use crate::launch::{run, Kernel, KernelArgs};
use crate::memory::access::Access;
use crate::memory::{DeviceBuffer, DeviceSlice, DeviceSliceMut};
use crate::ops::Float;
use crate::stream::Stream;
use crate::tiles::Tile;
use cudarc::driver::LaunchConfig;

/// The phases' kernel and tile, and the filter each launch flips their taps into.
pub(super) struct DgradSm90<I: Float> {
    /// Each phase's kernel shape (k-tiles set; none for a phase no tap reaches, which writes
    /// zeros), its filter's place in `flipped` and its maps (encoded for `maps_at`).
    runs: Vec<Sm90Phase>,
    /// Each phase's taps of the filter, as the flip reads them (`None`: no tap).
    taps: Vec<Option<FlipTaps>>,
    /// The (dy, flipped) addresses `runs`' maps were encoded for.
    maps_at: Option<(u64, u64)>,
    variant: Tile,
    grid_blocks: usize,
    alpha: f32,
    func: Kernel<ConvSm90Phases<I, I>>,
    flip: Kernel<FlipFilter<I>>,
    flipped: DeviceBuffer<I>,
}

impl<I: Float> DgradSm90<I> {
    /// The plan for `desc`'s data gradient (`phases`, [`super::grad`]'s) where the Hopper
    /// kernel takes every phase: a compute_90a device, f16 or bf16, groups 1, K a multiple of 8
    /// (dy's pixel rows), K within the flip's rows, every phase's corners within TMA im2col's
    /// and no other load forced; `None` otherwise. The phases run as one launch per
    /// [`SM90_PHASES`] of them, one tile for all.
    pub(super) fn new(
        stream: &Stream,
        desc: &Conv2dDesc,
        phases: &[DgradPhase],
    ) -> Result<Option<Self>> {
        let device = stream.device();
        let dense = desc.groups == 1 && desc.k.is_multiple_of(8) && desc.k <= TRANSPOSE_MAX_ROWS;
        if !dense || Sm90Plan::<I>::supports(device).is_err() {
            return Ok(None);
        }
        let (mut runs, mut flips) = (Vec::new(), Vec::new());
        let (mut offset, mut m, mut work) = (0, 0, 0);
        // The phases with the most taps first: the last tiles the blocks walk are the shortest.
        let mut order: Vec<&DgradPhase> = phases.iter().collect();
        order.sort_by_key(|ph| std::cmp::Reverse(ph.taps_h.max(0) * ph.taps_w.max(0)));
        for ph in order {
            let conv = phase_desc(desc, ph);
            let hw = (dim(ph.rows), dim(ph.cols));
            if sm90::limits(&conv, hw).is_err() {
                return Ok(None);
            }
            let taps = taps(desc, ph)?;
            let c_tiles = conv.c.div_ceil(sm90::BK);
            let k_tiles = taps.map_or(0, |_| conv.r * conv.s * c_tiles);
            let shape = ConvSm90Shape {
                c_tiles: c_tiles as i32,
                k_tiles: k_tiles as i32,
                kt_per_split: k_tiles as i32,
                ..phase_params(desc, &conv, ph)?
            };
            let w_offset = if taps.is_some() { offset } else { 0 };
            offset += taps.map_or(0, |_| conv.filter_len());
            let maps = (TmaMap::unused(), TmaMap::unused());
            runs.push(Sm90Phase {
                shape,
                w_offset,
                maps,
            });
            flips.push(taps);
            let pixels = desc.n * hw.0 * hw.1;
            m += pixels;
            work += pixels * k_tiles;
        }
        // dy through TMA im2col only: every phase's corners must fit, and no other load forced.
        let fit = runs.iter().all(|r| sm90::params_fit(&r.shape));
        let im2col = desc.hopper.and_then(|h| h.a_load).unwrap_or(ALoad::Im2col) == ALoad::Im2col;
        if !fit || !im2col {
            return Ok(None);
        }
        let sms = device.properties().sm_count as usize;
        let k_tiles = work.div_ceil(m.max(1)).max(1);
        let (variant, _) = sm90::choose_among(&sm90::VARIANTS, (m, desc.c, k_tiles), sms, 1);
        let smem = sm90::smem_bytes(&variant);
        if device.properties().max_shared_memory_per_block < smem {
            return Ok(None);
        }
        let which = sm90::kernel(&variant, ALoad::Im2col);
        let func = ConvSm90Phases::<I, I>::kernel(device, which, None)?;
        func.set_max_dynamic_shared_memory(smem)?;
        let tiles = m.div_ceil(sm90::BM) * desc.c.div_ceil(variant.bn);
        // The phases' taps partition the filter's (those of phases with no pixel left out); a
        // phase with none reads no filter, whose C·K elements must still be there.
        let len = offset.max(desc.c * desc.k);
        Ok(Some(DgradSm90 {
            runs,
            taps: flips,
            maps_at: None,
            variant,
            grid_blocks: (sms * variant.min_blocks).clamp(1, tiles.max(1)),
            alpha: desc.alpha,
            func,
            flip: FlipFilter::<I>::kernel(device, (), None)?,
            flipped: DeviceBuffer::alloc(stream, len)?,
        }))
    }

    /// Bytes of device memory held: the flipped filter.
    pub(super) fn bytes(&self) -> usize {
        self.flipped.num_bytes()
    }

    /// Flips each phase's taps of `w` and runs the phases' convolutions of `dy` into their
    /// pixels of `dx` (through the ReLU-backward `mask`, dx's shape, where given).
    pub(super) fn launch(
        &mut self,
        stream: &Stream,
        desc: &Conv2dDesc,
        (dy, w): (&DeviceSlice<'_, I>, &DeviceSlice<'_, I>),
        mask: Option<&DeviceSlice<'_, I>>,
        dx: &mut DeviceSliceMut<'_, I>,
    ) -> Result<()> {
        for (run, taps) in self.runs.iter().zip(&self.taps) {
            if let Some(taps) = *taps {
                let at = run.w_offset;
                let sub = &mut self.flipped.slice_mut(at..at + filter_len(&run.shape))?;
                super::layout::flip_filter(stream, &self.flip, w, sub, (desc.k, desc.c), taps)?;
            }
        }
        let mut acc = Access::new(stream)?;
        let flipped = self.flipped.slice(..)?;
        let (ops, activation) = super::grad_operands(&mut acc, (dy, &flipped), mask, dx, None)?;
        self.encode_maps((ops.a.addr(), ops.b.addr()))?;
        let run_info = ConvRun {
            tile: None,
            vec: None,
            splits: 1,
            k_per_split: 0,
            activation,
            scale: (self.alpha, 0.0),
            ldb: 0,
        };
        let cfg = LaunchConfig {
            grid_dim: (self.grid_blocks as u32, 1, 1),
            block_dim: (sm90::THREADS, 1, 1),
            shared_mem_bytes: sm90::smem_bytes(&self.variant),
        };
        for set in self.runs.chunks(SM90_PHASES) {
            let mut args = ConvSm90Phases::new(set, &ops, &run_info)?;
            run(stream, &self.func, cfg, &mut args)?;
        }
        acc.finish()
    }

    /// Encodes each phase's im2col map of dy (at `dy`) and the tiled map of its filter in
    /// the flipped one (from `w` on; none for a phase without taps), unless they are for these
    /// addresses already.
    fn encode_maps(&mut self, (dy, w): (u64, u64)) -> Result<()> {
        if self.maps_at == Some((dy, w)) {
            return Ok(());
        }
        let (dtype, bn) = (I::DTYPE, self.variant.bn as u32);
        for (run, taps) in self.runs.iter_mut().zip(&self.taps) {
            let s = &run.shape;
            let x = sm90::im2col_map(dy, dtype, s, sm90::BM as u32)?;
            let filter = match taps {
                Some(_) => {
                    let at = w + (run.w_offset * std::mem::size_of::<I>()) as u64;
                    let taps = dim(s.r) * dim(s.s);
                    tma::filter(at, dtype, dim(s.k), taps, dim(s.c), bn)?
                }
                None => TmaMap::unused(),
            };
            run.maps = (x, filter);
        }
        self.maps_at = Some((dy, w));
        Ok(())
    }
}

/// The elements of a phase's flipped filter: C × taps × K.
fn filter_len(s: &ConvSm90Shape) -> usize {
    dim(s.k) * dim(s.r) * dim(s.s) * dim(s.c)
}

/// The phase's convolution as the kernel sees it: dy (N × P × Q × K) by C filters of its taps,
/// dilated by its output step; 1 × 1 taps for a phase no tap reaches (on either axis): it reads
/// none, and its filter is the C·K elements [`DgradSm90::launch`] hands it.
fn phase_desc(desc: &Conv2dDesc, ph: &DgradPhase) -> Conv2dDesc {
    let (p, q) = desc.output_hw();
    let d = |v: i32| usize::try_from(v).unwrap_or(0).max(1);
    let (th, tw) = match ph.taps_h <= 0 || ph.taps_w <= 0 {
        true => (1, 1),
        false => (d(ph.taps_h), d(ph.taps_w)),
    };
    Conv2dDesc::input(desc.n, p, q, desc.k)
        .filters(desc.c, th, tw)
        .dilation(d(ph.dp), d(ph.dq))
        .alpha(desc.alpha)
}

/// The kernel's shape of the phase (`conv`, its [`phase_desc`]): output `rows × cols` pixels,
/// padding `(taps − 1)·step − base` (negative where the phase's first pixel reads past dy's
/// first), the pixels placed at `(h0 + i·stride_h, w0 + j·stride_w)` of dx.
fn phase_params(desc: &Conv2dDesc, conv: &Conv2dDesc, ph: &DgradPhase) -> Result<ConvSm90Shape> {
    let int = |what: &str, v: i64| {
        i32::try_from(v).map_err(|_| Error::TooLarge {
            what: format!("a data-gradient phase's {what}"),
            value: usize::try_from(v).unwrap_or(usize::MAX),
            max: i32::MAX as usize,
        })
    };
    let pad = |taps: usize, step: usize, base: i32| {
        int("padding", (taps as i64 - 1) * step as i64 - i64::from(base))
    };
    let u = |what: &str, v: usize| int(what, i64::try_from(v).unwrap_or(i64::MAX));
    Ok(ConvSm90Shape {
        p: ph.rows,
        q: ph.cols,
        stride_h: 1,
        stride_w: 1,
        pad_h: pad(conv.r, conv.dilation.0, ph.pbase)?,
        pad_w: pad(conv.s, conv.dilation.1, ph.qbase)?,
        out_h: u("input height", desc.h)?,
        out_w: u("input width", desc.w)?,
        out_h0: ph.h0,
        out_w0: ph.w0,
        out_sh: u("stride", desc.stride.0)?,
        out_sw: u("stride", desc.stride.1)?,
        ..super::sm90::conv_params(conv)
    })
}

/// The phase's taps of the filter as the flip reads them; `None` for a phase no tap reaches.
fn taps(desc: &Conv2dDesc, ph: &DgradPhase) -> Result<Option<FlipTaps>> {
    if ph.taps_h <= 0 || ph.taps_w <= 0 {
        return Ok(None);
    }
    let whole = FlipTaps::whole(desc.r, desc.s)?;
    Ok(Some(FlipTaps {
        taps_h: ph.taps_h,
        taps_w: ph.taps_w,
        r0: ph.r0,
        s0: ph.s0,
        tr: ph.tr,
        ts: ph.ts,
        ..whole
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For every phase of a few strided shapes, the kernel's stride-1 convolution of dy by the
    /// flipped taps, evaluated on the CPU with its signed padding and placement, is dx of the
    /// direct definition (every output pixel's taps summed), on integers.
    #[test]
    fn phases_as_placed_convolutions_give_dx() {
        let shapes = [
            Conv2dDesc::input(2, 7, 9, 8)
                .filters(16, 3, 3)
                .stride(2, 2)
                .padding(1, 1),
            Conv2dDesc::input(1, 8, 8, 8).filters(8, 1, 1).stride(2, 2),
            Conv2dDesc::input(1, 11, 10, 8)
                .filters(8, 3, 2)
                .stride(3, 2)
                .padding(2, 0),
            Conv2dDesc::input(1, 9, 9, 8)
                .filters(8, 3, 3)
                .stride(2, 2)
                .dilation(2, 3)
                .padding(2, 1),
            Conv2dDesc::input(1, 6, 6, 8).filters(8, 2, 2).padding(1, 1), // pad > dil·(R − 1)
            // Phases with taps on one axis and none on the other.
            Conv2dDesc::input(1, 11, 9, 8)
                .filters(8, 3, 3)
                .stride(2, 2)
                .dilation(2, 2)
                .padding(2, 2),
        ];
        for desc in shapes {
            desc.validate().unwrap();
            let phases = super::super::grad::phases(&desc).unwrap();
            let (p, q) = desc.output_hw();
            // One channel in and out: dy and w as small integers.
            let dy = |n: i64, i: i64, j: i64| (n * 31 + i * 7 + j * 3) % 11 - 5;
            let w = |r: i64, s: i64| (r * 5 + s * 3) % 7 - 3;
            let mut want = vec![0i64; desc.n * desc.h * desc.w];
            for n in 0..desc.n as i64 {
                for i in 0..p as i64 {
                    for j in 0..q as i64 {
                        for r in 0..desc.r as i64 {
                            for s in 0..desc.s as i64 {
                                let h = i * desc.stride.0 as i64 - desc.padding.0 as i64
                                    + r * desc.dilation.0 as i64;
                                let x = j * desc.stride.1 as i64 - desc.padding.1 as i64
                                    + s * desc.dilation.1 as i64;
                                if (0..desc.h as i64).contains(&h)
                                    && (0..desc.w as i64).contains(&x)
                                {
                                    let at =
                                        (n as usize * desc.h + h as usize) * desc.w + x as usize;
                                    want[at] += dy(n, i, j) * w(r, s);
                                }
                            }
                        }
                    }
                }
            }
            let mut got = vec![i64::MIN; want.len()];
            for ph in &phases {
                let k = phase_params(&desc, &phase_desc(&desc, ph), ph).unwrap();
                let t = taps(&desc, ph).unwrap();
                // A phase without taps gets the C·K elements of a 1 × 1 filter.
                let len = phase_desc(&desc, ph).filter_len();
                assert!(
                    t.is_some() || len == desc.c * desc.k,
                    "{desc:?} {ph:?}: {len}"
                );
                // TMA im2col's box walks (in − 1 + upper − lower) + 1 pixels an axis: the
                // phase's rows and columns.
                let [(lw, uw), (lh, uh)] = super::super::sm90::corners(&k);
                assert_eq!(
                    i64::from(k.h) - 1 + uh - lh + 1,
                    i64::from(k.p),
                    "{desc:?} {ph:?}"
                );
                assert_eq!(
                    i64::from(k.w) - 1 + uw - lw + 1,
                    i64::from(k.q),
                    "{desc:?} {ph:?}"
                );
                for n in 0..desc.n as i64 {
                    for i in 0..k.p as i64 {
                        for j in 0..k.q as i64 {
                            let mut v = 0;
                            if let Some(t) = t {
                                // Flipped tap (a, b) holds source tap (r0 + (taps_h − 1 − a)·tr, …).
                                for a in 0..t.taps_h as i64 {
                                    for b in 0..t.taps_w as i64 {
                                        let ih = i - k.pad_h as i64 + a * k.dil_h as i64;
                                        let iw = j - k.pad_w as i64 + b * k.dil_w as i64;
                                        if (0..p as i64).contains(&ih)
                                            && (0..q as i64).contains(&iw)
                                        {
                                            let r =
                                                (t.r0 + (t.taps_h - 1 - a as i32) * t.tr) as i64;
                                            let s =
                                                (t.s0 + (t.taps_w - 1 - b as i32) * t.ts) as i64;
                                            v += dy(n, ih, iw) * w(r, s);
                                        }
                                    }
                                }
                            }
                            let row = (n * k.out_h as i64 + k.out_h0 as i64 + i * k.out_sh as i64)
                                * k.out_w as i64
                                + k.out_w0 as i64
                                + j * k.out_sw as i64;
                            assert_eq!(got[row as usize], i64::MIN, "{desc:?}: pixel twice");
                            got[row as usize] = v;
                        }
                    }
                }
            }
            assert_eq!(got, want, "{desc:?}");
        }
    }
}
