//! spacefabric-node: one process of the emulated cluster. This file only parses the command
//! line and dispatches to the library.
//!
//! Without a subcommand the node runs as an agent of the controller
//! (`spacefabric-node --controller URL --join-token T [--site S] --listen ADDR --advertise ADDR`)
//! running ping, all-reduce and train jobs. `spacefabric-node forwarder --profile P` runs the
//! forwarder that carries the profile's shared trunks for node processes.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use std::sync::Arc;

use spacefabric_cli::completions::{self, CompletionsArgs};
use spacefabric_cli::exit_code::ExitStatus;
use spacefabric_cli::logging::{self, LogArgs};
use spacefabric_cli::metrics_http::{self, Readiness};

use spacefabric_fabric::transport::ca_command::{self, CaCommand};
use spacefabric_node::agent::{Agent, JobKind, args::AgentArgs};
use spacefabric_node::forwarder_command::{self, ForwarderArgs};
use spacefabric_node::jobs::job_mesh::FabricSettings;
use spacefabric_node::jobs::{AllReduceRunner, TrainRunner};

#[derive(Debug, Parser)]
#[command(
    name = "spacefabric-node",
    version = spacefabric_cli::version::VERSION,
    about = "A spacefabric node",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    agent: AgentArgs,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Dev cluster CA and node identities for the QUIC fabric's mutual TLS.
    #[command(subcommand)]
    Ca(CaCommand),
    /// The forwarder that carries the profile's shared cross-site trunks for node processes
    /// (give the controller --forwarder HOST:PORT so nodes use it).
    Forwarder(ForwarderArgs),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(CompletionsArgs),
}

fn main() -> ExitCode {
    if let Err(e) = spacefabric_cli::env_names::check() {
        eprintln!("spacefabric-node: {e}");
        return ExitStatus::Usage.into();
    }
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Ca(cmd)) => match ca_command::run(cmd) {
            Ok(message) => {
                println!("{message}");
                ExitStatus::Ok.into()
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitStatus::Failure.into()
            }
        },
        Some(Command::Completions(args)) => {
            completions::write(args.shell, Cli::command(), &mut std::io::stdout());
            ExitStatus::Ok.into()
        }
        Some(Command::Forwarder(args)) => {
            logging::init(cli.log.log_format, "info");
            run_forwarder(args)
        }
        None => {
            logging::init(cli.log.log_format, "info");
            run_agent(&cli.agent)
        }
    }
}

fn run_forwarder(args: &ForwarderArgs) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let handle = metrics_http::install_recorder()?;
            metrics_http::serve(args.metrics_listen, handle, Readiness::ready()).await?;
            spacefabric_proto::metrics_catalog::describe_and_register(
                spacefabric_fabric::forwarder::FORWARDER_METRICS,
            );
            spacefabric_fabric::emu::describe_metrics();
            forwarder_command::run(args, shutdown_signal()).await
        })
    })();
    match result {
        Ok(()) => ExitStatus::Ok.into(),
        Err(e) => {
            eprintln!("spacefabric-node forwarder: {e:#}");
            ExitStatus::Failure.into()
        }
    }
}

fn run_agent(args: &AgentArgs) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        let config = args.to_config()?;
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async {
            let handle = metrics_http::install_recorder()?;
            // Ready (GET /readyz 200) once the controller has registered this node.
            let readiness = Readiness::not_ready();
            metrics_http::serve(args.metrics_listen, handle, readiness.clone()).await?;
            spacefabric_node::metrics_catalog::describe_and_register();
            // Fabric jobs bind the node's fabric address (--listen); peers dial the
            // --advertise address the agent registered. Train jobs commit under --state-dir.
            let state_dir = config.state_dir.clone();
            let fabric = FabricSettings::new(args.listen).with_udp_payload(args.udp_payload);
            let agent = Agent::new(config);
            let mut status = agent.status();
            tokio::spawn(async move {
                loop {
                    readiness.set(status.borrow_and_update().node_id.is_some());
                    if status.changed().await.is_err() {
                        break;
                    }
                }
            });
            agent
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
        Ok(()) => ExitStatus::Ok.into(),
        Err(e) => {
            eprintln!("spacefabric-node: {e:#}");
            ExitStatus::Failure.into()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_follows_the_scheme_and_is_in_the_table() {
        let problems = spacefabric_cli::env_names::problems(
            &Cli::command(),
            include_str!("../../docs/CLI.md"),
        );
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
