//! GPU tests, through one harness: on a machine with a GPU every test runs for real; without one
//! the GPU tests are reported *ignored*, with the reason, and the tests that need no GPU still run.
//! GPU tests run one at a time (they allocate most of the device's memory in places).

mod conv;
mod conv_grad;
// The f64 convolution reference (forward and gradients), shared with tests/conv_reference.rs.
#[path = "../support/conv_ref.rs"]
mod conv_ref;
mod conv_sm90;
mod device;
mod fp8;
mod kernels;
mod matmul;
mod matmul_api;
mod memory;
#[cfg(feature = "exporter")]
mod monitor;
mod multi;
mod pool;
mod pooling;
mod runtime;
mod soundness;
mod tiny_shapes;
mod train;

use hikube_gpu::{Device, Dtype, Float};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use rand::Rng;
use std::sync::OnceLock;

/// The device the GPU tests use, opened once; `Err` holds why there is none.
fn gpu() -> Result<&'static Device, String> {
    static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
    DEVICE
        .get_or_init(|| Device::open(0).map_err(|e| format!("no GPU here: {e}")))
        .as_ref()
        .map_err(Clone::clone)
}

/// A test that needs a GPU: run on device 0, or reported ignored where there is none.
pub fn gpu_test(name: &str, test: fn(&Device) -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || match gpu() {
        Ok(device) => test(device).map(|()| Completion::Completed),
        Err(reason) => Ok(Completion::ignored_with(reason)),
    })
}

/// A test that runs everywhere.
pub fn any_test(name: &str, test: fn() -> Result<(), Failed>) -> Trial {
    Trial::test(name, test)
}

/// Fails the test with `msg` unless `cond`.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {{
        let ok: bool = $cond;
        if !ok {
            return Err(libtest_mimic::Failed::from(format!($($msg)+)));
        }
    }};
}

/// `n` values uniform in [-1, 1), rounded to `T`.
pub fn random<T: Float>(n: usize, rng: &mut impl Rng) -> Vec<T> {
    (0..n)
        .map(|_| T::from_f32(rng.random_range(-1.0f32..1.0)))
        .collect()
}

/// The relative-error bound of a kernel writing `O` (the rounding of its output type).
pub fn bound<O: Float>() -> f64 {
    match O::DTYPE {
        Dtype::F32 => 1e-4,
        Dtype::F16 => 2e-3,
        Dtype::Bf16 => 1e-2,
        // A type added later: no bound known yet.
        _ => 0.0,
    }
}

/// GELU (erf form), in f64: what the kernels' epilogue approximates.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

/// The epilogue's activation in f64, as the kernels apply it (every op's tests compare with it).
pub fn activate(act: hikube_gpu::ops::Activation, v: f64) -> f64 {
    use hikube_gpu::ops::Activation;
    match act {
        Activation::None => v,
        Activation::Relu => v.max(0.0),
        Activation::Gelu => gelu(v),
    }
}

/// Turns any error into a test failure that shows it.
pub fn fail<E: std::fmt::Debug>(e: E) -> Failed {
    Failed::from(format!("{e:?}"))
}

fn main() {
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let mut trials = Vec::new();
    trials.extend(device::trials());
    trials.extend(memory::trials());
    trials.extend(kernels::trials());
    trials.extend(matmul::trials());
    trials.extend(matmul_api::trials());
    trials.extend(fp8::trials());
    trials.extend(conv::trials());
    trials.extend(conv_grad::trials());
    trials.extend(conv_sm90::trials());
    trials.extend(runtime::trials());
    trials.extend(pool::trials());
    trials.extend(soundness::trials());
    trials.extend(multi::trials());
    trials.extend(train::trials());
    trials.extend(pooling::trials());
    trials.extend(tiny_shapes::trials());
    #[cfg(feature = "exporter")]
    trials.extend(monitor::trials());
    libtest_mimic::run(&args, trials).exit();
}
