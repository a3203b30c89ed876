//! Job runners the node agent ships with, one module per job kind (the control-plane ping
//! probe lives in `agent` itself). Each implements [`crate::agent::JobRunner`].

pub mod allreduce;

pub use allreduce::{AllReduceError, AllReduceRunner, NodeSweepResult};
