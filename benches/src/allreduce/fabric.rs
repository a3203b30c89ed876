//! The local cluster the sweep runs on when no controller is given: N node endpoints in
//! this process (one tokio runtime), each with its own QUIC endpoint on its own emulated
//! UDP socket on 127.0.0.1, connected by a real QUIC mesh with mutual TLS from a fresh dev
//! CA. Every datagram crosses the profile's link from the sender's site to the receiver's;
//! every mesh holds the same shared trunks ([`TrunkSet`]), so all node pairs of two sites
//! queue on one trunk per direction, as the profile says.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, UdpSocket};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use netem_profiles::Profile;
use spacefabric_fabric::emu::{EmuClock, SchedulerStats, TrunkSet};
use spacefabric_fabric::transport::config::FABRIC_MTU;
use spacefabric_fabric::transport::{CcChoice, DevCa, Mesh, MeshConfig, PeerInfo, SocketKind};
use spacefabric_node::collective::{Corruption, DataTypeName, MemoryExchange, MemoryFabric};

use crate::host_share::HostSample;

/// Counters of the real traffic on one class of links (e.g. every Earth → Moon node pair).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WireCounters {
    /// Datagrams the emulated sockets wrote to the real sockets.
    pub(crate) datagrams: u64,
    /// Their UDP payload bytes (QUIC packets: headers, ACKs and retransmissions included).
    pub(crate) udp_payload_bytes: u64,
    /// Datagrams the emulated links dropped (loss, outage, queue, limits).
    pub(crate) dropped: u64,
    /// Packets quinn sent on these connections (both directions' senders of the class).
    pub(crate) quic_sent_packets: u64,
    /// Packets quinn declared lost.
    pub(crate) quic_lost_packets: u64,
}

impl WireCounters {
    /// `self - before`, counter by counter.
    pub(crate) fn since(&self, before: &Self) -> Self {
        Self {
            datagrams: self.datagrams.saturating_sub(before.datagrams),
            udp_payload_bytes: self
                .udp_payload_bytes
                .saturating_sub(before.udp_payload_bytes),
            dropped: self.dropped.saturating_sub(before.dropped),
            quic_sent_packets: self
                .quic_sent_packets
                .saturating_sub(before.quic_sent_packets),
            quic_lost_packets: self
                .quic_lost_packets
                .saturating_sub(before.quic_lost_packets),
        }
    }
}

/// Which fabric the local endpoints use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FabricKind {
    /// Real QUIC (quinn) between the endpoints, over emulated links.
    Quic,
    /// In-process mailboxes: no QUIC, no links (tests the harness only).
    Memory,
}

impl FromStr for FabricKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "quic" => Ok(Self::Quic),
            "memory" => Ok(Self::Memory),
            other => Err(format!(
                "unknown fabric '{other}' (expected quic or memory)"
            )),
        }
    }
}

impl fmt::Display for FabricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Quic => "quic",
            Self::Memory => "memory",
        })
    }
}

/// The running endpoints.
#[derive(Debug)]
pub(crate) enum LocalFabric {
    /// In-process mailboxes.
    Memory(Vec<MemoryExchange>),
    /// A QUIC mesh per rank.
    Quic {
        /// One mesh per rank.
        meshes: Vec<Arc<Mesh>>,
        /// Links applied?
        emulated: bool,
        /// UDP payload bytes per fabric datagram.
        udp_payload: u16,
        /// Dilation of the scenario clock.
        dilation: u32,
    },
}

/// One loopback UDP socket per rank, bound to port 0 and kept: each rank's mesh runs on its
/// own (`MeshConfig::bound`), so no port is released and bound again (which another process
/// could race for).
fn bound_sockets(n: usize) -> anyhow::Result<Vec<Arc<UdpSocket>>> {
    (0..n)
        .map(|_| {
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .map(Arc::new)
                .context("binding a UDP socket on 127.0.0.1:0")
        })
        .collect()
}

impl LocalFabric {
    /// Starts one endpoint per rank (`sites[r]` is rank r's site in `profile`), with the
    /// transport's default congestion controller.
    pub(crate) async fn start(
        kind: FabricKind,
        profile: &Profile,
        sites: &[usize],
        emulate: bool,
        corrupt: Option<Corruption>,
    ) -> anyhow::Result<Self> {
        Self::start_with_cc(
            kind,
            profile,
            sites,
            emulate,
            corrupt.map(|c| (c, DataTypeName::Float)),
            CcChoice::default(),
            FABRIC_MTU,
            1,
        )
        .await
    }

    /// [`Self::start`] with the congestion controller `cc`, fabric datagrams of
    /// `udp_payload` bytes and a scenario clock dilated by `dilation` (see
    /// `crate::clock::VIRTUAL_DILATION`); `corrupt` adds 1 to an element of that datatype.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start_with_cc(
        kind: FabricKind,
        profile: &Profile,
        sites: &[usize],
        emulate: bool,
        corrupt: Option<(Corruption, DataTypeName)>,
        cc: CcChoice,
        udp_payload: u16,
        dilation: u32,
    ) -> anyhow::Result<Self> {
        if corrupt.is_some() && kind != FabricKind::Memory {
            anyhow::bail!("--corrupt works with --fabric memory only");
        }
        match kind {
            FabricKind::Memory => {
                let mut fabric = MemoryFabric::new(sites.len());
                if let Some((c, datatype)) = corrupt {
                    fabric = fabric.corrupt_typed(c, datatype);
                }
                Ok(Self::Memory(fabric.endpoints()))
            }
            FabricKind::Quic => {
                let ca = DevCa::generate().context("creating the dev CA")?;
                let sockets = bound_sockets(sites.len())?;
                let peers: Vec<PeerInfo> = sites
                    .iter()
                    .zip(&sockets)
                    .enumerate()
                    .map(|(rank, (&site, socket))| {
                        Ok(PeerInfo {
                            rank,
                            name: format!("node-{rank}"),
                            addr: socket
                                .local_addr()
                                .context("reading a UDP socket's address")?,
                            site: profile.sites[site].name.clone(),
                        })
                    })
                    .collect::<anyhow::Result<_>>()?;
                let profile = Arc::new(profile.clone());
                let clock = EmuClock::dilated(tokio::time::Instant::now(), dilation);
                let trunks = Arc::new(TrunkSet::new(Arc::clone(&profile)));
                let mut tasks = Vec::new();
                for peer in &peers {
                    let identity = ca
                        .issue(&peer.name)
                        .with_context(|| format!("issuing a certificate for {}", peer.name))?;
                    let mut config = MeshConfig::new(
                        peer.rank,
                        peers.clone(),
                        Arc::clone(&profile),
                        identity,
                        clock,
                    );
                    config.cc = cc;
                    config.udp_payload = udp_payload;
                    config.trunks = Some(Arc::clone(&trunks));
                    config.bound = Some(Arc::clone(&sockets[peer.rank]));
                    config.socket = if emulate {
                        SocketKind::Emulated
                    } else {
                        SocketKind::Passthrough
                    };
                    tasks.push(tokio::spawn(Mesh::connect(config)));
                }
                let mut meshes = Vec::new();
                for (rank, t) in tasks.into_iter().enumerate() {
                    let mesh = t
                        .await
                        .with_context(|| format!("rank {rank}'s connect task"))?
                        .with_context(|| format!("connecting rank {rank}"))?;
                    meshes.push(Arc::new(mesh));
                }
                Ok(Self::Quic {
                    meshes,
                    emulated: emulate,
                    udp_payload,
                    dilation,
                })
            }
        }
    }

    /// One line for the report header saying what the endpoints are.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Memory(eps) => format!(
                "{} endpoints in this process over in-process mailboxes (no QUIC, no link emulation: harness test only)",
                eps.len()
            ),
            Self::Quic {
                meshes,
                emulated,
                udp_payload,
                ..
            } => format!(
                "local cluster: {} node endpoints in this process (one tokio runtime), real QUIC (quinn, mutual TLS) on 127.0.0.1 over {}, {udp_payload}-byte UDP payloads",
                meshes.len(),
                if *emulated {
                    "emulated sockets applying the profile's links"
                } else {
                    "emulated sockets with links off (--no-emulation)"
                }
            ),
        }
    }

    /// Transport settings for the JSON report: the tuning of every link of rank 0 and of
    /// the last rank.
    pub(crate) fn transport_settings(&self) -> serde_json::Value {
        match self {
            Self::Memory(_) => serde_json::json!({ "fabric": "memory" }),
            Self::Quic {
                meshes,
                emulated,
                udp_payload,
                ..
            } => {
                let mut links = Vec::new();
                let n = meshes.len();
                for from in [0, n.saturating_sub(1)] {
                    for to in 0..n {
                        if let Some(t) = meshes.get(from).and_then(|m| m.tuning(to)) {
                            links.push(serde_json::json!({
                                "from_rank": from, "to_rank": to,
                                "tuning": t.report(),
                            }));
                        }
                    }
                    if n == 1 {
                        break;
                    }
                }
                serde_json::json!({
                    "fabric": "quic", "emulated": emulated, "udp_payload_bytes": udp_payload,
                    "per_link": links,
                })
            }
        }
    }

    /// Transport counters after the run (bytes, reconnections...), per rank.
    pub(crate) fn transport_stats(&self) -> Vec<serde_json::Value> {
        match self {
            Self::Memory(_) => Vec::new(),
            Self::Quic { meshes, .. } => meshes
                .iter()
                .map(|m| serde_json::to_value(m.stats()).unwrap_or_default())
                .collect(),
        }
    }

    /// Wire counters per (source site, destination site) of rank `sites[r]`, summed over
    /// every directed node pair of that class: what the emulated sockets wrote to the real
    /// sockets and dropped, and what quinn counted as lost. Empty for the memory fabric.
    pub(crate) fn wire_by_class(&self, sites: &[usize]) -> BTreeMap<(usize, usize), WireCounters> {
        let mut out: BTreeMap<(usize, usize), WireCounters> = BTreeMap::new();
        let Self::Quic { meshes, .. } = self else {
            return out;
        };
        for (from, mesh) in meshes.iter().enumerate() {
            for (to, other) in meshes.iter().enumerate() {
                if from == to {
                    continue;
                }
                let (Some(&a), Some(&b)) = (sites.get(from), sites.get(to)) else {
                    continue;
                };
                let c = out.entry((a, b)).or_default();
                if let (Some(sock), Ok(addr)) = (mesh.emulated_socket(), other.local_addr())
                    && let Some(l) = sock.links().link_stats(addr)
                {
                    c.datagrams += l.traffic.sent_datagrams;
                    c.udp_payload_bytes += l.traffic.sent_bytes;
                    c.dropped += l.traffic.dropped_total();
                }
                if let Some(conn) = mesh.connection(to) {
                    let st = conn.stats();
                    c.quic_sent_packets += st.path.sent_packets;
                    c.quic_lost_packets += st.path.lost_packets;
                }
            }
        }
        out
    }

    /// The delay line's counters: the process-wide precise scheduler's, or the sum over the
    /// sockets' own tokio-timer schedulers (paused clock). Zero for the memory fabric.
    pub(crate) fn delay_line_stats(&self) -> SchedulerStats {
        let Self::Quic { meshes, .. } = self else {
            return SchedulerStats::default();
        };
        crate::host_share::delay_line_stats(
            meshes
                .iter()
                .filter_map(|m| m.emulated_socket())
                .map(|s| s.as_ref()),
        )
    }

    /// The UDP ports of the endpoints on this host (for their receive-buffer drops).
    pub(crate) fn udp_ports(&self) -> BTreeSet<u16> {
        let Self::Quic { meshes, .. } = self else {
            return BTreeSet::new();
        };
        meshes
            .iter()
            .filter_map(|m| m.local_addr().ok())
            .map(|a| a.port())
            .collect()
    }

    /// A sample of the host's share of the run so far.
    pub(crate) fn host_sample(&self) -> HostSample {
        HostSample::now(self.delay_line_stats(), &self.udp_ports())
    }

    /// The dilation of the scenario clock (1 for the memory fabric).
    pub(crate) fn dilation(&self) -> u32 {
        match self {
            Self::Memory(_) => 1,
            Self::Quic { dilation, .. } => *dilation,
        }
    }

    /// Whether links are emulated.
    pub(crate) fn emulated(&self) -> bool {
        match self {
            Self::Memory(_) => false,
            Self::Quic { emulated, .. } => *emulated,
        }
    }

    /// Closes every endpoint.
    pub(crate) async fn shutdown(self) {
        if let Self::Quic { meshes, .. } = self {
            let closing = meshes
                .into_iter()
                .filter_map(|m| Arc::try_unwrap(m).ok())
                .map(Mesh::close);
            futures::future::join_all(closing).await;
        }
    }
}
