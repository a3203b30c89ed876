//! The files of an all-reduce sweep, written so the tools people already use read them as
//! they are: JSON of typed structs with a `schema_version` (its JSON Schema is checked in
//! at docs/schema/allreduce-sweep.schema.json), CSV through the `csv` crate (quoting
//! included), and HDR histogram V2 interval logs with compressed payloads (the only form
//! HdrHistogram's Java, Python and .NET log readers accept).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use schemars::JsonSchema;
use serde::Serialize;
use spacefabric_node::collective::{Algorithm, Concrete};

use super::AllreduceArgs;
use super::report::{Measured, SizeResult, Sweep};

/// Version of the JSON layout below; bumped on any change a reader could notice.
pub(crate) const SCHEMA_VERSION: u32 = 3;

/// An algorithm, by its command-line name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub(crate) enum AlgorithmName {
    #[serde(rename = "ring")]
    Ring,
    #[serde(rename = "hd")]
    HalvingDoubling,
    #[serde(rename = "tree")]
    Tree,
    #[serde(rename = "hier")]
    Hierarchical,
    #[serde(rename = "auto")]
    Auto,
}

impl From<Algorithm> for AlgorithmName {
    fn from(a: Algorithm) -> Self {
        match a {
            Algorithm::Ring => Self::Ring,
            Algorithm::HalvingDoubling => Self::HalvingDoubling,
            Algorithm::Tree => Self::Tree,
            Algorithm::Hierarchical => Self::Hierarchical,
            Algorithm::Auto => Self::Auto,
        }
    }
}

impl From<Concrete> for AlgorithmName {
    fn from(c: Concrete) -> Self {
        Algorithm::from(c).into()
    }
}

/// The whole sweep (`--json`).
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct SweepFile {
    /// Layout version of this file ([`SCHEMA_VERSION`]).
    pub(crate) schema_version: u32,
    /// `spacefabric-bench allreduce`.
    pub(crate) tool: String,
    /// Version of the tool.
    pub(crate) tool_version: String,
    /// Profile name.
    pub(crate) profile: String,
    /// Ranks.
    pub(crate) nodes: usize,
    /// Ranks per site, e.g. `earth=0-3,moon=4-7`.
    pub(crate) placement: String,
    /// Whether the profile's links were applied.
    pub(crate) emulated: bool,
    /// Which clock ran: `real` (wall clock, host CPU included) or `virtual` (tokio's paused
    /// clock: link model and protocol only).
    pub(crate) clock: String,
    /// Dilation K of the scenario clock: emulated time runs K times slower than the runtime's
    /// clock (1: undilated; the virtual clock dilates so tokio's 1 ms grain is ≤ 1 µs).
    pub(crate) clock_dilation: u32,
    /// Rows the host, not the link model, bounded.
    pub(crate) host_bound_rows: HostBoundRowsFile,
    /// What carried the messages.
    pub(crate) fabric: String,
    /// The profile's links between the populated sites.
    pub(crate) links: Vec<LinkFile>,
    /// Transport settings (QUIC tuning per link, datagram size), as reported by the fabric.
    pub(crate) transport: serde_json::Value,
    /// Transport counters of every rank after the run (connections, re-connections,
    /// resumed transfers, payload bytes...; `null` where a rank reported none).
    pub(crate) transport_counters_per_rank: Vec<serde_json::Value>,
    /// Settings of the sweep (nccl-tests' `config`).
    pub(crate) config: ConfigFile,
    /// How the reference bound is computed.
    pub(crate) bound_formula: String,
    /// One entry per (algorithm, size).
    pub(crate) results: Vec<ResultFile>,
    /// nccl-tests' footer, per algorithm (one table per algorithm).
    pub(crate) per_algorithm: Vec<AlgorithmSummaryFile>,
    /// (size × placement) tests with any wrong element, over every algorithm.
    pub(crate) out_of_bounds: OutOfBoundsFile,
}

/// One link of the profile.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct LinkFile {
    pub(crate) from: String,
    pub(crate) to: String,
    /// One-way propagation delay at the scenario epoch, ms.
    pub(crate) one_way_delay_ms: f64,
    /// Rate, bit/s (`null`: unlimited).
    pub(crate) rate_bps: Option<u64>,
    /// Queue limit, bytes (`null`: unlimited).
    pub(crate) queue_limit_bytes: Option<u64>,
    /// Loss model of the link.
    pub(crate) loss: LossFile,
    /// Whether the link has outages.
    pub(crate) outages: bool,
}

/// A link's loss model.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(tag = "model", rename_all = "snake_case")]
pub(crate) enum LossFile {
    /// No loss.
    None,
    /// Independent loss with probability `p`.
    Bernoulli { p: f64 },
    /// Gilbert-Elliott bursts, netem's parameters: `p` good→bad, `r` bad→good per
    /// datagram; delivered with probability `k` in the good state, `h` in the bad one.
    GilbertElliott { p: f64, r: f64, h: f64, k: f64 },
}

impl From<&netem_profiles::LossModel> for LossFile {
    fn from(l: &netem_profiles::LossModel) -> Self {
        match *l {
            netem_profiles::LossModel::None => Self::None,
            netem_profiles::LossModel::Bernoulli { p } => Self::Bernoulli { p },
            netem_profiles::LossModel::GilbertElliott { p, r, h, k } => {
                Self::GilbertElliott { p, r, h, k }
            }
        }
    }
}

/// Settings of the sweep.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ConfigFile {
    pub(crate) minimum_bytes: u64,
    pub(crate) maximum_bytes: u64,
    pub(crate) step_factor: u64,
    pub(crate) warmup_iters: usize,
    pub(crate) iterations: usize,
    /// 1 when results were checked (`-c 1`).
    pub(crate) validation: u8,
    pub(crate) lanes: usize,
    pub(crate) seed: u64,
    /// Element types of the sweep (`-d`, `all` expanded; each result names its own),
    /// comma-separated in the order they ran.
    pub(crate) datatype: String,
    /// Reductions of the sweep (`-o`), comma-separated.
    pub(crate) redop: String,
}

/// One (algorithm, size).
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ResultFile {
    pub(crate) algorithm: AlgorithmName,
    /// What `auto` chose (the algorithm itself otherwise).
    pub(crate) algorithm_used: AlgorithmName,
    /// Element type (nccl-tests' `type`).
    pub(crate) datatype: String,
    /// Reduction (nccl-tests' `redop`).
    pub(crate) redop: String,
    pub(crate) size_bytes: u64,
    /// Elements per rank: size_bytes / the element size.
    pub(crate) count: usize,
    pub(crate) n_ranks: usize,
    pub(crate) out_of_place: PlacementFile,
    pub(crate) in_place: PlacementFile,
    /// Reference bound, µs, and its parts.
    pub(crate) bound_us: f64,
    pub(crate) bound_latency_us: f64,
    pub(crate) bound_bandwidth_us: f64,
    /// bound / out-of-place time, percent.
    pub(crate) efficiency_pct: f64,
    /// Cost-model prediction of the schedule, µs.
    pub(crate) model_us: f64,
    /// Payload bytes per op the schedule puts on each (source site, destination site).
    pub(crate) bytes_per_link_class: Vec<ClassBytesFile>,
    /// What the emulated links carried over this whole point (local QUIC fabric only).
    pub(crate) wire_per_link_class: Vec<WireFile>,
    /// The host's share of this point and whether the host, not the link model, bounded it
    /// (a controller job: the worst rank's, measured by the nodes; `null` where not judged:
    /// nodes that do not report it).
    pub(crate) host: Option<HostFile>,
}

/// The host's share of one point.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct HostFile {
    /// CPU, run-queue wait, delay-line lateness and receive-buffer drops over the point.
    pub(crate) share: crate::host_share::HostShare,
    /// The row missed its model and the host shows a cause.
    pub(crate) host_bound: bool,
    /// Causes seen (`cpu`, `cpu-wait`, `late`, `rcvbuf`), whether or not the row missed.
    pub(crate) causes: Vec<String>,
    /// What would take the host out of the result (empty when not host-bound).
    pub(crate) avoid_with: String,
}

/// How many rows the host bounded.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct HostBoundRowsFile {
    /// Rows marked host-bound.
    pub(crate) count: usize,
    /// Rows judged.
    pub(crate) judged: usize,
}

/// One placement (nccl-tests' `out_of_place` / `in_place`).
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct PlacementFile {
    /// Mean time per op, µs (nccl-tests' `time`).
    pub(crate) time_us: f64,
    pub(crate) alg_bw_gbs: f64,
    pub(crate) bus_bw_gbs: f64,
    /// Wrong elements summed over ranks (`null`: not checked).
    pub(crate) nwrong: Option<usize>,
    /// Every timed iteration's time (slowest rank), µs.
    pub(crate) times_us: Vec<f64>,
    pub(crate) p50_us: f64,
    pub(crate) p95_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) min_us: f64,
    pub(crate) max_us: f64,
}

/// Payload bytes of one link class.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ClassBytesFile {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) payload_bytes_per_op: u64,
}

/// Wire counters of one link class.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct WireFile {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) all_reduces_counted: usize,
    pub(crate) datagrams: u64,
    pub(crate) udp_payload_bytes: u64,
    pub(crate) udp_payload_bytes_per_op: f64,
    pub(crate) emulator_dropped_datagrams: u64,
    pub(crate) quic_sent_packets: u64,
    pub(crate) quic_lost_packets: u64,
}

/// nccl-tests' footer of one algorithm's table.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct AlgorithmSummaryFile {
    pub(crate) algorithm: AlgorithmName,
    pub(crate) out_of_bounds: OutOfBoundsFile,
    /// Mean bus bandwidth over the algorithm's rows, both placements, GB/s.
    pub(crate) average_bus_bandwidth_gbs: f64,
}

/// nccl-tests' `out_of_bounds`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct OutOfBoundsFile {
    pub(crate) count: usize,
    pub(crate) okay: bool,
}

fn site(s: &Sweep, i: usize) -> String {
    s.site_names
        .get(i)
        .cloned()
        .unwrap_or_else(|| format!("site#{i}"))
}

fn placement_file(r: &SizeResult, m: &Measured) -> PlacementFile {
    PlacementFile {
        time_us: m.mean_us(),
        alg_bw_gbs: r.algbw_of(m),
        bus_bw_gbs: r.busbw_of(m),
        nwrong: m.wrong,
        times_us: m.times.iter().map(|t| t.as_secs_f64() * 1e6).collect(),
        p50_us: m.percentile_us(50.0),
        p95_us: m.percentile_us(95.0),
        p99_us: m.percentile_us(99.0),
        min_us: m.percentile_us(0.0),
        max_us: m.percentile_us(100.0),
    }
}

/// The sweep as the typed JSON file.
pub(crate) fn sweep_file(s: &Sweep) -> SweepFile {
    let results = s
        .results
        .iter()
        .map(|r| {
            let mut classes: Vec<ClassBytesFile> = r
                .predicted
                .bytes_by_class
                .iter()
                .map(|(&(a, b), &bytes)| ClassBytesFile {
                    from: site(s, a),
                    to: site(s, b),
                    payload_bytes_per_op: bytes,
                })
                .collect();
            classes.sort_by(|x, y| (&x.from, &x.to).cmp(&(&y.from, &y.to)));
            let wire = r
                .wire
                .iter()
                .flat_map(|(by_class, ops)| {
                    by_class.iter().map(move |(&(a, b), c)| WireFile {
                        from: site(s, a),
                        to: site(s, b),
                        all_reduces_counted: *ops,
                        datagrams: c.datagrams,
                        udp_payload_bytes: c.udp_payload_bytes,
                        udp_payload_bytes_per_op: c.udp_payload_bytes as f64 / (*ops).max(1) as f64,
                        emulator_dropped_datagrams: c.dropped,
                        quic_sent_packets: c.quic_sent_packets,
                        quic_lost_packets: c.quic_lost_packets,
                    })
                })
                .collect();
            ResultFile {
                algorithm: r.algo.into(),
                algorithm_used: r.used.into(),
                datatype: r.datatype.name().to_string(),
                redop: r.op.name().to_string(),
                size_bytes: r.bytes,
                count: r.count,
                n_ranks: r.world,
                out_of_place: placement_file(r, &r.out_of_place),
                in_place: placement_file(r, &r.in_place),
                bound_us: r.bound_us(),
                bound_latency_us: r.bound.latency_s * 1e6,
                bound_bandwidth_us: r.bound.bandwidth_s * 1e6,
                efficiency_pct: r.eff_pct(),
                model_us: r.predicted.total_s * 1e6,
                bytes_per_link_class: classes,
                wire_per_link_class: wire,
                host: r.host.as_ref().map(|(share, v)| HostFile {
                    share: *share,
                    host_bound: v.host_bound,
                    causes: v.causes.iter().map(ToString::to_string).collect(),
                    avoid_with: v.avoid_with.clone(),
                }),
            }
        })
        .collect();
    let per_algorithm = s
        .algorithms()
        .into_iter()
        .map(|a| {
            let count = s.out_of_bounds_of(a);
            AlgorithmSummaryFile {
                algorithm: a.into(),
                out_of_bounds: OutOfBoundsFile {
                    count,
                    okay: count == 0,
                },
                average_bus_bandwidth_gbs: s.avg_busbw_of(a),
            }
        })
        .collect();
    let oob = s.out_of_bounds();
    SweepFile {
        schema_version: SCHEMA_VERSION,
        tool: "spacefabric-bench allreduce".to_string(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        profile: s.profile.clone(),
        nodes: s.nodes,
        placement: s.placement.clone(),
        emulated: s.emulated,
        clock: s.clock.name().to_string(),
        clock_dilation: s.dilation,
        host_bound_rows: {
            let (count, judged) = s.host_bound_rows();
            HostBoundRowsFile { count, judged }
        },
        fabric: s.fabric.clone(),
        links: s.links.clone(),
        transport: s.transport.clone(),
        transport_counters_per_rank: s.transport_stats.clone(),
        config: ConfigFile {
            minimum_bytes: s.min_bytes,
            maximum_bytes: s.max_bytes,
            step_factor: s.step_factor,
            warmup_iters: s.warmup,
            iterations: s.iters,
            validation: u8::from(s.check),
            lanes: s.lanes,
            seed: s.seed,
            datatype: join_names(s.datatypes.iter().map(|d| d.name())),
            redop: join_names(s.ops.iter().map(|o| o.name())),
        },
        bound_formula: s.bound_formula.to_string(),
        results,
        per_algorithm,
        out_of_bounds: OutOfBoundsFile {
            count: oob,
            okay: oob == 0,
        },
    }
}

/// `a,b,c`.
fn join_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(",")
}

/// The JSON Schema of [`SweepFile`] (checked in at docs/schema/allreduce-sweep.schema.json).
#[cfg(test)]
pub(crate) fn sweep_schema() -> String {
    let schema = schemars::schema_for!(SweepFile);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

/// One CSV row per (algorithm, size, placement).
#[derive(Debug, Serialize)]
struct CsvRow<'a> {
    profile: &'a str,
    nodes: usize,
    emulated: bool,
    algorithm: AlgorithmName,
    algorithm_used: AlgorithmName,
    placement: &'static str,
    size_bytes: u64,
    count: usize,
    datatype: &'a str,
    redop: &'a str,
    time_us: f64,
    p50_us: f64,
    p95_us: f64,
    p99_us: f64,
    algbw_gbs: f64,
    busbw_gbs: f64,
    /// Empty when not checked.
    nwrong: Option<usize>,
    bound_us: f64,
    eff_pct: f64,
    model_us: f64,
}

/// The sweep as CSV (a header row, then one row per algorithm, size and placement).
pub(crate) fn to_csv(s: &Sweep) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in &s.results {
        for (placement, m) in [("out-of-place", &r.out_of_place), ("in-place", &r.in_place)] {
            let t = m.mean_us();
            w.serialize(CsvRow {
                profile: &s.profile,
                nodes: s.nodes,
                emulated: s.emulated,
                algorithm: r.algo.into(),
                algorithm_used: r.used.into(),
                placement,
                size_bytes: r.bytes,
                count: r.count,
                datatype: r.datatype.name(),
                redop: r.op.name(),
                time_us: t,
                p50_us: m.percentile_us(50.0),
                p95_us: m.percentile_us(95.0),
                p99_us: m.percentile_us(99.0),
                algbw_gbs: r.algbw_of(m),
                busbw_gbs: r.busbw_of(m),
                nwrong: m.wrong,
                bound_us: r.bound_us(),
                eff_pct: if t > 0.0 {
                    100.0 * r.bound_us() / t
                } else {
                    0.0
                },
                model_us: r.predicted.total_s * 1e6,
            })
            .context("writing a CSV row")?;
        }
    }
    w.into_inner()
        .map_err(|e| anyhow::anyhow!("finishing the CSV: {e}"))
}

/// The iteration times of one placement as a histogram of microseconds.
fn histogram(m: &Measured) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    let mut h = hdrhistogram::Histogram::<u64>::new(3).context("creating a histogram")?;
    for t in &m.times {
        let us = u64::try_from(t.as_micros()).unwrap_or(u64::MAX).max(1);
        h.record(us).context("recording a time")?;
    }
    Ok(h)
}

/// The HDR V2 interval log of one (algorithm, size): an interval tagged `out-of-place`
/// and one tagged `in-place`, payloads compressed (cookie 0x1c849314).
pub(crate) fn hdr_log(s: &Sweep, r: &SizeResult) -> anyhow::Result<Vec<u8>> {
    use hdrhistogram::serialization::V2DeflateSerializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    let mut buf = Vec::new();
    let mut ser = V2DeflateSerializer::new();
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
        let mut start = Duration::ZERO;
        for (tag, m) in [("out-of-place", &r.out_of_place), ("in-place", &r.in_place)] {
            let total: Duration = m.times.iter().sum();
            let tag = Tag::new(tag).context("an HDR log tag")?;
            w.write_histogram(&histogram(m)?, start, total, Some(tag))
                .map_err(|e| anyhow::anyhow!("writing the HDR log: {e:?}"))?;
            start += total;
        }
    }
    Ok(buf)
}

fn write_hdr(s: &Sweep, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating --hdr-dir {}", dir.display()))?;
    for r in &s.results {
        let path = dir.join(format!(
            "allreduce-{}-{}-{}B.hlog",
            s.profile,
            r.algo.short_name(),
            r.bytes
        ));
        std::fs::write(&path, hdr_log(s, r)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Writes the files asked for by `--json`, `--csv`, `--hdr-dir` and `--plot`.
pub(crate) fn write_files(s: &Sweep, args: &AllreduceArgs) -> anyhow::Result<()> {
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&sweep_file(s))?;
        std::fs::write(p, text).with_context(|| format!("writing --json {}", p.display()))?;
    }
    if let Some(p) = &args.csv {
        std::fs::write(p, to_csv(s)?).with_context(|| format!("writing --csv {}", p.display()))?;
    }
    if let Some(dir) = &args.hdr_dir {
        write_hdr(s, dir)?;
    }
    if let Some(p) = &args.plot {
        std::fs::write(p, super::plot::svg(s)?)
            .with_context(|| format!("writing --plot {}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use base64::Engine as _;
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    const SCHEMA_PATH: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/schema/allreduce-sweep.schema.json"
    );

    /// The checked-in schema is the schema of the structs the JSON is written from
    /// (`SPACEFABRIC_BLESS_SCHEMA=1 cargo test -p spacefabric-bench schema` rewrites it).
    #[test]
    fn the_checked_in_schema_matches_the_json_structs() {
        let generated = sweep_schema();
        if std::env::var_os("SPACEFABRIC_BLESS_SCHEMA").is_some() {
            std::fs::write(SCHEMA_PATH, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(SCHEMA_PATH).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{SCHEMA_PATH} is stale: rerun with SPACEFABRIC_BLESS_SCHEMA=1 and commit it"
        );
    }

    /// A small validator for the subset of JSON Schema that schemars emits for our
    /// structs: `$ref` into `$defs`, `type` (with `null` unions), `properties`/`required`,
    /// `items`, `enum`/`const` and `oneOf`. Returns the first violation.
    fn validate(
        root: &serde_json::Value,
        schema: &serde_json::Value,
        v: &serde_json::Value,
        at: &str,
    ) -> Result<(), String> {
        use serde_json::Value;
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let name = r.trim_start_matches("#/$defs/");
            let def = &root["$defs"][name];
            return validate(root, def, v, at);
        }
        if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
            let ok = alts
                .iter()
                .filter(|a| validate(root, a, v, at).is_ok())
                .count();
            return if ok == 1 {
                Ok(())
            } else {
                Err(format!("{at}: {ok} of oneOf match"))
            };
        }
        if let Some(alts) = schema.get("anyOf").and_then(Value::as_array) {
            return if alts.iter().any(|a| validate(root, a, v, at).is_ok()) {
                Ok(())
            } else {
                Err(format!("{at}: no anyOf matches"))
            };
        }
        if let Some(c) = schema.get("const")
            && c != v
        {
            return Err(format!("{at}: {v} is not {c}"));
        }
        if let Some(e) = schema.get("enum").and_then(Value::as_array)
            && !e.contains(v)
        {
            return Err(format!("{at}: {v} is not one of {e:?}"));
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.is_empty() {
            let ok = types.iter().any(|t| match *t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "boolean" => v.is_boolean(),
                "null" => v.is_null(),
                "integer" => v.is_u64() || v.is_i64(),
                "number" => v.is_number(),
                _ => false,
            });
            if !ok {
                return Err(format!("{at}: {v} is not {types:?}"));
            }
        }
        if let (Some(props), Some(obj)) = (
            schema.get("properties").and_then(Value::as_object),
            v.as_object(),
        ) {
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !obj.contains_key(req) {
                    return Err(format!("{at}: missing {req}"));
                }
            }
            for (k, x) in obj {
                match props.get(k) {
                    Some(ps) => validate(root, ps, x, &format!("{at}.{k}"))?,
                    None => return Err(format!("{at}: unexpected property {k}")),
                }
            }
        }
        if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
            for (i, x) in arr.iter().enumerate() {
                validate(root, items, x, &format!("{at}[{i}]"))?;
            }
        }
        Ok(())
    }

    fn sweep() -> Sweep {
        let mut s = crate::allreduce::report::tests::sweep();
        s.links = vec![LinkFile {
            from: "earth".into(),
            to: "moon".into(),
            one_way_delay_ms: 1280.0,
            rate_bps: Some(100_000_000),
            queue_limit_bytes: None,
            loss: LossFile::GilbertElliott {
                p: 0.01,
                r: 0.5,
                h: 0.5,
                k: 1.0,
            },
            outages: false,
        }];
        s
    }

    #[test]
    fn the_json_validates_against_the_checked_in_schema_and_has_no_debug_text() {
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(SCHEMA_PATH).unwrap()).unwrap();
        let s = sweep();
        let v = serde_json::to_value(sweep_file(&s)).unwrap();
        validate(&schema, &schema, &v, "$").unwrap();
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert_eq!(v["results"][2]["algorithm"], "hier");
        assert_eq!(v["links"][0]["loss"]["model"], "gilbert_elliott");
        assert_eq!(v["results"][1]["in_place"]["nwrong"], 3);
        // A wrong value is caught: the validator is not a rubber stamp.
        let mut bad = v.clone();
        bad["results"][0]["algorithm"] = "Ring".into();
        assert!(validate(&schema, &schema, &bad, "$").is_err());
        let text = v.to_string();
        for debug in ["{ ", "Some(", "None\"", "LinkTuning"] {
            assert!(!text.contains(debug), "Debug text {debug:?} in {text}");
        }
    }

    #[test]
    fn csv_quotes_names_with_commas_and_quotes() {
        let mut s = sweep();
        s.profile = "moon, \"far side\"".into();
        let bytes = to_csv(&s).unwrap();
        let mut r = csv::Reader::from_reader(bytes.as_slice());
        let headers = r.headers().unwrap().clone();
        assert_eq!(&headers[0], "profile");
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        // One row per (algorithm, size, placement).
        assert_eq!(rows.len(), 2 * s.results.len());
        for row in &rows {
            assert_eq!(row.len(), headers.len());
            assert_eq!(&row[0], "moon, \"far side\"");
        }
        let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
        assert_eq!(&rows[3][col("placement")], "in-place");
        assert_eq!(&rows[3][col("nwrong")], "3");
        assert_eq!(&rows[4][col("algorithm")], "hier");
    }

    /// The log round-trips through hdrhistogram's own reader with compressed payloads
    /// (cookie 0x1c849314, what HdrHistogram's Java/Python/.NET readers require), and its
    /// percentiles are those the table and the JSON print.
    #[test]
    fn hdr_logs_are_compressed_and_round_trip() {
        let mut s = sweep();
        s.results[0].out_of_place = Measured {
            times: (1..=100).map(|i| Duration::from_micros(i * 1000)).collect(),
            wrong: Some(0),
        };
        let r = &s.results[0];
        let log = hdr_log(&s, r).unwrap();
        let mut seen = Vec::new();
        for entry in IntervalLogIterator::new(&log) {
            let LogEntry::Interval(i) = entry.unwrap() else {
                continue;
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(i.encoded_histogram())
                .unwrap();
            assert_eq!(
                bytes[..4],
                0x1c84_9314u32.to_be_bytes(),
                "compressed V2 cookie"
            );
            let h: hdrhistogram::Histogram<u64> = Deserializer::new()
                .deserialize(&mut bytes.as_slice())
                .unwrap();
            let tag = i.tag().unwrap().as_str().to_string();
            let m = if tag == "out-of-place" {
                &r.out_of_place
            } else {
                &r.in_place
            };
            assert_eq!(h.len(), m.times.len() as u64);
            for q in [50.0, 99.0] {
                let want = m.percentile_us(q);
                let got = h.value_at_percentile(q) as f64;
                assert!(
                    (got / want - 1.0).abs() < 1e-3,
                    "{tag} p{q}: {got} vs {want}"
                );
            }
            seen.push(tag);
        }
        assert_eq!(seen, ["out-of-place", "in-place"]);
    }
}
