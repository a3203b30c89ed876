//! spacefabric-node: one process of the emulated cluster.
//!
//! Modules, each a room with a one-way door down: [`train`] (model, optimisers, strategies)
//! → [`collective`] (all-reduce & co. as schedules over any point-to-point exchange) → the
//! fabric crate (`spacefabric-fabric`: the QUIC mesh between nodes over the emulated socket). Beside them, [`agent`]: the node's side of the controller
//! protocol (registration, heartbeats, control events, job dispatch), and [`jobs`]: the job
//! runners it dispatches to (all-reduce sweeps over the fabric).

pub mod agent;
pub mod collective;
pub mod forwarder_command;
pub mod jobs;
pub mod metrics_catalog;
pub mod train;
