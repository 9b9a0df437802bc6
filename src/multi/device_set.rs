//! [`DeviceSet`]: several GPUs of one process, numbered by rank, with peer access enabled
//! wherever the hardware allows it.
//!
//! Peer access has two halves, because the crate's buffers come from two allocators: memory
//! from `cuMemAlloc` follows `cuCtxEnablePeerAccess`, while memory from the device's
//! stream-ordered pool (`cuMemAllocAsync`, which cudarc, and so every `DeviceBuffer` and
//! `MemoryPool` block, uses where the device supports it) ignores it and follows
//! `cuMemPoolSetAccess` on that pool. A pair counts as peer-enabled only when both are granted.

use super::topology::Topology;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::stream::Stream;
use cudarc::driver::{result, sys};

/// Several open GPUs, numbered by rank (their order in the set), with peer access (one GPU's
/// copy engines reading and writing another's memory over NVLink or PCIe) enabled between every
/// pair that supports it. Cheap to clone.
///
/// Peer access here serves copies: [`PeerCopy`](super::PeerCopy) with
/// [`CopyPath::Peer`](super::CopyPath::Peer) (`cuMemcpyPeerAsync`) goes directly between the two
/// GPUs when it is enabled. The crate offers no way to hand a kernel a buffer of another GPU.
/// Where the driver reports a pair able but refuses to enable it (too many peers, say), the
/// pair is recorded as not peer-enabled and copies between them are staged through the host.
///
/// A set may name one device twice: two ranks then share a GPU. Peer copies and the copy-based
/// gradient reduction accept that (it is how one GPU exercises the multi-rank code); NCCL does
/// not, and `Communicator::new` (feature `nccl`) refuses such a set.
///
/// ```no_run
/// use hikube_gpu::multi::DeviceSet;
/// let set = DeviceSet::all()?;
/// println!("{} GPU(s)", set.len());
/// println!("{}", set.topology());
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct DeviceSet {
    devices: Vec<Device>,
    /// `peer[i][j]`: rank `i`'s context may access rank `j`'s memory directly (context peer
    /// access and access to `j`'s stream-ordered memory pool both granted).
    peer: Vec<Vec<bool>>,
    /// `can[i][j]`: the driver reports that rank `i` can access rank `j` (cuDeviceCanAccessPeer).
    can: Vec<Vec<bool>>,
}

/// Whether the driver lets `a` access `b`'s memory (always true for one device).
fn can_access_peer(a: &Device, b: &Device) -> Result<bool> {
    if a == b {
        return Ok(true);
    }
    let mut can = 0;
    // SAFETY: both handles come from open contexts of the initialized driver; `can` is a valid
    // out pointer.
    unsafe {
        sys::cuDeviceCanAccessPeer(&mut can, a.inner.ctx.cu_device(), b.inner.ctx.cu_device())
    }
    .result()?;
    Ok(can != 0)
}

/// Lets `a` access `b`'s memory: `a`'s context gets peer access to `b`'s (for `cuMemAlloc`
/// memory), and `a` gets read-write access to `b`'s current and default stream-ordered memory
/// pools (for `cuMemAllocAsync` memory, which ignores context peer access). Enabling twice is
/// not an error. `Ok(false)` when the driver refuses either (e.g. `CUDA_ERROR_TOO_MANY_PEERS`):
/// the pair then falls back to staged copies.
fn enable_peer_access(a: &Device, b: &Device) -> Result<bool> {
    a.inner.ctx.bind_to_thread()?;
    // SAFETY: `b`'s context is alive (its `Device` is borrowed); flags must be 0.
    match unsafe { sys::cuCtxEnablePeerAccess(b.inner.ctx.cu_ctx(), 0) } {
        sys::CUresult::CUDA_SUCCESS | sys::CUresult::CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED => {}
        _ => return Ok(false),
    }
    if !b.inner.ctx.has_async_alloc() {
        // cudarc allocates with cuMemAlloc on this device: context peer access covers it.
        return Ok(true);
    }
    let dev = b.inner.ctx.cu_device();
    // SAFETY: `dev` is the device of `b`'s open context.
    let pools = unsafe {
        [
            result::device::get_mem_pool(dev),
            result::device::get_default_mem_pool(dev),
        ]
    };
    let desc = sys::CUmemAccessDesc {
        location: sys::CUmemLocation {
            type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: a.inner.ctx.cu_device(),
        },
        flags: sys::CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
    };
    let mut granted: Vec<sys::CUmemoryPool> = Vec::with_capacity(2);
    for pool in pools {
        let Ok(pool) = pool else { return Ok(false) };
        if granted.contains(&pool) {
            continue;
        }
        // SAFETY: `pool` is a pool of `b`'s device, owned by the driver (never destroyed);
        // `desc` is one valid descriptor naming another device, `a` (a != b here).
        if unsafe { sys::cuMemPoolSetAccess(pool, &desc, 1) }
            .result()
            .is_err()
        {
            return Ok(false);
        }
        granted.push(pool);
    }
    Ok(true)
}

impl DeviceSet {
    /// A set of these open devices (rank = position), enabling peer access between every pair
    /// of distinct GPUs that supports it. [`Error::InvalidArgument`] for an empty list.
    pub fn from_devices(devices: Vec<Device>) -> Result<DeviceSet> {
        if devices.is_empty() {
            return Err(Error::InvalidArgument {
                what: "a device set needs at least one device".into(),
            });
        }
        let n = devices.len();
        let mut can = Vec::with_capacity(n);
        let mut peer = Vec::with_capacity(n);
        for a in &devices {
            let (mut can_row, mut peer_row) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for b in &devices {
                let c = can_access_peer(a, b)?;
                can_row.push(c);
                peer_row.push(if a == b {
                    true
                } else if c {
                    enable_peer_access(a, b)?
                } else {
                    false
                });
            }
            can.push(can_row);
            peer.push(peer_row);
        }
        Ok(DeviceSet { devices, peer, can })
    }

    /// Opens the devices at these indices (among the visible ones), in this order. An index
    /// given twice puts the same device at two ranks.
    pub fn open(indices: &[usize]) -> Result<DeviceSet> {
        let mut devices: Vec<Device> = Vec::with_capacity(indices.len());
        for &index in indices {
            let same = devices.iter().find(|d| d.ordinal() == index).cloned();
            devices.push(match same {
                Some(d) => d,
                None => Device::open(index)?,
            });
        }
        DeviceSet::from_devices(devices)
    }

    /// Opens the devices with these UUIDs (`GPU-…`; prefix and case do not matter), in this
    /// order; [`Error::DeviceNotFound`] for a UUID no visible GPU has.
    pub fn by_uuids(uuids: &[&str]) -> Result<DeviceSet> {
        let mut devices: Vec<Device> = Vec::with_capacity(uuids.len());
        for uuid in uuids {
            let want = crate::device::normalize_uuid(uuid);
            let same = devices
                .iter()
                .find(|d| crate::device::normalize_uuid(&d.properties().uuid) == want)
                .cloned();
            devices.push(match same {
                Some(d) => d,
                None => Device::by_uuid(uuid)?,
            });
        }
        DeviceSet::from_devices(devices)
    }

    /// Every visible device, in index order ([`Error::NoDevice`] if there is none).
    pub fn all() -> Result<DeviceSet> {
        let devices = Device::all()?;
        if devices.is_empty() {
            return Err(Error::NoDevice);
        }
        DeviceSet::from_devices(devices)
    }

    /// Number of ranks.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Always false: a set holds at least one device.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The devices, by rank.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The device of `rank`; [`Error::DeviceIndexOutOfRange`] past the last rank.
    pub fn device(&self, rank: usize) -> Result<&Device> {
        self.devices.get(rank).ok_or(Error::DeviceIndexOutOfRange {
            index: rank,
            count: self.devices.len(),
        })
    }

    /// The first rank whose device is `device`; [`Error::NotInSet`] if none is.
    pub fn rank_of(&self, device: &Device) -> Result<usize> {
        self.devices
            .iter()
            .position(|d| d == device)
            .ok_or_else(|| Error::NotInSet {
                ordinal: device.ordinal(),
                uuid: device.properties().uuid.clone(),
            })
    }

    /// [`Error::DuplicateDevice`] if two ranks share a GPU.
    pub fn check_distinct(&self) -> Result<()> {
        for (second, device) in self.devices.iter().enumerate() {
            if let Some(first) = self.devices.iter().take(second).position(|d| d == device) {
                return Err(Error::DuplicateDevice {
                    ordinal: device.ordinal(),
                    first,
                    second,
                });
            }
        }
        Ok(())
    }

    /// Whether rank `from` accesses rank `to`'s memory directly (peer access enabled for both
    /// the context's and the stream-ordered pool's memory, or one GPU), which is what
    /// [`CopyPath::Auto`](super::CopyPath::Auto) goes by. False for ranks out of range, and
    /// for pairs whose peer access the driver refused.
    pub fn peer_access(&self, from: usize, to: usize) -> bool {
        self.peer
            .get(from)
            .and_then(|row| row.get(to))
            .copied()
            .unwrap_or(false)
    }

    pub(crate) fn can_access(&self, from: usize, to: usize) -> bool {
        self.can
            .get(from)
            .and_then(|row| row.get(to))
            .copied()
            .unwrap_or(false)
    }

    /// The links between the ranks: peer access from the driver, NVLink and PCIe paths from
    /// NVML (joined by UUID) where NVML is available.
    pub fn topology(&self) -> Topology {
        Topology::of(self)
    }

    /// One new stream per rank.
    pub fn new_streams(&self) -> Result<Vec<Stream>> {
        self.devices.iter().map(Device::new_stream).collect()
    }

    /// Waits for all work on every device of the set.
    pub fn synchronize(&self) -> Result<()> {
        self.devices.iter().try_for_each(Device::synchronize)
    }

    /// [`Error::RankCount`] unless `actual` is the number of ranks.
    pub(crate) fn check_ranks(&self, actual: usize) -> Result<()> {
        if actual == self.devices.len() {
            Ok(())
        } else {
            Err(Error::RankCount {
                expected: self.devices.len(),
                actual,
            })
        }
    }
}
