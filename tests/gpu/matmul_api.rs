//! The API a cuBLAS or PyTorch user expects of `Matmul`: K = 0 (`D = act(β·C + bias)`), empty
//! products (M, N or the batch count 0) that do nothing, one plan launched from four threads on
//! four streams at once, and column-major C and D. Each result is checked against an f64
//! reference computed from the stored (rounded) inputs by ‖out − ref‖ / ‖ref‖, with D poisoned
//! (NaN) before the launch; elements of D's buffer outside the matrix must keep their poison.

use crate::{activate, bound, ensure, fail, gpu_test, random};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::ops::matmul::{Activation, Epilogue, GemmPath, Layout, Matmul, MatmulDesc, Route};
use hikube_gpu::{Device, DeviceBuffer, Error, Float, KernelOptions, PtxArch, Stream};
use libtest_mimic::{Failed, Trial};
use std::sync::Barrier;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu_test("matmul_api::k0_is_the_epilogue_alone", k0_every_path),
        gpu_test("matmul_api::empty_products_do_nothing", empty_products),
        gpu_test("matmul_api::one_plan_four_threads", four_threads),
        gpu_test("matmul_api::column_major_c_and_d", column_major_every_path),
        gpu_test(
            "matmul_api::column_major_refusals_are_typed",
            column_major_refusals,
        ),
        gpu_test(
            "matmul_api::f32_bias_beside_f16_and_bf16",
            bias_f32_every_path,
        ),
        gpu_test("matmul_api::tuned_plans_are_cached", tuned_plans),
    ]
}

/// `Matmul::tuned` measures a shape once, stores the winner, and a second tuned plan of the
/// shape takes it from the cache without measuring; both compute what the heuristic's plan
/// computes (within f16 rounding of differently split sums).
fn tuned_plans(device: &Device) -> Result<(), Failed> {
    use hikube_gpu::ops::matmul::TuneCache;
    let stream = device.new_stream().map_err(fail)?;
    let dir = std::env::temp_dir().join(format!("hikube-tuned-{}", std::process::id()));
    let cache = TuneCache::at(dir.join("tune.txt"));
    let desc = MatmulDesc::new(384, 640, 1536).b_layout(C);
    let first = Matmul::<f16, f16>::tuned(&stream, desc.clone(), Some(&cache)).map_err(fail)?;
    let stored = std::fs::read_to_string(cache.path()).map_err(fail)?;
    ensure!(stored.lines().count() == 1, "one line stored: {stored}");
    let t = std::time::Instant::now();
    let second = Matmul::<f16, f16>::tuned(&stream, desc.clone(), Some(&cache)).map_err(fail)?;
    let from_cache = t.elapsed();
    ensure!(
        first.tiling() == second.tiling(),
        "cache gave {:?}, measured {:?}",
        second.tiling(),
        first.tiling()
    );
    let heuristic = Matmul::<f16, f16>::new(&stream, desc.clone()).map_err(fail)?;
    let mut rng = rand::rng();
    let a =
        DeviceBuffer::from_slice(&stream, &random::<f16>(384 * 1536, &mut rng)).map_err(fail)?;
    let b =
        DeviceBuffer::from_slice(&stream, &random::<f16>(640 * 1536, &mut rng)).map_err(fail)?;
    let mut outs = Vec::new();
    for plan in [&second, &heuristic] {
        let mut d = DeviceBuffer::<f16>::zeroed(&stream, 384 * 640).map_err(fail)?;
        plan.launch(&stream, &a, &b, &mut d, Epilogue::new())
            .map_err(fail)?;
        outs.push(d.to_vec(&stream).map_err(fail)?);
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in outs[0].iter().zip(&outs[1]) {
        let (x, y) = (f64::from(x.to_f32()), f64::from(y.to_f32()));
        num += (x - y) * (x - y);
        den += y * y;
    }
    let rel = (num / den).sqrt();
    ensure!(rel < bound::<f16>(), "tuned vs heuristic: {rel:.2e}");
    println!(
        "tuned {:?} (heuristic {:?}); a plan from the cache in {from_cache:?}",
        first.tiling(),
        heuristic.tiling()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

const R: Layout = Layout::RowMajor;
const C: Layout = Layout::ColMajor;

#[derive(Clone, Copy, Debug)]
struct Api {
    m: usize,
    n: usize,
    k: usize,
    batch: usize,
    a: Layout,
    b: Layout,
    /// The layout of C and D.
    cd: Layout,
    alpha: f32,
    beta: f32,
    bias: bool,
    /// The bias in f32 (else in D's type).
    bias_f32: bool,
    act: Activation,
    /// C given as its own buffer (else, with β ≠ 0, accumulate into D).
    own_c: bool,
    /// Extra elements per stored row of A and B (odd: the general kernels).
    pad_ab: usize,
    /// Extra elements per stored row (or column) of C and D.
    pad_cd: usize,
    /// The plan's forced split-K factor.
    split_k: Option<usize>,
}

fn api(m: usize, n: usize, k: usize) -> Api {
    Api {
        m,
        n,
        k,
        batch: 1,
        a: R,
        b: R,
        cd: R,
        alpha: 1.0,
        beta: 0.0,
        bias: false,
        bias_f32: false,
        act: Activation::None,
        own_c: true,
        pad_ab: 0,
        pad_cd: 0,
        split_k: None,
    }
}

/// (rows, cols) as stored of a `rows` × `cols` matrix in layout `l`.
fn stored(l: Layout, rows: usize, cols: usize) -> (usize, usize) {
    match l {
        Layout::RowMajor => (rows, cols),
        Layout::ColMajor => (cols, rows),
    }
}

/// The offset of element (i, j) of a matrix in layout `l` with leading dimension `ld`.
fn at(l: Layout, ld: usize, i: usize, j: usize) -> usize {
    match l {
        Layout::RowMajor => i * ld + j,
        Layout::ColMajor => j * ld + i,
    }
}

/// The inputs of one launch on the host, and D's initial contents.
struct Host<I: Float, O: Float> {
    a: Vec<I>,
    b: Vec<I>,
    /// C's values (also D's initial contents when accumulating in place).
    c: Vec<O>,
    bias: Vec<O>,
    bias32: Vec<f32>,
    d: Vec<O>,
    lda: usize,
    ldb: usize,
    ldcd: usize,
    sa: usize,
    sb: usize,
    scd: usize,
}

/// Random inputs for `c`; C is NaN when β = 0 (it must not be read), D NaN unless it is C.
fn host<I: Float, O: Float>(c: &Api) -> Host<I, O> {
    let mut rng = rand::rng();
    let (ar, ac) = stored(c.a, c.m, c.k);
    let (br, bc) = stored(c.b, c.k, c.n);
    let (dr, dc) = stored(c.cd, c.m, c.n);
    let (lda, ldb, ldcd) = (ac + c.pad_ab, bc + c.pad_ab, dc + c.pad_cd);
    let (sa, sb, scd) = (ar * lda, br * ldb, dr * ldcd);
    let nan = O::from_f32(f32::NAN);
    let cv: Vec<O> = if c.beta == 0.0 {
        vec![nan; scd * c.batch]
    } else {
        random(scd * c.batch, &mut rng)
    };
    Host {
        a: random(sa * c.batch, &mut rng),
        b: random(sb * c.batch, &mut rng),
        d: if c.own_c {
            vec![nan; scd * c.batch]
        } else {
            cv.clone()
        },
        c: cv,
        bias: random(c.n, &mut rng),
        bias32: random(c.n, &mut rng),
        lda,
        ldb,
        ldcd,
        sa,
        sb,
        scd,
    }
}

fn desc<I: Float, O: Float>(c: &Api, h: &Host<I, O>, arch: Option<PtxArch>) -> MatmulDesc {
    let desc = MatmulDesc::new(c.m, c.n, c.k)
        .a_layout(c.a)
        .b_layout(c.b)
        .d_layout(c.cd)
        .lda(h.lda)
        .ldb(h.ldb)
        .ldc(h.ldcd)
        .ldd(h.ldcd)
        .batch(c.batch)
        .stride_a(h.sa)
        .stride_b(h.sb)
        .stride_c(h.scd)
        .stride_d(h.scd)
        .alpha(c.alpha)
        .beta(c.beta)
        .activation(c.act)
        .options(KernelOptions { arch });
    match c.split_k {
        Some(s) => desc.split_k(s),
        None => desc,
    }
}

/// The operands of one launch on the device.
struct Dev<I: Float, O: Float> {
    a: DeviceBuffer<I>,
    b: DeviceBuffer<I>,
    c: DeviceBuffer<O>,
    bias: DeviceBuffer<O>,
    bias32: DeviceBuffer<f32>,
    d: DeviceBuffer<O>,
}

fn upload<I: Float, O: Float>(stream: &Stream, h: &Host<I, O>) -> Result<Dev<I, O>, Failed> {
    Ok(Dev {
        a: DeviceBuffer::from_slice(stream, &h.a).map_err(fail)?,
        b: DeviceBuffer::from_slice(stream, &h.b).map_err(fail)?,
        c: DeviceBuffer::from_slice(stream, &h.c).map_err(fail)?,
        bias: DeviceBuffer::from_slice(stream, &h.bias).map_err(fail)?,
        bias32: DeviceBuffer::from_slice(stream, &h.bias32).map_err(fail)?,
        d: DeviceBuffer::from_slice(stream, &h.d).map_err(fail)?,
    })
}

/// Launches `plan` on `dev` `times` times (each launch writes the same D) and reads D back.
fn launch_times<I: Float, O: Float>(
    stream: &Stream,
    plan: &Matmul<I, O>,
    c: &Api,
    dev: &mut Dev<I, O>,
    times: usize,
) -> Result<Vec<O>, Failed> {
    for _ in 0..times {
        let mut epi = Epilogue::new();
        if c.own_c {
            epi = epi.c(&dev.c);
        }
        let r = match (c.bias, c.bias_f32) {
            (true, true) => plan.launch(stream, &dev.a, &dev.b, &mut dev.d, epi.bias(&dev.bias32)),
            (true, false) => plan.launch(stream, &dev.a, &dev.b, &mut dev.d, epi.bias(&dev.bias)),
            (false, _) => plan.launch(stream, &dev.a, &dev.b, &mut dev.d, epi),
        };
        r.map_err(fail)?;
    }
    dev.d.to_vec(stream).map_err(fail)
}

/// ‖out − ref‖ / ‖ref‖ against the f64 reference (the reference's RMS floored at 1e-3, as in
/// the matmul tests); fails on a non-finite element of D or a write outside the matrix.
fn compare<I: Float, O: Float>(c: &Api, h: &Host<I, O>, out: &[O]) -> Result<f64, Failed> {
    let f = |x: f32| f64::from(x);
    ensure!(
        out.len() == h.d.len(),
        "{c:?}: D has {} elements",
        out.len()
    );
    let mut inside = vec![false; out.len()];
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for bi in 0..c.batch {
        for i in 0..c.m {
            for j in 0..c.n {
                let mut acc = 0.0f64;
                for kk in 0..c.k {
                    let a = h.a[bi * h.sa + at(c.a, h.lda, i, kk)].to_f32();
                    let b = h.b[bi * h.sb + at(c.b, h.ldb, kk, j)].to_f32();
                    acc += f(a) * f(b);
                }
                // K = 0: α is not applied (an empty sum, as in cuBLAS), even when it is NaN.
                let mut v = if c.k > 0 { f(c.alpha) * acc } else { 0.0 };
                let idx = bi * h.scd + at(c.cd, h.ldcd, i, j);
                if c.beta != 0.0 {
                    v += f(c.beta) * f(h.c[idx].to_f32());
                }
                if c.bias {
                    v += f(if c.bias_f32 {
                        h.bias32[j]
                    } else {
                        h.bias[j].to_f32()
                    });
                }
                v = activate(c.act, v);
                inside[idx] = true;
                let g = f(out[idx].to_f32());
                ensure!(g.is_finite(), "{c:?}: D[{bi}][{i}][{j}] = {g}");
                num += (g - v) * (g - v);
                den += v * v;
            }
        }
    }
    for (idx, (got, inside)) in out.iter().zip(&inside).enumerate() {
        ensure!(
            *inside || bytemuck::bytes_of(got) == bytemuck::bytes_of(&h.d[idx]),
            "{c:?}: D[{idx}] outside the matrix was written"
        );
    }
    let count = (c.batch * c.m * c.n) as f64;
    Ok((num / den.max(count * 1e-6)).sqrt())
}

/// One case on `arch` (or the device's path): plan, launch, compare. Returns the plan.
fn run<I: Float, O: Float>(
    device: &Device,
    arch: Option<PtxArch>,
    c: Api,
) -> Result<Matmul<I, O>, Failed> {
    let stream = device.default_stream();
    let h = host::<I, O>(&c);
    let plan = Matmul::<I, O>::new(&stream, desc(&c, &h, arch)).map_err(fail)?;
    let mut dev = upload(&stream, &h)?;
    let out = launch_times(&stream, &plan, &c, &mut dev, 1)?;
    let err = compare(&c, &h, &out)?;
    ensure!(
        err <= bound::<O>(),
        "{arch:?} {}->{} {c:?}: relative error {err:e}",
        I::SUFFIX,
        O::SUFFIX
    );
    Ok(plan)
}

/// The targets the device runs.
/// The targets of the GEMM paths the device runs (compute_89 has only the FP8 GEMM).
fn archs(device: &Device) -> Vec<PtxArch> {
    PtxArch::ALL
        .into_iter()
        .filter(|a| a.runs_on(device.compute_capability()) && GemmPath::for_arch(*a).arch() == *a)
        .collect()
}

/// K = 0 on every path's epilogue kernel: β·C with bias and GELU, batches and padded rows; bias
/// and ReLU alone (C, full of NaN, not read); zero; in place with α = NaN (not applied); and a
/// column-major C and D.
fn k0_every_path(device: &Device) -> Result<(), Failed> {
    let cases = [
        Api {
            batch: 2,
            alpha: 2.0,
            beta: 0.75,
            bias: true,
            act: Activation::Gelu,
            pad_cd: 3,
            ..api(37, 21, 0)
        },
        Api {
            bias: true,
            act: Activation::Relu,
            ..api(16, 40, 0)
        },
        api(9, 7, 0),
        Api {
            a: C,
            b: C,
            batch: 3,
            alpha: f32::NAN,
            beta: 1.0,
            own_c: false,
            ..api(20, 33, 0)
        },
        Api {
            cd: C,
            batch: 2,
            beta: 0.5,
            act: Activation::Gelu,
            pad_cd: 2,
            ..api(19, 24, 0)
        },
    ];
    for arch in archs(device) {
        for c in cases {
            k0_check::<f16, f32>(device, arch, c)?;
            k0_check::<f16, f16>(device, arch, c)?;
            if GemmPath::for_arch(arch).supports_bf16() {
                k0_check::<bf16, bf16>(device, arch, c)?;
            }
        }
    }
    Ok(())
}

fn k0_check<I: Float, O: Float>(device: &Device, arch: PtxArch, c: Api) -> Result<(), Failed> {
    let plan = run::<I, O>(device, Some(arch), c)?;
    ensure!(
        matches!(plan.route(), Route::EpilogueOnly { .. })
            && plan.tiling().is_none()
            && plan.workspace_bytes() == 0,
        "{arch} {c:?}: {plan:?}"
    );
    ensure!(
        plan.last_route() == Some(plan.route()),
        "{arch} {c:?}: ran {:?}",
        plan.last_route()
    );
    Ok(())
}

/// M, N or the batch count 0 (with K 0 or not, C read, a bias, GELU, either layout of D): the
/// plan loads nothing, and a launch checks its arguments and leaves D as it was.
fn empty_products(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let poison = vec![f32::NAN; 64];
    let a = DeviceBuffer::<f16>::zeroed(&stream, 0).map_err(fail)?;
    let b = DeviceBuffer::<f16>::zeroed(&stream, 0).map_err(fail)?;
    let cbuf = DeviceBuffer::from_slice(&stream, &[1.0f32; 64]).map_err(fail)?;
    let bias = DeviceBuffer::from_slice(&stream, &[1.0f32; 8]).map_err(fail)?;
    for arch in archs(device) {
        for (m, n, k, batch) in [
            (0, 8, 8, 1),
            (8, 0, 8, 2),
            (8, 8, 8, 0),
            (0, 0, 0, 0),
            (0, 8, 0, 2),
        ] {
            for cd in [R, C] {
                let desc = MatmulDesc::new(m, n, k)
                    .batch(batch)
                    .beta(1.0)
                    .d_layout(cd)
                    .activation(Activation::Gelu)
                    .options(KernelOptions { arch: Some(arch) });
                let what = format!("{arch} {m}x{n}x{k} batch {batch} D {cd:?}");
                let plan = Matmul::<f16, f32>::new(&stream, desc).map_err(fail)?;
                ensure!(
                    plan.route() == Route::Empty
                        && plan.tiling().is_none()
                        && plan.workspace_bytes() == 0
                        && plan.path() == GemmPath::for_arch(arch),
                    "{what}: {plan:?}"
                );
                let mut d = DeviceBuffer::from_slice(&stream, &poison).map_err(fail)?;
                let epi = Epilogue::new().c(&cbuf);
                // A bias is refused with a column-major D, however small the product.
                let epi = if cd == R { epi.bias(&bias) } else { epi };
                plan.launch(&stream, &a, &b, &mut d, epi).map_err(fail)?;
                let mut nothing = DeviceBuffer::<f32>::zeroed(&stream, 0).map_err(fail)?;
                plan.launch(&stream, &a, &b, &mut nothing, Epilogue::new())
                    .map_err(fail)?;
                let out = d.to_vec(&stream).map_err(fail)?;
                ensure!(
                    bytemuck::cast_slice::<f32, u8>(&out)
                        == bytemuck::cast_slice::<f32, u8>(&poison),
                    "{what}: D was written"
                );
                ensure!(
                    plan.last_route() == Some(Route::Empty),
                    "{what}: ran {:?}",
                    plan.last_route()
                );
            }
        }
    }
    Ok(())
}

/// One plan launched from four threads at once, each on its own stream with its own buffers,
/// eight times each: the split-K workspace (forced) is shared by every launch, so a launch
/// that used it unordered would mix another thread's partial sums into its D. The device's
/// path, and the Hopper path (whose tensor maps are re-encoded as the operands change).
fn four_threads(device: &Device) -> Result<(), Failed> {
    let mut configs = vec![(
        None,
        Api {
            batch: 2,
            beta: 0.5,
            bias: true,
            act: Activation::Gelu,
            split_k: Some(4),
            ..api(96, 80, 1024)
        },
    )];
    if PtxArch::Compute90a.runs_on(device.compute_capability()) {
        configs.push((
            Some(PtxArch::Compute90a),
            Api {
                batch: 2,
                beta: 0.5,
                bias: true,
                act: Activation::Relu,
                split_k: Some(2),
                ..api(256, 320, 512)
            },
        ));
    }
    for (arch, c) in configs {
        let stream = device.default_stream();
        // Every thread's buffers have this shape (only the values differ).
        let shape = host::<f16, f32>(&c);
        let plan = Matmul::<f16, f32>::new(&stream, desc(&c, &shape, arch)).map_err(fail)?;
        let want = c.split_k.unwrap_or(1);
        ensure!(
            plan.workspace_bytes() > 0 && plan.tiling().is_some_and(|(_, s)| s == want),
            "{c:?}: {want} slices through a workspace expected: {plan:?}"
        );
        let barrier = Barrier::new(4);
        let results: Vec<Result<f64, Failed>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let h = host::<f16, f32>(&c);
                        let prepared = device
                            .new_stream()
                            .map_err(fail)
                            .and_then(|st| upload(&st, &h).map(|dev| (st, dev)));
                        // Every thread waits once, whatever happened, so none waits forever.
                        barrier.wait();
                        let (st, mut dev) = prepared?;
                        let out = launch_times(&st, &plan, &c, &mut dev, 8)?;
                        compare(&c, &h, &out)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(Failed::from("a thread panicked")))
                })
                .collect()
        });
        for (t, r) in results.into_iter().enumerate() {
            let err = r?;
            ensure!(
                err <= bound::<f32>(),
                "{arch:?} {c:?}, thread {t}: relative error {err:e}"
            );
        }
        ensure!(
            plan.last_route() == Some(plan.route()),
            "{arch:?} {c:?}: ran {:?}, planned {:?}",
            plan.last_route(),
            plan.route()
        );
    }
    Ok(())
}

/// Column-major C and D (computed as the row-major transpose): every layout of A and B, C read
/// or accumulated into, activations, batches, padded columns, unaligned operands (the general
/// kernels), a large tile and forced split-K, on every path the device runs.
fn column_major_every_path(device: &Device) -> Result<(), Failed> {
    let mut cases = Vec::new();
    for (a, b) in [(R, R), (R, C), (C, R), (C, C)] {
        cases.extend([
            Api {
                a,
                b,
                cd: C,
                beta: 0.5,
                act: Activation::Gelu,
                ..api(61, 45, 77)
            },
            Api {
                a,
                b,
                cd: C,
                batch: 2,
                beta: 1.0,
                own_c: false,
                act: Activation::Relu,
                pad_cd: 5,
                ..api(33, 70, 96)
            },
            Api {
                a,
                b,
                cd: C,
                alpha: -1.5,
                pad_ab: 3,
                ..api(40, 24, 50)
            },
            Api {
                a,
                b,
                cd: C,
                batch: 2,
                beta: 0.25,
                ..api(128, 256, 64)
            },
        ]);
    }
    cases.push(Api {
        cd: C,
        beta: 0.5,
        split_k: Some(3),
        ..api(64, 96, 1000)
    });
    for arch in archs(device) {
        for c in &cases {
            run::<f16, f32>(device, Some(arch), *c)?;
            if GemmPath::for_arch(arch).supports_bf16() {
                run::<bf16, bf16>(device, Some(arch), *c)?;
            }
        }
    }
    // The device's own path too.
    for c in &cases {
        run::<f16, f16>(device, None, *c)?;
    }
    Ok(())
}

/// What a column-major D cannot do is a typed error: a bias (the kernels would add it per row
/// of D), and C in the other layout when it is read. Operands are named as the caller passes
/// them, though the plan swaps A and B.
fn column_major_refusals(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let desc = MatmulDesc::new(16, 8, 32).d_layout(C);
    let plan = Matmul::<f16, f32>::new(&stream, desc.clone()).map_err(fail)?;
    let a = DeviceBuffer::<f16>::zeroed(&stream, 16 * 32).map_err(fail)?;
    let b = DeviceBuffer::<f16>::zeroed(&stream, 32 * 8).map_err(fail)?;
    let b_short = DeviceBuffer::<f16>::zeroed(&stream, 32 * 8 - 1).map_err(fail)?;
    let bias = DeviceBuffer::<f32>::zeroed(&stream, 8).map_err(fail)?;
    let mut d = DeviceBuffer::<f32>::zeroed(&stream, 16 * 8).map_err(fail)?;
    match plan.launch(&stream, &a, &b, &mut d, Epilogue::new().bias(&bias)) {
        Err(Error::InvalidArgument { .. }) => {}
        other => return Err(format!("bias with a column-major D: {other:?}").into()),
    }
    match plan.launch(&stream, &a, &b_short, &mut d, Epilogue::new()) {
        Err(Error::BufferTooSmall {
            operand: "B",
            required: 256,
            actual: 255,
        }) => {}
        other => return Err(format!("short B, column-major D: {other:?}").into()),
    }
    plan.launch(&stream, &a, &b, &mut d, Epilogue::new())
        .map_err(fail)?;
    match Matmul::<f16, f32>::new(&stream, desc.c_layout(R).beta(1.0)) {
        Err(Error::InvalidArgument { .. }) => Ok(()),
        other => Err(format!("row-major C, column-major D, beta = 1: {other:?}").into()),
    }
}

/// A bias in f32 beside f16 and bf16 inputs and outputs (cuBLASLt's bias pointer may differ
/// from D's type) on every path: the general kernels (odd N), the fast ones (aligned shapes, the
/// Hopper kernel's 16-byte epilogue where the shape fills the GPU), split-K (whose reduction
/// adds it), and K = 0 (the epilogue alone), with β·C and GELU around it.
fn bias_f32_every_path(device: &Device) -> Result<(), Failed> {
    let with = |c: Api| Api {
        bias: true,
        bias_f32: true,
        ..c
    };
    let cases = [
        with(api(37, 51, 64)),
        with(Api {
            beta: 0.5,
            act: Activation::Gelu,
            ..api(256, 256, 128)
        }),
        with(api(2048, 2048, 256)),
        with(Api {
            split_k: Some(4),
            ..api(64, 96, 1024)
        }),
        with(Api {
            beta: 1.0,
            ..api(33, 40, 0)
        }),
    ];
    for arch in archs(device) {
        for c in cases {
            run::<f16, f16>(device, Some(arch), c)?;
            if GemmPath::for_arch(arch).supports_bf16() {
                run::<bf16, bf16>(device, Some(arch), c)?;
            }
        }
    }
    Ok(())
}
