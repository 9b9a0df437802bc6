// Hole 2b: cudarc's stream (whose capture API could end a capture into a graph of its own) is
// reachable only through an `unsafe fn`.
use hikube_gpu::Device;

fn main() -> Result<(), hikube_gpu::Error> {
    let device = Device::open(0)?;
    let s = device.new_stream()?;
    let _raw = s.cuda_stream();
    Ok(())
}
