//! Copy bandwidth with the crate's buffers: host→device and device→host from pinned and from
//! pageable memory, and device→device.

use super::Ctx;
use crate::report::{Params, Peak};
use crate::Suite;
use hikube_gpu::monitor::PcieLink;
use hikube_gpu::{DeviceBuffer, PinnedBuffer, Result};

const MIB: usize = 1 << 20;

/// The copies: name, direction, host memory.
pub const CASES: [(&str, &str, &str); 5] = [
    ("h2d pinned", "h2d", "pinned"),
    ("h2d pageable", "h2d", "pageable"),
    ("d2h pinned", "d2h", "pinned"),
    ("d2h pageable", "d2h", "pageable"),
    ("d2d", "d2d", "device"),
];

struct Buffers {
    dev: [DeviceBuffer<u8>; 2],
    pinned: PinnedBuffer<u8>,
    pageable: Vec<u8>,
}

impl Buffers {
    fn new(ctx: &Ctx<'_>, size: usize) -> Result<Self> {
        let mut dev = [
            DeviceBuffer::<u8>::alloc(ctx.stream, size)?,
            DeviceBuffer::<u8>::alloc(ctx.stream, size)?,
        ];
        dev[0].fill(ctx.stream, 0x5A)?;
        dev[1].fill(ctx.stream, 0xA5)?;
        let mut pinned = PinnedBuffer::<u8>::zeroed(ctx.device, size)?;
        for (i, b) in pinned.as_mut_slice()?.iter_mut().enumerate() {
            *b = i as u8;
        }
        let pageable = (0..size).map(|i| (i * 7) as u8).collect();
        Ok(Buffers {
            dev,
            pinned,
            pageable,
        })
    }

    /// One copy; device buffers alternate so that no copy finds its data in L2.
    fn copy(&mut self, ctx: &Ctx<'_>, direction: &str, memory: &str, i: usize) -> Result<()> {
        let (a, b) = self.dev.split_at_mut(1);
        let (src, dst) = if i.is_multiple_of(2) {
            (&a[0], &mut b[0])
        } else {
            (&b[0], &mut a[0])
        };
        match (direction, memory) {
            ("h2d", "pinned") => dst.copy_from_pinned(ctx.stream, &self.pinned),
            ("h2d", _) => dst.copy_from_host(ctx.stream, &self.pageable),
            ("d2h", "pinned") => src.copy_to_pinned(ctx.stream, &mut self.pinned),
            ("d2h", _) => src.copy_to_host(ctx.stream, &mut self.pageable),
            _ => dst.copy_from(ctx.stream, src),
        }
    }
}

/// Every copy at 256 MiB (64 MiB with `--quick`).
pub fn run(ctx: &mut Ctx<'_>, pcie: Option<&PcieLink>) -> Result<()> {
    let size = if ctx.quick { 64 * MIB } else { 256 * MIB };
    ctx.running("copy: allocating");
    let mut buffers = match Buffers::new(ctx, size) {
        Ok(b) => b,
        Err(e) => return ctx.skip("copy".into(), e, CASES.len() as u64),
    };
    let model = ctx.device.model().clone();
    for (name, direction, memory) in CASES {
        let label = format!("{name} {} MiB", size / MIB);
        ctx.running(&format!("copy {label}"));
        let bytes = if direction == "d2d" { 2 * size } else { size };
        let peak = if direction == "d2d" {
            Some(Peak {
                value: model.memory_bandwidth_gbs,
                what: "memory bandwidth".into(),
            })
        } else {
            pcie.and_then(|link| {
                link.peak_gbs().map(|value| Peak {
                    value,
                    what: format!(
                        "PCIe gen {} x{} line rate, one direction",
                        link.max_generation, link.max_width
                    ),
                })
            })
        };
        let timed = {
            let c: &Ctx<'_> = ctx;
            c.time(1.0, |i| buffers.copy(c, direction, memory, i))
        };
        match timed {
            Ok(t) => {
                let gbs = bytes as f64 / (t.median_ms * 1e6);
                ctx.record(
                    Suite::Copy,
                    label,
                    "hikube-gpu",
                    Params::Copy {
                        direction: direction.into(),
                        memory: memory.into(),
                        bytes: bytes as u64,
                    },
                    (gbs, "GB/s", true),
                    peak,
                    t,
                );
            }
            Err(e) => ctx.skip(format!("copy {label}"), e, 1)?,
        }
    }
    Ok(())
}
