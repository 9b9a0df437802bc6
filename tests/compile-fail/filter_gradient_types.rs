// A filter gradient is f32 or the input's type, and the input f16 or bf16: other pairs are
// refused by the types (`FilterGrad`), not at run time.
use hikube_gpu::half::{bf16, f16};
use hikube_gpu::ops::conv2d::{Conv2dDesc, Conv2dGrad};
use hikube_gpu::Stream;

fn plans(stream: &Stream, desc: Conv2dDesc) {
    let _ = Conv2dGrad::<bf16, f16>::new(stream, desc);
    let _ = Conv2dGrad::<f32>::new(stream, desc);
}

fn main() {}
