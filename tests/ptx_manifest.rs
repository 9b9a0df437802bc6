//! The build refuses stale PTX and cubins: the manifest check itself on edited copies of
//! `kernels/`, and the real `build.rs` on an edited copy of the crate.

#[path = "../build/ptx_manifest.rs"]
#[allow(dead_code)]
mod ptx_manifest;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A fresh copy of `kernels/` in a temporary folder of its own.
fn kernels_copy(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hikube-ptx-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    copy_dir(&root().join("kernels"), &dir);
    dir
}

/// Flips the last bit of a file (for a compressed artifact, a change to its stored bytes).
fn flip_last_bit(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(path, bytes).unwrap();
}

fn append(path: &Path, text: &str) {
    let mut s = fs::read_to_string(path).unwrap();
    s.push_str(text);
    fs::write(path, s).unwrap();
}

#[test]
fn committed_ptx_matches_the_sources() {
    let listed = ptx_manifest::verify(&root().join("kernels")).expect("kernels/ptx is stale");
    assert!(listed
        .ptx
        .iter()
        .any(|p| p.module == "elementwise" && p.arch == "compute_90a"));
    assert!(listed.cubins.iter().any(|c| c.module == "gemm_sm80"
        && c.arch == "compute_80"
        && c.sm == "sm_90"
        && c.capability == (9, 0)));
}

#[test]
fn sm_names_give_their_capability() {
    assert_eq!(ptx_manifest::sm_capability("sm_86"), Some((8, 6)));
    assert_eq!(ptx_manifest::sm_capability("sm_90a"), Some((9, 0)));
    assert_eq!(ptx_manifest::sm_capability("sm_120"), Some((12, 0)));
    for bad in ["compute_80", "sm_", "sm_9", "sm_8x6", "80"] {
        assert_eq!(ptx_manifest::sm_capability(bad), None, "{bad}");
    }
}

#[test]
fn an_edited_source_is_refused() {
    let k = kernels_copy("source");
    append(&k.join("elementwise.cu"), "\n// an edit\n");
    let err = ptx_manifest::verify(&k).unwrap_err();
    assert!(err.contains("kernels/elementwise.cu changed"), "{err}");
    assert!(err.contains(ptx_manifest::REGENERATE), "{err}");
    fs::remove_dir_all(k).unwrap();
}

#[test]
fn an_edited_header_is_refused() {
    let k = kernels_copy("header");
    append(&k.join("common/convert.cuh"), "\n// an edit\n");
    let err = ptx_manifest::verify(&k).unwrap_err();
    assert!(err.contains("kernels/common/convert.cuh changed"), "{err}");
    fs::remove_dir_all(k).unwrap();
}

#[test]
fn an_edited_tile_table_is_refused() {
    let k = kernels_copy("tiles");
    append(&k.join("tiles.toml"), "\n# an edit\n");
    let err = ptx_manifest::verify(&k).unwrap_err();
    assert!(err.contains("kernels/tiles.toml changed"), "{err}");
    fs::remove_dir_all(k).unwrap();
}

/// The manifest lists every tile of the table, in its order, with the module's flags: what
/// `crate::tiles` is generated from.
#[test]
fn the_manifest_lists_the_tile_table() {
    let tiles = ptx_manifest::verify(&root().join("kernels")).unwrap().tiles;
    let sm80: Vec<_> = tiles.iter().filter(|t| t.module == "gemm_sm80").collect();
    assert!(sm80.len() > 1, "{tiles:?}");
    // Only a GEMM module's last tile is also its general kernel.
    assert!(sm80.last().unwrap().general);
    assert!(sm80.iter().rev().skip(1).all(|t| !t.general));
    assert!(tiles.iter().any(|t| t.module == "conv_sm80" && !t.c4));
    assert!(tiles
        .iter()
        .all(|t| (t.warp.is_none()) == t.module.ends_with("sm90")));
    assert!(tiles
        .iter()
        .all(|t| t.efficiency > 0.0 && t.efficiency <= 1.0));
}

#[test]
fn new_and_removed_sources_are_refused() {
    let k = kernels_copy("new");
    fs::write(k.join("new_kernel.cu"), "// hikube-archs: compute_80\n").unwrap();
    let err = ptx_manifest::verify(&k).unwrap_err();
    assert!(err.contains("kernels/new_kernel.cu is new"), "{err}");
    fs::remove_dir_all(&k).unwrap();

    let k = kernels_copy("removed");
    fs::remove_file(k.join("common/convert.cuh")).unwrap();
    let err = ptx_manifest::verify(&k).unwrap_err();
    assert!(err.contains("no longer exists"), "{err}");
    fs::remove_dir_all(k).unwrap();
}

#[test]
fn hand_edited_or_unlisted_ptx_is_refused() {
    let k = kernels_copy("ptx");
    flip_last_bit(&k.join("ptx/elementwise.compute_80.ptx.zst"));
    let err = ptx_manifest::verify(&k).unwrap_err();
    assert!(err.contains("edited by hand"), "{err}");
    fs::remove_dir_all(&k).unwrap();

    // Compressed or not: a plain PTX left beside the compressed ones is refused too.
    for extra in ["extra.compute_80.ptx.zst", "elementwise.compute_80.ptx"] {
        let k = kernels_copy("unlisted");
        fs::write(k.join("ptx").join(extra), ".version 8.4\n").unwrap();
        let err = ptx_manifest::verify(&k).unwrap_err();
        assert!(
            err.contains(&format!("{extra} is not in the manifest")),
            "{err}"
        );
        fs::remove_dir_all(k).unwrap();
    }
}

#[test]
fn hand_edited_or_unlisted_cubin_is_refused() {
    let k = kernels_copy("cubin");
    flip_last_bit(&k.join("ptx/elementwise.compute_80.sm_86.cubin.zst"));
    let err = ptx_manifest::verify(&k).unwrap_err();
    assert!(
        err.contains("elementwise.compute_80.sm_86.cubin.zst was edited by hand"),
        "{err}"
    );
    assert!(err.contains(ptx_manifest::REGENERATE), "{err}");
    fs::remove_dir_all(&k).unwrap();

    let k = kernels_copy("unlisted-cubin");
    fs::copy(
        k.join("ptx/elementwise.compute_80.sm_80.cubin.zst"),
        k.join("ptx/elementwise.compute_80.sm_87.cubin.zst"),
    )
    .unwrap();
    let err = ptx_manifest::verify(&k).unwrap_err();
    assert!(
        err.contains("elementwise.compute_80.sm_87.cubin.zst is not in the manifest"),
        "{err}"
    );
    fs::remove_dir_all(&k).unwrap();

    let k = kernels_copy("missing-cubin");
    fs::remove_file(k.join("ptx/elementwise.compute_90a.sm_90a.cubin.zst")).unwrap();
    let err = ptx_manifest::verify(&k).unwrap_err();
    assert!(err.contains("the manifest lists it"), "{err}");
    fs::remove_dir_all(k).unwrap();
}

/// The real build script, on a copy of the crate whose kernel source was edited: `cargo check`
/// must fail and say which file is stale and what to run.
#[test]
fn cargo_refuses_to_build_with_stale_ptx() {
    // The packed test binary also runs on the GPU machine, which has no Rust toolchain.
    if !Path::new(env!("CARGO")).exists() {
        eprintln!("cargo is not on this machine: the build check runs where the crate is built");
        return;
    }
    let copy = std::env::temp_dir().join(format!("hikube-stale-crate-{}", std::process::id()));
    let _ = fs::remove_dir_all(&copy);
    fs::create_dir_all(&copy).unwrap();
    for item in ["Cargo.toml", "Cargo.lock", "build.rs"] {
        fs::copy(root().join(item), copy.join(item)).unwrap();
    }
    for dir in ["build", "src", "kernels", "tests", "benches", "examples"] {
        copy_dir(&root().join(dir), &copy.join(dir));
    }
    append(&copy.join("kernels/elementwise.cu"), "\n// stale now\n");
    let out = Command::new(env!("CARGO"))
        .args(["check", "--lib", "--offline", "--quiet"])
        .current_dir(&copy)
        // A target folder of its own, kept between runs, so only this crate's build script runs.
        .env(
            "CARGO_TARGET_DIR",
            root().join("target").join("stale-ptx-check"),
        )
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    fs::remove_dir_all(&copy).unwrap();
    assert!(
        !out.status.success(),
        "the build accepted stale PTX:\n{stderr}"
    );
    assert!(
        stderr.contains("kernels/elementwise.cu changed since its PTX was generated"),
        "{stderr}"
    );
    assert!(stderr.contains("python3 scripts/ptx.py gen"), "{stderr}");
}
