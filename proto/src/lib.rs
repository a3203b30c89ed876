//! The gRPC contract of spacefabric, generated at build time from `proto/spacefabric/v1/*.proto`
//! by protox and tonic-prost-build (no system `protoc` needed).
//!
//! Everything lives under [`v1`]; [`FILE_DESCRIPTOR_SET`] feeds gRPC reflection; [`train_job`]
//! holds the defaults of a train job that the controller and the nodes share;
//! [`job_cost`] what a job costs one node (admission on both sides).

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

pub mod job_cost;
pub mod train_job;

/// The encoded file descriptor set of every spacefabric proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("spacefabric_descriptor");
