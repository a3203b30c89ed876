//! `spacefabric-node forwarder`: runs the forwarder that carries a profile's shared cross-site
//! trunks for a cluster of node processes (`spacefabric_fabric::forwarder`). It ships in the
//! node binary so every place that runs nodes (cluster.sh, the container image) has it.
//!
//! It needs the controller's profile and scenario epoch: the profile from `--profile` (its
//! name is checked against the controller's), the epoch from the controller's `ListNodes`
//! (or `--epoch-unix-ms`, which skips the controller). Give the controller
//! `--forwarder HOST:PORT` so it tells the nodes where the forwarder is.
//!
//! Several forwarders: start each with `--shard I/N` (in Kubernetes `--shard ordinal/N`, the
//! index being the StatefulSet pod's ordinal) and give the controller all N addresses in
//! shard order (`--forwarder a,b,c`); each then carries only its own trunks
//! (`netem_profiles::TrunkCarriers`) and refuses the others' (`other_shard`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use netem_profiles::{Profile, Shard};
use spacefabric_client::ConnectOptions;
use spacefabric_fabric::forwarder::{Forwarder, ForwarderStats, Rejection};
use spacefabric_proto::time_dilation::TimeDilation;
use spacefabric_proto::v1::ListNodesRequest;
use spacefabric_proto::v1::controller_client::ControllerClient;
use tokio_util::sync::CancellationToken;

use crate::jobs::job_mesh::scenario_clock;

/// Flags of `spacefabric-node forwarder` (each also from its `SPACEFABRIC_*` env var).
#[derive(Debug, Clone, clap::Args)]
pub struct ForwarderArgs {
    /// Profile (shipped name or path): the controller's, whose shared trunks it applies.
    #[arg(long, env = "SPACEFABRIC_PROFILE")]
    pub profile: String,
    /// UDP address the nodes send encapsulated datagrams to.
    #[arg(long, env = "SPACEFABRIC_LISTEN", default_value = "0.0.0.0:7600")]
    pub listen: SocketAddr,
    /// Seed of the trunks' random draws (default: the profile's, as in-process runs use).
    #[arg(long, env = "SPACEFABRIC_SEED")]
    pub seed: Option<u64>,
    /// Prometheus /metrics listen address: per-trunk datagrams, bytes, drops and queue
    /// (`spacefabric_emu_*{link="earth->moon#0"}`) and the forwarder's own counters.
    #[arg(
        long,
        visible_alias = "metrics",
        env = "SPACEFABRIC_METRICS_LISTEN",
        default_value = "0.0.0.0:9600"
    )]
    pub metrics_listen: SocketAddr,
    /// Controller URL, asked for the scenario epoch.
    #[arg(
        long,
        env = "SPACEFABRIC_CONTROLLER",
        default_value = "http://127.0.0.1:7400"
    )]
    pub controller: String,
    /// The cluster's join token (for the controller's ListNodes).
    #[arg(long, env = "SPACEFABRIC_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// CA certificate (PEM) to trust for an https:// controller.
    #[arg(long, env = "SPACEFABRIC_CONTROLLER_CA")]
    pub controller_ca: Option<PathBuf>,
    /// Scenario epoch (unix ms); given, the controller is not asked.
    #[arg(long, env = "SPACEFABRIC_EPOCH_UNIX_MS")]
    pub epoch_unix_ms: Option<u64>,
    /// Time dilation K (an integer from 1 to 1,000,000) this forwarder expects. Asking the
    /// controller, it takes the controller's K (another explicit K is refused, naming both);
    /// with --epoch-unix-ms this K is used (default 1). The trunks' delays, rates and outages
    /// then run K times slower than the wall clock, like every node's.
    #[arg(long, env = "SPACEFABRIC_TIME_DILATION")]
    pub time_dilation: Option<TimeDilation>,
    /// Which forwarder of how many this is: `I/N` (0-based; entry I of the controller's
    /// `--forwarder` list), or `ordinal/N` to take I from the trailing number of `--pod-name`
    /// (a StatefulSet pod's ordinal). It carries only the trunks the assignment gives I and
    /// refuses the rest. Default `0/1`: the only forwarder, carrying every trunk.
    #[arg(long, env = "SPACEFABRIC_SHARD", default_value = "0/1")]
    pub shard: String,
    /// The name whose trailing number is the shard index for `--shard ordinal/N` (in
    /// Kubernetes the pod name, `spacefabric-forwarder-2`).
    #[arg(long, env = "SPACEFABRIC_POD_NAME")]
    pub pod_name: Option<String>,
    /// Seconds between the counter lines it logs (0: none).
    #[arg(long, env = "SPACEFABRIC_STATS_INTERVAL_S", default_value_t = 10)]
    pub stats_interval_s: u64,
}

/// How long the forwarder keeps asking a controller that is not up yet.
const CONTROLLER_PATIENCE: Duration = Duration::from_secs(120);

/// Runs the forwarder until SIGINT/SIGTERM; prints its final counters as one JSON line.
pub async fn run(args: &ForwarderArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (text, origin) = netem_profiles::profile_text(&args.profile)
        .map_err(|e| anyhow::anyhow!("--profile {}: {e}", args.profile))?;
    let mut profile = Profile::parse(&text, &origin).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(seed) = args.seed {
        profile.seed = seed;
    }
    let (epoch_unix_ms, dilation) = match args.epoch_unix_ms {
        Some(ms) => (ms, args.time_dilation.unwrap_or(TimeDilation::NONE)),
        None => controller_epoch(args, &profile.name).await?,
    };
    let shard = resolve_shard(&args.shard, args.pod_name.as_deref())?;
    let profile = Arc::new(profile);
    let clock = scenario_clock(epoch_unix_ms, dilation);
    let forwarder = Arc::new(
        Forwarder::bind(args.listen, Arc::clone(&profile), clock)
            .with_context(|| format!("--listen {}", args.listen))?
            .with_shard(shard)
            .with_context(|| format!("--shard {}", args.shard))?,
    );
    let carries: Vec<String> = forwarder
        .carried_trunks()
        .into_iter()
        .map(|t| forwarder.trunk_label(t))
        .collect();
    if carries.is_empty() {
        tracing::warn!(
            %shard,
            "this forwarder carries no trunk: the profile has fewer trunk groups than forwarders"
        );
    }
    tracing::info!(
        listen = %forwarder.local_addr(),
        %shard,
        carries = %carries.join(","),
        profile = %profile.name,
        seed = profile.seed,
        epoch_unix_ms,
        time_dilation = dilation.get(),
        "forwarder up: carrying the profile's shared trunks"
    );
    let stop = CancellationToken::new();
    let logger = (args.stats_interval_s > 0).then(|| {
        let (forwarder, stop) = (Arc::clone(&forwarder), stop.clone());
        let every = Duration::from_secs(args.stats_interval_s);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => log_stats(&forwarder.stats()),
                }
            }
        })
    });
    let run = forwarder.run(stop.clone());
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => r.context("forwarder socket")?,
        () = shutdown => stop.cancel(),
    }
    if let Some(l) = logger {
        l.abort();
    }
    let stats = forwarder.stats();
    log_stats(&stats);
    println!("{}", serde_json::to_string(&stats)?);
    Ok(())
}

fn log_stats(stats: &ForwarderStats) {
    let rejected: Vec<String> = Rejection::LABELS
        .iter()
        .zip(stats.rejected)
        .filter(|(_, n)| *n > 0)
        .map(|(l, n)| format!("{l}={n}"))
        .collect();
    tracing::info!(
        received = stats.received_datagrams,
        rejected = %rejected.join(","),
        "forwarder counters"
    );
    for t in &stats.trunks {
        let tr = &t.traffic;
        tracing::info!(
            trunk = %t.label,
            datagrams = tr.sent_datagrams,
            bytes = tr.sent_bytes,
            dropped = tr.dropped_total(),
            held = tr.held_datagrams,
            "trunk counters"
        );
    }
}

/// The shard `--shard SPEC` names: `I/N`, or `ordinal/N` with I the trailing number of
/// `pod_name`.
pub fn resolve_shard(spec: &str, pod_name: Option<&str>) -> anyhow::Result<Shard> {
    let spec = spec.trim();
    let resolved = match spec.strip_prefix("ordinal/") {
        Some(count) => {
            let name = pod_name
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| anyhow::anyhow!(
                    "--shard {spec}: the index comes from --pod-name (SPACEFABRIC_POD_NAME), which is not set"
                ))?;
            let ordinal = crate::agent::args::trailing_ordinal(name).ok_or_else(|| {
                anyhow::anyhow!("--shard {spec}: --pod-name {name:?} ends in no ordinal")
            })?;
            format!("{ordinal}/{count}")
        }
        None => spec.to_string(),
    };
    Shard::parse(&resolved).map_err(|e| anyhow::anyhow!("--shard {spec}: {e}"))
}

/// Asks the controller for the scenario epoch and its time dilation K (retrying while it
/// starts up), and checks that it runs the same profile and, if this forwarder was given a
/// K, the same K.
async fn controller_epoch(
    args: &ForwarderArgs,
    profile_name: &str,
) -> anyhow::Result<(u64, TimeDilation)> {
    let url = &args.controller;
    spacefabric_client::refuse_retired_ca_env()?;
    let ca_pem = args
        .controller_ca
        .as_deref()
        .map(|path| spacefabric_client::read_ca("--controller-ca", path))
        .transpose()?;
    let options = ConnectOptions::new(url, ca_pem).ca_flag("--controller-ca");
    let mut client = ControllerClient::new(spacefabric_client::endpoint(&options)?.connect_lazy());
    let request = ListNodesRequest {
        join_token: args.join_token.clone().unwrap_or_default(),
    };
    let deadline = tokio::time::Instant::now() + CONTROLLER_PATIENCE;
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.list_nodes(request.clone()).await {
            Ok(r) => {
                let r = r.into_inner();
                if r.profile_name != profile_name {
                    bail!(
                        "--profile {} is {profile_name:?} but the controller at {url} runs {:?}",
                        args.profile,
                        r.profile_name
                    );
                }
                let controller_k = TimeDilation::from_wire(r.time_dilation).map_err(|e| {
                    anyhow::anyhow!("controller {url}: ListNodesResponse.time_dilation: {e}")
                })?;
                let k = TimeDilation::agree(args.time_dilation, controller_k)?;
                return Ok((r.scenario_epoch_unix_ms, k));
            }
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                ) && tokio::time::Instant::now() + backoff < deadline =>
            {
                tracing::debug!(%url, error = %s.message(), "controller not up yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(s) => bail!("controller {url}: ListNodes: {}: {}", s.code(), s.message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_come_from_the_flag_or_the_pod_ordinal() {
        assert_eq!(
            resolve_shard("1/3", None).unwrap(),
            Shard { index: 1, count: 3 }
        );
        assert_eq!(
            resolve_shard("ordinal/3", Some("spacefabric-forwarder-2")).unwrap(),
            Shard { index: 2, count: 3 }
        );
        for (spec, pod, says) in [
            ("ordinal/3", None, "SPACEFABRIC_POD_NAME"),
            ("ordinal/3", Some("forwarder"), "ends in no ordinal"),
            (
                "ordinal/3",
                Some("spacefabric-forwarder-3"),
                "below the count",
            ),
            ("2", None, "not I/N"),
            ("0/0", None, "below the count"),
        ] {
            let err = format!("{:#}", resolve_shard(spec, pod).unwrap_err());
            assert!(
                err.contains("--shard") && err.contains(says),
                "{spec}: {err}"
            );
        }
    }
}
