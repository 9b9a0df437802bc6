//! Checks that the committed PTX under `kernels/ptx/` still matches the CUDA sources under
//! `kernels/`, using the sha256 hashes in `kernels/ptx/manifest`. Shared by `build.rs` (which
//! refuses to build on a mismatch) and by the tests that prove it does.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The command that brings the PTX back in step with the sources.
pub const REGENERATE: &str = "python3 scripts/ptx.py gen";

/// One PTX file listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtxFile {
    /// File name inside `kernels/ptx/`.
    pub file: String,
    /// Module name (the source file's stem).
    pub module: String,
    /// Virtual architecture, e.g. `compute_80`.
    pub arch: String,
}

fn sha256_hex(path: &Path) -> Result<String, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Every `.cu` and `.cuh` file under `kernels/` (outside `kernels/ptx/`), relative, with `/`.
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
                Some("cu" | "cuh")
            ) {
                let rel = path.strip_prefix(kernels).map_err(|e| e.to_string())?;
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Verifies the manifest against the files on disk and returns the PTX files it lists.
///
/// Fails, with a message that names the file and the command to run, when a source or header
/// was added, removed or changed since the PTX was generated, or when a PTX file was edited,
/// removed, or is not listed.
pub fn verify(kernels: &Path) -> Result<Vec<PtxFile>, String> {
    let manifest_path = kernels.join("ptx").join("manifest");
    let text = fs::read_to_string(&manifest_path).map_err(|e| {
        format!(
            "cannot read {}: {e}. Run `{REGENERATE}`.",
            manifest_path.display()
        )
    })?;
    let mut recorded: BTreeMap<String, String> = BTreeMap::new();
    let mut ptx = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [] => {}
            [first, ..] if first.starts_with('#') => {}
            ["compiler" | "options", ..] => {}
            ["header" | "source", path, hash] => {
                recorded.insert((*path).to_string(), (*hash).to_string());
            }
            ["ptx", file, hash, module, arch] => {
                let actual = sha256_hex(&kernels.join("ptx").join(file))
                    .map_err(|e| format!("{e}: the manifest lists it. Run `{REGENERATE}`."))?;
                if actual != *hash {
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
            _ => {
                return Err(format!(
                    "{}:{}: unreadable line {line:?}. Run `{REGENERATE}`.",
                    manifest_path.display(),
                    n + 1
                ))
            }
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
    let listed: Vec<&str> = ptx.iter().map(|p| p.file.as_str()).collect();
    for entry in fs::read_dir(kernels.join("ptx")).map_err(|e| e.to_string())? {
        let name = entry.map_err(|e| e.to_string())?.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".ptx") && !listed.contains(&name.as_ref()) {
            return Err(format!(
                "kernels/ptx/{name} is not in the manifest: run `{REGENERATE}`."
            ));
        }
    }
    Ok(ptx)
}
