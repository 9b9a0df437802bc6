//! The Hopper implicit-GEMM convolution (`ops::conv2d_sm90`) against an f64 direct convolution
//! on the CPU, computed from the stored (rounded) inputs: ResNet-50's 3x3 layers at small batch,
//! odd sizes, strides, paddings, dilation, 1x1 and 7x7 filters, K not a multiple of any tile,
//! C = 8, bias and ReLU on and off, f16 and bf16, every A-operand load, every tile variant,
//! split-K, and persistent blocks walking several tiles. Outputs are poisoned (NaN) before each launch. Off Hopper the plan must refuse with
//! `UnsupportedArch`.

use crate::{ensure, fail, gpu_test};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::ops::conv2d_sm90::{ALoad, Conv2dShape, Conv2dSm90, Conv2dSm90Options};
use hikube_gpu::{ComputeCapability, Device, DeviceBuffer, Error, Float};
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

fn cases() -> Vec<Conv2dShape> {
    let c = Conv2dShape::new;
    vec![
        // ResNet-50's 3x3 layers, small batch (the last one goes through split-K).
        c(1, 56, 56, 64, 64, 3, 3).pad(1, 1),
        c(2, 28, 28, 128, 128, 3, 3).pad(1, 1),
        c(1, 14, 14, 256, 256, 3, 3).pad(1, 1),
        c(2, 7, 7, 512, 512, 3, 3).pad(1, 1),
        // Odd sizes, K not a multiple of the tile, C below one 64-channel slice.
        c(3, 13, 17, 24, 40, 3, 3).pad(1, 1),
        c(5, 9, 7, 16, 33, 3, 3).pad(1, 1),
        c(1, 6, 6, 16, 1, 3, 3).pad(1, 1),
        c(1, 5, 3, 8, 8, 3, 3).pad(1, 1),
        // Stride 2, padding 0 and 3, dilation 2, mixed per axis.
        c(2, 15, 16, 32, 72, 3, 3).stride(2, 2).pad(1, 1),
        c(1, 9, 11, 16, 16, 3, 3),
        c(1, 12, 12, 64, 96, 3, 3).pad(2, 2).dilation(2, 2),
        c(2, 11, 13, 24, 20, 3, 5)
            .stride(1, 2)
            .pad(0, 1)
            .dilation(2, 1),
        // 1x1 (and its stride-2 downsampling form), C = 72 (a partial second slice).
        c(2, 14, 14, 64, 256, 1, 1),
        c(1, 14, 14, 128, 136, 1, 1).stride(2, 2),
        c(3, 5, 7, 72, 24, 1, 1),
        // The ResNet stem with C padded from 3 to 8.
        c(2, 32, 30, 8, 64, 7, 7).stride(2, 2).pad(3, 3),
    ]
}

fn random<T: Float>(len: usize) -> Vec<T> {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| T::from_f32(rng.random_range(-1.0f32..1.0)))
        .collect()
}

/// y = act(conv(x, w) + bias) in f64, NHWC / KRSC.
fn reference<T: Float>(
    s: &Conv2dShape,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    relu: bool,
) -> Vec<f64> {
    let (p, q) = s.output_size().expect("valid shape");
    let xf: Vec<f64> = x.iter().map(|v| f64::from(v.to_f32())).collect();
    let wf: Vec<f64> = w.iter().map(|v| f64::from(v.to_f32())).collect();
    let mut y = vec![0f64; s.y_len()];
    for n in 0..s.n {
        for op in 0..p {
            for oq in 0..q {
                let out = &mut y[((n * p + op) * q + oq) * s.k..][..s.k];
                for r in 0..s.r {
                    let ih = (op * s.stride.0 + r * s.dilation.0) as isize - s.pad.0 as isize;
                    if ih < 0 || ih >= s.h as isize {
                        continue;
                    }
                    for t in 0..s.s {
                        let iw = (oq * s.stride.1 + t * s.dilation.1) as isize - s.pad.1 as isize;
                        if iw < 0 || iw >= s.w as isize {
                            continue;
                        }
                        let xp = &xf[((n * s.h + ih as usize) * s.w + iw as usize) * s.c..][..s.c];
                        for (k, o) in out.iter_mut().enumerate() {
                            let wk = &wf[((k * s.r + r) * s.s + t) * s.c..][..s.c];
                            *o += xp.iter().zip(wk).map(|(a, b)| a * b).sum::<f64>();
                        }
                    }
                }
                for (k, o) in out.iter_mut().enumerate() {
                    if let Some(b) = bias {
                        *o += f64::from(b[k].to_f32());
                    }
                    if relu {
                        *o = o.max(0.0);
                    }
                }
            }
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
    s: Conv2dShape,
    options: Conv2dSm90Options,
    bias_on: bool,
    relu: bool,
) -> Result<(), Failed> {
    let stream = device.default_stream();
    let x = random::<T>(s.x_len());
    let w = random::<T>(s.w_len());
    let b = random::<T>(s.k);
    let want = reference(&s, &x, &w, bias_on.then_some(&b[..]), relu);
    let dx = DeviceBuffer::from_slice(&stream, &x).map_err(fail)?;
    let dw = DeviceBuffer::from_slice(&stream, &w).map_err(fail)?;
    let db = DeviceBuffer::from_slice(&stream, &b).map_err(fail)?;
    let mut dy = DeviceBuffer::<T>::alloc(&stream, s.y_len()).map_err(fail)?;
    dy.fill(&stream, T::from_f32(f32::NAN)).map_err(fail)?;
    let mut plan = Conv2dSm90::<T>::with_options(&stream, s, options).map_err(fail)?;
    let bias = bias_on.then_some(&db as &dyn hikube_gpu::AsDeviceSlice<T>);
    plan.launch(&stream, &dx, &dw, bias, &mut dy, relu)
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
        "{} {s:?} {options:?} ({:?}, tiling {:?}) bias={bias_on} relu={relu}: relative error {err:e}",
        T::SUFFIX,
        plan.a_load(),
        plan.tiling()
    );
    Ok(())
}

fn shapes<T: Float>(device: &Device) -> Result<(), Failed> {
    if !hopper(device) {
        let s = Conv2dShape::new(1, 8, 8, 8, 8, 3, 3);
        ensure!(
            matches!(
                Conv2dSm90::<T>::check(device, &s),
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
            let options = Conv2dSm90Options {
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
    let s = Conv2dShape::new(3, 10, 9, 72, 300, 3, 3).pad(1, 1);
    for (block_n, blocks) in [(64, 1), (64, 2), (128, 1), (256, 1)] {
        for (splits, grid_blocks) in [(1, None), (3, None), (1, Some(2)), (2, Some(3))] {
            for a_load in [ALoad::Im2col, ALoad::Gather, ALoad::Packed] {
                let options = Conv2dSm90Options {
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
    let s = Conv2dShape::new(4, 23, 19, 64, 72, 3, 3).pad(1, 1);
    for grid_blocks in [Some(1), Some(5), Some(usize::MAX)] {
        for a_load in [ALoad::Im2col, ALoad::Gather, ALoad::Packed] {
            let options = Conv2dSm90Options {
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
    let ok = Conv2dShape::new(1, 8, 8, 16, 16, 3, 3).pad(1, 1);
    ensure!(
        matches!(
            Conv2dSm90::<f32>::check(device, &ok),
            Err(Error::UnsupportedDtype { .. } | Error::UnsupportedArch { .. })
        ),
        "f32 is refused"
    );
    if !hopper(device) {
        return Ok(());
    }
    let bad = [
        Conv2dShape::new(1, 8, 8, 3, 16, 3, 3),
        Conv2dShape::new(1, 8, 8, 12, 16, 3, 3),
        Conv2dShape::new(1, 2, 2, 16, 16, 3, 3),
    ];
    for s in bad {
        ensure!(
            matches!(
                Conv2dSm90::<f16>::check(device, &s),
                Err(Error::InvalidArgument { .. })
            ),
            "{s:?} must be refused with InvalidArgument"
        );
        ensure!(
            !Conv2dSm90::<f16>::supports(device, &s),
            "{s:?} is not supported"
        );
    }
    let zero = Conv2dShape::new(1, 8, 8, 16, 0, 3, 3);
    ensure!(
        matches!(
            Conv2dSm90::<f16>::check(device, &zero),
            Err(Error::InvalidDimension { .. })
        ),
        "K = 0 is an InvalidDimension"
    );
    ensure!(
        Conv2dSm90::<f16>::supports(device, &ok),
        "{ok:?} is supported"
    );
    let stream = device.default_stream();
    let forced = Conv2dSm90Options {
        a_load: Some(ALoad::Im2col),
        ..Default::default()
    };
    ensure!(
        matches!(
            Conv2dSm90::<f16>::with_options(&stream, ok.stride(9, 9), forced),
            Err(Error::InvalidArgument { .. })
        ),
        "im2col cannot take stride 9"
    );
    let mut plan = Conv2dSm90::<f16>::new(&stream, ok).map_err(fail)?;
    let x = DeviceBuffer::<f16>::zeroed(&stream, ok.x_len() + 8).map_err(fail)?;
    let w = DeviceBuffer::<f16>::zeroed(&stream, ok.w_len()).map_err(fail)?;
    let short = DeviceBuffer::<f16>::zeroed(&stream, ok.w_len() - 1).map_err(fail)?;
    let mut y = DeviceBuffer::<f16>::zeroed(&stream, ok.y_len()).map_err(fail)?;
    let r = plan.launch(&stream, &x, &short, None, &mut y, false);
    ensure!(
        matches!(r, Err(Error::BufferTooSmall { .. })),
        "short w: {r:?}"
    );
    let shifted = x.slice(1..).map_err(fail)?;
    let r = plan.launch(&stream, &shifted, &w, None, &mut y, false);
    ensure!(
        matches!(r, Err(Error::InvalidArgument { .. })),
        "misaligned x: {r:?}"
    );
    plan.launch(&stream, &x, &w, None, &mut y, false)
        .map_err(fail)?;
    stream.synchronize().map_err(fail)?;
    Ok(())
}
