//! Multi-GPU: device sets, topology, peer and staged copies, the copy-based all-reduce, NCCL
//! collectives (feature `nccl`) and the data-parallel step against an f64 CPU reference.
//!
//! Written for any number of GPUs; with one GPU (all the test machines lend), the multi-rank
//! paths run on a set that names the same GPU several times: peer and staged copies, the
//! copy-based all-reduce and the data-parallel step then really move data between distinct
//! buffers of distinct ranks, through the same code as on several GPUs. NCCL refuses two ranks
//! on one GPU, so with one GPU its collectives run on one rank, where they are trivial (a sum
//! of one buffer): that checks the API, the argument checks and the element types only. The
//! real multi-rank NCCL checks run where `Device::count() >= 2`, and the tests say which ran.

use crate::{ensure, fail, gpu_test};
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::multi::{
    CopyAllReduce, CopyPath, DataParallel, DataParallelConfig, DeviceSet, GradientSync, LinkKind,
    PeerCopy,
};
use hikube_gpu::{Device, DeviceBuffer, Error, Float};
use libtest_mimic::{Failed, Trial};
use rand::Rng;

pub fn trials() -> Vec<Trial> {
    let t = vec![
        gpu_test("multi::device_set_open", device_set_open),
        gpu_test("multi::device_set_errors", device_set_errors),
        gpu_test("multi::topology", topology),
        gpu_test("multi::peer_copy_round_trip", peer_copy_round_trip),
        gpu_test("multi::peer_copy_errors", peer_copy_errors),
        gpu_test("multi::copy_all_reduce", copy_all_reduce),
        gpu_test("multi::copy_all_reduce_errors", copy_all_reduce_errors),
        gpu_test(
            "multi::data_parallel_matches_cpu",
            data_parallel_matches_cpu,
        ),
        gpu_test(
            "multi::data_parallel_ranks_match_one_gpu",
            data_parallel_ranks_match_one_gpu,
        ),
    ];
    #[cfg(feature = "nccl")]
    let t = t.into_iter().chain(nccl::trials()).collect();
    t
}

const SIZES: [usize; 5] = [1, 7, 4097, 65_521, 1_000_003];

fn random<T: Float>(n: usize) -> Vec<T> {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| T::from_f32(rng.random_range(-1.0f32..1.0)))
        .collect()
}

/// ‖out − ref‖ / ‖ref‖.
fn rel_err(out: &[f64], reference: &[f64]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (o, r) in out.iter().zip(reference) {
        num += (o - r) * (o - r);
        den += r * r;
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

fn to_f64<T: Float>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| f64::from(x.to_f32())).collect()
}

/// A set of `ranks` ranks: every visible GPU once, then GPU 0 again if there are fewer GPUs.
fn set_of(device: &Device, ranks: usize) -> Result<DeviceSet, Failed> {
    let mut devices = vec![device.clone()];
    for i in 1..ranks {
        devices.push(if i < Device::count().map_err(fail)? {
            Device::open(i).map_err(fail)?
        } else {
            device.clone()
        });
    }
    DeviceSet::from_devices(devices).map_err(fail)
}

fn device_set_open(device: &Device) -> Result<(), Failed> {
    let uuid = device.properties().uuid.clone();
    let by_index = DeviceSet::open(&[0]).map_err(fail)?;
    let by_uuid = DeviceSet::by_uuids(&[&uuid.to_lowercase()]).map_err(fail)?;
    let all = DeviceSet::all().map_err(fail)?;
    ensure!(by_index.len() == 1 && by_uuid.len() == 1, "one rank each");
    ensure!(
        all.len() == Device::count().map_err(fail)?,
        "all() has every visible GPU"
    );
    ensure!(by_index.devices()[0] == *device, "index 0 is device 0");
    ensure!(by_uuid.devices()[0] == *device, "the UUID names device 0");
    ensure!(
        by_uuid.rank_of(device).map_err(fail)? == 0,
        "rank of device 0"
    );
    // One index twice: two ranks on one GPU, sharing the device.
    let twice = DeviceSet::open(&[0, 0]).map_err(fail)?;
    ensure!(twice.len() == 2, "two ranks");
    ensure!(twice.devices()[0] == twice.devices()[1], "same GPU");
    ensure!(twice.peer_access(0, 1), "a GPU reaches its own memory");
    ensure!(
        !twice.peer_access(0, 2),
        "out-of-range ranks have no access"
    );
    ensure!(
        matches!(
            twice.check_distinct(),
            Err(Error::DuplicateDevice {
                first: 0,
                second: 1,
                ..
            })
        ),
        "duplicates are reported"
    );
    by_index.check_distinct().map_err(fail)?;
    let streams = twice.new_streams().map_err(fail)?;
    ensure!(streams.len() == 2, "a stream per rank");
    twice.synchronize().map_err(fail)?;
    Ok(())
}

fn device_set_errors(_device: &Device) -> Result<(), Failed> {
    let count = Device::count().map_err(fail)?;
    ensure!(
        matches!(
            DeviceSet::from_devices(vec![]),
            Err(Error::InvalidArgument { .. })
        ),
        "empty set"
    );
    ensure!(
        matches!(
            DeviceSet::open(&[0, count]),
            Err(Error::DeviceIndexOutOfRange { index, .. }) if index == count
        ),
        "index past the last GPU"
    );
    ensure!(
        matches!(
            DeviceSet::by_uuids(&["GPU-00000000-0000-0000-0000-000000000000"]),
            Err(Error::DeviceNotFound { .. })
        ),
        "unknown UUID"
    );
    let set = DeviceSet::open(&[0]).map_err(fail)?;
    ensure!(
        matches!(
            set.device(1),
            Err(Error::DeviceIndexOutOfRange { index: 1, count: 1 })
        ),
        "rank past the set"
    );
    if count > 1 {
        let other = Device::open(1).map_err(fail)?;
        ensure!(
            matches!(set.rank_of(&other), Err(Error::NotInSet { ordinal: 1, .. })),
            "device 1 is not in {{0}}"
        );
    }
    Ok(())
}

fn topology(device: &Device) -> Result<(), Failed> {
    let set = set_of(device, 2)?;
    let topo = set.topology();
    println!("{topo}");
    ensure!(topo.devices.len() == 2 && topo.links.len() == 2, "2 ranks");
    ensure!(
        topo.devices[0].uuid == device.properties().uuid,
        "rank 0's UUID"
    );
    ensure!(
        topo.links[0][0].kind == LinkKind::SameDevice
            && topo.links[0][0].peer_enabled
            && topo.links[0][0].can_access_peer,
        "a rank to itself: {:?}",
        topo.links[0][0]
    );
    if set.devices()[0] == set.devices()[1] {
        ensure!(
            topo.links[0][1].kind == LinkKind::SameDevice,
            "two ranks on one GPU"
        );
    } else {
        ensure!(
            topo.links[0][1].kind != LinkKind::SameDevice,
            "two GPUs are not one"
        );
        ensure!(
            topo.links[0][1].peer_enabled == topo.links[0][1].can_access_peer,
            "peer access enabled wherever possible"
        );
    }
    // NVML is part of the driver: on a GPU machine it is there, and reports the NVLinks (0 on a
    // PCIe card, some on an SXM board).
    if topo.nvml_note.is_none() {
        ensure!(
            topo.devices[0].nvlinks_active.is_some(),
            "NVML present but no NVLink count"
        );
    }
    Ok(())
}

fn check_copy<T: Float + PartialEq + std::fmt::Debug>(
    copier: &mut PeerCopy,
    set: &DeviceSet,
    path: CopyPath,
    n: usize,
) -> Result<(), Failed> {
    let streams = set.new_streams().map_err(fail)?;
    let last = set.len() - 1;
    let data: Vec<T> = random(n);
    let src = DeviceBuffer::from_slice(&streams[0], &data).map_err(fail)?;
    let mut dst =
        DeviceBuffer::from_slice(&streams[last], &vec![T::from_f32(f32::NAN); n]).map_err(fail)?;
    let taken = copier
        .copy(path, &streams[0], &src, &streams[last], &mut dst)
        .map_err(fail)?;
    ensure!(
        path == CopyPath::Auto || taken == path,
        "asked {path:?}, took {taken:?}"
    );
    // And back, into a poisoned buffer on rank 0, through the other direction.
    let mut back =
        DeviceBuffer::from_slice(&streams[0], &vec![T::from_f32(f32::NAN); n]).map_err(fail)?;
    copier
        .copy(path, &streams[last], &dst, &streams[0], &mut back)
        .map_err(fail)?;
    let got = back.to_vec(&streams[0]).map_err(fail)?;
    let bits = |v: &[T]| bytemuck::cast_slice::<T, u8>(v).to_vec();
    ensure!(
        bits(&got) == bits(&data),
        "{path:?} copy of {n} {} differs",
        T::SUFFIX
    );
    Ok(())
}

fn peer_copy_round_trip(device: &Device) -> Result<(), Failed> {
    let set = set_of(device, 2)?;
    let same = set.devices()[0] == set.devices()[1];
    // A small chunk, so that the staged copies cycle through the ring many times.
    let mut copier = PeerCopy::new(&set, 64 << 10).map_err(fail)?;
    let mut paths = vec![CopyPath::Auto, CopyPath::Peer, CopyPath::Staged];
    if same {
        paths.push(CopyPath::Device);
        ensure!(
            copier.auto_path(0, 1).map_err(fail)? == CopyPath::Device,
            "one GPU: Device"
        );
    }
    for path in paths {
        for n in SIZES {
            check_copy::<f32>(&mut copier, &set, path, n)?;
            check_copy::<f16>(&mut copier, &set, path, n)?;
            check_copy::<bf16>(&mut copier, &set, path, n)?;
        }
    }
    // An empty copy is nothing.
    let s = device.new_stream().map_err(fail)?;
    let a = DeviceBuffer::<f32>::alloc(&s, 0).map_err(fail)?;
    let mut b = DeviceBuffer::<f32>::alloc(&s, 0).map_err(fail)?;
    copier
        .copy(CopyPath::Staged, &s, &a, &s, &mut b)
        .map_err(fail)?;
    Ok(())
}

fn peer_copy_errors(device: &Device) -> Result<(), Failed> {
    let set = set_of(device, 2)?;
    ensure!(
        matches!(PeerCopy::new(&set, 0), Err(Error::InvalidArgument { .. })),
        "chunk 0"
    );
    let mut copier = PeerCopy::new(&set, 1 << 20).map_err(fail)?;
    for (from, to) in [(2, 0), (0, 2), (usize::MAX, 1)] {
        let r = copier.auto_path(from, to);
        ensure!(
            matches!(r, Err(Error::DeviceIndexOutOfRange { count: 2, .. })),
            "auto_path({from}, {to}) on 2 ranks: {r:?}"
        );
    }
    let s = device.new_stream().map_err(fail)?;
    let a = DeviceBuffer::from_slice(&s, &[1.0f32; 10]).map_err(fail)?;
    let mut b = DeviceBuffer::<f32>::alloc(&s, 11).map_err(fail)?;
    for path in [CopyPath::Auto, CopyPath::Peer, CopyPath::Staged] {
        ensure!(
            matches!(
                copier.copy(path, &s, &a, &s, &mut b),
                Err(Error::LengthMismatch {
                    expected: 11,
                    actual: 10
                })
            ),
            "{path:?}: lengths differ"
        );
    }
    if Device::count().map_err(fail)? > 1 {
        // A device outside the set, and a stream of another device than its buffer.
        let other = Device::open(1).map_err(fail)?;
        let solo = DeviceSet::from_devices(vec![device.clone()]).map_err(fail)?;
        let mut c = PeerCopy::new(&solo, 1 << 20).map_err(fail)?;
        let so = other.new_stream().map_err(fail)?;
        let mut o = DeviceBuffer::<f32>::alloc(&so, 10).map_err(fail)?;
        ensure!(
            matches!(
                c.copy(CopyPath::Auto, &s, &a, &so, &mut o),
                Err(Error::NotInSet { .. })
            ),
            "device 1 is not in the set"
        );
        ensure!(
            matches!(
                c.copy(CopyPath::Auto, &so, &a, &s, &mut b),
                Err(Error::WrongDevice { .. })
            ),
            "stream and buffer on different GPUs"
        );
        let two = DeviceSet::from_devices(vec![device.clone(), other]).map_err(fail)?;
        let mut c = PeerCopy::new(&two, 1 << 20).map_err(fail)?;
        ensure!(
            matches!(
                c.copy(CopyPath::Device, &s, &a, &so, &mut o),
                Err(Error::InvalidArgument { .. })
            ),
            "Device path between two GPUs"
        );
    }
    Ok(())
}

fn all_reduce_case<T: Float>(
    set: &DeviceSet,
    path: CopyPath,
    n: usize,
    bound: f64,
) -> Result<(), Failed> {
    let streams = set.new_streams().map_err(fail)?;
    let inputs: Vec<Vec<T>> = (0..set.len()).map(|_| random(n)).collect();
    let mut bufs = streams
        .iter()
        .zip(&inputs)
        .map(|(s, x)| DeviceBuffer::from_slice(s, x))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    let mut reducer = CopyAllReduce::<T>::new(set, 48 << 10)
        .map_err(fail)?
        .with_path(path);
    reducer.all_reduce_sum(&streams, &mut bufs).map_err(fail)?;
    // What the reducer computes, rounding for rounding: rank 0's buffer plus each other rank's,
    // in rank order, each sum in f32 rounded to T (the axpy kernel). Any rank that waited for
    // too little (a copy or an add out of order) differs from it, however the data cancel.
    let sequential: Vec<T> = (0..n)
        .map(|i| {
            let mut acc = inputs[0][i];
            for x in &inputs[1..] {
                acc = T::from_f32(acc.to_f32() + x[i].to_f32());
            }
            acc
        })
        .collect();
    // The f64 sum, and the error bound of a rounded sum: relative to Σ|x|, not to |Σx| (with
    // n = 1 and random signs the sum itself can be arbitrarily close to 0).
    let reference: Vec<f64> = (0..n)
        .map(|i| inputs.iter().map(|x| f64::from(x[i].to_f32())).sum())
        .collect();
    let magnitude: f64 = (0..n)
        .map(|i| {
            let m: f64 = inputs.iter().map(|x| f64::from(x[i].to_f32()).abs()).sum();
            m * m
        })
        .sum::<f64>()
        .sqrt();
    for (rank, (b, s)) in bufs.iter().zip(&streams).enumerate() {
        let out = b.to_vec(s).map_err(fail)?;
        let mismatch = out
            .iter()
            .zip(&sequential)
            .position(|(o, q)| o.to_f32().to_bits() != q.to_f32().to_bits());
        ensure!(
            mismatch.is_none(),
            "{path:?} {} n={n} rank {rank}: element {mismatch:?} is not the rank-order sum",
            T::SUFFIX
        );
        let got = to_f64(&out);
        let err: f64 = got
            .iter()
            .zip(&reference)
            .map(|(g, r)| (g - r) * (g - r))
            .sum::<f64>()
            .sqrt();
        let e = err / magnitude.max(f64::MIN_POSITIVE);
        ensure!(
            e <= bound,
            "{path:?} {} n={n} rank {rank}: error {e:.2e} of the inputs' magnitude > {bound:.0e}",
            T::SUFFIX
        );
    }
    Ok(())
}

fn copy_all_reduce(device: &Device) -> Result<(), Failed> {
    for ranks in [1, 2, 3] {
        let set = set_of(device, ranks)?;
        let mut paths = vec![CopyPath::Auto, CopyPath::Staged, CopyPath::Peer];
        if set.devices().iter().all(|d| d == device) {
            paths.push(CopyPath::Device);
        }
        for path in paths {
            for n in [1, 7, 4097, 300_007] {
                all_reduce_case::<f32>(&set, path, n, 1e-6)?;
                all_reduce_case::<f16>(&set, path, n, 2e-3)?;
                all_reduce_case::<bf16>(&set, path, n, 1.6e-2)?;
            }
        }
    }
    Ok(())
}

fn copy_all_reduce_errors(device: &Device) -> Result<(), Failed> {
    let set = set_of(device, 3)?;
    let streams = set.new_streams().map_err(fail)?;
    let mut r = CopyAllReduce::<f32>::new(&set, 1 << 20).map_err(fail)?;
    let mut two = streams[..2]
        .iter()
        .map(|s| DeviceBuffer::from_slice(s, &[1.0f32; 8]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    ensure!(
        matches!(
            r.all_reduce_sum(&streams, &mut two),
            Err(Error::RankCount {
                expected: 3,
                actual: 2
            })
        ),
        "2 buffers for 3 ranks"
    );
    let mut uneven = streams
        .iter()
        .enumerate()
        .map(|(i, s)| DeviceBuffer::from_slice(s, &vec![1.0f32; 8 + (i == 2) as usize]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    ensure!(
        matches!(
            r.all_reduce_sum(&streams, &mut uneven),
            Err(Error::RankLengthMismatch {
                rank: 2,
                expected: 8,
                actual: 9
            })
        ),
        "rank 2 longer"
    );
    ensure!(
        matches!(
            r.all_reduce_sum(&streams[..2], &mut uneven),
            Err(Error::RankCount { .. })
        ),
        "2 streams for 3 ranks"
    );
    Ok(())
}

// ---- data-parallel step ------------------------------------------------------------------

/// The f64 reference of `DataParallel`'s model: `steps` SGD steps on the full batch; returns
/// the loss before each step and the final weights.
fn reference_training(
    cfg: DataParallelConfig,
    batch: usize,
    steps: usize,
    w: &[f16],
    x: &[f16],
    t: &[f16],
) -> (Vec<f64>, Vec<f64>) {
    let h = cfg.hidden;
    let mut w: Vec<Vec<f64>> = w.chunks(h * h).map(to_f64).collect();
    let x = to_f64(x);
    let t = to_f64(t);
    // c (m × n) = a (m × k) · b (k × n), with transposes as flags.
    let mm = |a: &[f64], ta: bool, b: &[f64], tb: bool, m: usize, n: usize, k: usize| {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] };
                if av == 0.0 {
                    continue;
                }
                for j in 0..n {
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    c[i * n + j] += av * bv;
                }
            }
        }
        c
    };
    let mut losses = Vec::new();
    for _ in 0..steps {
        let mut acts = vec![x.clone()];
        for l in 0..cfg.layers {
            let next = mm(&acts[l], false, &w[l], false, batch, h, h);
            acts.push(next);
        }
        let mut delta: Vec<f64> = acts[cfg.layers]
            .iter()
            .zip(&t)
            .map(|(y, t)| y - t)
            .collect();
        losses.push(0.5 * delta.iter().map(|d| d * d).sum::<f64>() / batch as f64);
        let mut grads = vec![Vec::new(); cfg.layers];
        for l in (0..cfg.layers).rev() {
            let g = mm(&acts[l], true, &delta, false, h, h, batch);
            grads[l] = g.iter().map(|v| v / batch as f64).collect();
            if l > 0 {
                delta = mm(&delta, false, &w[l], true, batch, h, h);
            }
        }
        for l in 0..cfg.layers {
            for (wv, g) in w[l].iter_mut().zip(&grads[l]) {
                *wv -= f64::from(cfg.lr) * g;
            }
        }
    }
    (losses, w.concat())
}

/// Runs `steps` steps, returning the loss of each step's forward pass and rank 0's weights.
fn train(dp: &mut DataParallel, steps: usize) -> Result<(Vec<f64>, Vec<f16>), Failed> {
    let mut losses = Vec::new();
    for _ in 0..steps {
        dp.step().map_err(fail)?;
        dp.synchronize().map_err(fail)?;
        losses.push(dp.loss().map_err(fail)?);
    }
    Ok((losses, dp.weights(0).map_err(fail)?))
}

fn data_parallel_matches_cpu(device: &Device) -> Result<(), Failed> {
    // Odd sizes: not multiples of any tile.
    for (hidden, batch_per_rank, ranks) in [(72, 37, 1), (40, 29, 2), (64, 48, 3)] {
        let cfg = DataParallelConfig {
            hidden,
            layers: 3,
            batch_per_rank,
            lr: 0.2,
        };
        let set = set_of(device, ranks)?;
        let batch = batch_per_rank * ranks;
        let h = hidden;
        let scale = 1.0 / (h as f32).sqrt();
        let mut rng = rand::rng();
        let w: Vec<f16> = (0..3 * h * h)
            .map(|_| f16::from_f32(rng.random_range(-scale..scale)))
            .collect();
        let x: Vec<f16> = random(batch * h);
        let t: Vec<f16> = random(batch * h);
        let steps = 4;
        let (ref_losses, ref_w) = reference_training(cfg, batch, steps, &w, &x, &t);
        let mut dp =
            DataParallel::with_data(&set, cfg, GradientSync::Copy(CopyPath::Auto), &w, &x, &t)
                .map_err(fail)?;
        let (losses, got_w) = train(&mut dp, steps)?;
        let e = rel_err(&losses, &ref_losses);
        ensure!(
            e < 5e-3,
            "h={h} b={batch_per_rank} ranks={ranks}: losses {losses:?} vs {ref_losses:?}"
        );
        ensure!(
            ref_losses[steps - 1] < ref_losses[0],
            "the reference loss falls: {ref_losses:?}"
        );
        // The weights moved by the updates, compared as the change from the start.
        let w0 = to_f64(&w);
        let moved: Vec<f64> = to_f64(&got_w).iter().zip(&w0).map(|(a, b)| a - b).collect();
        let ref_moved: Vec<f64> = ref_w.iter().zip(&w0).map(|(a, b)| a - b).collect();
        let e = rel_err(&moved, &ref_moved);
        ensure!(
            e < 3e-2,
            "h={h} b={batch_per_rank} ranks={ranks}: weight updates rel err {e:.2e}"
        );
        for r in 1..ranks {
            ensure!(
                dp.weights(r).map_err(fail)? == got_w,
                "rank {r}'s weights differ from rank 0's"
            );
        }
    }
    Ok(())
}

fn data_parallel_ranks_match_one_gpu(device: &Device) -> Result<(), Failed> {
    let one = DeviceSet::from_devices(vec![device.clone()]).map_err(fail)?;
    let global = 96;
    let steps = 5;
    let cfg = |ranks: usize| DataParallelConfig {
        hidden: 128,
        layers: 3,
        batch_per_rank: global / ranks,
        lr: 0.1,
    };
    let mut single =
        DataParallel::random(&one, cfg(1), GradientSync::Copy(CopyPath::Auto), 7).map_err(fail)?;
    let (ref_losses, ref_w) = train(&mut single, steps)?;
    for (ranks, path) in [
        (2, CopyPath::Staged),
        (3, CopyPath::Peer),
        (4, CopyPath::Auto),
    ] {
        let set = set_of(device, ranks)?;
        let mut dp =
            DataParallel::random(&set, cfg(ranks), GradientSync::Copy(path), 7).map_err(fail)?;
        let (losses, w) = train(&mut dp, steps)?;
        let e = rel_err(&losses, &ref_losses);
        ensure!(
            e < 5e-3,
            "{ranks} ranks ({path:?}): losses {losses:?} vs one GPU {ref_losses:?}"
        );
        let e = rel_err(&to_f64(&w), &to_f64(&ref_w));
        ensure!(e < 2e-3, "{ranks} ranks: weights rel err {e:.2e}");
    }
    // Bad shapes are errors, not panics.
    ensure!(
        matches!(
            DataParallel::random(
                &one,
                DataParallelConfig {
                    hidden: 0,
                    ..cfg(1)
                },
                GradientSync::Copy(CopyPath::Auto),
                1
            ),
            Err(Error::InvalidDimension { .. })
        ),
        "hidden 0"
    );
    ensure!(
        matches!(
            DataParallel::with_data(
                &one,
                cfg(1),
                GradientSync::Copy(CopyPath::Auto),
                &[],
                &[],
                &[]
            ),
            Err(Error::InvalidArgument { .. })
        ),
        "no weights"
    );
    // Sizes whose products overflow are errors, found before any data is generated.
    for (hidden, layers, batch_per_rank) in [
        (usize::MAX / 2, 1, 1), // hidden²
        (1 << 16, 1 << 40, 1),  // layers · hidden²
        (1 << 16, 1, 1 << 50),  // batch_per_rank · hidden
    ] {
        let r = DataParallel::random(
            &one,
            DataParallelConfig {
                hidden,
                layers,
                batch_per_rank,
                lr: 0.1,
            },
            GradientSync::Copy(CopyPath::Auto),
            1,
        );
        ensure!(
            matches!(r, Err(Error::TooLarge { .. })),
            "hidden {hidden}, layers {layers}, batch {batch_per_rank}: {r:?}"
        );
    }
    // CopyPath::Device between two GPUs is refused when the model is built, not at step().
    let two = set_of(device, 2)?;
    let r = DataParallel::random(&two, cfg(2), GradientSync::Copy(CopyPath::Device), 1);
    if two.devices()[0] == two.devices()[1] {
        r.map_err(fail)?;
    } else {
        ensure!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "Copy(Device) across two GPUs: {r:?}"
        );
    }
    Ok(())
}

#[cfg(feature = "nccl")]
mod nccl {
    use super::*;
    use hikube_gpu::multi::{nccl_version, Communicator, ReduceOp};

    pub fn trials() -> Vec<Trial> {
        vec![
            gpu_test("multi::nccl_collectives", collectives),
            gpu_test("multi::nccl_errors", errors),
            gpu_test("multi::nccl_data_parallel", data_parallel),
        ]
    }

    /// One rank per distinct GPU: every visible GPU.
    fn distinct_set() -> Result<DeviceSet, Failed> {
        DeviceSet::all().map_err(fail)
    }

    /// Whether the machine has the two GPUs that make NCCL's collectives more than a copy.
    fn multi_gpu() -> Result<bool, Failed> {
        Ok(Device::count().map_err(fail)? >= 2)
    }

    fn poisoned<T: Float>(s: &hikube_gpu::Stream, n: usize) -> Result<DeviceBuffer<T>, Failed> {
        DeviceBuffer::from_slice(s, &vec![T::from_f32(f32::NAN); n]).map_err(fail)
    }

    fn case<T: Float>(comm: &Communicator, n: usize, bound: f64) -> Result<(), Failed> {
        let w = comm.world_size();
        let streams = comm.streams();
        let inputs: Vec<Vec<T>> = (0..w).map(|_| random(n)).collect();
        let send = streams
            .iter()
            .zip(&inputs)
            .map(|(s, x)| DeviceBuffer::from_slice(s, x))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        let col = |i: usize| inputs.iter().map(move |x| f64::from(x[i].to_f32()));
        let check = |what: &str, got: &[T], want: &[f64]| -> Result<(), Failed> {
            let e = rel_err(&to_f64(got), want);
            ensure!(
                e <= bound,
                "{what} {} n={n}: rel err {e:.2e} > {bound:.0e}",
                T::SUFFIX
            );
            Ok(())
        };
        // all-reduce, out of place: sum; in place: average and max.
        let mut recv = streams
            .iter()
            .map(|s| poisoned::<T>(s, n))
            .collect::<Result<Vec<_>, _>>()?;
        comm.all_reduce(&send, &mut recv, ReduceOp::Sum)
            .map_err(fail)?;
        let sum: Vec<f64> = (0..n).map(|i| col(i).sum()).collect();
        for (b, s) in recv.iter().zip(streams) {
            check("all_reduce sum", &b.to_vec(s).map_err(fail)?, &sum)?;
        }
        let mut inplace = streams
            .iter()
            .zip(&inputs)
            .map(|(s, x)| DeviceBuffer::from_slice(s, x))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        comm.all_reduce_in_place(&mut inplace, ReduceOp::Avg)
            .map_err(fail)?;
        let avg: Vec<f64> = sum.iter().map(|v| v / w as f64).collect();
        for (b, s) in inplace.iter().zip(streams) {
            check("all_reduce_in_place avg", &b.to_vec(s).map_err(fail)?, &avg)?;
        }
        comm.all_reduce(&send, &mut recv, ReduceOp::Max)
            .map_err(fail)?;
        let max: Vec<f64> = (0..n).map(|i| col(i).fold(f64::MIN, f64::max)).collect();
        for (b, s) in recv.iter().zip(streams) {
            check("all_reduce max", &b.to_vec(s).map_err(fail)?, &max)?;
        }
        // all-gather: every rank's input, in rank order.
        let mut gathered = streams
            .iter()
            .map(|s| poisoned::<T>(s, w * n))
            .collect::<Result<Vec<_>, _>>()?;
        comm.all_gather(&send, &mut gathered).map_err(fail)?;
        let cat: Vec<f64> = inputs.iter().flat_map(|x| to_f64(x)).collect();
        for (b, s) in gathered.iter().zip(streams) {
            check("all_gather", &b.to_vec(s).map_err(fail)?, &cat)?;
        }
        // reduce-scatter of the gathered buffers: block r of w·(sum of all inputs).
        let mut scattered = streams
            .iter()
            .map(|s| poisoned::<T>(s, n))
            .collect::<Result<Vec<_>, _>>()?;
        comm.reduce_scatter(&gathered, &mut scattered, ReduceOp::Sum)
            .map_err(fail)?;
        for (r, (b, s)) in scattered.iter().zip(streams).enumerate() {
            let want: Vec<f64> = (0..n).map(|i| w as f64 * cat[r * n + i]).collect();
            check("reduce_scatter", &b.to_vec(s).map_err(fail)?, &want)?;
        }
        // broadcast from the last rank.
        let root = w - 1;
        let mut bc = streams
            .iter()
            .zip(&inputs)
            .map(|(s, x)| DeviceBuffer::from_slice(s, x))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        comm.broadcast(&mut bc, root).map_err(fail)?;
        let want = to_f64(&inputs[root]);
        for (b, s) in bc.iter().zip(streams) {
            check("broadcast", &b.to_vec(s).map_err(fail)?, &want)?;
        }
        Ok(())
    }

    fn collectives(device: &Device) -> Result<(), Failed> {
        println!("NCCL {}", nccl_version().map_err(fail)?);
        let one = DeviceSet::from_devices(vec![device.clone()]).map_err(fail)?;
        let mut sets = vec![("1 rank", one)];
        if multi_gpu()? {
            // Every GPU, and two GPUs with ranks in the reverse order of the devices.
            sets.push(("every GPU", distinct_set()?));
            sets.push(("GPUs 1, 0", DeviceSet::open(&[1, 0]).map_err(fail)?));
        } else {
            println!(
                "multi::nccl_collectives: one GPU, so one rank: the reductions, gather, scatter \
                 and broadcast are trivial here; only the API and the element types are \
                 checked. The multi-rank checks need >= 2 GPUs."
            );
        }
        for (what, set) in sets {
            let comm = Communicator::new(&set).map_err(fail)?;
            let on = |e: Failed| Failed::from(format!("{what}: {}", e.message().unwrap_or("")));
            for n in SIZES {
                case::<f32>(&comm, n, 1e-6).map_err(on)?;
                case::<f16>(&comm, n, 2e-3).map_err(on)?;
                case::<bf16>(&comm, n, 1.6e-2).map_err(on)?;
            }
            ensure!(!comm.is_aborted(), "{what}: aborted");
        }
        Ok(())
    }

    fn errors(device: &Device) -> Result<(), Failed> {
        let twice = DeviceSet::from_devices(vec![device.clone(), device.clone()]).map_err(fail)?;
        ensure!(
            matches!(
                Communicator::new(&twice),
                Err(Error::DuplicateDevice { .. })
            ),
            "two ranks on one GPU"
        );
        let comm = Communicator::new(&distinct_set()?).map_err(fail)?;
        let w = comm.world_size();
        let mk = |n: usize, count: usize| -> Result<Vec<DeviceBuffer<f32>>, Failed> {
            comm.streams()
                .iter()
                .cycle()
                .take(count)
                .map(|s| DeviceBuffer::from_slice(s, &vec![1.0f32; n]))
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)
        };
        let mut too_many = mk(4, w + 1)?;
        ensure!(
            matches!(
                comm.all_reduce_in_place(&mut too_many, ReduceOp::Sum),
                Err(Error::RankCount { .. })
            ),
            "w + 1 buffers"
        );
        let send = mk(4, w)?;
        let mut recv = mk(5, w)?;
        ensure!(
            matches!(
                comm.all_reduce(&send, &mut recv, ReduceOp::Sum),
                Err(Error::LengthMismatch { .. })
            ),
            "recv longer than send"
        );
        let r = comm.all_gather(&send, &mut recv);
        ensure!(
            matches!(r, Err(Error::LengthMismatch { expected, actual: 5 }) if expected == 4 * w),
            "all_gather recv not w·n: {r:?}"
        );
        ensure!(
            matches!(
                comm.reduce_scatter(&send, &mut recv, ReduceOp::Sum),
                Err(Error::LengthMismatch { .. })
            ),
            "reduce_scatter send not w·n"
        );
        ensure!(
            matches!(
                comm.broadcast(&mut recv, w),
                Err(Error::DeviceIndexOutOfRange { .. })
            ),
            "root past the last rank"
        );
        ensure!(
            matches!(comm.stream(w), Err(Error::DeviceIndexOutOfRange { .. })),
            "stream past the last rank"
        );
        // Every failure above is found before anything is queued: the communicator lives on.
        ensure!(!comm.is_aborted(), "aborted by an argument error");
        comm.all_reduce_in_place(&mut recv, ReduceOp::Sum)
            .map_err(fail)?;
        comm.synchronize().map_err(fail)?;
        Ok(())
    }

    /// NCCL and the copy-based reduction give the same training on the same set.
    fn data_parallel(_device: &Device) -> Result<(), Failed> {
        if !multi_gpu()? {
            println!(
                "multi::nccl_data_parallel: one GPU, so one rank: neither reduction exchanges \
                 anything here; NCCL against the copy-based sum needs >= 2 GPUs."
            );
        }
        let set = distinct_set()?;
        let cfg = DataParallelConfig {
            hidden: 96,
            layers: 3,
            batch_per_rank: 40,
            lr: 0.1,
        };
        let mut a = DataParallel::random(&set, cfg, GradientSync::Nccl, 3).map_err(fail)?;
        let mut b =
            DataParallel::random(&set, cfg, GradientSync::Copy(CopyPath::Auto), 3).map_err(fail)?;
        let (la, wa) = train(&mut a, 4)?;
        let (lb, wb) = train(&mut b, 4)?;
        let e = rel_err(&la, &lb);
        ensure!(e < 1e-3, "NCCL {la:?} vs copy {lb:?}");
        let e = rel_err(&to_f64(&wa), &to_f64(&wb));
        ensure!(e < 1e-3, "weights rel err {e:.2e}");
        Ok(())
    }
}
