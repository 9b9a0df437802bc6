//! Every op path on tiny and odd shapes, with every operand in a buffer of exactly the elements
//! its descriptor covers (plain `DeviceBuffer::alloc`, no slack), so that compute-sanitizer's
//! memcheck catches any access past an operand: M, N, K from {1, 2, 3, 7, 13, 17, 33}, padded
//! leading dimensions (odd, and multiples of 8 with the contiguous dimension not one), every
//! layout, f16 and bf16 in, f16/bf16/f32 out, with and without C, bias and activation, batches,
//! each forced kernel path and tiling the device runs; convolutions with C and K not multiples
//! of 8, 1×1 and 3×3, stride, padding and dilation, on every conv path; pooling, element-wise
//! and training kernels. Outputs are poisoned (NaN) first, and the elements of a buffer outside
//! the matrix (row padding, gaps between batches) must keep their poison; those of the inputs
//! are NaN too, so a kernel that lets one into a product fails. Results are compared with an
//! f64 reference by relative norm error.

use crate::conv::{case, reference, Case};
use crate::{activate, bound, ensure, fail, gpu_test, random};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::ops::conv2d::{ALoad, Conv2d, ConvPath, HopperOptions};
use hikube_gpu::ops::matmul::{Activation, Epilogue, GemmPath, Layout, Matmul, MatmulDesc, Tiling};
use hikube_gpu::ops::train::{self, LossScaler, Sgd};
use hikube_gpu::{
    ops, ComputeCapability, Device, DeviceBuffer, Error, Float, KernelOptions, PtxArch, Stream,
};
use libtest_mimic::{Failed, Trial};
use rand::Rng;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu_test("tiny_shapes::matmul_sm70", |d| {
            matmul_path(d, PtxArch::Compute70)
        }),
        gpu_test("tiny_shapes::matmul_sm75", |d| {
            matmul_path(d, PtxArch::Compute75)
        }),
        gpu_test("tiny_shapes::matmul_sm80", |d| {
            matmul_path(d, PtxArch::Compute80)
        }),
        gpu_test("tiny_shapes::matmul_sm90", |d| {
            matmul_path(d, PtxArch::Compute90a)
        }),
        gpu_test("tiny_shapes::matmul_every_tiling", matmul_every_tiling),
        gpu_test("tiny_shapes::conv_paths", conv_paths),
        gpu_test("tiny_shapes::conv_sm90_loads", conv_sm90_loads),
        gpu_test("tiny_shapes::pooling", pooling),
        gpu_test("tiny_shapes::elementwise", elementwise),
        gpu_test("tiny_shapes::train", train_kernels),
    ]
}

const DIMS: [usize; 7] = [1, 2, 3, 7, 13, 17, 33];
const R: Layout = Layout::RowMajor;
const C: Layout = Layout::ColMajor;

/// A device copy of `data` in a buffer of exactly `data.len()` elements.
fn exact<T: bytemuck::Pod>(stream: &Stream, data: &[T]) -> Result<DeviceBuffer<T>, Failed> {
    let mut buf = DeviceBuffer::<T>::alloc(stream, data.len()).map_err(fail)?;
    buf.copy_from_host(stream, data).map_err(fail)?;
    Ok(buf)
}

/// ‖got − want‖ / ‖want‖, the reference's RMS floored at 1e-3 (a lone product of two random
/// numbers can fall below f16's normals, where its relative error says nothing).
fn rel_err(num: f64, den: f64, count: usize) -> f64 {
    (num / den.max(count as f64 * 1e-6)).sqrt()
}

// ---------------------------------------------------------------------------------------------
// GEMM

/// A leading dimension for rows of `cols` elements.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ld {
    /// `cols`.
    Tight,
    /// The next value above `cols` that is not a multiple of 8 (the general kernels).
    Odd,
    /// `cols` rounded up to 8 (the fast kernels' alignment, with a partial last chunk).
    Eight,
    /// That plus 8.
    Eight2,
}

fn ld_of(kind: Ld, cols: usize) -> usize {
    match kind {
        Ld::Tight => cols,
        Ld::Odd => {
            let mut l = cols + 1;
            while l.is_multiple_of(8) {
                l += 1;
            }
            l
        }
        Ld::Eight => cols.next_multiple_of(8),
        Ld::Eight2 => cols.next_multiple_of(8) + 8,
    }
}

/// Where C comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum CSrc {
    /// Its own buffer (all NaN when β = 0: it must not be read).
    Own,
    /// None: with β ≠ 0 the product accumulates into D.
    InPlace,
}

#[derive(Clone, Copy, Debug)]
struct Mm {
    m: usize,
    n: usize,
    k: usize,
    batch: usize,
    a: Layout,
    b: Layout,
    ld_ab: Ld,
    ld_c: Ld,
    ld_d: Ld,
    alpha: f32,
    beta: f32,
    c: CSrc,
    bias: bool,
    act: Activation,
    broadcast_b: bool,
    /// A's and B's buffers reach the last row's end rounded up to 8 elements (NaN past the
    /// row): exactly what the compute_80 fast kernels' whole 16-byte chunks may read.
    chunk_slack: bool,
    split_k: Option<usize>,
    tiling: Option<Tiling>,
}

fn mm(m: usize, n: usize, k: usize) -> Mm {
    Mm {
        m,
        n,
        k,
        batch: 1,
        a: R,
        b: R,
        ld_ab: Ld::Tight,
        ld_c: Ld::Tight,
        ld_d: Ld::Tight,
        alpha: 1.0,
        beta: 0.0,
        c: CSrc::Own,
        bias: false,
        act: Activation::None,
        broadcast_b: false,
        chunk_slack: false,
        split_k: None,
        tiling: None,
    }
}

impl Mm {
    /// Epilogue variant `i` of six: none; bias + ReLU; α, β with its own C; β = 1 in place;
    /// C, bias and GELU; β = 0 with a NaN C given.
    fn epi(self, i: usize) -> Mm {
        match i % 6 {
            0 => self,
            1 => Mm {
                bias: true,
                act: Activation::Relu,
                ..self
            },
            2 => Mm {
                alpha: -1.5,
                beta: 0.5,
                ..self
            },
            3 => Mm {
                beta: 1.0,
                c: CSrc::InPlace,
                ..self
            },
            4 => Mm {
                alpha: 0.75,
                beta: -0.25,
                bias: true,
                act: Activation::Gelu,
                ..self
            },
            _ => Mm { alpha: 2.0, ..self },
        }
    }
}

/// The tiny-shape cases of a path (`sm90`: no batch stride 0, which TMA cannot express).
fn mm_cases(sm90: bool) -> Vec<Mm> {
    let layouts = [(R, R), (R, C), (C, R), (C, C)];
    let lds = [Ld::Tight, Ld::Odd, Ld::Eight, Ld::Eight2];
    let mut v = Vec::new();
    // Issue 16's case: 1×1×1 bf16 (here every type), A and B row-major with padded leading
    // dimensions, α, β, C, bias, GELU.
    for ld in [Ld::Eight, Ld::Eight2, Ld::Odd] {
        v.push(Mm {
            ld_ab: ld,
            ld_c: ld,
            ld_d: ld,
            ..mm(1, 1, 1).epi(4)
        });
    }
    // Odd mixes: every layout with every kind of leading dimension, every epilogue, batches.
    for i in 0..28 {
        let (m, n, k) = (DIMS[i % 7], DIMS[(3 * i + 1) % 7], DIMS[(5 * i + 2) % 7]);
        let (a, b) = layouts[i % 4];
        v.push(Mm {
            a,
            b,
            ld_ab: lds[(i / 4) % 4],
            ld_c: lds[(i + 1) % 4],
            ld_d: lds[(i / 2) % 4],
            batch: [1, 2, 1, 3, 1][i % 5],
            broadcast_b: !sm90 && i % 7 == 3,
            ..mm(m, n, k).epi(i)
        });
    }
    // Contiguous dimensions that are multiples of 8 in exact buffers: the fast kernels, with
    // partial tiles in every dimension.
    for (i, (a, b)) in layouts.into_iter().enumerate() {
        for (j, (m, n, k, ld)) in [
            (8, 8, 8, Ld::Tight),
            (24, 16, 40, Ld::Tight),
            (8, 24, 16, Ld::Eight2),
        ]
        .into_iter()
        .enumerate()
        {
            v.push(Mm {
                a,
                b,
                ld_ab: ld,
                ld_d: [Ld::Tight, Ld::Eight2, Ld::Odd][(i + j) % 3],
                batch: 1 + j % 2,
                ..mm(m, n, k).epi(i + j)
            });
        }
    }
    // The padded cases again with A and B reaching their last chunk: the fast kernels read a
    // partial chunk at each row's end.
    let padded: Vec<Mm> = v
        .iter()
        .filter(|c| matches!(c.ld_ab, Ld::Eight | Ld::Eight2) && !c.broadcast_b)
        .map(|c| Mm {
            chunk_slack: true,
            ..*c
        })
        .collect();
    v.extend(padded);
    // Split-K forced (slices of 64), with a K tail, both exact and chunk-reaching.
    for (i, (a, b)) in layouts.into_iter().enumerate() {
        v.push(Mm {
            a,
            b,
            ld_ab: [Ld::Eight, Ld::Odd][i % 2],
            ld_d: Ld::Odd,
            split_k: Some(3),
            chunk_slack: i >= 2,
            batch: 1 + i % 2,
            ..mm(7, 13, 130).epi(i + 2)
        });
    }
    v
}

/// Runs one GEMM case with exact buffers; returns the relative error.
fn mm_run<I: Float, O: Float>(device: &Device, arch: PtxArch, c: Mm) -> Result<f64, Failed> {
    let stream = device.default_stream();
    let mut rng = rand::rng();
    let (ar, ac) = if c.a == R { (c.m, c.k) } else { (c.k, c.m) };
    let (br, bc) = if c.b == R { (c.k, c.n) } else { (c.n, c.k) };
    let (lda, ldb) = (ld_of(c.ld_ab, ac), ld_of(c.ld_ab, bc));
    let (ldc, ldd) = (ld_of(c.ld_c, c.n), ld_of(c.ld_d, c.n));
    let (sa, sb, sc, sd) = (
        ar * lda,
        if c.broadcast_b { 0 } else { br * ldb },
        c.m * ldc,
        c.m * ldd,
    );
    let reach = |rows: usize, cols: usize, ld: usize, stride: usize, chunked: bool| {
        let cols = if chunked {
            cols.next_multiple_of(8)
        } else {
            cols
        };
        (c.batch - 1) * stride + (rows - 1) * ld + cols
    };
    let nan_i = I::from_f32(f32::NAN);
    let nan_o = O::from_f32(f32::NAN);
    // Inputs: NaN everywhere but the matrices.
    let mut a_h = vec![nan_i; reach(ar, ac, lda, sa, c.chunk_slack)];
    let mut b_h = vec![nan_i; reach(br, bc, ldb, sb, c.chunk_slack)];
    let a_at = |bi: usize, i: usize, kk: usize| {
        bi * sa + if c.a == R { i * lda + kk } else { kk * lda + i }
    };
    let b_at = |bi: usize, kk: usize, j: usize| {
        bi * sb + if c.b == R { kk * ldb + j } else { j * ldb + kk }
    };
    for bi in 0..c.batch {
        for i in 0..c.m {
            for kk in 0..c.k {
                a_h[a_at(bi, i, kk)] = I::from_f32(rng.random_range(-1.0f32..1.0));
            }
        }
        for kk in 0..c.k {
            for j in 0..c.n {
                b_h[b_at(bi, kk, j)] = I::from_f32(rng.random_range(-1.0f32..1.0));
            }
        }
    }
    let bias_h: Vec<O> = random(c.n, &mut rng);
    let c_at = |bi: usize, i: usize, j: usize| bi * sc + i * ldc + j;
    let d_at = |bi: usize, i: usize, j: usize| bi * sd + i * ldd + j;
    // C: its own buffer (NaN when β = 0), or D's initial contents; D: NaN but for C in place.
    let mut c_h = vec![nan_o; reach(c.m, c.n, ldc, sc, false)];
    let mut d_h = vec![nan_o; reach(c.m, c.n, ldd, sd, false)];
    let mut c_val = vec![0f64; c.batch * c.m * c.n];
    if c.beta != 0.0 {
        for bi in 0..c.batch {
            for i in 0..c.m {
                for j in 0..c.n {
                    let v = O::from_f32(rng.random_range(-1.0f32..1.0));
                    c_val[(bi * c.m + i) * c.n + j] = f64::from(v.to_f32());
                    match c.c {
                        CSrc::Own => c_h[c_at(bi, i, j)] = v,
                        CSrc::InPlace => d_h[d_at(bi, i, j)] = v,
                    }
                }
            }
        }
    }
    let a = exact(&stream, &a_h)?;
    let b = exact(&stream, &b_h)?;
    let cbuf = exact(&stream, &c_h)?;
    let bias = exact(&stream, &bias_h)?;
    let mut d = exact(&stream, &d_h)?;

    let mut desc = MatmulDesc::new(c.m, c.n, c.k)
        .a_layout(c.a)
        .b_layout(c.b)
        .lda(lda)
        .ldb(ldb)
        .ldc(ldc)
        .ldd(ldd)
        .batch(c.batch)
        .stride_a(sa)
        .stride_b(sb)
        .stride_c(sc)
        .stride_d(sd)
        .alpha(c.alpha)
        .beta(c.beta)
        .activation(c.act)
        .options(KernelOptions { arch: Some(arch) });
    if let Some(t) = c.tiling {
        desc = desc.tiling(t);
    }
    if let Some(s) = c.split_k {
        desc = desc.split_k(s);
    }
    let plan = Matmul::<I, O>::new(&stream, desc).map_err(fail)?;
    let want = crate::matmul::expected_path(arch, (lda, ldb), c.batch, (sa, sb));
    ensure!(
        plan.path() == want,
        "{c:?}: path {:?} for {arch}, want {want:?}",
        plan.path()
    );
    let mut epi = Epilogue::new();
    if c.c == CSrc::Own {
        epi = epi.c(&cbuf);
    }
    if c.bias {
        epi = epi.bias(&bias);
    }
    plan.launch(&stream, &a, &b, &mut d, epi).map_err(fail)?;
    let out = d.to_vec(&stream).map_err(fail)?;

    let f = |x: I| f64::from(x.to_f32());
    let mut written = vec![false; out.len()];
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for bi in 0..c.batch {
        for i in 0..c.m {
            for j in 0..c.n {
                let mut v = (0..c.k)
                    .map(|kk| f(a_h[a_at(bi, i, kk)]) * f(b_h[b_at(bi, kk, j)]))
                    .sum::<f64>()
                    * f64::from(c.alpha);
                v += f64::from(c.beta) * c_val[(bi * c.m + i) * c.n + j];
                if c.bias {
                    v += f64::from(bias_h[j].to_f32());
                }
                v = activate(c.act, v);
                let idx = d_at(bi, i, j);
                written[idx] = true;
                let g = f64::from(out[idx].to_f32());
                ensure!(g.is_finite(), "{c:?}: D[{bi}][{i}][{j}] = {g}");
                num += (g - v) * (g - v);
                den += v * v;
            }
        }
    }
    for (idx, (got, w)) in out.iter().zip(&written).enumerate() {
        ensure!(
            *w || bytemuck::bytes_of(got) == bytemuck::bytes_of(&nan_o),
            "{c:?}: D[{idx}] outside the matrix was written"
        );
    }
    Ok(rel_err(num, den, c.batch * c.m * c.n))
}

fn mm_check<I: Float, O: Float>(device: &Device, arch: PtxArch, c: Mm) -> Result<(), Failed> {
    let err = mm_run::<I, O>(device, arch, c)?;
    ensure!(
        err <= bound::<O>(),
        "{arch} {}->{} {c:?}: relative error {err:e}",
        I::SUFFIX,
        O::SUFFIX
    );
    Ok(())
}

/// Every tiny case on one forced path: (bf16 or f16) → f32 and f16 → f16 for all, the other
/// type pairs for every third case (the input type does not change the access pattern).
fn matmul_path(device: &Device, arch: PtxArch) -> Result<(), Failed> {
    if !arch.runs_on(device.compute_capability()) {
        return Err(format!("{arch} cannot run on this device").into());
    }
    let path = GemmPath::for_arch(arch);
    let sm90 = path == GemmPath::Sm90;
    let tilings = Matmul::<f16, f32>::tilings(path);
    let cases = mm_cases(sm90);
    for (i, c) in cases.iter().enumerate() {
        // The Hopper path's two tilings take the cases in turn.
        let c = Mm {
            tiling: sm90.then(|| tilings[i % tilings.len()]),
            ..*c
        };
        mm_check::<f16, f16>(device, arch, c)?;
        if path.supports_bf16() {
            mm_check::<bf16, f32>(device, arch, c)?;
            match i % 3 {
                0 => mm_check::<f16, f32>(device, arch, c)?,
                1 => mm_check::<bf16, bf16>(device, arch, c)?,
                _ => mm_check::<f16, bf16>(device, arch, c)?,
            }
        } else {
            mm_check::<f16, f32>(device, arch, c)?;
            if i % 3 == 0 {
                mm_check::<f16, bf16>(device, arch, c)?;
            }
        }
    }
    eprintln!("{arch}: {} tiny cases", cases.len());
    Ok(())
}

/// Every tiling of every path the device runs, forced, on tiny shapes in exact buffers: the
/// fast kernels' loaders differ per tile.
fn matmul_every_tiling(device: &Device) -> Result<(), Failed> {
    let cc = device.compute_capability();
    for arch in [PtxArch::Compute75, PtxArch::Compute80, PtxArch::Compute90a] {
        if !arch.runs_on(cc) {
            continue;
        }
        let path = GemmPath::for_arch(arch);
        for t in Matmul::<f16, f32>::tilings(path) {
            for (i, (a, b)) in [(R, R), (R, C), (C, R), (C, C)].into_iter().enumerate() {
                let base = Mm {
                    a,
                    b,
                    tiling: Some(t),
                    ..mm(24, 16, 40).epi(i + 1)
                };
                mm_check::<f16, f32>(device, arch, base)?;
                let padded = Mm {
                    ld_ab: Ld::Eight,
                    ld_d: Ld::Odd,
                    chunk_slack: i % 2 == 1,
                    ..mm(DIMS[i + 2], 33, 17).epi(i)
                };
                let padded = Mm {
                    a,
                    b,
                    tiling: Some(t),
                    ..padded
                };
                if path.supports_bf16() {
                    mm_check::<bf16, bf16>(device, arch, padded)?;
                } else {
                    mm_check::<f16, f16>(device, arch, padded)?;
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Convolution

/// The convolution cases are the conv tests' own (`crate::conv::Case`).
type Cv = Case;

/// How a convolution case is planned: `Conv2d` on a forced target (`None`: the device's
/// default), 1×1 through the GEMM or not (`None`: the plan's choice).
#[derive(Clone, Copy, Debug)]
struct Plan(Option<PtxArch>, Option<bool>);

/// Random inputs for `c` and the f64 reference output.
struct CvData<I: Float, O: Float> {
    x: Vec<I>,
    w: Vec<I>,
    bias: Vec<O>,
    /// The epilogue's C (y's shape).
    c: Vec<O>,
    want: Vec<f64>,
}

fn cv_data<I: Float, O: Float>(c: &Cv) -> CvData<I, O> {
    let mut rng = rand::rng();
    let x: Vec<I> = random(c.n * c.h * c.w * c.c, &mut rng);
    let w: Vec<I> = random(c.k * c.r * c.s * (c.c / c.groups), &mut rng);
    let bias: Vec<O> = random(c.k, &mut rng);
    let f = |v: &[I]| v.iter().map(|e| f64::from(e.to_f32())).collect::<Vec<_>>();
    let g = |v: &[O]| v.iter().map(|e| f64::from(e.to_f32())).collect::<Vec<_>>();
    let (p, q) = c.desc(None).output_hw();
    let c_in: Vec<O> = random(c.n * p * q * c.k, &mut rng);
    let bias_f = g(&bias);
    let want = reference(c, &f(&x), &f(&w), c.bias.then_some(&bias_f[..]), &g(&c_in));
    CvData {
        x,
        w,
        bias,
        c: c_in,
        want,
    }
}

/// The relative error of `out` against the reference (every element must be written).
fn cv_err<O: Float>(c: &Cv, what: &str, out: &[O], want: &[f64]) -> Result<f64, Failed> {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (i, (got, v)) in out.iter().zip(want).enumerate() {
        let g = f64::from(got.to_f32());
        ensure!(g.is_finite(), "{c:?} {what}: y[{i}] = {g}");
        num += (g - v) * (g - v);
        den += v * v;
    }
    let err = rel_err(num, den, want.len());
    ensure!(err <= bound::<O>(), "{c:?} {what}: relative error {err:e}");
    Ok(err)
}

/// Runs one convolution through `Conv2d` in exact buffers; returns the path it took.
fn cv_check<I: Float, O: Float>(device: &Device, c: Cv, plan: Plan) -> Result<String, Failed> {
    let stream = device.default_stream();
    let data = cv_data::<I, O>(&c);
    let mut desc = c.desc(plan.0);
    if let Some(g) = plan.1 {
        desc = desc.gemm_for_1x1(g);
    }
    ensure!(
        desc.input_len() == data.x.len()
            && desc.filter_len() == data.w.len()
            && desc.output_len() == data.want.len(),
        "{c:?}: lengths"
    );
    let x = exact(&stream, &data.x)?;
    let w = exact(&stream, &data.w)?;
    let bias = exact(&stream, &data.bias)?;
    let c_buf = exact(&stream, &data.c)?;
    let mut y = exact(&stream, &c.y_init(&data.c, O::from_f32(f32::NAN), 0))?;
    let mut conv = Conv2d::<I, O>::new(&stream, desc).map_err(fail)?;
    conv.launch(&stream, &x, &w, &mut y, c.epilogue(&bias, &c_buf))
        .map_err(fail)?;
    let path = format!("{:?}", conv.path());
    let what = format!("{}->{} {plan:?} on {path}", I::SUFFIX, O::SUFFIX);
    cv_err(&c, &what, &y.to_vec(&stream).map_err(fail)?, &data.want)?;
    Ok(path)
}

/// Runs one convolution on the Hopper path with `a_load` forced, in exact buffers.
fn cv_sm90_check<T: Float>(device: &Device, c: Cv, a_load: ALoad) -> Result<(), Failed> {
    let stream = device.default_stream();
    let options = HopperOptions {
        a_load: Some(a_load),
        ..Default::default()
    };
    let mut conv = match Conv2d::<T, T>::new(&stream, c.desc(None).hopper(options)) {
        Ok(conv) => conv,
        // TMA im2col cannot describe every shape.
        Err(Error::InvalidArgument { .. }) if a_load == ALoad::Im2col => return Ok(()),
        Err(e) => return Err(fail(e)),
    };
    ensure!(
        conv.path() == ConvPath::Sm90,
        "forced path {:?}",
        conv.path()
    );
    let data = cv_data::<T, T>(&c);
    let x = exact(&stream, &data.x)?;
    let w = exact(&stream, &data.w)?;
    let bias = exact(&stream, &data.bias)?;
    let c_buf = exact(&stream, &data.c)?;
    let mut y = exact(&stream, &c.y_init(&data.c, T::from_f32(f32::NAN), 0))?;
    conv.launch(&stream, &x, &w, &mut y, c.epilogue(&bias, &c_buf))
        .map_err(fail)?;
    let what = format!("{} conv2d Sm90 {a_load:?}", T::SUFFIX);
    cv_err(&c, &what, &y.to_vec(&stream).map_err(fail)?, &data.want)?;
    Ok(())
}

fn conv_cases() -> Vec<Cv> {
    let v = vec![
        case(1, 1, 1, 1, 1, 1, 1),
        case(1, 1, 1, 3, 7, 1, 1),
        case(2, 3, 5, 5, 13, 1, 1),
        case(1, 5, 7, 8, 8, 1, 1),
        case(1, 3, 2, 16, 17, 1, 1),
        case(1, 13, 11, 16, 33, 1, 1).stride(2, 2),
        case(2, 7, 3, 12, 17, 3, 3).pad(1, 1), // C = 12: 4-channel gather, filter rows padded
        case(1, 4, 6, 4, 3, 2, 2).stride(2, 2), // C = 4, R·S·C = 16: no copy
        case(1, 7, 7, 3, 33, 3, 3).stride(2, 2).pad(1, 1),
        case(3, 5, 5, 16, 7, 3, 3).pad(1, 1).dilation(2, 2),
        case(1, 9, 8, 20, 13, 3, 3).stride(2, 1).pad(1, 2),
        case(2, 6, 7, 8, 17, 3, 3),
        case(1, 3, 3, 24, 1, 3, 3).pad(1, 1),
        case(1, 2, 2, 1, 2, 3, 3).pad(2, 2), // padding wider than the image
        case(1, 5, 5, 13, 9, 3, 3)
            .stride(2, 2)
            .pad(1, 1)
            .dilation(2, 2),
        case(1, 1, 1, 8, 3, 3, 3).pad(1, 1),
        case(1, 3, 5, 72, 9, 3, 3).pad(1, 1), // a partial second 64-channel slice
        case(2, 5, 7, 12, 12, 3, 3).pad(1, 1).g(12), // depthwise
        case(1, 6, 5, 8, 16, 3, 3).stride(2, 2).pad(1, 1).g(8), // depthwise, multiplier 2
        case(1, 3, 3, 3, 3, 3, 3).pad(1, 1).g(3), // depthwise, C = 3
    ];
    v.into_iter().enumerate().map(|(i, c)| c.epi(i)).collect()
}

/// Every convolution path the device runs: compute_80 and compute_75 implicit GEMMs (8- and
/// 4-channel gathers, padded copies), the direct kernel (compute_70, depthwise, groups), 1×1
/// through each GEMM, and the default path (the Hopper kernel where it applies).
fn conv_paths(device: &Device) -> Result<(), Failed> {
    let cc = device.compute_capability();
    let mut paths: Vec<String> = Vec::new();
    let mut seen = |label: String| {
        if !paths.contains(&label) {
            paths.push(label);
        }
    };
    for (i, c) in conv_cases().into_iter().enumerate() {
        let pointwise = c.r == 1 && c.s == 1 && c.stride == (1, 1) && c.pad == (0, 0);
        if PtxArch::Compute80.runs_on(cc) {
            let sm80 = Plan(Some(PtxArch::Compute80), Some(false));
            seen(cv_check::<f16, f16>(device, c, sm80)?);
            seen(cv_check::<bf16, f32>(device, c, sm80)?);
            if i % 2 == 0 {
                seen(cv_check::<bf16, bf16>(device, c, sm80)?);
            }
            if pointwise && c.groups == 1 {
                let gemm = Plan(Some(PtxArch::Compute80), Some(true));
                seen(cv_check::<f16, f32>(device, c, gemm)?);
                seen(cv_check::<bf16, bf16>(device, c, gemm)?);
            }
            seen(cv_check::<f16, f16>(device, c, Plan(None, None))?);
            seen(cv_check::<bf16, bf16>(device, c, Plan(None, None))?);
        }
        if PtxArch::Compute75.runs_on(cc) {
            let sm75 = Plan(Some(PtxArch::Compute75), Some(false));
            seen(cv_check::<f16, f16>(device, c, sm75)?);
            seen(cv_check::<f16, f32>(device, c, sm75)?);
        }
        if PtxArch::Compute70.runs_on(cc) {
            let sm70 = Plan(Some(PtxArch::Compute70), None);
            seen(cv_check::<f16, f32>(device, c, sm70)?);
            seen(cv_check::<bf16, bf16>(device, c, sm70)?);
        }
    }
    eprintln!("conv paths taken: {paths:?}");
    if PtxArch::Compute80.runs_on(cc) {
        let want = format!("{:?}", ConvPath::Sm80);
        ensure!(paths.contains(&want), "no case took {want}");
    }
    Ok(())
}

/// The Hopper convolution with each A-operand load forced, on the cases it takes (C % 8 == 0).
fn conv_sm90_loads(device: &Device) -> Result<(), Failed> {
    if device.compute_capability() != ComputeCapability::new(9, 0) {
        return Ok(());
    }
    for c in conv_cases() {
        if c.c % 8 != 0 || c.groups != 1 {
            continue;
        }
        for a_load in [ALoad::Im2col, ALoad::Gather, ALoad::Packed] {
            cv_sm90_check::<f16>(device, c, a_load)?;
            cv_sm90_check::<bf16>(device, c, a_load)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pooling, element-wise, training

fn pool_one<T: Float>(device: &Device, n: usize, hw: usize, c: usize) -> Result<(), Failed> {
    let stream = device.default_stream();
    let mut rng = rand::rng();
    let x_h: Vec<T> = random(n * hw * c, &mut rng);
    let x = exact(&stream, &x_h)?;
    let mut y = exact(&stream, &vec![T::from_f32(f32::NAN); n * c])?;
    ops::global_avg_pool(&stream, n, hw, c, &x, &mut y).map_err(fail)?;
    let out = y.to_vec(&stream).map_err(fail)?;
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for b in 0..n {
        for ch in 0..c {
            let r = (0..hw)
                .map(|p| f64::from(x_h[(b * hw + p) * c + ch].to_f32()))
                .sum::<f64>()
                / hw as f64;
            let g = f64::from(out[b * c + ch].to_f32());
            ensure!(g.is_finite(), "pool {n}x{hw}x{c}: y[{b}][{ch}] = {g}");
            num += (g - r) * (g - r);
            den += r * r;
        }
    }
    let err = rel_err(num, den, n * c);
    ensure!(
        err <= bound::<T>(),
        "pool {} {n}x{hw}x{c}: {err:e}",
        T::SUFFIX
    );
    Ok(())
}

fn pooling(device: &Device) -> Result<(), Failed> {
    for (n, hw, c) in [(1, 1, 1), (1, 7, 3), (3, 13, 17), (2, 1, 33), (7, 3, 2)] {
        pool_one::<f32>(device, n, hw, c)?;
        pool_one::<f16>(device, n, hw, c)?;
        pool_one::<bf16>(device, n, hw, c)?;
    }
    Ok(())
}

fn axpy_one<T: Float>(device: &Device, n: usize, arch: Option<PtxArch>) -> Result<(), Failed> {
    let stream = device.default_stream();
    let mut rng = rand::rng();
    let x_h: Vec<T> = random(n, &mut rng);
    let y_h: Vec<T> = random(n, &mut rng);
    let x = exact(&stream, &x_h)?;
    let mut y = exact(&stream, &y_h)?;
    ops::axpy_with(&stream, -1.5, &x, &mut y, KernelOptions { arch }).map_err(fail)?;
    let out = y.to_vec(&stream).map_err(fail)?;
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for i in 0..n {
        let r = -1.5 * f64::from(x_h[i].to_f32()) + f64::from(y_h[i].to_f32());
        let g = f64::from(out[i].to_f32());
        num += (g - r) * (g - r);
        den += r * r;
    }
    let err = rel_err(num, den, n);
    ensure!(
        err <= bound::<T>(),
        "axpy {} n = {n} {arch:?}: {err:e}",
        T::SUFFIX
    );
    Ok(())
}

fn elementwise(device: &Device) -> Result<(), Failed> {
    let cc = device.compute_capability();
    for arch in [
        None,
        Some(PtxArch::Compute70),
        Some(PtxArch::Compute75),
        Some(PtxArch::Compute80),
        Some(PtxArch::Compute90a),
    ] {
        if arch.is_some_and(|a| !a.runs_on(cc)) {
            continue;
        }
        // Every size on the default target, a few on each forced one.
        let sizes: &[usize] = if arch.is_none() {
            &[1, 2, 3, 7, 13, 17, 33, 1001]
        } else {
            &[1, 13, 1001]
        };
        for &n in sizes {
            axpy_one::<f32>(device, n, arch)?;
            axpy_one::<f16>(device, n, arch)?;
            axpy_one::<bf16>(device, n, arch)?;
        }
    }
    Ok(())
}

/// Softmax cross-entropy, ReLU backward, bias gradient, cast, the overflow check and an SGD
/// step, on tiny and odd shapes in exact buffers.
fn train_one<T: Float>(device: &Device, rows: usize, cols: usize) -> Result<(), Failed> {
    let stream = device.default_stream();
    let mut rng = rand::rng();
    let tol = bound::<T>();
    let nan = T::from_f32(f32::NAN);
    let logits_h: Vec<f32> = random(rows * cols, &mut rng);
    let labels_h: Vec<u32> = (0..rows).map(|i| (i * 7 % cols) as u32).collect();
    let logits = exact(&stream, &logits_h)?;
    let labels = exact(&stream, &labels_h)?;
    let mut grad = exact(&stream, &vec![nan; rows * cols])?;
    let mut loss = exact(&stream, &vec![f32::NAN; rows])?;
    train::softmax_cross_entropy(&stream, &logits, &labels, cols, None, &mut grad, &mut loss)
        .map_err(fail)?;
    let (g, l) = (
        grad.to_vec(&stream).map_err(fail)?,
        loss.to_vec(&stream).map_err(fail)?,
    );
    for r in 0..rows {
        let x = &logits_h[r * cols..][..cols];
        let m = x
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let s: f64 = x.iter().map(|&v| (f64::from(v) - m).exp()).sum();
        let label = labels_h[r] as usize;
        let want_loss = s.ln() + m - f64::from(x[label]);
        ensure!(
            (f64::from(l[r]) - want_loss).abs() <= 1e-4 * want_loss.abs().max(1.0),
            "xent {rows}x{cols} row {r}: loss {} against {want_loss}",
            l[r]
        );
        for j in 0..cols {
            let p = (f64::from(x[j]) - m).exp() / s;
            let want = (p - f64::from(u8::from(j == label))) / rows as f64;
            let got = f64::from(g[r * cols + j].to_f32());
            ensure!(
                (got - want).abs() <= 4.0 * tol * (want.abs() + 1.0 / rows as f64),
                "xent {} {rows}x{cols} grad[{r}][{j}] = {got}, want {want}",
                T::SUFFIX
            );
        }
    }

    let n = rows * cols;
    let y_h: Vec<T> = random(n, &mut rng);
    let dy_h: Vec<T> = random(n, &mut rng);
    let y = exact(&stream, &y_h)?;
    let mut dy = exact(&stream, &dy_h)?;
    train::relu_backward(&stream, &y, &mut dy).map_err(fail)?;
    let got = dy.to_vec(&stream).map_err(fail)?;
    for i in 0..n {
        let want = if y_h[i].to_f32() > 0.0 {
            dy_h[i].to_f32()
        } else {
            0.0
        };
        ensure!(got[i].to_f32() == want, "relu_backward {n}: [{i}]");
    }

    let mut db = exact(&stream, &vec![f32::NAN; cols])?;
    train::bias_grad(&stream, &exact(&stream, &dy_h)?, &mut db).map_err(fail)?;
    let got = db.to_vec(&stream).map_err(fail)?;
    for j in 0..cols {
        let want: f64 = (0..rows)
            .map(|r| f64::from(dy_h[r * cols + j].to_f32()))
            .sum();
        ensure!(
            (f64::from(got[j]) - want).abs() <= 1e-5 * rows as f64,
            "bias_grad {rows}x{cols}: [{j}] = {}, want {want}",
            got[j]
        );
    }

    let src = exact(&stream, &logits_h)?;
    let mut dst = exact(&stream, &vec![nan; n])?;
    train::cast_f32(&stream, &src, &mut dst).map_err(fail)?;
    let got = dst.to_vec(&stream).map_err(fail)?;
    for i in 0..n {
        ensure!(
            bytemuck::bytes_of(&got[i]) == bytemuck::bytes_of(&T::from_f32(logits_h[i])),
            "cast_f32 {n}: [{i}]"
        );
    }

    let mut scaler = LossScaler::new(&stream, 4.0, 0).map_err(fail)?;
    let g_h: Vec<f32> = random(n, &mut rng);
    let w_h: Vec<f32> = random(n, &mut rng);
    let gbuf = exact(&stream, &g_h)?;
    scaler.check(&stream, &gbuf).map_err(fail)?;
    let mut w = exact(&stream, &w_h)?;
    let mut v = exact(&stream, &vec![0f32; n])?;
    let mut lp = exact(&stream, &vec![nan; n])?;
    let sgd = Sgd {
        lr: 0.5,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    sgd.step(&stream, &scaler, &mut w, &mut v, &gbuf, &mut lp)
        .map_err(fail)?;
    scaler.update(&stream).map_err(fail)?;
    let (w_out, lp_out) = (
        w.to_vec(&stream).map_err(fail)?,
        lp.to_vec(&stream).map_err(fail)?,
    );
    for i in 0..n {
        let want = f64::from(w_h[i]) - 0.5 * f64::from(g_h[i]) / 4.0;
        ensure!(
            (f64::from(w_out[i]) - want).abs() <= 1e-6,
            "sgd {n}: w[{i}] = {}, want {want}",
            w_out[i]
        );
        ensure!(
            (f64::from(lp_out[i].to_f32()) - want).abs() <= tol,
            "sgd {n}: low-precision w[{i}]"
        );
    }
    Ok(())
}

fn train_kernels(device: &Device) -> Result<(), Failed> {
    for (rows, cols) in [(1, 1), (1, 3), (3, 33), (7, 2), (13, 17)] {
        train_one::<f32>(device, rows, cols)?;
        train_one::<f16>(device, rows, cols)?;
        train_one::<bf16>(device, rows, cols)?;
    }
    Ok(())
}
