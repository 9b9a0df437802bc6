// Hole 1: a graph's resources are never handed out mutably, so no buffer can be swapped in
// behind the graph's back.
use hikube_gpu::{ops, Device, DeviceBuffer, Graph};

fn main() -> Result<(), hikube_gpu::Error> {
    let device = Device::open(0)?;
    let s = device.new_stream()?;
    let x = DeviceBuffer::from_slice(&s, &[1.0f32; 4])?;
    let y = DeviceBuffer::from_slice(&s, &[0.0f32; 4])?;
    let graph = Graph::capture(&s, (x, y), |s, (x, y)| ops::axpy(s, 1.0, x, y))?;
    let mut other = DeviceBuffer::<f32>::alloc(&s, 1)?;
    std::mem::swap(&mut graph.resources().1, &mut other);
    Ok(())
}
