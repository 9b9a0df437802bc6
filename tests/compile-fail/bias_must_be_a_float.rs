// The epilogue's bias may have any element type the kernels read (f32, f16, bf16), but not one
// they do not: an FP8 (or integer) bias is refused by the types, not at launch.
use hikube_gpu::fp8::F8E4M3;
use hikube_gpu::half::f16;
use hikube_gpu::ops::Epilogue;
use hikube_gpu::DeviceBuffer;

fn epilogue(bias: &DeviceBuffer<F8E4M3>) -> Epilogue<'_, f16, F8E4M3> {
    Epilogue::new().bias(bias)
}

fn main() {}
