//! FP8 GEMM (`ScaledMatmul`) against an f64 reference of the quantized inputs: both encodings,
//! every output type, odd shapes (1, primes, not multiples of the tile), batches, a column-major
//! D, the epilogue (α, β·C, bias, activations), scales ≠ 1 read from device memory, amax, poisoned
//! outputs, and the refusals as typed errors. On a GPU without the FP8 path the plan must be
//! `Error::UnsupportedDtype`.

use crate::{activate, bound, ensure, fail, gpu_test};
use hikube_gpu::fp8::{self, Fp8, F8E4M3, F8E5M2};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::ndarray::{Array2, ArrayView2};
use hikube_gpu::ops::matmul::{
    scale_on_device, Activation, ComputeType, Epilogue, Layout, MatmulDesc, ScaledMatmul,
    ScaledOptions, Scales,
};
use hikube_gpu::{ComputeCapability, Device, DeviceBuffer, Error, Float, KernelOptions, PtxArch};
use libtest_mimic::{Failed, Trial};
use rand::{Rng, SeedableRng};

/// The default (two-level) accumulation, and the tensor cores' own.
const EXACT: ScaledOptions = ScaledOptions::new();
const FAST: ScaledOptions = ScaledOptions::new().fast_accum(true);

pub fn trials() -> Vec<Trial> {
    let trials = vec![
        gpu_test("fp8::e4m3_f16_grid", |d| {
            grid::<F8E4M3, f16>(d, None, EXACT)
        }),
        gpu_test("fp8::e4m3_bf16_grid", |d| {
            grid::<F8E4M3, bf16>(d, None, EXACT)
        }),
        gpu_test("fp8::e4m3_f32_grid", |d| {
            grid::<F8E4M3, f32>(d, None, EXACT)
        }),
        gpu_test("fp8::e5m2_f16_grid", |d| {
            grid::<F8E5M2, f16>(d, None, EXACT)
        }),
        gpu_test("fp8::e5m2_f32_grid", |d| {
            grid::<F8E5M2, f32>(d, None, EXACT)
        }),
        gpu_test("fp8::fast_accum_e4m3_f16_grid", |d| {
            grid::<F8E4M3, f16>(d, None, FAST)
        }),
        gpu_test("fp8::fast_accum_e5m2_f32_grid", |d| {
            grid::<F8E5M2, f32>(d, None, FAST)
        }),
        gpu_test("fp8::sm89_e4m3_f16_grid", |d| {
            grid::<F8E4M3, f16>(d, Some(PtxArch::Compute89), EXACT)
        }),
        gpu_test("fp8::sm89_e5m2_f32_grid", |d| {
            grid::<F8E5M2, f32>(d, Some(PtxArch::Compute89), FAST)
        }),
        gpu_test("fp8::every_layout", |d| layouts(d, None)),
        gpu_test("fp8::sm89_every_layout", |d| {
            layouts(d, Some(PtxArch::Compute89))
        }),
        gpu_test("fp8::scales_are_read_when_the_kernel_runs", new_scales),
        gpu_test("fp8::error_against_k", error_against_k),
        gpu_test("fp8::bad_inputs_are_typed_errors", refusals),
    ];
    #[cfg(feature = "cublas")]
    let trials = {
        let mut trials = trials;
        trials.push(gpu_test("fp8::cublaslt_reference_agrees", cublaslt_agrees));
        trials
    };
    trials
}

/// The benchmarks' cuBLASLt FP8 reference computes what `ScaledMatmul` does: the same e4m3
/// codes and scales, f16 out, both accumulations, within two f16 roundings of each other.
#[cfg(feature = "cublas")]
fn cublaslt_agrees(device: &Device) -> Result<(), Failed> {
    if !has_fp8(device, None)? {
        return Ok(());
    }
    let stream = device.default_stream();
    let mut lt = match hikube_gpu::reference::CublasLtFp8::new(&stream) {
        Ok(lt) => lt,
        Err(e) => return Err(Failed::from(format!("cuBLASLt: {e}"))),
    };
    let (m, n, k) = (200, 136, 512);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let (qa, _, sa) = quantized::<F8E4M3>(m * k, 3.0, &mut rng)?;
    let (qb, _, sb) = quantized::<F8E4M3>(n * k, 0.5, &mut rng)?;
    let a = DeviceBuffer::from_slice(&stream, &qa).map_err(fail)?;
    let b = DeviceBuffer::from_slice(&stream, &qb).map_err(fail)?;
    let sa = scale_on_device(&stream, sa).map_err(fail)?;
    let sb = scale_on_device(&stream, sb).map_err(fail)?;
    let desc = MatmulDesc::new(m, n, k).b_layout(Layout::ColMajor);
    for options in [EXACT, FAST] {
        let mm = ScaledMatmul::<F8E4M3, f16>::with_options(&stream, desc.clone(), options)
            .map_err(fail)?;
        let mut ours = DeviceBuffer::<f16>::alloc(&stream, m * n).map_err(fail)?;
        mm.launch(
            &stream,
            &a,
            &b,
            &mut ours,
            Scales::new(&sa, &sb),
            Epilogue::new(),
        )
        .map_err(fail)?;
        let mut theirs = DeviceBuffer::from_slice(&stream, &vec![f16::NAN; m * n]).map_err(fail)?;
        lt.gemm(
            &stream,
            &a,
            &b,
            &mut theirs,
            (m, n, k),
            (&sa, &sb),
            options.fast_accum,
        )
        .map_err(fail)?;
        let to_f64 = |v: Vec<f16>| {
            v.into_iter()
                .map(|x| f64::from(x.to_f32()))
                .collect::<Vec<_>>()
        };
        let ours = to_f64(ours.to_vec(&stream).map_err(fail)?);
        let theirs = to_f64(theirs.to_vec(&stream).map_err(fail)?);
        let diff = rel_error(&ours, &theirs);
        eprintln!("{options:?}: ours against cuBLASLt {diff:.2e}");
        ensure!(
            diff <= 2.0 * fp8_bound::<f16>(PtxArch::Compute90a, options),
            "{diff:.3e}"
        );
    }
    // What the reference refuses before it calls cuBLASLt: a short D, K not a multiple of 16,
    // a dimension past 32 bits (before the lengths, whose products it would overflow).
    let mut short = DeviceBuffer::<f16>::alloc(&stream, m * n - 1).map_err(fail)?;
    let refused = [
        lt.gemm(&stream, &a, &b, &mut short, (m, n, k), (&sa, &sb), false),
        lt.gemm(&stream, &a, &b, &mut short, (m, n, 8), (&sa, &sb), false),
        lt.gemm(
            &stream,
            &a,
            &b,
            &mut short,
            (1 << 31, n, k),
            (&sa, &sb),
            false,
        ),
    ];
    ensure!(
        matches!(refused[0], Err(Error::BufferTooSmall { operand: "D", .. }))
            && matches!(refused[1], Err(Error::InvalidArgument { .. }))
            && matches!(refused[2], Err(Error::InvalidArgument { .. })),
        "{refused:?}"
    );
    Ok(())
}

/// Whether the device has the FP8 path (`forced`, or its own); if not, checks that a plan says so.
fn has_fp8(device: &Device, forced: Option<PtxArch>) -> Result<bool, Failed> {
    let cc = device.compute_capability();
    let runs = match forced {
        Some(arch) => arch.runs_on(cc),
        None => cc >= ComputeCapability::new(8, 9),
    };
    if runs {
        return Ok(true);
    }
    let stream = device.default_stream();
    let desc = MatmulDesc::new(64, 64, 64)
        .b_layout(Layout::ColMajor)
        .options(KernelOptions { arch: forced });
    match ScaledMatmul::<F8E4M3, f16>::new(&stream, desc) {
        Err(Error::UnsupportedDtype { .. }) => Ok(false),
        other => Err(Failed::from(format!(
            "expected UnsupportedDtype, got {other:?}"
        ))),
    }
}

#[derive(Clone, Copy, Debug)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    batch: usize,
    /// A's and B's layouts as the caller stores them (the kernels read A row-major and B
    /// column-major; the others go through the plan's K-major copies).
    a_layout: Layout,
    b_layout: Layout,
    d_layout: Layout,
    act: Activation,
    alpha: f32,
    beta: f32,
    bias: bool,
}

const fn case(m: usize, n: usize, k: usize) -> Case {
    Case {
        m,
        n,
        k,
        batch: 1,
        a_layout: Layout::RowMajor,
        b_layout: Layout::ColMajor,
        d_layout: Layout::RowMajor,
        act: Activation::None,
        alpha: 1.0,
        beta: 0.0,
        bias: false,
    }
}

const CASES: [Case; 8] = [
    case(1, 16, 16),
    case(7, 5, 48),
    Case {
        act: Activation::Relu,
        bias: true,
        ..case(131, 257, 1024)
    },
    Case {
        batch: 3,
        alpha: 0.5,
        ..case(257, 131, 272)
    },
    Case {
        d_layout: Layout::ColMajor,
        ..case(200, 130, 512)
    },
    Case {
        beta: 0.75,
        act: Activation::Gelu,
        bias: true,
        ..case(300, 384, 160)
    },
    case(1000, 1000, 2048),
    case(2048, 2048, 4096),
];

/// Random values in [-r, r), quantized with the scale that maps their amax onto the format's
/// largest value: (the FP8 codes, their values as f64 times the scale, the scale).
fn quantized<T: Fp8>(
    n: usize,
    r: f32,
    rng: &mut impl Rng,
) -> Result<(Vec<T>, Vec<f64>, f32), Failed> {
    let x = Array2::from_shape_fn((1, n), |_| rng.random_range(-r..r));
    let scale = fp8::scale_for(fp8::amax(x.view()), T::FORMAT).map_err(fail)?;
    let q = fp8::quantize::<T, _>(x.view(), scale).map_err(fail)?;
    let codes: Vec<T> = q.iter().copied().collect();
    let values = codes
        .iter()
        .map(|v| f64::from(v.to_f32()) * f64::from(scale))
        .collect();
    Ok((codes, values, scale))
}

/// `codes` (batch × rows × K, K contiguous) as stored: as is, or each batch transposed to
/// K × rows (`k_outer`).
fn stored<T: Copy>(codes: &[T], (batch, rows, k): (usize, usize, usize), k_outer: bool) -> Vec<T> {
    if !k_outer {
        return codes.to_vec();
    }
    let mut out = Vec::with_capacity(codes.len());
    for bt in 0..batch {
        let plane = &codes[bt * rows * k..][..rows * k];
        for kk in 0..k {
            out.extend((0..rows).map(|r| plane[r * k + kk]));
        }
    }
    out
}

/// ‖out − want‖ / ‖want‖ (NaN anywhere fails every comparison).
fn rel_error(out: &[f64], want: &[f64]) -> f64 {
    let num: f64 = out.iter().zip(want).map(|(o, w)| (o - w).powi(2)).sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

/// Runs `c` and returns (relative error, amax error relative to the reference's amax).
fn run_case<T: Fp8, O: Float>(
    device: &Device,
    c: Case,
    seed: u64,
    (forced, options): (Option<PtxArch>, ScaledOptions),
) -> Result<(f64, f64, PtxArch), Failed> {
    let stream = device.default_stream();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (m, n, k, batch) = (c.m, c.n, c.k, c.batch);
    // A: batch × M × K row-major; B: batch × N × K (column-major K × N).
    let (qa, va, sa) = quantized::<T>(batch * m * k, 3.0, &mut rng)?;
    let (qb, vb, sb) = quantized::<T>(batch * n * k, 0.5, &mut rng)?;
    let ch: Vec<O> = (0..batch * m * n)
        .map(|_| O::from_f32(rng.random_range(-1.0f32..1.0)))
        .collect();
    let biash: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let desc = MatmulDesc::new(m, n, k)
        .a_layout(c.a_layout)
        .b_layout(c.b_layout)
        .d_layout(c.d_layout)
        .batch(batch)
        .alpha(c.alpha)
        .beta(c.beta)
        .activation(c.act)
        .options(KernelOptions { arch: forced });
    let mm = ScaledMatmul::<T, O>::with_options(&stream, desc, options).map_err(fail)?;
    if let Some(arch) = forced {
        ensure!(mm.path() == arch, "{:?} for {arch}", mm.path());
    }
    let hopper = mm.path() == PtxArch::Compute90a;
    ensure!(
        mm.fast_accum() == (options.fast_accum && hopper),
        "fast_accum {} for {options:?} on {}",
        mm.fast_accum(),
        mm.path()
    );
    // Stored as the case says: A column-major is batch × K × M, B row-major batch × K × N.
    let a = stored(&qa, (batch, m, k), c.a_layout == Layout::ColMajor);
    let b = stored(&qb, (batch, n, k), c.b_layout == Layout::RowMajor);
    let a = DeviceBuffer::from_slice(&stream, &a).map_err(fail)?;
    let b = DeviceBuffer::from_slice(&stream, &b).map_err(fail)?;
    let cbuf = DeviceBuffer::from_slice(&stream, &ch).map_err(fail)?;
    let bias = DeviceBuffer::from_slice(&stream, &biash).map_err(fail)?;
    let (sa_d, sb_d) = (
        scale_on_device(&stream, sa).map_err(fail)?,
        scale_on_device(&stream, sb).map_err(fail)?,
    );
    let mut amax = DeviceBuffer::from_slice(&stream, &[f32::NAN]).map_err(fail)?;
    let mut d = DeviceBuffer::from_slice(&stream, &vec![O::from_f32(f32::NAN); batch * m * n])
        .map_err(fail)?;
    let mut epi = Epilogue::new();
    if c.beta != 0.0 {
        epi = epi.c(&cbuf);
    }
    let scales = Scales::new(&sa_d, &sb_d).amax(&mut amax);
    if c.bias {
        mm.launch(&stream, &a, &b, &mut d, scales, epi.bias(&bias))
    } else {
        mm.launch(&stream, &a, &b, &mut d, scales, epi)
    }
    .map_err(fail)?;
    let out = d.to_vec(&stream).map_err(fail)?;
    let got_amax = f64::from(amax.to_vec(&stream).map_err(fail)?[0]);
    // The reference, in D's layout.
    let (mut want, mut got) = (Vec::new(), Vec::new());
    let mut want_amax = 0.0f64;
    for bt in 0..batch {
        let a = &va[bt * m * k..][..m * k];
        let b = &vb[bt * n * k..][..n * k];
        let a = ArrayView2::from_shape((m, k), a).map_err(fail)?;
        let b = ArrayView2::from_shape((n, k), b).map_err(fail)?;
        let product = a.dot(&b.t());
        for i in 0..m {
            for j in 0..n {
                let s = product[[i, j]];
                let at = bt * m * n
                    + match c.d_layout {
                        Layout::RowMajor => i * n + j,
                        Layout::ColMajor => j * m + i,
                    };
                let mut v = f64::from(c.alpha) * s;
                if c.beta != 0.0 {
                    v += f64::from(c.beta) * f64::from(ch[at].to_f32());
                }
                if c.bias {
                    v += f64::from(biash[j]);
                }
                let v = activate(c.act, v);
                want_amax = want_amax.max(v.abs());
                want.push(v);
                got.push(f64::from(out[at].to_f32()));
            }
        }
    }
    let amax_err = (got_amax - want_amax).abs() / want_amax.max(f64::MIN_POSITIVE);
    Ok((rel_error(&got, &want), amax_err, mm.path()))
}

/// Hopper's FP8 tensor cores sum the products of a wgmma (and add them to its accumulator) with
/// about 14 bits of mantissa, not f32's 24: with the two-level accumulation only each 128-deep
/// partial carries that error (on the H100, f32 out: 3.8e-5 at K = 16, 5.6e-5 at 48, 1.1e-4 at
/// 1024).
const WGMMA_PARTIALS: f64 = 1.0 / 4096.0;
/// With the tensor cores' own accumulation over the whole K the error grows with K (on the H100,
/// f32 out: 1.8e-4 at K = 256, 4.7e-4 at 1024, 1.2e-3 at 4096); 2^-8 holds to K = 4096.
const WGMMA_FAST: f64 = 1.0 / 256.0;

/// The bound for an FP8 product written as `O` on `path`: the output's rounding, and on Hopper's
/// wgmma the tensor cores' sums (`fp8::error_against_k` measures both accumulations). The
/// compute_89 path (mma.sync, f32 accumulation) has the output's rounding alone.
fn fp8_bound<O: Float>(path: PtxArch, options: ScaledOptions) -> f64 {
    let tensor_cores = match (path, options.fast_accum) {
        (PtxArch::Compute90a, false) => WGMMA_PARTIALS,
        (PtxArch::Compute90a, true) => WGMMA_FAST,
        _ => 0.0,
    };
    bound::<O>().max(tensor_cores)
}

fn grid<T: Fp8, O: Float>(
    device: &Device,
    forced: Option<PtxArch>,
    options: ScaledOptions,
) -> Result<(), Failed> {
    if !has_fp8(device, forced)? {
        return Ok(());
    }
    for (i, c) in CASES.iter().enumerate() {
        let (err, amax_err, path) = run_case::<T, O>(device, *c, 17 + i as u64, (forced, options))?;
        eprintln!("{c:?}: error {err:.2e}, amax error {amax_err:.2e}");
        ensure!(
            err <= fp8_bound::<O>(path, options),
            "{c:?}: error {err:.3e}"
        );
        ensure!(amax_err <= 1e-2, "{c:?}: amax error {amax_err:.3e}");
    }
    Ok(())
}

/// Every layout of A and B (the M-major A and N-major B through the plan's K-major copies),
/// with row- and column-major D, odd sizes and batches, e4m3 in, f16 out.
fn layouts(device: &Device, forced: Option<PtxArch>) -> Result<(), Failed> {
    if !has_fp8(device, forced)? {
        return Ok(());
    }
    let (row, col) = (Layout::RowMajor, Layout::ColMajor);
    let mut seed = 40;
    for (a_layout, b_layout) in [(row, col), (col, col), (row, row), (col, row)] {
        for d_layout in [row, col] {
            for base in [
                case(37, 61, 80),
                Case {
                    batch: 3,
                    ..case(130, 72, 272)
                },
            ] {
                let c = Case {
                    a_layout,
                    b_layout,
                    d_layout,
                    ..base
                };
                seed += 1;
                let (err, _, path) = run_case::<F8E4M3, f16>(device, c, seed, (forced, EXACT))?;
                let bound = fp8_bound::<f16>(path, EXACT);
                ensure!(err <= bound, "{c:?}: error {err:.3e} > {bound:.1e}");
            }
        }
    }
    Ok(())
}

/// The scales are read when the kernel runs: the same plan and buffers, new scale values
/// written in between, give the product at the new scales.
fn new_scales(device: &Device) -> Result<(), Failed> {
    if !has_fp8(device, None)? {
        return Ok(());
    }
    let stream = device.default_stream();
    let (m, n, k) = (64, 128, 64);
    let one = F8E4M3::saturating_from_f32(1.0);
    let a = DeviceBuffer::from_slice(&stream, &vec![one; m * k]).map_err(fail)?;
    let b = DeviceBuffer::from_slice(&stream, &vec![one; n * k]).map_err(fail)?;
    let desc = MatmulDesc::new(m, n, k).b_layout(Layout::ColMajor);
    let mm = ScaledMatmul::<F8E4M3, f32>::new(&stream, desc).map_err(fail)?;
    let mut sa = scale_on_device(&stream, 1.0).map_err(fail)?;
    let sb = scale_on_device(&stream, 0.5).map_err(fail)?;
    let mut d = DeviceBuffer::<f32>::alloc(&stream, m * n).map_err(fail)?;
    for scale in [1.0f32, 0.25, 3.0] {
        sa.copy_from_host(&stream, &[scale]).map_err(fail)?;
        mm.launch(
            &stream,
            &a,
            &b,
            &mut d,
            Scales::new(&sa, &sb),
            Epilogue::new(),
        )
        .map_err(fail)?;
        let out = d.to_vec(&stream).map_err(fail)?;
        let want = scale * 0.5 * k as f32;
        ensure!(
            out.iter().all(|v| *v == want),
            "scale {scale}: {:?} for {want}",
            &out[..4]
        );
    }
    Ok(())
}

/// The error against the f64 result of the quantized inputs as K grows (f32 output: only the
/// accumulation's error remains), with each accumulation. Printed for BENCHMARKS.md; bounded by
/// [`fp8_bound`] (the fast accumulation's to K = 4096 only).
fn error_against_k(device: &Device) -> Result<(), Failed> {
    if !has_fp8(device, None)? {
        return Ok(());
    }
    for k in [256, 1024, 4096, 16384] {
        let c = case(128, 256, k);
        let mut errors = Vec::new();
        for options in [EXACT, FAST] {
            let (e4, _, path) = run_case::<F8E4M3, f32>(device, c, 5, (None, options))?;
            let (e5, _, _) = run_case::<F8E5M2, f32>(device, c, 6, (None, options))?;
            errors.push((e4.max(e5), fp8_bound::<f32>(path, options)));
        }
        let [(two_level, two_level_bound), (fast, fast_bound)] = errors[..] else {
            return Err(Failed::from("two accumulations"));
        };
        eprintln!("K = {k}: two-level {two_level:.2e}, fast {fast:.2e} (worse of e4m3, e5m2)");
        ensure!(
            two_level <= two_level_bound,
            "K = {k}: two-level {two_level:.3e}"
        );
        ensure!(k > 4096 || fast <= fast_bound, "K = {k}: fast {fast:.3e}");
    }
    Ok(())
}

fn refusals(device: &Device) -> Result<(), Failed> {
    if !has_fp8(device, None)? {
        return Ok(());
    }
    let stream = device.default_stream();
    let nt = MatmulDesc::new(64, 64, 64).b_layout(Layout::ColMajor);
    for bad in [
        // Not K-major and not dense: no K-major copy.
        MatmulDesc::new(64, 64, 64).ldb(80),
        nt.clone().a_layout(Layout::ColMajor).lda(80),
        MatmulDesc::new(64, 64, 40).b_layout(Layout::ColMajor),
        MatmulDesc::new(64, 64, 0).b_layout(Layout::ColMajor),
        nt.clone().ldb(72),
        nt.clone().split_k(2),
        nt.clone().compute(ComputeType::F16),
    ] {
        let r = ScaledMatmul::<F8E5M2, bf16>::new(&stream, bad.clone());
        ensure!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "{bad:?}: {r:?}"
        );
    }
    ensure!(
        matches!(
            scale_on_device(&stream, 0.0),
            Err(Error::InvalidArgument { .. })
        ),
        "a zero scale"
    );
    ensure!(
        matches!(
            scale_on_device(&stream, f32::NAN),
            Err(Error::InvalidArgument { .. })
        ),
        "a NaN scale"
    );
    // Buffers too small, an amax of two elements, a missing scale element.
    let mm = ScaledMatmul::<F8E4M3, f16>::new(&stream, nt).map_err(fail)?;
    let q =
        |n: usize| DeviceBuffer::from_slice(&stream, &vec![F8E4M3::saturating_from_f32(1.0); n]);
    let (a, b, short) = (
        q(64 * 64).map_err(fail)?,
        q(64 * 64).map_err(fail)?,
        q(64).map_err(fail)?,
    );
    let s = scale_on_device(&stream, 1.0).map_err(fail)?;
    let empty = DeviceBuffer::<f32>::alloc(&stream, 0).map_err(fail)?;
    let mut two = DeviceBuffer::<f32>::alloc(&stream, 2).map_err(fail)?;
    let mut d = DeviceBuffer::<f16>::alloc(&stream, 64 * 64).map_err(fail)?;
    let r = mm.launch(
        &stream,
        &short,
        &b,
        &mut d,
        Scales::new(&s, &s),
        Epilogue::new(),
    );
    ensure!(
        matches!(r, Err(Error::BufferTooSmall { .. })),
        "short A: {r:?}"
    );
    let r = mm.launch(
        &stream,
        &a,
        &b,
        &mut d,
        Scales::new(&empty, &s),
        Epilogue::new(),
    );
    ensure!(
        matches!(r, Err(Error::BufferTooSmall { .. })),
        "no scale: {r:?}"
    );
    let r = mm.launch(
        &stream,
        &a,
        &b,
        &mut d,
        Scales::new(&s, &s).amax(&mut two),
        Epilogue::new(),
    );
    ensure!(
        matches!(r, Err(Error::InvalidArgument { .. })),
        "amax of 2: {r:?}"
    );
    Ok(())
}
