//! The peer mesh: one mutual-TLS QUIC connection per pair of nodes, one stream per transfer,
//! mailboxes per (sender, tag) — what the collectives run on.
//!
//! * **Connections.** For each pair the lower rank dials the higher one, so there is exactly
//!   one connection per pair. Each side checks the other's certificate against the cluster CA
//!   and that it names the node the rank belongs to. The dialer opens a control stream and
//!   both sides exchange a `FabricHello` (rank + what each already received from the other).
//! * **Transfers.** [`Mesh::send`] opens a unidirectional stream carrying a length-delimited
//!   `TransferHeader` and the payload; the receiver keeps the pieces quinn reads (no copy) and
//!   puts the whole transfer in the mailbox (from, tag), in the sender's order for that tag;
//!   [`Mesh::recv_payload`] takes it from there as pieces, [`Mesh::recv`] as one buffer. `send`
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
//!   its [`TrunkShare`] (see [`Mesh::set_trunk_share`]). Node *processes* share a trunk
//!   through a forwarder instead ([`MeshConfig::forwarders`], `crate::forwarder`): datagrams
//!   to a peer across a shared trunk go encapsulated to the one forwarder that carries that
//!   trunk ([`TrunkCarriers`]), and it applies the trunk for all.
//! * **Bad input.** A malformed header or control message, a wrong rank, a stream that ends
//!   early close that stream (or that connection) with an error code and a log line; the
//!   process and the other connections carry on.
//!
//! # Rooms
//! This file holds [`Mesh`] (connect, send, receive, close) and the state its tasks share
//! (`Inner`, one `PeerSlot` per peer). Around it, one room per concern:
//! * `roster` — [`MeshConfig`], [`PeerInfo`], [`SocketKind`]: what the mesh is built from,
//!   and the check that the peers form ranks 0..n with us among them;
//! * `ledger` — sans-I/O bookkeeping of what was sent, what the receiver holds, what was
//!   received (complete and partial) and in which order it is delivered: the part that
//!   decides that nothing is lost or duplicated across reconnections, unit-tested on its own;
//! * `socket` — the socket quinn runs on (emulated, passthrough, plain UDP) and how a closed
//!   mesh frees its port;
//! * `handshake` — the hello exchange, one function for the dialling and the accepting side;
//! * `connection` — dialling, accepting, installing a connection and watching it;
//! * `send` — driving a transfer to the peer across reconnections, within the contact plan;
//! * `receive` — reading transfer streams into the ledger and delivering complete transfers;
//! * `payload` — [`Payload`], a received transfer as the pieces quinn delivered (no copy);
//! * `error` — [`TransportError`], and [`MeshConfigError`] for an inconsistent configuration.

mod connection;
mod error;
mod handshake;
mod ledger;
mod payload;
mod receive;
mod roster;
mod send;
mod socket;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use netem_profiles::{TrunkCarriers, TrunkId, TrunkPlan};

use crate::emu::encap::WireTrunk;
use crate::emu::{EmuClock, EmulatedSocket, TrunkSet};
use crate::transport::config::CcChoice;
use crate::transport::config::{LinkTuning, MAX_FABRIC_MTU, TrunkShare, tune_with_mtu};
use crate::transport::contact::{ContactPlan, SendClock};
use crate::transport::frame::{FabricControl, TransferHeader};
use crate::transport::pacing::SendPacer;
use crate::transport::tls::{self, TlsError};

pub use error::{MeshConfigError, TransportError};
pub use payload::Payload;
pub use roster::{MeshConfig, PeerInfo, SocketKind};

use connection::{accept_loop, dial_loop, watchdog};
use ledger::{Incoming, Mailbox, Outgoing, PeerHolds};
use receive::deliver_local;
use send::{SendPacing, contact_guard, drive_transfer};
use socket::{PeerLink, build_socket, release_port};

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

/// What a private link (one sender's own port: a link inside a site, or `per_pair`) holds
/// beyond its profile queue before it drops: the sender's socket buffer. A host blocks a
/// sender that overruns its own port instead of dropping its datagrams (a UDP socket waits
/// for send-buffer space), so a burst of up to quinn's minimum window
/// ([`MIN_WINDOW`](crate::transport::config::MIN_WINDOW), 2 MiB) plus a pacing burst waits
/// to be serialised rather than being lost. Shared trunks keep the profile's queue: their
/// tail drop is a router's, shared by every sender.
pub const SENDER_SOCKET_BUFFER_BYTES: u64 = 4 << 20;

/// Counters of one mesh (all since [`Mesh::connect`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Paces chunks to our share of the link's rate, first issued transfer first
    /// (link-aware, emulated links only).
    pacing: Option<SendPacing>,
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
    /// How long [`Mesh::close`] waits for peers to hold what we sent (10 s + 4 RTT of the
    /// slowest link).
    drain_limit: Duration,
    /// Said in every hello; a peer in another session is refused ([`MeshConfig::session`]).
    session: String,
    shutdown: CancellationToken,
    stats: StatCounters,
    received_bytes: watch::Sender<u64>,
    next_stream_token: AtomicU64,
    span: tracing::Span,
}

fn too_many_sites(profile: &netem_profiles::Profile) -> TransportError {
    MeshConfigError::TooManySites {
        profile: profile.name.clone(),
        sites: profile.sites.len(),
    }
    .into()
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
                    return Err(MeshConfigError::DuplicateRank { rank: p.rank }.into());
                }
                None => {
                    return Err(MeshConfigError::RankOutOfRange {
                        name: p.name.clone(),
                        rank: p.rank,
                        world_size,
                    }
                    .into());
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
            return Err(MeshConfigError::NotOurCertificate {
                rank: config.rank,
                listed: me.name.clone(),
                certificate: config.identity.name().to_string(),
            }
            .into());
        }
        let profile = &config.profile;
        let site_id = |p: &PeerInfo| {
            profile.site_id(&p.site).ok_or_else(|| {
                TransportError::from(MeshConfigError::UnknownSite {
                    rank: p.rank,
                    name: p.name.clone(),
                    site: p.site.clone(),
                    profile: profile.name.clone(),
                })
            })
        };
        let my_site = site_id(me)?;
        let site_of_rank = by_rank
            .iter()
            .map(|p| p.map_or(Ok(usize::MAX), site_id))
            .collect::<Result<Vec<_>, _>>()?;
        let trunk_plan = TrunkPlan::new(profile, &site_of_rank);
        // Which of the forwarders carries each shared trunk (the same table the controller
        // and every forwarder compute from the profile and the number of forwarders).
        let carriers = (!config.forwarders.is_empty())
            .then(|| TrunkCarriers::new(profile, config.forwarders.len()))
            .transpose()
            .map_err(MeshConfigError::Forwarders)?;
        let trunks = config
            .trunks
            .clone()
            .unwrap_or_else(|| Arc::new(TrunkSet::new(profile.clone())));
        if !(1200..=MAX_FABRIC_MTU).contains(&config.udp_payload) {
            return Err(MeshConfigError::UdpPayloadRange {
                udp_payload: config.udp_payload,
                max: MAX_FABRIC_MTU,
            }
            .into());
        }
        let longest_outage = profile.longest_outage();
        let client_crypto = Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(config.identity.client_crypto()?)
                .map_err(TlsError::from)?,
        );
        let server_crypto = Arc::new(
            quinn::crypto::rustls::QuicServerConfig::try_from(config.identity.server_crypto()?)
                .map_err(TlsError::from)?,
        );
        let mut peers = Vec::with_capacity(world_size);
        let mut by_addr = HashMap::new();
        let mut emulated_links = Vec::new();
        let mut slowest_rtt = Duration::ZERO;
        let mut private_trunk_copies = 0usize;
        for (rank, p) in by_rank.iter().enumerate() {
            let Some(p) = p else {
                return Err(MeshConfigError::MissingRank { rank, world_size }.into());
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
            let via = carriers
                .as_ref()
                .and_then(|c| c.carrier(trunk))
                .and_then(|i| config.forwarders.get(i).copied());
            let link = match (trunk, via) {
                (
                    TrunkId::Shared {
                        from_site,
                        to_site,
                        terminal,
                    },
                    Some(via),
                ) => PeerLink::Forwarded(
                    WireTrunk {
                        from_site: u16::try_from(from_site).map_err(|_| too_many_sites(profile))?,
                        to_site: u16::try_from(to_site).map_err(|_| too_many_sites(profile))?,
                        terminal,
                    },
                    via,
                ),
                _ => match trunks.trunk(trunk) {
                    Some(t) => {
                        if config.trunks.is_none() {
                            private_trunk_copies += 1;
                        }
                        PeerLink::Shared(t)
                    }
                    None => {
                        let mut model = profile.link_model(my_site, their_site);
                        model.extend_queue(SENDER_SOCKET_BUFFER_BYTES);
                        PeerLink::Private(Box::new(model))
                    }
                },
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
                return Err(MeshConfigError::DuplicateAddr { addr: p.addr }.into());
            }
            peers.push(Some(PeerSlot {
                info: (*p).clone(),
                trunk,
                share,
                plan: ContactPlan::new(out, back, contact_guard(tuning.rtt)),
                send_clock: Mutex::new(SendClock::new(out.rate_bps, tuning.mtu)),
                pacing: (config.socket == SocketKind::Emulated && config.cc == CcChoice::LinkAware)
                    .then(|| SendPacing::new(SendPacer::new(out.rate_bps, tuning.mtu))),
                tuning,
                client_config,
                server_config: Arc::new(server_config),
                link: watch::Sender::new(Link::default()),
                outgoing: Mutex::new(Outgoing::default()),
                incoming: Mutex::new(Incoming::default()),
            }));
        }

        if private_trunk_copies > 0 && config.socket == SocketKind::Emulated {
            warn!(
                rank = config.rank,
                site = %me.site,
                peers = private_trunk_copies,
                "no forwarder configured: this process applies its own copy of each shared trunk, \
                 so the cluster's results may exceed the profile's links (start a forwarder: \
                 `spacefabric-node forwarder`, and give the controller --forwarder)"
            );
        }
        let listen = config.listen.unwrap_or(me.addr);
        let max_payload = usize::from(config.udp_payload).max(crate::emu::MAX_UDP_PAYLOAD);
        let (socket, emulated) = build_socket(
            config.socket,
            listen,
            config.bound.as_deref(),
            config.clock,
            max_payload,
            &config.forwarders,
            emulated_links,
        )?;
        let mut endpoint_config = quinn::EndpointConfig::default();
        endpoint_config
            .max_udp_payload_size(u16::try_from(max_payload).unwrap_or(MAX_FABRIC_MTU))
            .map_err(MeshConfigError::UdpPayload)?;
        // quinn's own random choices (skipped packet numbers, hence ACK sizes) from the
        // scenario seed and the rank, so that a run on a virtual clock repeats exactly.
        endpoint_config.rng_seed(Some(socket::endpoint_rng_seed(profile.seed, config.rank)));
        // Incoming connections get their peer's transport config in `accept_with`; this
        // default only serves connections from unknown addresses until they are refused.
        let default_server = quinn::ServerConfig::with_crypto(server_crypto);
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(default_server),
            socket,
            if config.clock.dilation() > 1 {
                Arc::new(crate::transport::DilatedRuntime::new(config.clock))
                    as Arc<dyn quinn::Runtime>
            } else {
                Arc::new(quinn::TokioRuntime)
            },
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
            // Emulated spans; waited on the clock (`EmuClock::wall`).
            give_up_after,
            handshake_timeout: Duration::from_secs(10) + slowest_rtt * 4,
            drain_limit: Duration::from_secs(10) + slowest_rtt * 4,
            session: config.session.clone(),
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
        let deadline = Instant::now() + self.inner.clock.wall(timeout);
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
    /// First waits (up to [`Inner::drain_limit`]) until every peer still reachable holds what
    /// we sent it: [`Mesh::send`] returns once QUIC holds the bytes, and closing the connection
    /// then would discard what is still in flight, failing a slower peer's last receive.
    pub async fn close(self) {
        self.drain().await;
        self.inner.shutdown.cancel();
        self.inner
            .endpoint
            .close(close_code::SHUTDOWN.into(), b"mesh closed");
        // Give the peers a moment to hear the close on the real socket, then let it go.
        let _ = tokio::time::timeout(
            self.inner.clock.wall(Duration::from_secs(1)),
            self.inner.endpoint.wait_idle(),
        )
        .await;
        release_port(&self.inner);
    }

    /// Waits until every reachable peer holds every transfer we sent it, or the drain limit.
    async fn drain(&self) {
        let inner = &self.inner;
        let deadline = Instant::now() + inner.clock.wall(inner.drain_limit);
        for slot in inner.peers.iter().flatten() {
            loop {
                if slot.link.borrow().failed.is_some() {
                    break;
                }
                let Some((id, done)) = lock(&slot.outgoing).any_pending() else {
                    break;
                };
                let notified = done.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if !lock(&slot.outgoing).is_pending(id) {
                    continue;
                }
                let mut link = slot.link.subscribe();
                tokio::select! {
                    _ = notified => {}
                    _ = link.wait_for(|l| l.failed.is_some()) => {}
                    _ = tokio::time::sleep_until(deadline) => {
                        warn!(parent: &inner.span, peer = slot.info.rank, "closing with transfers the peer does not hold yet (drain limit reached)");
                        return;
                    }
                }
            }
        }
    }

    /// Sends `payload` to rank `to` under `tag`: one transfer on its own QUIC stream. Returns
    /// once QUIC holds all of it; the mesh keeps a copy until the peer holds the whole
    /// transfer, re-sending from where the peer stopped if the connection is lost.
    pub async fn send(&self, to: usize, tag: u64, payload: Bytes) -> Result<(), TransportError> {
        self.send_payload(to, tag, payload.into()).await
    }

    /// [`Mesh::send`] of a payload held in pieces (one received, say): the pieces go to QUIC
    /// as they are, without being joined.
    pub async fn send_payload(
        &self,
        to: usize,
        tag: u64,
        payload: Payload,
    ) -> Result<(), TransportError> {
        let inner = &self.inner;
        if to == inner.rank {
            deliver_local(inner, tag, payload);
            return Ok(());
        }
        let slot = peer_slot(inner, to)?;
        let (id, seq, done) = match &slot.pacing {
            // Joined in issue order (under the order's lock), so no later transfer can go
            // before this one has joined.
            Some(pacing) => pacing.open(|| lock(&slot.outgoing).open(tag)),
            None => lock(&slot.outgoing).open(tag),
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

    /// Receives the next transfer from rank `from` under `tag` (in the sender's order), as
    /// one buffer (joined from its pieces: one copy when it came in more than one; see
    /// [`Mesh::recv_payload`]).
    pub async fn recv(&self, from: usize, tag: u64) -> Result<Bytes, TransportError> {
        self.recv_payload(from, tag).await.map(Payload::into_bytes)
    }

    /// Receives the next transfer from rank `from` under `tag` (in the sender's order), as
    /// the pieces QUIC delivered it in: no copy of its bytes.
    pub async fn recv_payload(&self, from: usize, tag: u64) -> Result<Payload, TransportError> {
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
                if let Some(payload) = boxes.get_mut(&(from, tag)).and_then(Mailbox::take_next) {
                    return Ok(payload);
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
