// A buffer cannot be written while a read-only view of it is alive.
use hikube_gpu::{Device, DeviceBuffer};

fn main() -> Result<(), hikube_gpu::Error> {
    let device = Device::open(0)?;
    let s = device.new_stream()?;
    let mut buf = DeviceBuffer::<f32>::alloc(&s, 16)?;
    let view = buf.slice(0..8)?;
    buf.fill(&s, 1.0)?;
    let _ = view.to_vec(&s)?;
    Ok(())
}
