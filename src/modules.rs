//! The PTX registry: which module ships PTX for which targets, and, per device, the modules the
//! driver has loaded (each once, on first use, thread-safe).

use crate::arch::{ComputeCapability, PtxArch};
use crate::device::{self, Device};
use crate::error::{Error, Result};
use cudarc::driver::{CudaFunction, CudaModule};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One kernel module (one `.cu` source) and its PTX per target, embedded at build time.
pub(crate) struct ModuleSource {
    pub(crate) name: &'static str,
    pub(crate) ptx: &'static [(PtxArch, &'static str)],
}

include!(concat!(env!("OUT_DIR"), "/ptx.rs"));

/// The names of the kernel modules the crate ships.
///
/// ```
/// assert!(hikube_gpu::modules::names().contains(&"elementwise"));
/// ```
pub fn names() -> Vec<&'static str> {
    MODULE_SOURCES.iter().map(|m| m.name).collect()
}

/// The PTX targets a module ships, oldest first; empty for an unknown module.
///
/// ```
/// use hikube_gpu::PtxArch;
/// assert_eq!(hikube_gpu::modules::targets("elementwise"), PtxArch::ALL.to_vec());
/// ```
pub fn targets(module: &str) -> Vec<PtxArch> {
    find(module).map_or_else(Vec::new, |m| m.ptx.iter().map(|(a, _)| *a).collect())
}

fn find(module: &str) -> Option<&'static ModuleSource> {
    MODULE_SOURCES.iter().find(|m| m.name == module)
}

/// The `.version` directive of a PTX text, e.g. `8.4`.
fn ptx_isa(ptx: &str) -> String {
    ptx.lines()
        .find_map(|l| l.trim().strip_prefix(".version "))
        .unwrap_or("unknown")
        .trim()
        .to_string()
}

/// How a module came to be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadInfo {
    /// The PTX target that was loaded.
    pub arch: PtxArch,
    /// Time the driver took to load it (its JIT compilation, unless its disk cache had it);
    /// zero when this device had loaded it before.
    pub elapsed: Duration,
    /// True when this device had loaded it before.
    pub cached: bool,
}

/// Per-device loaded modules and functions.
#[derive(Default)]
pub(crate) struct ModuleRegistry {
    modules: Mutex<HashMap<(&'static str, PtxArch), Arc<CudaModule>>>,
    functions: Mutex<HashMap<(&'static str, PtxArch, String), CudaFunction>>,
}

/// The PTX target `module` would run with on a device of compute capability `cc`: `forced` if
/// the module ships it and the device can run it, else the newest shipped target the device
/// runs. [`Error::UnsupportedArch`] when there is none. Needs no GPU.
///
/// ```
/// use hikube_gpu::{modules, ComputeCapability, Error, PtxArch};
/// let h100 = ComputeCapability::new(9, 0);
/// assert_eq!(modules::select("elementwise", h100, None)?, PtxArch::Compute90a);
/// assert_eq!(modules::select("elementwise", h100, Some(PtxArch::Compute70))?, PtxArch::Compute70);
/// let pascal = ComputeCapability::new(6, 1);
/// assert!(matches!(modules::select("elementwise", pascal, None), Err(Error::UnsupportedArch { .. })));
/// # Ok::<(), Error>(())
/// ```
pub fn select(module: &str, cc: ComputeCapability, forced: Option<PtxArch>) -> Result<PtxArch> {
    Ok(choose(module, cc, forced)?.1)
}

fn choose(
    module: &str,
    cc: ComputeCapability,
    forced: Option<PtxArch>,
) -> Result<(&'static ModuleSource, PtxArch)> {
    let shipped = targets(module);
    let chosen = match forced {
        Some(a) if shipped.contains(&a) && a.runs_on(cc) => Some(a),
        Some(_) => None,
        None => PtxArch::best_for(cc, &shipped),
    };
    match (find(module), chosen) {
        (Some(src), Some(arch)) => Ok((src, arch)),
        (src, _) => Err(Error::UnsupportedArch {
            module: src.map_or("unknown module", |s| s.name),
            major: cc.major,
            minor: cc.minor,
            available: if shipped.is_empty() {
                "none".to_string()
            } else {
                shipped
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
    }
}

impl Device {
    /// Loads a kernel module (the best target for this device, or `arch`) unless this device has
    /// already loaded it, and says how long the driver took. Kernels load themselves on first
    /// use; call this to move that cost out of a timed region, or to measure it.
    ///
    /// ```no_run
    /// let device = hikube_gpu::Device::open(0)?;
    /// let info = device.load_module("elementwise", None)?;
    /// println!("{} loaded in {:?}", info.arch, info.elapsed);
    /// # Ok::<(), hikube_gpu::Error>(())
    /// ```
    pub fn load_module(&self, module: &str, arch: Option<PtxArch>) -> Result<LoadInfo> {
        let (src, arch) = choose(module, self.compute_capability(), arch)?;
        Ok(self.loaded(src, arch)?.1)
    }

    /// The loaded module for `(src, arch)`, loading it now if this device has not yet.
    fn loaded(
        &self,
        src: &'static ModuleSource,
        arch: PtxArch,
    ) -> Result<(Arc<CudaModule>, LoadInfo)> {
        let mut loaded = self
            .inner
            .modules
            .modules
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(m) = loaded.get(&(src.name, arch)) {
            let info = LoadInfo {
                arch,
                elapsed: Duration::ZERO,
                cached: true,
            };
            return Ok((m.clone(), info));
        }
        let ptx = src
            .ptx
            .iter()
            .find(|(a, _)| *a == arch)
            .map(|(_, p)| *p)
            .unwrap_or_default();
        let start = Instant::now();
        let module = self
            .inner
            .ctx
            .load_module(Ptx::from_src(ptx))
            .map_err(|source| Error::ModuleLoad {
                module: src.name,
                arch,
                ptx_isa: ptx_isa(ptx),
                driver_version: device::driver_version().unwrap_or(0),
                source,
            })?;
        let info = LoadInfo {
            arch,
            elapsed: start.elapsed(),
            cached: false,
        };
        loaded.insert((src.name, arch), module.clone());
        Ok((module, info))
    }

    /// The kernel `function` of `module`, for the best target or the forced one.
    pub(crate) fn function(
        &self,
        module: &'static str,
        function: &str,
        forced: Option<PtxArch>,
    ) -> Result<CudaFunction> {
        let (src, arch) = choose(module, self.compute_capability(), forced)?;
        let registry = &self.inner.modules;
        let key = (module, arch, function.to_string());
        let mut functions = registry.functions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = functions.get(&key) {
            return Ok(f.clone());
        }
        let f = self.loaded(src, arch)?.0.load_function(function)?;
        functions.insert(key, f.clone());
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_ships_ptx_isa_8_4() {
        for m in MODULE_SOURCES {
            for (arch, ptx) in m.ptx {
                assert_eq!(ptx_isa(ptx), "8.4", "{} {}", m.name, arch);
                assert!(ptx.contains(&format!(".target sm_{}", &arch.name()[8..])));
            }
        }
    }
}
