//! spacefabric-bench: cluster sweeps with nccl-tests-style reports and the emulator's
//! fidelity check. This file only dispatches subcommands; each benchmark lives in its own
//! module.

mod admission;
mod allreduce;
mod bench_defaults;
mod byte_size;
mod clock;
mod controller_client;
mod fidelity;
mod host_share;
mod plot_axes;
mod profile_flag;
mod progress_bar;
mod train;
mod transfer;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use spacefabric_cli::exit_code::{ExitStatus, UsageError};
use spacefabric_cli::logging::{self, LogArgs};

/// spacefabric's benchmarks.
#[derive(Debug, Parser)]
#[command(
    name = "spacefabric-bench",
    version = spacefabric_cli::version::VERSION,
    about
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
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
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(spacefabric_cli::completions::CompletionsArgs),
}

/// Exit codes (spacefabric_cli::exit_code): 0 ok, 1 a run that failed, 2 a wrong flag or
/// input (clap's, or a [`UsageError`] such as an unknown profile), 3 wrong results (#wrong > 0,
/// a corrupted transfer).
fn main() -> ExitCode {
    if let Err(e) = spacefabric_cli::env_names::check() {
        eprintln!("spacefabric-bench: {e}");
        return ExitStatus::Usage.into();
    }
    let cli = Cli::parse();
    logging::init(cli.log.log_format, "warn");
    let result = match cli.command {
        Command::Allreduce(args) => allreduce::run(args),
        Command::Train(args) => train::run(*args),
        Command::Fidelity(args) => fidelity::run(args).map(|()| ExitStatus::Ok.into()),
        Command::Transfer(args) => transfer::run(args),
        Command::Completions(args) => {
            spacefabric_cli::completions::write(args.shell, Cli::command(), &mut std::io::stdout());
            Ok(ExitStatus::Ok.into())
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spacefabric-bench: {e:#}");
            if e.chain().any(|c| c.is::<UsageError>()) {
                ExitStatus::Usage.into()
            } else {
                ExitStatus::Failure.into()
            }
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
