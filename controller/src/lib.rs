//! spacefabric-controller: admits nodes, decides who is where, hands out the plan, notices
//! failures and keeps the results — a tonic gRPC service (`spacefabric.v1.Controller`); and
//! the profile tools (`profile check|show|timeline|contact-plan`).
//!
//! Layers, from pure to I/O:
//! - [`topology`], [`plan`], [`validate`], [`deadline`], [`core`]: the deciding parts, no I/O and no clock
//!   (time is a parameter), property-tested;
//! - [`error`]: domain errors and the one mapping to `tonic::Status`;
//! - [`ca`]: the cluster CA (signs node CSRs, issues the TLS server certificate);
//! - [`store`]: the state dir (files written atomically); [`state_log`]: the state as a
//!   snapshot plus an append-only change log;
//! - [`light_delay`]: the control plane's light delay between the controller's site and a node's;
//! - [`service`]: thin tonic handlers over the core; [`server`]: wiring (health, reflection,
//!   TLS, failure detector, shutdown);
//! - [`cli`] and [`status`]: the `serve` and `status` commands;
//! - [`profile_report`] and [`timeline_plot`]: the `profile` commands.

pub mod ca;
pub mod cli;
pub mod core;
pub mod deadline;
pub mod error;
pub mod light_delay;
pub mod metrics_catalog;
pub mod plan;
pub mod profile_report;
pub mod server;
pub mod service;
pub mod state_log;
pub mod status;
pub mod store;
pub mod timeline_plot;
pub mod topology;
pub mod validate;

pub use crate::core::{Core, CoreConfig, Now};
pub use crate::error::ControllerError;
pub use crate::server::{ServerConfig, ServerHandle, spawn_server};
pub use crate::topology::Topology;
