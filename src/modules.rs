//! The PTX registry: which module ships PTX for which targets, and, per device, the modules the
//! driver has loaded (each once, on first use, thread-safe).
//!
//! Each PTX target also ships as cubins, assembled ahead of time for the seed GPUs' SMs: a device
//! whose compute capability has one loads it without the driver's JIT compilation (seconds for
//! the GEMM modules), and any other device, or a driver that refuses the cubin, gets the PTX.

use crate::arch::{ComputeCapability, PtxArch};
use crate::device::{self, Device};
use crate::error::{Error, Result};
use cudarc::driver::{CudaFunction, CudaModule, DriverError};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One kernel module (one `.cu` source), its PTX per target and the cubins assembled from each
/// PTX per compute capability, embedded at build time.
pub(crate) struct ModuleSource {
    pub(crate) name: &'static str,
    pub(crate) ptx: &'static [(PtxArch, &'static str)],
    pub(crate) cubins: &'static [(PtxArch, ComputeCapability, &'static [u8])],
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

/// The cubin assembled from `arch`'s PTX for exactly `cc`, if the module ships one. Exact, not
/// "same major": the cubins are built per SM, and the PTX covers every other device.
fn cubin_for(src: &ModuleSource, arch: PtxArch, cc: ComputeCapability) -> Option<&'static [u8]> {
    src.cubins
        .iter()
        .find(|(a, c, _)| *a == arch && *c == cc)
        .map(|(_, _, bytes)| *bytes)
}

/// The `.version` directive of a PTX text, e.g. `8.4`.
fn ptx_isa(ptx: &str) -> String {
    ptx.lines()
        .find_map(|l| l.trim().strip_prefix(".version "))
        .unwrap_or("unknown")
        .trim()
        .to_string()
}

/// Which image of a module the driver loaded.
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

/// How a module came to be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadInfo {
    /// The PTX target that was loaded (as PTX, or as a cubin assembled from it).
    pub arch: PtxArch,
    /// Whether the driver loaded a cubin or JIT-compiled the PTX.
    pub image: ModuleImage,
    /// The driver's error when it refused the cubin for this device and the PTX was loaded
    /// instead; `None` when it took the cubin or there was none.
    pub cubin_refused: Option<DriverError>,
    /// Time the driver took to load it (for PTX its JIT compilation, unless its disk cache had
    /// it; including any refused cubin); zero when this device had loaded it before.
    pub elapsed: Duration,
    /// True when this device had loaded it before.
    pub cached: bool,
}

/// A module this device has loaded, and how its first load went.
type Loaded = (Arc<CudaModule>, LoadInfo);

/// The functions of one loaded module, by name.
type FunctionsByName = HashMap<String, CudaFunction>;

/// Per-device loaded modules and functions.
#[derive(Default)]
pub(crate) struct ModuleRegistry {
    modules: Mutex<HashMap<(&'static str, PtxArch), Loaded>>,
    /// Per (module, target): functions by name. Looked up by `&str`, so a hit allocates nothing.
    functions: Mutex<HashMap<(&'static str, PtxArch), FunctionsByName>>,
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
    // On the launch path: no allocation unless it fails.
    let src = find(module);
    let chosen = src.and_then(|s| {
        let mut shipped = s.ptx.iter().map(|(a, _)| *a).filter(|a| a.runs_on(cc));
        match forced {
            Some(f) => shipped.find(|a| *a == f),
            None => shipped.max(),
        }
    });
    match (src, chosen) {
        (Some(src), Some(arch)) => Ok((src, arch)),
        (src, _) => Err(Error::UnsupportedArch {
            module: src.map_or("unknown module", |s| s.name),
            major: cc.major,
            minor: cc.minor,
            available: if targets(module).is_empty() {
                "none".to_string()
            } else {
                targets(module)
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
    /// println!("{} ({}) loaded in {:?}", info.arch, info.image, info.elapsed);
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
        if let Some((m, first)) = loaded.get(&(src.name, arch)) {
            let info = LoadInfo {
                elapsed: Duration::ZERO,
                cached: true,
                ..*first
            };
            return Ok((m.clone(), info));
        }
        let start = Instant::now();
        let mut cubin_refused = None;
        if let Some(cubin) = cubin_for(src, arch, self.compute_capability()) {
            // `from_binary` wants an owned buffer, which also gives the driver a heap-aligned ELF
            // image (`include_bytes!` promises no alignment); the copy costs far less than a load.
            match self.inner.ctx.load_module(Ptx::from_binary(cubin.to_vec())) {
                Ok(module) => {
                    let info = LoadInfo {
                        arch,
                        image: ModuleImage::Cubin,
                        cubin_refused: None,
                        elapsed: start.elapsed(),
                        cached: false,
                    };
                    loaded.insert((src.name, arch), (module.clone(), info));
                    return Ok((module, info));
                }
                // E.g. a driver too old for the ELF that ptxas wrote: the PTX still loads.
                Err(e) => cubin_refused = Some(e),
            }
        }
        let ptx = src
            .ptx
            .iter()
            .find(|(a, _)| *a == arch)
            .map(|(_, p)| *p)
            .unwrap_or_default();
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
            image: ModuleImage::Ptx,
            cubin_refused,
            elapsed: start.elapsed(),
            cached: false,
        };
        loaded.insert((src.name, arch), (module.clone(), info));
        Ok((module, info))
    }

    /// The kernel `function` of `module`, for the best target or the forced one.
    pub(crate) fn function(
        &self,
        module: &'static str,
        function: &str,
        forced: Option<PtxArch>,
    ) -> Result<CudaFunction> {
        Ok(self.function_and_target(module, function, forced)?.0)
    }

    /// [`Device::function`] and the PTX target it was compiled for (what the kernel can rely
    /// on, e.g. programmatic dependent launch only in `compute_90a` code).
    pub(crate) fn function_and_target(
        &self,
        module: &'static str,
        function: &str,
        forced: Option<PtxArch>,
    ) -> Result<(CudaFunction, PtxArch)> {
        let (src, arch) = choose(module, self.compute_capability(), forced)?;
        let registry = &self.inner.modules;
        let mut functions = registry.functions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = functions.get(&(module, arch)).and_then(|m| m.get(function)) {
            return Ok((f.clone(), arch));
        }
        let f = self.loaded(src, arch)?.0.load_function(function)?;
        functions
            .entry((module, arch))
            .or_default()
            .insert(function.to_string(), f.clone());
        Ok((f, arch))
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

    /// The compute capabilities `scripts/ptx.py` assembles each target's PTX for (its
    /// `CUBIN_SMS`): the seed GPUs', plus 9.0 for compute_80 (H100/H200 run that GEMM path).
    fn native(arch: PtxArch) -> Vec<ComputeCapability> {
        let sms: &[(u32, u32)] = match arch {
            PtxArch::Compute70 => &[(7, 0)],
            PtxArch::Compute75 => &[(7, 5)],
            PtxArch::Compute80 => &[(8, 0), (8, 6), (8, 9), (9, 0)],
            PtxArch::Compute90a => &[(9, 0)],
        };
        sms.iter()
            .map(|&(ma, mi)| ComputeCapability::new(ma, mi))
            .collect()
    }

    #[test]
    fn every_target_ships_cubins_for_its_native_sms() {
        for m in MODULE_SOURCES {
            for (arch, _) in m.ptx {
                let mut shipped: Vec<_> = m
                    .cubins
                    .iter()
                    .filter(|(a, _, _)| a == arch)
                    .map(|(_, cc, bytes)| {
                        assert!(bytes.starts_with(b"\x7fELF"), "{} {arch} {cc}", m.name);
                        *cc
                    })
                    .collect();
                shipped.sort();
                assert_eq!(shipped, native(*arch), "{} {arch}", m.name);
            }
            // Every cubin comes from a PTX the module ships.
            for (arch, cc, _) in m.cubins {
                assert!(
                    m.ptx.iter().any(|(a, _)| a == arch),
                    "{} {arch} {cc}",
                    m.name
                );
            }
        }
    }

    #[test]
    fn cubins_only_for_their_exact_capability() {
        let gemm = find("gemm_sm80").expect("the crate ships gemm_sm80");
        let h100 = ComputeCapability::new(9, 0);
        assert!(cubin_for(gemm, PtxArch::Compute80, h100).is_some());
        // Jetson Orin (8.7) has no cubin of its own: it JIT-compiles the PTX.
        assert!(cubin_for(gemm, PtxArch::Compute80, ComputeCapability::new(8, 7)).is_none());
        // A forced older path on a newer GPU runs through the JIT, as before.
        let gemm70 = find("gemm_sm70").expect("the crate ships gemm_sm70");
        assert!(cubin_for(gemm70, PtxArch::Compute70, h100).is_none());
        // What the ops load by default on every seed GPU comes as a cubin: elementwise's best
        // target, and the newest GEMM path the device runs (as `Matmul::new` picks it).
        for cc in PtxArch::ALL.into_iter().flat_map(native) {
            let (src, arch) = choose("elementwise", cc, None).expect("elementwise runs");
            assert!(
                cubin_for(src, arch, cc).is_some(),
                "elementwise {arch} {cc}"
            );
            let (src, arch) = ["gemm_sm80", "gemm_sm75", "gemm_sm70"]
                .into_iter()
                .find_map(|m| choose(m, cc, None).ok())
                .expect("a GEMM path runs");
            assert!(
                cubin_for(src, arch, cc).is_some(),
                "{} {arch} {cc}",
                src.name
            );
        }
    }
}
