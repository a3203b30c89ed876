//! Results of the all-reduce sweep and how they are written: the nccl-tests-style table on
//! stdout, progress on stderr, JSON, CSV and HDR interval logs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use netem_profiles::Profile;
use serde_json::json;
use spacefabric_node::collective::{Algorithm, Bound, Collective, Concrete, CostModel, Prediction};

use super::AllreduceArgs;
use super::fabric::WireCounters;
use crate::host_share::{HostShare, HostVerdict};

/// Wire counters per (source site, destination site).
pub(crate) type WireByClass = BTreeMap<(usize, usize), WireCounters>;

/// One (algorithm, size) measurement.
#[derive(Debug, Clone)]
pub(crate) struct SizeResult {
    pub(crate) algo: Algorithm,
    pub(crate) used: Concrete,
    pub(crate) bytes: u64,
    pub(crate) count: usize,
    pub(crate) world: usize,
    pub(crate) times: Vec<Duration>,
    pub(crate) wrong: usize,
    pub(crate) bound: Bound,
    pub(crate) predicted: Prediction,
    /// Wire counters per (source site, destination site) over the whole point (warm-up,
    /// timed and checked iterations and their barriers), and how many all-reduces that was.
    pub(crate) wire: Option<(WireByClass, usize)>,
    /// The host's share of the point (same interval as `wire`) and whether it bounded it.
    pub(crate) host: Option<(HostShare, HostVerdict)>,
}

impl SizeResult {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        algo: Algorithm,
        used: Concrete,
        bytes: u64,
        count: usize,
        world: usize,
        times: Vec<Duration>,
        wrong: usize,
        bound: Bound,
        predicted: Prediction,
    ) -> Self {
        Self {
            algo,
            used,
            bytes,
            count,
            world,
            times,
            wrong,
            bound,
            predicted,
            wire: None,
            host: None,
        }
    }

    fn times_us(&self) -> Vec<f64> {
        self.times.iter().map(|t| t.as_secs_f64() * 1e6).collect()
    }

    /// Mean time per operation, µs (nccl-tests' `time`).
    pub(crate) fn mean_us(&self) -> f64 {
        let t = self.times_us();
        t.iter().sum::<f64>() / t.len().max(1) as f64
    }

    /// Nearest-rank percentile of the iteration times, µs.
    pub(crate) fn percentile_us(&self, q: f64) -> f64 {
        let mut t = self.times_us();
        t.sort_by(f64::total_cmp);
        if t.is_empty() {
            return 0.0;
        }
        let rank = ((q / 100.0) * t.len() as f64).ceil().max(1.0) as usize;
        t[rank.min(t.len()) - 1]
    }

    /// Algorithm bandwidth, decimal GB/s: bytes / time.
    pub(crate) fn algbw(&self) -> f64 {
        let s = self.mean_us() / 1e6;
        if s > 0.0 {
            self.bytes as f64 / 1e9 / s
        } else {
            0.0
        }
    }

    /// Bus bandwidth: algbw × 2(p−1)/p.
    pub(crate) fn busbw(&self) -> f64 {
        self.algbw() * Collective::AllReduce.bus_factor(self.world)
    }

    /// Reference bound, µs.
    pub(crate) fn bound_us(&self) -> f64 {
        self.bound.total_s * 1e6
    }

    /// Efficiency: bound / time, percent.
    pub(crate) fn eff_pct(&self) -> f64 {
        let t = self.mean_us();
        if t > 0.0 {
            100.0 * self.bound_us() / t
        } else {
            0.0
        }
    }

    /// The algorithm column: `ring`, or `auto:hier` when auto chose hierarchical.
    pub(crate) fn algo_label(&self) -> String {
        match self.algo {
            Algorithm::Auto => format!("auto:{}", self.used),
            a => a.short_name().to_string(),
        }
    }
}

/// The sweep: its settings and results.
#[derive(Debug)]
pub(crate) struct Sweep {
    pub(crate) profile: String,
    pub(crate) nodes: usize,
    pub(crate) placement: String,
    pub(crate) links: Vec<serde_json::Value>,
    pub(crate) link_lines: Vec<String>,
    pub(crate) fabric: String,
    pub(crate) emulated: bool,
    pub(crate) transport: serde_json::Value,
    pub(crate) min_bytes: u64,
    pub(crate) max_bytes: u64,
    pub(crate) step_factor: u64,
    pub(crate) iters: usize,
    pub(crate) warmup: usize,
    pub(crate) lanes: usize,
    pub(crate) seed: u64,
    pub(crate) clock: crate::clock::ClockMode,
    /// Dilation K of the scenario clock (1: undilated).
    pub(crate) dilation: u32,
    pub(crate) bound_formula: &'static str,
    pub(crate) site_names: Vec<String>,
    pub(crate) results: Vec<SizeResult>,
    /// Transport counters per rank after the run.
    pub(crate) transport_stats: Vec<String>,
}

impl Sweep {
    pub(crate) fn new(
        args: &AllreduceArgs,
        profile: &Profile,
        cost: &CostModel,
        fabric: String,
        emulated: bool,
        transport: serde_json::Value,
    ) -> Self {
        let populated = cost.populated_sites();
        let placement = populated
            .iter()
            .map(|&s| {
                let ranks: Vec<usize> = (0..cost.world())
                    .filter(|&r| cost.site_of_rank()[r] == s)
                    .collect();
                format!("{}={}", profile.sites[s].name, ranks_text(&ranks))
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut links = Vec::new();
        let mut link_lines = Vec::new();
        for &a in &populated {
            for &b in &populated {
                let l = profile.link(a, b);
                let (from, to) = (&profile.sites[a].name, &profile.sites[b].name);
                let rate = l.rate_bps.map_or("unlimited".to_string(), |r| {
                    format!("{} Mbit/s", r as f64 / 1e6)
                });
                link_lines.push(format!(
                    "{from}->{to}: one-way {:.3} ms, rate {rate}",
                    l.delay_at(Duration::ZERO).as_secs_f64() * 1e3
                ));
                links.push(json!({
                    "from": from, "to": to,
                    "one_way_delay_ms": l.delay_at(Duration::ZERO).as_secs_f64() * 1e3,
                    "rate_bps": l.rate_bps,
                    "queue_limit_bytes": l.queue_limit_bytes,
                    "loss": format!("{:?}", l.loss),
                    "outages": !l.outages.is_up(Duration::ZERO) || l.outages.next_change(Duration::ZERO).is_some(),
                }));
            }
        }
        let bound_formula = cost.all_reduce_bound(1.0).formula;
        Self {
            profile: profile.name.clone(),
            nodes: args.nodes,
            placement,
            links,
            link_lines,
            fabric,
            emulated,
            transport,
            min_bytes: args.min_bytes,
            max_bytes: args.max_bytes,
            step_factor: args.step_factor,
            iters: args.iters,
            warmup: args.warmup,
            lanes: args.lanes,
            seed: args.seed,
            clock: args.clock,
            dilation: 1,
            bound_formula,
            site_names: profile.sites.iter().map(|s| s.name.clone()).collect(),
            results: Vec::new(),
            transport_stats: Vec::new(),
        }
    }

    /// Rows with any wrong element (nccl-tests' "Out of bounds values").
    pub(crate) fn out_of_bounds(&self) -> usize {
        self.results.iter().filter(|r| r.wrong > 0).count()
    }

    pub(crate) fn failed(&self) -> bool {
        self.out_of_bounds() > 0
    }

    /// Rows the host bounded, and rows judged.
    pub(crate) fn host_bound_rows(&self) -> (usize, usize) {
        let judged = self.results.iter().filter(|r| r.host.is_some()).count();
        let bound = self
            .results
            .iter()
            .filter(|r| r.host.as_ref().is_some_and(|(_, v)| v.host_bound))
            .count();
        (bound, judged)
    }

    /// Mean bus bandwidth over every row, as nccl-tests computes it.
    pub(crate) fn avg_busbw(&self) -> f64 {
        let n = self.results.len().max(1) as f64;
        self.results.iter().map(SizeResult::busbw).sum::<f64>() / n
    }
}

/// `0-3` for consecutive ranks, else a comma list.
fn ranks_text(ranks: &[usize]) -> String {
    match (ranks.first(), ranks.last()) {
        (Some(&a), Some(&b)) if b - a + 1 == ranks.len() && ranks.len() > 1 => format!("{a}-{b}"),
        _ => ranks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
    }
}

pub(crate) fn print_header(s: &Sweep) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# spacefabric-bench allreduce (table layout of nccl-tests all_reduce_perf)"
    );
    let _ = writeln!(out, "# Collective test starting: all_reduce_perf");
    let _ = writeln!(
        out,
        "# nNodes {} minBytes {} maxBytes {} step: {}(factor) warmup iters: {} iters: {} validation: 1 lanes: {} seed: {}",
        s.nodes, s.min_bytes, s.max_bytes, s.step_factor, s.warmup, s.iters, s.lanes, s.seed
    );
    let _ = writeln!(out, "#");
    let _ = writeln!(out, "# Profile {}: placement {}", s.profile, s.placement);
    for l in &s.link_lines {
        let _ = writeln!(
            out,
            "#   {l}{}",
            if s.emulated {
                ""
            } else {
                " (NOT applied: emulation off)"
            }
        );
    }
    let _ = writeln!(out, "# Fabric: {}", s.fabric);
    let _ = writeln!(out, "# Clock: {}", s.clock.describe());
    if s.dilation > 1 {
        let _ = writeln!(
            out,
            "# Scenario clock dilated K = {}: tokio's 1 ms timer grain is {} ns of emulated time",
            s.dilation,
            1_000_000 / u64::from(s.dilation)
        );
    }
    let _ = writeln!(
        out,
        "# time = mean per op over the timed iterations, until the last rank finishes; algbw = size/time; busbw = algbw*2(p-1)/p"
    );
    let _ = writeln!(
        out,
        "# bound = reference bound, {}; eff = bound/time; model = cost-model prediction of the schedule on these links",
        s.bound_formula
    );
    print!("{out}");
    let _ = std::io::stdout().flush();
}

pub(crate) fn print_table_start(_s: &Sweep, algo: Algorithm) {
    println!("#");
    println!("# algorithm: {algo}");
    println!(
        "# {:>10}  {:>12}  {:>8}  {:>6}  {:>6}  {:>12}  {:>8}  {:>8}  {:>6}  {:>9}  {:>12}  {:>7}  {:>12}  {:<8}",
        "size",
        "count",
        "type",
        "redop",
        "root",
        "time",
        "algbw",
        "busbw",
        "#wrong",
        "algo",
        "bound",
        "eff",
        "model",
        "host"
    );
    println!(
        "# {:>10}  {:>12}  {:>8}  {:>6}  {:>6}  {:>12}  {:>8}  {:>8}  {:>6}  {:>9}  {:>12}  {:>7}  {:>12}  {:<8}",
        "(B)",
        "(elements)",
        "",
        "",
        "",
        "(us)",
        "(GB/s)",
        "(GB/s)",
        "",
        "",
        "(us)",
        "(%)",
        "(us)",
        "(bound)"
    );
    let _ = std::io::stdout().flush();
}

pub(crate) fn print_row(s: &Sweep, r: &SizeResult) {
    progress_clear();
    // Without emulation the profile's links are not applied: bound and model do not apply.
    let (bound, eff, model) = if s.emulated {
        (
            format!("{:.1}", r.bound_us()),
            format!("{:.1}", r.eff_pct()),
            format!("{:.1}", r.predicted.total_s * 1e6),
        )
    } else {
        ("-".to_string(), "-".to_string(), "-".to_string())
    };
    println!(
        "  {:>10}  {:>12}  {:>8}  {:>6}  {:>6}  {:>12.1}  {:>8.4}  {:>8.4}  {:>6}  {:>9}  {:>12}  {:>7}  {:>12}  {:<8}",
        r.bytes,
        r.count,
        "float",
        "sum",
        -1,
        r.mean_us(),
        r.algbw(),
        r.busbw(),
        r.wrong,
        r.algo_label(),
        bound,
        eff,
        model,
        r.host.as_ref().map_or("-".to_string(), |(_, v)| v.cell())
    );
    let _ = std::io::stdout().flush();
}

pub(crate) fn print_footer(s: &Sweep) {
    let oob = s.out_of_bounds();
    println!(
        "# Out of bounds values : {} {}",
        oob,
        if oob == 0 { "OK" } else { "FAILED" }
    );
    println!("# Avg bus bandwidth    : {:.6}", s.avg_busbw());
    let (bound, judged) = s.host_bound_rows();
    if judged > 0 {
        println!(
            "# Host-bound rows      : {bound} of {judged} (clock {}){}",
            s.clock,
            host_bound_note(s.clock, bound, judged)
        );
    }
    println!("#");
    println!("# Collective test concluded: all_reduce_perf");
    let _ = std::io::stdout().flush();
}

/// What the footer adds to the host-bound count.
fn host_bound_note(clock: crate::clock::ClockMode, bound: usize, judged: usize) -> String {
    if clock == crate::clock::ClockMode::Virtual {
        " - CPU costs no emulated time on the virtual clock".to_string()
    } else if bound == 0 {
        " - the links and the protocol set every number".to_string()
    } else if bound == judged {
        " - EVERY row was bounded by this host, not the link model: rerun with --clock virtual"
            .to_string()
    } else {
        " - rows marked HOST missed their model because of this host (cpu: cores saturated, cpu-wait: threads waited for a core, late: delay line behind its budget, rcvbuf: receive buffer overflow); --clock virtual avoids it".to_string()
    }
}

/// A progress line on stderr (redrawn in place on a terminal, one line per point otherwise).
pub(crate) fn progress(done: usize, total: usize, algo: Algorithm, bytes: u64) {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let width = 30;
        let filled = done * width / total.max(1);
        let _ = write!(
            err,
            "\r[{}{}] {done}/{total} running {algo} {bytes} B   ",
            "#".repeat(filled),
            "-".repeat(width - filled),
        );
    } else {
        let _ = writeln!(
            err,
            "progress: {done}/{total} done, running {algo} {bytes} B"
        );
    }
    let _ = err.flush();
}

fn progress_clear() {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r{}\r", " ".repeat(79));
        let _ = err.flush();
    }
}

pub(crate) fn progress_done() {
    progress_clear();
}

/// Writes the files asked for by `--json`, `--csv`, `--hdr-dir` and `--plot`.
pub(crate) fn write_files(s: &Sweep, args: &AllreduceArgs) -> anyhow::Result<()> {
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&to_json(s))?)
            .with_context(|| format!("writing --json {}", p.display()))?;
    }
    if let Some(p) = &args.csv {
        std::fs::write(p, to_csv(s)).with_context(|| format!("writing --csv {}", p.display()))?;
    }
    if let Some(dir) = &args.hdr_dir {
        write_hdr(s, dir)?;
    }
    if let Some(p) = &args.plot {
        std::fs::write(p, super::plot::svg(s))
            .with_context(|| format!("writing --plot {}", p.display()))?;
    }
    Ok(())
}

fn to_json(s: &Sweep) -> serde_json::Value {
    let results: Vec<serde_json::Value> = s
        .results
        .iter()
        .map(|r| {
            let mut classes: Vec<serde_json::Value> = r
                .predicted
                .bytes_by_class
                .iter()
                .map(|(&(a, b), &bytes)| {
                    json!({
                        "from": s.site_names.get(a), "to": s.site_names.get(b),
                        "payload_bytes_per_op": bytes,
                    })
                })
                .collect();
            classes.sort_by_key(|v| v.to_string());
            let wire: Vec<serde_json::Value> = r
                .wire
                .iter()
                .flat_map(|(by_class, ops)| {
                    by_class.iter().map(move |(&(a, b), c)| {
                        json!({
                            "from": s.site_names.get(a), "to": s.site_names.get(b),
                            "all_reduces_counted": ops,
                            "datagrams": c.datagrams,
                            "udp_payload_bytes": c.udp_payload_bytes,
                            "udp_payload_bytes_per_op": c.udp_payload_bytes as f64 / (*ops).max(1) as f64,
                            "emulator_dropped_datagrams": c.dropped,
                            "quic_sent_packets": c.quic_sent_packets,
                            "quic_lost_packets": c.quic_lost_packets,
                        })
                    })
                })
                .collect();
            json!({
                "collective": "all_reduce",
                "algorithm": r.algo.short_name(),
                "algorithm_used": r.used.short_name(),
                "size_bytes": r.bytes,
                "count": r.count,
                "type": "float",
                "redop": "sum",
                "n_ranks": r.world,
                "iterations": r.times.len(),
                "times_us": r.times_us(),
                "time_us": {
                    "mean": r.mean_us(),
                    "p50": r.percentile_us(50.0),
                    "p95": r.percentile_us(95.0),
                    "p99": r.percentile_us(99.0),
                    "min": r.percentile_us(0.0),
                    "max": r.percentile_us(100.0),
                },
                "algbw_gbs": r.algbw(),
                "busbw_gbs": r.busbw(),
                "nwrong": r.wrong,
                "bound_us": r.bound_us(),
                "bound_latency_us": r.bound.latency_s * 1e6,
                "bound_bandwidth_us": r.bound.bandwidth_s * 1e6,
                "efficiency_pct": r.eff_pct(),
                "model_us": r.predicted.total_s * 1e6,
                "bytes_per_link_class": classes,
                "wire_per_link_class": wire,
                "host": r.host.as_ref().map(|(share, v)| json!({
                    "share": share,
                    "host_bound": v.host_bound,
                    "causes": v.causes,
                    "avoid_with": v.avoid_with,
                })),
            })
        })
        .collect();
    json!({
        "tool": "spacefabric-bench allreduce",
        "profile": s.profile,
        "nodes": s.nodes,
        "placement": s.placement,
        "emulated": s.emulated,
        "clock": s.clock,
        "clock_dilation": s.dilation,
        "fabric": s.fabric,
        "links": s.links,
        "transport": s.transport,
        "transport_stats_per_rank": s.transport_stats,
        "config": {
            "minimum_bytes": s.min_bytes, "maximum_bytes": s.max_bytes, "step_factor": s.step_factor,
            "warmup_iters": s.warmup, "iterations": s.iters, "validation": 1, "lanes": s.lanes, "seed": s.seed,
        },
        "bound_formula": s.bound_formula,
        "results": results,
        "out_of_bounds": { "count": s.out_of_bounds(), "okay": !s.failed() },
        "average_bus_bandwidth": s.avg_busbw(),
        "host_bound_rows": { "count": s.host_bound_rows().0, "judged": s.host_bound_rows().1 },
    })
}

fn to_csv(s: &Sweep) -> String {
    let mut out = String::from(
        "profile,nodes,emulated,algorithm,algorithm_used,size_bytes,count,time_us,p50_us,p95_us,p99_us,algbw_gbs,busbw_gbs,nwrong,bound_us,eff_pct,model_us,clock,host_bound\n",
    );
    for r in &s.results {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.6},{:.6},{},{:.3},{:.2},{:.3},{},{}",
            s.profile,
            s.nodes,
            s.emulated,
            r.algo.short_name(),
            r.used.short_name(),
            r.bytes,
            r.count,
            r.mean_us(),
            r.percentile_us(50.0),
            r.percentile_us(95.0),
            r.percentile_us(99.0),
            r.algbw(),
            r.busbw(),
            r.wrong,
            r.bound_us(),
            r.eff_pct(),
            r.predicted.total_s * 1e6,
            s.clock,
            r.host.as_ref().map_or("-".to_string(), |(_, v)| v.cell())
        );
    }
    out
}

fn write_hdr(s: &Sweep, dir: &Path) -> anyhow::Result<()> {
    use hdrhistogram::Histogram;
    use hdrhistogram::serialization::V2Serializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating --hdr-dir {}", dir.display()))?;
    for r in &s.results {
        let mut h = Histogram::<u64>::new(3).context("creating a histogram")?;
        for t in &r.times {
            h.record(t.as_micros().max(1) as u64)
                .context("recording a time")?;
        }
        let path = dir.join(format!(
            "allreduce-{}-{}-{}B.hlog",
            s.profile,
            r.algo.short_name(),
            r.bytes
        ));
        let mut buf = Vec::new();
        let mut ser = V2Serializer::new();
        {
            let mut w = IntervalLogWriterBuilder::new()
                .add_comment(&format!(
                    "spacefabric-bench allreduce: profile {} nodes {} algorithm {} size {} B; values are per-iteration times in microseconds",
                    s.profile,
                    s.nodes,
                    r.algo_label(),
                    r.bytes
                ))
                .with_base_time(std::time::SystemTime::now())
                .begin_log_with(&mut buf, &mut ser)
                .context("starting the HDR log")?;
            let total: Duration = r.times.iter().sum();
            w.write_histogram(&h, Duration::ZERO, total, Tag::new(r.algo.short_name()))
                .map_err(|e| anyhow::anyhow!("writing the HDR log: {e}"))?;
        }
        std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
