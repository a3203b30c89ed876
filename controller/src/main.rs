//! spacefabric-controller: the command line. A thin clap dispatcher; the work lives in the
//! library (`spacefabric_controller::*`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use spacefabric_cli::exit_code::ExitStatus;
use spacefabric_cli::logging::{self, LogArgs, LogFormat};
use spacefabric_controller::{cli, profile_report, timeline_plot};

/// The spacefabric controller and its profile tools.
#[derive(Debug, Parser)]
#[command(
    name = "spacefabric-controller",
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
    /// Run the controller: admit nodes, plan, detect failures, run jobs (gRPC 7400, /metrics 9400).
    Serve(cli::ServeArgs),
    /// Show the nodes, sites and jobs of a running controller.
    Status(cli::StatusArgs),
    /// Run a control-plane round-trip job on every node and print the round trips.
    Ping(cli::PingArgs),
    /// Check, show and plot link profiles (netem-profiles TOML files).
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(spacefabric_cli::completions::CompletionsArgs),
}

#[derive(Debug, Subcommand)]
enum ProfileCommand {
    /// Validate profile files: `ok FILE` for each valid one; otherwise one line per problem
    /// (`file:line: key `k`: message`) and exit status 2.
    Check {
        /// Profile files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Sites, and per directed link: delay, RTT, rate, BDP, loss, jitter, queue, next outages.
    Show {
        /// The profile file.
        #[arg(env = "SPACEFABRIC_PROFILE")]
        file: PathBuf,
    },
    /// Up/down windows and delay range of every link over the first hours of a run.
    Timeline {
        /// The profile file.
        #[arg(env = "SPACEFABRIC_PROFILE")]
        file: PathBuf,
        /// Hours of emulated time to cover.
        #[arg(long, env = "SPACEFABRIC_HOURS", default_value_t = 24.0)]
        hours: f64,
        /// Seconds per column of the strip chart (default: hours/60).
        #[arg(long, env = "SPACEFABRIC_STEP")]
        step: Option<f64>,
        /// Also write an SVG chart (up/down bars per link, one-way delay over time) here.
        #[arg(long, env = "SPACEFABRIC_PLOT")]
        plot: Option<PathBuf>,
    },
    /// Export the links' up windows and light times as an ION contact plan (`a contact`,
    /// `a range` lines) for DTN tools.
    ContactPlan {
        /// The profile file.
        #[arg(env = "SPACEFABRIC_PROFILE")]
        file: PathBuf,
        /// Hours of emulated time to cover.
        #[arg(long, env = "SPACEFABRIC_HOURS", default_value_t = 24.0)]
        hours: f64,
    },
}

fn main() -> ExitCode {
    if let Err(e) = spacefabric_cli::env_names::check() {
        eprintln!("error: {e}");
        return ExitStatus::Usage.into();
    }
    let cli = Cli::parse();
    let log = cli.log.log_format;
    match cli.command {
        // Profile files are the input: any error in them is a usage error (2).
        Command::Profile(cmd) => run_profile(cmd).unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            ExitStatus::Usage.into()
        }),
        Command::Serve(args) => run_async(log, cli::serve(args)),
        Command::Status(args) => run_async(log, cli::status(args)),
        Command::Ping(args) => run_async(log, cli::ping(args)),
        Command::Completions(args) => {
            spacefabric_cli::completions::write(args.shell, Cli::command(), &mut std::io::stdout());
            ExitStatus::Ok.into()
        }
    }
}

/// Runs an async command on a multi-threaded runtime, with logs on stderr. A wrong flag or
/// input file exits 2, anything failing at run time 1.
fn run_async(
    log: LogFormat,
    command: impl Future<Output = Result<(), cli::CommandError>>,
) -> ExitCode {
    logging::init(log, "info");
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| (ExitStatus::Failure, e.to_string()))
        .and_then(|runtime| {
            runtime.block_on(command).map_err(|e| {
                let status = match e {
                    cli::CommandError::Usage(_) => ExitStatus::Usage,
                    _ => ExitStatus::Failure,
                };
                (status, e.to_string())
            })
        });
    match result {
        Ok(()) => ExitStatus::Ok.into(),
        Err((status, message)) => {
            eprintln!("error: {message}");
            status.into()
        }
    }
}

fn run_profile(cmd: ProfileCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ProfileCommand::Check { files } => {
            let report = profile_report::check_files(&files);
            for line in &report.ok_lines {
                println!("{line}");
            }
            for line in &report.error_lines {
                eprintln!("{line}");
            }
            Ok(if report.all_valid() {
                ExitStatus::Ok
            } else {
                ExitStatus::Usage
            }
            .into())
        }
        ProfileCommand::Show { file } => {
            let profile = profile_report::load(&file)?;
            print!("{}", profile_report::show(&profile));
            Ok(ExitCode::SUCCESS)
        }
        ProfileCommand::Timeline {
            file,
            hours,
            step,
            plot,
        } => {
            let profile = profile_report::load(&file)?;
            if let Some(w) = profile_report::horizon_warning(&profile, hours) {
                eprintln!("warning: {w}");
            }
            print!("{}", profile_report::timeline(&profile, hours, step)?);
            if let Some(path) = plot {
                let svg = timeline_plot::timeline_svg(&profile, hours)?;
                std::fs::write(&path, svg)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        ProfileCommand::ContactPlan { file, hours } => {
            if !(hours.is_finite() && hours > 0.0 && hours <= 24.0 * 366.0) {
                anyhow::bail!("--hours must be a number of hours in (0, 8784], got {hours}");
            }
            let profile = profile_report::load(&file)?;
            let horizon = std::time::Duration::from_secs_f64(hours * 3600.0);
            if let Some(w) = profile_report::horizon_warning(&profile, hours) {
                eprintln!("warning: {w}");
            }
            let plan = netem_profiles::orbit::contact_plan::contact_plan(&profile, horizon);
            for w in &plan.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", plan.text);
            Ok(ExitCode::SUCCESS)
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
