//! The links of one node: peer address → link model, with per-link counters and metrics.
//!
//! The table is shared (`Arc<LinkTable>`) by the node's [`EmulatedSocket`](super::EmulatedSocket)
//! and whoever knows the peers (the transport mesh, a benchmark). Each link has its own lock,
//! so sends to different peers never contend; the map itself sits behind a read-write lock
//! that is only written when a peer is added or replaced.
//!
//! A destination with no link in the table is sent at once, without emulation, and counted
//! as `unmapped` (a warning is logged the first time): a missing link is a setup bug to see
//! in the stats, not a reason to lose traffic silently.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use netem_profiles::{DropCause, LinkModel};

use super::clock::EmuClock;
use super::encap::WireTrunk;
use super::scheduler::SchedulerMode;

/// Upper bound on the bytes one link may hold in its delay line by default (1 GiB): only
/// reached by links without a rate limit, whose model never queue-drops.
pub const DEFAULT_MAX_HELD_BYTES_PER_LINK: u64 = 1 << 30;

/// Slack added to a rate-limited link's hold limit above queue + rate×delay (covers rounding
/// and duplicates).
const HOLD_LIMIT_SLACK_BYTES: u64 = 256 * 1024;

/// Why the emulated socket dropped a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmuDropCause {
    /// The link model dropped it (random loss, outage or queue tail drop).
    Link(DropCause),
    /// The link's delay line already held its limit of bytes (see the module docs of
    /// [`emu`](super)); only links without a rate limit can reach it.
    HoldLimit,
    /// Larger than the emulated path carries ([`LinkTable::max_udp_payload`]).
    Oversize,
    /// The real socket refused the datagram when it was due (buffer full, or an OS error).
    SendError,
}

impl EmuDropCause {
    /// Lower-case label for metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Link(c) => c.as_str(),
            Self::HoldLimit => "hold_limit",
            Self::Oversize => "oversize",
            Self::SendError => "send_error",
        }
    }

    /// Every cause, in report order.
    pub const ALL: [Self; 8] = [
        Self::Link(DropCause::Loss),
        Self::Link(DropCause::Outage),
        Self::Link(DropCause::Queue),
        Self::HoldLimit,
        Self::Oversize,
        Self::SendError,
        Self::Link(DropCause::StoreFull),
        Self::Link(DropCause::InFlight),
    ];

    fn index(self) -> usize {
        match self {
            Self::Link(DropCause::Loss) => 0,
            Self::Link(DropCause::Outage) => 1,
            Self::Link(DropCause::Queue) => 2,
            Self::HoldLimit => 3,
            Self::Oversize => 4,
            Self::SendError => 5,
            Self::Link(DropCause::StoreFull) => 6,
            Self::Link(DropCause::InFlight) => 7,
        }
    }
}

/// Datagram counters, shared shape for a socket and for a link.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    offered_datagrams: AtomicU64,
    offered_bytes: AtomicU64,
    sent_datagrams: AtomicU64,
    sent_bytes: AtomicU64,
    duplicated: AtomicU64,
    dropped: [AtomicU64; 8],
    held_datagrams: AtomicU64,
    held_bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn offered(&self, len: usize) {
        self.offered_datagrams.fetch_add(1, Ordering::Relaxed);
        self.offered_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
    pub(crate) fn sent(&self, len: usize) {
        self.sent_datagrams.fetch_add(1, Ordering::Relaxed);
        self.sent_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
    pub(crate) fn dropped(&self, cause: EmuDropCause) {
        self.dropped[cause.index()].fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn duplicated(&self) {
        self.duplicated.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn hold(&self, len: usize) -> u64 {
        self.held_datagrams.fetch_add(1, Ordering::Relaxed);
        self.held_bytes.fetch_add(len as u64, Ordering::Relaxed) + len as u64
    }
    pub(crate) fn release(&self, len: usize) {
        self.held_datagrams.fetch_sub(1, Ordering::Relaxed);
        self.held_bytes.fetch_sub(len as u64, Ordering::Relaxed);
    }
    pub(crate) fn held_datagrams(&self) -> u64 {
        self.held_datagrams.load(Ordering::Relaxed)
    }
    pub(crate) fn held_bytes(&self) -> u64 {
        self.held_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> TrafficStats {
        let d = |c: EmuDropCause| self.dropped[c.index()].load(Ordering::Relaxed);
        TrafficStats {
            offered_datagrams: self.offered_datagrams.load(Ordering::Relaxed),
            offered_bytes: self.offered_bytes.load(Ordering::Relaxed),
            sent_datagrams: self.sent_datagrams.load(Ordering::Relaxed),
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            duplicated: self.duplicated.load(Ordering::Relaxed),
            dropped_loss: d(EmuDropCause::Link(DropCause::Loss)),
            dropped_outage: d(EmuDropCause::Link(DropCause::Outage)),
            dropped_queue: d(EmuDropCause::Link(DropCause::Queue)),
            dropped_hold_limit: d(EmuDropCause::HoldLimit),
            dropped_oversize: d(EmuDropCause::Oversize),
            dropped_send_error: d(EmuDropCause::SendError),
            dropped_store_full: d(EmuDropCause::Link(DropCause::StoreFull)),
            dropped_in_flight: d(EmuDropCause::Link(DropCause::InFlight)),
            held_datagrams: self.held_datagrams(),
            held_bytes: self.held_bytes(),
        }
    }
}

/// A snapshot of outgoing traffic counters (of one socket or one link).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TrafficStats {
    /// Datagrams handed to the socket by quinn (or the caller).
    pub offered_datagrams: u64,
    /// Their bytes (UDP payload).
    pub offered_bytes: u64,
    /// Datagrams written to the real socket (duplicates included).
    pub sent_datagrams: u64,
    /// Their bytes.
    pub sent_bytes: u64,
    /// Extra copies the link model asked for.
    pub duplicated: u64,
    /// Dropped: random loss.
    pub dropped_loss: u64,
    /// Dropped: the link was down.
    pub dropped_outage: u64,
    /// Dropped: the link's queue was full.
    pub dropped_queue: u64,
    /// Dropped: the delay line's byte limit.
    pub dropped_hold_limit: u64,
    /// Dropped: larger than the emulated MTU.
    pub dropped_oversize: u64,
    /// Dropped: the real socket refused it when due.
    pub dropped_send_error: u64,
    /// Dropped: a store-and-forward link's store was full while it was down.
    pub dropped_store_full: u64,
    /// Dropped: a store-and-forward link went down while the datagram propagated.
    pub dropped_in_flight: u64,
    /// Datagrams waiting in the delay line now.
    pub held_datagrams: u64,
    /// Their bytes.
    pub held_bytes: u64,
}

impl TrafficStats {
    /// Adds `other`'s counters to these (the traffic of several links as one).
    pub fn add(&mut self, other: &Self) {
        let Self {
            offered_datagrams,
            offered_bytes,
            sent_datagrams,
            sent_bytes,
            duplicated,
            dropped_loss,
            dropped_outage,
            dropped_queue,
            dropped_hold_limit,
            dropped_oversize,
            dropped_send_error,
            dropped_store_full,
            dropped_in_flight,
            held_datagrams,
            held_bytes,
        } = other;
        self.offered_datagrams += offered_datagrams;
        self.offered_bytes += offered_bytes;
        self.sent_datagrams += sent_datagrams;
        self.sent_bytes += sent_bytes;
        self.duplicated += duplicated;
        self.dropped_loss += dropped_loss;
        self.dropped_outage += dropped_outage;
        self.dropped_queue += dropped_queue;
        self.dropped_hold_limit += dropped_hold_limit;
        self.dropped_oversize += dropped_oversize;
        self.dropped_send_error += dropped_send_error;
        self.dropped_store_full += dropped_store_full;
        self.dropped_in_flight += dropped_in_flight;
        self.held_datagrams += held_datagrams;
        self.held_bytes += held_bytes;
    }

    /// All drops, whatever the cause.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_loss
            + self.dropped_outage
            + self.dropped_queue
            + self.dropped_hold_limit
            + self.dropped_oversize
            + self.dropped_send_error
            + self.dropped_store_full
            + self.dropped_in_flight
    }
}

/// Handles into the global `metrics` recorder for one link (registered when the link is
/// added, so install the recorder before building the table).
#[derive(Debug)]
struct LinkMetrics {
    sent_datagrams: metrics::Counter,
    sent_bytes: metrics::Counter,
    dropped: [metrics::Counter; 8],
    queue_bytes: metrics::Gauge,
    held_datagrams: metrics::Gauge,
}

impl LinkMetrics {
    fn new(label: &str) -> Self {
        let link = label.to_string();
        let dropped = EmuDropCause::ALL.map(|c| {
            metrics::counter!("spacefabric_emu_datagrams_dropped_total",
                "link" => link.clone(), "cause" => c.as_str())
        });
        Self {
            sent_datagrams: metrics::counter!("spacefabric_emu_datagrams_sent_total", "link" => link.clone()),
            sent_bytes: metrics::counter!("spacefabric_emu_bytes_sent_total", "link" => link.clone()),
            dropped,
            queue_bytes: metrics::gauge!("spacefabric_emu_queue_bytes", "link" => link.clone()),
            held_datagrams: metrics::gauge!("spacefabric_emu_held_datagrams", "link" => link),
        }
    }
}

/// Registers the descriptions of the emulator's metrics with the global recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "spacefabric_emu_datagrams_sent_total",
        "Datagrams written to the real socket after emulation, per link"
    );
    metrics::describe_counter!(
        "spacefabric_emu_bytes_sent_total",
        metrics::Unit::Bytes,
        "UDP payload bytes written to the real socket after emulation, per link"
    );
    metrics::describe_counter!(
        "spacefabric_emu_datagrams_dropped_total",
        "Datagrams dropped by the emulated link, per link and cause (loss, outage, queue, hold_limit, oversize, send_error, store_full, in_flight)"
    );
    metrics::describe_gauge!(
        "spacefabric_emu_queue_bytes",
        metrics::Unit::Bytes,
        "Bytes waiting for serialisation at the link's rate (sampled at each send)"
    );
    metrics::describe_gauge!(
        "spacefabric_emu_held_datagrams",
        "Datagrams held in the delay line (queued or propagating), per link"
    );
}

/// One directed link from this node to one peer.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) label: String,
    model: Mutex<LinkModel>,
    pub(crate) hold_limit_bytes: u64,
    pub(crate) counters: Counters,
    metrics: LinkMetrics,
    /// For a site pair routed over relays: the hops, each a shared link of its own, applied
    /// one after the other (this link's own model is then the path's summary, unused for
    /// datagrams). Empty for a link that is one hop.
    pub(crate) hops: Box<[Arc<Self>]>,
}

impl Link {
    pub(crate) fn new(label: String, model: LinkModel, max_held: u64) -> Self {
        let spec = model.spec();
        let hold_limit_bytes = match spec.rate_bps.filter(|&r| r > 0) {
            Some(bps) => {
                let reach = max_delay(spec)
                    + spec
                        .jitter
                        .map(|j| j.amount.mul_f64(netem_profiles::JITTER_CAP))
                        .unwrap_or_default();
                let in_flight = (bps as f64 / 8.0 * reach.as_secs_f64()).ceil() as u64;
                // Duplicates may double what is held.
                let factor = if spec.duplicate > 0.0 { 2 } else { 1 };
                // A store-and-forward link also holds its store while it is down.
                let store = match spec.outage_mode {
                    netem_profiles::OutageMode::Store { buffer_bytes, .. } => buffer_bytes,
                    netem_profiles::OutageMode::Drop => 0,
                };
                spec.queue_limit_bytes
                    .saturating_add(store)
                    .saturating_add(in_flight)
                    .saturating_mul(factor)
                    .saturating_add(HOLD_LIMIT_SLACK_BYTES)
                    .min(max_held)
            }
            None => spec.queue_limit_bytes.min(max_held),
        };
        let metrics = LinkMetrics::new(&label);
        Self {
            label,
            model: Mutex::new(model),
            hold_limit_bytes,
            counters: Counters::default(),
            metrics,
            hops: Box::new([]),
        }
    }

    /// A routed path over `hops` (each a link of its own, usually shared trunks), labelled
    /// `label`; `summary` is the path's summary model (only its spec is used, for reports).
    pub(crate) fn route(label: String, summary: LinkModel, hops: Vec<Arc<Self>>) -> Self {
        let mut link = Self::new(label, summary, 0);
        link.hops = hops.into_boxed_slice();
        link
    }

    /// Asks the model; returns the verdict and the serialisation backlog after it.
    pub(crate) fn verdict(&self, now: Duration, len: usize) -> netem_profiles::Verdict {
        let mut model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        let v = model.on_packet(now, len);
        self.metrics.queue_bytes.set(model.queued_bytes(now) as f64);
        v
    }

    /// Bytes waiting for serialisation at `now`.
    pub(crate) fn queued_bytes(&self, now: Duration) -> u64 {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .queued_bytes(now)
    }

    pub(crate) fn stats(&self) -> LinkStats {
        LinkStats {
            label: self.label.clone(),
            traffic: self.counters.snapshot(),
            hold_limit_bytes: self.hold_limit_bytes,
        }
    }

    pub(crate) fn record_sent(&self, len: usize) {
        self.counters.sent(len);
        self.metrics.sent_datagrams.increment(1);
        self.metrics.sent_bytes.increment(len as u64);
    }

    pub(crate) fn record_drop(&self, cause: EmuDropCause) {
        self.counters.dropped(cause);
        self.metrics.dropped[cause.index()].increment(1);
    }

    pub(crate) fn record_held_gauge(&self) {
        self.metrics
            .held_datagrams
            .set(self.counters.held_datagrams() as f64);
    }
}

/// The largest one-way delay the link can have: the fixed delay, or for a geometry-derived
/// link its fixed part plus the largest tabulated light time.
fn max_delay(spec: &netem_profiles::LinkSpec) -> Duration {
    match &spec.geometry {
        None => spec.delay,
        Some(g) => {
            let (_, hi) = g.table.delay_range_s();
            g.extra + Duration::try_from_secs_f64(hi).unwrap_or(spec.delay)
        }
    }
}

/// Per-link snapshot returned by [`LinkTable::link_stats`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkStats {
    /// The link's label (metrics label).
    pub label: String,
    /// Its traffic counters.
    pub traffic: TrafficStats,
    /// Bytes the delay line may hold before dropping with `hold_limit`.
    pub hold_limit_bytes: u64,
}

/// Peer address → emulated link, for one node.
#[derive(Debug)]
pub struct LinkTable {
    clock: EmuClock,
    passthrough: bool,
    mode: SchedulerMode,
    max_held_bytes_per_link: u64,
    max_udp_payload: usize,
    links: RwLock<HashMap<SocketAddr, Arc<Link>>>,
    /// The forwarders this table knows (see [`LinkTable::with_forwarder`]); the first is the
    /// default for [`LinkTable::set_peer_forwarded`]. What arrives from one is decapsulated.
    forwarders: Vec<SocketAddr>,
    /// Peers reached through a forwarder: the shared trunk each crosses, and the forwarder
    /// that carries that trunk.
    forwarded: RwLock<HashMap<SocketAddr, (WireTrunk, SocketAddr)>>,
}

impl LinkTable {
    /// An empty table on `clock`: add links with [`LinkTable::set_peer`].
    pub fn new(clock: EmuClock) -> Self {
        Self {
            clock,
            passthrough: false,
            mode: SchedulerMode::Auto,
            max_held_bytes_per_link: DEFAULT_MAX_HELD_BYTES_PER_LINK,
            max_udp_payload: super::MAX_UDP_PAYLOAD,
            links: RwLock::new(HashMap::new()),
            forwarders: Vec::new(),
            forwarded: RwLock::new(HashMap::new()),
        }
    }

    /// No emulation at all: every datagram goes straight to the real socket (links added
    /// with `set_peer` are ignored). The same socket code path, for overhead baselines.
    pub fn passthrough() -> Self {
        Self {
            passthrough: true,
            ..Self::new(EmuClock::starting_now())
        }
    }

    /// Chooses how held datagrams are timed (default [`SchedulerMode::Auto`]).
    pub fn with_scheduler_mode(mut self, mode: SchedulerMode) -> Self {
        self.mode = mode;
        self
    }

    /// Caps the bytes any one link may hold in its delay line (default
    /// [`DEFAULT_MAX_HELD_BYTES_PER_LINK`]).
    pub fn with_max_held_bytes_per_link(mut self, bytes: u64) -> Self {
        self.max_held_bytes_per_link = bytes;
        self
    }

    /// Sets the largest UDP payload the emulated paths carry (default
    /// [`MAX_UDP_PAYLOAD`](super::MAX_UDP_PAYLOAD), an Ethernet path); larger datagrams are
    /// dropped as `oversize`. A loopback host can carry up to 65,507 bytes: larger datagrams
    /// mean fewer per-datagram costs (syscalls, scheduling, QUIC packet handling) for the
    /// same bytes, while every datagram still takes its full length's serialisation time.
    pub fn with_max_udp_payload(mut self, bytes: usize) -> Self {
        self.max_udp_payload = bytes;
        self
    }

    /// Adds the forwarder at `addr`: datagrams of peers added with
    /// [`LinkTable::set_peer_forwarded`] (the first forwarder added) or
    /// [`LinkTable::set_peer_forwarded_via`] (this one named) go to it encapsulated
    /// ([`encap`](super::encap)), and what arrives from `addr` is decapsulated. The hop from
    /// this node to the forwarder is not emulated: the forwarder stands at the site's
    /// terminal, and applies the whole trunk itself. A cluster may run several forwarders,
    /// each carrying its own trunks (`netem_profiles::TrunkCarriers`).
    pub fn with_forwarder(mut self, addr: SocketAddr) -> Self {
        let addr = canonical(addr);
        if !self.forwarders.contains(&addr) {
            self.forwarders.push(addr);
        }
        self
    }

    /// The first forwarder this table sends shared-trunk traffic through, if any.
    pub fn forwarder(&self) -> Option<SocketAddr> {
        self.forwarders.first().copied()
    }

    /// Every forwarder this table knows, in the order added.
    pub fn forwarders(&self) -> &[SocketAddr] {
        &self.forwarders
    }

    /// Is `from` one of this table's forwarders?
    pub fn is_forwarder(&self, from: SocketAddr) -> bool {
        !self.forwarders.is_empty() && self.forwarders.contains(&canonical(from))
    }

    /// The largest UDP payload the emulated paths carry.
    pub fn max_udp_payload(&self) -> usize {
        self.max_udp_payload
    }

    /// The table's clock.
    pub fn clock(&self) -> &EmuClock {
        &self.clock
    }

    /// Is emulation off?
    pub fn is_passthrough(&self) -> bool {
        self.passthrough
    }

    /// The scheduler mode sockets bound on this table use.
    pub fn scheduler_mode(&self) -> SchedulerMode {
        self.mode
    }

    /// Emulates every datagram to `addr` through `link` (replacing any previous link to it;
    /// datagrams already held keep their delivery times). Labelled with the address.
    pub fn set_peer(&self, addr: SocketAddr, link: LinkModel) {
        self.set_peer_labelled(addr, link, addr.to_string());
    }

    /// As [`LinkTable::set_peer`], with the label used in metrics and stats (e.g.
    /// `"earth/0->moon/4"`).
    pub fn set_peer_labelled(&self, addr: SocketAddr, link: LinkModel, label: impl Into<String>) {
        let link = Arc::new(Link::new(label.into(), link, self.max_held_bytes_per_link));
        self.insert_link(addr, link);
    }

    /// Emulates every datagram to `addr` through the shared `trunk` (replacing any previous
    /// link to it). Other tables may hold the same trunk: their datagrams then queue in the
    /// same FIFO (see [`Trunk`](super::Trunk)).
    pub fn set_peer_trunk(&self, addr: SocketAddr, trunk: &super::Trunk) {
        self.insert_link(addr, trunk.0.clone());
    }

    fn insert_link(&self, addr: SocketAddr, link: Arc<Link>) {
        let addr = canonical(addr);
        self.forwarded
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&addr);
        self.links
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(addr, link);
    }

    /// Sends every datagram to `addr` through the first forwarder (see
    /// [`LinkTable::with_forwarder`]), which applies the shared `trunk` for every node that
    /// sends through it. Replaces any link to `addr` in this table; without a forwarder the
    /// datagrams go out unemulated, counted as unmapped (callers check [`Self::forwarder`]).
    pub fn set_peer_forwarded(&self, addr: SocketAddr, trunk: WireTrunk) {
        if let Some(via) = self.forwarder() {
            self.set_peer_forwarded_via(addr, trunk, via);
        } else {
            self.remove_peer(addr);
        }
    }

    /// As [`LinkTable::set_peer_forwarded`], through the forwarder at `via` (the one that
    /// carries `trunk`; added with [`LinkTable::with_forwarder`], so that what it delivers is
    /// decapsulated).
    pub fn set_peer_forwarded_via(&self, addr: SocketAddr, trunk: WireTrunk, via: SocketAddr) {
        let addr = canonical(addr);
        self.links
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&addr);
        self.forwarded
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(addr, (trunk, canonical(via)));
    }

    /// Removes the link to `addr` (its datagrams then go out unemulated, counted as unmapped).
    pub fn remove_peer(&self, addr: SocketAddr) {
        let addr = canonical(addr);
        self.links
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&addr);
        self.forwarded
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&addr);
    }

    /// The trunk datagrams to `addr` cross, and the forwarder carrying it, if `addr` is
    /// forwarded.
    pub(crate) fn forwarded(&self, addr: SocketAddr) -> Option<(WireTrunk, SocketAddr)> {
        let map = self
            .forwarded
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if map.is_empty() {
            return None;
        }
        map.get(&canonical(addr)).copied()
    }

    /// Counters of the link to `addr`, if there is one.
    pub fn link_stats(&self, addr: SocketAddr) -> Option<LinkStats> {
        self.get(addr).map(|l| l.stats())
    }

    pub(crate) fn get(&self, addr: SocketAddr) -> Option<Arc<Link>> {
        self.links
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&canonical(addr))
            .cloned()
    }
}

/// IPv4-mapped IPv6 addresses and plain IPv4 ones name the same peer.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netem_profiles::LinkSpec;

    #[test]
    fn mapped_and_plain_v4_addresses_find_the_same_link() {
        let table = LinkTable::new(EmuClock::new(tokio::time::Instant::now()));
        let v4: SocketAddr = "127.0.0.1:7500".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:7500".parse().unwrap();
        table.set_peer(mapped, LinkModel::new(LinkSpec::ideal(Duration::ZERO), 1));
        assert!(table.get(v4).is_some());
        assert_eq!(
            table.link_stats(v4).unwrap().label,
            "[::ffff:127.0.0.1]:7500"
        );
    }

    #[test]
    fn hold_limit_of_a_geometry_link_covers_its_light_time() {
        let profile = netem_profiles::Profile::from_file(
            &netem_profiles::shipped_profiles_dir().join("earth-moon-dsn.toml"),
        )
        .unwrap();
        let (e, m) = (
            profile.site_id("earth").unwrap(),
            profile.site_id("moon").unwrap(),
        );
        let spec = profile.link(e, m).clone();
        let rate = spec.rate_bps.unwrap();
        let light = spec.delay_at(Duration::ZERO);
        assert!(light > Duration::from_secs(1));
        let link = Link::new("x".into(), profile.link_model(e, m), u64::MAX);
        let in_flight = (rate as f64 / 8.0 * light.as_secs_f64()) as u64;
        assert!(link.hold_limit_bytes >= spec.queue_limit_bytes + in_flight);
    }

    #[test]
    fn hold_limit_is_queue_plus_bytes_in_flight() {
        let mut spec = LinkSpec::ideal(Duration::from_secs(1));
        spec.rate_bps = Some(8_000_000); // 1 MB/s
        spec.queue_limit_bytes = 100_000;
        let link = Link::new("x".into(), LinkModel::new(spec, 1), u64::MAX);
        assert_eq!(
            link.hold_limit_bytes,
            100_000 + 1_000_000 + HOLD_LIMIT_SLACK_BYTES
        );
        let ideal = Link::new(
            "y".into(),
            LinkModel::new(LinkSpec::ideal(Duration::ZERO), 1),
            1 << 20,
        );
        assert_eq!(ideal.hold_limit_bytes, 1 << 20);
    }
}
