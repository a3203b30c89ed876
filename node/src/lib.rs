//! spacefabric-node: one process of the emulated cluster.
//!
//! Modules, each a room with a one-way door down: [`emu`] (the emulated socket quinn runs
//! on).

pub mod emu;
