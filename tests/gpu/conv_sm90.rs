//! The Hopper path of `ops::conv2d` (forced with `Conv2dDesc::hopper`) against an f64 direct convolution
//! on the CPU, computed from the stored (rounded) inputs: ResNet-50's 3x3 layers at small batch,
//! odd sizes, strides, paddings, dilation, 1x1 and 7x7 filters, K not a multiple of any tile,
//! C = 8, bias and ReLU on and off, f16 and bf16, every A-operand load, every tile variant,
//! split-K, and persistent blocks walking several tiles. Outputs are poisoned (NaN) before each launch. Off Hopper the plan must refuse with
//! `UnsupportedArch`.

use crate::{conv_ref, ensure, fail, gpu_test};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::ops::conv2d::{ALoad, Conv2d, Conv2dDesc, ConvPath, HopperOptions};
use hikube_gpu::ops::{Activation, Epilogue};
use hikube_gpu::{ComputeCapability, Device, DeviceBuffer, Error, Float, Stream};
use libtest_mimic::{Failed, Trial};
use rand::Rng;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu_test("conv_sm90::f16_shapes", shapes::<f16>),
        gpu_test("conv_sm90::bf16_shapes", shapes::<bf16>),
        gpu_test("conv_sm90::every_tile_and_split", every_tile_and_split),
        gpu_test("conv_sm90::bad_inputs_are_typed_errors", bad_inputs),
    ]
}

fn hopper(device: &Device) -> bool {
    device.compute_capability() == ComputeCapability::new(9, 0)
}

fn cases() -> Vec<Conv2dDesc> {
    let c = |n, h, w, ch, k, r, s| Conv2dDesc::input(n, h, w, ch).filters(k, r, s);
    vec![
        // ResNet-50's 3x3 layers, small batch (the last one goes through split-K).
        c(1, 56, 56, 64, 64, 3, 3).padding(1, 1),
        c(2, 28, 28, 128, 128, 3, 3).padding(1, 1),
        c(1, 14, 14, 256, 256, 3, 3).padding(1, 1),
        c(2, 7, 7, 512, 512, 3, 3).padding(1, 1),
        // Odd sizes, K not a multiple of the tile, C below one 64-channel slice.
        c(3, 13, 17, 24, 40, 3, 3).padding(1, 1),
        c(5, 9, 7, 16, 33, 3, 3).padding(1, 1),
        c(1, 6, 6, 16, 1, 3, 3).padding(1, 1),
        c(1, 5, 3, 8, 8, 3, 3).padding(1, 1),
        // Stride 2, padding 0 and 3, dilation 2, mixed per axis.
        c(2, 15, 16, 32, 72, 3, 3).stride(2, 2).padding(1, 1),
        c(1, 9, 11, 16, 16, 3, 3),
        c(1, 12, 12, 64, 96, 3, 3).padding(2, 2).dilation(2, 2),
        c(2, 11, 13, 24, 20, 3, 5)
            .stride(1, 2)
            .padding(0, 1)
            .dilation(2, 1),
        // 1x1 (and its stride-2 downsampling form), C = 72 (a partial second slice).
        c(2, 14, 14, 64, 256, 1, 1),
        c(1, 14, 14, 128, 136, 1, 1).stride(2, 2),
        c(3, 5, 7, 72, 24, 1, 1),
        // The ResNet stem with C padded from 3 to 8.
        c(2, 32, 30, 8, 64, 7, 7).stride(2, 2).padding(3, 3),
    ]
}

fn random<T: Float>(len: usize) -> Vec<T> {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| T::from_f32(rng.random_range(-1.0f32..1.0)))
        .collect()
}

/// y = act(conv(x, w) + bias) in f64, NHWC / KRSC (`tests/support/conv_ref.rs`).
fn reference<T: Float>(
    s: &Conv2dDesc,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    relu: bool,
) -> Vec<f64> {
    let f = |v: &[T]| v.iter().map(|e| f64::from(e.to_f32())).collect::<Vec<_>>();
    let mut y = conv_ref::forward(s, &f(x), &f(w));
    for (i, o) in y.iter_mut().enumerate() {
        if let Some(b) = bias {
            *o += f64::from(b[i % s.k].to_f32());
        }
        if relu {
            *o = o.max(0.0);
        }
    }
    y
}

fn tolerance<T: Float>() -> f64 {
    if T::SUFFIX == "bf16" {
        1e-2
    } else {
        2e-3
    }
}

/// Runs `plan` on fresh inputs and compares with the reference; returns the relative error.
fn run_case<T: Float>(
    device: &Device,
    s: Conv2dDesc,
    options: HopperOptions,
    bias_on: bool,
    relu: bool,
) -> Result<(), Failed> {
    let stream = device.default_stream();
    let x = random::<T>(s.input_len());
    let w = random::<T>(s.filter_len());
    let b = random::<T>(s.k);
    let want = reference(&s, &x, &w, bias_on.then_some(&b[..]), relu);
    let dx = DeviceBuffer::from_slice(&stream, &x).map_err(fail)?;
    let dw = DeviceBuffer::from_slice(&stream, &w).map_err(fail)?;
    let db = DeviceBuffer::from_slice(&stream, &b).map_err(fail)?;
    let mut dy = DeviceBuffer::<T>::alloc(&stream, s.output_len()).map_err(fail)?;
    dy.fill(&stream, T::from_f32(f32::NAN)).map_err(fail)?;
    let act = if relu {
        Activation::Relu
    } else {
        Activation::None
    };
    let mut plan = Conv2d::<T, T>::new(&stream, s.hopper(options).activation(act)).map_err(fail)?;
    ensure!(
        plan.path() == ConvPath::Sm90,
        "{s:?}: path {:?}",
        plan.path()
    );
    let epilogue = if bias_on {
        Epilogue::new().bias(&db)
    } else {
        Epilogue::new()
    };
    plan.launch(&stream, &dx, &dw, &mut dy, epilogue)
        .map_err(fail)?;
    let got = dy.to_vec(&stream).map_err(fail)?;
    let (mut num, mut den) = (0f64, 0f64);
    for (g, r) in got.iter().zip(&want) {
        let g = f64::from(g.to_f32());
        num += (g - r) * (g - r);
        den += r * r;
    }
    let err = (num / den.max(1e-30)).sqrt();
    ensure!(
        err < tolerance::<T>(),
        "{} {s:?} {options:?} (chose {:?}) bias={bias_on} relu={relu}: relative error {err:e}",
        T::SUFFIX,
        plan.hopper_choices()
    );
    Ok(())
}

/// A plan forced onto the Hopper path with the plan's own choices.
fn forced<I: Float, O: Float>(stream: &Stream, s: Conv2dDesc) -> hikube_gpu::Result<Conv2d<I, O>> {
    Conv2d::<I, O>::new(stream, s.hopper(HopperOptions::default()))
}

fn shapes<T: Float>(device: &Device) -> Result<(), Failed> {
    if !hopper(device) {
        let s = Conv2dDesc::input(1, 8, 8, 8).filters(8, 3, 3);
        ensure!(
            matches!(
                forced::<T, T>(&device.default_stream(), s),
                Err(Error::UnsupportedArch { .. })
            ),
            "off Hopper the plan must refuse with UnsupportedArch"
        );
        return Ok(());
    }
    for (i, s) in cases().into_iter().enumerate() {
        let (bias_on, relu) = (i % 2 == 0, i % 3 != 1);
        for a_load in [
            None,
            Some(ALoad::Im2col),
            Some(ALoad::Gather),
            Some(ALoad::Packed),
        ] {
            let options = HopperOptions {
                a_load,
                ..Default::default()
            };
            run_case::<T>(device, s, options, bias_on, relu)?;
        }
    }
    Ok(())
}

fn every_tile_and_split(device: &Device) -> Result<(), Failed> {
    if !hopper(device) {
        return Ok(());
    }
    let s = Conv2dDesc::input(3, 10, 9, 72)
        .filters(300, 3, 3)
        .padding(1, 1);
    for (block_n, blocks) in [(64, 1), (64, 2), (128, 1), (256, 1)] {
        for (splits, grid_blocks) in [(1, None), (3, None), (1, Some(2)), (2, Some(3))] {
            for a_load in [ALoad::Im2col, ALoad::Gather, ALoad::Packed] {
                let options = HopperOptions {
                    a_load: Some(a_load),
                    block_n: Some(block_n),
                    blocks_per_sm: Some(blocks),
                    splits: Some(splits),
                    grid_blocks,
                };
                run_case::<f16>(device, s, options, true, splits == 1)?;
            }
        }
    }
    // Persistent blocks over a larger grid of tiles, both types, every load.
    let s = Conv2dDesc::input(4, 23, 19, 64)
        .filters(72, 3, 3)
        .padding(1, 1);
    for grid_blocks in [Some(1), Some(5), Some(usize::MAX)] {
        for a_load in [ALoad::Im2col, ALoad::Gather, ALoad::Packed] {
            let options = HopperOptions {
                a_load: Some(a_load),
                grid_blocks,
                ..Default::default()
            };
            run_case::<f16>(device, s, options, false, true)?;
            run_case::<bf16>(device, s, options, true, false)?;
        }
    }
    Ok(())
}

fn bad_inputs(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let ok = Conv2dDesc::input(1, 8, 8, 16)
        .filters(16, 3, 3)
        .padding(1, 1);
    ensure!(
        matches!(
            forced::<f32, f32>(&stream, ok),
            Err(Error::UnsupportedDtype { .. } | Error::UnsupportedArch { .. })
        ),
        "f32 is refused"
    );
    if !hopper(device) {
        return Ok(());
    }
    let kind = |r: &hikube_gpu::Result<Conv2d<f16, f16>>| match r {
        Err(Error::InvalidArgument { .. }) => "InvalidArgument",
        Err(Error::InvalidDimension { .. }) => "InvalidDimension",
        Err(_) => "another error",
        Ok(_) => "Ok",
    };
    let bad = [
        (
            Conv2dDesc::input(1, 8, 8, 3).filters(16, 3, 3),
            "InvalidArgument",
            "C = 3",
        ),
        (
            Conv2dDesc::input(1, 8, 8, 12).filters(16, 3, 3),
            "InvalidArgument",
            "C = 12",
        ),
        (
            Conv2dDesc::input(1, 8, 8, 16).filters(16, 3, 3).groups(16),
            "InvalidArgument",
            "depthwise",
        ),
        (
            Conv2dDesc::input(1, 2, 2, 16).filters(16, 3, 3),
            "InvalidDimension",
            "filter past the input",
        ),
        (
            Conv2dDesc::input(1, 8, 8, 16).filters(0, 3, 3),
            "InvalidDimension",
            "K = 0",
        ),
    ];
    for (s, expected, what) in bad {
        let got = kind(&forced::<f16, f16>(&stream, s));
        ensure!(got == expected, "{what}: {got}, expected {expected}");
    }
    let f32_out = forced::<f16, f32>(&stream, ok);
    ensure!(
        matches!(f32_out, Err(Error::InvalidArgument { .. })),
        "the Hopper path writes its input type: {:?}",
        f32_out.map(|p| p.path())
    );
    let im2col = HopperOptions {
        a_load: Some(ALoad::Im2col),
        ..Default::default()
    };
    let stride9 = Conv2d::<f16, f16>::new(&stream, ok.stride(9, 9).hopper(im2col));
    ensure!(
        kind(&stride9) == "InvalidArgument",
        "im2col cannot take stride 9"
    );
    let mut plan = forced::<f16, f16>(&stream, ok).map_err(fail)?;
    ensure!(
        plan.path() == ConvPath::Sm90,
        "forced path {:?}",
        plan.path()
    );
    let x = DeviceBuffer::<f16>::zeroed(&stream, ok.input_len() + 8).map_err(fail)?;
    let w = DeviceBuffer::<f16>::zeroed(&stream, ok.filter_len()).map_err(fail)?;
    let short = DeviceBuffer::<f16>::zeroed(&stream, ok.filter_len() - 1).map_err(fail)?;
    let mut y = DeviceBuffer::<f16>::zeroed(&stream, ok.output_len()).map_err(fail)?;
    let r = plan.launch(&stream, &x, &short, &mut y, Epilogue::new());
    ensure!(
        matches!(r, Err(Error::BufferTooSmall { .. })),
        "short w: {r:?}"
    );
    let shifted = x.slice(1..).map_err(fail)?;
    let r = plan.launch(&stream, &shifted, &w, &mut y, Epilogue::new());
    ensure!(
        matches!(r, Err(Error::InvalidArgument { .. })),
        "misaligned x: {r:?}"
    );
    plan.launch(&stream, &x, &w, &mut y, Epilogue::new())
        .map_err(fail)?;
    stream.synchronize().map_err(fail)?;
    Ok(())
}
