// A view cannot outlive the buffer it borrows.
use hikube_gpu::{Device, DeviceBuffer};

fn main() -> Result<(), hikube_gpu::Error> {
    let device = Device::open(0)?;
    let s = device.new_stream()?;
    let buf = DeviceBuffer::<f32>::alloc(&s, 16)?;
    let view = buf.slice(0..8)?;
    drop(buf);
    let _ = view.to_vec(&s)?;
    Ok(())
}
