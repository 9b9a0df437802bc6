//! The convolution's backward pass (`Conv2dGrad`) against the f64 reference
//! (`tests/support/conv_ref.rs`, itself checked against finite differences): data, filter and
//! bias gradients on the tensor-core paths (compute_80, and compute_75 forced) and the direct one
//! (forced compute_70), f16 with f32
//! dw and bf16 with bf16 dw, over odd sizes, strides, padding, dilation, groups and channel
//! counts off the kernels' multiples, and dgrad through a ReLU (its mask in the epilogue). Outputs are poisoned (NaN) before each launch, with a
//! poisoned tail that must survive.

use crate::conv::{case, Case};
use crate::{bound, conv_ref, ensure, fail, gpu_test, random};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::ops::conv2d::{ALoad, Conv2dDesc, Conv2dGrad, ConvPath, FilterGrad, HopperOptions};
use hikube_gpu::ops::Activation;
use hikube_gpu::{Device, DeviceBuffer, Error, Float, Graph, PtxArch};
use libtest_mimic::{Failed, Trial};

pub fn trials() -> Vec<Trial> {
    vec![
        gpu_test("conv_grad::f16_f32_grid", |d| grid::<f16, f32>(d, None)),
        gpu_test("conv_grad::bf16_bf16_grid", |d| grid::<bf16, bf16>(d, None)),
        gpu_test("conv_grad::sm75_f16_f32_grid", |d| {
            grid::<f16, f32>(d, Some(PtxArch::Compute75))
        }),
        gpu_test("conv_grad::direct_f16_f32_grid", |d| {
            grid::<f16, f32>(d, Some(PtxArch::Compute70))
        }),
        gpu_test("conv_grad::direct_bf16_f32_grid", |d| {
            grid::<bf16, f32>(d, Some(PtxArch::Compute70))
        }),
        gpu_test(
            "conv_grad::hopper_filter_f16_f32",
            hopper_filter::<f16, f32>,
        ),
        gpu_test(
            "conv_grad::hopper_filter_bf16_bf16",
            hopper_filter::<bf16, bf16>,
        ),
        gpu_test(
            "conv_grad::hopper_phases_f16_f32",
            hopper_phases::<f16, f32>,
        ),
        gpu_test(
            "conv_grad::hopper_phases_bf16_bf16",
            hopper_phases::<bf16, bf16>,
        ),
        gpu_test("conv_grad::resnet_layers", resnet_layers),
        gpu_test("conv_grad::graph_capture", graph_capture),
        gpu_test("conv_grad::bad_input_is_a_typed_error", bad_input),
    ]
}

fn cases() -> Vec<Case> {
    let mut v = vec![
        case(1, 1, 1, 8, 8, 1, 1),                                // one pixel
        case(2, 7, 9, 16, 24, 3, 3).pad(1, 1),                    // odd H, W
        case(3, 13, 11, 8, 40, 3, 3).stride(2, 2).pad(1, 1),      // stride 2
        case(2, 17, 15, 32, 16, 3, 3),                            // no padding
        case(1, 15, 13, 16, 72, 3, 3).dilation(2, 2).pad(2, 2),   // dilation 2
        case(2, 9, 11, 5, 11, 3, 3).pad(1, 1),                    // C = 5, K = 11: direct
        case(2, 10, 12, 32, 32, 3, 3).pad(1, 1).g(32),            // depthwise: direct
        case(1, 9, 9, 12, 24, 3, 3).stride(2, 2).pad(1, 1).g(12), // channel multiplier 2
        case(2, 8, 8, 64, 128, 1, 1).stride(2, 2),                // 1x1 stride 2
        case(1, 7, 7, 512, 96, 3, 3).pad(1, 1),                   // 49 pixels, long dgrad reduction
        case(4, 28, 28, 64, 64, 3, 3).pad(1, 1),                  // long wgrad reduction: split K
        case(2, 9, 10, 16, 24, 3, 1).stride(2, 1).pad(1, 0),      // R != S, anisotropic
        case(1, 5, 12, 40, 8, 1, 3).pad(0, 2).dilation(1, 2),
        case(1, 5, 5, 8, 8, 3, 3).stride(2, 2), // P = Q = 2
        case(2, 16, 16, 16, 16, 5, 5).stride(3, 3).pad(2, 2), // stride 3: taps between pixels
        case(1, 6, 5, 8, 8, 3, 3).pad(3, 3),    // padding wider than the filter's reach
        case(3, 11, 7, 24, 40, 2, 2).stride(2, 2), // even filter, rows that drop pixels
        case(1, 11, 9, 16, 24, 3, 3)
            .stride(2, 2)
            .dilation(2, 2)
            .pad(2, 2), // phases with no tap
    ];
    // α scales both gradients.
    v[1].alpha = 0.5;
    v[10].alpha = -2.0;
    v
}

/// The gradients' relative errors (dx, dw, db) and the plan's path, each output's poisoned
/// tail checked.
fn run<I: Float, W: FilterGrad<I>>(
    device: &Device,
    arch: Option<PtxArch>,
    c: Case,
) -> Result<([f64; 3], ConvPath, [bool; 2]), Failed> {
    run_with::<I, W>(device, arch, c, None)
}

/// [`run`], with the Hopper path forced where `hopper` is given (`Conv2dDesc::hopper`).
fn run_with<I: Float, W: FilterGrad<I>>(
    device: &Device,
    arch: Option<PtxArch>,
    c: Case,
    hopper: Option<HopperOptions>,
) -> Result<([f64; 3], ConvPath, [bool; 2]), Failed> {
    let stream = device.default_stream();
    let mut rng = rand::rng();
    let desc = match hopper {
        Some(options) => c.desc(arch).hopper(options),
        None => c.desc(arch),
    };
    let x_h: Vec<I> = random(desc.input_len(), &mut rng);
    let w_h: Vec<I> = random(desc.filter_len(), &mut rng);
    let dy_h: Vec<I> = random(desc.output_len(), &mut rng);
    const TAIL: usize = 5;
    let upload = |v: &[I]| DeviceBuffer::from_slice(&stream, v).map_err(fail);
    let (x, w, dy) = (upload(&x_h)?, upload(&w_h)?, upload(&dy_h)?);
    let mut dx =
        DeviceBuffer::from_slice(&stream, &poisoned::<I>(desc.input_len() + TAIL)).map_err(fail)?;
    let mut dw = DeviceBuffer::from_slice(&stream, &poisoned::<W>(desc.filter_len() + TAIL))
        .map_err(fail)?;
    let mut db = DeviceBuffer::from_slice(&stream, &vec![f32::NAN; c.k]).map_err(fail)?;
    let mut dx_relu =
        DeviceBuffer::from_slice(&stream, &poisoned::<I>(desc.input_len() + TAIL)).map_err(fail)?;

    let mut plan = Conv2dGrad::<I, W>::new(&stream, desc).map_err(fail)?;
    plan.data(&stream, &dy, &w, &mut dx).map_err(fail)?;
    plan.filter(&stream, &x, &dy, &mut dw).map_err(fail)?;
    plan.bias(&stream, &dy, &mut db).map_err(fail)?;
    plan.data_through_relu(&stream, &dy, &w, &x, &mut dx_relu)
        .map_err(fail)?;

    let f = |v: &[I]| v.iter().map(|e| f64::from(e.to_f32())).collect::<Vec<_>>();
    let (x64, w64, dy64) = (f(&x_h), f(&w_h), f(&dy_h));
    let scale = |v: Vec<f64>| {
        v.into_iter()
            .map(|e| e * f64::from(c.alpha))
            .collect::<Vec<_>>()
    };
    let want_dx = scale(conv_ref::dgrad(&desc, &dy64, &w64));
    let want_dw = scale(conv_ref::wgrad(&desc, &x64, &dy64));
    let want_db = conv_ref::bgrad(&desc, &dy64);
    let want_dx_relu: Vec<f64> = want_dx
        .iter()
        .zip(&x64)
        .map(|(d, x)| if *x > 0.0 { *d } else { 0.0 })
        .collect();
    let dx_out = host(&stream, &dx)?;
    let dw_out = host(&stream, &dw)?;
    let db_out = host(&stream, &db)?;
    let dx_relu_out = host(&stream, &dx_relu)?;
    let ends = [
        ("dx", &dx_out, desc.input_len()),
        ("dw", &dw_out, desc.filter_len()),
        ("dx through ReLU", &dx_relu_out, desc.input_len()),
    ];
    for (what, out, len) in ends {
        ensure!(
            out[len..].iter().all(|v| v.is_nan()),
            "{c:?}: {what} was written past its end"
        );
    }
    let relu = rel_err(&c, "dx through ReLU", &dx_relu_out, &want_dx_relu)?;
    ensure!(
        relu < bound::<I>(),
        "{c:?}: dx through ReLU error {relu:.2e}"
    );
    let errors = [
        rel_err(&c, "dx", &dx_out, &want_dx)?,
        rel_err(&c, "dw", &dw_out, &want_dw)?,
        rel_err(&c, "db", &db_out, &want_db)?,
    ];
    let hopper = [plan.data_on_hopper(), plan.filter_on_hopper().is_some()];
    Ok((errors, plan.path(), hopper))
}

/// A buffer's contents as f64.
fn host<T: Float>(stream: &hikube_gpu::Stream, b: &DeviceBuffer<T>) -> Result<Vec<f64>, Failed> {
    let v = b.to_vec(stream).map_err(fail)?;
    Ok(v.iter().map(|e| f64::from(e.to_f32())).collect())
}

fn poisoned<T: Float>(n: usize) -> Vec<T> {
    vec![T::from_f32(f32::NAN); n]
}

/// ‖got − want‖ / ‖want‖ over want's length (the RMS floored at 1e-3), every element finite.
fn rel_err(c: &Case, what: &str, got: &[f64], want: &[f64]) -> Result<f64, Failed> {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (i, (g, v)) in got.iter().zip(want).enumerate() {
        ensure!(g.is_finite(), "{c:?}: {what}[{i}] = {g} (unwritten?)");
        num += (g - v) * (g - v);
        den += v * v;
    }
    Ok((num / den.max(want.len() as f64 * 1e-6)).sqrt())
}

fn grid<I: Float, W: FilterGrad<I>>(device: &Device, arch: Option<PtxArch>) -> Result<(), Failed> {
    let tensor_cores = arch.is_none() && device.compute_capability().major >= 8;
    let mut hopper_cases = 0;
    for c in cases() {
        let ([dx, dw, db], path, [on_hopper, _]) = run::<I, W>(device, arch, c)?;
        let dense8 = c.groups == 1 && c.c % 8 == 0 && c.k % 8 == 0;
        let f16_in = I::DTYPE == hikube_gpu::Dtype::F16;
        let cc = device.compute_capability();
        let want = match arch {
            None if tensor_cores && dense8 => ConvPath::Sm80,
            None if (cc.major, cc.minor) == (7, 5) && dense8 && f16_in => ConvPath::Sm75,
            Some(PtxArch::Compute80) if dense8 => ConvPath::Sm80,
            Some(PtxArch::Compute75) if dense8 && f16_in => ConvPath::Sm75,
            _ => ConvPath::Direct,
        };
        ensure!(path == want, "{c:?}: path {path:?}, expected {want:?}");
        // Stride-1 dgrad may run as the Hopper forward convolution of dy by the flipped filter;
        // the others stay on the implicit GEMM unless forced (hopper_phases).
        let may = tensor_cores && dense8 && c.stride == (1, 1) && c.pad.0 <= c.dil.0 * (c.r - 1);
        ensure!(!on_hopper || may, "{c:?}: dgrad on the Hopper forward");
        hopper_cases += usize::from(on_hopper);
        let (bx, bw) = (bound::<I>(), bound::<W>());
        ensure!(dx < bx, "{c:?} on {path:?}: dx error {dx:.2e} >= {bx:.0e}");
        ensure!(
            dw < bw.max(1e-4),
            "{c:?} on {path:?}: dw error {dw:.2e} >= {bw:.0e}"
        );
        ensure!(db < 1e-5, "{c:?}: db error {db:.2e}");
    }
    let hopper = tensor_cores && device.compute_capability().major == 9;
    ensure!(
        !hopper || hopper_cases > 0,
        "no stride-1 dgrad ran on the Hopper forward path"
    );
    Ok(())
}

/// The grid's dense shapes with the Hopper path forced (`Conv2dDesc::hopper`): every data
/// gradient on the Hopper forward kernel, the strided ones (and the stride-1 one padded past
/// the filter's reach) by phases, placed in dx, through the ReLU mask too, dy loaded by TMA
/// im2col; with the gather load forced, the phases stay on the implicit GEMM (and the stride-1
/// ones on the Hopper forward kernel gather dy).
fn hopper_phases<I: Float, W: FilterGrad<I>>(device: &Device) -> Result<(), Failed> {
    if device.compute_capability().major != 9 {
        return Ok(()); // the forced Hopper path is an error elsewhere (conv tests)
    }
    let mut phased = 0;
    let resnet = [
        case(2, 56, 56, 128, 128, 3, 3).stride(2, 2).pad(1, 1),
        case(2, 56, 56, 256, 512, 1, 1).stride(2, 2),
    ];
    let loads = [None, Some(ALoad::Gather)];
    for (c, a_load) in cases()
        .into_iter()
        .chain(resnet)
        .flat_map(|c| loads.map(|l| (c, l)))
    {
        if !(c.groups == 1 && c.c % 8 == 0 && c.k % 8 == 0) {
            continue;
        }
        let options = HopperOptions {
            a_load,
            ..Default::default()
        };
        let ([dx, _, _], path, [on_hopper, _]) = run_with::<I, W>(device, None, c, Some(options))?;
        let by_phases = c.stride != (1, 1) || c.pad.0 > c.dil.0 * (c.r - 1);
        let want = !(by_phases && a_load == Some(ALoad::Gather));
        ensure!(
            on_hopper == want,
            "{c:?} ({a_load:?}): dgrad on the Hopper forward path {on_hopper}, expected {want}"
        );
        phased += usize::from(by_phases && on_hopper);
        let bx = bound::<I>();
        ensure!(
            dx < bx,
            "{c:?} on {path:?} (phases, {a_load:?}): dx error {dx:.2e} >= {bx:.0e}"
        );
    }
    ensure!(
        phased >= 10,
        "{phased} dgrads ran by Hopper phases, expected 10"
    );
    Ok(())
}

/// The Hopper filter gradient (C a multiple of 64 on compute 9.0; the implicit GEMM elsewhere)
/// over pixel counts off its 64-pixel steps, K off its tiles, strides, dilation, R ≠ S, one
/// pixel, and a reduction long enough to split.
fn hopper_filter<I: Float, W: FilterGrad<I>>(device: &Device) -> Result<(), Failed> {
    let hopper = device.compute_capability().major == 9;
    let cases = [
        case(1, 1, 1, 64, 8, 1, 1),
        case(2, 7, 9, 64, 24, 3, 3).pad(1, 1),
        case(3, 13, 11, 64, 40, 3, 3).stride(2, 2).pad(1, 1),
        case(1, 15, 13, 128, 72, 3, 3).dilation(2, 2).pad(2, 2),
        case(2, 9, 10, 192, 264, 3, 1).stride(2, 1).pad(1, 0),
        case(2, 16, 16, 64, 16, 5, 5).stride(3, 3).pad(2, 2),
        case(1, 5, 5, 64, 8, 3, 3).stride(2, 2),
        case(8, 28, 28, 64, 64, 3, 3).pad(1, 1),
        case(2, 14, 14, 256, 512, 1, 1),
    ];
    for (i, mut c) in cases.into_iter().enumerate() {
        c.alpha = if i == 3 { 0.5 } else { 1.0 };
        let ([_, dw, _], path, [_, on_hopper]) = run::<I, W>(device, None, c)?;
        ensure!(
            on_hopper == hopper,
            "{c:?}: filter gradient on Hopper {on_hopper}, expected {hopper}"
        );
        let bw = bound::<W>().max(1e-4);
        ensure!(dw < bw, "{c:?} on {path:?}: dw error {dw:.2e} >= {bw:.0e}");
    }
    Ok(())
}

/// ResNet-50's distinct 3×3 and 1×1 layer shapes at batch 2 (the benches run batch 64).
fn resnet_layers(device: &Device) -> Result<(), Failed> {
    let layers = [
        case(2, 56, 56, 64, 64, 3, 3).pad(1, 1),
        case(2, 56, 56, 64, 256, 1, 1),
        case(2, 28, 28, 128, 128, 3, 3).pad(1, 1),
        case(2, 56, 56, 128, 128, 3, 3).stride(2, 2).pad(1, 1),
        case(2, 56, 56, 256, 512, 1, 1).stride(2, 2),
        case(2, 14, 14, 1024, 256, 1, 1),
        case(2, 7, 7, 512, 512, 3, 3).pad(1, 1),
    ];
    for c in layers {
        let ([dx, dw, db], path, _) = run::<f16, f32>(device, None, c)?;
        ensure!(
            dx < bound::<f16>() && dw < 1e-4 && db < 1e-5,
            "{c:?} on {path:?}: errors dx {dx:.2e}, dw {dw:.2e}, db {db:.2e}"
        );
    }
    Ok(())
}

/// The three gradients captured in one graph and replayed give what the launches gave.
fn graph_capture(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let mut rng = rand::rng();
    let desc = case(4, 28, 28, 64, 64, 3, 3).pad(1, 1).desc(None);
    let upload = |n: usize, rng: &mut _| {
        DeviceBuffer::from_slice(&stream, &random::<f16>(n, rng)).map_err(fail)
    };
    let x = upload(desc.input_len(), &mut rng)?;
    let w = upload(desc.filter_len(), &mut rng)?;
    let dy = upload(desc.output_len(), &mut rng)?;
    let mut plan = Conv2dGrad::<f16>::new(&stream, desc).map_err(fail)?;
    let mut want_dx = DeviceBuffer::<f16>::zeroed(&stream, desc.input_len()).map_err(fail)?;
    let mut want_dw = DeviceBuffer::<f32>::zeroed(&stream, desc.filter_len()).map_err(fail)?;
    plan.data(&stream, &dy, &w, &mut want_dx).map_err(fail)?;
    plan.filter(&stream, &x, &dy, &mut want_dw).map_err(fail)?;
    let dx = DeviceBuffer::<f16>::zeroed(&stream, desc.input_len()).map_err(fail)?;
    let dw = DeviceBuffer::<f32>::zeroed(&stream, desc.filter_len()).map_err(fail)?;
    let db = DeviceBuffer::<f32>::zeroed(&stream, desc.k).map_err(fail)?;
    let mut g = Graph::capture(
        &stream,
        (plan, x, w, dy, dx, dw, db),
        |s, (plan, x, w, dy, dx, dw, db)| {
            plan.data(s, dy, w, dx)?;
            plan.filter(s, x, dy, dw)?;
            plan.bias(s, dy, db)
        },
    )
    .map_err(fail)?;
    g.launch(&stream).map_err(fail)?;
    g.launch(&stream).map_err(fail)?;
    let (_, _, _, _, dx, dw, _) = g.into_resources().map_err(fail)?;
    let same = |a: Vec<u8>, b: Vec<u8>| a == b;
    let bytes16 = |v: Vec<f16>| bytemuck::cast_slice::<f16, u8>(&v).to_vec();
    let bytes32 = |v: Vec<f32>| bytemuck::cast_slice::<f32, u8>(&v).to_vec();
    ensure!(
        same(
            bytes16(dx.to_vec(&stream).map_err(fail)?),
            bytes16(want_dx.to_vec(&stream).map_err(fail)?)
        ) && same(
            bytes32(dw.to_vec(&stream).map_err(fail)?),
            bytes32(want_dw.to_vec(&stream).map_err(fail)?)
        ),
        "graph replay differs from the launches"
    );
    Ok(())
}

fn bad_input(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let base = Conv2dDesc::input(2, 8, 8, 16)
        .filters(32, 3, 3)
        .padding(1, 1);
    let r = Conv2dGrad::<f16>::new(&stream, base.activation(Activation::Relu));
    ensure!(
        matches!(r, Err(Error::InvalidArgument { .. })),
        "fused ReLU: {r:?}"
    );
    let r = Conv2dGrad::<f16>::new(&stream, Conv2dDesc::input(1, 4, 4, 8).filters(8, 7, 7));
    ensure!(
        matches!(r, Err(Error::InvalidDimension { .. })),
        "filter too large: {r:?}"
    );

    let mut plan = Conv2dGrad::<f16>::new(&stream, base).map_err(fail)?;
    let buf = |n: usize| DeviceBuffer::<f16>::zeroed(&stream, n).map_err(fail);
    let (x, w, dy) = (
        buf(base.input_len())?,
        buf(base.filter_len())?,
        buf(base.output_len())?,
    );
    let mut short_dx = buf(base.input_len() - 1)?;
    let r = plan.data(&stream, &dy, &w, &mut short_dx);
    ensure!(
        matches!(r, Err(Error::BufferTooSmall { .. })),
        "short dx: {r:?}"
    );
    let short_dy = buf(base.output_len() - 1)?;
    let mut dw = DeviceBuffer::<f32>::zeroed(&stream, base.filter_len()).map_err(fail)?;
    let r = plan.filter(&stream, &x, &short_dy, &mut dw);
    ensure!(
        matches!(r, Err(Error::BufferTooSmall { .. })),
        "short dy: {r:?}"
    );
    let mut db = DeviceBuffer::<f32>::zeroed(&stream, base.k + 1).map_err(fail)?;
    let r = plan.bias(&stream, &dy, &mut db);
    ensure!(
        matches!(r, Err(Error::ShapeMismatch { .. })),
        "db of K + 1: {r:?}"
    );
    // Misaligned operands on the tensor-core path: a typed error, not a fault.
    if plan.path() == ConvPath::Sm80 {
        let big = buf(base.output_len() + 1)?;
        let dy_off = big.slice(1..).map_err(fail)?;
        let mut dx = buf(base.input_len())?;
        let r = plan.data(&stream, &dy_off, &w, &mut dx);
        ensure!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "misaligned dy: {r:?}"
        );
    }
    stream.synchronize().map_err(fail)?;
    Ok(())
}
