//! The QUIC fabric between nodes: mutual TLS with the cluster CA ([`tls`]), quinn transport
//! tuned per link from the profile ([`config`]), the contact plan that keeps senders out of
//! scheduled outages ([`contact`]), host-side pacing to a sender's share of a link
//! ([`pacing`]), the framing of transfers ([`frame`]) and the peer mesh the
//! collectives run on ([`mesh`]).

pub mod ca_command;
pub mod config;
pub mod contact;
pub mod dilated_runtime;
pub mod frame;
pub mod mesh;
pub mod pacing;
pub mod tls;

pub use config::CcChoice;
pub use config::TrunkShare;
pub use dilated_runtime::DilatedRuntime;
pub use mesh::{
    Mesh, MeshConfig, MeshConfigError, MeshStats, Payload, PeerInfo, SocketKind, TransportError,
};
pub use tls::{DevCa, NodeIdentity};
