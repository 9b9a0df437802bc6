// Hole 1, the plan: a graph that used a plan does not borrow it after the capture, so the plan
// may be dropped (the graph keeps its workspace alive); but a capture closure cannot hand the
// graph a borrow that outlives what it borrows: here `x` is dropped while the graph still
// holds `&x` as a resource.
use hikube_gpu::{ops, Device, DeviceBuffer, Graph};

fn main() -> Result<(), hikube_gpu::Error> {
    let device = Device::open(0)?;
    let s = device.new_stream()?;
    let x = DeviceBuffer::from_slice(&s, &[1.0f32; 4])?;
    let y = DeviceBuffer::from_slice(&s, &[0.0f32; 4])?;
    let mut graph = Graph::capture(&s, (&x, y), |s, (x, y)| ops::axpy(s, 1.0, *x, y))?;
    drop(x);
    graph.launch(&s)?;
    Ok(())
}
