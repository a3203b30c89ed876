//! spacefabric-bench: cluster sweeps with nccl-tests-style reports and the emulator's
//! fidelity check. This file only dispatches subcommands; each benchmark lives in its own
//! module.

mod admission;
mod allreduce;
mod byte_size;
mod clock;
mod controller_client;
mod fidelity;
mod host_share;
mod profile_flag;
mod svg;
mod train;
mod transfer;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// spacefabric's benchmarks.
#[derive(Debug, Parser)]
#[command(name = "spacefabric-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// All-reduce sweep (nccl-tests all_reduce_perf layout): every algorithm against the bound.
    Allreduce(allreduce::AllreduceArgs),
    /// Training strategies compared (sync, sharded, diloco, hier, streaming, delayed; a
    /// transformer LM or the MLP): loss against time and bytes.
    Train(Box<train::TrainFlags>),
    /// Emulator fidelity: timestamped probes under load across every link class.
    Fidelity(fidelity::FidelityArgs),
    /// Bulk transfer between two sites per congestion controller: goodput vs the link's
    /// rate, and recovery after an outage.
    Transfer(transfer::TransferArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Allreduce(args) => allreduce::run(args),
        Command::Train(args) => train::run(*args),
        Command::Fidelity(args) => fidelity::run(args).map(|()| ExitCode::SUCCESS),
        Command::Transfer(args) => transfer::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spacefabric-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}
