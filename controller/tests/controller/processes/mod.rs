//! The controller's process tests: each module runs the built `spacefabric-controller`,
//! `spacefabric-node` and `spacefabric-bench` as a local cluster
//! (`spacefabric_testkit::procs::LocalCluster`, which holds the test binary's one
//! `ClusterSlot`: one process cluster at a time). Run one with
//! `cargo test -p spacefabric-controller --test controller processes::MODULE`.

mod allreduce_job;
mod bench_reattach;
mod dilated_cluster;
mod forwarder_job;
mod forwarder_shards;
mod forwarder_support;
