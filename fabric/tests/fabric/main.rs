//! The fabric's integration tests, one test binary (one link instead of ten): the emulated
//! socket alone and under quinn, shared trunks and relay routes, the forwarder, TLS, and the
//! QUIC mesh (transfers, resume, sessions, closing, pacing). Run one with
//! `cargo test -p spacefabric-fabric --test fabric MODULE`.

mod emu_quinn;
mod emu_socket;
mod emu_trunks;
mod forwarder;
mod forwarder_shards;
mod mesh_close;
mod relay;
mod transport_mesh;
mod transport_tls;
mod trunk_pacing;
