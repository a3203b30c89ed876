//! Results of the all-reduce sweep and how they are written: the nccl-tests-style table on
//! stdout, progress on stderr, JSON, CSV and HDR interval logs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use netem_profiles::Profile;
use spacefabric_node::collective::{
    Algorithm, Bound, Collective, Concrete, CostModel, DataTypeName, Prediction, ReduceOpName,
};

use super::AllreduceArgs;
use super::fabric::WireCounters;
use crate::host_share::{HostShare, HostVerdict};

/// Wire counters per (source site, destination site).
pub(crate) type WireByClass = BTreeMap<(usize, usize), WireCounters>;

/// One placement's measurement (out-of-place or in-place) of one (algorithm, size): the
/// combined per-iteration times (slowest rank) and #wrong summed over ranks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Measured {
    pub(crate) times: Vec<Duration>,
    /// `None` when the result was not checked (`-c 0`): nccl-tests prints `N/A`.
    pub(crate) wrong: Option<usize>,
}

impl Measured {
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

    /// Wrong elements, 0 when not checked.
    pub(crate) fn wrong_count(&self) -> usize {
        self.wrong.unwrap_or(0)
    }
}

/// One (algorithm, datatype, op, size) measurement: nccl-tests' out-of-place and in-place
/// runs.
#[derive(Debug, Clone)]
pub(crate) struct SizeResult {
    pub(crate) algo: Algorithm,
    pub(crate) used: Concrete,
    /// Element type (nccl-tests' `type` column).
    pub(crate) datatype: DataTypeName,
    /// Reduction op (nccl-tests' `redop` column).
    pub(crate) op: ReduceOpName,
    pub(crate) bytes: u64,
    pub(crate) count: usize,
    pub(crate) world: usize,
    pub(crate) out_of_place: Measured,
    pub(crate) in_place: Measured,
    pub(crate) bound: Bound,
    pub(crate) predicted: Prediction,
    /// Wire counters per (source site, destination site) over the whole point (warm-up,
    /// timed and checked iterations of both placements and their barriers), and how many
    /// all-reduces that was.
    pub(crate) wire: Option<(WireByClass, usize)>,
    /// The host's share of the point (same interval as `wire`) and whether it bounded it.
    pub(crate) host: Option<(HostShare, HostVerdict)>,
}

impl SizeResult {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        algo: Algorithm,
        used: Concrete,
        datatype: DataTypeName,
        op: ReduceOpName,
        bytes: u64,
        count: usize,
        world: usize,
        out_of_place: Measured,
        in_place: Measured,
        bound: Bound,
        predicted: Prediction,
    ) -> Self {
        Self {
            algo,
            used,
            datatype,
            op,
            bytes,
            count,
            world,
            out_of_place,
            in_place,
            bound,
            predicted,
            wire: None,
            host: None,
        }
    }

    /// Mean out-of-place time per operation, µs.
    pub(crate) fn mean_us(&self) -> f64 {
        self.out_of_place.mean_us()
    }

    /// Algorithm bandwidth of `m`, decimal GB/s: bytes / time.
    pub(crate) fn algbw_of(&self, m: &Measured) -> f64 {
        let s = m.mean_us() / 1e6;
        if s > 0.0 {
            self.bytes as f64 / 1e9 / s
        } else {
            0.0
        }
    }

    /// Bus bandwidth of `m`: algbw × 2(p−1)/p.
    pub(crate) fn busbw_of(&self, m: &Measured) -> f64 {
        self.algbw_of(m) * Collective::AllReduce.bus_factor(self.world)
    }

    /// Out-of-place bus bandwidth, decimal GB/s.
    pub(crate) fn busbw(&self) -> f64 {
        self.busbw_of(&self.out_of_place)
    }

    /// Reference bound, µs.
    pub(crate) fn bound_us(&self) -> f64 {
        self.bound.total_s * 1e6
    }

    /// Efficiency of the out-of-place run: bound / time, percent.
    pub(crate) fn eff_pct(&self) -> f64 {
        let t = self.mean_us();
        if t > 0.0 {
            100.0 * self.bound_us() / t
        } else {
            0.0
        }
    }

    /// Wrong elements over both placements.
    pub(crate) fn wrong_total(&self) -> usize {
        self.out_of_place.wrong_count() + self.in_place.wrong_count()
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
    pub(crate) links: Vec<super::files::LinkFile>,
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
    /// Results are checked (`-c 1`, nccl-tests' validation).
    pub(crate) check: bool,
    /// Element types and reductions of the sweep (`-d`, `-o`; each row names its own).
    pub(crate) datatypes: Vec<DataTypeName>,
    pub(crate) ops: Vec<ReduceOpName>,
    /// Site of every rank, by rank.
    pub(crate) site_of_rank: Vec<usize>,
    /// Process id of the ranks (one process for a local cluster; `None` for a controller
    /// job, whose ranks are separate node processes).
    pub(crate) pid: Option<u32>,
    /// Where the ranks run.
    pub(crate) host: String,
    /// What would take the host out of host-bound rows (`--clock virtual` in this process,
    /// a larger `--time-dilation` for a cluster).
    pub(crate) remedy: crate::host_share::Remedy,
    /// Dilation K of the scenario clock (1: undilated).
    pub(crate) dilation: u32,
    pub(crate) bound_formula: &'static str,
    pub(crate) site_names: Vec<String>,
    pub(crate) results: Vec<SizeResult>,
    /// Transport counters per rank after the run (`null` for a rank that sent none).
    pub(crate) transport_stats: Vec<serde_json::Value>,
}

impl Sweep {
    pub(crate) fn new(
        args: &AllreduceArgs,
        profile: &Profile,
        cost: &CostModel,
        fabric: String,
        emulated: bool,
        transport: serde_json::Value,
    ) -> anyhow::Result<Self> {
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
                links.push(super::files::LinkFile {
                    from: from.clone(),
                    to: to.clone(),
                    one_way_delay_ms: l.delay_at(Duration::ZERO).as_secs_f64() * 1e3,
                    rate_bps: l.rate_bps,
                    queue_limit_bytes: (l.queue_limit_bytes != u64::MAX)
                        .then_some(l.queue_limit_bytes),
                    loss: (&l.loss).into(),
                    outages: !l.outages.is_up(Duration::ZERO)
                        || l.outages.next_change(Duration::ZERO).is_some(),
                });
            }
        }
        let bound_formula = cost.all_reduce_bound(1.0).formula;
        Ok(Self {
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
            check: args.check != 0,
            datatypes: args.datatypes()?,
            ops: args.ops()?,
            site_of_rank: cost.site_of_rank().to_vec(),
            pid: Some(std::process::id()),
            host: "localhost".to_string(),
            remedy: crate::host_share::Remedy::VirtualClock,
            dilation: 1,
            bound_formula,
            site_names: profile.sites.iter().map(|s| s.name.clone()).collect(),
            results: Vec::new(),
            transport_stats: Vec::new(),
        })
    }

    /// The results of one algorithm, in size order.
    pub(crate) fn results_of(&self, algo: Algorithm) -> impl Iterator<Item = &SizeResult> {
        self.results.iter().filter(move |r| r.algo == algo)
    }

    /// The algorithms of the sweep, in the order they ran.
    pub(crate) fn algorithms(&self) -> Vec<Algorithm> {
        let mut out: Vec<Algorithm> = Vec::new();
        for r in &self.results {
            if !out.contains(&r.algo) {
                out.push(r.algo);
            }
        }
        out
    }

    /// (size × placement) tests of `algo` with any wrong element (nccl-tests' "Out of
    /// bounds values").
    pub(crate) fn out_of_bounds_of(&self, algo: Algorithm) -> usize {
        self.results_of(algo)
            .map(|r| {
                usize::from(r.out_of_place.wrong_count() > 0)
                    + usize::from(r.in_place.wrong_count() > 0)
            })
            .sum()
    }

    /// (size × placement) tests with any wrong element, over every algorithm.
    pub(crate) fn out_of_bounds(&self) -> usize {
        self.algorithms()
            .into_iter()
            .map(|a| self.out_of_bounds_of(a))
            .sum()
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

    /// Mean bus bandwidth of one algorithm's rows, both placements, as nccl-tests computes
    /// it over its (one-algorithm) table.
    pub(crate) fn avg_busbw_of(&self, algo: Algorithm) -> f64 {
        let bws: Vec<f64> = self
            .results_of(algo)
            .flat_map(|r| [r.busbw_of(&r.out_of_place), r.busbw_of(&r.in_place)])
            .collect();
        bws.iter().sum::<f64>() / bws.len().max(1) as f64
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

/// Widths of nccl-tests' fields 1-13 and of our extra columns after them.
const LEAD: [usize; 5] = [12, 12, 8, 6, 6];
const PLACE: [usize; 4] = [7, 6, 6, 6];
const EXTRA: [usize; 5] = [9, 12, 7, 12, 8];

/// One table line: the 13 nccl-tests fields, then the extra columns. The first field of a
/// header line carries the leading `#`.
fn table_line(
    lead: [&str; 5],
    oop: [&str; 4],
    ip: [&str; 4],
    extra: [&str; 5],
    hash: bool,
) -> String {
    let mut out = String::new();
    for (i, (f, w)) in lead.iter().zip(LEAD).enumerate() {
        if i == 0 {
            if hash {
                let _ = write!(out, "#{f:>0$}", w - 1);
            } else {
                let _ = write!(out, "{f:>w$}");
            }
        } else {
            let _ = write!(out, "  {f:>w$}");
        }
    }
    for f in [oop, ip] {
        for (x, w) in f.iter().zip(PLACE) {
            let _ = write!(out, "  {x:>w$}");
        }
    }
    for (x, w) in extra.iter().zip(EXTRA) {
        let _ = write!(out, "  {x:>w$}");
    }
    out
}

/// nccl-tests' time field: `%7.0f` from 10 ms, `%7.1f` from 100 µs, else `%7.2f`.
fn fmt_time_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{us:.0}")
    } else if us >= 100.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.2}")
    }
}

/// A bandwidth field in GB/s: nccl-tests' `%.2f` from 1 GB/s, with more decimals below so a
/// slow link's bandwidth shows three significant digits instead of `0.00` (plain decimal,
/// never an exponent, so any float parser reads it).
fn fmt_gbs(v: f64) -> String {
    if v == 0.0 || !v.is_finite() || v >= 1.0 {
        format!("{v:.2}")
    } else {
        let decimals = (-v.log10().floor()) as usize + 2;
        format!("{v:.decimals$}")
    }
}

/// `#wrong`: the count, or `N/A` when not checked.
fn fmt_wrong(w: Option<usize>) -> String {
    w.map_or_else(|| "N/A".to_string(), |w| w.to_string())
}

/// `v` with `sig` significant digits, plain decimal (as `%g` without the exponent).
fn fmt_sig(v: f64, sig: usize) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let mag = v.abs().log10().floor() as i64;
    let decimals = (sig as i64 - 1 - mag).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A time for people: s, ms or µs with three significant digits.
pub(crate) fn human_time_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", fmt_sig(us / 1e6, 3))
    } else if us >= 1e3 {
        format!("{} ms", fmt_sig(us / 1e3, 3))
    } else {
        format!("{} µs", fmt_sig(us, 3))
    }
}

/// A bandwidth for people from decimal GB/s: bit/s, kbit/s, Mbit/s or Gbit/s.
pub(crate) fn human_bits(gbs: f64) -> String {
    let bits = gbs * 8e9;
    let (v, unit) = if bits >= 1e9 {
        (bits / 1e9, "Gbit/s")
    } else if bits >= 1e6 {
        (bits / 1e6, "Mbit/s")
    } else if bits >= 1e3 {
        (bits / 1e3, "kbit/s")
    } else {
        (bits, "bit/s")
    };
    format!("{} {unit}", fmt_sig(v, 3))
}

/// A size for people: B, KiB, MiB, GiB.
pub(crate) fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes >= 1 << 30 {
        format!("{} GiB", fmt_sig(b / f64::from(1u32 << 30), 3))
    } else if bytes >= 1 << 20 {
        format!("{} MiB", fmt_sig(b / f64::from(1u32 << 20), 3))
    } else if bytes >= 1 << 10 {
        format!("{} KiB", fmt_sig(b / 1024.0, 3))
    } else {
        format!("{bytes} B")
    }
}

/// The run's header: nccl-tests' lines, then what this cluster is.
pub(crate) fn header_text(s: &Sweep) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# spacefabric-bench {} allreduce (table layout of nccl-tests all_reduce_perf)",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(out, "# Collective test starting: all_reduce_perf");
    let _ = writeln!(
        out,
        "# nThread 1 nGpus {} minBytes {} maxBytes {} step: {}(factor) warmup iters: {} iters: {} agg iters: 1 validation: {} graph: 0 unalign: 0",
        s.nodes,
        s.min_bytes,
        s.max_bytes,
        s.step_factor,
        s.warmup,
        s.iters,
        u8::from(s.check)
    );
    let _ = writeln!(
        out,
        "# (nGpus = ranks: one emulated node per rank, no GPU; nThread 1 = one sweep task per rank; every op is blocking, started from a barrier; lanes {} seed {})",
        s.lanes, s.seed
    );
    let _ = writeln!(out, "#");
    let _ = writeln!(out, "# Using devices");
    for (rank, site) in s.site_of_rank.iter().enumerate() {
        let site = s.site_names.get(*site).map_or("?", String::as_str);
        let _ = writeln!(
            out,
            "#  Rank {rank:>2} Group  0 Pid {:>6} on {:>10} device {rank:>2} [site {site}] spacefabric node",
            s.pid.map_or_else(|| "-".to_string(), |p| p.to_string()),
            s.host
        );
    }
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
    if s.dilation > 1 && s.clock == crate::clock::ClockMode::Real {
        let _ = writeln!(
            out,
            "# Time dilation K = {}: every process's emulated clock runs K times slower than the wall clock (links, quinn's timers, barriers); every time below is emulated time (wall / K)",
            s.dilation
        );
    } else if s.dilation > 1 {
        let _ = writeln!(
            out,
            "# Scenario clock dilated K = {}: tokio's 1 ms timer grain is {} ns of emulated time",
            s.dilation,
            1_000_000 / u64::from(s.dilation)
        );
    }
    let _ = writeln!(
        out,
        "# time = mean per op over the timed iterations, until the last rank finishes; algbw = size/time; busbw = algbw*2(p-1)/p (GB/s, 1e9)"
    );
    let _ = writeln!(
        out,
        "# after field 13: algo = algorithm run; bound = reference bound, {}; eff = bound/time (out-of-place); model = cost-model prediction of the schedule on these links; host = HOST:<causes> where this host, not the link model, bounded the row",
        s.bound_formula
    );
    out
}

pub(crate) fn print_header(s: &Sweep) {
    print!("{}", header_text(s));
    let _ = std::io::stdout().flush();
}

/// The column header of one algorithm's table (nccl-tests' three lines, extra columns
/// appended).
pub(crate) fn table_start_text(algo: Algorithm) -> String {
    let names = table_line(
        ["size", "count", "type", "redop", "root"],
        ["time", "algbw", "busbw", "#wrong"],
        ["time", "algbw", "busbw", "#wrong"],
        ["algo", "bound", "eff", "model", "host"],
        true,
    );
    let units = table_line(
        ["(B)", "(elements)", "", "", ""],
        ["(us)", "(GB/s)", "(GB/s)", ""],
        ["(us)", "(GB/s)", "(GB/s)", ""],
        ["", "(us)", "(%)", "(us)", "(bound)"],
        true,
    );
    // `out-of-place` and `in-place` over their time columns, as nccl-tests places them.
    let mut over = String::from("#");
    let cols: Vec<usize> = names.match_indices("time").map(|(i, _)| i).collect();
    for (label, col) in ["out-of-place", "in-place"].iter().zip(cols) {
        let pad = col.saturating_sub(over.len());
        over.push_str(&" ".repeat(pad));
        over.push_str(label);
    }
    format!("#\n# algorithm: {algo}\n{over}\n{names}\n{units}\n")
}

pub(crate) fn print_table_start(_s: &Sweep, algo: Algorithm) {
    print!("{}", table_start_text(algo));
    let _ = std::io::stdout().flush();
}

/// One row: fields 1-13 as all_reduce_perf prints them, then the extra columns.
pub(crate) fn row_text(s: &Sweep, r: &SizeResult) -> String {
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
    let place = |m: &Measured| {
        [
            fmt_time_us(m.mean_us()),
            fmt_gbs(r.algbw_of(m)),
            fmt_gbs(r.busbw_of(m)),
            fmt_wrong(m.wrong),
        ]
    };
    let oop = place(&r.out_of_place);
    let ip = place(&r.in_place);
    let (bytes, count, label) = (r.bytes.to_string(), r.count.to_string(), r.algo_label());
    let host = r.host.as_ref().map_or("-".to_string(), |(_, v)| v.cell());
    table_line(
        [&bytes, &count, r.datatype.name(), r.op.name(), "-1"],
        [&oop[0], &oop[1], &oop[2], &oop[3]],
        [&ip[0], &ip[1], &ip[2], &ip[3]],
        [&label, &bound, &eff, &model, &host],
        false,
    )
}

pub(crate) fn print_row(s: &Sweep, r: &SizeResult) {
    println!("{}", row_text(s, r));
    let _ = std::io::stdout().flush();
}

/// The end of one algorithm's table: nccl-tests' footer over that algorithm only.
pub(crate) fn table_end_text(s: &Sweep, algo: Algorithm) -> String {
    let oob = s.out_of_bounds_of(algo);
    format!(
        "# Out of bounds values : {} {}\n# Avg bus bandwidth    : {}\n",
        oob,
        if oob == 0 { "OK" } else { "FAILED" },
        fmt_sig(s.avg_busbw_of(algo), 6)
    )
}

pub(crate) fn print_table_end(s: &Sweep, algo: Algorithm) {
    print!("{}", table_end_text(s, algo));
    let _ = std::io::stdout().flush();
}

/// The human summary under the tables and nccl-tests' last line.
pub(crate) fn footer_text(s: &Sweep) -> String {
    let mut out = String::from(
        "#\n# Summary (out-of-place mean time | in-place; bus bandwidth in bits per second):\n",
    );
    let _ = writeln!(
        out,
        "#   {:<10} {:>8} {:>5} {:>9}  {:>10} {:>10}  {:>13} {:>13}  {:>10} {:>6}  #wrong",
        "algorithm",
        "type",
        "redop",
        "size",
        "time",
        "in-place",
        "busbw",
        "in-place",
        "bound",
        "eff"
    );
    for r in &s.results {
        let (bound, eff) = if s.emulated {
            (human_time_us(r.bound_us()), format!("{:.1}%", r.eff_pct()))
        } else {
            ("-".to_string(), "-".to_string())
        };
        let _ = writeln!(
            out,
            "#   {:<10} {:>8} {:>5} {:>9}  {:>10} {:>10}  {:>13} {:>13}  {:>10} {:>6}  {}",
            r.algo_label(),
            r.datatype.name(),
            r.op.name(),
            human_size(r.bytes),
            human_time_us(r.out_of_place.mean_us()),
            human_time_us(r.in_place.mean_us()),
            human_bits(r.busbw_of(&r.out_of_place)),
            human_bits(r.busbw_of(&r.in_place)),
            bound,
            eff,
            r.wrong_total()
        );
    }
    let oob = s.out_of_bounds();
    let _ = writeln!(
        out,
        "# Result: {}",
        if !s.check {
            "not checked (-c 0)".to_string()
        } else if oob == 0 {
            "every result exact".to_string()
        } else {
            format!("{oob} test(s) with wrong elements: FAILED")
        }
    );
    let (bound, judged) = s.host_bound_rows();
    if judged > 0 {
        let _ = writeln!(
            out,
            "# Host-bound rows: {bound} of {judged} (clock {}){}",
            s.clock,
            crate::host_share::footer_note_with(s.clock, bound, judged, s.remedy)
        );
    }
    out.push_str("#\n# Collective test concluded: all_reduce_perf\n");
    out
}

pub(crate) fn print_footer(s: &Sweep) {
    print!("{}", footer_text(s));
    let _ = std::io::stdout().flush();
}

/// The sweep's progress bar ([`crate::progress_bar`]): points done, ETA and the point
/// running; the table on stdout is printed around it ([`Progress::suspend`]).
#[derive(Debug)]
pub(crate) struct Progress {
    bar: crate::progress_bar::ProgressBar,
    total: u64,
}

impl Progress {
    /// A bar over `total` points (hidden when stderr is not a terminal).
    pub(crate) fn new(total: usize) -> Self {
        let total = total as u64;
        Self {
            bar: crate::progress_bar::ProgressBar::new(total, "points"),
            total,
        }
    }

    /// `done` points finished; `at` runs next.
    pub(crate) fn point(&self, done: usize, at: &super::PointAt) {
        self.bar.set(
            done as u64,
            self.total,
            format!(
                "running {} {} {} {} B",
                at.algo, at.datatype, at.op, at.bytes
            ),
        );
    }

    /// Runs `f` (which prints to stdout) with the bar cleared, then redraws it.
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        self.bar.finish();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn measured(us: &[u64], wrong: Option<usize>) -> Measured {
        Measured {
            times: us.iter().map(|&u| Duration::from_micros(u)).collect(),
            wrong,
        }
    }

    fn result(algo: Algorithm, bytes: u64, oop: Measured, ip: Measured) -> SizeResult {
        SizeResult::new(
            algo,
            algo.concrete().unwrap_or(Concrete::Hierarchical),
            DataTypeName::Float,
            ReduceOpName::Sum,
            bytes,
            (bytes / 4) as usize,
            8,
            oop,
            ip,
            Bound {
                total_s: 2.56,
                latency_s: 2.56,
                bandwidth_s: 0.0,
                formula: "test",
            },
            Prediction {
                total_s: 2.6,
                finish_s: vec![],
                bytes_by_class: Default::default(),
            },
        )
    }

    /// An Earth-Moon-like sweep: two algorithms, times of seconds.
    pub(crate) fn sweep() -> Sweep {
        Sweep {
            profile: "earth-moon".into(),
            nodes: 8,
            placement: "earth=0-3,moon=4-7".into(),
            links: vec![],
            link_lines: vec!["earth->moon: one-way 1280.000 ms, rate 100 Mbit/s".into()],
            fabric: "test".into(),
            emulated: true,
            transport: serde_json::Value::Null,
            min_bytes: 1024,
            max_bytes: 4096,
            step_factor: 4,
            iters: 2,
            warmup: 1,
            lanes: 4,
            seed: 1,
            clock: crate::clock::ClockMode::Real,
            dilation: 1,
            check: true,
            datatypes: vec![DataTypeName::Float],
            ops: vec![ReduceOpName::Sum],
            site_of_rank: vec![0, 0, 0, 0, 1, 1, 1, 1],
            pid: Some(42),
            host: "localhost".into(),
            remedy: crate::host_share::Remedy::VirtualClock,
            bound_formula: "test",
            site_names: vec!["earth".into(), "moon".into()],
            results: vec![
                result(
                    Algorithm::Ring,
                    1024,
                    measured(&[17_920_000, 17_920_002], Some(0)),
                    measured(&[17_920_000, 17_920_000], Some(0)),
                ),
                result(
                    Algorithm::Ring,
                    4096,
                    measured(&[18_000_000], Some(0)),
                    measured(&[18_000_000], Some(3)),
                ),
                result(
                    Algorithm::Hierarchical,
                    1024,
                    measured(&[2_560_000], Some(0)),
                    measured(&[2_560_000], Some(0)),
                ),
            ],
            transport_stats: vec![],
        }
    }

    /// The whole stdout of a sweep, as the binary prints it.
    fn stdout(s: &Sweep) -> String {
        let mut out = header_text(s);
        for algo in s.algorithms() {
            out.push_str(&table_start_text(algo));
            for r in s.results_of(algo) {
                out.push_str(&row_text(s, r));
                out.push('\n');
            }
            out.push_str(&table_end_text(s, algo));
        }
        out.push_str(&footer_text(s));
        out
    }

    /// What an nccl-tests scraper does: split rows on whitespace, take fields by position.
    #[test]
    fn a_positional_scraper_reads_nccl_tests_fields() {
        let s = sweep();
        let text = stdout(&s);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows.len(), 3, "{text}");
        for (row, r) in rows.iter().zip(&s.results) {
            assert_eq!(row[0], r.bytes.to_string());
            assert_eq!(row[1], r.count.to_string());
            assert_eq!(row[2..5], ["float", "sum", "-1"]);
            // Fields 6-9: out-of-place time, algbw, busbw, #wrong; 10-13: the same in place.
            let time: f64 = row[5].parse().unwrap();
            assert!((time - r.out_of_place.mean_us()).abs() <= 0.5, "{row:?}");
            let busbw: f64 = row[7].parse().unwrap();
            assert!((busbw / r.busbw() - 1.0).abs() < 0.01, "{row:?}");
            assert_eq!(row[8], r.out_of_place.wrong.unwrap().to_string());
            let ip_busbw: f64 = row[11].parse().unwrap();
            assert!((ip_busbw / r.busbw_of(&r.in_place) - 1.0).abs() < 0.01);
            assert_eq!(row[12], r.in_place.wrong.unwrap().to_string());
            // Our extras come after field 13.
            assert_eq!(row[13], r.algo_label());
            assert_eq!(row.len(), 18);
            assert_eq!(row[17], "-"); // host: not judged in this fixture
        }
        // Earth-Moon bandwidths are readable, not 0.00.
        assert_eq!(rows[2][7], "0.000000700");
        // One footer per algorithm; the avg line's last field is that algorithm's mean busbw.
        let avgs: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("# Avg bus bandwidth"))
            .map(|l| l.split_whitespace().last().unwrap().parse().unwrap())
            .collect();
        assert_eq!(avgs.len(), 2);
        let ring = s.avg_busbw_of(Algorithm::Ring);
        assert!((avgs[0] / ring - 1.0).abs() < 1e-5, "{avgs:?} vs {ring}");
        let oob: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("# Out of bounds values"))
            .collect();
        assert_eq!(
            oob,
            [
                "# Out of bounds values : 1 FAILED",
                "# Out of bounds values : 0 OK"
            ]
        );
        assert!(text.contains("# nThread 1 nGpus 8 minBytes 1024 maxBytes 4096 step: 4(factor)"));
        assert!(text.ends_with("# Collective test concluded: all_reduce_perf\n"));
    }

    /// The column header lines line up with nccl-tests': same names at the same field
    /// positions, `out-of-place` over field 6 and `in-place` over field 10.
    #[test]
    fn the_column_header_is_nccl_tests_with_extras_after_field_13() {
        let t = table_start_text(Algorithm::Ring);
        let lines: Vec<&str> = t.lines().collect();
        let names: Vec<&str> = lines[3]
            .trim_start_matches('#')
            .split_whitespace()
            .collect();
        assert_eq!(
            names[..13],
            [
                "size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong",
                "time", "algbw", "busbw", "#wrong"
            ]
        );
        assert_eq!(names[13..], ["algo", "bound", "eff", "model", "host"]);
        let first_time = lines[3].find("time").unwrap();
        let second_time = lines[3].rfind("time").unwrap();
        assert_eq!(lines[2].find("out-of-place"), Some(first_time));
        assert_eq!(lines[2].find("in-place"), Some(second_time));
        // Fields of a data row end where their names end (the columns line up while the
        // values fit nccl-tests' widths; slow links' bandwidths are wider).
        let mut s = sweep();
        s.results[2].out_of_place = Measured {
            times: vec![Duration::from_micros(150)],
            wrong: Some(0),
        };
        s.results[2].in_place = s.results[2].out_of_place.clone();
        s.results[2].bytes = 1 << 20;
        let row = row_text(&s, &s.results[2]);
        let end_of_field = |line: &str, n: usize| {
            let mut fields = 0;
            let mut prev = ' ';
            for (i, c) in line.char_indices() {
                if c == ' ' && prev != ' ' {
                    fields += 1;
                    if fields == n {
                        return i;
                    }
                }
                prev = c;
            }
            line.len()
        };
        let names_line = lines[3].replacen('#', " ", 1);
        for n in 1..=13 {
            assert_eq!(
                end_of_field(&row, n),
                end_of_field(&names_line, n),
                "field {n}\n{row}\n{}",
                lines[3]
            );
        }
    }

    #[test]
    fn human_units() {
        assert_eq!(human_time_us(2_560_000.0), "2.56 s");
        assert_eq!(human_time_us(1_500.0), "1.5 ms");
        assert_eq!(human_time_us(12.345), "12.3 µs");
        assert_eq!(human_bits(0.0125), "100 Mbit/s");
        assert_eq!(human_bits(1e-6), "8 kbit/s");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(fmt_sig(92.34051, 6), "92.3405");
        assert_eq!(fmt_gbs(12.345), "12.35");
        assert_eq!(fmt_gbs(0.0107), "0.0107");
        assert_eq!(fmt_wrong(None), "N/A");
    }
}
