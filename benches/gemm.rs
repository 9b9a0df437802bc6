//! GEMM throughput: hikube-gpu and cuBLAS (`cublasGemmEx`, FP32 compute) in the same process,
//! on the same inputs, D = A·B row-major with the output in the input type.
//!
//!     cargo bench --features cublas --bench gemm           # criterion groups, then the summary table
//!     cargo bench --features cublas --bench gemm -- summary # only the summary table
//!     cargo bench --features cublas --bench gemm -- tune   # every tile configuration on the large shapes
//!     cargo bench --features cublas --bench gemm -- grids  # the Hopper path at 4096³ by blocks launched
//!     cargo bench --features cublas --bench gemm -- acc16  # f16 against f32 accumulation, every path
//!     cargo bench --features cublas --bench gemm -- fp8    # FP8 (ScaledMatmul) beside cuBLASLt and our f16 GEMM
//!
//! Each timing is the median of CUDA-event-timed runs rotating over three input sets (so no run
//! finds its inputs in L2 from the one before), after warm-up.

#[path = "support/random.rs"]
mod random;

use criterion::{Criterion, Throughput};
use cudarc::cublas::CudaBlas;
use hikube_gpu::fp8::{Fp8, F8E4M3, F8E5M2};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::ops::matmul::{
    scale_on_device, ComputeType, Epilogue, GemmPath, Layout, Matmul, MatmulDesc, Route,
    ScaledMatmul, ScaledOptions, Scales, Tiling,
};
use hikube_gpu::reference;
use hikube_gpu::{time_on_stream, Device, DeviceBuffer, Float, Result, Stream};
use std::time::Duration;

const SHAPES: [(usize, usize, usize); 7] = [
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (4096, 4096, 4096),
    (8192, 8192, 8192),
    (16384, 4096, 4096),
    (4096, 4096, 16384),
    (128, 4096, 4096),
];
const SETS: usize = 3;

struct Inputs<T: Float> {
    a: Vec<DeviceBuffer<T>>,
    b: Vec<DeviceBuffer<T>>,
    d: DeviceBuffer<T>,
}

/// `SETS` buffers of `len` values uniform in [-r, r), each made by `to` from an f32.
fn random_sets<E: bytemuck::Pod + Send>(
    stream: &Stream,
    len: usize,
    r: f32,
    to: impl Fn(f32) -> E + Sync,
) -> Result<Vec<DeviceBuffer<E>>> {
    (0..SETS)
        .map(|_| DeviceBuffer::from_slice(stream, &random::uniform(len, r, &to)))
        .collect()
}

fn inputs<T: Float>(stream: &Stream, m: usize, n: usize, k: usize) -> Result<Inputs<T>> {
    let a = random_sets(stream, m * k, 1.0, T::from_f32)?;
    let b = random_sets(stream, k * n, 1.0, T::from_f32)?;
    Ok(Inputs {
        a,
        b,
        d: DeviceBuffer::alloc(stream, m * n)?,
    })
}

/// cuBLAS on input set `set`, B row-major or column-major (`b_t`).
fn cublas_gemm<T: Float>(
    blas: &CudaBlas,
    stream: &Stream,
    x: &mut Inputs<T>,
    set: usize,
    shape: (usize, usize, usize),
    b_t: bool,
) -> Result<()> {
    let layout = if b_t {
        Layout::ColMajor
    } else {
        Layout::RowMajor
    };
    reference::cublas_gemm(blas, stream, &x.a[set], &x.b[set], &mut x.d, shape, layout)
}

struct Row {
    dtype: &'static str,
    layout: &'static str,
    path: GemmPath,
    shape: (usize, usize, usize),
    tiling: Option<(Tiling, usize)>,
    ours: f64,
    /// Hopper path: a block per work unit (the default is as many persistent blocks as fit).
    per_tile: Option<f64>,
    cublas: f64,
    peak: f64,
}

fn bench_type<T: Float>(
    c: &mut Option<Criterion>,
    device: &Device,
    stream: &Stream,
    blas: &CudaBlas,
    peak: f64,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let model = device.model().name.to_string();
    for (b_layout, layout) in [(Layout::ColMajor, "NT"), (Layout::RowMajor, "NN")] {
        let b_t = b_layout == Layout::ColMajor;
        for shape in SHAPES {
            let (m, n, k) = shape;
            let flops = 2.0 * (m * n * k) as f64;
            let mut x = inputs::<T>(stream, m, n, k)?;
            let plan = Matmul::<T, T>::new(stream, MatmulDesc::new(m, n, k).b_layout(b_layout))?;
            let sm90 = plan.path() == GemmPath::Sm90;
            let ours = |x: &mut Inputs<T>, i: usize| {
                let set = i % SETS;
                plan.launch(stream, &x.a[set], &x.b[set], &mut x.d, Epilogue::new())
            };
            let t_ours = time_on_stream(stream, 5, 30, |i| ours(&mut x, i))?.median_ms();
            let t_per_tile = if sm90 {
                let per_tile = Matmul::<T, T>::new(
                    stream,
                    MatmulDesc::new(m, n, k)
                        .b_layout(b_layout)
                        .grid_blocks(usize::MAX),
                )?;
                let t = time_on_stream(stream, 5, 30, |i| {
                    let set = i % SETS;
                    per_tile.launch(stream, &x.a[set], &x.b[set], &mut x.d, Epilogue::new())
                })?;
                Some(t.median_ms())
            } else {
                None
            };
            let t_blas = time_on_stream(stream, 5, 30, |i| {
                cublas_gemm(blas, stream, &mut x, i % SETS, shape, b_t)
            })?
            .median_ms();
            if let Some(c) = c.as_mut() {
                let mut group =
                    c.benchmark_group(format!("{model}/gemm/{}/{layout}/{m}x{n}x{k}", T::SUFFIX));
                group.throughput(Throughput::Elements(flops as u64));
                let mut timed = |name: &str, f: &mut dyn FnMut(usize) -> Result<()>| {
                    group.bench_function(name, |bch| {
                        bch.iter_custom(|iters| {
                            let t = time_on_stream(stream, 0, iters as usize, &mut *f)
                                .expect("launch failed");
                            Duration::from_secs_f64(t.samples_ms.iter().sum::<f64>() / 1e3)
                        })
                    });
                };
                timed("hikube", &mut |i| ours(&mut x, i));
                timed("cublas", &mut |i| {
                    cublas_gemm(blas, stream, &mut x, i % SETS, shape, b_t)
                });
                group.finish();
            }
            rows.push(Row {
                dtype: T::SUFFIX,
                layout,
                path: plan.path(),
                shape,
                tiling: plan.tiling(),
                ours: flops / (t_ours * 1e9),
                per_tile: t_per_tile.map(|t| flops / (t * 1e9)),
                cublas: flops / (t_blas * 1e9),
                peak,
            });
        }
    }
    Ok(())
}

/// Makes the plan for `desc` and times it on `x`: the median of 15 runs after 3, in ms.
fn time_desc<T: Float>(
    stream: &Stream,
    x: &mut Inputs<T>,
    desc: MatmulDesc,
) -> Result<(f64, Matmul<T, T>)> {
    let plan = Matmul::<T, T>::new(stream, desc)?;
    let ms = time_on_stream(stream, 3, 15, |i| {
        let set = i % SETS;
        plan.launch(stream, &x.a[set], &x.b[set], &mut x.d, Epilogue::new())
    })?
    .median_ms();
    Ok((ms, plan))
}

/// Times every tile configuration of the default path on the large square shapes and the
/// skinny one (each cell: TFLOP/s, split-K slices, blocks launched on the Hopper path).
fn tune<T: Float>(device: &Device, stream: &Stream) -> Result<()> {
    let path = Matmul::<T, T>::new(stream, MatmulDesc::new(4096, 4096, 4096))?.path();
    println!(
        "\n{} {:?} {}: TFLOP/s per tile configuration (split-K slices, blocks)",
        device.model().name,
        path,
        T::SUFFIX
    );
    let forced = hikube_gpu::KernelOptions {
        arch: Some(path.arch()),
    };
    let shapes = [
        (2048, 2048, 2048),
        (4096, 4096, 4096),
        (8192, 8192, 8192),
        (128, 4096, 4096),
    ];
    println!("| tiling | 2048³ | 4096³ | 8192³ | 128×4096×4096 |\n|---|---|---|---|---|");
    for t in Matmul::<T, T>::tilings(path) {
        let mut cells = Vec::new();
        for (m, n, k) in shapes {
            let mut x = inputs::<T>(stream, m, n, k)?;
            let desc = MatmulDesc::new(m, n, k).tiling(t).options(forced);
            let (ms, plan) = time_desc(stream, &mut x, desc)?;
            cells.push(format!(
                "{:.1} ({}, {})",
                2.0 * (m * n * k) as f64 / (ms * 1e9),
                plan.tiling().map_or(1, |(_, splits)| splits),
                plan.grid_blocks()
            ));
        }
        println!("| {t} | {} |", cells.join(" | "));
    }
    // The skinny shape by split-K factor, and a quarter of its K without split-K (the main loop
    // alone).
    println!("\n| tiling | M×N×K | split-K 1 | 2 | 4 | 8 | 16 |\n|---|---|---|---|---|---|---|");
    for t in Matmul::<T, T>::tilings(path) {
        for (m, n, k) in [(128, 4096, 4096), (128, 4096, 1024)] {
            let mut x = inputs::<T>(stream, m, n, k)?;
            let mut cells = Vec::new();
            for splits in [1, 2, 4, 8, 16] {
                let desc = MatmulDesc::new(m, n, k)
                    .tiling(t)
                    .split_k(splits)
                    .options(forced);
                let (ms, _) = time_desc(stream, &mut x, desc)?;
                cells.push(format!(
                    "{:.1} ({:.1} µs)",
                    2.0 * (m * n * k) as f64 / (ms * 1e9),
                    ms * 1e3
                ));
            }
            println!("| {t} | {m}×{n}×{k} | {} |", cells.join(" | "));
        }
    }
    Ok(())
}

/// The Hopper path at 4096³ with the blocks launched forced (`MatmulDesc::grid_blocks`).
fn grids<T: Float>(stream: &Stream) -> Result<()> {
    let s = 4096;
    let mut x = inputs::<T>(stream, s, s, s)?;
    println!("\n{} 4096³: TFLOP/s by blocks launched", T::SUFFIX);
    println!("| asked | launched | TFLOP/s |\n|---|---|---|");
    for g in [
        None,
        Some(32),
        Some(64),
        Some(96),
        Some(120),
        Some(132),
        Some(usize::MAX),
    ] {
        let desc = MatmulDesc::new(s, s, s).b_layout(Layout::ColMajor);
        let desc = match g {
            Some(g) => desc.grid_blocks(g),
            None => desc,
        };
        let (ms, plan) = time_desc(stream, &mut x, desc)?;
        println!(
            "| {g:?} | {} | {:.1} |",
            plan.grid_blocks(),
            2.0 * (s * s * s) as f64 / (ms * 1e9)
        );
    }
    Ok(())
}

/// f16 inputs and output, NT: f32 against f16 accumulation on every path the device runs
/// (forced), and cuBLAS with CUBLAS_COMPUTE_32F and _16F, TFLOP/s. The f16 accumulators double
/// the tensor rate only on GeForce cards; on data-center GPUs both rates are the same.
fn acc16(device: &Device, stream: &Stream, blas: &CudaBlas) -> Result<()> {
    let cc = device.compute_capability();
    println!(
        "\n{}: f16 GEMM NT, TFLOP/s by accumulation (median of 15, 3 rotating input sets)",
        device.model().name
    );
    println!(
        "| path | M×N×K | f32 acc | f16 acc | f16/f32 | cuBLAS 32F | cuBLAS 16F | ours/cuBLAS (16F) \
         | f16 acc, % of its peak |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let peak16 = device.model().fp16_acc16_tflops;
    let paths = [
        GemmPath::Sm90,
        GemmPath::Sm80,
        GemmPath::Sm75,
        GemmPath::Sm70,
    ];
    for path in paths.into_iter().filter(|p| p.arch().runs_on(cc)) {
        for (m, n, k) in [(1024, 1024, 1024), (4096, 4096, 4096), (8192, 8192, 8192)] {
            let tflops = |ms: f64| 2.0 * (m * n * k) as f64 / (ms * 1e9);
            let mut x = inputs::<f16>(stream, m, n, k)?;
            let desc = MatmulDesc::new(m, n, k).b_layout(Layout::ColMajor).options(
                hikube_gpu::KernelOptions {
                    arch: Some(path.arch()),
                },
            );
            let (t32, _) = time_desc(stream, &mut x, desc.clone())?;
            let (t16, plan) = time_desc(stream, &mut x, desc.compute(ComputeType::F16))?;
            let ran = match plan.last_route() {
                Some(Route::Gemm { accumulation, .. }) => format!("{accumulation:?}"),
                other => format!("{other:?}"),
            };
            let mut vendor = |compute| {
                time_on_stream(stream, 3, 15, |i| {
                    let set = i % SETS;
                    reference::cublas_gemm_compute(
                        blas,
                        stream,
                        &x.a[set],
                        &x.b[set],
                        &mut x.d,
                        (m, n, k),
                        Layout::ColMajor,
                        compute,
                    )
                })
                .map(|t| t.median_ms())
            };
            let (c32, c16) = (vendor(ComputeType::F32)?, vendor(ComputeType::F16)?);
            println!(
                "| {path:?} | {m}×{n}×{k} | {:.1} | {:.1} ({ran}) | {:.2} | {:.1} | {:.1} | {:.2} \
                 | {:.1} % |",
                tflops(t32),
                tflops(t16),
                t32 / t16,
                tflops(c32),
                tflops(c16),
                c16 / t16,
                100.0 * tflops(t16) / peak16
            );
        }
    }
    Ok(())
}

/// Who runs an FP8 product: our plan (forced to a target or not, fast accumulation or not) or
/// cuBLASLt (`torch._scaled_mm`'s library; default or fast accumulation).
enum Fp8Impl<'a> {
    Ours(Option<hikube_gpu::PtxArch>, bool),
    CublasLt(&'a mut reference::CublasLtFp8, bool),
}

/// FP8 `T` operands of one NT shape (three rotating sets), an f16 D, and scales 0.5 and 2 as
/// device scalars: drawn once, timed by every implementation.
struct Fp8Inputs<T: Fp8> {
    shape: (usize, usize, usize),
    a: Vec<DeviceBuffer<T>>,
    b: Vec<DeviceBuffer<T>>,
    d: DeviceBuffer<f16>,
    scales: (DeviceBuffer<f32>, DeviceBuffer<f32>),
}

fn fp8_inputs<T: Fp8>(stream: &Stream, (m, n, k): (usize, usize, usize)) -> Result<Fp8Inputs<T>> {
    Ok(Fp8Inputs {
        shape: (m, n, k),
        a: random_sets(stream, m * k, 4.0, T::saturating_from_f32)?,
        b: random_sets(stream, n * k, 4.0, T::saturating_from_f32)?,
        d: DeviceBuffer::alloc(stream, m * n)?,
        scales: (scale_on_device(stream, 0.5)?, scale_on_device(stream, 2.0)?),
    })
}

/// The FP8 GEMM of `x` by `who`: the median of 15 runs over the three input sets, in ms; and
/// the tiling it ran (ours).
fn time_fp8<T: Fp8>(
    stream: &Stream,
    x: &mut Fp8Inputs<T>,
    who: Fp8Impl<'_>,
) -> Result<(f64, Option<Tiling>)> {
    let (m, n, k) = x.shape;
    let Fp8Inputs {
        a,
        b,
        d,
        scales: (sa, sb),
        ..
    } = x;
    match who {
        Fp8Impl::Ours(arch, fast_accum) => {
            let desc = MatmulDesc::new(m, n, k)
                .b_layout(Layout::ColMajor)
                .options(hikube_gpu::KernelOptions { arch });
            let options = ScaledOptions::new().fast_accum(fast_accum);
            let plan = ScaledMatmul::<T, f16>::with_options(stream, desc, options)?;
            let ms = time_on_stream(stream, 3, 15, |i| {
                let set = i % SETS;
                let scales = Scales::new(sa, sb);
                plan.launch(stream, &a[set], &b[set], d, scales, Epilogue::new())
            })?
            .median_ms();
            Ok((ms, plan.tiling()))
        }
        Fp8Impl::CublasLt(lt, fast_accum) => {
            let ms = time_on_stream(stream, 3, 15, |i| {
                let set = i % SETS;
                lt.gemm(stream, &a[set], &b[set], d, (m, n, k), (sa, sb), fast_accum)
            })?
            .median_ms();
            Ok((ms, None))
        }
    }
}

/// Where the time of a tile goes: M = N = 8192 (NT) with K from 128 to 8192, for our f16 GEMM and
/// the FP8 kernels (e4m3, f16 out, both accumulations). A line through µs per tile-wave against
/// K splits each tile's time into a part that grows with K (the main loop) and a fixed part (the
/// epilogue, the pipeline's fill and drain).
fn k_sweep(device: &Device, stream: &Stream) -> Result<()> {
    const KS: [usize; 7] = [128, 256, 512, 1024, 2048, 4096, 8192];
    let (m, n) = (8192, 8192);
    println!(
        "\n{}: M = N = {m}, NT, µs per kernel (median of 15) against K; fit: µs = fixed + per_k × K",
        device.model().name
    );
    let fit = |name: &str, us: &[f64]| {
        let xs: Vec<f64> = KS.iter().map(|&k| k as f64).collect();
        let count = KS.len() as f64;
        let (mx, my) = (
            xs.iter().sum::<f64>() / count,
            us.iter().sum::<f64>() / count,
        );
        let sxy: f64 = xs.iter().zip(us).map(|(x, y)| (x - mx) * (y - my)).sum();
        let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        let slope = sxy / sxx;
        let cells: Vec<String> = us.iter().map(|u| format!("{u:.1}")).collect();
        println!(
            "| {name} | {} | {:.1} µs + {:.2} µs per 1024 K |",
            cells.join(" | "),
            my - slope * mx,
            slope * 1024.0
        );
    };
    println!(
        "| kernel | K = {} | fit |",
        KS.map(|k| k.to_string()).join(" | ")
    );
    println!("|---|{}---|", "---|".repeat(KS.len()));
    let mut lt = reference::CublasLtFp8::new(stream).ok();
    // µs per K: ours f16, e4m3 two-level and fast; cuBLASLt's two (where it loads).
    let mut rows: [Vec<f64>; 5] = Default::default();
    for k in KS {
        let mut x = inputs::<f16>(stream, m, n, k)?;
        let nt = MatmulDesc::new(m, n, k).b_layout(Layout::ColMajor);
        rows[0].push(1e3 * time_desc(stream, &mut x, nt)?.0);
        let mut x8 = fp8_inputs::<F8E4M3>(stream, (m, n, k))?;
        for fast in [false, true] {
            let ours = time_fp8(stream, &mut x8, Fp8Impl::Ours(None, fast))?.0;
            rows[1 + fast as usize].push(1e3 * ours);
            if let Some(lt) = lt.as_mut() {
                let theirs = time_fp8(stream, &mut x8, Fp8Impl::CublasLt(lt, fast))?.0;
                rows[3 + fast as usize].push(1e3 * theirs);
            }
        }
    }
    let names = [
        "f16 (ours)",
        "e4m3 two-level",
        "e4m3 fast accum",
        "cuBLASLt",
        "cuBLASLt fast accum",
    ];
    for (name, us) in names.iter().zip(&rows).filter(|(_, us)| !us.is_empty()) {
        fit(name, us);
    }
    Ok(())
}

/// FP8 GEMM (e4m3 and e5m2, f16 out) beside cuBLASLt's (in this process, both accumulations)
/// and our f16 GEMM on the same shapes, NT.
fn fp8(device: &Device, stream: &Stream) -> Result<()> {
    let model = device.model();
    println!(
        "\n{}: FP8 GEMM NT (A row-major, B column-major), f16 out, TFLOP/s (median of 15, 3 \
         rotating input sets)",
        model.name
    );
    println!(
        "| M×N×K | tile | e4m3 | cuBLASLt | ratio | e4m3 fast accum | cuBLASLt fast accum | ratio \
         | e5m2 | f16 GEMM (ours) | e4m3 / f16 | e4m3, % of FP8 peak | compute_89 e4m3 \
         | compute_80 f16 | compute_89 / (2 × compute_80) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let ada = hikube_gpu::PtxArch::Compute89;
    let ada = ada.runs_on(device.compute_capability()).then_some(ada);
    let mut lt = reference::CublasLtFp8::new(stream)
        .map_err(|e| eprintln!("cuBLASLt FP8 not measured: {e}"))
        .ok();
    let peak = model.fp8_tflops.unwrap_or(f64::NAN);
    for shape in [
        (2048, 2048, 2048),
        (4096, 4096, 4096),
        (8192, 8192, 8192),
        (16384, 4096, 4096),
        (128, 4096, 4096),
    ] {
        let (m, n, k) = shape;
        let tflops = |ms: f64| 2.0 * (m * n * k) as f64 / (ms * 1e9);
        let mut x8 = fp8_inputs::<F8E4M3>(stream, shape)?;
        let (e4, tiling) = time_fp8(stream, &mut x8, Fp8Impl::Ours(None, false))?;
        let (fast, _) = time_fp8(stream, &mut x8, Fp8Impl::Ours(None, true))?;
        let mut x5 = fp8_inputs::<F8E5M2>(stream, shape)?;
        let (e5, _) = time_fp8(stream, &mut x5, Fp8Impl::Ours(None, false))?;
        let mut theirs = [f64::NAN; 2];
        if let Some(lt) = lt.as_mut() {
            for (slot, fast_accum) in theirs.iter_mut().zip([false, true]) {
                let who = Fp8Impl::CublasLt(lt, fast_accum);
                *slot = match time_fp8(stream, &mut x8, who) {
                    Ok((ms, _)) => ms,
                    Err(e) => {
                        eprintln!("cuBLASLt {m}×{n}×{k} (fast accum {fast_accum}): {e}");
                        f64::NAN
                    }
                };
            }
        }
        let mut x = inputs::<f16>(stream, m, n, k)?;
        let nt = MatmulDesc::new(m, n, k).b_layout(Layout::ColMajor);
        let (h, _) = time_desc(stream, &mut x, nt.clone())?;
        let (ada_fp8, sm80) = match ada {
            Some(arch) => {
                let (t8, _) = time_fp8(stream, &mut x8, Fp8Impl::Ours(Some(arch), false))?;
                let forced = hikube_gpu::KernelOptions {
                    arch: Some(hikube_gpu::PtxArch::Compute80),
                };
                let (t16, _) = time_desc(stream, &mut x, nt.options(forced))?;
                (tflops(t8), tflops(t16))
            }
            None => (f64::NAN, f64::NAN),
        };
        let tile = tiling.map_or("-".to_string(), |t| t.to_string());
        println!(
            "| {m}×{n}×{k} | {tile} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.2} | {:.1} \
             | {:.1} | {:.2} | {:.1} % | {ada_fp8:.1} | {sm80:.1} | {:.2} |",
            tflops(e4),
            tflops(theirs[0]),
            theirs[0] / e4,
            tflops(fast),
            tflops(theirs[1]),
            theirs[1] / fast,
            tflops(e5),
            tflops(h),
            h / e4,
            100.0 * tflops(e4) / peak,
            ada_fp8 / (2.0 * sm80)
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let device = match Device::open(0) {
        Ok(d) => d,
        Err(e) if e.is_no_gpu() => {
            eprintln!("gemm bench: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let stream = device.new_stream()?;
    let blas = reference::load_cublas(&stream).expect("cuBLAS could not be loaded");
    if std::env::args().any(|a| a == "acc16") {
        return acc16(&device, &stream, &blas);
    }
    if std::env::args().any(|a| a == "fp8") {
        return fp8(&device, &stream);
    }
    if std::env::args().any(|a| a == "ksweep") {
        return k_sweep(&device, &stream);
    }
    if std::env::args().any(|a| a == "grids") {
        return grids::<f16>(&stream);
    }
    if std::env::args().any(|a| a == "tune") {
        tune::<f16>(&device, &stream)?;
        return tune::<bf16>(&device, &stream);
    }
    let summary_only = std::env::args().any(|a| a == "summary");
    let mut c = (!summary_only).then(|| {
        Criterion::default()
            .configure_from_args()
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1))
    });
    let model = device.model().clone();
    let mut rows = Vec::new();
    bench_type::<f16>(
        &mut c,
        &device,
        &stream,
        &blas,
        model.fp16_tflops,
        &mut rows,
    )?;
    bench_type::<bf16>(
        &mut c,
        &device,
        &stream,
        &blas,
        model.bf16_tflops.unwrap_or(f64::NAN),
        &mut rows,
    )?;
    println!(
        "\n{} ({} SMs): TFLOP/s, median of 30 runs (CUDA events), 3 rotating input sets; \
         NT = B column-major (cuBLAS op T), NN = B row-major",
        model.name, model.sms
    );
    println!(
        "| dtype | layout | M×N×K | path, tile (split-K) | hikube-gpu | cuBLAS | ratio | % of peak \
         | a block per unit (ratio) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let (m, n, k) = r.shape;
        let tile = r
            .tiling
            .map_or("-".to_string(), |(t, s)| format!("{t} ({s})"));
        println!(
            "| {} | {} | {m}×{n}×{k} | {:?} {tile} | {:.1} | {:.1} | {:.2} | {:.1} % | {} |",
            r.dtype,
            r.layout,
            r.path,
            r.ours,
            r.cublas,
            r.ours / r.cublas,
            100.0 * r.ours / r.peak,
            r.per_tile
                .map_or(String::new(), |p| format!("{p:.1} ({:.2})", p / r.cublas))
        );
    }
    Ok(())
}
