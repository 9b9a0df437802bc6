//! GEMM on every kernel path the device runs (the compute_70 and compute_75 PTX through the
//! driver's JIT on newer GPUs), against an f64 reference computed with ndarray from the stored
//! (rounded) inputs: odd shapes, all layouts, epilogues, α/β, batches, padded and unaligned
//! leading dimensions. Outputs are poisoned before each launch, and the padding between rows of
//! D must keep its poison.

use crate::{activate, bound, ensure, fail, gpu_test, random};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::ndarray::Array2;
use hikube_gpu::ops::matmul::{
    Activation, ComputeType, Epilogue, GemmPath, Layout, Matmul, MatmulDesc, Route, Tiling,
};
use hikube_gpu::{Device, DeviceBuffer, Error, Float, KernelOptions, PtxArch};
use libtest_mimic::{Failed, Trial};

pub fn trials() -> Vec<Trial> {
    vec![
        gpu_test("matmul::sm80_f16_f32_grid", |d| {
            grid::<f16, f32>(d, PtxArch::Compute80)
        }),
        gpu_test("matmul::sm80_f16_f16_grid", |d| {
            grid::<f16, f16>(d, PtxArch::Compute80)
        }),
        gpu_test("matmul::sm80_bf16_bf16_grid", |d| {
            grid::<bf16, bf16>(d, PtxArch::Compute80)
        }),
        gpu_test("matmul::sm80_bf16_f32_grid", |d| {
            grid::<bf16, f32>(d, PtxArch::Compute80)
        }),
        gpu_test("matmul::sm75_f16_f32_grid", |d| {
            grid::<f16, f32>(d, PtxArch::Compute75)
        }),
        gpu_test("matmul::sm75_f16_f16_grid", |d| {
            grid::<f16, f16>(d, PtxArch::Compute75)
        }),
        gpu_test("matmul::sm70_f16_f32_grid", |d| {
            grid::<f16, f32>(d, PtxArch::Compute70)
        }),
        gpu_test("matmul::acc16_grid_every_mma_sync_path", acc16_grid),
        gpu_test("matmul::acc16_error_grows_with_k", acc16_error_vs_k),
        gpu_test(
            "matmul::acc16_keeps_f32_on_hopper_and_refuses_bf16",
            acc16_elsewhere,
        ),
        gpu_test("matmul::sm90_f16_f32_grid", grid_sm90::<f16, f32>),
        gpu_test("matmul::sm90_f16_f16_grid", grid_sm90::<f16, f16>),
        gpu_test("matmul::sm90_bf16_bf16_grid", |d| {
            grid_sm90::<bf16, bf16>(d)
        }),
        gpu_test("matmul::sm90_bf16_f32_grid", grid_sm90::<bf16, f32>),
        gpu_test(
            "matmul::sm90_is_the_default_for_its_layout",
            sm90_is_the_default,
        ),
        gpu_test("matmul::sm70_f16_bf16_is_refused", sm70_bf16_is_refused),
        gpu_test("matmul::sm80_every_tiling", |d| {
            every_tiling(d, PtxArch::Compute80)
        }),
        gpu_test("matmul::sm75_every_tiling", |d| {
            every_tiling(d, PtxArch::Compute75)
        }),
        gpu_test("matmul::sm90_every_tiling", |d| {
            every_tiling(d, PtxArch::Compute90a)
        }),
        gpu_test(
            "matmul::default_path_and_large_tiles",
            default_path_and_large_tiles,
        ),
        gpu_test(
            "matmul::bad_shapes_are_typed_errors",
            bad_shapes_are_typed_errors,
        ),
    ]
}

#[derive(Clone, Copy, Debug)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    batch: usize,
    a: Layout,
    b: Layout,
    alpha: f32,
    beta: f32,
    bias: bool,
    act: Activation,
    /// Extra elements per row of A and B (leading dimensions); odd values force the general path.
    pad: usize,
    /// Extra elements per row of D and C.
    pad_d: usize,
    /// C given as its own buffer (else, with β ≠ 0, accumulate into D).
    own_c: bool,
    /// B shared by every batch (stride 0).
    broadcast_b: bool,
    /// Hopper path: the plan's `grid_blocks` (None: the default).
    grid: Option<usize>,
    /// The plan's forced split-K factor (None: the heuristic's).
    split_k: Option<usize>,
    /// The accumulation asked for.
    compute: ComputeType,
}

const R: Layout = Layout::RowMajor;
const C: Layout = Layout::ColMajor;

fn case(m: usize, n: usize, k: usize) -> Case {
    Case {
        m,
        n,
        k,
        batch: 1,
        a: R,
        b: R,
        alpha: 1.0,
        beta: 0.0,
        bias: false,
        act: Activation::None,
        pad: 0,
        pad_d: 0,
        own_c: true,
        broadcast_b: false,
        grid: None,
        split_k: None,
        compute: ComputeType::F32,
    }
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for &(m, n, k) in &[
        (1, 1, 1),
        (7, 5, 3),
        (1, 17, 33),
        (31, 67, 129),
        (128, 256, 64),
        (257, 131, 97),
    ] {
        for (a, b) in [(R, R), (R, C), (C, R), (C, C)] {
            v.push(Case {
                a,
                b,
                ..case(m, n, k)
            });
        }
    }
    v.push(Case {
        bias: true,
        act: Activation::Relu,
        ..case(70, 90, 50)
    });
    v.push(Case {
        bias: true,
        act: Activation::Gelu,
        a: C,
        ..case(65, 33, 200)
    });
    v.push(Case {
        alpha: 0.5,
        beta: 0.0,
        ..case(40, 48, 64)
    }); // C full of NaN, must be ignored
    v.push(Case {
        alpha: -1.5,
        beta: 0.75,
        bias: true,
        ..case(99, 101, 103)
    });
    v.push(Case {
        beta: 1.0,
        own_c: false,
        b: C,
        ..case(64, 80, 96)
    }); // accumulate into D
    v.push(Case {
        batch: 3,
        bias: true,
        act: Activation::Relu,
        ..case(33, 40, 72)
    });
    v.push(Case {
        batch: 2,
        broadcast_b: true,
        beta: 0.5,
        a: C,
        ..case(50, 24, 40)
    });
    v.push(Case {
        pad: 8,
        pad_d: 6,
        ..case(100, 72, 88)
    }); // padded, still aligned
    v.push(Case {
        pad: 3,
        pad_d: 1,
        b: C,
        ..case(61, 45, 77)
    }); // unaligned: general kernels
    v.push(Case {
        pad: 1,
        batch: 2,
        a: C,
        beta: 0.25,
        ..case(19, 23, 29)
    });
    v.push(case(64, 64, 4096)); // few tiles, long K: split-K
    v.push(Case {
        bias: true,
        act: Activation::Gelu,
        beta: 0.5,
        ..case(96, 600, 1536)
    });
    v
}

/// Runs one case; returns the relative error and the split-K factor, or a failure.
fn run<I: Float, O: Float>(
    device: &Device,
    arch: PtxArch,
    c: Case,
) -> Result<(f64, usize), Failed> {
    run_tiled::<I, O>(device, arch, c, None)
}

fn run_tiled<I: Float, O: Float>(
    device: &Device,
    arch: PtxArch,
    c: Case,
    tiling: Option<Tiling>,
) -> Result<(f64, usize), Failed> {
    let stream = device.default_stream();
    let mut rng = rand::rng();
    let (ar, ac) = if c.a == R { (c.m, c.k) } else { (c.k, c.m) };
    let (br, bc) = if c.b == R { (c.k, c.n) } else { (c.n, c.k) };
    let (lda, ldb, ldd) = (ac + c.pad, bc + c.pad, c.n + c.pad_d);
    let (sa, sb, sd) = (
        ar * lda,
        if c.broadcast_b { 0 } else { br * ldb },
        c.m * ldd,
    );
    let b_batches = if c.broadcast_b { 1 } else { c.batch };
    let a_h: Vec<I> = random(sa * c.batch, &mut rng);
    let b_h: Vec<I> = random(br * ldb * b_batches, &mut rng);
    let bias_h: Vec<O> = random(c.n, &mut rng);
    // C: random when read; NaN when β = 0 (it must not be read).
    let c_h: Vec<O> = if c.beta == 0.0 {
        vec![O::from_f32(f32::NAN); sd * c.batch]
    } else {
        random(sd * c.batch, &mut rng)
    };
    let poison = O::from_f32(f32::NAN);
    let d_init: Vec<O> = if c.own_c {
        vec![poison; sd * c.batch]
    } else {
        c_h.clone()
    };

    let a = DeviceBuffer::from_slice(&stream, &a_h).map_err(fail)?;
    let b = DeviceBuffer::from_slice(&stream, &b_h).map_err(fail)?;
    let cbuf = DeviceBuffer::from_slice(&stream, &c_h).map_err(fail)?;
    let bias = DeviceBuffer::from_slice(&stream, &bias_h).map_err(fail)?;
    let mut d = DeviceBuffer::from_slice(&stream, &d_init).map_err(fail)?;

    let desc = MatmulDesc::new(c.m, c.n, c.k)
        .a_layout(c.a)
        .b_layout(c.b)
        .lda(lda)
        .ldb(ldb)
        .ldc(ldd)
        .ldd(ldd)
        .batch(c.batch)
        .stride_a(sa)
        .stride_b(sb)
        .stride_c(sd)
        .stride_d(sd)
        .alpha(c.alpha)
        .beta(c.beta)
        .activation(c.act)
        .compute(c.compute)
        .options(KernelOptions { arch: Some(arch) });
    let desc = match tiling {
        Some(t) => desc.tiling(t),
        None => desc,
    };
    let desc = match c.grid {
        Some(g) => desc.grid_blocks(g),
        None => desc,
    };
    let desc = match c.split_k {
        Some(s) => desc.split_k(s),
        None => desc,
    };
    let plan = Matmul::<I, O>::new(&stream, desc).map_err(fail)?;
    let want = expected_path(arch, (lda, ldb), c.batch, (sa, sb));
    ensure!(
        plan.path() == want,
        "path {:?} for {arch}, want {want:?}",
        plan.path()
    );
    let mut epi = Epilogue::new();
    if c.own_c {
        epi = epi.c(&cbuf);
    }
    if c.bias {
        epi = epi.bias(&bias);
    }
    plan.launch(&stream, &a, &b, &mut d, epi).map_err(fail)?;
    let out = d.to_vec(&stream).map_err(fail)?;
    if let Some(Route::Gemm { accumulation, .. }) = plan.last_route() {
        // The forced target's path decides: a Hopper plan accumulates in f32 in every kernel.
        let want = GemmPath::for_arch(arch).accumulation(c.compute);
        ensure!(
            accumulation == want,
            "{arch} {c:?}: accumulated in {accumulation:?}, want {want:?}"
        );
    }

    let f = |x: &I| f64::from(x.to_f32());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for bi in 0..c.batch {
        let am = Array2::from_shape_fn((c.m, c.k), |(i, kk)| {
            f(&a_h[bi * sa + if c.a == R { i * lda + kk } else { kk * lda + i }])
        });
        let bm = Array2::from_shape_fn((c.k, c.n), |(kk, j)| {
            f(&b_h[bi * sb + if c.b == R { kk * ldb + j } else { j * ldb + kk }])
        });
        let prod = am.dot(&bm);
        for i in 0..c.m {
            for j in 0..ldd {
                let idx = bi * sd + i * ldd + j;
                let got = out[idx];
                if j >= c.n {
                    ensure!(
                        bytemuck::bytes_of(&got) == bytemuck::bytes_of(&d_init[idx]),
                        "batch {bi} row {i} col {j}: the padding past N was written"
                    );
                    continue;
                }
                let mut v = f64::from(c.alpha) * prod[[i, j]];
                if c.beta != 0.0 {
                    v += f64::from(c.beta) * f64::from(c_h[idx].to_f32());
                }
                if c.bias {
                    v += f64::from(bias_h[j].to_f32());
                }
                v = activate(c.act, v);
                let g = f64::from(got.to_f32());
                ensure!(
                    g.is_finite(),
                    "{c:?}: D[{bi}][{i}][{j}] = {g} (unwritten or NaN from C)"
                );
                num += (g - v) * (g - v);
                den += v * v;
            }
        }
    }
    // ‖out − ref‖ / ‖ref‖, with the reference's RMS floored at 1e-3: a lone product of two
    // random numbers (the 1×1×1 cases) can land below f16's smallest normal, 6.1e-5, where f16
    // keeps only an absolute 6e-8, and the relative error of that one element says nothing.
    let count = (c.batch * c.m * c.n) as f64;
    let err = (num / den.max(count * 1e-6)).sqrt();
    Ok((err, plan.tiling().map_or(0, |(_, splits)| splits)))
}

/// The path a plan forced onto `arch` reports: the path's own, but where the description rules
/// the fast kernel out (leading dimensions of A and B, or with several batches their batch
/// strides, not multiples of 8) the general kernel's, which is compute_80's on the Hopper path.
pub fn expected_path(
    arch: PtxArch,
    (lda, ldb): (usize, usize),
    batch: usize,
    (sa, sb): (usize, usize),
) -> GemmPath {
    let fast = lda % 8 == 0 && ldb % 8 == 0 && (batch == 1 || (sa % 8 == 0 && sb % 8 == 0));
    match GemmPath::for_arch(arch) {
        GemmPath::Sm90 if !fast => GemmPath::Sm80,
        path => path,
    }
}

fn grid<I: Float, O: Float>(device: &Device, arch: PtxArch) -> Result<(), Failed> {
    if !arch.runs_on(device.compute_capability()) {
        return Err(format!("{arch} cannot run on this device").into());
    }
    let mut worst = 0.0f64;
    let mut split_seen = false;
    for c in cases() {
        let (err, splits) = run::<I, O>(device, arch, c)?;
        ensure!(
            err <= bound::<O>(),
            "{arch} {}->{} {c:?}: relative error {err:e}",
            I::SUFFIX,
            O::SUFFIX
        );
        worst = worst.max(err);
        split_seen |= splits > 1;
    }
    ensure!(split_seen, "no case exercised split-K");
    eprintln!(
        "{arch} {}->{}: {} cases, worst relative error {worst:.2e}",
        I::SUFFIX,
        O::SUFFIX,
        cases().len()
    );
    Ok(())
}

/// The relative-error bound of f16 accumulation over K products: the accumulator is rounded to
/// f16 (unit roundoff 2^-11) after every tensor instruction, K/16 or more times, and these
/// errors add up like a random walk over partial sums that grow as √K, about 2^-11·√(K/96) in
/// all; 2^-11·√K leaves a factor of ten for that estimate, plus the output's rounding.
fn acc16_bound<O: Float>(k: usize) -> f64 {
    (k as f64).sqrt() / 2048.0 + bound::<O>()
}

/// f16 accumulation on the three mma.sync paths, every case of the grid (odd shapes, layouts,
/// epilogues, batches, general kernels, split-K), f16 and f32 outputs.
fn acc16_grid(device: &Device) -> Result<(), Failed> {
    for arch in [PtxArch::Compute80, PtxArch::Compute75, PtxArch::Compute70] {
        let mut worst = 0.0f64;
        for c in cases() {
            let c = Case {
                compute: ComputeType::F16,
                ..c
            };
            let (e16, _) = run::<f16, f16>(device, arch, c)?;
            let (e32, _) = run::<f16, f32>(device, arch, c)?;
            ensure!(
                e16 <= acc16_bound::<f16>(c.k) && e32 <= acc16_bound::<f32>(c.k),
                "{arch} f16 accumulation {c:?}: relative error {e16:e} (f16 out), {e32:e} (f32 out)"
            );
            worst = worst.max(e16).max(e32);
        }
        eprintln!("{arch} f16 accumulation: worst relative error {worst:.2e}");
    }
    Ok(())
}

/// The accuracy cost of f16 accumulation against K (f32 output, so that only the accumulation
/// rounds): within the bound, and well above f32 accumulation's from K = 1024 on, which shows
/// the f16 accumulators really ran.
fn acc16_error_vs_k(device: &Device) -> Result<(), Failed> {
    for arch in [PtxArch::Compute80, PtxArch::Compute75, PtxArch::Compute70] {
        let mut line = format!("{arch} relative error vs K (f16 acc / f32 acc):");
        for k in [64, 256, 1024, 4096, 16384] {
            let c = case(128, 128, k);
            let (e32, _) = run::<f16, f32>(device, arch, c)?;
            let c16 = Case {
                compute: ComputeType::F16,
                split_k: Some(1),
                ..c
            };
            let (e16, _) = run::<f16, f32>(device, arch, c16)?;
            line += &format!(" K={k}: {e16:.2e} / {e32:.2e};");
            ensure!(
                e16 <= acc16_bound::<f32>(k),
                "{arch} K = {k}: f16 accumulation error {e16:e}"
            );
            ensure!(
                k < 1024 || e16 > 10.0 * e32,
                "{arch} K = {k}: f16 accumulation error {e16:e} is not above f32's {e32:e}: \
                 did the f16 accumulators run?"
            );
        }
        eprintln!("{line}");
    }
    Ok(())
}

/// On the Hopper path f16 accumulation is a permission the plan does not use (wgmma runs f32
/// accumulation at the same rate): the route says F32 and the result is f32-accurate. bf16
/// inputs cannot ask for it.
fn acc16_elsewhere(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    if PtxArch::Compute90a.runs_on(device.compute_capability()) {
        let c = Case {
            compute: ComputeType::F16,
            ..case(1024, 1024, 4096)
        };
        let (err, _) = run::<f16, f32>(device, PtxArch::Compute90a, c)?;
        ensure!(err <= bound::<f32>(), "Hopper path asked for F16: {err:e}");
    }
    for arch in [None, Some(PtxArch::Compute80)] {
        let desc = MatmulDesc::new(64, 64, 64)
            .compute(ComputeType::F16)
            .options(KernelOptions { arch });
        match Matmul::<bf16, f32>::new(&stream, desc) {
            Err(Error::InvalidArgument { .. }) => {}
            other => return Err(format!("bf16 with F16 accumulation ({arch:?}): {other:?}").into()),
        }
    }
    Ok(())
}

/// Every tile configuration of a path (each can be forced), on shapes that leave partial tiles
/// in every dimension, all layouts, an epilogue and a batch.
fn every_tiling(device: &Device, arch: PtxArch) -> Result<(), Failed> {
    let path = GemmPath::for_arch(arch);
    let shapes = [
        Case {
            a: R,
            b: R,
            ..case(300, 520, 200)
        },
        Case {
            a: R,
            b: C,
            bias: true,
            act: Activation::Relu,
            ..case(129, 257, 65)
        },
        Case {
            a: C,
            b: R,
            beta: 0.5,
            batch: 2,
            ..case(140, 270, 96)
        },
        Case {
            a: C,
            b: C,
            alpha: 2.0,
            ..case(255, 100, 130)
        },
    ];
    for t in Matmul::<f16, f32>::tilings(path) {
        for c in shapes {
            let (err, _) = run_tiled::<f16, f32>(device, arch, c, Some(t))?;
            ensure!(err <= 1e-4, "{arch} {t} f16->f32 {c:?}: {err:e}");
            if path.supports_bf16() {
                let (err, _) = run_tiled::<bf16, bf16>(device, arch, c, Some(t))?;
                ensure!(err <= 1e-2, "{arch} {t} bf16->bf16 {c:?}: {err:e}");
            }
        }
    }
    let bogus = Tiling {
        bm: 96,
        bn: 96,
        bk: 32,
        stages: 2,
    };
    let stream = device.default_stream();
    let desc = MatmulDesc::new(8, 8, 8)
        .options(KernelOptions { arch: Some(arch) })
        .tiling(bogus);
    match Matmul::<f16, f32>::new(&stream, desc) {
        Err(Error::InvalidArgument { .. }) => Ok(()),
        other => Err(format!("unknown tiling: {other:?}").into()),
    }
}

/// The Hopper path, every layout: the grid's cases (but B broadcast with stride 0, which TMA
/// cannot express), plus shapes with partial tiles in every dimension, batches, and the large
/// tile itself. Unaligned cases take the compute_80 general kernels through the same plan.
fn grid_sm90<I: Float, O: Float>(device: &Device) -> Result<(), Failed> {
    let arch = PtxArch::Compute90a;
    if !arch.runs_on(device.compute_capability()) {
        return Err(format!("{arch} cannot run on this device").into());
    }
    let mut list: Vec<Case> = cases().into_iter().filter(|c| !c.broadcast_b).collect();
    for (a, b) in [(R, R), (R, C), (C, R), (C, C)] {
        list.extend([
            Case {
                a,
                b,
                ..case(128, 256, 64)
            },
            Case {
                a,
                b,
                ..case(129, 257, 65)
            },
            Case {
                a,
                b,
                ..case(300, 520, 1000)
            },
            Case {
                a,
                b,
                batch: 3,
                bias: true,
                act: Activation::Gelu,
                ..case(200, 300, 136)
            },
            Case {
                a,
                b,
                beta: 0.5,
                alpha: 2.0,
                ..case(1000, 1000, 512)
            },
            Case {
                a,
                b,
                beta: 1.0,
                own_c: false,
                pad: 8,
                pad_d: 4,
                ..case(256, 512, 2048)
            },
            Case {
                a,
                b,
                pad: 3,
                ..case(77, 301, 99)
            },
        ]);
    }
    // More tiles than SMs: the default persistent grid walks two tiles in some blocks (rows of D
    // allow the 16-byte epilogue).
    list.push(Case {
        b: C,
        bias: true,
        act: Activation::Gelu,
        ..case(2000, 2096, 136)
    });
    // The 16-byte epilogue with C, bias, GELU and batches; N = 1001 (padded rows of 1008): the
    // last eight columns of each row fall back to pairs.
    list.push(Case {
        batch: 2,
        beta: 1.0,
        bias: true,
        act: Activation::Gelu,
        pad_d: 7,
        ..case(300, 1001, 200)
    });
    // The packed epilogue (f16/bf16 out, no C) with bias, ReLU and batches at N = 1001: the last
    // row segment of each row is stored element by element.
    list.push(Case {
        batch: 2,
        bias: true,
        act: Activation::Relu,
        alpha: 1.5,
        pad_d: 7,
        ..case(300, 1001, 200)
    });
    // Every case five ways: the heuristic's tiling with the default grid (persistent blocks, one
    // per SM), 3 blocks (each walks several tiles, batches and split-K slices, its stage ring
    // running on across them) and a block per unit; then each of the two tilings forced, with
    // the default grid and with 3 blocks.
    let tilings = Matmul::<I, O>::tilings(GemmPath::Sm90);
    let (wide, narrow) = (tilings[0], tilings[1]);
    let variants = [
        (None, None),
        (Some(3), None),
        (Some(usize::MAX), None),
        (None, Some(narrow)),
        (Some(3), Some(wide)),
    ];
    let list: Vec<(Case, Option<Tiling>)> = list
        .into_iter()
        .flat_map(|c| variants.map(|(grid, t)| (Case { grid, ..c }, t)))
        .collect();
    let mut worst = 0.0f64;
    for (c, tiling) in &list {
        let (err, _) = run_tiled::<I, O>(device, arch, *c, *tiling)?;
        ensure!(
            err <= bound::<O>(),
            "{arch} {}->{} {c:?} {tiling:?}: relative error {err:e}",
            I::SUFFIX,
            O::SUFFIX
        );
        worst = worst.max(err);
    }
    eprintln!(
        "{arch} {}->{}: {} cases, worst relative error {worst:.2e}",
        I::SUFFIX,
        O::SUFFIX,
        list.len()
    );
    // Split-K, which the heuristic does not choose on this path, forced (two and three slices
    // through the workspace) on both tilings: every layout, partial tiles, batches, C, bias and
    // GELU, rows that do not allow 16-byte access (N = 1001), and a long K.
    let mut split = Vec::new();
    for (a, b) in [(R, R), (R, C), (C, R), (C, C)] {
        split.push(Case {
            a,
            b,
            ..case(129, 257, 1000)
        });
    }
    split.extend([
        Case {
            batch: 2,
            bias: true,
            act: Activation::Gelu,
            beta: 0.5,
            alpha: 2.0,
            ..case(200, 300, 700)
        },
        Case {
            bias: true,
            pad_d: 7,
            b: C,
            ..case(70, 1001, 600)
        },
        case(128, 1024, 4096),
    ]);
    for (i, c) in split.into_iter().enumerate() {
        let want = 2 + i % 2;
        let c = Case {
            split_k: Some(want),
            grid: [None, Some(3)][i % 2],
            ..c
        };
        let tiling = [narrow, wide][(i / 2) % 2];
        let (err, splits) = run_tiled::<I, O>(device, arch, c, Some(tiling))?;
        ensure!(splits == want, "{c:?} {tiling}: {splits} slices");
        ensure!(
            err <= bound::<O>(),
            "{arch} {}->{} split-K {c:?} {tiling}: relative error {err:e}",
            I::SUFFIX,
            O::SUFFIX
        );
    }
    // A broadcast operand (batch stride 0) is refused when the path is forced.
    let stream = device.default_stream();
    let desc = MatmulDesc::new(8, 8, 8)
        .batch(2)
        .stride_b(0)
        .options(KernelOptions { arch: Some(arch) });
    match Matmul::<I, O>::new(&stream, desc) {
        Err(Error::InvalidArgument { .. }) => Ok(()),
        other => Err(format!("broadcast B forced onto compute_90a: {other:?}").into()),
    }
}

fn sm90_is_the_default(device: &Device) -> Result<(), Failed> {
    if device.compute_capability() != hikube_gpu::ComputeCapability::new(9, 0) {
        return Ok(());
    }
    let stream = device.default_stream();
    let path = |d: MatmulDesc| Matmul::<f16, f16>::new(&stream, d).map(|p| p.path());
    for (a, b) in [(R, R), (R, C), (C, R), (C, C)] {
        let d = MatmulDesc::new(4096, 4096, 4096).a_layout(a).b_layout(b);
        ensure!(path(d).map_err(fail)? == GemmPath::Sm90, "{a:?} {b:?}");
    }
    // Few output tiles but a long K: the Hopper path's 128x128 tiles, without split-K (its
    // main loop is bandwidth-bound there; split-K is still tested, forced, in grid_sm90).
    let skinny =
        Matmul::<f16, f16>::new(&stream, MatmulDesc::new(128, 4096, 4096)).map_err(fail)?;
    ensure!(
        skinny.path() == GemmPath::Sm90
            && skinny
                .tiling()
                .is_some_and(|(t, splits)| t.bn == 128 && splits == 1),
        "skinny: {skinny:?}"
    );
    // Few tiles and a short K: the mma.sync path's small tiles.
    let small =
        Matmul::<f16, f16>::new(&stream, MatmulDesc::new(1024, 1024, 1024)).map_err(fail)?;
    ensure!(small.path() == GemmPath::Sm80, "small: {small:?}");
    // Large: 128x256 tiles, a persistent block per SM.
    let large =
        Matmul::<f16, f16>::new(&stream, MatmulDesc::new(4096, 4096, 4096)).map_err(fail)?;
    ensure!(
        large.tiling().is_some_and(|(t, _)| t.bn == 256)
            && large.grid_blocks() == device.properties().sm_count as usize,
        "large: {large:?}"
    );
    let broadcast = MatmulDesc::new(4096, 4096, 4096).batch(2).stride_b(0);
    ensure!(
        path(broadcast).map_err(fail)? == GemmPath::Sm80,
        "broadcast"
    );
    Ok(())
}

fn sm70_bf16_is_refused(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    for arch in [PtxArch::Compute70, PtxArch::Compute75] {
        let desc = MatmulDesc::new(8, 8, 8).options(KernelOptions { arch: Some(arch) });
        match Matmul::<bf16, f32>::new(&stream, desc) {
            Err(Error::UnsupportedDtype { dtype: "bf16", .. }) => {}
            other => return Err(format!("bf16 on {arch}: {other:?}").into()),
        }
    }
    Ok(())
}

fn default_path_and_large_tiles(device: &Device) -> Result<(), Failed> {
    let cc = device.compute_capability();
    let (m, n, k) = (2048, 2048, 512); // 128 tiles of 128x256: enough for the Hopper path
    let stream = device.default_stream();
    let plan = Matmul::<f16, f32>::new(&stream, MatmulDesc::new(m, n, k)).map_err(fail)?;
    if cc.major >= 8 {
        let want = if cc == hikube_gpu::ComputeCapability::new(9, 0) {
            GemmPath::Sm90
        } else {
            GemmPath::Sm80
        };
        ensure!(
            plan.path() == want,
            "default path {:?} on {cc}",
            plan.path()
        );
    }
    // The largest tile on a big square problem, checked for correctness too.
    let (err, _) = run::<f16, f32>(device, plan.path().arch(), case(m, n, k))?;
    ensure!(err <= 1e-4, "2048x2048x512: {err:e}");
    let (err, _) = run::<bf16, bf16>(
        device,
        PtxArch::Compute80,
        Case {
            a: C,
            b: C,
            ..case(777, 1031, 515)
        },
    )?;
    ensure!(err <= 1e-2, "777x1031x515 bf16: {err:e}");
    Ok(())
}

fn bad_shapes_are_typed_errors(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    match Matmul::<f16, f32>::new(&stream, MatmulDesc::new(1 << 31, 4, 4)) {
        Err(Error::TooLarge { .. }) => {}
        other => return Err(format!("M = 2^31: {other:?}").into()),
    }
    let mixed = MatmulDesc::new(4, 4, 4).d_layout(C).c_layout(R).beta(1.0);
    match Matmul::<f16, f32>::new(&stream, mixed) {
        Err(Error::InvalidArgument { .. }) => {}
        other => return Err(format!("C and D in mixed layouts: {other:?}").into()),
    }
    match Matmul::<f16, f32>::new(&stream, MatmulDesc::new(4, 4, 16).lda(8)) {
        Err(Error::InvalidDimension {
            value: 8, min: 16, ..
        }) => {}
        other => return Err(format!("lda < K: {other:?}").into()),
    }
    match Matmul::<f16, f32>::new(&stream, MatmulDesc::new(4, 4, 4).batch(2).stride_d(3)) {
        Err(Error::InvalidDimension { .. }) => {}
        other => return Err(format!("overlapping batches of D: {other:?}").into()),
    }
    let plan = Matmul::<f16, f32>::new(&stream, MatmulDesc::new(16, 8, 32)).map_err(fail)?;
    let a = DeviceBuffer::<f16>::zeroed(&stream, 16 * 32).map_err(fail)?;
    let b_short = DeviceBuffer::<f16>::zeroed(&stream, 32 * 8 - 1).map_err(fail)?;
    let b = DeviceBuffer::<f16>::zeroed(&stream, 32 * 8).map_err(fail)?;
    let mut d = DeviceBuffer::<f32>::zeroed(&stream, 16 * 8).map_err(fail)?;
    match plan.launch(&stream, &a, &b_short, &mut d, Epilogue::new()) {
        Err(Error::BufferTooSmall {
            operand: "B",
            required: 256,
            actual: 255,
        }) => {}
        other => return Err(format!("short B: {other:?}").into()),
    }
    let short_bias = DeviceBuffer::<f32>::zeroed(&stream, 7).map_err(fail)?;
    match plan.launch(&stream, &a, &b, &mut d, Epilogue::new().bias(&short_bias)) {
        Err(Error::BufferTooSmall {
            operand: "bias",
            required: 8,
            actual: 7,
        }) => {}
        other => return Err(format!("short bias: {other:?}").into()),
    }
    let mut d_short = DeviceBuffer::<f32>::zeroed(&stream, 16 * 8 - 1).map_err(fail)?;
    match plan.launch(&stream, &a, &b, &mut d_short, Epilogue::new()) {
        Err(Error::BufferTooSmall { operand: "D", .. }) => {}
        other => return Err(format!("short D: {other:?}").into()),
    }
    Ok(())
}
