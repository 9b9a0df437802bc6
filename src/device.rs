//! Devices: enumeration, selection, properties, and the GPU model.
//!
//! The driver numbers devices after `CUDA_VISIBLE_DEVICES` (when set, only the GPUs it names are
//! visible, in its order), so index 0 is "the first GPU this process may use". UUIDs do not
//! depend on it, which is why [`Device::by_uuid`] is the way to name a GPU across processes and
//! tools such as `nvidia-smi`.

use crate::catalog::ComputeCapability;
use crate::catalog::{self, DeviceFacts, GpuModel};
use crate::context::{Events, StreamState};
use crate::error::{Error, Result};
use crate::registry::ModuleRegistry;
use cudarc::driver::{result, sys, CudaContext, CudaStream, DriverError};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use sys::CUdevice_attribute as Attr;

/// What the driver reports about a device.
///
/// ```no_run
/// use hikube_gpu::Device;
/// let device = Device::open(0)?;
/// let p = device.properties();
/// println!("{} (sm_{}{}), {} SMs, {} GiB", p.name, p.compute_capability.major,
///          p.compute_capability.minor, p.sm_count, p.total_memory >> 30);
/// let mem = device.memory_info()?; // MemoryInfo: free and total now
/// println!("{} GiB free", mem.free >> 30);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceProperties {
    /// Index among the visible devices.
    pub ordinal: usize,
    /// The driver's name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// UUID in `nvidia-smi`'s form, `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub uuid: String,
    /// PCI address in `nvidia-smi`'s form, `00000000:18:00.0`.
    pub pci_bus_id: String,
    /// Compute capability.
    pub compute_capability: ComputeCapability,
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// Peak SM clock in kHz.
    pub sm_clock_khz: u32,
    /// Peak memory clock in kHz.
    pub memory_clock_khz: u32,
    /// Memory bus width in bits.
    pub memory_bus_width_bits: u32,
    /// L2 cache in bytes.
    pub l2_cache_bytes: u32,
    /// Shared memory a block may opt in to, in bytes.
    pub max_shared_memory_per_block: u32,
    /// Total device memory in bytes.
    pub total_memory: usize,
}

/// Free and total device memory, in bytes.
///
/// ```no_run
/// let device = hikube_gpu::Device::open(0)?;
/// let info = device.memory_info()?;
/// let gib = |bytes: usize| bytes as f64 / (1u64 << 30) as f64;
/// println!("{:.1} of {:.1} GiB free", gib(info.free), gib(info.total));
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryInfo {
    /// Bytes free now.
    pub free: usize,
    /// Bytes in all.
    pub total: usize,
}

/// How [`Device::select`] picks a device.
///
/// ```no_run
/// use hikube_gpu::{Device, Selection};
/// // The GPU with the most free memory now (on a shared machine).
/// let device = Device::select(Selection::MostFreeMemory)?;
/// // The same GPU by its UUID, as `nvidia-smi -L` prints it: the same context.
/// let again = Device::select(Selection::Uuid(device.properties().uuid.clone()))?;
/// assert_eq!(device, again);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// The device at this index among the visible ones.
    Index(usize),
    /// The device with this UUID (`GPU-…`, as `nvidia-smi -L` prints it; the prefix is optional).
    Uuid(String),
    /// The device with the most free memory now.
    MostFreeMemory,
    /// The device with the most streaming multiprocessors (the first of equals).
    MostSms,
}

pub(crate) struct DeviceInner {
    pub(crate) ctx: Arc<CudaContext>,
    props: DeviceProperties,
    model: GpuModel,
    pub(crate) modules: ModuleRegistry,
    /// The default stream's shared state (one id for every handle of it).
    pub(crate) default_state: Arc<StreamState>,
    /// A private stream that frees memory after its last uses: never captured, never handed out.
    pub(crate) service: Arc<CudaStream>,
    /// Events for markers, recycled.
    pub(crate) events: Arc<Events>,
}

/// The devices this process has open, by ordinal: a second open of a GPU gets the same context
/// (and so the same streams' ordering), whichever way it is opened.
static OPEN: Mutex<Vec<(usize, Weak<DeviceInner>)>> = Mutex::new(Vec::new());

/// An open GPU. Cheap to clone: clones share the device's context and its loaded kernels.
///
/// ```no_run
/// use hikube_gpu::Device;
/// let device = Device::open(0)?;
/// let p = device.properties();
/// println!("{} ({}), compute {}, {} SMs", p.name, device.model().name, p.compute_capability, p.sm_count);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone)]
pub struct Device {
    pub(crate) inner: Arc<DeviceInner>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("ordinal", &self.inner.props.ordinal)
            .field("name", &self.inner.props.name)
            .field("model", &self.inner.model.name)
            .finish()
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.props.uuid == other.inner.props.uuid
    }
}

/// Loads the driver library and initializes it, turning "no driver" and "no GPU" into errors
/// instead of the loader's panic.
fn init_driver() -> Result<()> {
    // SAFETY: `is_culib_present` only tries to open the driver library by name.
    if !unsafe { sys::is_culib_present() } {
        return Err(Error::NoDriver {
            reason: "libcuda.so could not be loaded (is the NVIDIA driver installed?)".into(),
        });
    }
    match result::init() {
        Ok(()) => Ok(()),
        Err(DriverError(sys::CUresult::CUDA_ERROR_NO_DEVICE)) => Err(Error::NoDevice),
        Err(e) => Err(Error::NoDriver {
            reason: format!("cuInit failed: {e}"),
        }),
    }
}

/// The installed driver's CUDA version, e.g. 13000 for CUDA 13.0.
///
/// ```no_run
/// let v = hikube_gpu::driver_version()?;
/// // The shipped PTX is ISA 8.4: drivers for CUDA 12.4 (R550) and newer JIT-compile it.
/// assert!(v >= 12040, "CUDA {}.{} driver", v / 1000, v % 1000 / 10);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub fn driver_version() -> Result<i32> {
    init_driver()?;
    let mut version = 0;
    // SAFETY: the driver is loaded and initialized; `version` is a valid out pointer.
    unsafe { sys::cuDriverGetVersion(&mut version) }.result()?;
    Ok(version)
}

fn format_uuid(uuid: &sys::CUuuid) -> String {
    let b: Vec<u8> = uuid.bytes.iter().map(|&c| c as u8).collect();
    let hex = |r: std::ops::Range<usize>| {
        b.get(r)
            .unwrap_or_default()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    format!(
        "GPU-{}-{}-{}-{}-{}",
        hex(0..4),
        hex(4..6),
        hex(6..8),
        hex(8..10),
        hex(10..16)
    )
}

pub(crate) fn normalize_uuid(uuid: &str) -> String {
    let u = uuid.trim().to_ascii_lowercase();
    u.strip_prefix("gpu-").unwrap_or(&u).to_string()
}

/// Reads a device's properties without a context (device queries need none), so that
/// [`Device::describe`] can tell about a GPU without taking memory on it.
fn read_properties(ordinal: usize, dev: sys::CUdevice) -> Result<DeviceProperties> {
    // SAFETY: `dev` is a device handle the initialized driver returned; attribute queries only
    // read.
    let attr =
        |a: Attr| -> Result<u32> { Ok(unsafe { result::device::get_attribute(dev, a) }? as u32) };
    let pci = format!(
        "{:08X}:{:02X}:{:02X}.0",
        attr(Attr::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)?,
        attr(Attr::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)?,
        attr(Attr::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)?
    );
    Ok(DeviceProperties {
        ordinal,
        name: result::device::get_name(dev)?,
        uuid: format_uuid(&result::device::get_uuid(dev)?),
        pci_bus_id: pci,
        compute_capability: ComputeCapability::new(
            attr(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attr(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        ),
        sm_count: attr(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
        sm_clock_khz: attr(Attr::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)?,
        memory_clock_khz: attr(Attr::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)?,
        memory_bus_width_bits: attr(Attr::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)?,
        l2_cache_bytes: attr(Attr::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?,
        max_shared_memory_per_block: attr(
            Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
        )?,
        // SAFETY: as above.
        total_memory: unsafe { result::device::total_mem(dev) }?,
    })
}

/// The model of a device with these properties.
fn model_of(props: &DeviceProperties) -> GpuModel {
    catalog::identify(&DeviceFacts {
        name: &props.name,
        compute_capability: props.compute_capability,
        sms: props.sm_count,
        sm_clock_khz: props.sm_clock_khz,
        memory_clock_khz: props.memory_clock_khz,
        memory_bus_width_bits: props.memory_bus_width_bits,
        total_memory: props.total_memory,
    })
}

impl Device {
    /// How many GPUs this process can see (after `CUDA_VISIBLE_DEVICES`). Without a driver this
    /// is an [`Error::NoDriver`]; with a driver and no GPU, 0.
    pub fn count() -> Result<usize> {
        match init_driver() {
            Ok(()) => Ok(result::device::get_count()? as usize),
            Err(Error::NoDevice) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Opens the device at `index` among the visible ones.
    pub fn open(index: usize) -> Result<Device> {
        let count = Device::count()?;
        if count == 0 {
            return Err(Error::NoDevice);
        }
        if index >= count {
            return Err(Error::DeviceIndexOutOfRange { index, count });
        }
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(inner) = open
            .iter()
            .find(|(i, _)| *i == index)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(Device { inner });
        }
        let ctx = CudaContext::new(index)?;
        // SAFETY: no buffer of this context exists yet (the registry above hands out the one
        // context per GPU); the crate orders memory with its own logs (`memory::access`), so
        // cudarc's per-slice events are never needed.
        unsafe { ctx.disable_event_tracking() };
        let props = read_properties(index, ctx.cu_device())?;
        let model = model_of(&props);
        let service = ctx.new_stream()?;
        let events = Events::new(ctx.clone());
        let inner = Arc::new(DeviceInner {
            props,
            model,
            modules: ModuleRegistry::default(),
            default_state: StreamState::new(ctx.default_stream(), events.clone()),
            service,
            events,
            ctx,
        });
        open.push((index, Arc::downgrade(&inner)));
        Ok(Device { inner })
    }

    /// The properties and model of the device at `index`, **without opening it**: no CUDA
    /// context is created, so no device memory is taken and the process does not show on the GPU
    /// (nor blocks a GPU in exclusive-process mode). Monitoring tools use this.
    ///
    /// ```no_run
    /// for index in 0..hikube_gpu::Device::count()? {
    ///     let (props, model) = hikube_gpu::Device::describe(index)?;
    ///     println!("{index}: {} ({}), {}", props.name, model.name, props.uuid);
    /// }
    /// # Ok::<(), hikube_gpu::Error>(())
    /// ```
    pub fn describe(index: usize) -> Result<(DeviceProperties, GpuModel)> {
        let count = Device::count()?;
        if index >= count {
            return Err(if count == 0 {
                Error::NoDevice
            } else {
                Error::DeviceIndexOutOfRange { index, count }
            });
        }
        let props = read_properties(index, result::device::get(index as i32)?)?;
        let model = model_of(&props);
        Ok((props, model))
    }

    /// Opens the device whose UUID is `uuid` (`GPU-…` as `nvidia-smi -L` prints it; the prefix
    /// and letter case do not matter).
    pub fn by_uuid(uuid: &str) -> Result<Device> {
        let want = normalize_uuid(uuid);
        for index in 0..Device::count()? {
            let dev = result::device::get(index as i32)?;
            if normalize_uuid(&format_uuid(&result::device::get_uuid(dev)?)) == want {
                return Device::open(index);
            }
        }
        Err(Error::DeviceNotFound {
            uuid: uuid.to_string(),
        })
    }

    /// Opens a device chosen by `selection`.
    pub fn select(selection: Selection) -> Result<Device> {
        match selection {
            Selection::Index(i) => Device::open(i),
            Selection::Uuid(u) => Device::by_uuid(&u),
            Selection::MostFreeMemory => Device::best_by(|d| Ok(d.memory_info()?.free)),
            Selection::MostSms => Device::best_by(|d| Ok(d.properties().sm_count as usize)),
        }
    }

    fn best_by(key: impl Fn(&Device) -> Result<usize>) -> Result<Device> {
        let mut best: Option<(usize, Device)> = None;
        for device in Device::all()? {
            let k = key(&device)?;
            if best.as_ref().is_none_or(|(b, _)| k > *b) {
                best = Some((k, device));
            }
        }
        best.map(|(_, d)| d).ok_or(Error::NoDevice)
    }

    /// Opens every visible device, in index order.
    pub fn all() -> Result<Vec<Device>> {
        (0..Device::count()?).map(Device::open).collect()
    }

    /// The driver's facts about this device.
    pub fn properties(&self) -> &DeviceProperties {
        &self.inner.props
    }

    /// Index among the visible devices.
    pub fn ordinal(&self) -> usize {
        self.inner.props.ordinal
    }

    /// The GPU model and its peak figures (from the catalog, or derived for an unknown GPU).
    pub fn model(&self) -> &GpuModel {
        &self.inner.model
    }

    /// Compute capability.
    pub fn compute_capability(&self) -> ComputeCapability {
        self.inner.props.compute_capability
    }

    /// Free and total device memory now.
    pub fn memory_info(&self) -> Result<MemoryInfo> {
        let (free, total) = self.inner.ctx.mem_get_info()?;
        Ok(MemoryInfo { free, total })
    }

    /// Keeps a driver error that cannot be returned (in a `Drop`), as cudarc does.
    pub(crate) fn record_err(&self, e: DriverError) {
        self.inner.ctx.record_err::<()>(Err(e));
    }

    /// Waits until all work on every stream of this device has finished.
    pub fn synchronize(&self) -> Result<()> {
        Ok(self.inner.ctx.synchronize()?)
    }

    /// Fails with [`Error::WrongDevice`] unless `other` is this device.
    pub(crate) fn check_same(&self, other: &Device) -> Result<()> {
        if self == other {
            Ok(())
        } else {
            Err(Error::WrongDevice {
                expected: self.ordinal(),
                actual: other.ordinal(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_formats_like_nvidia_smi_and_normalizes() {
        let mut u = sys::CUuuid { bytes: [0; 16] };
        for (i, b) in u.bytes.iter_mut().enumerate() {
            *b = (i as u8 * 17) as _;
        }
        let s = format_uuid(&u);
        assert_eq!(s, "GPU-00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(
            normalize_uuid(&s.to_uppercase()),
            normalize_uuid("00112233-4455-6677-8899-aabbccddeeff")
        );
    }
}
