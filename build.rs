//! Embeds the generated PTX and cubins (zstd-compressed) into the crate, after checking that they
//! are in step with the CUDA sources: a stale PTX fails the build with the command that
//! regenerates it.
//!
//! The PTX targets come from the manifest (`scripts/ptx.py` holds their one list); each is a cargo
//! feature of the same name (`compute_90a`, …), all on by default. A target whose feature is off
//! is left out of the binary, and the registry answers for it with `Error::ArchLeftOut`.

#[path = "build/ptx_manifest.rs"]
mod ptx_manifest;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The `PtxArch` variant for a manifest arch (`compute_90a` is `Compute90a`), or a build failure
/// naming it. A target without a variant fails to compile the generated code, which names it.
fn variant(arch: &str) -> String {
    match arch.strip_prefix("compute_") {
        Some(number) if !number.is_empty() => format!("Compute{number}"),
        _ => fail(&format!(
            "kernels/ptx/manifest names an unknown arch {arch}"
        )),
    }
}

/// Whether the cargo feature named after `arch` is on.
fn enabled(arch: &str) -> bool {
    std::env::var_os(format!("CARGO_FEATURE_{}", arch.to_uppercase())).is_some()
}

/// The distinct items, in the order they first appear.
fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn fail(message: &str) -> ! {
    // A build-script failure prints stderr; `exit(1)` keeps it free of a backtrace.
    eprintln!("error: {message}");
    std::process::exit(1);
}

/// One module's generated `ModuleSource`: the images of the enabled targets, and the targets
/// left out.
fn module_source(module: &str, verified: &ptx_manifest::Verified, dir: &Path) -> String {
    let mut code = format!("    ModuleSource {{ name: {module:?}, ptx: &[\n");
    let ptx = verified.ptx.iter().filter(|p| p.module == module);
    for p in ptx.clone().filter(|p| enabled(&p.arch)) {
        let path = dir.join(&p.file).display().to_string();
        let _ = writeln!(
            code,
            "        (PtxArch::{}, include_bytes!({path:?})),",
            variant(&p.arch)
        );
    }
    // `verify` has checked that every cubin belongs to a listed PTX, hence to a module here.
    code.push_str("    ], cubins: &[\n");
    for c in verified
        .cubins
        .iter()
        .filter(|c| c.module == module && enabled(&c.arch))
    {
        let (major, minor) = c.capability;
        let path = dir.join(&c.file).display().to_string();
        let _ = writeln!(
            code,
            "        (PtxArch::{}, ComputeCapability::new({major}, {minor}), include_bytes!({path:?})),",
            variant(&c.arch),
        );
    }
    code.push_str("    ], left_out: &[");
    for p in ptx.filter(|p| !enabled(&p.arch)) {
        let _ = write!(code, "PtxArch::{}, ", variant(&p.arch));
    }
    code.push_str("] },\n");
    code
}

/// Every (target, compute capability) the manifest ships a cubin for, and every target, whatever
/// the features: what the registry's tests hold each module, `PtxArch` and the features to.
fn cubin_capabilities(verified: &ptx_manifest::Verified) -> String {
    let mut pairs: Vec<(&str, (u32, u32))> = verified
        .cubins
        .iter()
        .map(|c| (c.arch.as_str(), c.capability))
        .collect();
    pairs.sort();
    pairs.dedup();
    let mut code = String::from(
        "#[cfg(test)]\npub(crate) static MANIFEST_CUBINS: &[(PtxArch, ComputeCapability)] = &[\n",
    );
    for (arch, (major, minor)) in pairs {
        let _ = writeln!(
            code,
            "    (PtxArch::{}, ComputeCapability::new({major}, {minor})),",
            variant(arch)
        );
    }
    code.push_str("];\n");
    let mut targets = distinct(verified.ptx.iter().map(|p| p.arch.as_str()));
    // Oldest first, as `PtxArch` orders them: by the number (`compute_90a` is 90).
    targets.sort_by_key(|arch| {
        let digits: String = arch.chars().filter(char::is_ascii_digit).collect();
        digits.parse::<u32>().unwrap_or(u32::MAX)
    });
    code.push_str("#[cfg(test)]\npub(crate) static MANIFEST_TARGETS: &[PtxArch] = &[");
    for arch in targets {
        let _ = write!(code, "PtxArch::{}, ", variant(arch));
    }
    code.push_str("];\n");
    code
}

/// One tile as a `crate::tiles::Tile` expression.
fn tile_expr(t: &ptx_manifest::Tile) -> String {
    let [bm, bn, bk, stages] = t.tile;
    let warp = match t.warp {
        Some([wm, wn]) => format!("Some(({wm}, {wn}))"),
        None => "None".to_string(),
    };
    format!(
        "Tile {{ bm: {bm}, bn: {bn}, bk: {bk}, stages: {stages}, warp: {warp}, min_blocks: {}, \
         fits: {}, efficiency: {:?}, general: {} }}",
        t.min_blocks, t.fits, t.efficiency, t.general
    )
}

/// `crate::tiles`' tables: per module of `kernels/tiles.toml`, an array `GEMM_SM80` (the module's
/// name in capitals) of its tiles, and, where some tile has a 4-channel gather kernel,
/// `GEMM_SM80_C4` of those.
fn tile_tables(tiles: &[ptx_manifest::Tile]) -> String {
    let modules = distinct(tiles.iter().map(|t| t.module.as_str()));
    let mut code =
        String::from("// Generated by build.rs from kernels/ptx/manifest (kernels/tiles.toml).\n");
    for module in modules {
        let all: Vec<_> = tiles.iter().filter(|t| t.module == module).collect();
        let c4: Vec<_> = all.iter().copied().filter(|t| t.c4).collect();
        let name = module.to_uppercase();
        for (name, list) in [(name.clone(), all), (format!("{name}_C4"), c4)] {
            if list.is_empty() {
                continue;
            }
            let _ = writeln!(code, "pub(crate) const {name}: [Tile; {}] = [", list.len());
            for t in list {
                let _ = writeln!(code, "    {},", tile_expr(t));
            }
            code.push_str("];\n");
        }
    }
    code
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let kernels = root.join("kernels");
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=build/ptx_manifest.rs");

    let verified = match ptx_manifest::verify(&kernels) {
        Ok(verified) => verified,
        Err(message) => fail(&format!("the kernels' PTX is out of date.\n{message}")),
    };
    if !verified.ptx.iter().any(|p| enabled(&p.arch)) {
        println!(
            "cargo:warning=hikube-gpu: no PTX target feature is on (compute_70, compute_80, …): \
             every kernel answers Error::ArchLeftOut"
        );
    }
    // One entry per module, in the manifest's order.
    let modules = distinct(verified.ptx.iter().map(|p| p.module.as_str()));
    let dir = kernels.join("ptx");
    let mut code = String::from("// Generated by build.rs from kernels/ptx/manifest.\n");
    code.push_str("pub(crate) static MODULE_SOURCES: &[ModuleSource] = &[\n");
    for module in modules {
        code.push_str(&module_source(module, &verified, &dir));
    }
    code.push_str("];\n");
    code.push_str(&cubin_capabilities(&verified));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets this"));
    std::fs::write(out.join("ptx.rs"), code).expect("OUT_DIR is writable");
    std::fs::write(out.join("tiles.rs"), tile_tables(&verified.tiles))
        .expect("OUT_DIR is writable");
}
