//! spacefabric-node: one process of the emulated cluster. This file only parses the command
//! line and dispatches to the library.

use clap::{Parser, Subcommand};
use spacefabric_node::transport::ca_command::{self, CaCommand};

#[derive(Debug, Parser)]
#[command(name = "spacefabric-node", version, about = "A spacefabric node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Dev cluster CA and node identities for the QUIC fabric's mutual TLS.
    #[command(subcommand)]
    Ca(CaCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Ca(cmd) => ca_command::run(cmd).map_err(anyhow::Error::from),
    };
    match result {
        Ok(message) => {
            println!("{message}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
