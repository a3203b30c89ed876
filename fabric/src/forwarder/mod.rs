//! The forwarder: the process that carries a profile's shared trunks for a cluster of node
//! processes (ModelNet's core node; docs/ARCHITECTURE.md, "The space segment").
//!
//! Inside one process the nodes' sockets hold the same [`Trunk`] objects. Node *processes*
//! cannot share an object, so a node whose peer sits behind a shared trunk sends the datagram
//! encapsulated ([`encap`]) to the forwarder instead; the forwarder looks the trunk up in its
//! [`TrunkSet`] (built from the profile alone: the header names the sites and the terminal,
//! which each node computed with `netem_profiles::TrunkPlan`), passes the datagram through it
//! with the very code a node's socket uses ([`Path::emulate`]: the link model's verdict, the
//! hold limit, the delay line) and, when it is due, sends it to its true destination with the
//! source set to the node it came from. QUIC stays end to end: the forwarder never decrypts.
//!
//! A site pair the profile routes over relays (`[[routes]]`) is one trunk in the header; the
//! forwarder then *is* each relay: its `TrunkSet` hands out the route, whose hops its delay
//! line applies one after the other (a hop with `outage = "store"` holds datagrams while it
//! is down), the same code a node's socket runs in process.
//!
//! A datagram the forwarder cannot use — malformed header, a trunk the profile does not share
//! (unknown site, per-pair link, terminal out of range), an unusable destination — is counted
//! by reason and dropped; nothing a peer sends can make it panic.
//!
//! Several forwarders: a cluster may spread its trunks over N forwarder processes, each
//! started as shard I of N ([`Forwarder::with_shard`], `--shard I/N`). Each shared trunk has
//! exactly one carrier ([`TrunkCarriers`], from the profile and N alone, the table the nodes
//! use to pick where to send); a forwarder refuses the datagrams of trunks it does not carry
//! (reason `other_shard`), so a node or forwarder configured with another N shows up in
//! metrics and logs instead of silently doubling a trunk's capacity.
//!
//! Time is the scenario's [`EmuClock`] (the same epoch as the nodes', dilation included).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use netem_profiles::{CarriersError, LinkSharing, Profile, Shard, TrunkCarriers, TrunkId};
use spacefabric_proto::metrics_catalog::{MetricKind, MetricSpec};
use tokio_util::sync::CancellationToken;

use crate::emu::encap::{self, DecodeError, WireTrunk};
use crate::emu::{
    Counters, EmuClock, Fate, LinkStats, Outbound, Path, Scheduler, SchedulerMode, Trunk, TrunkSet,
    tokio_clock_is_paused,
};

/// Why the forwarder refused a datagram (each counted in [`ForwarderStats::rejected`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The header did not decode ([`DecodeError`]).
    Malformed(DecodeError),
    /// The header names a trunk the profile does not share.
    Trunk,
    /// The destination is unspecified or port 0.
    Destination,
    /// The trunk is carried by another forwarder of the cluster (see [`Forwarder::with_shard`]).
    OtherShard,
}

impl Rejection {
    /// Label for metrics: `short`, `magic`, `version`, `reserved`, `trunk`, `destination`,
    /// `other_shard`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Malformed(e) => e.as_str(),
            Self::Trunk => "trunk",
            Self::Destination => "destination",
            Self::OtherShard => "other_shard",
        }
    }

    /// Every label, in report order.
    pub const LABELS: [&'static str; 7] = [
        "short",
        "magic",
        "version",
        "reserved",
        "trunk",
        "destination",
        "other_shard",
    ];

    fn index(&self) -> usize {
        Self::LABELS
            .iter()
            .position(|l| *l == self.as_str())
            .unwrap_or(0)
    }
}

/// Counters of one forwarder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForwarderStats {
    /// Datagrams received from nodes.
    pub received_datagrams: u64,
    /// Refused datagrams per reason, in [`Rejection::LABELS`] order.
    pub rejected: [u64; 7],
    /// Which forwarder of how many this is (`0/1`: the only one, carrying every trunk).
    pub shard: String,
    /// The trunks this forwarder carries (labels as in `trunks`), sorted.
    pub carries: Vec<String>,
    /// Every trunk used so far (datagrams, bytes, drops, held), sorted by label. Bytes are
    /// the nodes' datagrams; the encapsulation header is not charged to the trunk.
    pub trunks: Vec<LinkStats>,
}

impl ForwarderStats {
    /// All refused datagrams.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }
}

/// The forwarder's own metric families (the trunks' are the emulator's
/// `spacefabric_emu_*{link="earth->moon#0"}`, see `emu::describe_metrics`).
pub const FORWARDER_METRICS: &[MetricSpec] = &[
    MetricSpec {
        name: "spacefabric_forwarder_datagrams_received_total",
        kind: MetricKind::Counter,
        help: "Encapsulated datagrams the forwarder received from nodes",
        initial_labels: &[],
    },
    MetricSpec {
        name: "spacefabric_forwarder_datagrams_rejected_total",
        kind: MetricKind::Counter,
        help: "Datagrams the forwarder refused and dropped, by reason (short, magic, version, reserved, trunk, destination, other_shard: a trunk another forwarder carries)",
        initial_labels: &[
            &[("reason", "short")],
            &[("reason", "magic")],
            &[("reason", "version")],
            &[("reason", "reserved")],
            &[("reason", "trunk")],
            &[("reason", "destination")],
            &[("reason", "other_shard")],
        ],
    },
];

/// Carries the shared trunks of one profile between node processes; see the
/// [module docs](self).
#[derive(Debug)]
pub struct Forwarder {
    io: tokio::net::UdpSocket,
    out: Arc<Outbound>,
    /// `None` only while dropping (see `Drop`).
    scheduler: Option<Arc<Scheduler>>,
    trunks: TrunkSet,
    clock: EmuClock,
    local: SocketAddr,
    max_udp_payload: usize,
    received: AtomicU64,
    rejected: [AtomicU64; 7],
    /// Which forwarder of how many this is.
    shard: Shard,
    /// Which forwarder carries each shared trunk.
    carriers: TrunkCarriers,
}

impl Forwarder {
    /// A forwarder for `profile`'s trunks on the already-bound `socket`, on the scenario
    /// clock `clock`. Must be called inside a tokio runtime. Under tokio's paused clock the
    /// delay line is a tokio task (as for a node's socket), else the precise thread.
    pub fn from_std(
        socket: std::net::UdpSocket,
        profile: Arc<Profile>,
        clock: EmuClock,
    ) -> io::Result<Self> {
        Self::with_mode(socket, profile, clock, SchedulerMode::Auto)
    }

    /// Binds `addr` and builds the forwarder on it (see [`Forwarder::from_std`]).
    pub fn bind(addr: SocketAddr, profile: Arc<Profile>, clock: EmuClock) -> io::Result<Self> {
        let socket = std::net::UdpSocket::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind UDP {addr}: {e}")))?;
        Self::from_std(socket, profile, clock)
    }

    /// As [`Forwarder::from_std`] with an explicit scheduler mode.
    pub fn with_mode(
        socket: std::net::UdpSocket,
        profile: Arc<Profile>,
        clock: EmuClock,
        mode: SchedulerMode,
    ) -> io::Result<Self> {
        {
            let s = socket2::SockRef::from(&socket);
            // Best effort, as for a node's socket: the kernel caps these.
            let _ = s.set_recv_buffer_size(16 << 20);
            let _ = s.set_send_buffer_size(16 << 20);
        }
        socket.set_nonblocking(true)?;
        let sender = socket.try_clone()?;
        let io = tokio::net::UdpSocket::from_std(socket)?;
        let local = io.local_addr()?;
        let scheduler = match mode {
            SchedulerMode::TokioTimer => Scheduler::tokio_timer(),
            SchedulerMode::Auto if tokio_clock_is_paused() => Scheduler::tokio_timer(),
            _ => Scheduler::precise()?,
        };
        Ok(Self {
            io,
            out: Arc::new(Outbound {
                socket: sender,
                counters: Counters::default(),
            }),
            scheduler: Some(scheduler),
            carriers: TrunkCarriers::new(&profile, 1).map_err(io::Error::other)?,
            shard: Shard::ONLY,
            trunks: TrunkSet::new(profile),
            clock,
            local,
            // The nodes enforce their path MTU; here only what fits a UDP datagram. Each
            // datagram takes its full length's serialisation time on the trunk.
            max_udp_payload: encap::MAX_INNER,
            received: AtomicU64::new(0),
            rejected: Default::default(),
        })
    }

    /// Makes this forwarder `shard.index` of `shard.count`: it carries only the trunks
    /// [`TrunkCarriers`] gives that index and refuses the others (`other_shard`). The default
    /// is [`Shard::ONLY`]: every trunk.
    pub fn with_shard(mut self, shard: Shard) -> Result<Self, CarriersError> {
        self.carriers = TrunkCarriers::new(self.trunks.profile(), shard.count)?;
        self.shard = shard;
        Ok(self)
    }

    /// Which forwarder of how many this is.
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// The shared trunks this forwarder carries, sorted.
    pub fn carried_trunks(&self) -> Vec<TrunkId> {
        self.carriers.trunks_of(self.shard.index)
    }

    /// A trunk's label as in the stats and metrics (`earth->moon#0`).
    pub fn trunk_label(&self, trunk: TrunkId) -> String {
        let sites = &self.trunks.profile().sites;
        match trunk {
            TrunkId::Shared {
                from_site,
                to_site,
                terminal,
            } => format!(
                "{}->{}#{terminal}",
                sites.get(from_site).map_or("?", |s| s.name.as_str()),
                sites.get(to_site).map_or("?", |s| s.name.as_str())
            ),
            TrunkId::Private { from_rank, to_rank } => format!("{from_rank}->{to_rank}"),
        }
    }

    /// The address the forwarder listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The profile whose trunks it carries.
    pub fn profile(&self) -> &Arc<Profile> {
        self.trunks.profile()
    }

    /// Counters so far.
    pub fn stats(&self) -> ForwarderStats {
        ForwarderStats {
            received_datagrams: self.received.load(Ordering::Relaxed),
            rejected: std::array::from_fn(|i| self.rejected[i].load(Ordering::Relaxed)),
            shard: self.shard.to_string(),
            carries: {
                let mut c: Vec<String> = self
                    .carried_trunks()
                    .into_iter()
                    .map(|t| self.trunk_label(t))
                    .collect();
                c.sort();
                c
            },
            trunks: self.trunks.stats(),
        }
    }

    /// The trunk `wire` names, if the profile shares it and this forwarder carries it.
    fn trunk(&self, wire: WireTrunk) -> Result<Trunk, Rejection> {
        let profile = self.trunks.profile();
        let (from, to) = (usize::from(wire.from_site), usize::from(wire.to_site));
        let n = profile.sites.len();
        if from >= n || to >= n {
            return Err(Rejection::Trunk);
        }
        let id = TrunkId::Shared {
            from_site: from,
            to_site: to,
            terminal: wire.terminal,
        };
        match profile.sharing(from, to) {
            LinkSharing::Shared { terminals } if wire.terminal < terminals => {}
            _ => return Err(Rejection::Trunk),
        }
        if self.carriers.carrier(id) != Some(self.shard.index) {
            return Err(Rejection::OtherShard);
        }
        self.trunks.trunk(id).ok_or(Rejection::Trunk)
    }

    /// Handles one datagram from `from`: decodes it, rewrites its source to `from`, and
    /// sends it through its trunk toward the destination. Returns what became of it.
    pub fn handle(&self, from: SocketAddr, datagram: &mut [u8]) -> Result<Fate, Rejection> {
        self.received.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("spacefabric_forwarder_datagrams_received_total").increment(1);
        let result = self.route(from, datagram);
        if let Err(r) = &result {
            self.rejected[r.index()].fetch_add(1, Ordering::Relaxed);
            metrics::counter!("spacefabric_forwarder_datagrams_rejected_total", "reason" => r.as_str())
                .increment(1);
            if *r == Rejection::OtherShard {
                // A configuration error (node and forwarder disagree on the forwarder list),
                // not noise: said once per 1,000 such datagrams.
                if self.rejected[r.index()].load(Ordering::Relaxed) % 1000 == 1 {
                    tracing::warn!(
                        %from,
                        shard = %self.shard,
                        "forwarder: refusing datagrams of a trunk another forwarder carries \
                         (the controller's --forwarder list and this --shard disagree?)"
                    );
                }
            } else {
                tracing::debug!(%from, reason = r.as_str(), "forwarder: dropping a datagram");
            }
        }
        result
    }

    fn route(&self, from: SocketAddr, datagram: &mut [u8]) -> Result<Fate, Rejection> {
        let header = encap::decode(datagram).map_err(Rejection::Malformed)?;
        if header.dst.ip().is_unspecified() || header.dst.port() == 0 {
            return Err(Rejection::Destination);
        }
        let trunk = self.trunk(header.trunk)?;
        let Some(scheduler) = self.scheduler.as_deref() else {
            return Ok(Fate::Dropped(crate::emu::EmuDropCause::SendError));
        };
        encap::set_source(datagram, from);
        let path = Path {
            link: &trunk.0,
            out: &self.out,
            scheduler,
            clock: &self.clock,
            max_udp_payload: self.max_udp_payload,
        };
        Ok(path.emulate(header.dst, datagram, datagram.len() - encap::HEADER_LEN))
    }

    /// Receives one datagram and handles it ([`Forwarder::handle`]); returns where it came
    /// from and what became of it. `buf` should hold 65,536 bytes.
    pub async fn recv_one(
        &self,
        buf: &mut [u8],
    ) -> io::Result<(SocketAddr, Result<Fate, Rejection>)> {
        loop {
            let (len, from) = match self.io.recv_from(buf).await {
                Ok(r) => r,
                // A previous send to a closed port can surface as a receive error on some
                // platforms: not fatal for a datagram relay.
                Err(e)
                    if e.kind() == io::ErrorKind::ConnectionRefused
                        || e.kind() == io::ErrorKind::ConnectionReset =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(datagram) = buf.get_mut(..len) else {
                continue;
            };
            return Ok((from, self.handle(from, datagram)));
        }
    }

    /// Receives and forwards datagrams until `shutdown` is cancelled. Datagrams already held
    /// for their trunk's delay still leave on time afterwards (precise mode) while the
    /// forwarder is alive.
    pub async fn run(&self, shutdown: CancellationToken) -> io::Result<()> {
        let mut buf = vec![0u8; 65_536];
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = self.recv_one(&mut buf) => { let _ = r?; }
            }
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        // Ends a tokio-timer driver: it holds the scheduler only while delivering, and finds
        // it gone when woken (as for a node's socket).
        if let Some(s) = self.scheduler.take() {
            let waker = s.waker();
            drop(s);
            waker.notify_one();
        }
    }
}
