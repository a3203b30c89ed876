//! Job runners the node agent ships with, one module per job kind (the control-plane ping
//! probe lives in `agent` itself). Each implements [`crate::agent::JobRunner`];
//! [`job_mesh`] builds the QUIC mesh of a job attempt that the fabric jobs share;
//! [`result_messages`] turns their results into the contract's messages and back.

pub mod allreduce;
pub mod job_mesh;
pub mod result_messages;
pub mod train;

pub use allreduce::{AllReduceError, AllReduceRunner, NodeSweepResult};
pub use result_messages::ResultMessageError;
pub use train::{NodeTrainResult, TrainJobError, TrainRunner};
