//! The `serve` and `status` commands: their flags (each also read from a `SPACEFABRIC_*`
//! environment variable) and what they do. `main.rs` only dispatches to them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netem_profiles::Profile;
use spacefabric_client::ConnectOptions;
use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{ListJobsRequest, ListNodesRequest};
use tonic::transport::Channel;

use crate::core::CoreConfig;
use crate::error::ControllerError;
use crate::server::{DEFAULT_MAX_MESSAGE_BYTES, ServeError, ServerConfig, spawn_server};
use crate::topology::Topology;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A flag or file is wrong.
    #[error("{0}")]
    Usage(String),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// Reaching the controller failed (or its CA could not be read).
    #[error(transparent)]
    Client(#[from] spacefabric_client::ClientError),
    /// The controller answered with an error.
    #[error("controller: {}: {}", .0.code(), .0.message())]
    Rpc(#[from] tonic::Status),
}

/// `spacefabric-controller serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// gRPC listen address.
    #[arg(long, env = "SPACEFABRIC_LISTEN", default_value = "0.0.0.0:7400")]
    pub listen: SocketAddr,
    /// Prometheus /metrics listen address.
    #[arg(
        long,
        env = "SPACEFABRIC_METRICS_LISTEN",
        default_value = "0.0.0.0:9400"
    )]
    pub metrics_listen: SocketAddr,
    /// Profile the cluster runs: a TOML file, or the name of a shipped profile (lan,
    /// earth-moon, ...; embedded in the binary).
    #[arg(long, env = "SPACEFABRIC_PROFILE")]
    pub profile: PathBuf,
    /// Directory for members, plan, jobs, results and the cluster CA (in memory if absent).
    #[arg(long, env = "SPACEFABRIC_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Token nodes and clients must present.
    #[arg(long, env = "SPACEFABRIC_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: String,
    /// The controller's site (default: the profile's first site).
    #[arg(
        long = "controller-site",
        alias = "site",
        env = "SPACEFABRIC_CONTROLLER_SITE"
    )]
    pub site: Option<String>,
    /// Serve gRPC over TLS with a certificate from the cluster CA (`<state-dir>/ca.cert.pem`).
    #[arg(long, env = "SPACEFABRIC_TLS")]
    pub tls: bool,
    /// Extra names (DNS or IP) for the TLS certificate, comma-separated; localhost,
    /// 127.0.0.1, the listen IP and the host name are always included.
    #[arg(long, env = "SPACEFABRIC_TLS_NAMES", value_delimiter = ',')]
    pub tls_names: Vec<String>,
    /// Node heartbeat interval, ms (1 ms to 1 hour).
    #[arg(
        long,
        env = "SPACEFABRIC_HEARTBEAT_INTERVAL_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..=3_600_000)
    )]
    pub heartbeat_interval_ms: u64,
    /// Heartbeats a node may miss (beyond its light delay) before it is declared dead (1–1000).
    #[arg(
        long,
        env = "SPACEFABRIC_HEARTBEAT_MISSES",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub heartbeat_misses: u32,
    /// Memory one job may take on one node, bytes (1 MiB to 1 TiB); jobs that would need more
    /// are refused naming the spec fields.
    #[arg(
        long,
        env = "SPACEFABRIC_NODE_MEMORY_BUDGET",
        default_value_t = spacefabric_proto::job_cost::budget_defaults::MEMORY_BYTES,
        value_parser = clap::value_parser!(u64).range((1 << 20)..=(1 << 40))
    )]
    pub node_memory_budget: u64,
    /// Largest result one rank may report, bytes (1 KiB up to below --max-message-bytes).
    #[arg(
        long,
        env = "SPACEFABRIC_NODE_RESULT_BUDGET",
        default_value_t = spacefabric_proto::job_cost::budget_defaults::RESULT_BYTES,
        value_parser = clap::value_parser!(u64).range(1024..=(1 << 28))
    )]
    pub node_result_budget: u64,
    /// Finished jobs kept (1 to 1,000,000); the oldest are forgotten first.
    #[arg(
        long,
        env = "SPACEFABRIC_JOB_HISTORY",
        default_value_t = crate::core::DEFAULT_JOB_HISTORY as u64,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub job_history: u64,
    /// Also forget finished jobs older than this many seconds (default: never by age).
    #[arg(
        long,
        env = "SPACEFABRIC_JOB_MAX_AGE_S",
        value_parser = clap::value_parser!(u64).range(1..=(10 * 366 * 86_400))
    )]
    pub job_max_age_s: Option<u64>,
    /// Do not delay controller↔node messages by the light delay between their sites.
    #[arg(long, env = "SPACEFABRIC_NO_LIGHT_DELAY")]
    pub no_light_delay: bool,
    /// host:port of each forwarder that carries the profile's shared cross-site trunks
    /// (`spacefabric-node forwarder --shard I/N`), comma-separated, in shard order (entry I is
    /// the forwarder started with `--shard I/N`); handed to the nodes in every job plan. Each
    /// shared trunk is carried by exactly one of them (`netem_profiles::TrunkCarriers`).
    /// Default: none (each node process applies its own copy of each trunk and warns).
    #[arg(long, env = "SPACEFABRIC_FORWARDER")]
    pub forwarder: Option<String>,
    /// Largest request decoded, bytes (64 KiB to 256 MiB).
    #[arg(
        long,
        env = "SPACEFABRIC_MAX_MESSAGE_BYTES",
        default_value_t = DEFAULT_MAX_MESSAGE_BYTES as u64,
        value_parser = clap::value_parser!(u64).range((64 << 10)..=(256 << 20))
    )]
    pub max_message_bytes: u64,
    /// Time dilation K, an integer from 1 (default: none) to 1,000,000: every process of the
    /// cluster runs its emulated clock K times slower than the wall clock (links, quinn's
    /// timers, heartbeats, deadlines, declared step times; every reported time is emulated).
    /// Handed to every node at registration; a node started with another K is refused.
    #[arg(long, env = "SPACEFABRIC_TIME_DILATION", default_value = "1")]
    pub time_dilation: spacefabric_proto::time_dilation::TimeDilation,
}

/// How `status` and `ping` reach the controller: its URL, the join token and the CA.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerFlags {
    /// Controller URL (http:// or https://).
    #[arg(
        long,
        env = "SPACEFABRIC_CONTROLLER",
        default_value = "http://127.0.0.1:7400"
    )]
    pub controller: String,
    /// The cluster's join token.
    #[arg(long, env = "SPACEFABRIC_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: String,
    /// CA certificate (PEM) to trust for an https:// controller.
    #[arg(
        long = "controller-ca",
        alias = "ca-cert",
        env = "SPACEFABRIC_CONTROLLER_CA"
    )]
    pub ca_cert: Option<PathBuf>,
}

impl ControllerFlags {
    /// A channel to the controller (see [`connect`]).
    pub async fn connect(&self) -> Result<Channel, CommandError> {
        connect(&self.controller, self.ca_cert.as_deref()).await
    }
}

/// `spacefabric-controller status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The controller and how to reach it.
    #[command(flatten)]
    pub to: ControllerFlags,
    /// Print JSON instead of tables.
    #[arg(long, env = "SPACEFABRIC_JSON")]
    pub json: bool,
    /// Show the newest this many jobs (1–1000), without their results.
    #[arg(
        long,
        env = "SPACEFABRIC_JOBS",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub jobs: u32,
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl ServeArgs {
    /// The core's settings from the flags, each range-checked (clap checks each flag's own
    /// range; this checks how they combine).
    pub fn core_config(&self, controller_site: String) -> Result<CoreConfig, CommandError> {
        if self.node_result_budget >= self.max_message_bytes {
            return Err(CommandError::Usage(format!(
                "--node-result-budget {} must be below --max-message-bytes {} (a result travels in one request)",
                self.node_result_budget, self.max_message_bytes
            )));
        }
        if !(1..=3_600_000).contains(&self.heartbeat_interval_ms)
            || !(1..=1000).contains(&self.heartbeat_misses)
        {
            return Err(CommandError::Usage(format!(
                "--heartbeat-interval-ms {} must be 1..=3600000 and --heartbeat-misses {} 1..=1000",
                self.heartbeat_interval_ms, self.heartbeat_misses
            )));
        }
        let forwarders = parse_forwarders(self.forwarder.as_deref().unwrap_or(""))
            .map_err(CommandError::Usage)?;
        Ok(CoreConfig {
            forwarders,
            controller_site,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
            heartbeat_misses: self.heartbeat_misses,
            time_dilation: self.time_dilation,
            node_budget: spacefabric_proto::job_cost::NodeBudget {
                memory_bytes: self.node_memory_budget,
                result_bytes: self.node_result_budget,
            },
            job_history: usize::try_from(self.job_history).unwrap_or(usize::MAX),
            job_max_age: self.job_max_age_s.map(Duration::from_secs),
        })
    }
}

/// The `--forwarder` list: comma-separated `host:port` entries (blank: none). A bad entry,
/// an empty one between commas or the same address twice is an error naming the entry.
fn parse_forwarders(list: &str) -> Result<Vec<String>, String> {
    let list = list.trim();
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let mut out: Vec<String> = Vec::new();
    for (i, entry) in list.split(',').map(str::trim).enumerate() {
        if entry.is_empty() {
            return Err(format!(
                "--forwarder {list:?}: entry {} is empty (expected host:port,host:port,...)",
                i + 1
            ));
        }
        check_host_port(entry)
            .map_err(|e| format!("--forwarder {list:?}: entry {} {entry:?}: {e}", i + 1))?;
        if out.iter().any(|a| a == entry) {
            return Err(format!(
                "--forwarder {list:?}: entry {} {entry:?} is listed twice (each forwarder carries its own trunks)",
                i + 1
            ));
        }
        out.push(entry.to_string());
    }
    Ok(out)
}

/// Checks that `addr` is `host:port` with a non-zero port (the host may be a DNS name, which
/// the nodes resolve).
fn check_host_port(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_string())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port {port:?} is not 1..=65535")),
        Ok(_) => Ok(()),
    }
}

/// Runs the controller until SIGINT/SIGTERM.
pub async fn serve(args: ServeArgs) -> Result<(), CommandError> {
    let (text, origin) = netem_profiles::profile_text(&args.profile.to_string_lossy())
        .map_err(|e| CommandError::Usage(format!("--profile {}: {e}", args.profile.display())))?;
    let profile = Profile::parse(&text, &origin).map_err(|e| CommandError::Usage(e.to_string()))?;
    let topology = Topology::from_profile(&profile, &text);
    let controller_site =
        match args.site.clone() {
            Some(site) if topology.site_index(&site).is_some() => site,
            Some(site) => {
                return Err(CommandError::Usage(format!(
                    "--site {site}: not a site of {} ({})",
                    origin,
                    topology.sites.join(", ")
                )));
            }
            None => topology.sites.first().cloned().ok_or_else(|| {
                CommandError::Usage(format!("{origin}: the profile has no sites"))
            })?,
        };
    let core = args.core_config(controller_site)?;
    let max_message_bytes = usize::try_from(args.max_message_bytes).map_err(|_| {
        CommandError::Usage(format!(
            "--max-message-bytes {}: too large for this host",
            args.max_message_bytes
        ))
    })?;
    let tls_names = args.tls.then(|| {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        if !args.listen.ip().is_unspecified() {
            names.push(args.listen.ip().to_string());
        }
        names.extend(host_name());
        names.extend(args.tls_names.iter().filter(|n| !n.is_empty()).cloned());
        names.dedup();
        names
    });
    if args.tls && args.state_dir.is_none() {
        tracing::warn!(
            "--tls without --state-dir: the CA lives in memory and clients cannot read its certificate"
        );
    }
    // /metrics (with process metrics), /readyz and /livez; the probes ask the gRPC health
    // service instead, which answers once the controller serves.
    let handle = spacefabric_cli::metrics_http::install_recorder()
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    spacefabric_cli::metrics_http::serve(
        args.metrics_listen,
        handle,
        spacefabric_cli::metrics_http::Readiness::ready(),
    )
    .await
    .map_err(|e| CommandError::Usage(e.to_string()))?;
    spacefabric_proto::metrics_catalog::describe_and_register(
        crate::metrics_catalog::CONTROLLER_METRICS,
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CommandError::Usage(format!("--listen {}: {e}", args.listen)))?;
    let config = ServerConfig {
        topology,
        core,
        join_token: args.join_token,
        state_dir: args.state_dir,
        light_delay: !args.no_light_delay,
        tls_names,
        max_message_bytes,
    };
    let handle = spawn_server(config, listener).await?;
    let trigger = handle.shutdown_trigger();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: shutting down");
        let _ = trigger.send(true);
    });
    handle.wait().await?;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A gRPC channel to the controller at `url` (https trusting the CA file `ca_cert`), one
/// attempt.
pub async fn connect(url: &str, ca_cert: Option<&Path>) -> Result<Channel, CommandError> {
    spacefabric_client::refuse_retired_ca_env()?;
    let ca_pem = ca_cert
        .map(|path| spacefabric_client::read_ca("--controller-ca", path))
        .transpose()?;
    Ok(spacefabric_client::connect(&ConnectOptions::new(url, ca_pem)).await?)
}

/// Prints nodes, sites and jobs of a controller.
pub async fn status(args: StatusArgs) -> Result<(), CommandError> {
    let mut client = ControllerClient::new(args.to.connect().await?);
    let nodes = client
        .list_nodes(ListNodesRequest {
            join_token: args.to.join_token.clone(),
        })
        .await?
        .into_inner();
    // The newest jobs without their results: one bounded message however long the history.
    let mut jobs = client
        .list_jobs(ListJobsRequest {
            join_token: args.to.join_token.clone(),
            page_size: args.jobs,
            page_token: String::new(),
            omit_results: true,
            newest_first: true,
        })
        .await?
        .into_inner();
    jobs.jobs.reverse();
    if args.json {
        let value = serde_json::json!({ "nodes": nodes, "jobs": jobs.jobs });
        let text = serde_json::to_string_pretty(&value)
            .map_err(|e| CommandError::Usage(format!("json: {e}")))?;
        println!("{text}");
    } else {
        print!(
            "{}",
            crate::status::render(&args.to.controller, &nodes, &jobs.jobs)
        );
    }
    Ok(())
}

impl From<ControllerError> for CommandError {
    fn from(e: ControllerError) -> Self {
        Self::Serve(ServeError::Controller(e))
    }
}

/// `spacefabric-controller ping`: a control-plane round-trip job on every node.
#[derive(Debug, Clone, clap::Args)]
pub struct PingArgs {
    /// The controller and how to reach it.
    #[command(flatten)]
    pub to: ControllerFlags,
    /// Round trips per node.
    #[arg(long, env = "SPACEFABRIC_ITERATIONS", default_value_t = 5)]
    pub iterations: u32,
}

/// How long `ping` re-attaches to its job while the controller is away.
const PING_REATTACH: Duration = Duration::from_secs(60);

/// Submits a ping job, follows it to the end, prints each rank's round trips.
pub async fn ping(args: PingArgs) -> Result<(), CommandError> {
    use spacefabric_proto::v1::{JobSpec, JobState, PingJob, job_spec};
    let mut client = ControllerClient::new(args.to.connect().await?);
    let spec = JobSpec {
        deadline_ms: 0,
        name: "ping".into(),
        kind: Some(job_spec::Kind::Ping(PingJob {
            iterations: args.iterations,
        })),
    };
    let token = &args.to.join_token;
    let job = spacefabric_client::submit(&mut client, token, spec, 0).await?;
    eprintln!("submitted {} (ping x{})", job.job_id, args.iterations);
    let last = spacefabric_client::follow(&mut client, token, job, PING_REATTACH, |_| {}).await?;
    let peers = last
        .plan
        .as_ref()
        .map(|p| p.peers.clone())
        .unwrap_or_default();
    println!(
        "{:>5} {:<10} {:<12} {:>10} {:>10}",
        "RANK", "SITE", "NODE", "RTT p50", "RTT max"
    );
    for r in &last.results {
        let peer = peers.iter().find(|p| p.rank == r.rank);
        let ms = |k: &str| r.metrics.get(k).copied().unwrap_or(f64::NAN);
        println!(
            "{:>5} {:<10} {:<12} {:>7.1} ms {:>7.1} ms{}",
            r.rank,
            peer.map(|p| p.site.as_str()).unwrap_or("?"),
            peer.map(|p| p.name.as_str()).unwrap_or("?"),
            ms("rtt_p50_ms"),
            ms("rtt_max_ms"),
            if r.ok {
                String::new()
            } else {
                format!("  FAILED: {}", r.error)
            }
        );
    }
    println!("{}: {}", last.job_id, crate::status::job_state(last.state));
    if last.state == JobState::Succeeded as i32 {
        Ok(())
    } else {
        Err(CommandError::Usage(format!(
            "{} ended {}: {}",
            last.job_id,
            crate::status::job_state(last.state),
            last.error
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(extra: &[&str]) -> Result<ServeArgs, clap::Error> {
        let mut argv = vec!["serve", "--profile", "p.toml", "--join-token", "t"];
        argv.extend_from_slice(extra);
        Serve::try_parse_from(argv).map(|s| s.args)
    }

    #[test]
    fn out_of_range_duration_and_size_flags_are_errors_not_panics() {
        for flags in [
            &["--heartbeat-interval-ms", "10000000000000"][..],
            &["--heartbeat-interval-ms", "4294967296"],
            &["--heartbeat-interval-ms", "0"],
            &["--heartbeat-misses", "4000000000"],
            &["--heartbeat-misses", "99999999999999999999"],
            &["--max-message-bytes", "18446744073709551615"],
            &["--node-memory-budget", "0"],
            &["--job-history", "0"],
            &["--job-max-age-s", "999999999999"],
        ] {
            let err = parse(flags).expect_err(&format!("{flags:?} accepted"));
            assert!(err.to_string().contains(flags[0]), "{flags:?}: {err}");
        }
        let args = parse(&[
            "--heartbeat-interval-ms",
            "3600000",
            "--heartbeat-misses",
            "1000",
        ])
        .unwrap();
        let core = args.core_config("lan".into()).unwrap();
        // The largest settings still give a deadline, no overflow.
        assert_eq!(
            core.heartbeat_interval * core.heartbeat_misses,
            Duration::from_secs(3_600_000)
        );
        let args = parse(&["--node-result-budget", "2000000"]).unwrap();
        let err = args.core_config("lan".into()).unwrap_err().to_string();
        assert!(err.contains("--node-result-budget"), "{err}");
    }
    #[test]
    fn forwarder_lists_parse_and_bad_entries_are_named() {
        let core = |v: &str| {
            parse(&["--forwarder", v])
                .unwrap()
                .core_config("lan".into())
        };
        assert_eq!(core("").unwrap().forwarders, Vec::<String>::new());
        assert_eq!(
            core("f0:7600").unwrap().forwarders,
            vec!["f0:7600".to_string()]
        );
        assert_eq!(
            core(" f0:7600 , 10.0.0.2:7601,[::1]:7602")
                .unwrap()
                .forwarders,
            vec![
                "f0:7600".to_string(),
                "10.0.0.2:7601".to_string(),
                "[::1]:7602".to_string()
            ]
        );
        for (list, named) in [
            ("f0:7600,f1", "entry 2 \"f1\""),
            ("f0:7600,,f1:7600", "entry 2 is empty"),
            ("f0:7600,f1:0", "entry 2 \"f1:0\""),
            (":7600", "entry 1"),
            ("f0:7600,f0:7600", "listed twice"),
        ] {
            let err = core(list).unwrap_err().to_string();
            assert!(
                err.contains("--forwarder") && err.contains(named),
                "{list}: {err}"
            );
        }
    }
}
