//! How long the driver takes to load each kernel module (JIT-compiling its PTX), per target.
//!
//!     CUDA_CACHE_DISABLE=1 cargo bench --bench modules   # every load compiles
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
    println!("| module | target | first load ms | median of 5 ms |\n|---|---|---|---|");
    let mut best_total = Duration::ZERO;
    for name in modules::names() {
        for arch in modules::targets(name).into_iter().filter(|a| a.runs_on(cc)) {
            let mut times = Vec::new();
            for _ in 0..6 {
                times.push(Device::open(0)?.load_module(name, Some(arch))?.elapsed);
            }
            let first = times.remove(0);
            println!(
                "| {name} | {arch} | {:.2} | {:.2} |",
                first.as_secs_f64() * 1e3,
                median(times).as_secs_f64() * 1e3
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
