//! How long the driver takes to load each kernel module, per target: the cubin assembled for this
//! device's SM where the crate ships one, else its PTX (JIT-compiled). The images are embedded
//! zstd-compressed: each load decompresses one first, and the table shows that part of the time.
//!
//!     CUDA_CACHE_DISABLE=1 cargo bench --bench modules   # every PTX load compiles
//!     cargo bench --bench modules                        # what a second run of a program sees
//!
//! Each load uses a freshly opened `Device`, whose module registry is empty.

use hikube_gpu::{modules, Device, PtxArch, Result};
use std::time::Duration;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let device = match Device::open(0) {
        Ok(d) => d,
        Err(e) if e.is_no_gpu() => {
            eprintln!("modules bench: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let cc = device.compute_capability();
    let cache = if std::env::var("CUDA_CACHE_DISABLE").as_deref() == Ok("1") {
        "JIT cache disabled: every load compiles"
    } else {
        "JIT cache enabled"
    };
    println!("{} (compute {cc}), {cache}", device.model().name);
    println!(
        "| module | target | image | first load ms | of which decompression ms | median of 5 ms |\n\
         |---|---|---|---|---|---|"
    );
    let mut best_total = Duration::ZERO;
    for name in modules::names() {
        for arch in modules::targets(name).into_iter().filter(|a| a.runs_on(cc)) {
            let mut loads = Vec::new();
            for _ in 0..6 {
                loads.push(Device::open(0)?.load_module(name, Some(arch))?);
            }
            let first = loads.remove(0);
            // Says so when the driver refused the cubin: the row then times the PTX fallback.
            let image = match first.cubin_refused {
                Some(e) => format!("{} (cubin refused: {e:?})", first.image),
                None => first.image.to_string(),
            };
            println!(
                "| {name} | {arch} | {image} | {:.2} | {:.2} | {:.2} |",
                first.elapsed.as_secs_f64() * 1e3,
                first.decompress.as_secs_f64() * 1e3,
                median(loads.iter().map(|l| l.elapsed).collect()).as_secs_f64() * 1e3
            );
        }
        let best: PtxArch = modules::select(name, cc, None)?;
        best_total += Device::open(0)?.load_module(name, Some(best))?.elapsed;
    }
    println!(
        "all modules, best target each: {:.2} ms",
        best_total.as_secs_f64() * 1e3
    );
    Ok(())
}
