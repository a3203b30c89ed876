//! The controller's control plane in process: a real controller on 127.0.0.1
//! (`spacefabric_testkit::controller`) and real tonic clients. Run one with
//! `cargo test -p spacefabric-controller --test controller control_plane::MODULE`.

mod control_plane_rtt;
mod enum_fields;
mod status_bounded;
mod time_dilation;
mod watch_bounded;
