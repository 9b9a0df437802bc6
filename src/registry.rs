//! What a device has loaded: its modules, how each first load went, and their functions. Held
//! by the device; filled by [`modules`](crate::modules), which loads.

use crate::catalog::PtxArch;
use cudarc::driver::{CudaFunction, CudaModule, DriverError};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which image of a module the driver loaded.
///
/// ```no_run
/// use hikube_gpu::{modules::ModuleImage, Device};
/// let device = Device::open(0)?;
/// let info = device.load_module("elementwise", None)?;
/// match info.image {
///     ModuleImage::Cubin => println!("{} cubin loaded in {:?}", info.arch, info.elapsed),
///     ModuleImage::Ptx => println!("{} PTX JIT-compiled in {:?}", info.arch, info.elapsed),
///     _ => println!("{} image", info.image), // the enum is non-exhaustive
/// }
/// // Loading it again gives the module loaded the first time.
/// let again = device.load_module("elementwise", None)?;
/// assert!(again.cached && again.image == info.image);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ModuleImage {
    /// A cubin assembled ahead of time from the target's PTX for exactly this device's compute
    /// capability: no JIT compilation.
    Cubin,
    /// The PTX, JIT-compiled by the driver: there is no cubin for this device, or the driver
    /// refused it (see [`LoadInfo::cubin_refused`]).
    Ptx,
}

impl fmt::Display for ModuleImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModuleImage::Cubin => "cubin",
            ModuleImage::Ptx => "PTX",
        })
    }
}

/// How a module came to be loaded ([`Device::load_module`](crate::Device::load_module)).
///
/// ```no_run
/// use hikube_gpu::{modules::ModuleImage, Device};
/// let device = Device::open(0)?;
/// for module in hikube_gpu::modules::names() {
///     let info = device.load_module(module, None)?;
///     let jit = info.image == ModuleImage::Ptx; // no cubin for this GPU: the driver compiled
///     println!("{module}: {} in {:?}{}", info.arch, info.elapsed, if jit { " (JIT)" } else { "" });
/// }
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadInfo {
    /// The PTX target that was loaded (as PTX, or as a cubin assembled from it).
    pub arch: PtxArch,
    /// Whether the driver loaded a cubin or JIT-compiled the PTX.
    pub image: ModuleImage,
    /// The driver's error when it refused the cubin for this device and the PTX was loaded
    /// instead; `None` when it took the cubin or there was none.
    pub cubin_refused: Option<DriverError>,
    /// Time it took to load: decompressing the embedded image and the driver's load (for PTX its
    /// JIT compilation, unless its disk cache had it; including any refused cubin); zero when
    /// this device had loaded it before.
    pub elapsed: Duration,
    /// The part of `elapsed` spent decompressing the embedded image (and any refused cubin).
    pub decompress: Duration,
    /// True when this device had loaded it before.
    pub cached: bool,
}

/// A module this device has loaded, and how its first load went.
pub(crate) type Loaded = (Arc<CudaModule>, LoadInfo);

/// The functions of one loaded module, by name.
pub(crate) type FunctionsByName = HashMap<String, CudaFunction>;

/// Per-device loaded modules and functions.
#[derive(Default)]
pub(crate) struct ModuleRegistry {
    pub(crate) modules: Mutex<HashMap<(&'static str, PtxArch), Loaded>>,
    /// Per (module, target): functions by name. Looked up by `&str`, so a hit allocates nothing.
    pub(crate) functions: Mutex<HashMap<(&'static str, PtxArch), FunctionsByName>>,
}
