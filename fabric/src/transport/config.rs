//! quinn transport settings per link, derived from the profile: pure functions, no I/O.
//!
//! [`tune`] turns the two directions of a link (ours → peer, peer → ours) and the profile's
//! longest outage into a [`LinkTuning`], a plain value that tests can inspect, and
//! [`LinkTuning::transport_config`] turns that into a `quinn::TransportConfig`. The rules
//! (numbers and reasons in the research notes on quinn at a 2.56 s round trip):
//!
//! * `initial_rtt` = the link's round trip + 10 ms, so the first PTO (3 × initial RTT) does not fire
//!   before the first answer can arrive (quinn's default 333 ms causes spurious
//!   retransmissions on a 2.56 s path).
//! * Windows ≈ bandwidth-delay product. Flow control caps throughput at window / RTT, so the
//!   windows must reach the BDP; far above it slow start overshoots the link queue, and the
//!   burst loss leaves more than 1024 holes in a stream's reassembly buffer, which quinn
//!   answers by killing the connection ("too many gaps in stream buffer"). The BDP counts
//!   `RTT + slack` (a quarter of the RTT within 2–50 ms: delayed ACKs, pacing) and is in QUIC-packet bytes (the link's rate
//!   is on-the-wire bytes, 28 bytes of IP/UDP per datagram more). Windows never go below
//!   [`MIN_WINDOW`]; the congestion window never exceeds the propagation BDP + half the link's
//!   queue; flow-control windows are 1.25 × BDP with the link-aware controller and capped
//!   like the congestion window with Cubic and BBR (see [`tune`]). Receive windows follow the
//!   peer → us direction (what the peer sends us), send window and congestion window the
//!   us → peer direction. A link without a rate limit gets fixed windows
//!   ([`UNLIMITED_WINDOW`]).
//! * `max_idle_timeout` = max(30 s, 2 × longest outage + 8 × RTT), set on both sides (the
//!   negotiated value is the smaller), so a connection outlives every scheduled outage.
//! * No quinn keep-alive: across an outage it fills the congestion window with lost PINGs and
//!   poisons the RTT estimate with outage-long samples; liveness comes from the schedule.
//! * MTU fixed at [`FABRIC_MTU`] with path MTU discovery off: the emulated socket has no real
//!   path MTU and loopback carries 1452-byte datagrams. [`tune_with_mtu`] takes another
//!   datagram size (up to [`MAX_FABRIC_MTU`] on loopback: fewer datagrams for the same bytes,
//!   which is what bounds a CPU-starved host; each still serialises for its full length).
//! * Congestion control: quinn's Cubic or BBR (initial window = the BDP, so neither spends
//!   ~30 s of slow start at 2.56 s RTT), or [`LinkAwareConfig`]: a fixed window = scheduled
//!   rate × RTT that never shrinks on loss, as deep-space protocols do on dedicated links.
//! * Shared trunks: the link-aware window is the TRUNK's window; a connection uses
//!   window / share, where the share ([`TrunkShare`]) is the number of connections the plan
//!   puts on that trunk at once (the mesh starts it at the roster's count of node pairs on the
//!   trunk; a collective sets it from its schedule). So k connections together keep one
//!   trunk's BDP in flight instead of overflowing its queue k-fold. quinn paces at 1.25 ×
//!   window / RTT, so in a burst's first round trip the mesh also hands each connection its
//!   chunks at no more than its share of the rate ([`pacing`](super::pacing)).
//!   Cubic and BBR start at BDP / share and find their share by loss.

use std::any::Any;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use netem_profiles::{LinkSpec, UDP_IP_OVERHEAD_BYTES};
use quinn::congestion::{Controller, ControllerFactory};
use quinn::{IdleTimeout, TransportConfig, VarInt};

/// UDP payload size of every fabric datagram (quinn's `initial_mtu`; discovery is off).
pub const FABRIC_MTU: u16 = 1452;
/// Largest fabric datagram: the largest UDP payload an IPv4 loopback carries (65,535 bytes
/// minus the IPv4 and UDP headers).
pub const MAX_FABRIC_MTU: u16 = 65_507;
/// Most extra time counted on top of the propagation RTT when sizing windows: quinn's
/// delayed ACKs (up to 25 ms each way) and pacing bursts. The slack is a quarter of the RTT
/// within [`MIN_ACK_SLACK`, `ACK_SLACK`].
pub const ACK_SLACK: Duration = Duration::from_millis(50);
/// Least extra time counted on top of the propagation RTT (scheduling on a busy host).
pub const MIN_ACK_SLACK: Duration = Duration::from_millis(2);
/// Windows used on a link with no rate limit (in-process or LAN runs, CPU-bound).
pub const UNLIMITED_WINDOW: u64 = 16 * 1024 * 1024;
/// Smallest window we ever set, whatever the link: quinn's default stream window is
/// 1.25 MB; below ~2 MiB a low-delay link is window-bound by the host's scheduling delays.
pub const MIN_WINDOW: u64 = 2 * 1024 * 1024;
/// Lower bound of the idle timeout.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Smallest window a connection's share of a trunk is cut to, in datagrams of the
/// connection's MTU (so a heavily shared trunk still lets each connection make progress).
pub const MIN_SHARED_WINDOW_DATAGRAMS: u64 = 16;
/// Concurrent uni streams a peer may open (collectives pipeline many chunks).
pub const MAX_CONCURRENT_UNI_STREAMS: u32 = 1024;

/// Which congestion controller a link uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CcChoice {
    /// quinn's Cubic (its default), with the initial window raised to the BDP.
    Cubic,
    /// quinn's BBR (BBRv1 port, marked experimental by quinn), initial window = BDP.
    Bbr,
    /// Fixed window = scheduled rate × RTT, no reduction on loss ([`LinkAwareConfig`]).
    #[default]
    LinkAware,
}

impl CcChoice {
    /// Every choice, in the order benchmarks report them.
    pub const ALL: [Self; 3] = [Self::Cubic, Self::Bbr, Self::LinkAware];

    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cubic => "cubic",
            Self::Bbr => "bbr",
            Self::LinkAware => "link-aware",
        }
    }
}

impl fmt::Display for CcChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown congestion controller name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown congestion controller {0:?}: expected cubic, bbr or link-aware")]
pub struct UnknownCc(pub String);

impl FromStr for CcChoice {
    type Err = UnknownCc;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "cubic" => Ok(Self::Cubic),
            "bbr" => Ok(Self::Bbr),
            "link-aware" | "linkaware" | "link_aware" => Ok(Self::LinkAware),
            other => Err(UnknownCc(other.to_string())),
        }
    }
}

/// How many connections share the trunk a connection's datagrams cross (≥ 1): a handle the
/// link-aware controller reads at every window query, so the mesh can change it while the
/// connection runs. Clones share the value.
#[derive(Debug, Clone)]
pub struct TrunkShare(Arc<AtomicU32>);

impl TrunkShare {
    /// A share of `connections` (0 counts as 1).
    pub fn new(connections: u32) -> Self {
        Self(Arc::new(AtomicU32::new(connections.max(1))))
    }

    /// The connections sharing the trunk now.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed).max(1)
    }

    /// Sets the connections sharing the trunk (0 counts as 1).
    pub fn set(&self, connections: u32) {
        self.0.store(connections.max(1), Ordering::Relaxed);
    }

    /// `window` divided among the sharers, never below `floor`.
    pub fn of(&self, window: u64, floor: u64) -> u64 {
        (window / u64::from(self.get())).max(floor.min(window))
    }
}

impl Default for TrunkShare {
    fn default() -> Self {
        Self::new(1)
    }
}

/// Everything we set on a quinn connection for one link, as plain numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTuning {
    /// Propagation round trip: delay ours → peer + delay peer → ours.
    pub rtt: Duration,
    /// quinn's `initial_rtt`.
    pub initial_rtt: Duration,
    /// Rate of ours → peer in bit/s (`None`: unlimited).
    pub send_rate_bps: Option<u64>,
    /// Bytes in flight that fill ours → peer for one round trip (QUIC-packet bytes).
    pub send_bdp: Option<u64>,
    /// Bytes in flight that fill peer → ours for one round trip.
    pub recv_bdp: Option<u64>,
    /// Per-stream receive window (peer → ours).
    pub stream_receive_window: u64,
    /// Per-connection receive window (peer → ours).
    pub receive_window: u64,
    /// Bytes we may have unacknowledged towards the peer (ours → peer).
    pub send_window: u64,
    /// Congestion window: initial (Cubic, BBR) or fixed (link-aware).
    pub cc_window: u64,
    /// The controller.
    pub cc: CcChoice,
    /// `max_idle_timeout`.
    pub idle_timeout: Duration,
    /// UDP payload size.
    pub mtu: u16,
}

/// Bytes of QUIC packets in flight that keep a link of `rate_bps` busy for `rtt`.
fn bdp_bytes(rate_bps: u64, rtt: Duration, mtu: u16) -> u64 {
    let wire_bytes = rate_bps as f64 / 8.0 * rtt.as_secs_f64();
    let quic_share = f64::from(mtu) / (f64::from(mtu) + UDP_IP_OVERHEAD_BYTES as f64);
    (wire_bytes * quic_share).ceil() as u64
}

/// Caps a window so what exceeds the link's BDP fits in half its queue: more would be
/// tail-dropped in bursts.
fn queue_capped(window: u64, bdp: u64, queue_limit: u64) -> u64 {
    window
        .min(bdp.saturating_add(queue_limit / 2))
        .max(MIN_WINDOW)
}

/// Tunes one connection's side: `out` is the link from this node to the peer, `back` the
/// link from the peer to this node, `longest_outage` the profile's longest outage, `t` the
/// emulated time at which delays are read.
pub fn tune(
    out: &LinkSpec,
    back: &LinkSpec,
    longest_outage: Duration,
    cc: CcChoice,
    t: Duration,
) -> LinkTuning {
    tune_with_mtu(out, back, longest_outage, cc, t, FABRIC_MTU)
}

/// [`tune`] for datagrams of `mtu` bytes of UDP payload instead of [`FABRIC_MTU`].
pub fn tune_with_mtu(
    out: &LinkSpec,
    back: &LinkSpec,
    longest_outage: Duration,
    cc: CcChoice,
    t: Duration,
    mtu: u16,
) -> LinkTuning {
    let rtt = out.delay_at(t) + back.delay_at(t);
    let initial_rtt = (rtt + Duration::from_millis(10)).max(Duration::from_millis(20));
    let sizing_rtt = rtt + (rtt / 4).clamp(MIN_ACK_SLACK, ACK_SLACK);
    let send_bdp = out.rate_bps.map(|r| bdp_bytes(r, sizing_rtt, mtu));
    let recv_bdp = back.rate_bps.map(|r| bdp_bytes(r, sizing_rtt, mtu));
    // The queue cap counts from the propagation-only BDP.
    let send_cap = out.rate_bps.map(|r| bdp_bytes(r, rtt, mtu)).unwrap_or(0);
    let recv_cap = back.rate_bps.map(|r| bdp_bytes(r, rtt, mtu)).unwrap_or(0);

    // Flow control above the BDP: quinn grants new credit only after the application has
    // read about an eighth of the window, and the grant takes a one-way trip, so with a
    // window of exactly one BDP the sender idles part of every round trip (measured on
    // earth-moon with link-aware: 88.8 % of the link rate, 95.8 % with 1.25 × BDP). With the
    // link-aware controller the congestion window (capped) keeps the link queue safe, so
    // flow control may be 1.25 × BDP. Cubic and BBR grow their window past the BDP until loss;
    // for them flow control is the only cap, so it stays within BDP + half the queue
    // (at 1.25 × BDP Cubic's overshoot left more than 1024 holes in a stream and quinn killed
    // the connection: "too many gaps in stream buffer").
    let flow = |bdp: u64, cap: u64, queue: u64| match cc {
        CcChoice::LinkAware => (bdp + bdp / 4).max(MIN_WINDOW),
        CcChoice::Cubic | CcChoice::Bbr => queue_capped(bdp + bdp / 4, cap, queue),
    };
    let (cc_window, send_window) = match send_bdp {
        Some(bdp) => (
            queue_capped(bdp, send_cap, out.queue_limit_bytes),
            flow(bdp, send_cap, out.queue_limit_bytes),
        ),
        None => (UNLIMITED_WINDOW, UNLIMITED_WINDOW),
    };
    let stream_receive_window = match recv_bdp {
        Some(bdp) => flow(bdp, recv_cap, back.queue_limit_bytes),
        None => UNLIMITED_WINDOW,
    };
    let idle_timeout = (longest_outage * 2 + rtt * 8).max(MIN_IDLE_TIMEOUT);
    LinkTuning {
        rtt,
        initial_rtt,
        send_rate_bps: out.rate_bps,
        send_bdp,
        recv_bdp,
        stream_receive_window,
        receive_window: stream_receive_window,
        send_window,
        cc_window,
        cc,
        idle_timeout,
        mtu,
    }
}

/// [`LinkTuning`] as plain numbers in fixed units, for reports and JSON files.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkTuningReport {
    /// Propagation round trip, ms.
    pub rtt_ms: f64,
    /// quinn's `initial_rtt`, ms.
    pub initial_rtt_ms: f64,
    /// Rate towards the peer, bit/s (`None`: unlimited).
    pub send_rate_bps: Option<u64>,
    /// Bandwidth-delay product towards the peer, bytes.
    pub send_bdp_bytes: Option<u64>,
    /// Bandwidth-delay product from the peer, bytes.
    pub recv_bdp_bytes: Option<u64>,
    /// Per-stream receive window, bytes.
    pub stream_receive_window_bytes: u64,
    /// Per-connection receive window, bytes.
    pub receive_window_bytes: u64,
    /// Send window, bytes.
    pub send_window_bytes: u64,
    /// Congestion window (initial or fixed), bytes.
    pub cc_window_bytes: u64,
    /// Congestion controller: `cubic`, `bbr` or `link-aware`.
    pub cc: String,
    /// Idle timeout, s.
    pub idle_timeout_s: f64,
    /// UDP payload size, bytes.
    pub mtu: u16,
}

impl LinkTuning {
    /// The tuning in fixed units, for reports.
    pub fn report(&self) -> LinkTuningReport {
        LinkTuningReport {
            rtt_ms: self.rtt.as_secs_f64() * 1e3,
            initial_rtt_ms: self.initial_rtt.as_secs_f64() * 1e3,
            send_rate_bps: self.send_rate_bps,
            send_bdp_bytes: self.send_bdp,
            recv_bdp_bytes: self.recv_bdp,
            stream_receive_window_bytes: self.stream_receive_window,
            receive_window_bytes: self.receive_window,
            send_window_bytes: self.send_window,
            cc_window_bytes: self.cc_window,
            cc: self.cc.as_str().to_string(),
            idle_timeout_s: self.idle_timeout.as_secs_f64(),
            mtu: self.mtu,
        }
    }

    /// The quinn transport config for this link, owning it alone.
    pub fn transport_config(&self) -> TransportConfig {
        self.transport_config_shared(&TrunkShare::default())
    }

    /// The quinn transport config for a connection that shares its trunk as `share` says:
    /// the link-aware window is the trunk's window / share (read live); Cubic and BBR start
    /// at it.
    pub fn transport_config_shared(&self, share: &TrunkShare) -> TransportConfig {
        let floor = MIN_SHARED_WINDOW_DATAGRAMS * u64::from(self.mtu);
        let initial = share.of(self.cc_window, floor);
        let mut config = TransportConfig::default();
        config
            .initial_rtt(self.initial_rtt)
            .max_idle_timeout(Some(idle_timeout(self.idle_timeout)))
            .keep_alive_interval(None)
            .stream_receive_window(varint(self.stream_receive_window))
            .receive_window(varint(self.receive_window))
            .send_window(self.send_window)
            .max_concurrent_uni_streams(VarInt::from_u32(MAX_CONCURRENT_UNI_STREAMS))
            .max_concurrent_bidi_streams(VarInt::from_u32(4))
            .initial_mtu(self.mtu)
            .min_mtu(self.mtu.min(1200))
            .mtu_discovery_config(None)
            .datagram_receive_buffer_size(None);
        match self.cc {
            CcChoice::Cubic => {
                let mut cubic = quinn::congestion::CubicConfig::default();
                cubic.initial_window(initial);
                config.congestion_controller_factory(Arc::new(cubic));
            }
            CcChoice::Bbr => {
                let mut bbr = quinn::congestion::BbrConfig::default();
                bbr.initial_window(initial);
                config.congestion_controller_factory(Arc::new(bbr));
            }
            CcChoice::LinkAware => {
                config.congestion_controller_factory(Arc::new(LinkAwareConfig {
                    window: self.cc_window,
                    floor,
                    share: share.clone(),
                }));
            }
        }
        config
    }
}

fn varint(v: u64) -> VarInt {
    VarInt::from_u64(v).unwrap_or(VarInt::MAX)
}

fn idle_timeout(d: Duration) -> IdleTimeout {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    IdleTimeout::from(varint(ms))
}

/// Factory of the link-aware controller: a fixed congestion window, divided among the
/// connections sharing the trunk.
#[derive(Debug, Clone)]
pub struct LinkAwareConfig {
    /// The trunk's window in bytes (scheduled rate × RTT of the link).
    pub window: u64,
    /// Least window of one connection, bytes.
    pub floor: u64,
    /// Connections sharing the trunk.
    pub share: TrunkShare,
}

impl LinkAwareConfig {
    /// A link owned by one connection.
    pub fn dedicated(window: u64) -> Self {
        Self {
            window,
            floor: 0,
            share: TrunkShare::default(),
        }
    }
}

impl ControllerFactory for LinkAwareConfig {
    fn build(self: Arc<Self>, _now: Instant, _current_mtu: u16) -> Box<dyn Controller> {
        Box::new(LinkAwareController {
            window: self.window,
            floor: self.floor,
            share: self.share.clone(),
        })
    }
}

/// A congestion "controller" for a link of known rate: the window is the link's
/// bandwidth-delay product divided by the connections sharing its trunk, from the start.
/// Loss on such a link is noise or an outage, not congestion, so it does not shrink the
/// window (quinn still retransmits what was lost and paces at 1.25 × window / RTT).
#[derive(Debug, Clone)]
pub struct LinkAwareController {
    window: u64,
    floor: u64,
    share: TrunkShare,
}

impl Controller for LinkAwareController {
    fn on_congestion_event(
        &mut self,
        _now: Instant,
        _sent: Instant,
        _is_persistent_congestion: bool,
        _lost_bytes: u64,
    ) {
    }

    fn on_mtu_update(&mut self, _new_mtu: u16) {}

    fn window(&self) -> u64 {
        self.share.of(self.window, self.floor)
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn initial_window(&self) -> u64 {
        self.window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(delay_ms: u64, rate_mbps: Option<u64>, queue: u64) -> LinkSpec {
        let mut l = LinkSpec::ideal(Duration::from_millis(delay_ms));
        l.rate_bps = rate_mbps.map(|m| m * 1_000_000);
        l.queue_limit_bytes = queue;
        l
    }

    #[test]
    fn earth_moon_windows_sit_at_the_bdp() {
        let l = link(1280, Some(100), 64 << 20);
        let t = tune(&l, &l, Duration::ZERO, CcChoice::LinkAware, Duration::ZERO);
        assert_eq!(t.rtt, Duration::from_millis(2560));
        assert!(t.initial_rtt >= t.rtt && t.initial_rtt <= Duration::from_secs(3));
        // 100 Mbit/s × 2.61 s = 32.6 MB on the wire, 98 % of it QUIC packets.
        let bdp = t.send_bdp.unwrap();
        assert!((31_500_000..32_700_000).contains(&bdp), "{bdp}");
        // A LAN's window never drops below the floor.
        let lan = link(0, Some(10_000), 125_000);
        let t_lan = tune(
            &lan,
            &lan,
            Duration::ZERO,
            CcChoice::LinkAware,
            Duration::ZERO,
        );
        assert_eq!(t_lan.cc_window, MIN_WINDOW);
        assert_eq!(t.cc_window, bdp);
        assert!(t.send_window > bdp && t.send_window <= bdp + bdp / 4);
        assert!(t.stream_receive_window >= bdp && t.stream_receive_window <= bdp + bdp / 4);
        assert_eq!(t.receive_window, t.stream_receive_window);
        assert_eq!(t.idle_timeout, MIN_IDLE_TIMEOUT);
    }

    #[test]
    fn asymmetric_link_sizes_each_direction_by_its_own_rate() {
        // LLCD: 622 Mbit/s down (moon → earth), 20 Mbit/s up.
        let up = link(1280, Some(20), u64::MAX);
        let down = link(1280, Some(622), u64::MAX);
        let earth = tune(&up, &down, Duration::ZERO, CcChoice::Cubic, Duration::ZERO);
        assert!(earth.send_window < earth.stream_receive_window / 20);
        let moon = tune(&down, &up, Duration::ZERO, CcChoice::Cubic, Duration::ZERO);
        assert_eq!(moon.send_bdp, earth.recv_bdp);
        assert_eq!(moon.recv_bdp, earth.send_bdp);
    }

    #[test]
    fn a_small_queue_caps_the_window_excess() {
        let l = link(1280, Some(100), 1_000_000);
        let t = tune(&l, &l, Duration::ZERO, CcChoice::LinkAware, Duration::ZERO);
        // Propagation-only BDP: 100 Mbit/s × 2.56 s, QUIC share.
        let prop_bdp = bdp_bytes(100_000_000, Duration::from_millis(2560), FABRIC_MTU);
        assert_eq!(t.cc_window, prop_bdp + 500_000);
        // Link-aware: flow control a quarter above the BDP (the congestion window binds).
        let bdp = t.send_bdp.unwrap();
        assert_eq!(t.send_window, bdp + bdp / 4);
        assert_eq!(t.stream_receive_window, bdp + bdp / 4);
        // Cubic: flow control is the only cap, within the queue's tolerance.
        let t = tune(&l, &l, Duration::ZERO, CcChoice::Cubic, Duration::ZERO);
        assert_eq!(t.send_window, prop_bdp + 500_000);
        assert_eq!(t.stream_receive_window, prop_bdp + 500_000);
    }

    #[test]
    fn idle_timeout_outlives_twice_the_longest_outage() {
        let l = link(1280, Some(100), u64::MAX);
        let outage = Duration::from_secs(300);
        let t = tune(&l, &l, outage, CcChoice::Bbr, Duration::ZERO);
        assert!(t.idle_timeout >= outage * 2 + t.rtt * 4);
        assert!(t.idle_timeout <= outage * 2 + t.rtt * 10);
    }

    #[test]
    fn unlimited_links_get_fixed_windows_and_a_small_initial_rtt() {
        let l = LinkSpec::ideal(Duration::ZERO);
        let t = tune(&l, &l, Duration::ZERO, CcChoice::Cubic, Duration::ZERO);
        assert_eq!(t.send_window, UNLIMITED_WINDOW);
        assert_eq!(t.stream_receive_window, UNLIMITED_WINDOW);
        assert_eq!(t.initial_rtt, Duration::from_millis(20));
        let _ = t.transport_config();
    }

    #[test]
    fn link_aware_controller_never_shrinks() {
        let factory = Arc::new(LinkAwareConfig::dedicated(1_000_000));
        let now = Instant::now();
        let mut cc = factory.build(now, 1452);
        assert_eq!(cc.window(), 1_000_000);
        cc.on_congestion_event(now, now, true, 500_000);
        cc.on_mtu_update(1200);
        assert_eq!(cc.window(), 1_000_000);
        assert_eq!(cc.clone_box().initial_window(), 1_000_000);
    }

    #[test]
    fn link_aware_window_follows_the_trunk_share() {
        let share = TrunkShare::new(4);
        let factory = Arc::new(LinkAwareConfig {
            window: 8_000_000,
            floor: 100_000,
            share: share.clone(),
        });
        let cc = factory.build(Instant::now(), 1452);
        assert_eq!(cc.window(), 2_000_000);
        share.set(1);
        assert_eq!(cc.window(), 8_000_000);
        share.set(1000);
        assert_eq!(cc.window(), 100_000);
        share.set(0);
        assert_eq!(share.get(), 1);
    }

    #[test]
    fn cc_names_round_trip() {
        for cc in CcChoice::ALL {
            assert_eq!(cc.as_str().parse::<CcChoice>(), Ok(cc));
        }
        assert!("reno".parse::<CcChoice>().is_err());
    }
}
