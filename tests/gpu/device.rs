//! Devices: enumeration, selection, properties, errors.

use crate::{any_test, ensure, fail, gpu_test};
use hikube_gpu::{Device, Error, Provenance, Selection};
use libtest_mimic::{Failed, Trial};

pub fn trials() -> Vec<Trial> {
    vec![
        any_test("device::no_gpu_is_a_typed_error", no_gpu_is_a_typed_error),
        gpu_test(
            "device::properties_are_consistent",
            properties_are_consistent,
        ),
        gpu_test("device::model_matches_device", model_matches_device),
        gpu_test("device::open_by_uuid_and_policy", open_by_uuid_and_policy),
        gpu_test("device::index_out_of_range", index_out_of_range),
        gpu_test("device::unknown_uuid", unknown_uuid),
    ]
}

fn no_gpu_is_a_typed_error() -> Result<(), Failed> {
    match (Device::count(), Device::open(0)) {
        (Ok(n), Ok(_)) => ensure!(n > 0, "a device opened but count() is 0"),
        (Ok(0), Err(e)) => ensure!(
            matches!(e, Error::NoDevice),
            "no devices, but open says {e}"
        ),
        (Err(e), Err(e2)) => {
            ensure!(
                matches!(e, Error::NoDriver { .. }),
                "count without driver: {e}"
            );
            ensure!(e2.is_no_gpu(), "open without driver: {e2}");
            ensure!(!e2.to_string().is_empty(), "empty message");
        }
        (c, o) => return Err(format!("inconsistent: count {c:?}, open {o:?}").into()),
    }
    Ok(())
}

fn properties_are_consistent(device: &Device) -> Result<(), Failed> {
    let p = device.properties();
    ensure!(!p.name.is_empty(), "empty name");
    let parts: Vec<usize> = p
        .uuid
        .trim_start_matches("GPU-")
        .split('-')
        .map(str::len)
        .collect();
    ensure!(
        p.uuid.starts_with("GPU-") && parts == [8, 4, 4, 4, 12],
        "UUID not in nvidia-smi form: {}",
        p.uuid
    );
    ensure!(
        p.pci_bus_id.len() == 16 && p.pci_bus_id.ends_with(".0"),
        "PCI id {}",
        p.pci_bus_id
    );
    ensure!(
        p.compute_capability.major >= 7,
        "compute capability {}",
        p.compute_capability
    );
    ensure!(
        p.sm_count > 0 && p.sm_clock_khz > 0 && p.memory_clock_khz > 0,
        "{p:?}"
    );
    ensure!(p.memory_bus_width_bits > 0 && p.l2_cache_bytes > 0, "{p:?}");
    let info = device.memory_info().map_err(fail)?;
    ensure!(
        info.total == p.total_memory,
        "total {} vs {}",
        info.total,
        p.total_memory
    );
    ensure!(
        info.free > 0 && info.free <= info.total,
        "free {} of {}",
        info.free,
        info.total
    );
    ensure!(
        Device::count().map_err(fail)? >= 1,
        "count is 0 with an open device"
    );
    Ok(())
}

fn model_matches_device(device: &Device) -> Result<(), Failed> {
    let p = device.properties();
    let m = device.model();
    eprintln!("{} -> {} ({:?})", p.name, m.name, m.provenance);
    ensure!(
        m.sms == p.sm_count,
        "model {} has {} SMs, device {}",
        m.name,
        m.sms,
        p.sm_count
    );
    ensure!(
        m.architecture == p.compute_capability.architecture(),
        "{m:?}"
    );
    ensure!(
        m.fp16_tflops > 0.0 && m.fp32_tflops > 0.0 && m.memory_bandwidth_gbs > 0.0,
        "{m:?}"
    );
    // The catalog's memory (marketing GB) and the driver's total agree within 10 %.
    let gb = p.total_memory as f64 / 1e9;
    ensure!(
        (gb / m.vram_gb - 1.0).abs() < 0.1,
        "device {gb:.1} GB, model {} GB",
        m.vram_gb
    );
    if p.name.contains("H100") && p.name.contains("HBM3") {
        ensure!(
            m.provenance == Provenance::Catalog,
            "H100 SXM not recognized"
        );
        ensure!(m.name == "H100 SXM" && m.fp16_tflops == 989.4, "{m:?}");
    }
    Ok(())
}

fn open_by_uuid_and_policy(device: &Device) -> Result<(), Failed> {
    let uuid = &device.properties().uuid;
    let same = Device::by_uuid(uuid).map_err(fail)?;
    ensure!(
        same.ordinal() == device.ordinal() && same == *device,
        "by_uuid opened another"
    );
    let bare = uuid.trim_start_matches("GPU-").to_uppercase();
    ensure!(
        Device::by_uuid(&bare).map_err(fail)? == *device,
        "prefix-less UUID not found"
    );
    let count = Device::count().map_err(fail)?;
    let all = Device::all().map_err(fail)?;
    ensure!(all.len() == count, "all() opened {} of {count}", all.len());
    let most_free = Device::select(Selection::MostFreeMemory).map_err(fail)?;
    let best = all
        .iter()
        .map(|d| d.memory_info().map(|i| i.free))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    let chosen_free = most_free.memory_info().map_err(fail)?.free;
    // Free memory moves a little between the two reads; the pick must be the largest within 1 %.
    let max = *best.iter().max().unwrap_or(&0);
    ensure!(
        chosen_free as f64 >= max as f64 * 0.99,
        "picked {chosen_free} free, max {max}"
    );
    let most_sms = Device::select(Selection::MostSms).map_err(fail)?;
    let max_sms = all
        .iter()
        .map(|d| d.properties().sm_count)
        .max()
        .unwrap_or(0);
    ensure!(
        most_sms.properties().sm_count == max_sms,
        "MostSms picked fewer SMs"
    );
    ensure!(
        Device::select(Selection::Index(0)).map_err(fail)?.ordinal() == 0,
        "Index(0)"
    );
    ensure!(
        Device::select(Selection::Uuid(uuid.clone())).map_err(fail)? == *device,
        "Selection::Uuid"
    );
    Ok(())
}

fn index_out_of_range(_: &Device) -> Result<(), Failed> {
    let count = Device::count().map_err(fail)?;
    match Device::open(count) {
        Err(Error::DeviceIndexOutOfRange { index, count: c }) => {
            ensure!(index == count && c == count, "numbers {index} {c}");
            Ok(())
        }
        other => Err(format!("open({count}) gave {other:?}").into()),
    }
}

fn unknown_uuid(_: &Device) -> Result<(), Failed> {
    match Device::by_uuid("GPU-00000000-0000-0000-0000-000000000000") {
        Err(Error::DeviceNotFound { uuid }) => {
            ensure!(uuid.ends_with("000000000000"), "{uuid}");
            Ok(())
        }
        other => Err(format!("gave {other:?}").into()),
    }
}
