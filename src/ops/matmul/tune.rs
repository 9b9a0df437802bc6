//! Autotuning (issue 18): a plan's tile configuration and split-K factor measured on the
//! user's GPU instead of taken from the time model, and the winner kept in a cache file keyed
//! by GPU model, driver, crate version and the product's shape, so that every later plan of
//! that shape — in this process or another — starts from it without measuring: PyTorch's
//! `torch.backends.cudnn.benchmark`, but persistent. Off by default (measuring costs a few
//! hundred launches the first time): [`Matmul::tuned`] turns it on for one plan.
//!
//! The cache is a text file of one line per tuned product, `key<TAB>tiling<TAB>splits`,
//! at [`TuneCache::default_location`] (`HIKUBE_GPU_TUNE_CACHE`, else the user's cache
//! directory). Writers read it, add their line and rename a complete new file over it, so a
//! reader never sees a partial file; two processes storing at the same moment may each keep
//! only their own line (the other product is measured again on its next tuned plan). Lines that
//! do not parse are ignored.

use super::{Matmul, MatmulDesc};
use crate::error::{Error, Result};
use crate::memory::DeviceBuffer;
use crate::ops::gemm::Tiling;
use crate::ops::Float;
use crate::stream::Stream;
use crate::timing::time_on_stream;
use std::path::{Path, PathBuf};

/// The environment variable that names the cache file.
pub const TUNE_CACHE_ENV: &str = "HIKUBE_GPU_TUNE_CACHE";
const FILE: &str = "tune-v1.txt";

/// A cache file of measured tile choices (module docs); [`Matmul::tuned`] reads and fills it.
///
/// ```
/// use hikube_gpu::ops::matmul::TuneCache;
/// let cache = TuneCache::at(std::env::temp_dir().join("hikube-gpu-doc-no-such-cache.txt"));
/// assert!(cache.get("any product").is_none()); // nothing tuned yet (no file)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TuneCache {
    path: PathBuf,
}

impl TuneCache {
    /// The cache at `path` (created at the first store).
    pub fn at(path: impl Into<PathBuf>) -> TuneCache {
        TuneCache { path: path.into() }
    }

    /// `$HIKUBE_GPU_TUNE_CACHE` if set, else `tune-v1.txt` under `$XDG_CACHE_HOME/hikube-gpu`
    /// or `$HOME/.cache/hikube-gpu`; `None` when none of them is set.
    pub fn default_location() -> Option<TuneCache> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(path) = var(TUNE_CACHE_ENV) {
            return Some(TuneCache::at(path));
        }
        let dir = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache")))?;
        Some(TuneCache::at(dir.join("hikube-gpu").join(FILE)))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored choice for `key`, if any (the last line for it wins).
    pub fn get(&self, key: &str) -> Option<(Tiling, usize)> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        text.lines()
            .rev()
            .filter_map(parse_line)
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Stores `choice` for `key`, replacing an earlier line for it: the file is rewritten
    /// whole beside itself and renamed over the old one.
    pub fn put(&self, key: &str, (tiling, splits): (Tiling, usize)) -> Result<()> {
        if key.contains(['\t', '\n']) {
            return Err(Error::InvalidArgument {
                what: format!("a tuning cache key holds no tab or newline: {key:?}"),
            });
        }
        let old = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut text: String = old
            .lines()
            .filter(|l| parse_line(l).is_some_and(|(k, _)| k != key))
            .flat_map(|l| [l, "\n"])
            .collect();
        text.push_str(&format!("{key}\t{tiling}\t{splits}\n"));
        let io = |e: std::io::Error| Error::InvalidArgument {
            what: format!("tuning cache {}: {e}", self.path.display()),
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // A name of its own per write (process and call), so concurrent writers never share one.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .path
            .with_extension(format!("tmp{}-{n}", std::process::id()));
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

/// `key<TAB>BMxBNxBKxSTAGES<TAB>splits`, or `None`.
fn parse_line(line: &str) -> Option<(&str, (Tiling, usize))> {
    let mut parts = line.split('\t');
    let (key, tiling, splits) = (parts.next()?, parts.next()?, parts.next()?);
    let dims: Vec<usize> = tiling
        .split('x')
        .map(|d| d.parse().ok())
        .collect::<Option<_>>()?;
    let [bm, bn, bk, stages] = dims[..] else {
        return None;
    };
    let splits = splits.parse().ok().filter(|&s| s >= 1)?;
    let tiling = Tiling { bm, bn, bk, stages };
    (parts.next().is_none() && !key.is_empty()).then_some((key, (tiling, splits)))
}

/// The cache key of `desc` for inputs `I` and output `O` on `stream`'s device: what decides
/// which tiling is fastest (GPU model, driver, crate version, types, layouts, shape,
/// accumulation, forced target), not the epilogue's scalars.
fn key<I: Float, O: Float>(stream: &Stream, desc: &MatmulDesc) -> Result<String> {
    let device = stream.device();
    let driver = crate::device::driver_version()?;
    let d = desc;
    Ok(format!(
        "{}|driver {driver}|hikube-gpu {}|{}->{}|{:?}{:?}{:?}|{}x{}x{}x{}|{:?}|{:?}",
        device.model().name,
        env!("CARGO_PKG_VERSION"),
        I::SUFFIX,
        O::SUFFIX,
        d.a_layout,
        d.b_layout,
        d.d_layout,
        d.m,
        d.n,
        d.k,
        d.batch,
        d.compute,
        d.options.arch,
    ))
}

impl<I: Float, O: Float> Matmul<I, O> {
    /// A plan for `desc` whose tile configuration and split-K factor were measured on this GPU:
    /// the cache's choice for this product if `cache` holds one, else every tile configuration
    /// of the plan's path with 1, 2, 4 and 8 slices (where each slice keeps ≥ 256 of K) timed on
    /// `stream` (CUDA events, median of 10 after 2 warm-up launches, on scratch buffers), the
    /// fastest stored in `cache`. A description that forces its tiling or split-K factor is
    /// planned as it is. The measuring synchronizes `stream`; a plan from the cache does not.
    ///
    /// ```no_run
    /// use hikube_gpu::half::f16;
    /// use hikube_gpu::ops::matmul::{Layout, Matmul, MatmulDesc, TuneCache};
    /// use hikube_gpu::Device;
    /// let device = Device::open(0)?;
    /// let stream = device.default_stream();
    /// let cache = TuneCache::default_location(); // HIKUBE_GPU_TUNE_CACHE, or ~/.cache/hikube-gpu
    /// let desc = MatmulDesc::new(128, 4096, 4096).b_layout(Layout::ColMajor);
    /// let mm = Matmul::<f16, f16>::tuned(&stream, desc, cache.as_ref())?; // measures once
    /// println!("{:?}", mm.tiling()); // later processes read it from the cache
    /// # Ok::<(), hikube_gpu::Error>(())
    /// ```
    pub fn tuned(stream: &Stream, desc: MatmulDesc, cache: Option<&TuneCache>) -> Result<Self> {
        if desc.tiling.is_some() || desc.split_k.is_some() || desc.is_empty() || desc.k == 0 {
            return Matmul::new(stream, desc);
        }
        let key = key::<I, O>(stream, &desc)?;
        if let Some((tiling, splits)) = cache.and_then(|c| c.get(&key)) {
            if let Ok(plan) = Matmul::new(stream, desc.clone().tiling(tiling).split_k(splits)) {
                return Ok(plan);
            }
        }
        let (best, _) = fastest::<I, O>(stream, &desc)?;
        if let (Some(cache), Some(choice)) = (cache, best.tiling()) {
            cache.put(&key, choice)?;
        }
        Ok(best)
    }
}

/// The fastest of `desc`'s candidate plans (the heuristic's among them) and its median time in
/// milliseconds.
fn fastest<I: Float, O: Float>(stream: &Stream, desc: &MatmulDesc) -> Result<(Matmul<I, O>, f64)> {
    let heuristic = Matmul::<I, O>::new(stream, desc.clone())?;
    let s = desc.strides()?;
    let a = DeviceBuffer::<I>::zeroed(stream, s.extent_a.max(1))?;
    let b = DeviceBuffer::<I>::zeroed(stream, s.extent_b.max(1))?;
    let mut d = DeviceBuffer::<O>::zeroed(stream, s.extent_d.max(1))?;
    let mut time = |plan: &Matmul<I, O>| -> Result<f64> {
        let t = time_on_stream(stream, 2, 10, |_| {
            plan.launch(stream, &a, &b, &mut d, crate::ops::Epilogue::<O>::new())
        })?;
        Ok(t.median_ms())
    };
    let mut best = (time(&heuristic)?, heuristic);
    let tilings = Matmul::<I, O>::tilings(best.1.path());
    for tiling in tilings {
        for splits in [1, 2, 4, 8]
            .into_iter()
            .filter(|&s| desc.k / s >= 256 || s == 1)
        {
            let Ok(plan) = Matmul::<I, O>::new(stream, desc.clone().tiling(tiling).split_k(splits))
            else {
                continue;
            };
            let ms = time(&plan)?;
            if ms < best.0 {
                best = (ms, plan);
            }
        }
    }
    Ok((best.1, best.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiling(bm: usize, bn: usize) -> Tiling {
        Tiling {
            bm,
            bn,
            bk: 64,
            stages: 4,
        }
    }

    fn cache(name: &str) -> TuneCache {
        let dir = std::env::temp_dir().join(format!("hikube-tune-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TuneCache::at(dir.join("sub").join(FILE))
    }

    #[test]
    fn stores_and_replaces_choices() {
        let c = cache("replace");
        assert_eq!(c.get("a"), None);
        c.put("a", (tiling(128, 256), 1)).unwrap();
        c.put("b", (tiling(128, 128), 4)).unwrap();
        c.put("a", (tiling(64, 64), 2)).unwrap();
        assert_eq!(c.get("a"), Some((tiling(64, 64), 2)));
        assert_eq!(c.get("b"), Some((tiling(128, 128), 4)));
        let text = std::fs::read_to_string(c.path()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(c.put("bad\tkey", (tiling(64, 64), 1)).is_err());
    }

    #[test]
    fn unreadable_lines_are_ignored() {
        let c = cache("garbage");
        std::fs::create_dir_all(c.path().parent().unwrap()).unwrap();
        let lines = "x\t128x256x64\t1\ny\t128x256x64x4\t0\nz\t1x2x3x4\tnan\n\t64x64x64x4\t1\n\
                     ok\t64x64x64x4\t2\textra\nok\t64x64x64x4\t2\n";
        std::fs::write(c.path(), lines).unwrap();
        for k in ["x", "y", "z", ""] {
            assert_eq!(c.get(k), None, "{k:?}");
        }
        assert_eq!(c.get("ok"), Some((tiling(64, 64), 2)));
        c.put("new", (tiling(128, 128), 1)).unwrap();
        let text = std::fs::read_to_string(c.path()).unwrap();
        assert_eq!(
            text.lines().count(),
            2,
            "bad lines dropped on rewrite: {text}"
        );
    }

    #[test]
    fn concurrent_writers_never_leave_a_partial_file() {
        let c = cache("threads");
        let writers: Vec<_> = (0..8)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        c.put(&format!("t{t}-{i}"), (tiling(64, 64), 1)).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let text = std::fs::read_to_string(c.path()).unwrap();
        assert!(!text.is_empty());
        assert!(text.lines().all(|l| parse_line(l).is_some()), "{text}");
    }

    #[test]
    fn the_environment_names_the_file() {
        // Read-only check of the precedence without touching the process environment: an
        // explicit path is used as it is.
        let c = TuneCache::at("/tmp/x/tune.txt");
        assert_eq!(c.path(), Path::new("/tmp/x/tune.txt"));
        if std::env::var_os(TUNE_CACHE_ENV).is_none() && std::env::var_os("HOME").is_some() {
            let d = TuneCache::default_location().unwrap();
            assert!(
                d.path().ends_with(Path::new("hikube-gpu").join(FILE)),
                "{d:?}"
            );
        }
    }
}
