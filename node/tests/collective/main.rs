//! The collectives' integration tests, one test binary (one link instead of four): the cost
//! model, the executor over in-memory fabrics, every datatype and reduction op, the schedules,
//! and every algorithm over the real QUIC mesh. Run one with `cargo test -p spacefabric-node --test collective MODULE`.

mod cost;
mod datatypes;
mod executor;
mod quic;
mod schedules;
mod support;
mod trunk_timing;
