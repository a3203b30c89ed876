//! What a mesh is built from: our rank, the roster of peers (rank, node name, address,
//! site), the profile, our identity and the transport options, with their defaults.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use netem_profiles::Profile;

use crate::emu::{EmuClock, TrunkSet};
use crate::transport::config::{CcChoice, FABRIC_MTU};
use crate::transport::tls::NodeIdentity;

/// One member of the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its rank, 0..world_size.
    pub rank: usize,
    /// Its node name: the DNS name its certificate must carry.
    pub name: String,
    /// Its fabric (QUIC) address.
    pub addr: SocketAddr,
    /// Its site in the profile.
    pub site: String,
}

/// How the mesh's UDP socket is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SocketKind {
    /// An [`EmulatedSocket`](crate::emu::EmulatedSocket): every datagram to a peer crosses the profile's link from our
    /// site to the peer's (delay, rate, loss, outages).
    #[default]
    Emulated,
    /// The same emulated socket with its links off ([`LinkTable::passthrough`](crate::emu::LinkTable::passthrough)): the
    /// overhead baseline.
    Passthrough,
    /// quinn's own UDP socket, no emulation layer at all.
    PlainUdp,
}

/// Everything [`Mesh::connect`](super::Mesh::connect) needs.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Our rank.
    pub rank: usize,
    /// Every member, us included (ranks 0..n, each once).
    pub peers: Vec<PeerInfo>,
    /// The scenario: links between sites, outages.
    pub profile: Arc<Profile>,
    /// Our certificate and key, and the cluster CA.
    pub identity: NodeIdentity,
    /// Congestion controller on every connection (default: link-aware).
    pub cc: CcChoice,
    /// Address to bind (default: our entry's `addr`). Ignored when `bound` is set.
    pub listen: Option<SocketAddr>,
    /// An already-bound UDP socket to run on (the mesh uses a clone of its handle). Bind port 0
    /// first, put the address it got in the roster, then hand the socket here: no port is
    /// released and bound again in between. Default: none (the mesh binds `listen`).
    pub bound: Option<Arc<std::net::UdpSocket>>,
    /// How the socket is built (default: plain UDP).
    pub socket: SocketKind,
    /// Scenario clock: emulated time 0 is its epoch (outage schedules count from there).
    pub clock: EmuClock,
    /// How long [`Mesh::connect`](super::Mesh::connect) waits for every peer (default: 30 s + 4 RTT of the
    /// slowest link).
    pub connect_timeout: Option<Duration>,
    /// How long a peer may stay unreachable before its sends and receives fail (default:
    /// 2 × the longest outage + 10 RTT, at least 60 s).
    pub give_up_after: Option<Duration>,
    /// Largest transfer accepted from a peer (default 4 GiB).
    pub max_transfer_bytes: u64,
    /// Wait for the link's contact instead of sending into a scheduled outage (default on).
    pub contact_aware: bool,
    /// UDP payload bytes per fabric datagram (quinn's MTU; default [`FABRIC_MTU`], an
    /// Ethernet path). Up to [`MAX_FABRIC_MTU`](crate::transport::config::MAX_FABRIC_MTU) on loopback: the emulated paths then carry
    /// datagrams that large (each serialised for its full length), so a CPU-bound host
    /// handles a fraction of the datagrams for the same bytes.
    pub udp_payload: u16,
    /// The shared trunks of the roster (default: a set of our own, so at least our own
    /// connections across one trunk share it). Meshes in one process pass the same set so
    /// that all their node pairs on a trunk queue in one FIFO.
    pub trunks: Option<Arc<TrunkSet>>,
    /// The forwarders that apply the shared trunks for node processes, in shard order
    /// (default: none). With them, datagrams to a peer across a shared trunk go encapsulated
    /// to the one forwarder that carries that trunk (`netem_profiles::TrunkCarriers` over the
    /// profile and `forwarders.len()`), which applies it for every node of the cluster
    /// (`crate::forwarder`); `trunks` is then not used for those peers. Without them, and
    /// without `trunks` shared with the other nodes, this node applies a private copy of each
    /// trunk and warns that its results may exceed the link.
    pub forwarders: Vec<SocketAddr>,
    /// The mesh's session, said in every hello (default empty): peers in another session
    /// are refused. A controller job sets its id and attempt, so a node's mesh of the
    /// previous job, still closing on the same port, is never taken for this job's.
    pub session: String,
}

impl MeshConfig {
    /// A config with the defaults above.
    pub fn new(
        rank: usize,
        peers: Vec<PeerInfo>,
        profile: Arc<Profile>,
        identity: NodeIdentity,
        clock: EmuClock,
    ) -> Self {
        Self {
            rank,
            peers,
            profile,
            identity,
            cc: CcChoice::default(),
            listen: None,
            bound: None,
            socket: SocketKind::default(),
            clock,
            connect_timeout: None,
            give_up_after: None,
            max_transfer_bytes: 4 << 30,
            contact_aware: true,
            udp_payload: FABRIC_MTU,
            trunks: None,
            forwarders: Vec::new(),
            session: String::new(),
        }
    }
}
