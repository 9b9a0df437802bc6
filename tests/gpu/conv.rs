//! 2-D convolution on every kernel path the device runs (the compute_75 and compute_70 PTX
//! through the driver's JIT on newer GPUs), against an f64 direct convolution computed with
//! ndarray from the stored (rounded) inputs: odd H and W, strides, padding 0/1/2/3, dilation 2,
//! C = 3 and other channel counts that are not multiples of 8 (the padded path), K not a
//! multiple of the tile, depthwise, 1×1 through the GEMM, split-K, each epilogue. Outputs are
//! poisoned (NaN) before each launch, and the elements past the output must keep their poison.

use crate::{activate, bound, conv_ref, ensure, fail, gpu_test, random};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::ops::conv2d::{
    kcrs_to_krsc, krsc_to_kcrs, nchw_to_nhwc, nhwc_to_nchw, Conv2d, Conv2dDesc, ConvPath,
};
use hikube_gpu::ops::matmul::{GemmPath, Tiling};
use hikube_gpu::ops::{Activation, Epilogue};
use hikube_gpu::{Device, DeviceBuffer, Error, Float, Graph, KernelOptions, PtxArch};
use libtest_mimic::{Failed, Trial};

pub fn trials() -> Vec<Trial> {
    vec![
        gpu_test("conv::default_f16_f16_grid", |d| grid::<f16, f16>(d, None)),
        gpu_test("conv::sm80_f16_f16_grid", |d| {
            grid::<f16, f16>(d, Some(PtxArch::Compute80))
        }),
        gpu_test("conv::sm80_bf16_bf16_grid", |d| {
            grid::<bf16, bf16>(d, Some(PtxArch::Compute80))
        }),
        gpu_test("conv::sm80_f16_f32_grid", |d| {
            grid::<f16, f32>(d, Some(PtxArch::Compute80))
        }),
        gpu_test("conv::sm80_bf16_f32_grid", |d| {
            grid::<bf16, f32>(d, Some(PtxArch::Compute80))
        }),
        gpu_test("conv::sm75_f16_f16_grid", |d| {
            grid::<f16, f16>(d, Some(PtxArch::Compute75))
        }),
        gpu_test("conv::sm70_f16_f16_grid", |d| {
            grid::<f16, f16>(d, Some(PtxArch::Compute70))
        }),
        gpu_test("conv::sm70_bf16_f32_grid", |d| {
            grid::<bf16, f32>(d, Some(PtxArch::Compute70))
        }),
        gpu_test("conv::sm80_every_tiling", every_tiling),
        gpu_test("conv::resnet_layers_default_path", resnet_layers),
        gpu_test("conv::paths_and_split_k", paths_and_split_k),
        gpu_test("conv::graph_capture", graph_capture),
        gpu_test("conv::layout_round_trips", layout_round_trips),
        gpu_test("conv::bad_input_is_a_typed_error", bad_input),
        gpu_test("conv::f32_bias_on_every_path", f32_bias),
    ]
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Case {
    pub(crate) n: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) c: usize,
    pub(crate) k: usize,
    pub(crate) r: usize,
    pub(crate) s: usize,
    pub(crate) stride: (usize, usize),
    pub(crate) pad: (usize, usize),
    pub(crate) dil: (usize, usize),
    pub(crate) groups: usize,
    pub(crate) bias: bool,
    pub(crate) act: Activation,
    pub(crate) alpha: f32,
    /// β ≠ 0 reads C: its own buffer when `c_in`, else y itself (filled with C first).
    pub(crate) beta: f32,
    pub(crate) c_in: bool,
    /// 1x1 through the GEMM (`Some(true)`), the implicit GEMM (`Some(false)`), or the plan's
    /// choice.
    pub(crate) gemm: Option<bool>,
}

pub(crate) fn case(n: usize, h: usize, w: usize, c: usize, k: usize, r: usize, s: usize) -> Case {
    Case {
        n,
        h,
        w,
        c,
        k,
        r,
        s,
        stride: (1, 1),
        pad: (0, 0),
        dil: (1, 1),
        groups: 1,
        bias: false,
        act: Activation::None,
        alpha: 1.0,
        beta: 0.0,
        c_in: false,
        gemm: None,
    }
}

impl Case {
    pub(crate) fn desc(&self, arch: Option<PtxArch>) -> Conv2dDesc {
        let d = Conv2dDesc::input(self.n, self.h, self.w, self.c)
            .filters(self.k, self.r, self.s)
            .stride(self.stride.0, self.stride.1)
            .padding(self.pad.0, self.pad.1)
            .dilation(self.dil.0, self.dil.1)
            .groups(self.groups)
            .alpha(self.alpha)
            .beta(self.beta)
            .activation(self.act)
            .options(KernelOptions { arch });
        match self.gemm {
            Some(g) => d.gemm_for_1x1(g),
            None => d,
        }
    }
    fn s2(mut self) -> Self {
        self.stride = (2, 2);
        self
    }
    fn p(mut self, p: usize) -> Self {
        self.pad = (p, p);
        self
    }
    fn d2(mut self) -> Self {
        self.dil = (2, 2);
        self
    }
    pub(crate) fn stride(mut self, h: usize, w: usize) -> Self {
        self.stride = (h, w);
        self
    }
    pub(crate) fn pad(mut self, h: usize, w: usize) -> Self {
        self.pad = (h, w);
        self
    }
    pub(crate) fn dilation(mut self, h: usize, w: usize) -> Self {
        self.dil = (h, w);
        self
    }
    pub(crate) fn g(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    /// The launch's epilogue operands: the bias and C where the case has them.
    pub(crate) fn epilogue<'a, O: Float, B: Float>(
        &self,
        bias: &'a DeviceBuffer<B>,
        c: &'a DeviceBuffer<O>,
    ) -> Epilogue<'a, O, B> {
        let e = Epilogue::default();
        let e = if self.bias { e.bias(bias) } else { e };
        if self.c_in {
            e.c(c)
        } else {
            e
        }
    }

    /// y before the launch: `poison`, or C where the epilogue reads it in place (β ≠ 0 without
    /// C), then `tail` more poison.
    pub(crate) fn y_init<O: Float>(&self, c: &[O], poison: O, tail: usize) -> Vec<O> {
        let mut y = vec![poison; c.len() + tail];
        if self.beta != 0.0 && !self.c_in {
            y[..c.len()].copy_from_slice(c);
        }
        y
    }

    /// Epilogue number `i` (mod 8): none, bias, ReLU, bias + ReLU; α, β·C (own buffer), bias
    /// and GELU; α and β·C in place with ReLU; GELU; bias and a negative β·C.
    pub(crate) fn epi(mut self, i: usize) -> Self {
        let (bias, act, alpha, beta, c_in) = match i % 8 {
            0 => (false, Activation::None, 1.0, 0.0, false),
            1 => (true, Activation::None, 1.0, 0.0, false),
            2 => (false, Activation::Relu, 1.0, 0.0, false),
            3 => (true, Activation::Relu, 1.0, 0.0, false),
            4 => (true, Activation::Gelu, 0.5, 0.75, true),
            5 => (false, Activation::Relu, -1.25, 1.0, false),
            6 => (false, Activation::Gelu, 1.0, 0.0, false),
            _ => (true, Activation::None, 1.0, -0.5, true),
        };
        (self.bias, self.act, self.alpha, self.beta, self.c_in) = (bias, act, alpha, beta, c_in);
        self
    }
}

fn cases() -> Vec<Case> {
    let v = vec![
        case(1, 1, 1, 8, 8, 1, 1),               // pointwise: the GEMM
        case(3, 9, 7, 24, 40, 1, 1),             // pointwise, odd sizes
        case(2, 7, 9, 16, 24, 3, 3).p(1),        // odd H, W
        case(3, 13, 11, 8, 40, 3, 3).s2().p(1),  // stride 2
        case(2, 17, 15, 32, 17, 3, 3),           // padding 0, odd K (single stores)
        case(1, 15, 13, 16, 72, 3, 3).d2().p(2), // dilation 2
        case(2, 23, 21, 3, 64, 7, 7).s2().p(3),  // C = 3, 7x7 stride 2 pad 3: padded path
        case(2, 9, 11, 5, 11, 3, 3).p(1),        // C = 5, K = 11: padded
        case(2, 9, 9, 12, 20, 3, 3).p(1),        // C = 12: 4-channel gather, filter rows padded
        case(1, 8, 9, 4, 8, 2, 2).s2(),          // C = 4, R*S*C = 16: 4-channel gather, no copy
        Case {
            gemm: Some(true),
            ..case(2, 7, 9, 24, 40, 1, 1)
        }, // 1x1 through the GEMM
        Case {
            gemm: Some(false),
            ..case(1, 5, 7, 8, 24, 1, 1)
        }, // 1x1 through the implicit GEMM
        case(1, 6, 5, 1, 3, 3, 3).p(3),          // C = 1, padding wider than the filter reach
        case(2, 8, 8, 64, 130, 1, 1).s2(),       // 1x1 stride 2: implicit GEMM
        case(2, 10, 12, 32, 32, 3, 3).p(1).g(32), // depthwise
        case(1, 9, 9, 12, 24, 3, 3).s2().p(1).g(12), // depthwise, channel multiplier 2
        case(2, 11, 13, 64, 66, 5, 5).p(2),      // long reduction, K not a tile multiple
        case(1, 7, 7, 512, 96, 3, 3).p(1),       // 49 pixels, 4608-long K: split-K
        Case {
            stride: (2, 1),
            pad: (1, 0),
            ..case(2, 9, 10, 16, 24, 3, 1)
        }, // R != S, anisotropic stride and padding
        Case {
            pad: (0, 2),
            dil: (1, 2),
            ..case(1, 5, 12, 40, 8, 1, 3)
        },
        case(1, 5, 5, 8, 8, 3, 3).s2(), // P = Q = 2
    ];
    let mut v: Vec<Case> = v.into_iter().enumerate().map(|(i, c)| c.epi(i)).collect();
    // Split-K (whose reduction kernel applies the epilogue) with C, α and GELU, and in place.
    v.push(case(1, 7, 7, 512, 96, 3, 3).p(1).epi(4));
    v.push(case(1, 7, 7, 512, 96, 3, 3).p(1).epi(5));
    v
}

/// The f64 direct convolution of NHWC `x` by KRSC `w` (`tests/support/conv_ref.rs`), then the
/// epilogue: `act(α·conv + β·C + bias)` (C, NHWC like the output, read when β ≠ 0), NHWC out.
pub(crate) fn reference(
    c: &Case,
    x: &[f64],
    w: &[f64],
    bias: Option<&[f64]>,
    c_in: &[f64],
) -> Vec<f64> {
    let conv = conv_ref::forward(&c.desc(None), x, w);
    conv.iter()
        .enumerate()
        .map(|(i, acc)| {
            let mut v = f64::from(c.alpha) * acc;
            if c.beta != 0.0 {
                v += f64::from(c.beta) * c_in[i];
            }
            if let Some(b) = bias {
                v += b[i % c.k];
            }
            activate(c.act, v)
        })
        .collect()
}

/// Runs one case on `arch` (the device's default when `None`), optionally with a forced tile;
/// returns the relative error and the plan's path, or a failure.
fn run<I: Float, O: Float>(
    device: &Device,
    arch: Option<PtxArch>,
    c: Case,
    tiling: Option<Tiling>,
) -> Result<(f64, ConvPath), Failed> {
    run_with::<I, O, O>(device, arch, c, tiling)
}

/// [`run`] with a bias of type `B`.
fn run_with<I: Float, O: Float, B: Float>(
    device: &Device,
    arch: Option<PtxArch>,
    c: Case,
    tiling: Option<Tiling>,
) -> Result<(f64, ConvPath), Failed> {
    let stream = device.default_stream();
    let mut rng = rand::rng();
    let mut desc = c.desc(arch);
    if let Some(t) = tiling {
        desc = desc.tiling(t);
    }
    let x_h: Vec<I> = random(desc.input_len(), &mut rng);
    let w_h: Vec<I> = random(desc.filter_len(), &mut rng);
    let bias_h: Vec<B> = random(c.k, &mut rng);
    let c_h: Vec<O> = random(desc.output_len(), &mut rng);
    const TAIL: usize = 7;
    let poison = O::from_f32(f32::NAN);
    let y_init = c.y_init(&c_h, poison, TAIL);

    let x = DeviceBuffer::from_slice(&stream, &x_h).map_err(fail)?;
    let w = DeviceBuffer::from_slice(&stream, &w_h).map_err(fail)?;
    let bias = DeviceBuffer::from_slice(&stream, &bias_h).map_err(fail)?;
    let c_buf = DeviceBuffer::from_slice(&stream, &c_h).map_err(fail)?;
    let mut y = DeviceBuffer::from_slice(&stream, &y_init).map_err(fail)?;
    let mut plan = Conv2d::<I, O>::new(&stream, desc).map_err(fail)?;
    plan.launch(&stream, &x, &w, &mut y, c.epilogue(&bias, &c_buf))
        .map_err(fail)?;
    let out = y.to_vec(&stream).map_err(fail)?;

    let f = |v: &[I]| v.iter().map(|e| f64::from(e.to_f32())).collect::<Vec<_>>();
    let g = |v: &[O]| v.iter().map(|e| f64::from(e.to_f32())).collect::<Vec<_>>();
    let bias_f: Vec<f64> = bias_h.iter().map(|e| f64::from(e.to_f32())).collect();
    let want = reference(
        &c,
        &f(&x_h),
        &f(&w_h),
        c.bias.then_some(&bias_f[..]),
        &g(&c_h),
    );
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (i, (got, v)) in out.iter().zip(want.iter()).enumerate() {
        let g = f64::from(got.to_f32());
        ensure!(g.is_finite(), "{c:?}: y[{i}] = {g} (unwritten?)");
        num += (g - v) * (g - v);
        den += v * v;
    }
    for (i, got) in out[desc.output_len()..].iter().enumerate() {
        ensure!(
            bytemuck::bytes_of(got) == bytemuck::bytes_of(&poison),
            "{c:?}: the element {i} past the output was written"
        );
    }
    // The reference's RMS floored at 1e-3 (as in the GEMM tests): a ReLU'd output can be
    // nearly all zeros.
    let count = desc.output_len() as f64;
    Ok(((num / den.max(count * 1e-6)).sqrt(), plan.path()))
}

fn grid<I: Float, O: Float>(device: &Device, arch: Option<PtxArch>) -> Result<(), Failed> {
    if let Some(a) = arch {
        if !a.runs_on(device.compute_capability()) {
            return Err(format!("{a} cannot run on this device").into());
        }
    }
    let mut worst = 0.0f64;
    let mut paths = Vec::new();
    for c in cases() {
        let (err, path) = run::<I, O>(device, arch, c, None)?;
        ensure!(
            err <= bound::<O>(),
            "{arch:?} {}->{} {c:?} on {path:?}: relative error {err:e}",
            I::SUFFIX,
            O::SUFFIX
        );
        worst = worst.max(err);
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    eprintln!(
        "{arch:?} {}->{}: {} cases on {paths:?}, worst relative error {worst:.2e}",
        I::SUFFIX,
        O::SUFFIX,
        cases().len()
    );
    Ok(())
}

/// Every compute_80 tile, each forced, on shapes with partial tiles everywhere.
fn every_tiling(device: &Device) -> Result<(), Failed> {
    let shapes = [
        case(2, 13, 11, 32, 72, 3, 3).p(1).epi(3),
        case(1, 19, 17, 8, 136, 3, 3).s2().p(1).epi(1),
        case(1, 9, 9, 3, 200, 7, 7).s2().p(3).epi(2),
    ];
    let arch = Some(PtxArch::Compute80);
    for t in Conv2d::<f16, f16>::tilings(ConvPath::Sm80) {
        for c in shapes {
            if c.c % 8 != 0 && t.bk == 64 {
                // The 4-channel gather has no 128x128x64x3 kernel.
                let stream = device.default_stream();
                let r = Conv2d::<f16, f16>::new(&stream, c.desc(arch).tiling(t));
                ensure!(
                    matches!(r, Err(Error::InvalidArgument { .. })),
                    "{t} for C = {}: {r:?}",
                    c.c
                );
                continue;
            }
            let (err, _) = run::<f16, f32>(device, arch, c, Some(t))?;
            ensure!(err <= 1e-4, "{t} f16->f32 {c:?}: {err:e}");
            let (err, _) = run::<bf16, bf16>(device, arch, c, Some(t))?;
            ensure!(err <= 1e-2, "{t} bf16->bf16 {c:?}: {err:e}");
        }
    }
    let bogus = Tiling {
        bm: 96,
        bn: 96,
        bk: 32,
        stages: 2,
    };
    let stream = device.default_stream();
    let r = Conv2d::<f16, f16>::new(&stream, shapes[0].desc(arch).tiling(bogus));
    ensure!(
        matches!(r, Err(Error::InvalidArgument { .. })),
        "bogus tiling: {r:?}"
    );
    Ok(())
}

/// ResNet-50's layer shapes at batch 1 on the device's default paths.
fn resnet_layers(device: &Device) -> Result<(), Failed> {
    let layers = [
        case(1, 56, 56, 64, 64, 3, 3).p(1).epi(3),
        case(1, 56, 56, 64, 256, 1, 1).epi(1),
        case(1, 28, 28, 128, 128, 3, 3).p(1).epi(2),
        case(1, 14, 14, 256, 256, 3, 3).p(1).epi(3),
        case(1, 7, 7, 512, 512, 3, 3).p(1).epi(3),
        case(1, 224, 224, 3, 64, 7, 7).s2().p(3).epi(3),
    ];
    for c in layers {
        let (err, path) = run::<f16, f16>(device, None, c, None)?;
        ensure!(err <= 2e-3, "{c:?} on {path:?}: {err:e}");
        let (err, path) = run::<bf16, bf16>(device, None, c, None)?;
        ensure!(err <= 1e-2, "{c:?} on {path:?}: {err:e}");
    }
    Ok(())
}

/// The paths the plan picks, the padded path's workspace, and split-K.
fn paths_and_split_k(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let cc = device.compute_capability();
    let plan = |c: Case, arch| Conv2d::<f16, f16>::new(&stream, c.desc(arch)).map_err(fail);
    let gemm = Case {
        gemm: Some(true),
        ..case(2, 8, 8, 64, 64, 1, 1)
    };
    let p = plan(gemm, None)?;
    ensure!(
        matches!(p.path(), ConvPath::Gemm(_)),
        "1x1 with gemm_for_1x1 went to {:?}",
        p.path()
    );
    let p = plan(case(2, 8, 8, 64, 64, 1, 1), Some(PtxArch::Compute75))?;
    ensure!(
        p.path() == ConvPath::Gemm(GemmPath::Sm75),
        "forced 1x1: {:?}",
        p.path()
    );
    let p = plan(case(2, 8, 8, 16, 16, 3, 3).g(16), None)?;
    ensure!(p.path() == ConvPath::Direct, "depthwise: {:?}", p.path());
    let p = plan(case(2, 8, 8, 16, 16, 3, 3), Some(PtxArch::Compute70))?;
    ensure!(p.path() == ConvPath::Direct, "compute_70: {:?}", p.path());
    if PtxArch::Compute80.runs_on(cc) {
        let p = plan(case(2, 8, 8, 64, 64, 1, 1), None)?;
        ensure!(p.path() == ConvPath::Sm80, "1x1: {:?}", p.path());
        // Hopper runs filters larger than 1x1 on its own kernel (C a multiple of 8).
        let want = if PtxArch::Compute90a.runs_on(cc) {
            ConvPath::Sm90
        } else {
            ConvPath::Sm80
        };
        let p = plan(case(2, 8, 8, 16, 16, 3, 3), None)?;
        ensure!(p.path() == want, "3x3: {:?}", p.path());
        let p = plan(case(2, 8, 8, 16, 16, 3, 3), Some(PtxArch::Compute80))?;
        ensure!(
            p.path() == ConvPath::Sm80,
            "3x3 on compute_80: {:?}",
            p.path()
        );
        let p = Conv2d::<f16, f32>::new(&stream, case(2, 8, 8, 16, 16, 3, 3).desc(None))
            .map_err(fail)?;
        ensure!(p.path() == ConvPath::Sm80, "3x3 to f32: {:?}", p.path());
        let p = plan(case(1, 224, 224, 3, 64, 7, 7).s2().p(3), None)?;
        ensure!(p.padded(), "C = 3 is not padded");
        // C = 3 padded to 4, filter rows of 7*7*4 = 196 rounded up to 200.
        ensure!(
            p.workspace_bytes() >= (224 * 224 * 4 + 64 * 200) * 2,
            "workspace {}",
            p.workspace_bytes()
        );
        let p = plan(case(1, 8, 9, 4, 8, 2, 2).s2(), None)?;
        ensure!(!p.padded(), "C = 4, 2x2 needs no copy");
        ensure!(
            p.workspace_bytes() == 0,
            "workspace {}",
            p.workspace_bytes()
        );
        // The compute_80 kernels' split-K (Hopper's kernel has its own: tests/gpu/conv_sm90.rs).
        let p = plan(case(1, 7, 7, 512, 512, 3, 3).p(1), Some(PtxArch::Compute80))?;
        let (_, splits) = p.tiling().ok_or("no tiling")?;
        ensure!(splits > 1, "C512 7x7 at batch 1 does not split K");
        ensure!(
            p.workspace_bytes() >= splits * 49 * 512 * 4,
            "split-K workspace"
        );
    }
    Ok(())
}

/// A padded, split-K convolution captured in a graph and replayed gives the plain launch's
/// output.
fn graph_capture(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let mut rng = rand::rng();
    let c = case(1, 9, 9, 5, 96, 3, 3).p(1).epi(3);
    let desc = c.desc(None);
    let x = DeviceBuffer::from_slice(&stream, &random::<f16>(desc.input_len(), &mut rng))
        .map_err(fail)?;
    let w = DeviceBuffer::from_slice(&stream, &random::<f16>(desc.filter_len(), &mut rng))
        .map_err(fail)?;
    let bias = DeviceBuffer::from_slice(&stream, &random::<f16>(c.k, &mut rng)).map_err(fail)?;
    let mut want = DeviceBuffer::<f16>::zeroed(&stream, desc.output_len()).map_err(fail)?;
    let mut plan = Conv2d::<f16, f16>::new(&stream, desc).map_err(fail)?;
    plan.launch(&stream, &x, &w, &mut want, Epilogue::new().bias(&bias))
        .map_err(fail)?;
    let y =
        DeviceBuffer::<f16>::from_slice(&stream, &vec![f16::from_f32(f32::NAN); desc.output_len()])
            .map_err(fail)?;
    let mut g = Graph::capture(
        &stream,
        (plan, x, w, bias, y),
        |s, (plan, x, w, bias, y)| plan.launch(s, x, w, y, Epilogue::new().bias(bias)),
    )
    .map_err(fail)?;
    g.launch(&stream).map_err(fail)?;
    g.launch(&stream).map_err(fail)?;
    let (_, _, _, _, y) = g.into_resources().map_err(fail)?;
    let (got, want) = (
        y.to_vec(&stream).map_err(fail)?,
        want.to_vec(&stream).map_err(fail)?,
    );
    ensure!(got == want, "graph replay differs from the launch");
    Ok(())
}

fn layout_round_trips(device: &Device) -> Result<(), Failed> {
    layout::<f16>(device)?;
    layout::<f32>(device)
}

fn layout<T: Float + PartialEq + std::fmt::Debug>(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let mut rng = rand::rng();
    for (n, c, h, w) in [(1, 1, 1, 1), (2, 3, 5, 7), (3, 67, 33, 35), (1, 64, 1, 1)] {
        let len = n * c * h * w;
        let host: Vec<T> = random(len, &mut rng);
        let src = DeviceBuffer::from_slice(&stream, &host).map_err(fail)?;
        let mut nhwc = DeviceBuffer::<T>::alloc(&stream, len).map_err(fail)?;
        let mut back = DeviceBuffer::<T>::alloc(&stream, len).map_err(fail)?;
        nchw_to_nhwc(&stream, &src, &mut nhwc, n, c, h, w).map_err(fail)?;
        let got = nhwc.to_vec(&stream).map_err(fail)?;
        for ni in 0..n {
            for ci in 0..c {
                for hi in 0..h {
                    for wi in 0..w {
                        let a = host[((ni * c + ci) * h + hi) * w + wi];
                        let b = got[((ni * h + hi) * w + wi) * c + ci];
                        ensure!(
                            a == b,
                            "NCHW->NHWC ({ni},{ci},{hi},{wi}) of {n}x{c}x{h}x{w}"
                        );
                    }
                }
            }
        }
        nhwc_to_nchw(&stream, &nhwc, &mut back, n, c, h, w).map_err(fail)?;
        ensure!(
            back.to_vec(&stream).map_err(fail)? == host,
            "NHWC->NCHW round trip"
        );
        // The same dimensions as a K x C x R x S filter.
        let (k, r, s) = (n, h, w);
        kcrs_to_krsc(&stream, &src, &mut nhwc, k, c, r, s).map_err(fail)?;
        let got = nhwc.to_vec(&stream).map_err(fail)?;
        for ki in 0..k {
            for ci in 0..c {
                for rs in 0..r * s {
                    ensure!(
                        got[(ki * r * s + rs) * c + ci] == host[(ki * c + ci) * r * s + rs],
                        "KCRS->KRSC ({ki},{ci},{rs}) of {k}x{c}x{r}x{s}"
                    );
                }
            }
        }
        krsc_to_kcrs(&stream, &nhwc, &mut back, k, c, r, s).map_err(fail)?;
        ensure!(
            back.to_vec(&stream).map_err(fail)? == host,
            "KRSC->KCRS round trip"
        );
    }
    let src = DeviceBuffer::<T>::alloc(&stream, 10).map_err(fail)?;
    let mut dst = DeviceBuffer::<T>::alloc(&stream, 100).map_err(fail)?;
    let r = nchw_to_nhwc(&stream, &src, &mut dst, 1, 2, 3, 4);
    ensure!(
        matches!(r, Err(Error::BufferTooSmall { operand: "src", .. })),
        "short src: {r:?}"
    );
    Ok(())
}

fn bad_input(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let new = |d: Conv2dDesc| Conv2d::<f16, f16>::new(&stream, d);
    let base = Conv2dDesc::input(2, 8, 8, 16)
        .filters(32, 3, 3)
        .padding(1, 1);
    let r = new(base.groups(4));
    ensure!(
        matches!(r, Err(Error::InvalidArgument { .. })),
        "groups 4: {r:?}"
    );
    let r = new(Conv2dDesc::input(1, 8, 8, 16).filters(24, 3, 3).groups(16));
    ensure!(
        matches!(r, Err(Error::InvalidArgument { .. })),
        "depthwise K not a multiple of C: {r:?}"
    );
    let r = new(Conv2dDesc::input(1, 4, 4, 8).filters(8, 7, 7));
    ensure!(
        matches!(
            r,
            Err(Error::InvalidDimension {
                value: 4,
                min: 7,
                ..
            })
        ),
        "filter larger than the input: {r:?}"
    );
    let r = new(Conv2dDesc::input(0, 4, 4, 8).filters(8, 3, 3));
    ensure!(
        matches!(r, Err(Error::InvalidDimension { min: 1, .. })),
        "N = 0: {r:?}"
    );
    let r = new(base.stride(0, 1));
    ensure!(
        matches!(r, Err(Error::InvalidDimension { .. })),
        "stride 0: {r:?}"
    );
    let r = new(Conv2dDesc::input(1 << 16, 256, 256, 64).filters(8, 3, 3));
    ensure!(
        matches!(r, Err(Error::TooLarge { .. })),
        "huge input: {r:?}"
    );
    let r = Conv2d::<f32, f32>::new(&stream, base);
    ensure!(
        matches!(r, Err(Error::UnsupportedDtype { dtype: "f32", .. })),
        "f32 input: {r:?}"
    );
    let r = Conv2d::<bf16, bf16>::new(
        &stream,
        base.options(KernelOptions {
            arch: Some(PtxArch::Compute75),
        }),
    );
    ensure!(
        matches!(r, Err(Error::UnsupportedDtype { dtype: "bf16", .. })),
        "bf16 on compute_75: {r:?}"
    );

    let mut plan = new(base).map_err(fail)?;
    let x = DeviceBuffer::<f16>::zeroed(&stream, base.input_len() + 8).map_err(fail)?;
    let w = DeviceBuffer::<f16>::zeroed(&stream, base.filter_len()).map_err(fail)?;
    let bias = DeviceBuffer::<f16>::zeroed(&stream, base.k - 1).map_err(fail)?;
    let mut y = DeviceBuffer::<f16>::zeroed(&stream, base.output_len()).map_err(fail)?;
    let short = x.slice(..base.input_len() - 1).map_err(fail)?;
    let r = plan.launch(&stream, &short, &w, &mut y, Epilogue::new());
    ensure!(
        matches!(r, Err(Error::BufferTooSmall { operand: "x", .. })),
        "short x: {r:?}"
    );
    let r = plan.launch(&stream, &x, &w, &mut y, Epilogue::new().bias(&bias));
    ensure!(
        matches!(
            r,
            Err(Error::BufferTooSmall {
                operand: "bias",
                ..
            })
        ),
        "short bias: {r:?}"
    );
    // β ≠ 0 reads C, which must cover y; β = 0 never reads it.
    let short_c = y.slice(1..).map_err(fail)?;
    let mut with_c = new(base.beta(1.0)).map_err(fail)?;
    let mut y2 = DeviceBuffer::<f16>::zeroed(&stream, base.output_len()).map_err(fail)?;
    let r = with_c.launch(&stream, &x, &w, &mut y2, Epilogue::new().c(&short_c));
    ensure!(
        matches!(r, Err(Error::BufferTooSmall { operand: "C", .. })),
        "short C: {r:?}"
    );
    plan.launch(&stream, &x, &w, &mut y2, Epilogue::new().c(&short_c))
        .map_err(fail)?;
    let mut short_y = y.slice_mut(1..).map_err(fail)?;
    let r = plan.launch(&stream, &x, &w, &mut short_y, Epilogue::new());
    ensure!(
        matches!(r, Err(Error::BufferTooSmall { operand: "y", .. })),
        "short y: {r:?}"
    );
    if matches!(
        plan.path(),
        ConvPath::Sm90 | ConvPath::Sm80 | ConvPath::Sm75
    ) {
        let odd = x.slice(1..).map_err(fail)?;
        let r = plan.launch(&stream, &odd, &w, &mut y, Epilogue::new());
        ensure!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "misaligned x: {r:?}"
        );
    }
    plan.launch(&stream, &x, &w, &mut y, Epilogue::new())
        .map_err(fail)?;
    // The 4-channel gather needs an 8-byte aligned input: 4 elements in is fine, 2 is not.
    let c4 = Conv2dDesc::input(1, 8, 9, 4).filters(8, 2, 2);
    let mut plan = new(c4).map_err(fail)?;
    if plan.path() == ConvPath::Sm80 {
        let x = DeviceBuffer::<f16>::zeroed(&stream, c4.input_len() + 4).map_err(fail)?;
        let w = DeviceBuffer::<f16>::zeroed(&stream, c4.filter_len()).map_err(fail)?;
        let mut y = DeviceBuffer::<f16>::zeroed(&stream, c4.output_len()).map_err(fail)?;
        let r = plan.launch(
            &stream,
            &x.slice(2..).map_err(fail)?,
            &w,
            &mut y,
            Epilogue::new(),
        );
        ensure!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "x 4-byte aligned: {r:?}"
        );
        plan.launch(
            &stream,
            &x.slice(4..).map_err(fail)?,
            &w,
            &mut y,
            Epilogue::new(),
        )
        .map_err(fail)?;
    }
    stream.synchronize().map_err(fail)?;
    Ok(())
}

/// An f32 bias beside f16 and bf16 outputs on every path the device runs: the implicit GEMM
/// (and Hopper's kernel, whose own epilogue then gives way to the shared one), split-K, the
/// 1×1 GEMM, and the direct (depthwise) kernel.
fn f32_bias(device: &Device) -> Result<(), Failed> {
    let cases = [
        case(2, 9, 11, 16, 24, 3, 3).p(1).epi(1),
        case(2, 13, 11, 32, 72, 3, 3).p(1).epi(3),
        case(1, 7, 7, 512, 96, 3, 3).p(1).epi(4),
        Case {
            gemm: Some(true),
            ..case(2, 7, 9, 24, 40, 1, 1)
        }
        .epi(3),
        case(2, 10, 12, 32, 32, 3, 3).p(1).g(32).epi(7),
    ];
    let archs = [
        None,
        Some(PtxArch::Compute80),
        Some(PtxArch::Compute75),
        Some(PtxArch::Compute70),
    ];
    for arch in archs {
        if arch.is_some_and(|a| !a.runs_on(device.compute_capability())) {
            continue;
        }
        for c in cases {
            let (err, path) = run_with::<f16, f16, f32>(device, arch, c, None)?;
            ensure!(err <= bound::<f16>(), "{arch:?} {c:?} on {path:?}: {err:e}");
            if arch != Some(PtxArch::Compute75) {
                let (err, path) = run_with::<bf16, bf16, f32>(device, arch, c, None)?;
                ensure!(
                    err <= bound::<bf16>(),
                    "{arch:?} bf16 {c:?} on {path:?}: {err:e}"
                );
            }
        }
    }
    Ok(())
}
