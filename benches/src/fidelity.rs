//! `spacefabric-bench fidelity`: how faithfully the emulated socket reproduces a profile.
//!
//! N node endpoints run **in this one process**, each with its own `EmulatedSocket` on
//! 127.0.0.1 and its own link table (node i → node j uses the profile's link from i's site
//! to j's site; sites are assigned in contiguous blocks: with 8 nodes on earth-moon, nodes
//! 0–3 are on Earth and 4–7 on the Moon). Every node sends every other node timestamped probe
//! datagrams at a fixed interval plus background load (1200-byte datagrams, a fraction of the
//! link rate, within a process-wide budget), as raw UDP payloads through
//! `EmulatedSocket::send_traced`, which also returns the delivery time the link model
//! assigned. Receivers timestamp each probe when they read it.
//!
//! Per directed link class (earth→moon, earth→earth, ...) it reports: the configured one-way
//! delay; measured one-way latency p50/p99/p99.9 (includes serialisation and queueing behind
//! the load, as the model prescribes); the *error* — arrival time minus the arrival time the
//! model assigned, i.e. scheduler lateness + loopback + receiver wake-up — at p50/p99/p99.9;
//! configured vs offered vs delivered rate; configured vs measured random loss; datagrams
//! lost after the emulator let them go (should be 0); and scheduled vs observed outage edges.
//! HDR histogram V2 interval logs (1 s intervals, µs, tags `latency` and `error`) per link
//! class go to `--hdr-dir`; `--json` writes everything.
//!
//! `--through-forwarder` sends every node pair whose link is a shared trunk through the real
//! forwarder (`spacefabric_fabric::forwarder`, started in this process on its own UDP socket,
//! as a node-process cluster uses it): the trunk's verdict is the forwarder's, and the model
//! arrival is that verdict moved back to the instant the node sent the probe, so the error
//! includes the extra hop (node → forwarder, the forwarder's delay line, forwarder → node).

use crate::profile_flag::load_profile;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use netem_profiles::{
    DropCause, LinkModel, LinkSpec, LossModel, PeriodicOutage, Profile, SiteId, TrunkId, TrunkPlan,
};
use serde::Serialize;
use spacefabric_fabric::emu::encap::{self, WireTrunk};
use spacefabric_fabric::emu::{
    EmuClock, EmuDropCause, EmulatedSocket, Fate, LinkTable, SchedulerMode, SchedulerStats,
    TrafficStats,
};
use spacefabric_fabric::forwarder::{Forwarder, ForwarderStats};

use crate::clock::ClockMode;
use crate::host_share::{HostMark, HostSample, delay_line_stats, footer_line};
use spacefabric_cli::exit_code::UsageError;

const MAGIC: u32 = 0x5346_4944; // "SFID"
const KIND_PROBE: u8 = 1;
const KIND_LOAD: u8 = 2;
const PROBE_BYTES: usize = 64;
const LOAD_BYTES: usize = 1200;
const HEADER_BYTES: usize = 17;

/// Which delivery scheduler the sockets use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
pub(crate) enum SchedulerArg {
    /// Precise unless tokio's clock is paused (always precise here).
    Auto,
    /// The process-wide sleep-then-spin thread.
    Precise,
    /// tokio::time::sleep_until (1 ms granularity), for comparison.
    Tokio,
}

/// Flags of `spacefabric-bench fidelity`.
#[derive(Debug, Args)]
pub(crate) struct FidelityArgs {
    /// Profile: a TOML file, or the name of a shipped profile (lan, earth-moon, ...).
    #[arg(long, env = "SPACEFABRIC_PROFILE", default_value = crate::bench_defaults::PROFILE)]
    profile: String,
    /// Node endpoints (all in this process).
    #[arg(long, env = "SPACEFABRIC_NODES", default_value_t = crate::bench_defaults::NODES)]
    nodes: usize,
    /// Seconds of probing and load (delivery of what is in flight is awaited after).
    #[arg(long, env = "SPACEFABRIC_DURATION", default_value_t = 20.0)]
    duration: f64,
    /// Milliseconds between two probes on each directed node pair.
    #[arg(long, env = "SPACEFABRIC_PROBE_INTERVAL_MS", default_value_t = 5.0)]
    probe_interval_ms: f64,
    /// Background load per directed pair, as a fraction of the link's rate.
    #[arg(long, env = "SPACEFABRIC_LOAD_FRACTION", default_value_t = 0.5)]
    load_fraction: f64,
    /// Budget for the background load of the whole process, Mbit/s, split evenly over the
    /// directed pairs (a 2-core machine cannot offer every link its full rate).
    #[arg(long, env = "SPACEFABRIC_MAX_LOAD_MBPS", default_value_t = 100.0)]
    max_load_mbps: f64,
    /// Delivery scheduler of the emulated sockets.
    #[arg(
        long,
        env = "SPACEFABRIC_SCHEDULER",
        value_enum,
        default_value = "auto"
    )]
    scheduler: SchedulerArg,
    /// Clock: `real` (wall clock: what the emulator delivers on this host) or `virtual`
    /// (tokio's paused clock, one thread, tokio-timer delay line, scenario clock dilated so
    /// the timer grain is 1 µs: the error left is that grain, not the host).
    #[arg(long, env = "SPACEFABRIC_CLOCK", value_enum, default_value_t = ClockMode::Real)]
    clock: ClockMode,
    /// Time dilation K on the real clock (integer ≥ 1, default 1): the endpoints' emulated
    /// clock runs K times slower than the wall clock, as in a process cluster started with
    /// `--time-dilation K` (probing lasts `--duration` × K of wall time; the load's wall rate
    /// is 1/K of its emulated rate). Every latency and error reported is emulated time.
    #[arg(long, env = "SPACEFABRIC_TIME_DILATION", default_value = "1")]
    time_dilation: spacefabric_proto::time_dilation::TimeDilation,
    /// Spin window of the precise scheduler, µs (default: the library's).
    #[arg(long, env = "SPACEFABRIC_SPIN_WINDOW_US")]
    spin_window_us: Option<u64>,
    /// Add a periodic outage to every link between different sites: period in seconds
    /// (with --outage-duration-s and --outage-phase-s), to check outage edges.
    #[arg(long, env = "SPACEFABRIC_OUTAGE_PERIOD_S")]
    outage_period_s: Option<f64>,
    /// Length of the added outage, seconds.
    #[arg(long, env = "SPACEFABRIC_OUTAGE_DURATION_S", default_value_t = 2.0)]
    outage_duration_s: f64,
    /// Start of the first added outage, seconds.
    #[arg(long, env = "SPACEFABRIC_OUTAGE_PHASE_S", default_value_t = 5.0)]
    outage_phase_s: f64,
    /// Send every node pair whose link is a shared trunk through a forwarder (the real one,
    /// in this process, on its own UDP socket), as node processes do: measures the timing
    /// error the extra hop adds. Not with `--outage-period-s` (the forwarder applies the
    /// profile as written).
    #[arg(long, env = "SPACEFABRIC_THROUGH_FORWARDER")]
    through_forwarder: bool,
    /// Write the full results as JSON to this file.
    #[arg(long, env = "SPACEFABRIC_JSON")]
    json: Option<PathBuf>,
    /// Write HDR histogram V2 interval logs, one per link class, into this directory.
    #[arg(long, env = "SPACEFABRIC_HDR_DIR")]
    hdr_dir: Option<PathBuf>,
    /// Test hook: hold the delay line back this many µs before every delivery, as a starved
    /// host would (the rows must then be marked host-bound).
    #[arg(long, hide = true)]
    starve_delay_line_us: Option<u64>,
}

/// One row of the report: a directed site pair.
#[derive(Debug, Clone, Serialize)]
struct ClassReport {
    class: String,
    pairs: usize,
    configured_one_way_ms: f64,
    probes_sent: u64,
    probes_received: u64,
    latency_ms_p50: f64,
    latency_ms_p99: f64,
    latency_ms_p999: f64,
    error_ms_p50: f64,
    error_ms_p99: f64,
    error_ms_p999: f64,
    error_ms_max: f64,
    configured_rate_mbps: Option<f64>,
    offered_rate_mbps: f64,
    delivered_rate_mbps: f64,
    configured_loss: f64,
    measured_loss: f64,
    dropped_outage: u64,
    dropped_queue: u64,
    lost_after_release: u64,
    /// All datagrams (probes and load) on the class's links, from the link counters.
    link_traffic: TrafficStats,
    outages_scheduled: usize,
    outages_observed: usize,
    outage_edge_error_ms_max: Option<f64>,
    /// Whether the host, not the link model, bounded this class's timing: its p99 error more
    /// than 5 % of the configured delay with a host cause over the run (see `host_share`).
    host: Option<HostMark>,
}

/// How many rows the host bounded.
#[derive(Debug, Default, Serialize)]
struct HostBoundRows {
    count: usize,
    judged: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    note: &'static str,
    profile: String,
    nodes: usize,
    sites: Vec<String>,
    duration_s: f64,
    probe_interval_ms: f64,
    load_fraction: f64,
    max_load_mbps: f64,
    scheduler: SchedulerArg,
    clock: ClockMode,
    /// Dilation K of the scenario clock (the virtual clock's, or `--time-dilation`).
    time_dilation: u32,
    /// Shared trunks went through an in-process forwarder (`--through-forwarder`).
    through_forwarder: bool,
    /// What the forwarder received, refused and carried per trunk (`--through-forwarder`).
    forwarder: Option<ForwarderStats>,
    spin_window_us: f64,
    classes: Vec<ClassReport>,
    /// Classes the host bounded, and classes judged.
    host_bound_rows: HostBoundRows,
    scheduler_stats: Option<SchedulerStats>,
    scheduler_thread_cpu_s: Option<f64>,
    process_cpu_s: Option<f64>,
    kernel_udp_rcvbuf_errors: Option<u64>,
}

const NOTE: &str = "All N nodes share this one process: in-process endpoints, each with its own EmulatedSocket on 127.0.0.1; probes are raw UDP datagrams through EmulatedSocket::send_traced.";

/// What the sender knows about one probe.
#[derive(Debug, Clone, Copy)]
struct SentProbe {
    seq: u64,
    sent: Duration,
    fate: Fate,
}

/// What one sender task returns.
#[derive(Debug, Default)]
struct SenderLog {
    /// Per destination node: probes in send order.
    probes: HashMap<usize, Vec<SentProbe>>,
    /// Per destination node: load bytes offered.
    load_bytes: HashMap<usize, u64>,
}

/// What one receiver task returns.
#[derive(Debug, Default)]
struct ReceiverLog {
    /// Per source node: (seq, arrival).
    probes: HashMap<usize, Vec<(u64, Duration)>>,
    /// Per source node: load bytes received.
    load_bytes: HashMap<usize, u64>,
}

pub(crate) fn run(args: FidelityArgs) -> anyhow::Result<()> {
    if args.nodes < 2 {
        return Err(UsageError(format!("--nodes must be at least 2 (got {})", args.nodes)).into());
    }
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        return Err(
            UsageError("--duration must be a positive number of seconds".to_string()).into(),
        );
    }
    if args.clock == ClockMode::Virtual && args.time_dilation.is_dilated() {
        return Err(UsageError(format!(
            "--time-dilation is for the real clock; --clock virtual dilates its own clock (K = {})",
            args.clock.dilation()
        ))
        .into());
    }
    if !(args.probe_interval_ms > 0.0 && args.probe_interval_ms.is_finite()) {
        return Err(UsageError("--probe-interval-ms must be positive".to_string()).into());
    }
    if !(args.load_fraction >= 0.0 && args.load_fraction.is_finite()) {
        return Err(UsageError("--load-fraction must be ≥ 0".to_string()).into());
    }
    if args.through_forwarder && args.outage_period_s.is_some() {
        return Err(UsageError(
            "--through-forwarder applies the profile as written: it cannot add --outage-period-s"
                .to_string(),
        )
        .into());
    }
    let profile = load_profile(&args.profile)?;
    let mut links = LinkSpecs::of(&profile);
    if let Some(period) = args.outage_period_s {
        links.add_outage(period, args.outage_duration_s, args.outage_phase_s)?;
    }
    if let Some(us) = args.starve_delay_line_us {
        spacefabric_fabric::emu::set_starvation(Duration::from_micros(us));
    }
    if let Some(us) = args.spin_window_us {
        spacefabric_fabric::emu::set_spin_window(Duration::from_micros(us));
    }
    if args.clock == ClockMode::Virtual && args.scheduler == SchedulerArg::Precise {
        return Err(UsageError("--scheduler precise runs on an OS thread that cannot see the paused clock of --clock virtual".to_string()).into());
    }
    let runtime = args
        .clock
        .runtime()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run_async(args, profile, links))
}

/// The directed link specs the run uses: the profile's, plus any outage added by flags.
#[derive(Debug)]
struct LinkSpecs {
    sites: usize,
    specs: Vec<LinkSpec>,
}

impl LinkSpecs {
    fn of(profile: &Profile) -> Self {
        let sites = profile.sites.len();
        let specs = (0..sites)
            .flat_map(|a| (0..sites).map(move |b| (a, b)))
            .map(|(a, b)| profile.link(a, b).clone())
            .collect();
        Self { sites, specs }
    }

    fn get(&self, from: SiteId, to: SiteId) -> &LinkSpec {
        &self.specs[from * self.sites + to]
    }

    /// A link model for `from → to`, seeded as the profile seeds it.
    fn model(&self, profile: &Profile, from: SiteId, to: SiteId) -> LinkModel {
        let seed = netem_profiles::rng::link_seed(
            profile.seed,
            &profile.sites[from].name,
            &profile.sites[to].name,
        );
        LinkModel::new(self.get(from, to).clone(), seed)
    }

    /// Adds a periodic outage to every link between different sites.
    fn add_outage(&mut self, period: f64, duration: f64, phase: f64) -> anyhow::Result<()> {
        let secs = |x: f64, what: &str| {
            Duration::try_from_secs_f64(x)
                .with_context(|| format!("--outage-{what}-s: {x} is not a duration"))
        };
        let outage = PeriodicOutage {
            period: secs(period, "period")?,
            duration: secs(duration, "duration")?,
            phase: secs(phase, "phase")?,
        };
        if outage.period.is_zero()
            || outage.duration > outage.period
            || outage.phase >= outage.period
        {
            bail!("--outage-*: need 0 < duration ≤ period and phase < period");
        }
        for a in 0..self.sites {
            for b in 0..self.sites {
                if a != b {
                    self.specs[a * self.sites + b].outages.periodic.push(outage);
                }
            }
        }
        Ok(())
    }
}

fn site_of(node: usize, nodes: usize, sites: usize) -> SiteId {
    node * sites / nodes
}

async fn run_async(args: FidelityArgs, profile: Profile, links: LinkSpecs) -> anyhow::Result<()> {
    let n = args.nodes;
    let k = profile.sites.len();
    let mode = match args.scheduler {
        SchedulerArg::Auto => SchedulerMode::Auto,
        SchedulerArg::Precise => SchedulerMode::Precise,
        SchedulerArg::Tokio => SchedulerMode::TokioTimer,
    };
    // Under --clock virtual the scenario clock is dilated (tokio's 1 ms timer grain becomes
    // 1 µs of emulated time); every wait below is on this clock.
    let dilation = match args.clock {
        ClockMode::Real => args.time_dilation.get(),
        ClockMode::Virtual => args.clock.dilation(),
    };
    let clock = EmuClock::dilated(
        tokio::time::Instant::now() + Duration::from_millis(200) * dilation,
        dilation,
    );
    let forwarder = if args.through_forwarder {
        let socket = std::net::UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .context("cannot bind the forwarder's socket on 127.0.0.1")?;
        let profile = Arc::new(profile.clone());
        Some(Arc::new(
            Forwarder::with_mode(socket, profile, clock, mode)
                .context("cannot start the forwarder")?,
        ))
    } else {
        None
    };
    let trunk_plan = TrunkPlan::new(
        &profile,
        &(0..n).map(|i| site_of(i, n, k)).collect::<Vec<_>>(),
    );
    let mut sockets = Vec::new();
    for _ in 0..n {
        let mut table = LinkTable::new(clock).with_scheduler_mode(mode);
        if let Some(f) = &forwarder {
            table = table.with_forwarder(f.local_addr());
        }
        let table = Arc::new(table);
        let sock = EmulatedSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)), table)
            .context("cannot bind a node socket on 127.0.0.1")?;
        sockets.push(sock);
    }
    let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.bound_addr()).collect();
    let pairs = n * (n - 1);
    let per_pair_budget_bps = args.max_load_mbps * 1e6 / pairs as f64;
    let mut load_bps = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            let (si, sj) = (site_of(i, n, k), site_of(j, n, k));
            let label = format!(
                "{}/{i}->{}/{j}",
                profile.sites[si].name, profile.sites[sj].name
            );
            match (forwarder.is_some(), trunk_plan.trunk(i, j)) {
                (
                    true,
                    Some(TrunkId::Shared {
                        from_site,
                        to_site,
                        terminal,
                    }),
                ) => {
                    let site = |s: SiteId| {
                        u16::try_from(s).context("more sites than the forwarder header carries")
                    };
                    let trunk = WireTrunk {
                        from_site: site(from_site)?,
                        to_site: site(to_site)?,
                        terminal,
                    };
                    sockets[i].links().set_peer_forwarded(addrs[j], trunk);
                }
                _ => sockets[i].links().set_peer_labelled(
                    addrs[j],
                    links.model(&profile, si, sj),
                    label,
                ),
            }
            let rate = links
                .get(si, sj)
                .rate_bps
                .map_or(f64::INFINITY, |r| r as f64);
            load_bps[i][j] = (rate * args.load_fraction).min(per_pair_budget_bps);
        }
    }
    let addr_to_node: HashMap<SocketAddr, usize> =
        addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect();
    let ports = addrs.iter().map(|a| a.port()).collect();
    let host_sample =
        || HostSample::now(delay_line_stats(sockets.iter().map(|s| s.as_ref())), &ports);
    let host_before = host_sample();
    let sched_cpu_before = scheduler_thread_cpu();
    let cpu_before = process_cpu();
    let rcvbuf_before = udp_rcvbuf_errors();
    tracing::info!(profile = %profile.name, seed = profile.seed, nodes = n, "fidelity run starting");

    let stop_send = Arc::new(AtomicBool::new(false));
    let stop_recv = Arc::new(tokio::sync::Notify::new());
    let duration = Duration::from_secs_f64(args.duration);
    let probe_interval = Duration::from_secs_f64(args.probe_interval_ms / 1000.0);
    let verdicts: Arc<std::sync::Mutex<ForwarderVerdicts>> = Arc::default();
    let forwarder_task = forwarder.as_ref().map(|f| {
        let (f, stop, verdicts) = (f.clone(), stop_recv.clone(), verdicts.clone());
        tokio::spawn(async move { forward(&f, clock, &stop, &verdicts).await })
    });
    let mut receivers = Vec::new();
    for (me, sock) in sockets.iter().enumerate() {
        let sock = sock.clone();
        let stop = stop_recv.clone();
        let addr_to_node = addr_to_node.clone();
        receivers.push(tokio::spawn(async move {
            receive(me, sock, clock, stop, addr_to_node).await
        }));
    }
    let mut senders = Vec::new();
    for (me, sock) in sockets.iter().enumerate() {
        let sock = sock.clone();
        let stop = stop_send.clone();
        let addrs = addrs.clone();
        let rates = load_bps[me].clone();
        senders.push(tokio::spawn(async move {
            send(
                me,
                sock,
                clock,
                addrs,
                rates,
                probe_interval,
                duration,
                stop,
            )
            .await
        }));
    }
    let mut send_logs = Vec::new();
    for s in senders {
        send_logs.push(s.await.context("a sender task failed")?);
    }
    stop_send.store(true, Ordering::Relaxed);
    // Wait for everything in flight: the longest delay plus a full queue, plus margin.
    let mut drain = Duration::ZERO;
    for a in 0..k {
        for b in 0..k {
            let l = links.get(a, b);
            let queue = match l.rate_bps.filter(|&r| r > 0) {
                Some(r) => {
                    Duration::from_secs_f64((l.queue_limit_bytes as f64 * 8.0 / r as f64).min(10.0))
                }
                None => Duration::ZERO,
            };
            drain = drain.max(l.delay_at(clock.now()) + queue);
        }
    }
    tokio::time::sleep(clock.wall(drain + Duration::from_millis(500))).await;
    stop_recv.notify_waiters();
    let mut recv_logs = Vec::new();
    for r in receivers {
        recv_logs.push(r.await.context("a receiver task failed")?);
    }
    if let Some(t) = forwarder_task {
        t.await.context("the forwarder task failed")??;
    }
    let verdicts = std::mem::take(
        &mut *verdicts
            .lock()
            .map_err(|_| anyhow::anyhow!("the forwarder task panicked"))?,
    );
    let forwarder_stats = forwarder.as_ref().map(|f| f.stats());
    let host_after = host_sample();
    let sched_cpu = match (sched_cpu_before, scheduler_thread_cpu()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let process_cpu_s = match (cpu_before, process_cpu()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let rcvbuf = match (rcvbuf_before, udp_rcvbuf_errors()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };

    let link_traffic = |i: usize, j: usize| {
        sockets[i]
            .links()
            .link_stats(addrs[j])
            .map(|l| l.traffic)
            .unwrap_or_default()
    };
    let mut classes = build_classes(
        &args,
        &profile,
        &links,
        (&send_logs, &recv_logs),
        &verdicts,
        &link_traffic,
    );
    // Forwarded pairs have no link in their node's table: their class's counters are the
    // forwarder's trunks'.
    if let Some(stats) = &forwarder_stats {
        for c in &mut classes {
            let prefix = format!("{}#", c.report.class);
            for t in stats.trunks.iter().filter(|t| t.label.starts_with(&prefix)) {
                c.report.link_traffic.add(&t.traffic);
            }
        }
    }
    let report = Report {
        note: NOTE,
        profile: profile.name.clone(),
        nodes: n,
        sites: (0..n)
            .map(|i| profile.sites[site_of(i, n, k)].name.clone())
            .collect(),
        duration_s: args.duration,
        probe_interval_ms: args.probe_interval_ms,
        load_fraction: args.load_fraction,
        max_load_mbps: args.max_load_mbps,
        scheduler: args.scheduler,
        clock: args.clock,
        time_dilation: dilation,
        through_forwarder: args.through_forwarder,
        forwarder: forwarder_stats,
        spin_window_us: spacefabric_fabric::emu::spin_window().as_secs_f64() * 1e6,
        classes: classes
            .iter()
            .map(|c| {
                let mut report = c.report.clone();
                // The model's arrival is the reference: the measured arrival is it plus the
                // error. The delay line's budget is in wall time: K × the emulated delay.
                let model_s = report.configured_one_way_ms / 1e3;
                report.host = Some(HostMark::judge(
                    args.clock,
                    &host_before,
                    &host_after,
                    model_s + report.error_ms_p99 / 1e3,
                    Some(model_s),
                    Duration::try_from_secs_f64(model_s)
                        .unwrap_or_default()
                        .saturating_mul(dilation),
                ));
                report
            })
            .collect(),
        host_bound_rows: HostBoundRows::default(),
        scheduler_stats: sockets[0].scheduler_stats(),
        scheduler_thread_cpu_s: sched_cpu,
        process_cpu_s,
        kernel_udp_rcvbuf_errors: rcvbuf,
    };
    let mut report = report;
    report.host_bound_rows = HostBoundRows {
        count: report
            .classes
            .iter()
            .filter(|c| c.host.as_ref().is_some_and(|h| h.verdict.host_bound))
            .count(),
        judged: report.classes.iter().filter(|c| c.host.is_some()).count(),
    };
    print_table(&report);
    if let Some(dir) = &args.hdr_dir {
        write_hdr_logs(dir, &classes)?;
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn header(kind: u8, from: usize, to: usize, seq: u64, buf: &mut [u8]) {
    buf[..4].copy_from_slice(&MAGIC.to_be_bytes());
    buf[4] = kind;
    buf[5..7].copy_from_slice(&(from as u16).to_be_bytes());
    buf[7..9].copy_from_slice(&(to as u16).to_be_bytes());
    buf[9..17].copy_from_slice(&seq.to_be_bytes());
}

#[allow(clippy::too_many_arguments)]
async fn send(
    me: usize,
    sock: Arc<EmulatedSocket>,
    clock: EmuClock,
    addrs: Vec<SocketAddr>,
    load_bps: Vec<f64>,
    probe_interval: Duration,
    duration: Duration,
    stop: Arc<AtomicBool>,
) -> SenderLog {
    let n = addrs.len();
    let mut log = SenderLog::default();
    let mut next_probe = vec![Duration::ZERO; n];
    let mut seq = vec![0u64; n];
    let mut credit = vec![0.0f64; n];
    let mut probe = [0u8; PROBE_BYTES];
    let mut load = vec![0u8; LOAD_BYTES];
    tokio::time::sleep_until(clock.epoch()).await;
    let mut tick = tokio::time::interval(clock.wall(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = clock.now();
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = clock.now();
        if now >= duration {
            break;
        }
        let dt = (now - last).as_secs_f64();
        last = now;
        for to in (0..n).filter(|&j| j != me) {
            if now >= next_probe[to] {
                next_probe[to] = now + probe_interval;
                header(KIND_PROBE, me, to, seq[to], &mut probe);
                let sent = clock.now();
                match sock.send_traced(addrs[to], &probe) {
                    Ok(fate) => log.probes.entry(to).or_default().push(SentProbe {
                        seq: seq[to],
                        sent,
                        fate,
                    }),
                    Err(e) => tracing::warn!(from = me, to, error = %e, "probe not sent"),
                }
                seq[to] += 1;
            }
            credit[to] = (credit[to] + load_bps[to] / 8.0 * dt).min(64.0 * LOAD_BYTES as f64);
            while credit[to] >= LOAD_BYTES as f64 {
                credit[to] -= LOAD_BYTES as f64;
                header(KIND_LOAD, me, to, 0, &mut load);
                if sock.send_traced(addrs[to], &load).is_ok() {
                    *log.load_bytes.entry(to).or_default() += LOAD_BYTES as u64;
                }
            }
        }
    }
    log
}

/// The forwarder's verdict on each probe it carried, by (from node, to node, seq), and the
/// emulated instant it received the probe.
type ForwarderVerdicts = HashMap<(usize, usize, u64), (Fate, Duration)>;

/// Runs the forwarder until `stop`, keeping its verdict on every probe.
async fn forward(
    forwarder: &Forwarder,
    clock: EmuClock,
    stop: &tokio::sync::Notify,
    verdicts: &std::sync::Mutex<ForwarderVerdicts>,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 65_536];
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return Ok(()),
            r = forwarder.recv_one(&mut buf) => {
                let received = clock.now();
                let (_, fate) = r.context("the forwarder's socket failed")?;
                let Ok(fate) = fate else { continue };
                let Some(probe) = buf.get(encap::HEADER_LEN..encap::HEADER_LEN + HEADER_BYTES) else {
                    continue;
                };
                if probe[..4] != MAGIC.to_be_bytes() || probe[4] != KIND_PROBE {
                    continue;
                }
                let from = usize::from(u16::from_be_bytes([probe[5], probe[6]]));
                let to = usize::from(u16::from_be_bytes([probe[7], probe[8]]));
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&probe[9..17]);
                verdicts
                    .lock()
                    .map_err(|_| anyhow::anyhow!("verdicts poisoned"))?
                    .insert((from, to, u64::from_be_bytes(seq)), (fate, received));
            }
        }
    }
}

async fn receive(
    me: usize,
    sock: Arc<EmulatedSocket>,
    clock: EmuClock,
    stop: Arc<tokio::sync::Notify>,
    addr_to_node: HashMap<SocketAddr, usize>,
) -> ReceiverLog {
    let mut log = ReceiverLog::default();
    let mut buf = vec![0u8; 2048];
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            r = sock.recv_from(&mut buf) => {
                let at = clock.now();
                let Ok((len, from_addr)) = r else { continue };
                if len < HEADER_BYTES || buf[..4] != MAGIC.to_be_bytes() {
                    tracing::warn!(node = me, %from_addr, len, "unexpected datagram");
                    continue;
                }
                let Some(&from) = addr_to_node.get(&from_addr) else { continue };
                match buf[4] {
                    KIND_PROBE => {
                        let mut s = [0u8; 8];
                        s.copy_from_slice(&buf[9..17]);
                        log.probes.entry(from).or_default().push((u64::from_be_bytes(s), at));
                    }
                    _ => *log.load_bytes.entry(from).or_default() += len as u64,
                }
            }
        }
    }
    log
}

/// Per-class aggregates kept for the HDR logs.
struct ClassData {
    report: ClassReport,
    /// (send time, latency ns, error ns) per received probe.
    samples: Vec<(Duration, u64, u64)>,
}

fn configured_loss(spec: &LinkSpec) -> f64 {
    match spec.loss {
        LossModel::None => 0.0,
        LossModel::Bernoulli { p } => p,
        LossModel::GilbertElliott { p, r, h, k } => {
            if p + r == 0.0 {
                1.0 - k
            } else {
                let bad = p / (p + r);
                (1.0 - bad) * (1.0 - k) + bad * (1.0 - h)
            }
        }
    }
}

fn pct(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx] as f64 / 1e6
}

fn build_classes(
    args: &FidelityArgs,
    profile: &Profile,
    links: &LinkSpecs,
    (sends, recvs): (&[SenderLog], &[ReceiverLog]),
    forwarded: &ForwarderVerdicts,
    link_traffic: &dyn Fn(usize, usize) -> TrafficStats,
) -> Vec<ClassData> {
    let n = args.nodes;
    let k = profile.sites.len();
    let duration = Duration::from_secs_f64(args.duration);
    let mut out = Vec::new();
    for sa in 0..k {
        for sb in 0..k {
            let node_pairs: Vec<(usize, usize)> = (0..n)
                .flat_map(|i| (0..n).map(move |j| (i, j)))
                .filter(|&(i, j)| i != j && site_of(i, n, k) == sa && site_of(j, n, k) == sb)
                .collect();
            if node_pairs.is_empty() {
                continue;
            }
            let spec = links.get(sa, sb);
            let mut lat = Vec::new();
            let mut err = Vec::new();
            let mut samples = Vec::new();
            let (mut sent_n, mut recv_n, mut lost_loss, mut outage, mut queue, mut lost_after) =
                (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
            let (mut offered_bytes, mut delivered_bytes) = (0u64, 0u64);
            let scheduled = spec.outages.outages_between(Duration::ZERO, duration);
            let mut observed_total = 0usize;
            let mut edge_err_max: Option<f64> = None;
            let mut traffic = TrafficStats::default();
            for &(i, j) in &node_pairs {
                traffic.add(&link_traffic(i, j));
                offered_bytes += sends[i].load_bytes.get(&j).copied().unwrap_or(0);
                delivered_bytes += recvs[j].load_bytes.get(&i).copied().unwrap_or(0);
                let arrivals: HashMap<u64, Duration> = recvs[j]
                    .probes
                    .get(&i)
                    .map(|v| v.iter().copied().collect())
                    .unwrap_or_default();
                let probes = sends[i].probes.get(&j).map(Vec::as_slice).unwrap_or(&[]);
                for p in probes {
                    sent_n += 1;
                    // A forwarded probe's verdict is the forwarder's, taken when it received
                    // the probe; moved back to the send, the hop to the forwarder counts as
                    // error.
                    let (fate, received_at_forwarder) = match p.fate {
                        Fate::Forwarded => match forwarded.get(&(i, j, p.seq)) {
                            Some(&(fate, received)) => (fate, Some(received)),
                            None => {
                                lost_after += 1;
                                continue;
                            }
                        },
                        fate => (fate, None),
                    };
                    let predicted = match fate {
                        Fate::Dropped(EmuDropCause::Link(DropCause::Loss)) => {
                            lost_loss += 1;
                            continue;
                        }
                        Fate::Dropped(EmuDropCause::Link(DropCause::Outage)) => {
                            outage += 1;
                            continue;
                        }
                        Fate::Dropped(EmuDropCause::Link(DropCause::Queue)) => {
                            queue += 1;
                            continue;
                        }
                        Fate::Dropped(_) => {
                            lost_after += 1;
                            continue;
                        }
                        Fate::SentNow => p.sent,
                        Fate::Held { at, .. } => match received_at_forwarder {
                            Some(received) => p.sent + at.saturating_sub(received),
                            None => at,
                        },
                        // The forwarder never forwards again.
                        Fate::Forwarded => {
                            lost_after += 1;
                            continue;
                        }
                    };
                    match arrivals.get(&p.seq) {
                        Some(&arrived) => {
                            recv_n += 1;
                            let l = arrived.saturating_sub(p.sent).as_nanos() as u64;
                            let e = arrived.saturating_sub(predicted).as_nanos() as u64;
                            lat.push(l);
                            err.push(e);
                            samples.push((p.sent, l, e));
                        }
                        None => lost_after += 1,
                    }
                }
                // Outage edges seen by the receiver: gaps in probe arrivals.
                let mut times: Vec<Duration> = arrivals.values().copied().collect();
                times.sort();
                let gap_min = Duration::from_secs_f64(args.probe_interval_ms * 4.0 / 1000.0)
                    .max(Duration::from_millis(50));
                let gaps: Vec<(Duration, Duration)> = times
                    .windows(2)
                    .filter(|w| w[1] - w[0] > gap_min)
                    .map(|w| (w[0], w[1]))
                    .collect();
                for w in &scheduled {
                    let delay = spec.delay_at(w.start);
                    let (s, e) = (w.start + delay, w.end + delay);
                    if let Some(g) = gaps
                        .iter()
                        .find(|g| g.0 <= s + gap_min && g.1 + gap_min >= e)
                    {
                        observed_total += 1;
                        let es = (g.0.as_secs_f64() - s.as_secs_f64()).abs();
                        let ee = (g.1.as_secs_f64() - e.as_secs_f64()).abs();
                        let m = es.max(ee) * 1e3;
                        edge_err_max = Some(edge_err_max.map_or(m, |x: f64| x.max(m)));
                    }
                }
            }
            lat.sort_unstable();
            err.sort_unstable();
            let up_sent = sent_n - outage;
            let report = ClassReport {
                class: format!("{}->{}", profile.sites[sa].name, profile.sites[sb].name),
                pairs: node_pairs.len(),
                configured_one_way_ms: spec.delay_at(duration / 2).as_secs_f64() * 1e3,
                probes_sent: sent_n,
                probes_received: recv_n,
                latency_ms_p50: pct(&lat, 0.5),
                latency_ms_p99: pct(&lat, 0.99),
                latency_ms_p999: pct(&lat, 0.999),
                error_ms_p50: pct(&err, 0.5),
                error_ms_p99: pct(&err, 0.99),
                error_ms_p999: pct(&err, 0.999),
                error_ms_max: err.last().map_or(f64::NAN, |&e| e as f64 / 1e6),
                configured_rate_mbps: spec.rate_bps.map(|r| r as f64 / 1e6),
                offered_rate_mbps: offered_bytes as f64 * 8.0 / args.duration / 1e6,
                delivered_rate_mbps: delivered_bytes as f64 * 8.0 / args.duration / 1e6,
                configured_loss: configured_loss(spec),
                measured_loss: if up_sent == 0 {
                    0.0
                } else {
                    lost_loss as f64 / up_sent as f64
                },
                dropped_outage: outage,
                dropped_queue: queue,
                lost_after_release: lost_after,
                link_traffic: traffic,
                outages_scheduled: scheduled.len() * node_pairs.len(),
                outages_observed: observed_total,
                outage_edge_error_ms_max: edge_err_max,
                host: None,
            };
            out.push(ClassData { report, samples });
        }
    }
    out
}

fn fmt_ms(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn print_table(r: &Report) {
    println!(
        "# spacefabric-bench fidelity: profile {} | {} nodes | {} s | probe every {} ms | load {}× rate within {} Mbit/s total | scheduler {:?} | clock {}",
        r.profile,
        r.nodes,
        r.duration_s,
        r.probe_interval_ms,
        r.load_fraction,
        r.max_load_mbps,
        r.scheduler,
        r.clock
    );
    println!("# clock: {}", r.clock.describe());
    if r.clock == ClockMode::Real && r.time_dilation > 1 {
        println!(
            "# time dilation K = {}: the emulated clock runs K times slower than the wall clock; every time below is emulated time (wall / K)",
            r.time_dilation
        );
    }
    println!("# NOTE: {}", r.note);
    println!(
        "# latency = arrival − send (includes serialisation and queueing the model prescribes);"
    );
    println!(
        "# error = arrival − arrival time the link model assigned (scheduler + loopback + receiver wake-up)."
    );
    println!(
        "{:<16} {:>5} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9} {:>9} {:>8} {:>8} {:>6} {:>9} {:>12} {:>20} host",
        "link class",
        "pairs",
        "cfg ms",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "err p50",
        "err p99",
        "err p999",
        "err max",
        "rate cfg",
        "offered",
        "delivrd",
        "loss cfg",
        "loss %",
        "lost",
        "outages",
        "edge err ms",
        "link drops q/l/o/err"
    );
    for c in &r.classes {
        println!(
            "{:<16} {:>5} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9.2} {:>9.2} {:>8.3} {:>8.3} {:>6} {:>9} {:>12} {:>20} {}",
            c.class,
            c.pairs,
            fmt_ms(c.configured_one_way_ms),
            fmt_ms(c.latency_ms_p50),
            fmt_ms(c.latency_ms_p99),
            fmt_ms(c.latency_ms_p999),
            fmt_ms(c.error_ms_p50),
            fmt_ms(c.error_ms_p99),
            fmt_ms(c.error_ms_p999),
            fmt_ms(c.error_ms_max),
            c.configured_rate_mbps
                .map_or("unlimited".into(), |x| format!("{x:.0}")),
            c.offered_rate_mbps,
            c.delivered_rate_mbps,
            c.configured_loss * 100.0,
            c.measured_loss * 100.0,
            c.lost_after_release,
            format!("{}/{}", c.outages_observed, c.outages_scheduled),
            c.outage_edge_error_ms_max
                .map_or("-".into(), |x| format!("{x:.2}")),
            format!(
                "{}/{}/{}/{}",
                c.link_traffic.dropped_queue,
                c.link_traffic.dropped_loss,
                c.link_traffic.dropped_outage,
                c.link_traffic.dropped_send_error + c.link_traffic.dropped_hold_limit
            ),
            c.host
                .as_ref()
                .map_or("-".to_string(), |h| h.verdict.cell()),
        );
    }
    println!(
        "# rates in Mbit/s summed over the class's node pairs (rate cfg is per pair); loss % = random-loss drops / probes sent while up; lost = probes the emulator released that never arrived"
    );
    if let Some(s) = &r.scheduler_stats {
        let avg_late = if s.delivered == 0 {
            0.0
        } else {
            s.late_nanos_sum as f64 / s.delivered as f64 / 1e3
        };
        println!(
            "# scheduler: {} datagrams in {} wake-ups, lateness at send avg {:.1} µs max {:.1} µs, spin {:.2} s (spin window {} µs)",
            s.delivered,
            s.wakeups,
            avg_late,
            s.late_nanos_max as f64 / 1e3,
            s.spin_nanos as f64 / 1e9,
            r.spin_window_us
        );
    }
    println!(
        "# CPU: scheduler thread {} s, whole process {} s; kernel UDP receive-buffer drops {}",
        r.scheduler_thread_cpu_s
            .map_or("?".into(), |x| format!("{x:.2}")),
        r.process_cpu_s.map_or("?".into(), |x| format!("{x:.2}")),
        r.kernel_udp_rcvbuf_errors
            .map_or("?".into(), |x| x.to_string()),
    );
    print!(
        "{}",
        footer_line(r.clock, r.host_bound_rows.count, r.host_bound_rows.judged)
    );
}

fn write_hdr_logs(dir: &Path, classes: &[ClassData]) -> anyhow::Result<()> {
    use hdrhistogram::Histogram;
    use hdrhistogram::serialization::V2DeflateSerializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for c in classes {
        let path = dir.join(format!("{}.hlog", c.report.class.replace("->", "_to_")));
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        // Compressed payloads: HdrHistogram's log readers accept no other form.
        let mut ser = V2DeflateSerializer::new();
        let mut w = IntervalLogWriterBuilder::new()
            .add_comment(&format!("spacefabric-bench fidelity, link class {}, values in microseconds; tags: latency, error", c.report.class))
            .begin_log_with(&mut file, &mut ser)?;
        let seconds = c.samples.iter().map(|s| s.0.as_secs()).max().unwrap_or(0);
        for sec in 0..=seconds {
            let mut lat = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
            let mut err = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
            for s in c.samples.iter().filter(|s| s.0.as_secs() == sec) {
                lat.saturating_record((s.1 / 1000).max(1));
                err.saturating_record((s.2 / 1000).max(1));
            }
            let start = Duration::from_secs(sec);
            let one = Duration::from_secs(1);
            w.write_histogram(&lat, start, one, Tag::new("latency"))
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            w.write_histogram(&err, start, one, Tag::new("error"))
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// CPU seconds (user + system) of this process, from /proc (Linux only).
fn process_cpu() -> Option<f64> {
    cpu_of(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// CPU seconds of the precise scheduler thread, from /proc (Linux only).
fn scheduler_thread_cpu() -> Option<f64> {
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with("spacefabric-emu") {
            return cpu_of(&std::fs::read_to_string(path.join("stat")).ok()?);
        }
    }
    Some(0.0)
}

fn cpu_of(stat: &str) -> Option<f64> {
    // Fields after the ")" of the command name: state is field 3; utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Datagrams the kernel dropped for full UDP receive buffers (whole machine), /proc/net/snmp.
fn udp_rcvbuf_errors() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let i = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(i)?.parse().ok()
}
