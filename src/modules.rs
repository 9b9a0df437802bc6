//! The PTX registry: which module ships PTX for which targets, and, per device, the modules the
//! driver has loaded (each once, on first use, thread-safe).
//!
//! Each PTX target also ships as cubins, assembled ahead of time for the seed GPUs' SMs: a device
//! that runs one (its compute capability's, or one of the same major version and an older minor)
//! loads it without the driver's JIT compilation (seconds for the GEMM modules), and any other
//! device, or a driver that refuses the cubin, gets the PTX.
//!
//! The images are embedded zstd-compressed (about 18 times smaller) and decompressed, with the
//! pure-Rust `ruzstd`, when a device first loads the module. A PTX target whose cargo feature
//! (`compute_70`, `compute_75`, `compute_80`, `compute_89`, `compute_90a`; all on by default) is off is left
//! out of the binary: the newest target left in that the device runs is used instead, and a
//! module that has none answers [`Error::ArchLeftOut`].

use crate::catalog::{ComputeCapability, PtxArch};
use crate::device::{self, Device};
use crate::error::{Error, Result};
pub use crate::registry::{LoadInfo, ModuleImage};
use cudarc::driver::{CudaFunction, CudaModule};
use cudarc::nvrtc::Ptx;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One kernel module (one `.cu` source), its PTX per target and the cubins assembled from each
/// PTX per compute capability, embedded (zstd-compressed) at build time.
pub(crate) struct ModuleSource {
    pub(crate) name: &'static str,
    pub(crate) ptx: &'static [(PtxArch, &'static [u8])],
    pub(crate) cubins: &'static [(PtxArch, ComputeCapability, &'static [u8])],
    /// The targets the module is compiled for whose cargo feature this build left off.
    pub(crate) left_out: &'static [PtxArch],
}

impl ModuleSource {
    /// The targets the module is compiled for, shipped in this build or left out, oldest first.
    fn all_targets(&self) -> impl Iterator<Item = PtxArch> + '_ {
        PtxArch::ALL.into_iter().filter(|a| self.compiled_for(*a))
    }

    fn compiled_for(&self, arch: PtxArch) -> bool {
        self.ptx.iter().any(|(a, _)| *a == arch) || self.left_out.contains(&arch)
    }
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

/// The PTX targets a module ships in this build, oldest first; empty for an unknown module.
///
/// ```
/// use hikube_gpu::PtxArch;
/// let targets = hikube_gpu::modules::targets("elementwise");
/// assert_eq!(targets.first(), Some(&PtxArch::Compute70));
/// assert!(targets.contains(&PtxArch::Compute80));
/// ```
pub fn targets(module: &str) -> Vec<PtxArch> {
    find(module).map_or_else(Vec::new, |m| m.ptx.iter().map(|(a, _)| *a).collect())
}

/// The PTX targets a module is compiled for that this build left out (their cargo feature is
/// off), oldest first; empty with the default features.
///
/// ```
/// assert!(hikube_gpu::modules::left_out("elementwise").is_empty());
/// ```
pub fn left_out(module: &str) -> Vec<PtxArch> {
    find(module).map_or_else(Vec::new, |m| m.left_out.to_vec())
}

/// Whether this build ships `module`'s PTX for `arch`.
pub(crate) fn ships(module: &str, arch: PtxArch) -> bool {
    find(module).is_some_and(|m| m.ptx.iter().any(|(a, _)| *a == arch))
}

fn find(module: &str) -> Option<&'static ModuleSource> {
    MODULE_SOURCES.iter().find(|m| m.name == module)
}

/// Inflates an embedded image. The build checked each one's hash, so this fails only on a
/// corrupt binary; the size in the frame header is bounded before it is allocated.
fn decompress(src: &ModuleSource, arch: PtxArch, image: &[u8]) -> Result<Vec<u8>> {
    const MAX_IMAGE: u64 = 1 << 30;
    let corrupt = |reason: String| Error::CorruptImage {
        module: src.name,
        arch,
        reason,
    };
    let mut decoder = ruzstd::decoding::FrameDecoder::new();
    let mut header = image;
    decoder
        .init(&mut header)
        .map_err(|e| corrupt(e.to_string()))?;
    let size = decoder.content_size();
    if size == 0 || size > MAX_IMAGE {
        return Err(corrupt(format!("frame header gives {size} bytes")));
    }
    let mut out = Vec::with_capacity(usize::try_from(size).map_err(|e| corrupt(e.to_string()))?);
    decoder
        .decode_all_to_vec(image, &mut out)
        .map_err(|e| corrupt(e.to_string()))?;
    if out.len() as u64 != size {
        return Err(corrupt(format!(
            "{} bytes, the header says {size}",
            out.len()
        )));
    }
    Ok(out)
}

/// The cubin assembled from `arch`'s PTX that a device of capability `cc` runs, if the module
/// ships one: the one for exactly `cc`, else (CUDA's binary compatibility) the newest one of
/// the same major version and an older minor — an sm_86 cubin runs on 8.7 and 8.9. The
/// arch-specific `compute_90a` cubins run on 9.0 only; the PTX covers every other device.
fn cubin_for(src: &ModuleSource, arch: PtxArch, cc: ComputeCapability) -> Option<&'static [u8]> {
    let runs = |c: &ComputeCapability| match arch {
        PtxArch::Compute90a => *c == cc,
        _ => c.major == cc.major && c.minor <= cc.minor,
    };
    src.cubins
        .iter()
        .filter(|(a, c, _)| *a == arch && runs(c))
        .max_by_key(|(_, c, _)| c.minor)
        .map(|(_, _, bytes)| *bytes)
}

/// The PTX text of `(src, arch)`, decompressed.
fn ptx_text(src: &ModuleSource, arch: PtxArch) -> Result<String> {
    let image = src.ptx.iter().find(|(a, _)| *a == arch).map(|(_, p)| *p);
    String::from_utf8(decompress(src, arch, image.unwrap_or_default())?).map_err(|e| {
        Error::CorruptImage {
            module: src.name,
            arch,
            reason: e.to_string(),
        }
    })
}

/// The kernels `module`'s PTX for `arch` defines (its `.entry` names); `None` when the build
/// does not ship that PTX. For tests: the launch layer's symbols name kernels that exist.
#[cfg(test)]
pub(crate) fn entries(module: &str, arch: PtxArch) -> Option<std::collections::HashSet<String>> {
    let src = find(module)?;
    if !src.ptx.iter().any(|(a, _)| *a == arch) {
        return None;
    }
    let ptx = ptx_text(src, arch).ok()?;
    let names = ptx.lines().filter_map(|l| {
        let rest = l.split(".entry ").nth(1)?;
        Some(rest.split('(').next()?.trim().to_string())
    });
    Some(names.collect())
}

/// The `.version` directive of a PTX text, e.g. `8.4`.
fn ptx_isa(ptx: &str) -> String {
    ptx.lines()
        .find_map(|l| l.trim().strip_prefix(".version "))
        .unwrap_or("unknown")
        .trim()
        .to_string()
}

/// The PTX target `module` would run with on a device of compute capability `cc`: `forced` if
/// given, else the newest shipped target the device runs. [`Error::UnsupportedArch`] when the
/// device runs none (or not the forced one), [`Error::InvalidArgument`] for a forced target the
/// module is not compiled for (e.g. compute_89, which only the FP8 GEMM has). Needs no GPU.
///
/// ```
/// use hikube_gpu::{modules, ComputeCapability, Error, PtxArch};
/// let h100 = ComputeCapability::new(9, 0);
/// assert_eq!(modules::select("elementwise", h100, None)?, PtxArch::Compute90a);
/// assert_eq!(modules::select("elementwise", h100, Some(PtxArch::Compute70))?, PtxArch::Compute70);
/// let pascal = ComputeCapability::new(6, 1);
/// assert!(matches!(modules::select("elementwise", pascal, None), Err(Error::UnsupportedArch { .. })));
/// let fp8_only = modules::select("elementwise", h100, Some(PtxArch::Compute89));
/// assert!(matches!(fp8_only, Err(Error::InvalidArgument { .. })));
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
    let pick = |targets: &mut dyn Iterator<Item = PtxArch>| {
        let mut runs = targets.filter(|a| a.runs_on(cc));
        match forced {
            Some(f) => runs.find(|a| *a == f),
            None => runs.max(),
        }
    };
    let chosen = src.and_then(|s| pick(&mut s.ptx.iter().map(|(a, _)| *a)));
    match (src, chosen) {
        (Some(src), Some(arch)) => Ok((src, arch)),
        // A forced target the module is not compiled for: no build would run it.
        (Some(src), None) if forced.is_some_and(|f| !src.compiled_for(f)) => {
            Err(not_compiled_for(src, forced))
        }
        // A target this build left out would have run: say which feature brings it back.
        (Some(src), None) => match pick(&mut src.left_out.iter().copied()) {
            Some(arch) => Err(Error::ArchLeftOut {
                module: src.name,
                arch,
                feature: arch.name(),
            }),
            None => Err(unsupported(module, cc)),
        },
        (None, _) => Err(unsupported(module, cc)),
    }
}

fn not_compiled_for(src: &ModuleSource, forced: Option<PtxArch>) -> Error {
    let name = forced.map_or("no", PtxArch::name);
    Error::InvalidArgument {
        what: format!(
            "`{}` has no {name} kernels: force one of {} or none",
            src.name,
            src.all_targets()
                .map(PtxArch::name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn unsupported(module: &str, cc: ComputeCapability) -> Error {
    let shipped = targets(module);
    Error::UnsupportedArch {
        module: find(module).map_or("unknown module", |s| s.name),
        major: cc.major,
        minor: cc.minor,
        available: if shipped.is_empty() {
            "none".to_string()
        } else {
            let names: Vec<_> = shipped.iter().map(|a| a.name()).collect();
            names.join(", ")
        },
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
                decompress: Duration::ZERO,
                cached: true,
                ..*first
            };
            return Ok((m.clone(), info));
        }
        let (module, info) = self.load_image(src, arch)?;
        loaded.insert((src.name, arch), (module.clone(), info));
        Ok((module, info))
    }

    /// Decompresses and loads `(src, arch)`: the cubin for this device's compute capability if
    /// the module ships one and the driver takes it, else the PTX.
    fn load_image(
        &self,
        src: &'static ModuleSource,
        arch: PtxArch,
    ) -> Result<(Arc<CudaModule>, LoadInfo)> {
        let start = Instant::now();
        let info = |image, cubin_refused, decompress| LoadInfo {
            arch,
            image,
            cubin_refused,
            elapsed: start.elapsed(),
            decompress,
            cached: false,
        };
        let mut cubin_refused = None;
        let mut decompressing = Duration::ZERO;
        if let Some(cubin) = cubin_for(src, arch, self.compute_capability()) {
            // The decompressed buffer is owned, as `from_binary` wants, and heap-aligned for the
            // driver's ELF reader.
            let elf = decompress(src, arch, cubin)?;
            decompressing = start.elapsed();
            match self.inner.ctx.load_module(Ptx::from_binary(elf)) {
                Ok(module) => return Ok((module, info(ModuleImage::Cubin, None, decompressing))),
                // E.g. a driver too old for the ELF that ptxas wrote: the PTX still loads.
                Err(e) => cubin_refused = Some(e),
            }
        }
        let t = Instant::now();
        let ptx = ptx_text(src, arch)?;
        decompressing += t.elapsed();
        let ptx_isa = ptx_isa(&ptx);
        let module = self
            .inner
            .ctx
            .load_module(Ptx::from_src(ptx))
            .map_err(|source| Error::ModuleLoad {
                module: src.name,
                arch,
                ptx_isa,
                driver_version: device::driver_version().unwrap_or(0),
                source,
            })?;
        Ok((module, info(ModuleImage::Ptx, cubin_refused, decompressing)))
    }

    /// The kernel `function` of `module`, for the best target or the forced one, and the PTX
    /// target it was compiled for (what the kernel can rely on, e.g. programmatic dependent
    /// launch only in `compute_90a` code). Only the launch layer looks kernels up, through
    /// `KernelArgs::kernel`: a kernel's name is written once, beside its argument struct.
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

    fn inflated(m: &ModuleSource, arch: PtxArch, image: &[u8]) -> Vec<u8> {
        decompress(m, arch, image).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_module_ships_ptx_isa_8_4() {
        for m in MODULE_SOURCES {
            for (arch, image) in m.ptx {
                let ptx = String::from_utf8(inflated(m, *arch, image)).expect("PTX is text");
                assert_eq!(ptx_isa(&ptx), "8.4", "{} {}", m.name, arch);
                assert!(ptx.contains(&format!(".target sm_{}", &arch.name()[8..])));
            }
        }
    }

    /// The compute capabilities `scripts/ptx.py` assembles `arch`'s PTX for (its `CUBIN_SMS`, as
    /// the manifest lists them): the seed GPUs', plus 9.0 for compute_80 (H100/H200 run that
    /// GEMM path when their own is not in the build).
    fn native(arch: PtxArch) -> Vec<ComputeCapability> {
        MANIFEST_CUBINS
            .iter()
            .filter(|(a, _)| *a == arch)
            .map(|(_, cc)| *cc)
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
                    .map(|(_, cc, image)| {
                        let elf = inflated(m, *arch, image);
                        assert!(elf.starts_with(b"\x7fELF"), "{} {arch} {cc}", m.name);
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
    fn cubins_for_their_capability_and_newer_minors() {
        let h100 = ComputeCapability::new(9, 0);
        if let Some(gemm) = find("gemm_sm80").filter(|m| !m.ptx.is_empty()) {
            assert!(cubin_for(gemm, PtxArch::Compute80, h100).is_some());
            // Jetson Orin (8.7) and the RTX 40 cards (8.9) run the sm_86 cubin, a 10.0 GPU
            // JIT-compiles the PTX.
            let sm86 = cubin_for(gemm, PtxArch::Compute80, ComputeCapability::new(8, 6));
            for minor in [7, 9] {
                let cc = ComputeCapability::new(8, minor);
                assert_eq!(cubin_for(gemm, PtxArch::Compute80, cc), sm86);
            }
            assert!(sm86.is_some());
            let blackwell = ComputeCapability::new(10, 0);
            assert!(cubin_for(gemm, PtxArch::Compute80, blackwell).is_none());
        }
        // A forced older path on a newer GPU runs through the JIT, as before.
        if let Some(gemm70) = find("gemm_sm70").filter(|m| !m.ptx.is_empty()) {
            assert!(cubin_for(gemm70, PtxArch::Compute70, h100).is_none());
        }
        // What the ops load by default on every seed GPU comes as a cubin: elementwise's best
        // target, and the newest GEMM path the device runs (as `Matmul::new` picks it). A GPU
        // whose targets this build left out has none.
        for &(_, cc) in MANIFEST_CUBINS {
            let Ok((src, arch)) = choose("elementwise", cc, None) else {
                continue;
            };
            assert!(
                cubin_for(src, arch, cc).is_some(),
                "elementwise {arch} {cc}"
            );
            let (src, arch) = ["gemm_sm90", "gemm_sm80", "gemm_sm75", "gemm_sm70"]
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

    /// The manifest's targets (from `scripts/ptx.py`'s one list) are `PtxArch`'s variants and
    /// the crate's cargo features, all on by default.
    #[test]
    fn targets_are_the_variants_and_the_features() {
        assert_eq!(MANIFEST_TARGETS, PtxArch::ALL);
        let manifest = include_str!("../Cargo.toml");
        let default = manifest
            .lines()
            .find(|l| l.starts_with("default = ["))
            .expect("Cargo.toml has default features");
        for arch in PtxArch::ALL {
            assert!(
                manifest.contains(&format!("\n{} = []\n", arch.name())),
                "no feature {arch}"
            );
            assert!(default.contains(&format!("\"{}\"", arch.name())), "{arch}");
        }
    }

    /// Every target this build left out answers with the feature that brings it back, forced or
    /// chosen; with the default features there is none (CI also runs these tests without some).
    #[test]
    fn left_out_targets_name_their_feature() {
        for m in MODULE_SOURCES {
            assert!(m.left_out.iter().all(|a| !ships(m.name, *a)), "{}", m.name);
            for &arch in m.left_out {
                let cc = arch.min_capability();
                let err = choose(m.name, cc, Some(arch)).err();
                assert!(
                    matches!(err, Some(Error::ArchLeftOut { feature, .. }) if feature == arch.name()),
                    "{} {arch}: {err:?}",
                    m.name
                );
                if m.ptx.iter().all(|(a, _)| !a.runs_on(cc)) {
                    let err = choose(m.name, cc, None).err();
                    assert!(matches!(err, Some(Error::ArchLeftOut { .. })), "{err:?}");
                }
            }
        }
        #[cfg(not(feature = "compute_90a"))]
        {
            let h100 = ComputeCapability::new(9, 0);
            let err = select("gemm_sm90", h100, None).unwrap_err().to_string();
            assert!(err.contains("feature `compute_90a`"), "{err}");
            #[cfg(feature = "compute_80")]
            assert_eq!(
                select("elementwise", h100, None).ok(),
                Some(PtxArch::Compute80)
            );
        }
    }
}
