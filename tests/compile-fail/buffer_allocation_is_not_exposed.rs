// Hole 2: a buffer never hands out its allocation mutably (nothing can put a smaller allocation
// inside a buffer whose length the kernels trust).
use hikube_gpu::{Device, DeviceBuffer};

fn main() -> Result<(), hikube_gpu::Error> {
    let device = Device::open(0)?;
    let s = device.new_stream()?;
    let mut buf = DeviceBuffer::<f32>::alloc(&s, 1 << 20)?;
    let _inner = buf.cuda_slice_mut();
    Ok(())
}
