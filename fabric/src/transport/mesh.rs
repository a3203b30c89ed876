//! The peer mesh: one mutual-TLS QUIC connection per pair of nodes, one stream per transfer,
//! mailboxes per (sender, tag) — what the collectives run on.
//!
//! * **Connections.** For each pair the lower rank dials the higher one, so there is exactly
//!   one connection per pair. Each side checks the other's certificate against the cluster CA
//!   and that it names the node the rank belongs to. The dialer opens a control stream and
//!   both sides exchange a `FabricHello` (rank + what each already received from the other).
//! * **Transfers.** [`Mesh::send`] opens a unidirectional stream carrying a length-delimited
//!   `TransferHeader` and the payload; the receiver reassembles it and puts it in the mailbox
//!   (from, tag), in the sender's order for that tag; [`Mesh::recv`] takes from there. `send`
//!   returns once QUIC holds every byte; the mesh keeps the payload until the receiver says
//!   it holds the whole transfer (`transfer_done` on the control stream).
//! * **Resume.** A connection lost to a fault is dialled again (with back-off); the new hello
//!   tells each sender which transfers the receiver holds completely and how many leading
//!   bytes of the others; unfinished transfers continue from there on the new connection.
//!   Receivers ignore transfers they already hold: nothing lost, nothing duplicated.
//! * **Contact plan.** Before each chunk the sender asks the link's contact plan
//!   ([`ContactPlan`]) at emulated time whether the bytes will reach the peer (and its
//!   acknowledgements come back) before a scheduled outage; if not it waits for the next
//!   contact instead of pouring data into the outage.
//! * **Socket.** quinn runs on an [`EmulatedSocket`] whose links are the profile's links
//!   from our site to each peer's ([`SocketKind`]; passthrough and plain UDP for baselines).
//!   A shared link is a [`Trunk`](crate::emu::Trunk) from the config's [`TrunkSet`] (meshes
//!   in one process pass the same set, so their node pairs queue in one FIFO), placed by the
//!   roster's [`TrunkPlan`]; each connection's link-aware window is the trunk's divided by
//!   its [`TrunkShare`] (see [`Mesh::set_trunk_share`]).
//! * **Bad input.** A malformed header or control message, a wrong rank, a stream that ends
//!   early close that stream (or that connection) with an error code and a log line; the
//!   process and the other connections carry on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use netem_profiles::{Profile, TrunkId, TrunkPlan};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use crate::emu::{EmuClock, EmulatedSocket, LinkTable, Trunk, TrunkSet};
use crate::transport::config::{
    CcChoice, FABRIC_MTU, LinkTuning, MAX_FABRIC_MTU, TrunkShare, tune_with_mtu,
};
use crate::transport::contact::{Admit, ContactPlan, SendClock};
use crate::transport::frame::{
    self, ControlKind, FabricControl, FabricHello, FrameError, MAX_CONTROL_LEN, MAX_HEADER_LEN,
    PartialTransfer, ReceiverState, TransferHeader,
};
use crate::transport::tls::{self, NodeIdentity, TlsError};

/// Application close codes on fabric connections.
mod close_code {
    /// The mesh is shutting down: do not dial again.
    pub(super) const SHUTDOWN: u32 = 0;
    /// Closed on purpose to simulate (or recover from) a fault: dial again.
    pub(super) const FAULT: u32 = 1;
    /// The peer broke the protocol on the control stream.
    pub(super) const PROTOCOL: u32 = 2;
    /// A newer connection from the same peer replaced this one.
    pub(super) const REPLACED: u32 = 3;
}

/// Stop codes on transfer streams.
mod stop_code {
    /// The receiver already holds this transfer; the sender may drop it.
    pub(super) const ALREADY_HAVE: u32 = 0;
    /// The stream broke the framing rules.
    pub(super) const MALFORMED: u32 = 1;
}

/// Bytes handed to QUIC per write (and per contact-plan check).
const CHUNK: usize = 256 * 1024;

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
    /// An [`EmulatedSocket`]: every datagram to a peer crosses the profile's link from our
    /// site to the peer's (delay, rate, loss, outages).
    #[default]
    Emulated,
    /// The same emulated socket with its links off ([`LinkTable::passthrough`]): the
    /// overhead baseline.
    Passthrough,
    /// quinn's own UDP socket, no emulation layer at all.
    PlainUdp,
}

/// Everything [`Mesh::connect`] needs.
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
    /// Address to bind (default: our entry's `addr`).
    pub listen: Option<SocketAddr>,
    /// How the socket is built (default: plain UDP).
    pub socket: SocketKind,
    /// Scenario clock: emulated time 0 is its epoch (outage schedules count from there).
    pub clock: EmuClock,
    /// How long [`Mesh::connect`] waits for every peer (default: 30 s + 4 RTT of the
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
    /// Ethernet path). Up to [`MAX_FABRIC_MTU`] on loopback: the emulated paths then carry
    /// datagrams that large (each serialised for its full length), so a CPU-bound host
    /// handles a fraction of the datagrams for the same bytes.
    pub udp_payload: u16,
    /// The shared trunks of the roster (default: a set of our own, so at least our own
    /// connections across one trunk share it). Meshes in one process pass the same set so
    /// that all their node pairs on a trunk queue in one FIFO.
    pub trunks: Option<Arc<TrunkSet>>,
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
            socket: SocketKind::default(),
            clock,
            connect_timeout: None,
            give_up_after: None,
            max_transfer_bytes: 4 << 30,
            contact_aware: true,
            udp_payload: FABRIC_MTU,
            trunks: None,
        }
    }
}

/// What can go wrong in the mesh.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The configuration is inconsistent.
    #[error("mesh configuration: {0}")]
    Config(String),
    /// A rank outside the mesh.
    #[error("rank {rank} is not in the mesh (world size {world_size})")]
    NoSuchRank {
        /// The rank asked for.
        rank: usize,
        /// The mesh's size.
        world_size: usize,
    },
    /// The socket could not be bound.
    #[error("fabric socket {addr}: {source}")]
    Socket {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: io::Error,
    },
    /// Certificates or TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Not every peer connected in time.
    #[error("rank {rank}: no connection to ranks {missing:?} after {after:?}")]
    ConnectTimeout {
        /// Our rank.
        rank: usize,
        /// Ranks still missing.
        missing: Vec<usize>,
        /// How long we waited.
        after: Duration,
    },
    /// A peer is gone (left, or unreachable for longer than allowed).
    #[error("peer rank {rank} ({name}) is unreachable: {reason}")]
    PeerUnreachable {
        /// Its rank.
        rank: usize,
        /// Its node name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The peer refused a transfer stream.
    #[error("peer rank {rank} refused transfer {transfer_id} (stop code {code})")]
    Refused {
        /// Its rank.
        rank: usize,
        /// The transfer.
        transfer_id: u64,
        /// The stop code it sent.
        code: u64,
    },
    /// The link to the peer has no scheduled contact left.
    #[error("link to peer rank {rank} has no scheduled contact left")]
    NoContact {
        /// Its rank.
        rank: usize,
    },
    /// The mesh was closed.
    #[error("the mesh is closed")]
    Closed,
}

/// Counters of one mesh (all since [`Mesh::connect`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeshStats {
    /// Connections established (first ones and re-connections).
    pub connections: u64,
    /// Connections lost to something else than a shutdown.
    pub connections_lost: u64,
    /// Transfer streams re-sent on a new connection.
    pub resumed_transfers: u64,
    /// Payload bytes not re-sent thanks to the receiver's resume offset.
    pub resume_skipped_bytes: u64,
    /// Payload bytes written to streams (re-sends included).
    pub payload_bytes_sent: u64,
    /// Payload bytes accepted from streams (duplicates of held bytes excluded).
    pub payload_bytes_received: u64,
    /// Transfers delivered to mailboxes.
    pub transfers_delivered: u64,
    /// Streams for transfers already held, ignored.
    pub duplicates_ignored: u64,
    /// Streams or connections refused as malformed.
    pub protocol_errors: u64,
    /// Times a sender waited for the link's next contact.
    pub contact_waits: u64,
}

#[derive(Debug, Default)]
struct StatCounters {
    connections: AtomicU64,
    connections_lost: AtomicU64,
    resumed_transfers: AtomicU64,
    resume_skipped_bytes: AtomicU64,
    payload_bytes_sent: AtomicU64,
    payload_bytes_received: AtomicU64,
    transfers_delivered: AtomicU64,
    duplicates_ignored: AtomicU64,
    protocol_errors: AtomicU64,
    contact_waits: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Transfers received complete from one peer: every id below `below`, plus `above`.
#[derive(Debug, Default)]
struct DoneSet {
    below: u64,
    above: BTreeSet<u64>,
}

impl DoneSet {
    fn contains(&self, id: u64) -> bool {
        id < self.below || self.above.contains(&id)
    }

    fn insert(&mut self, id: u64) {
        if id < self.below {
            return;
        }
        self.above.insert(id);
        while self.above.remove(&self.below) {
            self.below += 1;
        }
    }
}

/// A transfer partly received.
#[derive(Debug)]
struct Partial {
    tag: u64,
    seq: u64,
    total: u64,
    buf: BytesMut,
    /// The stream currently feeding it (a newer stream takes over).
    owner: u64,
}

/// What we received from one peer.
#[derive(Debug, Default)]
struct Incoming {
    done: DoneSet,
    partial: HashMap<u64, Partial>,
}

impl Incoming {
    fn state(&self) -> ReceiverState {
        ReceiverState {
            done_below: self.done.below,
            done: self.done.above.iter().copied().collect(),
            partial: self
                .partial
                .iter()
                .map(|(&transfer_id, p)| PartialTransfer {
                    transfer_id,
                    have: p.buf.len() as u64,
                })
                .collect(),
        }
    }
}

/// A transfer we sent (or are sending) that the receiver does not hold completely yet.
#[derive(Debug)]
struct Pending {
    done: Arc<Notify>,
}

/// What we send to one peer.
#[derive(Debug, Default)]
struct Outgoing {
    next_id: u64,
    next_seq: HashMap<u64, u64>,
    pending: HashMap<u64, Pending>,
}

/// The connection to one peer, as the tasks see it.
#[derive(Debug, Clone, Default)]
struct Link {
    /// Bumped for every new connection.
    generation: u64,
    conn: Option<quinn::Connection>,
    /// Control messages to the peer on the current connection.
    control: Option<mpsc::UnboundedSender<FabricControl>>,
    /// What the peer said it holds from us when this connection started.
    peer_holds: Option<Arc<PeerHolds>>,
    /// Set when the peer is gone for good.
    failed: Option<String>,
}

/// The peer's `ReceiverState`, indexed.
#[derive(Debug, Default)]
struct PeerHolds {
    done: DoneSet,
    partial: HashMap<u64, u64>,
}

impl From<ReceiverState> for PeerHolds {
    fn from(s: ReceiverState) -> Self {
        let mut done = DoneSet {
            below: s.done_below,
            above: BTreeSet::new(),
        };
        for id in s.done {
            done.insert(id);
        }
        Self {
            done,
            partial: s
                .partial
                .into_iter()
                .map(|p| (p.transfer_id, p.have))
                .collect(),
        }
    }
}

/// Everything about one peer.
#[derive(Debug)]
struct PeerSlot {
    info: PeerInfo,
    tuning: LinkTuning,
    /// The trunk our datagrams to this peer cross, and how many connections share it.
    trunk: TrunkId,
    share: TrunkShare,
    plan: ContactPlan,
    client_config: quinn::ClientConfig,
    server_config: Arc<quinn::ServerConfig>,
    link: watch::Sender<Link>,
    outgoing: Mutex<Outgoing>,
    incoming: Mutex<Incoming>,
    send_clock: Mutex<SendClock>,
}

/// Per-(from, tag) mailbox: transfers in the sender's order.
#[derive(Debug, Default)]
struct Mailbox {
    next_seq: u64,
    ready: BTreeMap<u64, Bytes>,
}

#[derive(Debug)]
struct Inner {
    rank: usize,
    /// Which trunk every ordered rank pair crosses.
    trunk_plan: TrunkPlan,
    site: String,
    world_size: usize,
    endpoint: quinn::Endpoint,
    peers: Vec<Option<PeerSlot>>,
    by_addr: HashMap<SocketAddr, usize>,
    mailboxes: Mutex<HashMap<(usize, u64), Mailbox>>,
    /// Woken whenever a mailbox gains a transfer or a peer fails.
    delivered: Notify,
    clock: EmuClock,
    emulated: Option<Arc<EmulatedSocket>>,
    contact_aware: bool,
    max_transfer_bytes: u64,
    give_up_after: Duration,
    handshake_timeout: Duration,
    shutdown: CancellationToken,
    stats: StatCounters,
    received_bytes: watch::Sender<u64>,
    next_stream_token: AtomicU64,
    span: tracing::Span,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks is a bug already reported; keep going with
    // the data as it is rather than cascading panics.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The mesh of QUIC connections of one node. Dropping it closes every connection.
#[derive(Debug)]
pub struct Mesh {
    inner: Arc<Inner>,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.inner.shutdown.cancel();
        self.inner
            .endpoint
            .close(close_code::SHUTDOWN.into(), b"mesh closed");
        release_port(&self.inner);
    }
}

/// Frees the fabric port at once. Closing connections drains for three probe timeouts — tens
/// of seconds on a 2.56 s round trip — and quinn holds the socket until then, so the next job
/// attempt could not bind the node's port. The endpoint moves to a [`DiscardSocket`] to drain
/// and the emulated socket is retired, which makes quinn drop it.
fn release_port(inner: &Inner) {
    let Some(emulated) = &inner.emulated else {
        return;
    };
    emulated.retire();
    let discard = Arc::new(DiscardSocket {
        local: emulated.bound_addr(),
    });
    if let Err(e) = inner.endpoint.rebind_abstract(discard) {
        tracing::debug!(error = %e, "moving the closed endpoint off the fabric socket");
    }
}

/// A socket that sends nowhere and never receives: where a closed endpoint drains.
#[derive(Debug)]
struct DiscardSocket {
    local: SocketAddr,
}

#[derive(Debug)]
struct AlwaysWritable;

impl quinn::UdpPoller for AlwaysWritable {
    fn poll_writable(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl quinn::AsyncUdpSocket for DiscardSocket {
    fn create_io_poller(self: Arc<Self>) -> std::pin::Pin<Box<dyn quinn::UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, _transmit: &quinn::udp::Transmit<'_>) -> io::Result<()> {
        Ok(())
    }

    fn poll_recv(
        &self,
        _cx: &mut std::task::Context<'_>,
        _bufs: &mut [io::IoSliceMut<'_>],
        _meta: &mut [quinn::udp::RecvMeta],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Pending
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The socket quinn runs on, and the emulated socket behind it if there is one.
type BuiltSocket = (Arc<dyn quinn::AsyncUdpSocket>, Option<Arc<EmulatedSocket>>);

/// The link our datagrams to one peer cross.
enum PeerLink {
    /// The pair's own copy of the link.
    Private(Box<netem_profiles::LinkModel>),
    /// A trunk shared with other node pairs.
    Shared(Trunk),
}

/// The socket seam: builds the socket quinn runs on. `links` are (peer address, link from
/// our site to the peer's, label) for the emulated kinds.
fn build_socket(
    kind: SocketKind,
    addr: SocketAddr,
    clock: EmuClock,
    max_udp_payload: usize,
    links: Vec<(SocketAddr, PeerLink, String)>,
) -> Result<BuiltSocket, TransportError> {
    let socket_err = |source| TransportError::Socket { addr, source };
    match kind {
        SocketKind::PlainUdp => {
            let socket = std::net::UdpSocket::bind(addr).map_err(socket_err)?;
            let socket = quinn::Runtime::wrap_udp_socket(&quinn::TokioRuntime, socket)
                .map_err(socket_err)?;
            Ok((socket, None))
        }
        SocketKind::Emulated | SocketKind::Passthrough => {
            let table = if kind == SocketKind::Passthrough {
                LinkTable::passthrough()
            } else {
                LinkTable::new(clock)
            }
            .with_max_udp_payload(max_udp_payload);
            for (peer, link, label) in links {
                match link {
                    PeerLink::Private(model) => table.set_peer_labelled(peer, *model, label),
                    PeerLink::Shared(trunk) => table.set_peer_trunk(peer, &trunk),
                }
            }
            let socket = EmulatedSocket::bind(addr, Arc::new(table)).map_err(socket_err)?;
            Ok((socket.clone(), Some(socket)))
        }
    }
}

impl Mesh {
    /// Binds our socket, connects to every peer (lower rank dials higher) and returns once
    /// every connection is up, or fails after the connect timeout naming the missing ranks.
    pub async fn connect(config: MeshConfig) -> Result<Self, TransportError> {
        let world_size = config.peers.len();
        let mut by_rank: Vec<Option<&PeerInfo>> = vec![None; world_size];
        for p in &config.peers {
            match by_rank.get_mut(p.rank) {
                Some(slot @ None) => *slot = Some(p),
                Some(Some(_)) => {
                    return Err(TransportError::Config(format!(
                        "rank {} listed twice in peers",
                        p.rank
                    )));
                }
                None => {
                    return Err(TransportError::Config(format!(
                        "peer {} has rank {} but there are only {world_size} peers",
                        p.name, p.rank
                    )));
                }
            }
        }
        let me = by_rank
            .get(config.rank)
            .copied()
            .flatten()
            .ok_or(TransportError::NoSuchRank {
                rank: config.rank,
                world_size,
            })?;
        if me.name != config.identity.name() {
            return Err(TransportError::Config(format!(
                "rank {} is {} in peers but our certificate is for {}",
                config.rank,
                me.name,
                config.identity.name()
            )));
        }
        let profile = &config.profile;
        let site_id = |p: &PeerInfo| {
            profile.site_id(&p.site).ok_or_else(|| {
                TransportError::Config(format!(
                    "peer rank {} ({}) is at site {:?}, which profile {} does not have",
                    p.rank, p.name, p.site, profile.name
                ))
            })
        };
        let my_site = site_id(me)?;
        let site_of_rank = by_rank
            .iter()
            .map(|p| p.map_or(Ok(usize::MAX), site_id))
            .collect::<Result<Vec<_>, _>>()?;
        let trunk_plan = TrunkPlan::new(profile, &site_of_rank);
        let trunks = config
            .trunks
            .clone()
            .unwrap_or_else(|| Arc::new(TrunkSet::new(profile.clone())));
        if !(1200..=MAX_FABRIC_MTU).contains(&config.udp_payload) {
            return Err(TransportError::Config(format!(
                "udp_payload {} is outside 1200..={MAX_FABRIC_MTU}",
                config.udp_payload
            )));
        }
        let longest_outage = profile.longest_outage();
        let client_crypto = Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(config.identity.client_crypto()?)
                .map_err(|e| TransportError::Tls(TlsError::Config(e.to_string())))?,
        );
        let server_crypto = Arc::new(
            quinn::crypto::rustls::QuicServerConfig::try_from(config.identity.server_crypto()?)
                .map_err(|e| TransportError::Tls(TlsError::Config(e.to_string())))?,
        );
        let mut peers = Vec::with_capacity(world_size);
        let mut by_addr = HashMap::new();
        let mut emulated_links = Vec::new();
        let mut slowest_rtt = Duration::ZERO;
        for (rank, p) in by_rank.iter().enumerate() {
            let Some(p) = p else {
                return Err(TransportError::Config(format!(
                    "no peer has rank {rank} (ranks must be 0..{world_size})"
                )));
            };
            tls::validate_node_name(&p.name)?;
            if rank == config.rank {
                peers.push(None);
                continue;
            }
            let their_site = site_id(p)?;
            let trunk = trunk_plan
                .trunk(config.rank, rank)
                .unwrap_or(TrunkId::Private {
                    from_rank: config.rank,
                    to_rank: rank,
                });
            let link = match trunks.trunk(trunk) {
                Some(t) => PeerLink::Shared(t),
                None => PeerLink::Private(Box::new(profile.link_model(my_site, their_site))),
            };
            let share =
                TrunkShare::new(u32::try_from(trunk_plan.pairs_on(trunk)).unwrap_or(u32::MAX));
            emulated_links.push((
                p.addr,
                link,
                format!("{}/{}->{}/{}", me.site, config.rank, p.site, rank),
            ));
            let out = profile.link(my_site, their_site);
            let back = profile.link(their_site, my_site);
            let tuning = tune_with_mtu(
                out,
                back,
                longest_outage,
                config.cc,
                Duration::ZERO,
                config.udp_payload,
            );
            slowest_rtt = slowest_rtt.max(tuning.rtt);
            let transport = Arc::new(tuning.transport_config_shared(&share));
            let mut client_config = quinn::ClientConfig::new(client_crypto.clone());
            client_config.transport_config(transport.clone());
            let mut server_config = quinn::ServerConfig::with_crypto(server_crypto.clone());
            server_config.transport_config(transport);
            if by_addr.insert(p.addr, rank).is_some() {
                return Err(TransportError::Config(format!(
                    "two peers share the address {}",
                    p.addr
                )));
            }
            peers.push(Some(PeerSlot {
                info: (*p).clone(),
                trunk,
                share,
                plan: ContactPlan::new(out, back, contact_guard(tuning.rtt)),
                send_clock: Mutex::new(SendClock::new(out.rate_bps, tuning.mtu)),
                tuning,
                client_config,
                server_config: Arc::new(server_config),
                link: watch::Sender::new(Link::default()),
                outgoing: Mutex::new(Outgoing::default()),
                incoming: Mutex::new(Incoming::default()),
            }));
        }

        let listen = config.listen.unwrap_or(me.addr);
        let max_payload = usize::from(config.udp_payload).max(crate::emu::MAX_UDP_PAYLOAD);
        let (socket, emulated) = build_socket(
            config.socket,
            listen,
            config.clock,
            max_payload,
            emulated_links,
        )?;
        let mut endpoint_config = quinn::EndpointConfig::default();
        endpoint_config
            .max_udp_payload_size(u16::try_from(max_payload).unwrap_or(MAX_FABRIC_MTU))
            .map_err(|e| TransportError::Config(format!("udp_payload: {e}")))?;
        // Incoming connections get their peer's transport config in `accept_with`; this
        // default only serves connections from unknown addresses until they are refused.
        let default_server = quinn::ServerConfig::with_crypto(server_crypto);
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(default_server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TransportError::Socket {
            addr: listen,
            source,
        })?;

        let give_up_after = config.give_up_after.unwrap_or_else(|| {
            (longest_outage * 2 + slowest_rtt * 10).max(Duration::from_secs(60))
        });
        let connect_timeout = config
            .connect_timeout
            .unwrap_or(Duration::from_secs(30) + slowest_rtt * 4);
        let span = tracing::info_span!("mesh", rank = config.rank, site = %me.site);
        let inner = Arc::new(Inner {
            rank: config.rank,
            trunk_plan,
            site: me.site.clone(),
            world_size,
            endpoint,
            peers,
            by_addr,
            mailboxes: Mutex::new(HashMap::new()),
            delivered: Notify::new(),
            clock: config.clock,
            emulated,
            contact_aware: config.contact_aware,
            max_transfer_bytes: config.max_transfer_bytes,
            give_up_after,
            handshake_timeout: Duration::from_secs(10) + slowest_rtt * 4,
            shutdown: CancellationToken::new(),
            stats: StatCounters::default(),
            received_bytes: watch::Sender::new(0),
            next_stream_token: AtomicU64::new(1),
            span: span.clone(),
        });
        info!(parent: &span, world_size, %listen, cc = %config.cc, "fabric endpoint up");

        tokio::spawn(accept_loop(inner.clone()).instrument(span.clone()));
        for rank in config.rank + 1..world_size {
            tokio::spawn(dial_loop(inner.clone(), rank).instrument(span.clone()));
        }
        for rank in 0..world_size {
            if rank != config.rank {
                tokio::spawn(watchdog(inner.clone(), rank).instrument(span.clone()));
            }
        }
        let mesh = Self { inner };
        mesh.wait_connected(connect_timeout).await?;
        Ok(mesh)
    }

    async fn wait_connected(&self, timeout: Duration) -> Result<(), TransportError> {
        let deadline = Instant::now() + timeout;
        for slot in self.inner.peers.iter().flatten() {
            let mut rx = slot.link.subscribe();
            let ready = tokio::time::timeout_at(
                deadline,
                rx.wait_for(|l| l.conn.is_some() || l.failed.is_some()),
            )
            .await;
            if ready.is_err() {
                let missing = self
                    .inner
                    .peers
                    .iter()
                    .flatten()
                    .filter(|s| s.link.borrow().conn.is_none())
                    .map(|s| s.info.rank)
                    .collect();
                return Err(TransportError::ConnectTimeout {
                    rank: self.inner.rank,
                    missing,
                    after: timeout,
                });
            }
            if let Some(reason) = slot.link.borrow().failed.clone() {
                return Err(unreachable(slot, reason));
            }
        }
        Ok(())
    }

    /// Our rank.
    pub fn rank(&self) -> usize {
        self.inner.rank
    }

    /// Number of members.
    pub fn world_size(&self) -> usize {
        self.inner.world_size
    }

    /// Our site.
    pub fn site(&self) -> &str {
        &self.inner.site
    }

    /// The local address of our fabric socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.endpoint.local_addr()
    }

    /// The transport settings used towards `peer`.
    pub fn tuning(&self, peer: usize) -> Option<&LinkTuning> {
        self.inner.peers.get(peer)?.as_ref().map(|s| &s.tuning)
    }

    /// The roster's placement of node pairs on trunks.
    pub fn trunk_plan(&self) -> &TrunkPlan {
        &self.inner.trunk_plan
    }

    /// The trunk our datagrams to `peer` cross (`None` for ourselves or an unknown rank).
    pub fn trunk(&self, peer: usize) -> Option<TrunkId> {
        self.inner.peers.get(peer)?.as_ref().map(|s| s.trunk)
    }

    /// How many connections share the trunk towards `peer` now.
    pub fn trunk_share(&self, peer: usize) -> Option<u32> {
        self.inner.peers.get(peer)?.as_ref().map(|s| s.share.get())
    }

    /// Tells the link-aware controller of our connection to `peer` that `connections`
    /// connections use its trunk at once from now on (the plan knows; the mesh starts at
    /// the roster's count of node pairs on the trunk). Takes effect at the next window
    /// query, also on a reconnected connection. Unknown ranks are ignored.
    pub fn set_trunk_share(&self, peer: usize, connections: u32) {
        if let Some(Some(slot)) = self.inner.peers.get(peer) {
            slot.share.set(connections);
        }
    }

    /// The current QUIC connection to `peer`, if any (statistics, RTT).
    pub fn connection(&self, peer: usize) -> Option<quinn::Connection> {
        let slot = self.inner.peers.get(peer)?.as_ref()?;
        slot.link.borrow().conn.clone()
    }

    /// The emulated socket, when the mesh runs on one (its per-link traffic and drops).
    pub fn emulated_socket(&self) -> Option<&Arc<EmulatedSocket>> {
        self.inner.emulated.as_ref()
    }

    /// The scenario clock.
    pub fn clock(&self) -> &EmuClock {
        &self.inner.clock
    }

    /// Counters since connect.
    pub fn stats(&self) -> MeshStats {
        let s = &self.inner.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MeshStats {
            connections: get(&s.connections),
            connections_lost: get(&s.connections_lost),
            resumed_transfers: get(&s.resumed_transfers),
            resume_skipped_bytes: get(&s.resume_skipped_bytes),
            payload_bytes_sent: get(&s.payload_bytes_sent),
            payload_bytes_received: get(&s.payload_bytes_received),
            transfers_delivered: get(&s.transfers_delivered),
            duplicates_ignored: get(&s.duplicates_ignored),
            protocol_errors: get(&s.protocol_errors),
            contact_waits: get(&s.contact_waits),
        }
    }

    /// Payload bytes received so far, as a watch (tests and benches wait on progress).
    pub fn received_bytes(&self) -> watch::Receiver<u64> {
        self.inner.received_bytes.subscribe()
    }

    /// Closes the connection to `peer` as a fault would (it is dialled again and unfinished
    /// transfers resume). For fault-injection tests and benchmarks.
    pub fn inject_connection_fault(&self, peer: usize) {
        let conn = match self.inner.peers.get(peer) {
            Some(Some(slot)) => slot.link.borrow().conn.clone(),
            _ => None,
        };
        if let Some(conn) = conn {
            warn!(parent: &self.inner.span, peer, "injecting a connection fault");
            conn.close(close_code::FAULT.into(), b"injected fault");
        }
    }

    /// Closes every connection and the endpoint, waiting briefly for the close to go out.
    pub async fn close(self) {
        self.inner.shutdown.cancel();
        self.inner
            .endpoint
            .close(close_code::SHUTDOWN.into(), b"mesh closed");
        // Give the peers a moment to hear the close on the real socket, then let it go.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
        release_port(&self.inner);
    }

    /// Sends `payload` to rank `to` under `tag`: one transfer on its own QUIC stream. Returns
    /// once QUIC holds all of it; the mesh keeps a copy until the peer holds the whole
    /// transfer, re-sending from where the peer stopped if the connection is lost.
    pub async fn send(&self, to: usize, tag: u64, payload: Bytes) -> Result<(), TransportError> {
        let inner = &self.inner;
        if to == inner.rank {
            deliver_local(inner, tag, payload);
            return Ok(());
        }
        let slot = peer_slot(inner, to)?;
        let (id, seq, done) = {
            let mut out = lock(&slot.outgoing);
            let id = out.next_id;
            out.next_id += 1;
            let seq_slot = out.next_seq.entry(tag).or_insert(0);
            let seq = *seq_slot;
            *seq_slot += 1;
            let done = Arc::new(Notify::new());
            out.pending.insert(id, Pending { done: done.clone() });
            (id, seq, done)
        };
        let header = TransferHeader {
            from_rank: inner.rank as u32,
            tag,
            transfer_id: id,
            seq,
            offset: 0,
            total_len: payload.len() as u64,
        };
        let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(
            drive_transfer(inner.clone(), to, header, payload, done, accepted_tx)
                .instrument(inner.span.clone()),
        );
        match accepted_rx.await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Closed),
        }
    }

    /// Receives the next transfer from rank `from` under `tag` (in the sender's order).
    pub async fn recv(&self, from: usize, tag: u64) -> Result<Bytes, TransportError> {
        let inner = &self.inner;
        if from >= inner.world_size {
            return Err(TransportError::NoSuchRank {
                rank: from,
                world_size: inner.world_size,
            });
        }
        loop {
            let notified = inner.delivered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut boxes = lock(&inner.mailboxes);
                if let Some(mb) = boxes.get_mut(&(from, tag)) {
                    let next = mb.next_seq;
                    if let Some(payload) = mb.ready.remove(&next) {
                        mb.next_seq += 1;
                        return Ok(payload);
                    }
                }
            }
            if inner.shutdown.is_cancelled() {
                return Err(TransportError::Closed);
            }
            if let Some(Some(slot)) = inner.peers.get(from)
                && let Some(reason) = slot.link.borrow().failed.clone()
            {
                return Err(unreachable(slot, reason));
            }
            tokio::select! {
                _ = notified => {}
                _ = inner.shutdown.cancelled() => {}
            }
        }
    }
}

/// Margin at the end of a contact: quinn's delayed ACK (25 ms) plus an eighth of the RTT.
fn contact_guard(rtt: Duration) -> Duration {
    Duration::from_millis(25) + rtt / 8
}

fn unreachable(slot: &PeerSlot, reason: String) -> TransportError {
    TransportError::PeerUnreachable {
        rank: slot.info.rank,
        name: slot.info.name.clone(),
        reason,
    }
}

fn peer_slot(inner: &Inner, rank: usize) -> Result<&PeerSlot, TransportError> {
    inner
        .peers
        .get(rank)
        .and_then(Option::as_ref)
        .ok_or(TransportError::NoSuchRank {
            rank,
            world_size: inner.world_size,
        })
}

/// Emulated time now (since the scenario epoch).
fn emu_now(inner: &Inner) -> Duration {
    inner.clock.now()
}

fn deliver_local(inner: &Inner, tag: u64, payload: Bytes) {
    let mut boxes = lock(&inner.mailboxes);
    let mb = boxes.entry((inner.rank, tag)).or_default();
    let seq = mb.next_seq + mb.ready.len() as u64;
    mb.ready.insert(seq, payload);
    drop(boxes);
    inner.delivered.notify_waiters();
}

/// How a transfer stream attempt ended.
enum Attempt {
    /// Every byte written and the stream finished.
    Written,
    /// The peer holds the transfer already.
    AlreadyHeld,
    /// The connection went away; try again on the next one.
    ConnectionLost,
    /// The peer refused the stream.
    Refused(u64),
}

/// Sends one transfer until the peer holds it, across reconnections.
async fn drive_transfer(
    inner: Arc<Inner>,
    to: usize,
    mut header: TransferHeader,
    payload: Bytes,
    done: Arc<Notify>,
    accepted: tokio::sync::oneshot::Sender<Result<(), TransportError>>,
) {
    let Some(Some(slot)) = inner.peers.get(to) else {
        return;
    };
    let id = header.transfer_id;
    let mut accepted = Some(accepted);
    let mut finish = |result: Result<(), TransportError>| {
        if let Some(tx) = accepted.take() {
            let _ = tx.send(result);
        }
    };
    let mut rx = slot.link.subscribe();
    let mut last_generation = 0;
    let mut attempts = 0u64;
    loop {
        // Wait for a connection newer than the one we last tried.
        let link = tokio::select! {
            l = rx.wait_for(|l| (l.conn.is_some() && l.generation > last_generation) || l.failed.is_some()) => match l {
                Ok(l) => l.clone(),
                Err(_) => { finish(Err(TransportError::Closed)); return; }
            },
            _ = inner.shutdown.cancelled() => { finish(Err(TransportError::Closed)); return; }
        };
        if let Some(reason) = link.failed {
            finish(Err(unreachable(slot, reason)));
            forget_pending(slot, id);
            return;
        }
        let (Some(conn), Some(holds)) = (link.conn, link.peer_holds) else {
            continue;
        };
        last_generation = link.generation;
        if !lock(&slot.outgoing).pending.contains_key(&id) || holds.done.contains(id) {
            forget_pending(slot, id);
            finish(Ok(()));
            return;
        }
        let offset = holds
            .partial
            .get(&id)
            .copied()
            .unwrap_or(0)
            .min(header.total_len);
        if attempts > 0 {
            bump(&inner.stats.resumed_transfers, 1);
            bump(&inner.stats.resume_skipped_bytes, offset);
            info!(
                peer = to,
                transfer = id,
                offset,
                total = header.total_len,
                "resuming transfer"
            );
        }
        attempts += 1;
        header.offset = offset;
        match write_transfer(&inner, slot, &conn, &header, &payload).await {
            Ok(Attempt::Written) => finish(Ok(())),
            Ok(Attempt::AlreadyHeld) => {
                forget_pending(slot, id);
                finish(Ok(()));
                return;
            }
            Ok(Attempt::ConnectionLost) => {
                debug!(
                    peer = to,
                    transfer = id,
                    "connection lost while sending; will resume"
                );
                continue;
            }
            Ok(Attempt::Refused(code)) => {
                forget_pending(slot, id);
                finish(Err(TransportError::Refused {
                    rank: to,
                    transfer_id: id,
                    code,
                }));
                return;
            }
            Err(e) => {
                forget_pending(slot, id);
                finish(Err(e));
                return;
            }
        }
        // Written: wait until the peer holds it, or the connection changes (then resume).
        let generation = last_generation;
        let notified = done.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !lock(&slot.outgoing).pending.contains_key(&id) {
            return;
        }
        tokio::select! {
            _ = notified => return,
            _ = rx.wait_for(|l| l.generation != generation || l.conn.is_none() || l.failed.is_some()) => {}
            _ = inner.shutdown.cancelled() => return,
        }
        if !lock(&slot.outgoing).pending.contains_key(&id) {
            return;
        }
    }
}

fn forget_pending(slot: &PeerSlot, id: u64) {
    if let Some(p) = lock(&slot.outgoing).pending.remove(&id) {
        p.done.notify_waiters();
    }
}

/// Waits until the contact plan lets `len` bytes go to the peer.
async fn wait_for_contact(
    inner: &Inner,
    slot: &PeerSlot,
    len: usize,
) -> Result<(), TransportError> {
    if !inner.contact_aware {
        return Ok(());
    }
    loop {
        let now = emu_now(inner);
        let decision = lock(&slot.send_clock).admit(&slot.plan, now, len);
        match decision {
            Admit::Now => return Ok(()),
            Admit::Never => {
                return Err(TransportError::NoContact {
                    rank: slot.info.rank,
                });
            }
            Admit::WaitUntil(t) => {
                bump(&inner.stats.contact_waits, 1);
                debug!(peer = slot.info.rank, wait_until = ?t, "waiting for the link's next contact");
                tokio::select! {
                    _ = tokio::time::sleep_until(inner.clock.instant_at(t)) => {}
                    _ = inner.shutdown.cancelled() => return Err(TransportError::Closed),
                }
            }
        }
    }
}

async fn write_transfer(
    inner: &Inner,
    slot: &PeerSlot,
    conn: &quinn::Connection,
    header: &TransferHeader,
    payload: &Bytes,
) -> Result<Attempt, TransportError> {
    let offset = header.offset as usize;
    let first_len = payload.len().saturating_sub(offset).min(CHUNK);
    wait_for_contact(inner, slot, first_len + MAX_HEADER_LEN).await?;
    let Ok(mut stream) = conn.open_uni().await else {
        return Ok(Attempt::ConnectionLost);
    };
    let classify = |e: quinn::WriteError| match e {
        quinn::WriteError::Stopped(code)
            if code.into_inner() == u64::from(stop_code::ALREADY_HAVE) =>
        {
            Attempt::AlreadyHeld
        }
        quinn::WriteError::Stopped(code) => Attempt::Refused(code.into_inner()),
        _ => Attempt::ConnectionLost,
    };
    if let Err(e) = stream.write_chunk(frame::encode_delimited(header)).await {
        return Ok(classify(e));
    }
    let mut pos = offset;
    let mut first = true;
    while pos < payload.len() {
        let end = (pos + CHUNK).min(payload.len());
        if !first {
            wait_for_contact(inner, slot, end - pos).await?;
        }
        first = false;
        if let Err(e) = stream.write_chunk(payload.slice(pos..end)).await {
            return Ok(classify(e));
        }
        bump(&inner.stats.payload_bytes_sent, (end - pos) as u64);
        pos = end;
    }
    if stream.finish().is_err() {
        return Ok(Attempt::ConnectionLost);
    }
    Ok(Attempt::Written)
}

/// Accepts incoming connections for as long as the mesh lives.
async fn accept_loop(inner: Arc<Inner>) {
    loop {
        let incoming = tokio::select! {
            i = inner.endpoint.accept() => match i { Some(i) => i, None => return },
            _ = inner.shutdown.cancelled() => return,
        };
        let remote = incoming.remote_address();
        let Some(&rank) = inner.by_addr.get(&remote) else {
            warn!(%remote, "refusing a connection from an address that is not a peer");
            incoming.refuse();
            continue;
        };
        if rank >= inner.rank {
            warn!(%remote, peer = rank, "refusing a connection from a higher rank (lower ranks dial)");
            incoming.refuse();
            continue;
        }
        let Some(Some(slot)) = inner.peers.get(rank) else {
            incoming.refuse();
            continue;
        };
        let connecting = match incoming.accept_with(slot.server_config.clone()) {
            Ok(c) => c,
            Err(e) => {
                warn!(%remote, error = %e, "accepting a connection failed");
                continue;
            }
        };
        let inner2 = inner.clone();
        tokio::spawn(
            async move {
                match tokio::time::timeout(
                    inner2.handshake_timeout,
                    accept_one(&inner2, rank, connecting),
                )
                .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(peer = rank, error = %e, "incoming connection refused"),
                    Err(_) => warn!(peer = rank, "incoming connection: handshake timed out"),
                }
            }
            .in_current_span(),
        );
    }
}

async fn accept_one(
    inner: &Arc<Inner>,
    rank: usize,
    connecting: quinn::Connecting,
) -> Result<(), String> {
    let conn = connecting.await.map_err(|e| format!("handshake: {e}"))?;
    let slot = peer_slot(inner, rank).map_err(|e| e.to_string())?;
    if let Err(e) = tls::peer_is(&conn, &slot.info.name) {
        conn.close(
            close_code::PROTOCOL.into(),
            b"certificate does not match the rank",
        );
        return Err(e);
    }
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| format!("control stream: {e}"))?;
    let hello =
        match frame::read_delimited::<FabricHello>(&mut recv, "hello", MAX_CONTROL_LEN).await {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Err(protocol_close(
                    inner,
                    &conn,
                    "control stream ended before the hello",
                ));
            }
            Err(e) => return Err(protocol_close(inner, &conn, &e.to_string())),
        };
    if let Err(e) = check_hello(inner, &hello, rank) {
        return Err(protocol_close(inner, &conn, &e));
    }
    let ours = our_hello(inner, slot);
    send.write_chunk(frame::encode_delimited(&ours))
        .await
        .map_err(|e| format!("sending hello: {e}"))?;
    install(inner, rank, conn.clone(), send, recv, hello);
    Ok(())
}

fn protocol_close(inner: &Inner, conn: &quinn::Connection, reason: &str) -> String {
    bump(&inner.stats.protocol_errors, 1);
    conn.close(close_code::PROTOCOL.into(), reason.as_bytes());
    format!("protocol error: {reason}")
}

fn check_hello(inner: &Inner, hello: &FabricHello, rank: usize) -> Result<(), String> {
    if hello.rank as usize != rank {
        return Err(format!(
            "hello says rank {} but the connection is rank {rank}'s",
            hello.rank
        ));
    }
    if hello.world_size as usize != inner.world_size {
        return Err(format!(
            "peer rank {rank} believes the world size is {}, ours is {}",
            hello.world_size, inner.world_size
        ));
    }
    Ok(())
}

fn our_hello(inner: &Inner, slot: &PeerSlot) -> FabricHello {
    FabricHello {
        rank: inner.rank as u32,
        world_size: inner.world_size as u32,
        receiver_state: Some(lock(&slot.incoming).state()),
    }
}

/// Dials a higher-ranked peer, again after every connection loss, until shutdown.
async fn dial_loop(inner: Arc<Inner>, rank: usize) {
    let Some(Some(slot)) = inner.peers.get(rank) else {
        return;
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        if inner.shutdown.is_cancelled() || slot.link.borrow().failed.is_some() {
            return;
        }
        // No point dialling into a scheduled outage.
        if let Err(e) = wait_for_contact(&inner, slot, 0).await {
            mark_failed(&inner, slot, e.to_string());
            return;
        }
        let attempt = tokio::time::timeout(inner.handshake_timeout, dial_one(&inner, rank));
        let result = tokio::select! {
            r = attempt => r,
            _ = inner.shutdown.cancelled() => return,
        };
        match result {
            Ok(Ok(conn)) => {
                backoff = Duration::from_millis(100);
                let reason = tokio::select! {
                    r = conn.closed() => r,
                    _ = inner.shutdown.cancelled() => return,
                };
                if peer_left(&reason) {
                    mark_failed(&inner, slot, format!("peer closed the fabric: {reason}"));
                    return;
                }
                continue;
            }
            Ok(Err(e)) => warn!(peer = rank, error = %e, "dialling failed"),
            Err(_) => warn!(peer = rank, timeout = ?inner.handshake_timeout, "dialling timed out"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = inner.shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Did the peer close the connection because it is leaving?
fn peer_left(reason: &quinn::ConnectionError) -> bool {
    matches!(reason, quinn::ConnectionError::ApplicationClosed(c)
        if c.error_code.into_inner() == u64::from(close_code::SHUTDOWN))
}

async fn dial_one(inner: &Arc<Inner>, rank: usize) -> Result<quinn::Connection, String> {
    let slot = peer_slot(inner, rank).map_err(|e| e.to_string())?;
    let connecting = inner
        .endpoint
        .connect_with(slot.client_config.clone(), slot.info.addr, &slot.info.name)
        .map_err(|e| format!("connect to {}: {e}", slot.info.addr))?;
    let conn = connecting.await.map_err(|e| format!("handshake: {e}"))?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| format!("control stream: {e}"))?;
    send.write_chunk(frame::encode_delimited(&our_hello(inner, slot)))
        .await
        .map_err(|e| format!("sending hello: {e}"))?;
    let hello =
        match frame::read_delimited::<FabricHello>(&mut recv, "hello", MAX_CONTROL_LEN).await {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Err(protocol_close(
                    inner,
                    &conn,
                    "control stream ended before the hello",
                ));
            }
            Err(e) => return Err(protocol_close(inner, &conn, &e.to_string())),
        };
    if let Err(e) = check_hello(inner, &hello, rank) {
        return Err(protocol_close(inner, &conn, &e));
    }
    install(inner, rank, conn.clone(), send, recv, hello);
    Ok(conn)
}

/// Makes `conn` the connection to `rank` and starts its stream tasks.
fn install(
    inner: &Arc<Inner>,
    rank: usize,
    conn: quinn::Connection,
    control_send: quinn::SendStream,
    control_recv: quinn::RecvStream,
    hello: FabricHello,
) {
    let Some(Some(slot)) = inner.peers.get(rank) else {
        return;
    };
    let holds = Arc::new(PeerHolds::from(hello.receiver_state.unwrap_or_default()));
    // The peer told us what it holds: transfers it holds completely are done.
    let done_ids: Vec<u64> = lock(&slot.outgoing)
        .pending
        .keys()
        .copied()
        .filter(|&id| holds.done.contains(id))
        .collect();
    for id in done_ids {
        forget_pending(slot, id);
    }
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let mut generation = 0;
    slot.link.send_modify(|l| {
        if let Some(old) = l.conn.take() {
            old.close(
                close_code::REPLACED.into(),
                b"replaced by a newer connection",
            );
        }
        l.generation += 1;
        generation = l.generation;
        l.conn = Some(conn.clone());
        l.control = Some(control_tx);
        l.peer_holds = Some(holds);
    });
    let previous = inner.stats.connections.fetch_add(1, Ordering::Relaxed);
    info!(peer = rank, name = %slot.info.name, generation, rtt = ?conn.rtt(), connections_so_far = previous + 1, "connected");
    let span = tracing::Span::current();
    tokio::spawn(control_writer(conn.clone(), control_send, control_rx).instrument(span.clone()));
    tokio::spawn(
        control_reader(inner.clone(), rank, conn.clone(), control_recv).instrument(span.clone()),
    );
    tokio::spawn(stream_acceptor(inner.clone(), rank, conn.clone()).instrument(span.clone()));
    tokio::spawn(connection_watcher(inner.clone(), rank, conn, generation).instrument(span));
}

async fn control_writer(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut rx: mpsc::UnboundedReceiver<FabricControl>,
) {
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = conn.closed() => return,
        };
        if send
            .write_chunk(frame::encode_delimited(&msg))
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn control_reader(
    inner: Arc<Inner>,
    rank: usize,
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
) {
    let Some(Some(slot)) = inner.peers.get(rank) else {
        return;
    };
    loop {
        match frame::read_delimited::<FabricControl>(&mut recv, "control message", MAX_CONTROL_LEN)
            .await
        {
            Ok(Some(FabricControl {
                kind: Some(ControlKind::TransferDone(id)),
            })) => forget_pending(slot, id),
            Ok(Some(FabricControl { kind: None })) => {
                let e = protocol_close(&inner, &conn, "control message without a kind");
                warn!(peer = rank, "{e}");
                return;
            }
            Ok(None) => return,
            Err(FrameError::Read { .. }) => return,
            Err(e) => {
                let e = protocol_close(&inner, &conn, &e.to_string());
                warn!(peer = rank, "{e}");
                return;
            }
        }
    }
}

async fn connection_watcher(
    inner: Arc<Inner>,
    rank: usize,
    conn: quinn::Connection,
    generation: u64,
) {
    let Some(Some(slot)) = inner.peers.get(rank) else {
        return;
    };
    let reason = conn.closed().await;
    if inner.shutdown.is_cancelled() {
        return;
    }
    let replaced = matches!(&reason, quinn::ConnectionError::LocallyClosed)
        && slot.link.borrow().generation != generation;
    if !replaced {
        bump(&inner.stats.connections_lost, 1);
        // A pair the collectives did not use for an idle timeout (there is no keep-alive, see
        // `config`) times out by design and is dialled again: not worth a warning unless a
        // transfer to the peer was in flight.
        let idle = matches!(&reason, quinn::ConnectionError::TimedOut)
            && lock(&slot.outgoing).pending.is_empty();
        if idle {
            debug!(peer = rank, "idle connection timed out; dialling again");
        } else {
            warn!(peer = rank, error = %reason, "connection lost");
        }
    }
    let left = peer_left(&reason);
    slot.link.send_modify(|l| {
        if l.generation == generation {
            l.conn = None;
            l.control = None;
            if left && l.failed.is_none() {
                l.failed = Some(format!("peer closed the fabric: {reason}"));
            }
        }
    });
    if left {
        inner.delivered.notify_waiters();
    }
}

/// Marks a peer as gone: its pending sends and receives fail.
fn mark_failed(inner: &Inner, slot: &PeerSlot, reason: String) {
    warn!(peer = slot.info.rank, %reason, "peer unreachable; giving up on it");
    slot.link.send_modify(|l| {
        if l.failed.is_none() {
            l.failed = Some(reason);
        }
    });
    inner.delivered.notify_waiters();
}

/// Gives up on a peer that stays without a connection for longer than allowed.
async fn watchdog(inner: Arc<Inner>, rank: usize) {
    let Some(Some(slot)) = inner.peers.get(rank) else {
        return;
    };
    let mut rx = slot.link.subscribe();
    loop {
        // Wait for the connection to go away (after the first one came up).
        let down = tokio::select! {
            r = rx.wait_for(|l| (l.generation > 0 && l.conn.is_none()) || l.failed.is_some()) => r.map(|l| l.failed.is_some()),
            _ = inner.shutdown.cancelled() => return,
        };
        match down {
            Ok(false) => {}
            _ => return,
        }
        let back = tokio::time::timeout(
            inner.give_up_after,
            rx.wait_for(|l| l.conn.is_some() || l.failed.is_some()),
        );
        tokio::select! {
            r = back => if r.is_err() {
                mark_failed(&inner, slot, format!("no connection for {:?}", inner.give_up_after));
                return;
            },
            _ = inner.shutdown.cancelled() => return,
        }
    }
}

async fn stream_acceptor(inner: Arc<Inner>, rank: usize, conn: quinn::Connection) {
    loop {
        let recv = tokio::select! {
            r = conn.accept_uni() => match r { Ok(r) => r, Err(_) => return },
            _ = inner.shutdown.cancelled() => return,
        };
        let inner2 = inner.clone();
        tokio::spawn(
            async move {
                if let Err(e) = receive_transfer(&inner2, rank, recv).await {
                    bump(&inner2.stats.protocol_errors, 1);
                    warn!(peer = rank, error = %e, "transfer stream refused");
                }
            }
            .in_current_span(),
        );
    }
}

/// Reads one transfer stream into its partial buffer; delivers the transfer when complete.
async fn receive_transfer(
    inner: &Arc<Inner>,
    rank: usize,
    mut recv: quinn::RecvStream,
) -> Result<(), FrameError> {
    let Some(Some(slot)) = inner.peers.get(rank) else {
        return Ok(());
    };
    let malformed = |recv: &mut quinn::RecvStream, e: FrameError| {
        let _ = recv.stop(stop_code::MALFORMED.into());
        e
    };
    let header =
        match frame::read_delimited::<TransferHeader>(&mut recv, "transfer header", MAX_HEADER_LEN)
            .await
        {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Err(malformed(
                    &mut recv,
                    FrameError::Truncated {
                        what: "transfer header",
                    },
                ));
            }
            Err(e @ FrameError::Read { .. }) => {
                debug!(peer = rank, error = %e, "transfer stream ended before its header");
                return Ok(());
            }
            Err(e) => return Err(malformed(&mut recv, e)),
        };
    if let Err(e) = frame::check_header(&header, rank, inner.max_transfer_bytes) {
        return Err(malformed(&mut recv, e));
    }
    let id = header.transfer_id;
    let token = inner.next_stream_token.fetch_add(1, Ordering::Relaxed);
    // Register as the stream feeding this transfer; learn how many bytes to skip.
    let mut skip = {
        let mut inc = lock(&slot.incoming);
        if inc.done.contains(id) {
            drop(inc);
            bump(&inner.stats.duplicates_ignored, 1);
            let _ = recv.stop(stop_code::ALREADY_HAVE.into());
            return Ok(());
        }
        let p = inc.partial.entry(id).or_insert_with(|| Partial {
            tag: header.tag,
            seq: header.seq,
            total: header.total_len,
            buf: BytesMut::with_capacity(header.total_len.min(64 << 20) as usize),
            owner: 0,
        });
        if (p.tag, p.seq, p.total) != (header.tag, header.seq, header.total_len) {
            let reason = format!(
                "transfer {id} resumed as (tag {}, seq {}, {} bytes), began as (tag {}, seq {}, {} bytes)",
                header.tag, header.seq, header.total_len, p.tag, p.seq, p.total
            );
            drop(inc);
            return Err(malformed(
                &mut recv,
                FrameError::Invalid {
                    what: "transfer header",
                    reason,
                },
            ));
        }
        let have = p.buf.len() as u64;
        if header.offset > have {
            let reason = format!(
                "transfer {id} resumes at offset {} but only {have} bytes are held",
                header.offset
            );
            drop(inc);
            return Err(malformed(
                &mut recv,
                FrameError::Invalid {
                    what: "transfer header",
                    reason,
                },
            ));
        }
        p.owner = token;
        have - header.offset
    };
    loop {
        let chunk = match recv.read_chunk(CHUNK, true).await {
            Ok(Some(c)) => c.bytes,
            Ok(None) => break,
            Err(e) => {
                debug!(peer = rank, transfer = id, error = %e, "transfer stream interrupted; the sender will resume");
                return Ok(());
            }
        };
        let mut data = chunk;
        if skip > 0 {
            let n = (skip as usize).min(data.len());
            let _ = data.split_to(n);
            skip -= n as u64;
            if data.is_empty() {
                continue;
            }
        }
        let mut inc = lock(&slot.incoming);
        let Some(p) = inc.partial.get_mut(&id) else {
            return Ok(()); // completed by another stream meanwhile
        };
        if p.owner != token {
            drop(inc);
            let _ = recv.stop(stop_code::ALREADY_HAVE.into());
            return Ok(()); // a newer stream took over
        }
        if p.buf.len() as u64 + data.len() as u64 > p.total {
            let reason = format!("transfer {id} carries more than its {} bytes", p.total);
            drop(inc);
            return Err(malformed(
                &mut recv,
                FrameError::Invalid {
                    what: "transfer payload",
                    reason,
                },
            ));
        }
        p.buf.extend_from_slice(&data);
        drop(inc);
        bump(&inner.stats.payload_bytes_received, data.len() as u64);
        inner
            .received_bytes
            .send_modify(|b| *b += data.len() as u64);
    }
    // End of stream: complete?
    let complete = {
        let mut inc = lock(&slot.incoming);
        let Some(p) = inc.partial.get(&id) else {
            return Ok(());
        };
        if p.owner != token {
            return Ok(());
        }
        if (p.buf.len() as u64) < p.total {
            let reason = format!(
                "transfer {id} ended after {} of {} bytes",
                p.buf.len(),
                p.total
            );
            inc.partial.remove(&id);
            return Err(FrameError::Invalid {
                what: "transfer payload",
                reason,
            });
        }
        let p = inc.partial.remove(&id);
        inc.done.insert(id);
        p
    };
    if let Some(p) = complete {
        {
            let mut boxes = lock(&inner.mailboxes);
            boxes
                .entry((rank, p.tag))
                .or_default()
                .ready
                .insert(p.seq, p.buf.freeze());
        }
        bump(&inner.stats.transfers_delivered, 1);
        inner.delivered.notify_waiters();
        if let Some(tx) = slot.link.borrow().control.clone() {
            let _ = tx.send(FabricControl {
                kind: Some(ControlKind::TransferDone(id)),
            });
        }
    }
    Ok(())
}
