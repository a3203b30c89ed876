//! `spacefabric-bench allreduce`: an nccl-tests-style all-reduce sweep over the emulated
//! fabric, every algorithm side by side with the cost model's prediction and the reference
//! bound.
//!
//! For every algorithm and every size: `-w` warm-up iterations, `-n` timed iterations (all
//! ranks start together; an iteration's time is until the last rank finishes), then one
//! checked iteration on inputs whose results are exact for every `-d` datatype and `-o` op
//! (see `spacefabric_node::collective::verify`); any wrong element fails the run (exit code
//! 3). The table on stdout follows nccl-tests' layout so existing scrapers work; a progress
//! bar (indicatif) goes to stderr when it is a terminal; `--json`, `--csv`, `--hdr-dir` and
//! `--plot` write the same results as files.

mod controller_job;
pub(crate) mod fabric;
mod files;
mod plot;
mod report;

use crate::byte_size::parse_size;
use crate::profile_flag::load_profile;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use netem_profiles::Profile;
use spacefabric_node::collective::sweep::{SweepPoint, SweepSpec, run_sweep};
use spacefabric_node::collective::{
    Algorithm, Collective, Communicator, Corruption, CostModel, DataTypeName, Exchange,
    ReduceOpName,
};

use crate::admission;
use crate::bench_defaults;
use crate::clock::ClockMode;
use crate::host_share::{HostShare, judge};
use spacefabric_node::collective::CollectiveConfig;
use spacefabric_proto::all_reduce_job::defaults as job_defaults;

pub(crate) use report::{SizeResult, Sweep};

/// Default UDP payload of the local cluster's datagrams (see `--udp-payload`).
const DEFAULT_UDP_PAYLOAD: u16 = 16 * 1024;

/// Flags of `spacefabric-bench allreduce`.
#[derive(Debug, Clone, Args)]
pub(crate) struct AllreduceArgs {
    /// Profile: a TOML file, or the name of a shipped profile (lan, earth-moon, ...).
    #[arg(long, env = "SPACEFABRIC_PROFILE", default_value = bench_defaults::PROFILE)]
    profile: String,
    /// Number of nodes (ranks). They are placed on the profile's sites in file order, in
    /// equal blocks (8 nodes on earth-moon: ranks 0-3 on Earth, 4-7 on the Moon).
    #[arg(long, env = "SPACEFABRIC_NODES", default_value_t = bench_defaults::NODES)]
    nodes: usize,
    /// Element types (nccl-tests' `-d`), comma-separated: int8, uint8, int32, uint32, int64,
    /// uint64, half, float, double, bfloat16, or all. Each size is bytes / element size
    /// elements.
    #[arg(
        short = 'd',
        long = "datatype",
        env = "SPACEFABRIC_DATATYPE",
        value_delimiter = ',',
        default_value = job_defaults::DATATYPE,
        value_parser = parse_datatype
    )]
    datatype: Vec<String>,
    /// Reduction ops (nccl-tests' `-o`), comma-separated: sum, prod, max, min, avg, or all.
    #[arg(
        short = 'o',
        long = "op",
        env = "SPACEFABRIC_OP",
        value_delimiter = ',',
        default_value = job_defaults::OP,
        value_parser = parse_op
    )]
    op: Vec<String>,
    /// Algorithms, comma-separated: ring, hd, tree, hier, auto.
    #[arg(
        long,
        env = "SPACEFABRIC_ALGO",
        value_delimiter = ',',
        default_value = job_defaults::ALGORITHMS
    )]
    algo: Vec<Algorithm>,
    /// Smallest size in bytes per rank (suffixes K, M, G = 2^10, 2^20, 2^30).
    #[arg(short = 'b', long = "minbytes", env = "SPACEFABRIC_MINBYTES", default_value_t = job_defaults::MIN_BYTES, value_parser = parse_size)]
    min_bytes: u64,
    /// Largest size in bytes per rank.
    #[arg(short = 'e', long = "maxbytes", env = "SPACEFABRIC_MAXBYTES", default_value_t = job_defaults::MAX_BYTES, value_parser = parse_size)]
    max_bytes: u64,
    /// Multiplicative step between sizes.
    #[arg(
        short = 'f',
        long = "stepfactor",
        env = "SPACEFABRIC_STEPFACTOR",
        default_value_t = u64::from(job_defaults::FACTOR)
    )]
    step_factor: u64,
    /// Timed iterations per size.
    #[arg(
        short = 'n',
        long = "iters",
        env = "SPACEFABRIC_ITERS",
        default_value_t = job_defaults::ITERATIONS as usize
    )]
    iters: usize,
    /// Warm-up iterations per size (not timed).
    #[arg(
        short = 'w',
        long = "warmup_iters",
        env = "SPACEFABRIC_WARMUP_ITERS",
        default_value_t = job_defaults::WARMUP as usize
    )]
    warmup: usize,
    /// Check the results (nccl-tests' `-c`): 1 runs one checked iteration per size and
    /// placement on exact inputs; 0 skips it (`#wrong` prints `N/A`).
    #[arg(short = 'c', long = "check", env = "SPACEFABRIC_CHECK", default_value_t = u8::from(job_defaults::CHECK), value_parser = clap::value_parser!(u8).range(0..=1))]
    pub(crate) check: u8,
    /// Blocking collectives (nccl-tests' `-z`): accepted for nccl-tests command lines; every
    /// operation here is blocking anyway (each starts from a barrier of all ranks), so 0
    /// and 1 measure the same thing.
    #[arg(short = 'z', long = "blocking", env = "SPACEFABRIC_BLOCKING", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    blocking: u8,
    /// Turn the link emulation off (same code, links pass through): the overhead baseline.
    #[arg(long, env = "SPACEFABRIC_NO_EMULATION")]
    no_emulation: bool,
    /// Lanes each vector is split into (concurrent streams per hop).
    #[arg(long, env = "SPACEFABRIC_LANES", default_value_t = CollectiveConfig::default().lanes)]
    lanes: usize,
    /// Congestion controller of the QUIC connections: cubic, bbr or link-aware.
    #[arg(long, env = "SPACEFABRIC_CC", default_value = "link-aware")]
    cc: spacefabric_fabric::transport::CcChoice,
    /// UDP payload bytes per fabric datagram, 1200..=65507. The default, 16 KiB, cuts the
    /// per-datagram CPU cost (syscalls, delay-line scheduling, QUIC packet handling) of
    /// 8 nodes on one loopback host about elevenfold against Ethernet-sized datagrams
    /// (1452, what node processes use); every datagram still takes its full length's
    /// serialisation time on the emulated link, and delays are unchanged. Measured in
    /// docs/BENCHMARKS.md ("CPU cost at large sizes").
    #[arg(long, env = "SPACEFABRIC_UDP_PAYLOAD", default_value_t = DEFAULT_UDP_PAYLOAD)]
    udp_payload: u16,
    /// Seed of the checked iteration's inputs.
    #[arg(long, env = "SPACEFABRIC_SEED", default_value_t = bench_defaults::SEED)]
    seed: u64,
    /// Clock of the local cluster: `real` (wall clock, host CPU included) or `virtual`
    /// (tokio's paused clock, one thread: link model and protocol only; same seed, same
    /// table). Not with --controller.
    #[arg(long, env = "SPACEFABRIC_CLOCK", value_enum, default_value_t = ClockMode::Real)]
    clock: ClockMode,
    /// Fabric of the local cluster: `quic` (real QUIC over emulated links) or `memory`
    /// (in-process mailboxes, no links: for testing the harness).
    #[arg(long, env = "SPACEFABRIC_FABRIC", default_value = "quic")]
    fabric: fabric::FabricKind,
    /// Test hook (memory fabric only): corrupt the first element of the n-th message from
    /// rank A to rank B, given as `A:B:n`, to check that wrong results fail the run.
    #[arg(long, hide = true, value_parser = parse_corruption)]
    corrupt: Option<Corruption>,
    /// Test hook: hold the delay line back this many µs before every delivery, as a starved
    /// host would (the rows must then be marked host-bound).
    #[arg(long, hide = true)]
    starve_delay_line_us: Option<u64>,
    /// Run the sweep as a job of a running cluster's controller (its node processes) instead
    /// of starting a local cluster in this process.
    #[arg(long, env = "SPACEFABRIC_CONTROLLER")]
    controller: Option<String>,
    /// The cluster's join token (with --controller).
    #[arg(long, env = "SPACEFABRIC_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// With an https:// --controller: the CA certificate (PEM) to trust (the controller's
    /// `<state-dir>/ca.cert.pem`).
    #[arg(
        long = "controller-ca",
        alias = "ca-cert",
        env = "SPACEFABRIC_CONTROLLER_CA"
    )]
    ca_cert: Option<PathBuf>,
    /// With --controller: start the job only once this many nodes are alive (0: any).
    #[arg(long, env = "SPACEFABRIC_MIN_NODES", default_value_t = 0)]
    min_nodes: u32,
    /// With --controller: the time dilation K the cluster must run (integer ≥ 1; refused,
    /// naming both, when the controller's differs). Default: the controller's. The report's
    /// times are emulated time either way. Not for in-process runs (use --clock virtual).
    #[arg(long, env = "SPACEFABRIC_TIME_DILATION")]
    time_dilation: Option<spacefabric_proto::time_dilation::TimeDilation>,
    /// Write every result (per-iteration times, percentiles, bytes per link class, links,
    /// transport settings) as JSON to this file.
    #[arg(long, env = "SPACEFABRIC_JSON")]
    json: Option<PathBuf>,
    /// Write one CSV row per (algorithm, size) to this file.
    #[arg(long, env = "SPACEFABRIC_CSV")]
    csv: Option<PathBuf>,
    /// Write an HDR histogram interval log (V2) of iteration times per (algorithm, size) here.
    #[arg(long, env = "SPACEFABRIC_HDR_DIR")]
    hdr_dir: Option<PathBuf>,
    /// Write an SVG plot of time and bus bandwidth against size per algorithm, with the bound.
    #[arg(long, env = "SPACEFABRIC_PLOT")]
    plot: Option<PathBuf>,
}

/// Checks one `-d` name (or `all`); the list is expanded by [`AllreduceArgs::datatypes`].
fn parse_datatype(s: &str) -> Result<String, String> {
    DataTypeName::parse_list(&[s]).map_err(|e| e.to_string())?;
    Ok(s.trim().to_ascii_lowercase())
}

/// Checks one `-o` name (or `all`); the list is expanded by [`AllreduceArgs::ops`].
fn parse_op(s: &str) -> Result<String, String> {
    ReduceOpName::parse_list(&[s]).map_err(|e| e.to_string())?;
    Ok(s.trim().to_ascii_lowercase())
}

impl AllreduceArgs {
    /// The datatypes of `-d`, `all` expanded, in nccl-tests' order.
    pub(crate) fn datatypes(&self) -> anyhow::Result<Vec<DataTypeName>> {
        Ok(DataTypeName::parse_list(&self.datatype)?)
    }

    /// The reduction ops of `-o`, `all` expanded.
    pub(crate) fn ops(&self) -> anyhow::Result<Vec<ReduceOpName>> {
        Ok(ReduceOpName::parse_list(&self.op)?)
    }
}

/// The point at `index` of a sweep of `algos × types × ops × sizes` (nested in that order,
/// as `spacefabric_node::collective::sweep` measures them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PointAt {
    pub(crate) algo: Algorithm,
    pub(crate) datatype: DataTypeName,
    pub(crate) op: ReduceOpName,
    pub(crate) bytes: u64,
    /// First point of its algorithm's table.
    pub(crate) first_of_algo: bool,
    /// Last point of its algorithm's table.
    pub(crate) last_of_algo: bool,
}

/// The sweep's points in order (see [`PointAt`]).
pub(crate) fn points(
    algos: &[Algorithm],
    types: &[DataTypeName],
    ops: &[ReduceOpName],
    sizes: &[u64],
) -> Vec<PointAt> {
    let per_algo = types.len() * ops.len() * sizes.len();
    let mut out = Vec::with_capacity(algos.len() * per_algo);
    for &algo in algos {
        for &datatype in types {
            for &op in ops {
                for &bytes in sizes {
                    let i = out.len() % per_algo.max(1);
                    out.push(PointAt {
                        algo,
                        datatype,
                        op,
                        bytes,
                        first_of_algo: i == 0,
                        last_of_algo: i + 1 == per_algo,
                    });
                }
            }
        }
    }
    out
}

/// Parses `A:B:n` into a corruption of the n-th message from A to B.
fn parse_corruption(s: &str) -> Result<Corruption, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [from, to, nth] = parts.as_slice() else {
        return Err(format!("'{s}' is not FROM:TO:N"));
    };
    let num = |x: &str| {
        x.parse::<usize>()
            .map_err(|_| format!("'{x}' in '{s}' is not a number"))
    };
    Ok(Corruption {
        from: num(from)?,
        to: num(to)?,
        nth: num(nth)?,
    })
}

/// The sizes of the sweep: `min`, `min·f`, ... up to `max` (what a node running the job
/// computes, `spacefabric_node::jobs::allreduce::sweep_sizes`).
fn sizes(min: u64, max: u64, factor: u64) -> anyhow::Result<Vec<u64>> {
    spacefabric_node::jobs::allreduce::sweep_sizes(min, max, factor)
        .map_err(|e| anyhow::anyhow!("-b {min} -e {max} -f {factor}: {e}"))
}

/// Rank r's site: the profile's sites in file order, in equal blocks.
fn placement(profile: &Profile, nodes: usize) -> Vec<usize> {
    let nsites = profile.sites.len().max(1);
    (0..nodes).map(|r| r * nsites / nodes.max(1)).collect()
}

/// Runs the sweep; the exit code is 1 when any element was wrong.
pub(crate) fn run(args: AllreduceArgs) -> anyhow::Result<ExitCode> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if args.iters == 0 {
        bail!("-n must be at least 1");
    }
    if args.lanes == 0 || args.lanes > 255 {
        bail!("--lanes must be between 1 and 255 (got {})", args.lanes);
    }
    let sizes = sizes(args.min_bytes, args.max_bytes, args.step_factor)?;
    admission::check_output_files(&[
        ("--json", args.json.as_deref()),
        ("--csv", args.csv.as_deref()),
        ("--plot", args.plot.as_deref()),
    ])?;
    admission::check_output_dir("--hdr-dir", args.hdr_dir.as_deref())?;
    if let Some(url) = &args.controller {
        if args.clock != ClockMode::Real {
            bail!(
                "--clock {} runs the cluster in this process; a --controller cluster runs on the wall clock",
                args.clock
            );
        }
        return controller_job::run(&args, url, &sizes);
    }
    if args.time_dilation.is_some_and(|k| k.is_dilated()) {
        bail!(
            "--time-dilation applies to a process cluster (--controller); an in-process run uses --clock virtual"
        );
    }
    if let Some(us) = args.starve_delay_line_us {
        spacefabric_fabric::emu::set_starvation(Duration::from_micros(us));
    }
    admission::admit(&controller_job::all_reduce_spec(&args)?, args.nodes)?;
    let profile = load_profile(&args.profile)?;
    let sites = placement(&profile, args.nodes);
    let cost = CostModel::from_profile(&profile, sites.clone(), Duration::ZERO)?;
    tracing::info!(seed = args.seed, profile = %profile.name, nodes = args.nodes, "all-reduce sweep");
    let runtime = args.clock.runtime().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let fabric = fabric::LocalFabric::start_with_cc(
            args.fabric,
            &profile,
            &sites,
            !args.no_emulation,
            args.corrupt
                .map(|c| Ok::<_, anyhow::Error>((c, args.datatypes()?[0])))
                .transpose()?,
            args.cc,
            args.udp_payload,
            args.clock.dilation_for(min_used_delay(&profile, &sites)),
        )
        .await
        .context("starting the local cluster")?;
        let mut sweep = match &fabric {
            fabric::LocalFabric::Memory(eps) => {
                sweep(&args, &profile, &cost, &sizes, eps.clone(), &fabric).await?
            }
            fabric::LocalFabric::Quic { meshes, .. } => {
                sweep(&args, &profile, &cost, &sizes, meshes.clone(), &fabric).await?
            }
        };
        sweep.transport_stats = fabric.transport_stats();
        fabric.shutdown().await;
        files::write_files(&sweep, &args)?;
        // 3 when any element was wrong (spacefabric_cli::exit_code).
        Ok(if sweep.failed() {
            spacefabric_cli::exit_code::ExitStatus::WrongResults.into()
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// The whole sweep over one set of endpoints: every rank runs the node-side sweep
/// (`spacefabric_node::collective::sweep`) as its own task, as a node of a real cluster
/// does; points are combined (slowest rank per iteration, #wrong summed) and printed as soon
/// as every rank has measured them.
async fn sweep<E: Exchange + 'static>(
    args: &AllreduceArgs,
    profile: &Profile,
    cost: &CostModel,
    sizes: &[u64],
    endpoints: Vec<E>,
    fabric: &fabric::LocalFabric,
) -> anyhow::Result<Sweep> {
    let config = CollectiveConfig { lanes: args.lanes };
    let comms: Vec<Arc<Communicator<E>>> = endpoints
        .into_iter()
        .map(|ex| {
            Ok(Arc::new(
                Communicator::new(ex)
                    .with_cost_model(cost.clone())?
                    .with_config(config),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let p = comms.len();
    let spec = SweepSpec {
        sizes: sizes.to_vec(),
        algorithms: args.algo.clone(),
        iterations: args.iters,
        warmup: args.warmup,
        check: args.check != 0,
        seed: args.seed,
        datatypes: args.datatype.clone(),
        ops: args.op.clone(),
    };
    let mut sweep = Sweep::new(
        args,
        profile,
        cost,
        fabric.describe(),
        fabric.emulated(),
        fabric.transport_settings(),
    )?;
    sweep.dilation = fabric.dilation();
    report::print_header(&sweep);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<SweepPoint>();
    let mut tasks = tokio::task::JoinSet::new();
    for comm in &comms {
        let comm = Arc::clone(comm);
        let spec = spec.clone();
        let tx = tx.clone();
        tasks.spawn(async move {
            let rank = comm.rank();
            run_sweep(&comm, &spec, |point| {
                // The receiver only goes away when the sweep is being abandoned.
                let _ = tx.send(point.clone());
            })
            .await
            .with_context(|| format!("rank {rank}"))
        });
    }
    drop(tx);
    let order = points(&args.algo, &args.datatypes()?, &args.ops()?, sizes);
    let total = order.len();
    let sites = cost.site_of_rank().to_vec();
    let mut wire_before = fabric.wire_by_class(&sites);
    let min_delay = min_used_delay(profile, &sites);
    let mut host_before = fabric.host_sample();
    let mut pending: Vec<Vec<SweepPoint>> = vec![Vec::new(); total];
    let mut next = 0;
    let progress = report::Progress::new(total);
    if let Some(first) = order.first() {
        progress.point(next, first);
    }
    while next < total {
        tokio::select! {
            point = rx.recv() => {
                let Some(point) = point else { break };
                let Some(slot) = pending.get_mut(point.index) else {
                    bail!("rank {} reported point {} of a sweep of {total}", point.rank, point.index);
                };
                slot.push(point);
                while next < total && pending[next].len() == p {
                    let points = std::mem::take(&mut pending[next]);
                    let at = order[next];
                    if at.first_of_algo {
                        progress.suspend(|| report::print_table_start(&sweep, at.algo));
                    }
                    let mut result = combine(cost, args.lanes, p, &points)?;
                    // Counted when every rank has reported the point: a fast rank may
                    // already be in the next point's first barrier (a few bytes).
                    let wire_now = fabric.wire_by_class(&sites);
                    if !wire_now.is_empty() {
                        let delta = wire_now
                            .iter()
                            .map(|(k, c)| (*k, c.since(&wire_before.get(k).copied().unwrap_or_default())))
                            .collect();
                        result.wire = Some((delta, 2 * (args.warmup + args.iters + 1)));
                    }
                    wire_before = wire_now;
                    let host_now = fabric.host_sample();
                    let share = HostShare::between(&host_before, &host_now);
                    host_before = host_now;
                    let verdict = judge(
                        args.clock,
                        &share,
                        result.mean_us() / 1e6,
                        fabric.emulated().then_some(result.predicted.total_s),
                        min_delay * fabric.dilation(),
                    );
                    result.host = Some((share, verdict));
                    progress.suspend(|| report::print_row(&sweep, &result));
                    sweep.results.push(result);
                    next += 1;
                    if at.last_of_algo {
                        progress.suspend(|| report::print_table_end(&sweep, at.algo));
                    }
                    if let Some(following) = order.get(next) {
                        progress.point(next, following);
                    }
                }
            }
            Some(done) = tasks.join_next() => {
                match done {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tasks.abort_all();
                        return Err(e);
                    }
                    Err(e) => {
                        tasks.abort_all();
                        bail!("a rank's task died: {e}");
                    }
                }
            }
        }
    }
    if next < total {
        bail!("the ranks stopped after {next} of {total} points");
    }
    progress.finish();
    report::print_footer(&sweep);
    Ok(sweep)
}

/// The smallest one-way delay (at time zero) of the links between ranks of `sites`: the
/// delay budget against which the delay line's lateness is judged.
pub(crate) fn min_used_delay(profile: &Profile, sites: &[usize]) -> Duration {
    let mut min: Option<Duration> = None;
    for (i, &a) in sites.iter().enumerate() {
        for &b in &sites[i + 1..] {
            for (x, y) in [(a, b), (b, a)] {
                let d = profile.link(x, y).delay_at(Duration::ZERO);
                min = Some(min.map_or(d, |m| m.min(d)));
            }
        }
    }
    min.unwrap_or(Duration::ZERO)
}

/// Combines every rank's measurement of one point: an iteration's time is the slowest
/// rank's; #wrong is summed over ranks. The model moves the point's bytes: its count of
/// elements of its datatype's size.
fn combine(
    cost: &CostModel,
    lanes: usize,
    p: usize,
    points: &[SweepPoint],
) -> anyhow::Result<SizeResult> {
    let first = points.first().context("no points to combine")?;
    let out_of_place = combine_placement(points, |pt| (&pt.times_us, pt.wrong));
    let in_place = combine_placement(points, |pt| (&pt.in_place_times_us, pt.in_place_wrong));
    let algo = first.algorithm;
    let datatype = DataTypeName::parse(&first.datatype)?;
    let op = ReduceOpName::parse(&first.op)?;
    let used = first
        .used
        .concrete()
        .context("the sweep reported 'auto' as the algorithm it ran")?;
    let bound = cost.all_reduce_bound(first.bytes as f64);
    let predicted = cost.predict_collective(
        Collective::AllReduce,
        used,
        first.count,
        datatype.size_bytes(),
        lanes,
    )?;
    Ok(SizeResult::new(
        algo,
        used,
        datatype,
        op,
        first.bytes,
        first.count,
        p,
        out_of_place,
        in_place,
        bound,
        predicted,
    ))
}

/// One placement of one point over every rank: an iteration's time is the slowest rank's;
/// #wrong is summed over ranks (`None` when no rank checked).
fn combine_placement(
    points: &[SweepPoint],
    of: impl Fn(&SweepPoint) -> (&Vec<f64>, Option<usize>),
) -> report::Measured {
    let iters = points.iter().map(|pt| of(pt).0.len()).max().unwrap_or(0);
    let times = (0..iters)
        .map(|i| {
            let slowest = points
                .iter()
                .filter_map(|pt| of(pt).0.get(i))
                .copied()
                .fold(0.0, f64::max);
            Duration::from_secs_f64(slowest.max(0.0) / 1e6)
        })
        .collect();
    let wrong = points
        .iter()
        .filter_map(|pt| of(pt).1)
        .fold(None, |acc: Option<usize>, w| Some(acc.unwrap_or(0) + w));
    report::Measured { times, wrong }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_nccl_tests_steps() {
        assert_eq!(
            sizes(1024, 16384, 2).ok(),
            Some(vec![1024, 2048, 4096, 8192, 16384])
        );
        assert_eq!(sizes(1000, 1000, 1).ok(), Some(vec![1000]));
        assert!(sizes(2048, 1024, 2).is_err());
    }
}
