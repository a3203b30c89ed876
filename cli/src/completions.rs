//! `<binary> completions bash|zsh|fish|elvish|powershell`: the shell completion script for a
//! binary's whole command tree (clap_complete), on stdout.
//!
//! ```text
//! spacefabric-node completions bash > /etc/bash_completion.d/spacefabric-node
//! ```

use std::io::Write;

/// Arguments of the `completions` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Writes the completion script of `command` (the binary's `Cli::command()`) for `shell`.
pub fn write(shell: clap_complete::Shell, mut command: clap::Command, out: &mut dyn Write) {
    let name = command.get_name().to_string();
    clap_complete::generate(shell, &mut command, name, out);
}
