//! spacefabric-fabric: the network fabric every node process runs on.
//!
//! Two rooms with a one-way door: [`transport`] (the QUIC mesh between nodes, mutual TLS,
//! per-link tuning, contact plans, transfer framing) → [`emu`] (the emulated socket quinn runs
//! on: each datagram crosses the profile's link model before it reaches the real socket).
//! Nothing here knows about collectives, training or the controller: the node crate builds on
//! this one, and the benches use it directly for transport-level measurements.

pub mod emu;
pub mod transport;
