//! Device and pinned memory: round trips, fills, sub-slices, ndarray, and the errors.

use crate::{ensure, fail, gpu_test};
use bytemuck::{Pod, Zeroable};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::ndarray::{Array2, Array4, ShapeBuilder};
use hikube_gpu::{Device, DeviceBuffer, Error, PinnedBuffer};
use libtest_mimic::{Failed, Trial};
use rand::Rng;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu_test("memory::round_trip_random", round_trip_random),
        gpu_test("memory::zeroed_and_fill", zeroed_and_fill),
        gpu_test("memory::sub_slices", sub_slices),
        gpu_test("memory::copy_device_to_device", copy_device_to_device),
        gpu_test("memory::pinned_async_round_trip", pinned_async_round_trip),
        gpu_test("memory::ndarray_round_trip", ndarray_round_trip),
        gpu_test("memory::length_mismatch", length_mismatch),
        gpu_test(
            "memory::out_of_memory_beyond_total",
            out_of_memory_beyond_total,
        ),
        gpu_test(
            "memory::out_of_memory_beyond_free",
            out_of_memory_beyond_free,
        ),
        gpu_test("memory::empty_buffers", empty_buffers),
        gpu_test("memory::vec_pinned_in_place", vec_pinned_in_place),
    ]
}

const SIZES: [usize; 6] = [1, 2, 7, 4097, 65_537, 1_000_003];

fn random_vec<T>(n: usize, f: impl Fn(f32) -> T) -> Vec<T> {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| f(rng.random_range(-100.0f32..100.0)))
        .collect()
}

fn round_trip<T: Pod + PartialEq + std::fmt::Debug>(
    device: &Device,
    data: &[T],
) -> Result<(), Failed> {
    let stream = device.default_stream();
    let buf = DeviceBuffer::from_slice(&stream, data).map_err(fail)?;
    ensure!(buf.len() == data.len(), "len");
    let back = buf.to_vec(&stream).map_err(fail)?;
    ensure!(
        back == data,
        "{} elements of {} came back different",
        data.len(),
        std::any::type_name::<T>()
    );
    Ok(())
}

fn round_trip_random(device: &Device) -> Result<(), Failed> {
    for n in SIZES {
        round_trip(device, &random_vec(n, |x| x))?;
        round_trip(device, &random_vec(n, f16::from_f32))?;
        round_trip(device, &random_vec(n, bf16::from_f32))?;
        round_trip(device, &random_vec(n, |x| x as u8))?;
        round_trip(device, &random_vec(n, |x| f64::from(x) * 1e-3))?;
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
struct Rgb {
    r: f32,
    g: f32,
    b: f32,
}

fn fill_case<T: Pod + PartialEq + std::fmt::Debug>(
    device: &Device,
    n: usize,
    poison: T,
    value: T,
) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let mut buf = DeviceBuffer::from_slice(&stream, &vec![poison; n]).map_err(fail)?;
    buf.fill(&stream, value).map_err(fail)?;
    let back = buf.to_vec(&stream).map_err(fail)?;
    let bad = back.iter().position(|v| *v != value);
    ensure!(
        bad.is_none(),
        "fill of {n} {}: element {bad:?} not written",
        std::any::type_name::<T>()
    );
    Ok(())
}

fn zeroed_and_fill(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    for n in SIZES {
        // Poison the memory first, free it, then ask for zeroed memory of the same size.
        drop(DeviceBuffer::from_slice(&stream, &vec![0xABu8; n * 4]).map_err(fail)?);
        let z = DeviceBuffer::<f32>::zeroed(&stream, n).map_err(fail)?;
        ensure!(
            z.to_vec(&stream).map_err(fail)?.iter().all(|&v| v == 0.0),
            "zeroed({n})"
        );
        fill_case(device, n, 0xEEu8, 0x5Au8)?;
        fill_case(device, n, f16::NAN, f16::from_f32(-1.5))?;
        fill_case(device, n, f32::NAN, 3.25f32)?;
        fill_case(device, n, f64::NAN, -2.0e300f64)?;
        let rgb = Rgb {
            r: 0.25,
            g: -7.0,
            b: 1e-3,
        };
        fill_case(
            device,
            n,
            Rgb {
                r: f32::NAN,
                g: f32::NAN,
                b: f32::NAN,
            },
            rgb,
        )?;
    }
    Ok(())
}

fn sub_slices(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let n = 10_007;
    let data = random_vec(n, |x| x);
    let mut buf = DeviceBuffer::from_slice(&stream, &data).map_err(fail)?;
    let (a, b) = (1234, 5678);
    buf.slice_mut(a..b)
        .map_err(fail)?
        .fill(&stream, -1.0)
        .map_err(fail)?;
    let mut expect = data.clone();
    expect[a..b].iter_mut().for_each(|v| *v = -1.0);
    ensure!(
        buf.to_vec(&stream).map_err(fail)? == expect,
        "slice_mut fill wrote outside its range"
    );
    let part = buf
        .slice(b..)
        .map_err(fail)?
        .to_vec(&stream)
        .map_err(fail)?;
    ensure!(part == expect[b..], "slice read");
    let mut other = DeviceBuffer::<f32>::zeroed(&stream, 100).map_err(fail)?;
    other
        .copy_from(&stream, &buf.slice(a - 50..a + 50).map_err(fail)?)
        .map_err(fail)?;
    ensure!(
        other.to_vec(&stream).map_err(fail)? == expect[a - 50..a + 50],
        "slice copy"
    );
    match buf.slice(n - 1..n + 1) {
        Err(Error::OutOfBounds { start, end, len }) => {
            ensure!(
                (start, end, len) == (n - 1, n + 1, n),
                "numbers {start} {end} {len}"
            )
        }
        other => {
            return Err(format!("out-of-bounds slice gave {:?}", other.map(|s| s.len())).into())
        }
    }
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = buf.slice_mut(10..5).map(|s| s.len());
    ensure!(
        matches!(reversed, Err(Error::OutOfBounds { .. })),
        "reversed range: {reversed:?}"
    );
    Ok(())
}

fn copy_device_to_device(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let data = random_vec(1 << 20, bf16::from_f32);
    let src = DeviceBuffer::from_slice(&stream, &data).map_err(fail)?;
    let mut dst = DeviceBuffer::from_slice(&stream, &vec![bf16::NAN; data.len()]).map_err(fail)?;
    dst.copy_from(&stream, &src).map_err(fail)?;
    let back = dst.to_vec(&stream).map_err(fail)?;
    ensure!(
        back.iter()
            .zip(&data)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "D2D copy differs"
    );
    Ok(())
}

fn pinned_async_round_trip(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    let n = 3_000_017;
    let data = random_vec(n, |x| x);
    let host = PinnedBuffer::from_slice(device, &data).map_err(fail)?;
    let mut gpu = DeviceBuffer::<f32>::alloc(&stream, n).map_err(fail)?;
    gpu.copy_from_pinned(&stream, &host).map_err(fail)?;
    let mut back = PinnedBuffer::<f32>::zeroed(device, n).map_err(fail)?;
    back.as_mut_slice().map_err(fail)?.fill(f32::NAN);
    gpu.copy_to_pinned(&stream, &mut back).map_err(fail)?;
    drop(host); // waits for the upload, which may still be running
    ensure!(
        back.as_slice().map_err(fail)? == data,
        "pinned round trip differs"
    );
    Ok(())
}

fn ndarray_round_trip(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let mut rng = rand::rng();
    let a = Array2::from_shape_fn((37, 53), |_| rng.random_range(-1.0f32..1.0));
    let gpu = DeviceBuffer::from_array(&stream, &a).map_err(fail)?;
    ensure!(
        gpu.to_array2(&stream, (37, 53)).map_err(fail)? == a,
        "Array2 round trip"
    );
    // A transposed (non-standard layout) view goes up in row-major order of its own shape.
    let t = DeviceBuffer::from_array(&stream, &a.t()).map_err(fail)?;
    ensure!(
        t.to_array2(&stream, (53, 37)).map_err(fail)? == a.t(),
        "transposed view"
    );
    // A column-major array too.
    let f =
        Array2::from_shape_vec((3, 4).f(), (0..12).map(|x| x as f32).collect()).map_err(fail)?;
    let g = DeviceBuffer::from_array(&stream, &f).map_err(fail)?;
    ensure!(
        g.to_array2(&stream, (3, 4)).map_err(fail)? == f,
        "column-major array"
    );
    let x = Array4::from_shape_fn((2, 5, 7, 3), |(n, h, w, c)| {
        f16::from_f32((n * 1000 + h * 100 + w * 10 + c) as f32)
    });
    let gx = DeviceBuffer::from_array(&stream, &x).map_err(fail)?;
    ensure!(
        gx.to_array4(&stream, (2, 5, 7, 3)).map_err(fail)? == x,
        "Array4 round trip"
    );
    match gx.to_array2(&stream, (7, 31)) {
        Err(Error::ShapeMismatch {
            shape,
            expected,
            actual,
        }) => {
            ensure!(
                shape == [7, 31] && expected == 217 && actual == 210,
                "numbers"
            );
        }
        other => return Err(format!("wrong shape gave {other:?}").into()),
    }
    Ok(())
}

fn length_mismatch(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let mut a = DeviceBuffer::<f32>::zeroed(&stream, 10).map_err(fail)?;
    let b = DeviceBuffer::<f32>::zeroed(&stream, 11).map_err(fail)?;
    let check =
        |r: hikube_gpu::Result<()>, what: &str, exp: usize, act: usize| -> Result<(), Failed> {
            match r {
                Err(Error::LengthMismatch { expected, actual }) => {
                    ensure!(
                        (expected, actual) == (exp, act),
                        "{what}: numbers {expected} {actual}"
                    );
                    Ok(())
                }
                other => Err(format!("{what} gave {other:?}").into()),
            }
        };
    check(a.copy_from(&stream, &b), "device copy", 10, 11)?;
    check(a.copy_from_host(&stream, &[0.0; 9]), "host upload", 10, 9)?;
    check(
        b.copy_to_host(&stream, &mut [0.0; 10]),
        "host download",
        10,
        11,
    )?;
    let pinned = PinnedBuffer::<f32>::zeroed(device, 12).map_err(fail)?;
    check(
        a.copy_from_pinned(&stream, &pinned),
        "pinned upload",
        10,
        12,
    )?;
    ensure!(
        a.to_vec(&stream).map_err(fail)? == [0.0; 10],
        "a failed copy wrote something"
    );
    Ok(())
}

fn out_of_memory_beyond_total(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let total = device.properties().total_memory;
    match DeviceBuffer::<u8>::alloc(&stream, total + 1) {
        Err(Error::OutOfMemory {
            requested,
            free,
            total: t,
        }) => {
            ensure!(
                requested == total + 1 && t == total && free <= total,
                "numbers"
            );
        }
        other => return Err(format!("alloc beyond total gave {other:?}").into()),
    }
    // A byte size that overflows is a bad argument, not a lack of memory.
    match DeviceBuffer::<f64>::alloc(&stream, usize::MAX / 4) {
        Err(Error::InvalidArgument { what }) if what.contains("len") => {}
        other => return Err(format!("size overflow gave {other:?}").into()),
    }
    Ok(())
}

fn out_of_memory_beyond_free(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let info = device.memory_info().map_err(fail)?;
    // More than is free but no more than the device has: the driver itself must refuse it.
    let ask = (info.free + (info.total - info.free) / 2 + (64 << 20)).min(info.total);
    match DeviceBuffer::<u8>::alloc(&stream, ask) {
        Err(Error::OutOfMemory {
            requested, total, ..
        }) => {
            ensure!(requested == ask && total == info.total, "numbers");
        }
        other => {
            return Err(format!("alloc of {ask} with {} free gave {other:?}", info.free).into())
        }
    }
    // The device stays usable.
    let ok = DeviceBuffer::from_slice(&stream, &[1.0f32, 2.0]).map_err(fail)?;
    ensure!(
        ok.to_vec(&stream).map_err(fail)? == [1.0, 2.0],
        "device unusable after OOM"
    );
    Ok(())
}

fn empty_buffers(device: &Device) -> Result<(), Failed> {
    let stream = device.default_stream();
    let mut e = DeviceBuffer::<f32>::zeroed(&stream, 0).map_err(fail)?;
    ensure!(
        e.is_empty() && e.to_vec(&stream).map_err(fail)?.is_empty(),
        "empty"
    );
    e.fill(&stream, 1.0).map_err(fail)?;
    let pinned = PinnedBuffer::<f32>::zeroed(device, 0).map_err(fail)?;
    e.copy_from_pinned(&stream, &pinned).map_err(fail)?;
    stream.synchronize().map_err(fail)?;
    Ok(())
}

/// `PinnedBuffer::from_vec` pins a `Vec` in place: copies from and into it are right, and
/// `into_vec` waits for them and gives the memory back (an empty `Vec` too); a driver-allocated
/// buffer is no `Vec`.
fn vec_pinned_in_place(device: &Device) -> Result<(), Failed> {
    let stream = device.new_stream().map_err(fail)?;
    for n in [0usize, 1, 4097, 10_000_019] {
        let data: Vec<u32> = (0..n as u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        let src = PinnedBuffer::from_vec(device, data.clone()).map_err(fail)?;
        let mut gpu = DeviceBuffer::<u32>::alloc(&stream, n).map_err(fail)?;
        gpu.copy_from_pinned(&stream, &src).map_err(fail)?;
        let mut dst = PinnedBuffer::from_vec(device, vec![u32::MAX; n]).map_err(fail)?;
        gpu.copy_to_pinned(&stream, &mut dst).map_err(fail)?;
        // No synchronize: into_vec waits for the copies.
        let back = dst.into_vec().map_err(fail)?;
        ensure!(back == data, "n = {n}: the copy back differs");
        let again = src.into_vec().map_err(fail)?;
        ensure!(again == data, "n = {n}: the source changed");
    }
    let driver = PinnedBuffer::<u32>::zeroed(device, 16).map_err(fail)?;
    ensure!(
        matches!(driver.into_vec(), Err(Error::InvalidArgument { .. })),
        "into_vec of driver memory was not refused"
    );
    Ok(())
}
