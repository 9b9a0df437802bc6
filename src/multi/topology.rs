//! [`Topology`]: how the GPUs of a [`DeviceSet`] reach each other — peer access from the
//! driver, NVLink and the PCIe path from NVML (with the `nvml` feature; joined by UUID, as the
//! monitor does).

use super::DeviceSet;
use std::fmt;

/// The PCIe path between two GPUs, as `nvidia-smi topo -m` names it.
///
/// ```
/// use hikube_gpu::multi::PciePath;
/// assert_eq!(PciePath::HostBridge.abbreviation(), "PHB");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciePath {
    /// On one board (`nvidia-smi`: none; e.g. a K80's two GPUs).
    Board,
    /// Through one PCIe switch (`PIX`).
    SingleSwitch,
    /// Through several PCIe switches, no host bridge (`PXB`).
    MultipleSwitches,
    /// Through a PCIe host bridge (`PHB`).
    HostBridge,
    /// Across host bridges within a NUMA node (`NODE`).
    NumaNode,
    /// Across NUMA nodes (SMP interconnect, `SYS`).
    System,
}

impl PciePath {
    /// `nvidia-smi topo -m`'s abbreviation.
    pub fn abbreviation(self) -> &'static str {
        match self {
            PciePath::Board => "BRD",
            PciePath::SingleSwitch => "PIX",
            PciePath::MultipleSwitches => "PXB",
            PciePath::HostBridge => "PHB",
            PciePath::NumaNode => "NODE",
            PciePath::System => "SYS",
        }
    }
}

/// How data moves from one rank's GPU to another's.
///
/// ```
/// use hikube_gpu::multi::{LinkKind, PciePath};
/// /// Whether the traffic between two ranks stays off the host bridges.
/// fn off_host_bridge(kind: LinkKind) -> bool {
///     use PciePath::{Board, MultipleSwitches, SingleSwitch};
///     match kind {
///         LinkKind::SameDevice | LinkKind::NvLink => true,
///         LinkKind::Pcie(path) => matches!(path, Board | SingleSwitch | MultipleSwitches),
///         LinkKind::Unknown => false, // NVML did not say
///     }
/// }
/// assert!(off_host_bridge(LinkKind::NvLink));
/// assert!(off_host_bridge(LinkKind::Pcie(PciePath::SingleSwitch)));
/// assert!(!off_host_bridge(LinkKind::Pcie(PciePath::System)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// Both ranks are on one GPU.
    SameDevice,
    /// NVLink (directly or through NVSwitch), as NVML's P2P NVLink status reports.
    NvLink,
    /// PCIe, along this path.
    Pcie(PciePath),
    /// NVML is unavailable or does not say.
    Unknown,
}

/// The link from one rank to another.
///
/// ```no_run
/// use hikube_gpu::multi::{DeviceSet, LinkKind};
/// let set = DeviceSet::all()?;
/// for (i, row) in set.topology().links.iter().enumerate() {
///     assert_eq!(row[i].kind, LinkKind::SameDevice); // a rank to itself
///     for (j, link) in row.iter().enumerate() {
///         if link.can_access_peer && !link.peer_enabled {
///             println!("{i} -> {j}: peer access refused, copies are staged through the host");
///         }
///     }
/// }
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// The driver reports that the first GPU can access the second's memory
    /// (`cuDeviceCanAccessPeer`).
    pub can_access_peer: bool,
    /// Peer access is enabled in the set, for the context's memory and the stream-ordered
    /// pool's alike (peer copies go directly, not through the host). False where the driver
    /// allows it but refused to enable it (e.g. too many peers).
    pub peer_enabled: bool,
    /// NVLink, PCIe or one device.
    pub kind: LinkKind,
}

/// One rank's GPU in a [`Topology`].
///
/// ```no_run
/// use hikube_gpu::multi::DeviceSet;
/// let set = DeviceSet::all()?;
/// for (rank, gpu) in set.topology().devices.iter().enumerate() {
///     assert_eq!(gpu.uuid, set.device(rank)?.properties().uuid);
///     println!("rank {rank}: CUDA device {} at {}, {:?} NVLinks up", gpu.ordinal,
///              gpu.pci_bus_id, gpu.nvlinks_active);
/// }
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyDevice {
    /// Index among the visible devices.
    pub ordinal: usize,
    /// UUID (`GPU-…`).
    pub uuid: String,
    /// PCI address.
    pub pci_bus_id: String,
    /// Active NVLink links; `None` without NVML or where it does not report them.
    pub nvlinks_active: Option<u32>,
}

/// The links between the ranks of a [`DeviceSet`]: `links[i][j]` is from rank `i` to rank `j`.
/// `Display` prints a matrix like `nvidia-smi topo -m` (`NV` for NVLink, the PCIe path
/// otherwise, `X` for one GPU) with `+`/`-` for peer access enabled or not.
///
/// ```no_run
/// use hikube_gpu::multi::{DeviceSet, LinkKind};
/// let set = DeviceSet::all()?;
/// let topo = set.topology();
/// if set.len() > 1 && topo.links[0][1].kind == LinkKind::NvLink {
///     println!("ranks 0 and 1 talk over NVLink");
/// }
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The GPUs, by rank.
    pub devices: Vec<TopologyDevice>,
    /// `links[i][j]`: from rank `i` to rank `j`.
    pub links: Vec<Vec<Link>>,
    /// Why NVML facts are missing, when they are (NVML absent, a GPU it does not see).
    pub nvml_note: Option<String>,
}

impl Topology {
    #[allow(clippy::indexing_slicing)] // reason: `i` and `j` range over 0..n, the length of `devices` and of the facts' rows
    pub(crate) fn of(set: &DeviceSet) -> Topology {
        let devices = set.devices();
        let n = devices.len();
        let facts = nvml_facts::of(devices);
        let mut links = Vec::with_capacity(n);
        for i in 0..n {
            let row = (0..n)
                .map(|j| Link {
                    can_access_peer: set.can_access(i, j),
                    peer_enabled: set.peer_access(i, j),
                    kind: if devices[i] == devices[j] {
                        LinkKind::SameDevice
                    } else {
                        facts.kinds[i][j]
                    },
                })
                .collect();
            links.push(row);
        }
        Topology {
            devices: devices
                .iter()
                .zip(&facts.nvlinks)
                .map(|(d, &nvlinks_active)| TopologyDevice {
                    ordinal: d.ordinal(),
                    uuid: d.properties().uuid.clone(),
                    pci_bus_id: d.properties().pci_bus_id.clone(),
                    nvlinks_active,
                })
                .collect(),
            links,
            nvml_note: facts.note,
        }
    }
}

/// What NVML says of a set's GPUs, one entry per rank.
struct NvmlFacts {
    /// Active NVLink links of each rank's GPU.
    nvlinks: Vec<Option<u32>>,
    /// `kinds[i][j]`: NVLink or the PCIe path from rank `i`'s GPU to rank `j`'s.
    kinds: Vec<Vec<LinkKind>>,
    /// Why facts are missing, when they are.
    note: Option<String>,
}

impl NvmlFacts {
    /// Nothing known, and why.
    fn unknown(n: usize, note: String) -> NvmlFacts {
        NvmlFacts {
            nvlinks: vec![None; n],
            kinds: vec![vec![LinkKind::Unknown; n]; n],
            note: Some(note),
        }
    }
}

/// Without the `nvml` feature the crate links no NVML: only the driver's peer-access facts.
#[cfg(not(feature = "nvml"))]
mod nvml_facts {
    use super::NvmlFacts;
    use crate::Device;

    pub(super) fn of(devices: &[Device]) -> NvmlFacts {
        NvmlFacts::unknown(
            devices.len(),
            "built without the `nvml` feature".to_string(),
        )
    }
}

/// NVML's view: NVLink status and the PCIe common ancestor, joined to the ranks by UUID (as the
/// monitor does).
#[cfg(feature = "nvml")]
mod nvml_facts {
    use super::{LinkKind, NvmlFacts, PciePath};
    use crate::monitor::Monitor;
    use crate::Device;
    use nvml_wrapper::enum_wrappers::device::{P2pCapabilitiesIndex, P2pStatus, TopologyLevel};

    /// NVLink links a GPU may have (NVML's `NVML_NVLINK_MAX_LINKS`).
    const MAX_NVLINKS: u32 = 18;

    #[allow(clippy::indexing_slicing)] // reason: `i` and `j` range over 0..n, the length of `devices` and `handles`
    pub(super) fn of(devices: &[Device]) -> NvmlFacts {
        let n = devices.len();
        let monitor = match Monitor::new() {
            Ok(m) => m,
            Err(e) => return NvmlFacts::unknown(n, e.to_string()),
        };
        let nvml = monitor.nvml();
        let mut note = None;
        let handles: Vec<Option<nvml_wrapper::Device<'_>>> = devices
            .iter()
            .map(|d| {
                let uuid = d.properties().uuid.as_str();
                nvml.device_by_uuid(uuid)
                    .map_err(|e| note.get_or_insert(format!("NVML does not see {uuid}: {e}")))
                    .ok()
            })
            .collect();
        let nvlinks = handles
            .iter()
            .map(|h| {
                h.as_ref().map(|h| {
                    (0..MAX_NVLINKS)
                        .filter(|&l| h.link_wrapper_for(l).is_active().unwrap_or(false))
                        .count() as u32
                })
            })
            .collect();
        let kinds = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| match (&handles[i], &handles[j]) {
                        _ if devices[i] == devices[j] => LinkKind::SameDevice,
                        (Some(a), Some(b)) => link(a, b),
                        _ => LinkKind::Unknown,
                    })
                    .collect()
            })
            .collect();
        NvmlFacts {
            nvlinks,
            kinds,
            note,
        }
    }

    /// NVLink if NVML's P2P NVLink status is OK, else the PCIe path; `Unknown` if NVML says
    /// neither.
    fn link(a: &nvml_wrapper::Device<'_>, b: &nvml_wrapper::Device<'_>) -> LinkKind {
        if matches!(
            a.p2p_status(b, P2pCapabilitiesIndex::NvLink),
            Ok(P2pStatus::Ok)
        ) {
            return LinkKind::NvLink;
        }
        // `topology_common_ancestor` takes the other handle by value (handles are not `Clone`),
        // so it gets a fresh one.
        match b
            .uuid()
            .ok()
            .and_then(|u| a.nvml().device_by_uuid(u).ok())
            .map(|b2| a.topology_common_ancestor(b2))
        {
            Some(Ok(level)) => LinkKind::Pcie(pcie_path(level)),
            _ => LinkKind::Unknown,
        }
    }

    fn pcie_path(level: TopologyLevel) -> PciePath {
        match level {
            TopologyLevel::Internal => PciePath::Board,
            TopologyLevel::Single => PciePath::SingleSwitch,
            TopologyLevel::Multiple => PciePath::MultipleSwitches,
            TopologyLevel::HostBridge => PciePath::HostBridge,
            TopologyLevel::Node => PciePath::NumaNode,
            TopologyLevel::System => PciePath::System,
        }
    }
}

impl fmt::Display for Topology {
    #[allow(clippy::indexing_slicing)] // reason: `i` ranges over the links matrix, one row per device
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>6}", "")?;
        for j in 0..self.devices.len() {
            write!(f, " {:>6}", format!("rank{j}"))?;
        }
        writeln!(f, "  GPU (NVLinks active)")?;
        for (i, row) in self.links.iter().enumerate() {
            write!(f, "{:>6}", format!("rank{i}"))?;
            for link in row {
                let kind = match link.kind {
                    LinkKind::SameDevice => "X",
                    LinkKind::NvLink => "NV",
                    LinkKind::Pcie(p) => p.abbreviation(),
                    LinkKind::Unknown => "?",
                };
                let peer = if link.peer_enabled { '+' } else { '-' };
                write!(f, " {:>6}", format!("{kind}{peer}"))?;
            }
            let d = &self.devices[i];
            let links = d
                .nvlinks_active
                .map_or_else(|| "?".to_string(), |n| n.to_string());
            writeln!(f, "  {} {} ({links})", d.ordinal, d.uuid)?;
        }
        if let Some(note) = &self.nvml_note {
            writeln!(f, "NVML facts missing: {note}")?;
        }
        Ok(())
    }
}
