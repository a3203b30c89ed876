//! spacefabric-cli: what the three binaries (spacefabric-controller, spacefabric-node,
//! spacefabric-bench) do the same way, implemented once so they cannot drift apart:
//! exit codes ([`exit_code`]), `--version` with the git commit ([`version`]), logs on stderr
//! without colours off a terminal and as JSON on request ([`logging`]), shell completions
//! ([`completions`]), renamed environment variables that now fail with the new name
//! ([`env_names`]), and the HTTP endpoint beside every process's work (`/metrics` with
//! process metrics, `/readyz`, `/livez`: [`metrics_http`], [`process_metrics`]).
//! docs/CLI.md is the user-facing table of all of it.

pub mod completions;
pub mod env_names;
pub mod exit_code;
pub mod logging;
pub mod metrics_http;
pub mod process_metrics;
pub mod version;
