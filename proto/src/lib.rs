//! The gRPC contract of spacefabric, generated at build time from `proto/spacefabric/v1/*.proto`
//! by protox and tonic-prost-build (no system `protoc` needed).
//!
//! Everything lives under [`v1`]; [`FILE_DESCRIPTOR_SET`] feeds gRPC reflection; [`train_job`]
//! holds the defaults of a train job that the controller and the nodes share, [`train_names`]
//! and [`algorithm`] the names of the wire enums `Strategy`, `Activation` and `Algorithm`
//! (what a command line, report or JSON file says), [`wire_enum`] the checked conversion
//! between those names and the wire's numbers; which job states
//! are terminal is said once, here ([`v1::JobState::is_terminal`], [`v1::Job::is_finished`]).
//! [`job_cost`] says what a job costs one node (admission on both sides). [`time_dilation`]
//! is the cluster's dilation factor K that the controller hands its nodes. [`reduction`] names
//! the element types and reduction ops of an all-reduce job (nccl-tests' `-d` and `-o`).

/// Version 1 of the spacefabric API: messages, client and server stubs.
#[allow(
    clippy::all,
    unreachable_pub,
    missing_debug_implementations,
    unused_qualifications
)]
pub mod v1 {
    tonic::include_proto!("spacefabric.v1");
}

pub mod algorithm;
pub mod all_reduce_job;
pub mod job_cost;
pub mod metrics_catalog;
pub mod reduction;
pub mod shard;
pub mod time_dilation;
pub mod train_job;
pub mod train_names;
pub mod wire_enum;

impl v1::JobState {
    /// True for the states a job never leaves: succeeded, failed, cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl v1::Job {
    /// True once the job is in a state it never leaves (an unknown state number is not).
    pub fn is_finished(&self) -> bool {
        v1::JobState::try_from(self.state).is_ok_and(v1::JobState::is_terminal)
    }
}

/// The encoded file descriptor set of every spacefabric proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("spacefabric_descriptor");
