//! Checks that the committed PTX and cubins under `kernels/ptx/` (stored zstd-compressed, as
//! `.ptx.zst` and `.cubin.zst`) still match the CUDA sources under `kernels/`, using the sha256
//! hashes in `kernels/ptx/manifest`. Shared by `build.rs` (which refuses to build on a mismatch)
//! and by the tests that prove it does.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The command that brings the PTX back in step with the sources.
pub const REGENERATE: &str = "python3 scripts/ptx.py gen";

/// One PTX file listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtxFile {
    /// File name inside `kernels/ptx/`, e.g. `elementwise.compute_80.ptx.zst`.
    pub file: String,
    /// Module name (the source file's stem).
    pub module: String,
    /// Virtual architecture, e.g. `compute_80`.
    pub arch: String,
}

/// One cubin listed in the manifest: a PTX file assembled by ptxas for one SM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CubinFile {
    /// File name inside `kernels/ptx/`, e.g. `elementwise.compute_80.sm_86.cubin.zst`.
    pub file: String,
    /// Module name (the source file's stem).
    pub module: String,
    /// Virtual architecture of the PTX it was assembled from, e.g. `compute_80`.
    pub arch: String,
    /// The SM it was assembled for, e.g. `sm_90a`.
    pub sm: String,
    /// The compute capability that loads it, e.g. `(9, 0)` for `sm_90` and `sm_90a`.
    pub capability: (u32, u32),
}

/// One tile configuration of `kernels/tiles.toml`, as the manifest lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    /// The module whose kernels have this tile, e.g. `gemm_sm80`.
    pub module: String,
    /// BM, BN, BK and stages.
    pub tile: [u32; 4],
    /// The warp tile (WM, WN) of an mma.sync kernel; `None` for the wgmma kernels.
    pub warp: Option<[u32; 2]>,
    /// The blocks per SM the kernel is compiled for.
    pub min_blocks: u32,
    /// The blocks that fit on one SM.
    pub fits: u32,
    /// The relative throughput the GEMM time model weighs.
    pub efficiency: f64,
    /// Also the general (unaligned) kernel.
    pub general: bool,
    /// Also a 4-channel gather kernel.
    pub c4: bool,
}

/// What the manifest lists, verified against the files on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The PTX files, in the manifest's order.
    pub ptx: Vec<PtxFile>,
    /// The cubins, in the manifest's order.
    pub cubins: Vec<CubinFile>,
    /// The tile configurations, in the table's order.
    pub tiles: Vec<Tile>,
}

/// `128x256x64x3` as numbers.
fn dims<const N: usize>(text: &str) -> Option<[u32; N]> {
    let parts: Vec<u32> = text
        .split('x')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    parts.try_into().ok()
}

/// A manifest `tile` line's fields after `tile`: module, tile, then `key=value` in a set order.
fn tile(fields: &[&str]) -> Option<Tile> {
    let [module, tile, rest @ ..] = fields else {
        return None;
    };
    let keys = ["warp", "min_blocks", "fits", "efficiency", "general", "c4"];
    let mut values = [""; 6];
    if rest.len() != keys.len() {
        return None;
    }
    for ((field, key), value) in rest.iter().zip(keys).zip(&mut values) {
        *value = field.strip_prefix(key)?.strip_prefix('=')?;
    }
    let [warp, min_blocks, fits, efficiency, general, c4] = values;
    Some(Tile {
        module: (*module).to_string(),
        tile: dims(tile)?,
        warp: if warp == "none" {
            None
        } else {
            Some(dims(warp)?)
        },
        min_blocks: min_blocks.parse().ok()?,
        fits: fits.parse().ok()?,
        efficiency: efficiency.parse().ok()?,
        general: general.parse().ok()?,
        c4: c4.parse().ok()?,
    })
}

/// The compute capability an SM name stands for: `sm_86` is 8.6, `sm_90a` is 9.0, `sm_120` 12.0.
pub fn sm_capability(sm: &str) -> Option<(u32, u32)> {
    // A trailing `a` or `f` names arch-specific features, not another capability.
    let digits = sm
        .strip_prefix("sm_")?
        .trim_end_matches(|c: char| c.is_ascii_lowercase());
    if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (major, minor) = digits.split_at(digits.len() - 1);
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The sha256 of a file the manifest lists, or why it cannot be read.
fn listed_file_hash(kernels: &Path, file: &str) -> Result<String, String> {
    sha256_hex(&kernels.join("ptx").join(file))
        .map_err(|e| format!("{e}: the manifest lists it. Run `{REGENERATE}`."))
}

fn sha256_hex(path: &Path) -> Result<String, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Every `.cu`, `.cuh` and `.toml` file under `kernels/` (outside `kernels/ptx/`), relative, with `/`.
fn kernel_sources(kernels: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut stack = vec![kernels.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let path: PathBuf = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                if path != kernels.join("ptx") {
                    stack.push(path);
                }
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("cu" | "cuh" | "toml")
            ) {
                let rel = path.strip_prefix(kernels).map_err(|e| e.to_string())?;
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Verifies the manifest against the files on disk and returns the PTX files and cubins it lists.
///
/// Fails, with a message that names the file and the command to run, when a source or header
/// was added, removed or changed since the PTX was generated, or when a PTX file or cubin was
/// edited, removed, or is not listed.
pub fn verify(kernels: &Path) -> Result<Verified, String> {
    let manifest_path = kernels.join("ptx").join("manifest");
    let text = fs::read_to_string(&manifest_path).map_err(|e| {
        format!(
            "cannot read {}: {e}. Run `{REGENERATE}`.",
            manifest_path.display()
        )
    })?;
    let mut recorded: BTreeMap<String, String> = BTreeMap::new();
    let mut ptx = Vec::new();
    let mut cubins = Vec::new();
    let mut tiles = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let unreadable = || {
            format!(
                "{}:{}: unreadable line {line:?}. Run `{REGENERATE}`.",
                manifest_path.display(),
                n + 1
            )
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [] => {}
            [first, ..] if first.starts_with('#') => {}
            ["compiler" | "assembler" | "options" | "compression", ..] => {}
            ["header" | "source" | "table", path, hash] => {
                recorded.insert((*path).to_string(), (*hash).to_string());
            }
            ["ptx", file, hash, module, arch] => {
                if listed_file_hash(kernels, file)? != *hash {
                    return Err(format!(
                        "kernels/ptx/{file} was edited by hand (its sha256 is not the manifest's). \
                         PTX is generated: run `{REGENERATE}`."
                    ));
                }
                ptx.push(PtxFile {
                    file: (*file).to_string(),
                    module: (*module).to_string(),
                    arch: (*arch).to_string(),
                });
            }
            ["cubin", file, hash, module, arch, sm] => {
                let capability = sm_capability(sm).ok_or_else(unreadable)?;
                if listed_file_hash(kernels, file)? != *hash {
                    return Err(format!(
                        "kernels/ptx/{file} was edited by hand (its sha256 is not the manifest's). \
                         Cubins are generated: run `{REGENERATE}`."
                    ));
                }
                cubins.push(CubinFile {
                    file: (*file).to_string(),
                    module: (*module).to_string(),
                    arch: (*arch).to_string(),
                    sm: (*sm).to_string(),
                    capability,
                });
            }
            ["tile", rest @ ..] => tiles.push(tile(rest).ok_or_else(unreadable)?),
            _ => return Err(unreadable()),
        }
    }
    for rel in kernel_sources(kernels)? {
        match recorded.remove(&rel) {
            None => {
                return Err(format!(
                    "kernels/{rel} is new since the PTX was generated: run `{REGENERATE}` and \
                     commit kernels/ptx/."
                ))
            }
            Some(hash) if hash != sha256_hex(&kernels.join(&rel))? => {
                return Err(format!(
                    "kernels/{rel} changed since its PTX was generated: the PTX is stale. \
                     Run `{REGENERATE}` and commit kernels/ptx/."
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(gone) = recorded.keys().next() {
        return Err(format!(
            "kernels/{gone} is in the manifest but no longer exists: run `{REGENERATE}`."
        ));
    }
    // A cubin is only ever loaded in place of its PTX, so it must come with one.
    if let Some(c) = cubins
        .iter()
        .find(|c| !ptx.iter().any(|p| p.module == c.module && p.arch == c.arch))
    {
        return Err(format!(
            "kernels/ptx/{} is listed for {} {}, which has no PTX: run `{REGENERATE}`.",
            c.file, c.module, c.arch
        ));
    }
    let listed: Vec<&str> = ptx
        .iter()
        .map(|p| p.file.as_str())
        .chain(cubins.iter().map(|c| c.file.as_str()))
        .collect();
    for entry in fs::read_dir(kernels.join("ptx")).map_err(|e| e.to_string())? {
        let name = entry.map_err(|e| e.to_string())?.file_name();
        let name = name.to_string_lossy();
        let artifact = [".ptx", ".cubin", ".ptx.zst", ".cubin.zst"]
            .iter()
            .any(|ext| name.ends_with(ext));
        if artifact && !listed.contains(&name.as_ref()) {
            return Err(format!(
                "kernels/ptx/{name} is not in the manifest: run `{REGENERATE}`."
            ));
        }
    }
    Ok(Verified { ptx, cubins, tiles })
}
