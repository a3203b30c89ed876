//! The controller's process tests, one test binary (one link instead of four): each module
//! runs the built `spacefabric-controller`, `spacefabric-node` and `spacefabric-bench` as a
//! local cluster (`spacefabric_testkit::procs::LocalCluster`, one cluster at a time per
//! binary). Run one with `cargo test -p spacefabric-controller --test processes MODULE`.

mod allreduce_job;
mod bench_reattach;
mod dilated_cluster;
mod forwarder_job;
mod forwarder_shards;
