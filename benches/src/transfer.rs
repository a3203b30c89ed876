//! `spacefabric-bench transfer`: one bulk transfer between two nodes over the emulated
//! cross-site link of a profile, per congestion controller.
//!
//! Two [`Mesh`]es run in this process on loopback, on emulated sockets: rank 0 at `--from`,
//! rank 1 at `--to`. For each controller:
//! * **goodput** — rank 0 sends `--size` bytes; goodput is payload bits over the receiving
//!   window (first byte to last byte at the receiver), compared with the link's configured
//!   rate. Completion time (send call to delivery) is shown next to its bound
//!   (size at the link rate + one-way delay).
//! * **outage** (with `--outage-for S`) — the same transfer on a fresh pair with an outage of
//!   the link (both directions) injected in the middle; reported: the time from link-up to
//!   the first new payload byte at the receiver (target ≤ 1 RTT + 50 ms; the physical
//!   minimum is the one-way delay), for each `--contact-aware` setting.
//!
//! * **sharing** (with `--flows N`, N ≥ 2) — N senders at `--from` and N receivers at `--to`
//!   (2N meshes sharing the profile's trunks), each sender sending `--size` bytes to its own
//!   receiver at once over the one shared trunk. Reported per controller: aggregate goodput
//!   (all payload bits / first to last byte at any receiver) against the trunk's rate, and
//!   Jain's fairness index over the flows' goodputs (each over its own receive window).
//!
//! * **relay** (a pair the profile routes over relays, e.g. lunar-farside-store) — after
//!   each goodput run, for every outage of a hop during the transfer: the time from the
//!   hop's return to the first new payload byte at the receiver, against the physical
//!   minimum (the delay of the path from that hop on), and what the hops stored or lost.
//!   `--start-at` places the transfer in the scenario (e.g. just before an occultation).
//!
//! `--clock real` (default) measures in wall-clock time, so the host's CPU is part of the
//! result; `--clock virtual` runs on tokio's paused clock (infinitely fast CPU), its scenario
//! clock dilated so tokio's 1 ms timer grain is 1 µs of emulated time: the protocol
//! alone.

use crate::byte_size::parse_nonzero_size;
use crate::progress_bar::ProgressBar;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use netem_profiles::{Profile, SiteId};
use serde::Serialize;
use spacefabric_fabric::emu::{EmuClock, TrunkSet};
use spacefabric_fabric::transport::{CcChoice, DevCa, Mesh, MeshConfig, PeerInfo};
use tokio::time::Instant;

use crate::clock::ClockMode;
use crate::host_share::{HostMark, HostSample, delay_line_stats, footer_line};

/// Flags of `spacefabric-bench transfer`.
#[derive(Debug, Args)]
pub(crate) struct TransferArgs {
    /// Profile: a TOML file, or the name of a shipped profile (lan, earth-moon, ...).
    #[arg(long, env = "SPACEFABRIC_PROFILE", default_value = crate::bench_defaults::PROFILE)]
    profile: String,
    /// Bytes to transfer (suffixes K, M, G = 2^10, 2^20, 2^30).
    #[arg(long, env = "SPACEFABRIC_SIZE", default_value = "256M", value_parser = parse_nonzero_size)]
    size: u64,
    /// Congestion controllers to compare, comma-separated.
    #[arg(long, env = "SPACEFABRIC_CC", value_delimiter = ',', default_value = "cubic,bbr,link-aware", value_parser = parse_cc)]
    cc: Vec<CcChoice>,
    /// Sending site (default: the profile's first site).
    #[arg(long, env = "SPACEFABRIC_FROM")]
    from: Option<String>,
    /// Receiving site (default: the profile's second site, or the first if there is one).
    #[arg(long, env = "SPACEFABRIC_TO")]
    to: Option<String>,
    /// Inject an outage of this many seconds (emulated time) on the link, in the middle of
    /// the transfer, and measure the recovery. 0 = no outage run.
    #[arg(long, env = "SPACEFABRIC_OUTAGE_FOR", default_value_t = 0.0)]
    outage_for: f64,
    /// When the injected outage starts, in seconds after the scenario epoch (default: half
    /// way through the predicted transfer).
    #[arg(long, env = "SPACEFABRIC_OUTAGE_AT")]
    outage_at: Option<f64>,
    /// Contact-aware sending in the outage runs: on, off, or both (comma-separated).
    #[arg(long, env = "SPACEFABRIC_CONTACT_AWARE", value_delimiter = ',', default_value = "on", value_parser = parse_on_off)]
    contact_aware: Vec<bool>,
    /// Concurrent flows over one shared trunk for the sharing runs (0 or 1 = no sharing run).
    #[arg(long, env = "SPACEFABRIC_FLOWS", default_value_t = 0)]
    flows: usize,
    /// Start each goodput run's transfer at this emulated time (seconds since the scenario
    /// epoch; the meshes connect first). 0 = at once.
    #[arg(long, env = "SPACEFABRIC_START_AT", default_value_t = 0.0)]
    start_at: f64,
    /// Skip the goodput runs (outage runs only).
    #[arg(long, env = "SPACEFABRIC_SKIP_GOODPUT", default_value_t = false)]
    skip_goodput: bool,
    /// Wall-clock time (real) or tokio's paused clock (virtual: protocol only, no CPU cost).
    #[arg(long, env = "SPACEFABRIC_CLOCK", value_enum, default_value_t = ClockMode::Real)]
    clock: ClockMode,
    /// Give up on a run after this many seconds of emulated time.
    #[arg(long, env = "SPACEFABRIC_TIMEOUT", default_value_t = 900.0)]
    timeout: f64,
    /// Write the results as JSON to this file.
    #[arg(long, env = "SPACEFABRIC_JSON")]
    json: Option<PathBuf>,
    /// Test hook: hold the delay line back this many µs before every delivery, as a starved
    /// host would (the goodput rows must then be marked host-bound).
    #[arg(long, hide = true)]
    starve_delay_line_us: Option<u64>,
}

fn parse_cc(s: &str) -> Result<CcChoice, String> {
    s.parse()
        .map_err(|e: spacefabric_fabric::transport::config::UnknownCc| e.to_string())
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.trim() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        other => Err(format!("expected on or off, got {other:?}")),
    }
}

/// Result of one goodput run.
#[derive(Debug, Clone, Serialize)]
struct GoodputRow {
    cc: String,
    bytes: u64,
    /// First to last payload byte at the receiver, s.
    receive_window_s: f64,
    goodput_mbps: f64,
    /// Goodput as a share of the configured rate.
    of_rate: f64,
    /// send() call to delivery in the mailbox, s.
    completion_s: f64,
    /// size at the configured rate + one-way delay, s.
    completion_bound_s: f64,
    lost_packets: u64,
    congestion_events: u64,
    final_cwnd: u64,
    rtt_ms: f64,
    dropped_queue: u64,
    dropped_loss: u64,
    /// Whether the host, not the link model, bounded the completion time (judged against
    /// `completion_bound_s`; see `host_share`).
    host: HostMark,
}

/// Result of one outage run.
#[derive(Debug, Clone, Serialize)]
struct OutageRow {
    cc: String,
    contact_aware: bool,
    outage_start_s: f64,
    outage_end_s: f64,
    /// Link-up to the first new payload byte at the receiver, ms.
    first_new_data_ms: Option<f64>,
    /// One-way delay: the physical minimum, ms.
    min_ms: f64,
    /// 1 RTT + 50 ms: the target, ms.
    target_ms: f64,
    completion_s: f64,
    dropped_outage_sender: u64,
    intact: bool,
}

/// One outage of one relay hop during a goodput run over a routed pair.
#[derive(Debug, Clone, Serialize)]
struct RelayRow {
    cc: String,
    /// `relay->farside`.
    hop: String,
    /// `drop` or `store N MiB`.
    outage_mode: String,
    outage_start_s: f64,
    outage_end_s: f64,
    /// Hop return to the first new payload byte at the receiver, ms.
    first_new_data_ms: Option<f64>,
    /// The delay of the path from this hop on at the return: the physical minimum, ms.
    min_ms: f64,
    /// Datagrams the hop stored past its buffer (dropped) and lost in flight.
    dropped_store_full: u64,
    dropped_in_flight: u64,
    dropped_outage: u64,
    intact: bool,
}

/// Result of one sharing run: `flows` concurrent transfers over one trunk.
#[derive(Debug, Clone, Serialize)]
struct SharingRow {
    cc: String,
    flows: usize,
    bytes_per_flow: u64,
    /// All payload bits / (last byte at any receiver - first byte at any receiver), Mbit/s.
    aggregate_mbps: f64,
    /// Aggregate as a share of the trunk's rate.
    of_trunk_rate: f64,
    /// Each flow's goodput over its own receive window, Mbit/s.
    flow_mbps: Vec<f64>,
    /// Jain's index over `flow_mbps`: 1 = equal shares, 1/flows = one flow takes all.
    jain: f64,
    /// Datagrams the trunk tail-dropped.
    trunk_queue_drops: u64,
    intact: bool,
}

/// Jain's fairness index of `x`: (Σx)² / (n·Σx²); 0 for no flows or all zero.
fn jain(x: &[f64]) -> f64 {
    let sum: f64 = x.iter().sum();
    let sq: f64 = x.iter().map(|v| v * v).sum();
    if x.is_empty() || sq == 0.0 {
        0.0
    } else {
        sum * sum / (x.len() as f64 * sq)
    }
}

/// `flows` senders at `from` each send `payload` to their own receiver at `to`, at once,
/// over the shared trunk.
async fn sharing_run(
    profile: Arc<Profile>,
    from: &str,
    to: &str,
    cc: CcChoice,
    flows: usize,
    payload: &Bytes,
    timeout: Duration,
) -> anyhow::Result<SharingRow> {
    let ca = DevCa::generate()?;
    let socks: Vec<std::net::UdpSocket> = (0..2 * flows)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let addrs: Vec<std::net::SocketAddr> = socks
        .iter()
        .map(|s| s.local_addr())
        .collect::<Result<_, _>>()?;
    drop(socks);
    let peers: Vec<PeerInfo> = (0..2 * flows)
        .map(|rank| PeerInfo {
            rank,
            name: if rank < flows {
                format!("sender-{rank}")
            } else {
                format!("receiver-{}", rank - flows)
            },
            addr: addrs[rank],
            site: if rank < flows { from } else { to }.to_string(),
        })
        .collect();
    let clock = EmuClock::new(Instant::now());
    let trunks = Arc::new(TrunkSet::new(profile.clone()));
    let mut connects = Vec::new();
    for p in &peers {
        let mut c = MeshConfig::new(
            p.rank,
            peers.clone(),
            profile.clone(),
            ca.issue(&p.name)?,
            clock,
        );
        c.cc = cc;
        c.trunks = Some(trunks.clone());
        connects.push(Mesh::connect(c));
    }
    let meshes = futures::future::try_join_all(connects).await?;
    let share = u32::try_from(flows).unwrap_or(u32::MAX);
    for (i, sender) in meshes.iter().take(flows).enumerate() {
        sender.set_trunk_share(flows + i, share);
    }
    let size = payload.len() as u64;
    let watchers: Vec<_> = meshes[flows..]
        .iter()
        .map(|m| watch_progress(m, clock, size, None))
        .collect();
    let runs = (0..flows).map(|i| {
        let (s, r) = (&meshes[i], &meshes[flows + i]);
        async move {
            let (sent, got) = tokio::join!(s.send(flows + i, 1, payload.clone()), r.recv(i, 1));
            sent?;
            anyhow::Ok(got? == *payload)
        }
    });
    let intact = tokio::time::timeout(timeout, futures::future::try_join_all(runs))
        .await
        .with_context(|| format!("the {flows} transfers did not finish within {timeout:?}"))??
        .into_iter()
        .all(|ok| ok);
    let mut first = Duration::MAX;
    let mut last = Duration::ZERO;
    let mut flow_mbps = Vec::new();
    for w in watchers {
        let steps = w.await?;
        let (Some(a), Some(b)) = (steps.first(), steps.last()) else {
            flow_mbps.push(0.0);
            continue;
        };
        first = first.min(a.0);
        last = last.max(b.0);
        let window = secs(b.0.saturating_sub(a.0));
        flow_mbps.push(if window > 0.0 {
            size as f64 * 8.0 / window / 1e6
        } else {
            0.0
        });
    }
    let span = secs(last.saturating_sub(first));
    let aggregate_mbps = if span > 0.0 {
        (size * flows as u64) as f64 * 8.0 / span / 1e6
    } else {
        0.0
    };
    let (fi, ti) = (
        profile.site_id(from).unwrap_or(0),
        profile.site_id(to).unwrap_or(0),
    );
    let trunk_rate = profile
        .link(fi, ti)
        .rate_bps
        .map_or(0.0, |r| r as f64 / 1e6);
    let trunk_queue_drops = trunks
        .stats()
        .iter()
        .find(|s| s.label == format!("{from}->{to}#0"))
        .map_or(0, |s| s.traffic.dropped_queue);
    for m in meshes {
        m.close().await;
    }
    Ok(SharingRow {
        cc: cc.to_string(),
        flows,
        bytes_per_flow: size,
        aggregate_mbps,
        of_trunk_rate: if trunk_rate > 0.0 {
            aggregate_mbps / trunk_rate
        } else {
            0.0
        },
        jain: jain(&flow_mbps),
        flow_mbps,
        trunk_queue_drops,
        intact,
    })
}

/// How many rows the host bounded.
#[derive(Debug, Default, Serialize)]
struct HostBoundRows {
    count: usize,
    judged: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    profile: String,
    from: String,
    to: String,
    bytes: u64,
    clock: ClockMode,
    one_way_ms: f64,
    rate_bps: Option<u64>,
    goodput: Vec<GoodputRow>,
    /// Goodput rows the host bounded, and rows judged.
    host_bound_rows: HostBoundRows,
    outage: Vec<OutageRow>,
    sharing: Vec<SharingRow>,
    relay: Vec<RelayRow>,
}

/// Finds the profile text: a file path, or a shipped profile's name (embedded in the binary).
fn profile_text(spec: &str) -> anyhow::Result<(String, String)> {
    netem_profiles::profile_text(spec).map_err(|e| anyhow::anyhow!("--profile {spec}: {e}"))
}

/// The profile text with one more outage window `[start, end)` (emulated seconds) on the
/// link between `a` and `b` (both directions).
fn with_outage(
    text: &str,
    origin: &str,
    a: &str,
    b: &str,
    start: f64,
    end: f64,
) -> anyhow::Result<String> {
    let mut doc: toml::Table = text
        .parse()
        .with_context(|| format!("{origin}: not TOML"))?;
    let scale = doc
        .get("time_scale")
        .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
        .unwrap_or(1.0);
    let links = doc
        .get_mut("links")
        .and_then(|l| l.as_array_mut())
        .with_context(|| format!("{origin}: no [[links]]"))?;
    let link = links
        .iter_mut()
        .filter_map(|l| l.as_table_mut())
        .find(|l| {
            let f = l.get("from").and_then(|v| v.as_str());
            let t = l.get("to").and_then(|v| v.as_str());
            (f == Some(a) && t == Some(b)) || (f == Some(b) && t == Some(a))
        })
        .with_context(|| format!("{origin}: no link between {a} and {b}"))?;
    if link.contains_key("reverse") {
        bail!(
            "{origin}: the link {a}-{b} has a [links.reverse] table; inject outages into a symmetric link"
        );
    }
    let outages = link
        .entry("outages")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .context("outages is not a table")?;
    let windows = outages
        .entry("windows")
        .or_insert_with(|| toml::Value::Array(Vec::new()))
        .as_array_mut()
        .context("outages.windows is not an array")?;
    let mut w = toml::Table::new();
    // Scenario seconds: the profile divides them by its time scale.
    w.insert("start_s".into(), toml::Value::Float(start * scale));
    w.insert("end_s".into(), toml::Value::Float(end * scale));
    windows.push(toml::Value::Table(w));
    Ok(toml::to_string(&doc)?)
}

struct Pair {
    sender: Mesh,
    receiver: Mesh,
    clock: EmuClock,
    /// The trunks (and relay hops) both meshes send through.
    trunks: Arc<TrunkSet>,
}

impl Pair {
    /// What the host has done to this pair's run so far (for `HostMark`).
    fn host_sample(&self) -> HostSample {
        let meshes = [&self.sender, &self.receiver];
        let ports = meshes
            .iter()
            .filter_map(|m| m.local_addr().ok())
            .map(|a| a.port())
            .collect();
        let sockets = meshes.iter().filter_map(|m| m.emulated_socket());
        HostSample::now(delay_line_stats(sockets.map(|s| s.as_ref())), &ports)
    }
}

async fn pair(
    profile: Arc<Profile>,
    from: &str,
    to: &str,
    cc: CcChoice,
    contact_aware: bool,
    dilation: u32,
) -> anyhow::Result<Pair> {
    let ca = DevCa::generate()?;
    let addrs: Vec<std::net::SocketAddr> = {
        let socks: Vec<std::net::UdpSocket> = (0..2)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()?;
        socks
            .iter()
            .map(|s| s.local_addr())
            .collect::<Result<_, _>>()?
    };
    let peers = vec![
        PeerInfo {
            rank: 0,
            name: "sender".into(),
            addr: addrs[0],
            site: from.into(),
        },
        PeerInfo {
            rank: 1,
            name: "receiver".into(),
            addr: addrs[1],
            site: to.into(),
        },
    ];
    let clock = EmuClock::dilated(Instant::now(), dilation);
    let trunks = Arc::new(TrunkSet::new(profile.clone()));
    let config = |rank: usize, name: &str| -> anyhow::Result<MeshConfig> {
        let mut c = MeshConfig::new(rank, peers.clone(), profile.clone(), ca.issue(name)?, clock);
        c.cc = cc;
        c.contact_aware = contact_aware;
        c.trunks = Some(trunks.clone());
        Ok(c)
    };
    let (s, r) = tokio::join!(
        Mesh::connect(config(0, "sender")?),
        Mesh::connect(config(1, "receiver")?)
    );
    Ok(Pair {
        sender: s?,
        receiver: r?,
        clock,
        trunks,
    })
}

/// Progress steps at the receiver: (emulated time, bytes so far); `bar`, when given, follows
/// the bytes on the terminal (cleared when the payload is in).
fn watch_progress(
    mesh: &Mesh,
    clock: EmuClock,
    total: u64,
    bar: Option<ProgressBar>,
) -> tokio::task::JoinHandle<Vec<(Duration, u64)>> {
    let mut rx = mesh.received_bytes();
    tokio::spawn(async move {
        let mut steps = Vec::new();
        while rx.changed().await.is_ok() {
            let b = *rx.borrow();
            steps.push((clock.now(), b));
            if let Some(bar) = &bar {
                bar.set(b, total, "received");
            }
            if b >= total {
                break;
            }
        }
        steps
    })
}

/// Sends the payload and waits for it at the receiver; returns (completion, intact).
async fn transfer(
    p: &Pair,
    payload: &Bytes,
    timeout: Duration,
) -> anyhow::Result<(Duration, bool)> {
    let start = p.clock.now();
    let send = p.sender.send(1, 1, payload.clone());
    let recv = p.receiver.recv(0, 1);
    let (sent, got) =
        tokio::time::timeout(p.clock.wall(timeout), async { tokio::join!(send, recv) })
            .await
            .with_context(|| format!("transfer did not finish within {timeout:?}"))?;
    sent?;
    let got = got?;
    Ok((p.clock.now() - start, got == *payload))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

async fn run_all(args: TransferArgs) -> anyhow::Result<Report> {
    let (text, origin) = profile_text(&args.profile)?;
    let profile = Profile::parse(&text, &origin).map_err(|e| anyhow::anyhow!("{e}"))?;
    let site = |name: &Option<String>, default: SiteId| -> anyhow::Result<String> {
        match name {
            Some(n) => profile
                .site_id(n)
                .map(|_| n.clone())
                .with_context(|| format!("site {n:?} is not in profile {}", profile.name)),
            None => Ok(profile.sites[default.min(profile.sites.len() - 1)]
                .name
                .clone()),
        }
    };
    let from = site(&args.from, 0)?;
    let to = site(&args.to, 1)?;
    let (fi, ti) = (
        profile.site_id(&from).unwrap_or(0),
        profile.site_id(&to).unwrap_or(0),
    );
    let link = profile.link(fi, ti).clone();
    let one_way = link.delay_at(Duration::ZERO);
    let rtt = profile.rtt(fi, ti, Duration::ZERO);
    let rate = link.rate_bps;
    let timeout = Duration::from_secs_f64(args.timeout);
    println!(
        "# transfer: profile {}, {from} -> {to}, {} bytes, one-way {:.1} ms, RTT {:.1} ms, rate {}, clock {}",
        profile.name,
        args.size,
        secs(one_way) * 1e3,
        secs(rtt) * 1e3,
        rate.map_or("unlimited".to_string(), |r| format!(
            "{:.1} Mbit/s",
            r as f64 / 1e6
        )),
        args.clock
    );
    let payload = Bytes::from(
        (0..args.size)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    );
    let profile = Arc::new(profile);
    let mut report = Report {
        profile: profile.name.clone(),
        from: from.clone(),
        to: to.clone(),
        bytes: args.size,
        clock: args.clock,
        one_way_ms: secs(one_way) * 1e3,
        rate_bps: rate,
        goodput: Vec::new(),
        host_bound_rows: HostBoundRows::default(),
        outage: Vec::new(),
        sharing: Vec::new(),
        relay: Vec::new(),
    };
    let ideal = rate.map_or(Duration::ZERO, |r| {
        Duration::from_secs_f64(args.size as f64 * 8.0 / r as f64)
    });

    if !args.skip_goodput {
        println!("#");
        println!(
            "# goodput: payload bits / (last - first byte at the receiver); completion: send() to delivery"
        );
        println!(
            "# {:<11} {:>10} {:>12} {:>8} {:>12} {:>9} {:>8} {:>7} {:>10} {:>8} {:>8} host",
            "cc",
            "window_s",
            "goodput_Mbps",
            "of_rate",
            "completion_s",
            "bound_s",
            "lost_pk",
            "cong_ev",
            "cwnd_B",
            "rtt_ms",
            "q_drops"
        );
        for &cc in &args.cc {
            let p = pair(profile.clone(), &from, &to, cc, true, args.clock.dilation()).await?;
            if args.start_at > 0.0 {
                let at = Duration::try_from_secs_f64(args.start_at)
                    .context("--start-at: not a time in seconds")?;
                tokio::time::sleep_until(p.clock.instant_at(at)).await;
            }
            let bar = ProgressBar::new(args.size, &format!("B of the {cc} transfer"));
            let steps = watch_progress(&p.receiver, p.clock, args.size, Some(bar));
            let sent_at = p.clock.now();
            let host_before = p.host_sample();
            let (completion, intact) = transfer(&p, &payload, timeout).await?;
            let host_after = p.host_sample();
            if !intact {
                bail!("{cc}: the payload arrived corrupted");
            }
            let steps = steps.await?;
            let relay_rows = relay_rows(
                &profile,
                (fi, ti),
                &p,
                cc,
                (sent_at, sent_at + completion),
                &steps,
                intact,
            );
            let window = match (steps.first(), steps.last()) {
                (Some(a), Some(b)) => b.0.saturating_sub(a.0),
                _ => Duration::ZERO,
            };
            let goodput = if window.is_zero() {
                0.0
            } else {
                args.size as f64 * 8.0 / secs(window)
            };
            let stats = p.sender.connection(1).map(|c| c.stats());
            let traffic = p
                .sender
                .emulated_socket()
                .map(|s| s.stats().traffic)
                .unwrap_or_default();
            let row = GoodputRow {
                cc: cc.to_string(),
                bytes: args.size,
                receive_window_s: secs(window),
                goodput_mbps: goodput / 1e6,
                of_rate: rate.map_or(0.0, |r| goodput / r as f64),
                completion_s: secs(completion),
                completion_bound_s: secs(ideal + one_way),
                lost_packets: stats.map_or(0, |s| s.path.lost_packets),
                congestion_events: stats.map_or(0, |s| s.path.congestion_events),
                final_cwnd: stats.map_or(0, |s| s.path.cwnd),
                rtt_ms: stats.map_or(0.0, |s| secs(s.path.rtt) * 1e3),
                dropped_queue: traffic.dropped_queue,
                dropped_loss: traffic.dropped_loss,
                host: HostMark::judge(
                    args.clock,
                    &host_before,
                    &host_after,
                    secs(completion),
                    Some(secs(ideal + one_way)),
                    one_way,
                ),
            };
            println!(
                "  {:<11} {:>10.2} {:>12.1} {:>7.1}% {:>12.2} {:>9.2} {:>8} {:>7} {:>10} {:>8.0} {:>8} {}",
                row.cc,
                row.receive_window_s,
                row.goodput_mbps,
                row.of_rate * 100.0,
                row.completion_s,
                row.completion_bound_s,
                row.lost_packets,
                row.congestion_events,
                row.final_cwnd,
                row.rtt_ms,
                row.dropped_queue,
                row.host.verdict.cell()
            );
            report.host_bound_rows.judged += 1;
            if row.host.verdict.host_bound {
                report.host_bound_rows.count += 1;
            }
            report.goodput.push(row);
            if !relay_rows.is_empty() {
                println!(
                    "#   relay: per hop outage during the transfer: hop return -> first new byte at the receiver, the first arriving at or after return + min (min = delay of the path from that hop on; earlier bytes crossed the hop before its outage)"
                );
                println!(
                    "#   {:<18} {:>27} {:>20} {:>17} {:>8} {:>10} {:>9} {:>9}",
                    "hop",
                    "mode",
                    "down_s",
                    "first_new_ms",
                    "min_ms",
                    "store_full",
                    "in_flight",
                    "outage"
                );
                for r in &relay_rows {
                    println!(
                        "    {:<18} {:>27} {:>20} {:>17} {:>8.1} {:>10} {:>9} {:>9}",
                        r.hop,
                        r.outage_mode,
                        format!("{:.3}-{:.3}", r.outage_start_s, r.outage_end_s),
                        r.first_new_data_ms
                            .map_or("-".to_string(), |ms| format!("{ms:.1}")),
                        r.min_ms,
                        r.dropped_store_full,
                        r.dropped_in_flight,
                        r.dropped_outage
                    );
                }
            }
            report.relay.extend(relay_rows);
            p.sender.close().await;
            p.receiver.close().await;
        }
        print!(
            "{}",
            footer_line(
                args.clock,
                report.host_bound_rows.count,
                report.host_bound_rows.judged
            )
        );
    }

    if args.flows > 1 {
        println!("#");
        println!(
            "# sharing: {} concurrent flows of {} bytes over the one {from}->{to} trunk; aggregate = all bits / (last - first byte at any receiver); Jain over per-flow goodput",
            args.flows, args.size
        );
        println!(
            "# {:<11} {:>14} {:>13} {:>6} {:>9} {:>7}  per-flow Mbit/s",
            "cc", "aggregate_Mbps", "of_trunk_rate", "jain", "q_drops", "intact"
        );
        for &cc in &args.cc {
            let row = sharing_run(
                profile.clone(),
                &from,
                &to,
                cc,
                args.flows,
                &payload,
                timeout,
            )
            .await?;
            let per_flow: Vec<String> = row.flow_mbps.iter().map(|x| format!("{x:.1}")).collect();
            println!(
                "  {:<11} {:>14.1} {:>12.1}% {:>6.3} {:>9} {:>7}  {}",
                row.cc,
                row.aggregate_mbps,
                row.of_trunk_rate * 100.0,
                row.jain,
                row.trunk_queue_drops,
                if row.intact { "yes" } else { "NO" },
                per_flow.join(" ")
            );
            report.sharing.push(row);
        }
    }

    if args.outage_for > 0.0 {
        // Connection setup takes about 1.5 RTT; the outage goes half way through the transfer.
        let start = args
            .outage_at
            .unwrap_or_else(|| secs(rtt) * 1.5 + 1.0 + secs(ideal) / 2.0);
        let end = start + args.outage_for;
        let text = with_outage(&text, &origin, &from, &to, start, end)?;
        let profile = Arc::new(Profile::parse(&text, &origin).map_err(|e| anyhow::anyhow!("{e}"))?);
        let min_ms = secs(one_way) * 1e3;
        let target_ms = secs(rtt) * 1e3 + 50.0;
        println!("#");
        println!(
            "# outage: link {from}<->{to} down [{start:.2} s, {end:.2} s); first new data after link-up (min = one-way {min_ms:.0} ms, target <= 1 RTT + 50 ms = {target_ms:.0} ms)"
        );
        println!(
            "# {:<11} {:>13} {:>20} {:>12} {:>14} {:>7}",
            "cc", "contact_aware", "first_new_data_ms", "completion_s", "outage_drops", "intact"
        );
        for &cc in &args.cc {
            for &aware in &args.contact_aware {
                let p = pair(
                    profile.clone(),
                    &from,
                    &to,
                    cc,
                    aware,
                    args.clock.dilation(),
                )
                .await?;
                let bar = ProgressBar::new(
                    args.size,
                    &format!("B of the {cc} outage transfer (contact-aware {aware})"),
                );
                let steps = watch_progress(&p.receiver, p.clock, args.size, Some(bar));
                let (completion, intact) = transfer(&p, &payload, timeout).await?;
                let steps = steps.await?;
                let up = Duration::from_secs_f64(end);
                let first_new = first_new_after_return(&steps, up, one_way);
                let traffic = p
                    .sender
                    .emulated_socket()
                    .map(|s| s.stats().traffic)
                    .unwrap_or_default();
                let row = OutageRow {
                    cc: cc.to_string(),
                    contact_aware: aware,
                    outage_start_s: start,
                    outage_end_s: end,
                    first_new_data_ms: first_new,
                    min_ms,
                    target_ms,
                    completion_s: secs(completion),
                    dropped_outage_sender: traffic.dropped_outage,
                    intact,
                };
                println!(
                    "  {:<11} {:>13} {:>20} {:>12.2} {:>14} {:>7}",
                    row.cc,
                    if aware { "on" } else { "off" },
                    first_new.map_or("-".to_string(), |ms| format!("{ms:.0}")),
                    row.completion_s,
                    row.dropped_outage_sender,
                    if intact { "yes" } else { "NO" }
                );
                report.outage.push(row);
                p.sender.close().await;
                p.receiver.close().await;
            }
        }
    }
    Ok(report)
}

/// Milliseconds from a link's (or hop's) return at `back` to the first payload byte at the
/// receiver that can have crossed it after the return, i.e. the first that arrives at or
/// after `back + min` (`min`: the delay from that link on). What arrives earlier crossed it
/// before the outage (still propagating, or held by a later hop), so counting it would report
/// less than the physical minimum. `steps`: (arrival, bytes so far), in arrival order.
fn first_new_after_return(steps: &[(Duration, u64)], back: Duration, min: Duration) -> Option<f64> {
    let earliest = back.saturating_add(min);
    steps
        .iter()
        .find(|(t, _)| *t >= earliest)
        .map(|(t, _)| secs(*t - back) * 1e3)
}

/// For a pair the profile routes over relays: one row per outage of a hop within the
/// transfer's span `(from, to)` (emulated time), with the first payload byte at the receiver
/// after the hop's return. Empty for a direct link.
fn relay_rows(
    profile: &Profile,
    (fi, ti): (SiteId, SiteId),
    p: &Pair,
    cc: CcChoice,
    (from, to): (Duration, Duration),
    steps: &[(Duration, u64)],
    intact: bool,
) -> Vec<RelayRow> {
    let Some(path) = profile.route(fi, ti) else {
        return Vec::new();
    };
    let stats = p.trunks.stats();
    let mut rows = Vec::new();
    for (i, w) in path.windows(2).enumerate() {
        let spec = profile.link(w[0], w[1]);
        let hop = format!("{}->{}", profile.sites[w[0]].name, profile.sites[w[1]].name);
        let label = format!("{hop}#0");
        let traffic = stats
            .iter()
            .find(|s| s.label == label)
            .map(|s| s.traffic)
            .unwrap_or_default();
        for outage in spec.outages.outages_between(from, to) {
            let back = outage.end;
            let min: Duration = path[i..]
                .windows(2)
                .map(|h| profile.link(h[0], h[1]).delay_at(back))
                .sum();
            let first_new = first_new_after_return(steps, back, min);
            rows.push(RelayRow {
                cc: cc.to_string(),
                hop: hop.clone(),
                outage_mode: spec.outage_mode.describe(),
                outage_start_s: secs(outage.start),
                outage_end_s: secs(back),
                first_new_data_ms: first_new,
                min_ms: secs(min) * 1e3,
                dropped_store_full: traffic.dropped_store_full,
                dropped_in_flight: traffic.dropped_in_flight,
                dropped_outage: traffic.dropped_outage,
                intact,
            });
        }
    }
    rows
}

/// Runs the benchmark and prints its tables.
pub(crate) fn run(args: TransferArgs) -> anyhow::Result<std::process::ExitCode> {
    if args.cc.is_empty() {
        bail!("--cc: name at least one controller");
    }
    let json = args.json.clone();
    if let Some(us) = args.starve_delay_line_us {
        spacefabric_fabric::emu::set_starvation(Duration::from_micros(us));
    }
    let runtime = args.clock.runtime()?;
    let report = runtime.block_on(run_all(args))?;
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("--json {}", path.display()))?;
    }
    let corrupted =
        report.outage.iter().any(|r| !r.intact) || report.sharing.iter().any(|r| !r.intact);
    // A transfer that arrived corrupted is a wrong result: 3 (spacefabric_cli::exit_code).
    Ok(if corrupted {
        spacefabric_cli::exit_code::ExitStatus::WrongResults.into()
    } else {
        std::process::ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_new_byte_after_a_return_is_never_sooner_than_the_path_allows() {
        let ms = Duration::from_millis;
        // Bytes still arriving from before the outage (at 10 ms and 900 ms after the return
        // at 5 s) do not count; the first that can have crossed after it arrives at 6.3 s.
        let steps = [(ms(4000), 1), (ms(5010), 2), (ms(5900), 3), (ms(6300), 4)];
        assert_eq!(
            first_new_after_return(&steps, ms(5000), ms(1000)),
            Some(1300.0)
        );
        // Exactly at return + min: the physical minimum.
        assert_eq!(
            first_new_after_return(&steps, ms(5000), ms(900)),
            Some(900.0)
        );
        assert_eq!(first_new_after_return(&steps, ms(6000), ms(1000)), None);
    }

    #[test]
    fn jain_index_is_one_for_equal_shares_and_one_over_n_for_a_hog() {
        assert!((jain(&[5.0, 5.0, 5.0, 5.0]) - 1.0).abs() < 1e-12);
        assert!((jain(&[20.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
        assert_eq!(jain(&[]), 0.0);
    }

    #[test]
    fn an_injected_outage_lands_on_the_link() {
        let (text, origin) = profile_text("earth-moon").unwrap();
        let text = with_outage(&text, &origin, "moon", "earth", 10.0, 30.0).unwrap();
        let p = Profile::parse(&text, &origin).unwrap();
        let (e, m) = (p.site_id("earth").unwrap(), p.site_id("moon").unwrap());
        for (a, b) in [(e, m), (m, e)] {
            let o = &p.link(a, b).outages;
            assert!(o.is_up(Duration::from_secs(9)));
            assert!(!o.is_up(Duration::from_secs(10)));
            assert!(o.is_up(Duration::from_secs(30)));
        }
        assert!(p.link(e, e).outages.is_always_up());
    }
}
