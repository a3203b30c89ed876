//! What can go wrong in the mesh, as one typed error.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::transport::tls::TlsError;

/// What can go wrong in the mesh.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The configuration is inconsistent.
    #[error("mesh configuration: {0}")]
    Config(String),
    /// A rank outside the mesh.
    #[error("rank {rank} is not in the mesh (world size {world_size})")]
    NoSuchRank {
        /// The rank asked for.
        rank: usize,
        /// The mesh's size.
        world_size: usize,
    },
    /// The socket could not be bound.
    #[error("fabric socket {addr}: {source}")]
    Socket {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: io::Error,
    },
    /// Certificates or TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Not every peer connected in time.
    #[error("rank {rank}: no connection to ranks {missing:?} after {after:?}")]
    ConnectTimeout {
        /// Our rank.
        rank: usize,
        /// Ranks still missing.
        missing: Vec<usize>,
        /// How long we waited.
        after: Duration,
    },
    /// A peer is gone (left, or unreachable for longer than allowed).
    #[error("peer rank {rank} ({name}) is unreachable: {reason}")]
    PeerUnreachable {
        /// Its rank.
        rank: usize,
        /// Its node name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The peer refused a transfer stream.
    #[error("peer rank {rank} refused transfer {transfer_id} (stop code {code})")]
    Refused {
        /// Its rank.
        rank: usize,
        /// The transfer.
        transfer_id: u64,
        /// The stop code it sent.
        code: u64,
    },
    /// The link to the peer has no scheduled contact left.
    #[error("link to peer rank {rank} has no scheduled contact left")]
    NoContact {
        /// Its rank.
        rank: usize,
    },
    /// The mesh was closed.
    #[error("the mesh is closed")]
    Closed,
}
