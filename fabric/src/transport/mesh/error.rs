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
    Config(#[from] MeshConfigError),
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

/// What is inconsistent in a [`MeshConfig`](super::MeshConfig): which peer, rank, site or
/// setting, and why.
#[derive(Debug, thiserror::Error)]
pub enum MeshConfigError {
    /// Two peers claim the same rank.
    #[error("rank {rank} listed twice in peers")]
    DuplicateRank {
        /// The rank.
        rank: usize,
    },
    /// A peer's rank is not below the number of peers.
    #[error("peer {name} has rank {rank} but there are only {world_size} peers")]
    RankOutOfRange {
        /// The peer's node name.
        name: String,
        /// Its rank.
        rank: usize,
        /// Peers listed.
        world_size: usize,
    },
    /// No peer holds a rank below the world size.
    #[error("no peer has rank {rank} (ranks must be 0..{world_size})")]
    MissingRank {
        /// The rank nobody has.
        rank: usize,
        /// Peers listed.
        world_size: usize,
    },
    /// Our own entry in the peers names another node than our certificate.
    #[error("rank {rank} is {listed} in peers but our certificate is for {certificate}")]
    NotOurCertificate {
        /// Our rank.
        rank: usize,
        /// The name the peers list gives it.
        listed: String,
        /// The name in our certificate.
        certificate: String,
    },
    /// A peer sits at a site the profile does not have.
    #[error("peer rank {rank} ({name}) is at site {site:?}, which profile {profile} does not have")]
    UnknownSite {
        /// The peer's rank.
        rank: usize,
        /// Its node name.
        name: String,
        /// The site it claims.
        site: String,
        /// The profile's name.
        profile: String,
    },
    /// The profile has more sites than the forwarder header can number.
    #[error("profile {profile} has {sites} sites: the forwarder header carries at most 65,536")]
    TooManySites {
        /// The profile's name.
        profile: String,
        /// Its sites.
        sites: usize,
    },
    /// Two peers share one address.
    #[error("two peers share the address {addr}")]
    DuplicateAddr {
        /// The address.
        addr: SocketAddr,
    },
    /// The UDP payload size is out of range.
    #[error("udp_payload {udp_payload} is outside 1200..={max}")]
    UdpPayloadRange {
        /// The size asked for.
        udp_payload: u16,
        /// The largest accepted.
        max: u16,
    },
    /// quinn refused the endpoint's UDP payload size.
    #[error("udp_payload: {0}")]
    UdpPayload(#[source] quinn::ConfigError),
    /// The forwarders cannot carry the profile's trunks (e.g. none listed).
    #[error("forwarders: {0}")]
    Forwarders(#[source] netem_profiles::CarriersError),
}
