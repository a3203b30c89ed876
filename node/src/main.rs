//! spacefabric-node: one process of the emulated cluster. This file only parses the command
//! line and dispatches to the library.
//!
//! Without a subcommand the node runs as an agent of the controller
//! (`spacefabric-node --controller URL --join-token T [--site S] --listen ADDR --advertise ADDR`)
//! running ping, all-reduce and train jobs. `spacefabric-node forwarder --profile P` runs the
//! forwarder that carries the profile's shared trunks for node processes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::sync::Arc;

use spacefabric_fabric::transport::ca_command::{self, CaCommand};
use spacefabric_node::agent::{Agent, JobKind, args::AgentArgs};
use spacefabric_node::forwarder_command::{self, ForwarderArgs};
use spacefabric_node::jobs::job_mesh::FabricSettings;
use spacefabric_node::jobs::{AllReduceRunner, TrainRunner};

#[derive(Debug, Parser)]
#[command(
    name = "spacefabric-node",
    version,
    about = "A spacefabric node",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    agent: AgentArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Dev cluster CA and node identities for the QUIC fabric's mutual TLS.
    #[command(subcommand)]
    Ca(CaCommand),
    /// The forwarder that carries the profile's shared cross-site trunks for node processes
    /// (give the controller --forwarder HOST:PORT so nodes use it).
    Forwarder(ForwarderArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Ca(cmd)) => match ca_command::run(cmd) {
            Ok(message) => {
                println!("{message}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Forwarder(args)) => run_forwarder(args),
        None => run_agent(&cli.agent),
    }
}

fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn run_forwarder(args: &ForwarderArgs) -> ExitCode {
    init_tracing();
    let result = (|| -> anyhow::Result<()> {
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(args.metrics_listen)
                .install()
                .map_err(|e| anyhow::anyhow!("--metrics-listen {}: {e}", args.metrics_listen))?;
            spacefabric_proto::metrics_catalog::describe_and_register(
                spacefabric_fabric::forwarder::FORWARDER_METRICS,
            );
            spacefabric_fabric::emu::describe_metrics();
            forwarder_command::run(args, shutdown_signal()).await
        })
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spacefabric-node forwarder: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_agent(args: &AgentArgs) -> ExitCode {
    init_tracing();
    let result = (|| -> anyhow::Result<()> {
        let config = args.to_config()?;
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(args.metrics_listen)
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    &[0.001, 0.01, 0.1, 0.5, 1.0, 2.56, 5.0, 10.0, 60.0],
                )?
                .install()
                .map_err(|e| anyhow::anyhow!("--metrics-listen {}: {e}", args.metrics_listen))?;
            spacefabric_node::metrics_catalog::describe_and_register();
            // Fabric jobs bind the node's fabric address (--listen); peers dial the
            // --advertise address the agent registered. Train jobs commit under --state-dir.
            let state_dir = config.state_dir.clone();
            let fabric = FabricSettings::new(args.listen).with_udp_payload(args.udp_payload);
            Agent::new(config)
                .with_budget(spacefabric_proto::job_cost::NodeBudget {
                    memory_bytes: args.memory_budget,
                    ..Default::default()
                })
                .with_time_dilation(args.time_dilation)
                .with_runner(JobKind::AllReduce, Arc::new(AllReduceRunner::new(fabric)))
                .with_runner(
                    JobKind::Train,
                    Arc::new(TrainRunner::new(fabric, state_dir)),
                )
                .run(shutdown_signal())
                .await?;
            anyhow::Ok(())
        })
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spacefabric-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
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
