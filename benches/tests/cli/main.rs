//! The bench's command-line tests, one test binary (one link instead of five): each module
//! runs the built `spacefabric-bench` (`allreduce`, `train`, `fidelity`, the host-bound marks, the
//! command-line convention). Run one with `cargo test -p spacefabric-bench --test cli MODULE`.

mod allreduce_cli;
mod cli_convention;
mod common;
mod fidelity_cli;
mod host_bound_cli;
mod train_cli;
