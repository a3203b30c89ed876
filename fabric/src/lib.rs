//! spacefabric-fabric: the network fabric every node process runs on.
//!
//! Two rooms with a one-way door: [`transport`] (the QUIC mesh between nodes, mutual TLS,
//! per-link tuning, contact plans, transfer framing) → [`emu`] (the emulated socket quinn runs
//! on: each datagram crosses the profile's link model before it reaches the real socket).
//! Beside them, [`forwarder`]: the process that carries shared trunks between node processes,
//! applying them with the same [`emu`] code (forwarder → emu). And [`host_load`]: what the host
//! did to a run (CPU, run-queue wait, the delay line's lateness), measured where it runs.
//! Nothing here knows about collectives, training or the controller: the node crate builds on
//! this one, and the benches use it directly for transport-level measurements.

pub mod emu;
pub mod forwarder;
pub mod host_load;
pub mod transport;
