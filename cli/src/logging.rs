//! Logs of every spacefabric binary: on stderr, filtered by `RUST_LOG` (default `info` unless
//! the binary says otherwise), ANSI colours only when stderr is a terminal (never in a pod's
//! log or a CI file), and `--log-format json` (env `SPACEFABRIC_LOG_FORMAT`) for one JSON
//! object per line with the span fields (rank, site, job) a log pipeline can index.

use std::io::IsTerminal;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
}

/// The `--log-format` flag, for `#[command(flatten)]` into a binary's top-level arguments.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct LogArgs {
    /// Log line format on stderr: text or json.
    #[arg(
        long,
        env = "SPACEFABRIC_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        global = true
    )]
    pub log_format: LogFormat,
}

/// Installs the global tracing subscriber: `RUST_LOG` if set, else `default_filter`.
/// Does nothing if a subscriber is already installed (a test harness).
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}
