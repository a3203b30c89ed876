//! The controller's integration tests, one test binary (one link instead of eleven): the
//! plan's properties, the control plane and a cluster of agents in process, the CLI, the
//! Kubernetes manifests, and the controller, node and bench binaries as local process
//! clusters. Run one with `cargo test -p spacefabric-controller --test controller MODULE`.

mod cli_convention;
mod cluster;
mod control_plane;
mod k8s_env_configured;
mod k8s_manifests;
mod plan_props;
mod processes;
mod profile_cli;
mod soak;
mod state_write_cost;
mod support;
mod train_recovery;
