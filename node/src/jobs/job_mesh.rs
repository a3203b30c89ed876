//! The QUIC mesh of one job attempt, built from what the controller sent: peers, fabric
//! addresses and sites from the job's plan; the TLS identity and cluster CA from registration;
//! the profile's links on an emulated socket; the scenario clock from the controller's epoch.
//! Every job kind that talks over the fabric (all-reduce, train) starts here.
//!
//! The mesh binds the node's `--listen` address (peers dial the `--advertise` address the node
//! registered, which is what the plan carries) and lives for one attempt: the runner closes it
//! when the job ends, fails or is cancelled, so the next attempt can bind the same port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netem_profiles::{Profile, SiteId};
use tokio::time::Instant;

use crate::agent::{JobContext, Scenario};
use spacefabric_fabric::emu::EmuClock;
use spacefabric_fabric::transport::config::FABRIC_MTU;
use spacefabric_fabric::transport::{
    Mesh, MeshConfig, NodeIdentity, PeerInfo, SocketKind, TransportError,
};
use spacefabric_proto::time_dilation::TimeDilation;

/// Why a job's mesh could not be built.
#[derive(Debug, thiserror::Error)]
pub enum JobMeshError {
    /// A peer's address in the plan does not parse.
    #[error("job plan: peer rank {rank} ({name}): address '{addr}': {source}")]
    PeerAddress {
        /// The peer's rank.
        rank: u32,
        /// The peer's name.
        name: String,
        /// The address as the plan gives it.
        addr: String,
        /// Why it does not parse.
        source: std::net::AddrParseError,
    },
    /// A peer's site is not in the profile.
    #[error("job plan: peer rank {rank} ({name}): site '{site}' is not in profile {profile}")]
    PeerSite {
        /// The peer's rank.
        rank: u32,
        /// The peer's name.
        name: String,
        /// The site the plan gives.
        site: String,
        /// The profile's name.
        profile: String,
    },
    /// A peer's rank is outside the plan.
    #[error("job plan: peer {name} has rank {rank} in a plan of {world}")]
    PeerRank {
        /// The peer's name.
        name: String,
        /// Its rank.
        rank: u32,
        /// The plan's size.
        world: usize,
    },
    /// Our own rank is outside the plan.
    #[error("job plan: our rank {rank} is outside a plan of {world}")]
    OwnRank {
        /// Our rank.
        rank: usize,
        /// The plan's size.
        world: usize,
    },
    /// A forwarder address of the plan does not resolve.
    #[error("job plan: forwarder_addrs[{index}] {addr:?}: {source}")]
    ForwarderLookup {
        /// Its index in the plan's list.
        index: usize,
        /// The address as the plan gives it.
        addr: String,
        /// Why it does not resolve.
        source: std::io::Error,
    },
    /// A forwarder address of the plan resolves to nothing.
    #[error("job plan: forwarder_addrs[{index}] {addr:?}: no address")]
    ForwarderNone {
        /// Its index in the plan's list.
        index: usize,
        /// The address as the plan gives it.
        addr: String,
    },
    /// The profile from registration does not parse.
    #[error("scenario profile: {0}")]
    Profile(#[from] netem_profiles::ProfileErrors),
    /// Registration gave no certificate.
    #[error("fabric identity: registration gave no certificate")]
    NoCertificate,
    /// The node's fabric identity is invalid.
    #[error("fabric identity: {0}")]
    Identity(#[from] spacefabric_fabric::transport::tls::TlsError),
    /// Connecting the QUIC mesh failed.
    #[error("fabric mesh: {0}")]
    Mesh(#[from] TransportError),
}

/// The plan of a job, checked against the profile: who is where.
#[derive(Debug, Clone)]
pub struct JobPlacement {
    /// This node's rank.
    pub rank: usize,
    /// The scenario's profile.
    pub profile: Arc<Profile>,
    /// Every rank's profile site id, by rank.
    pub site_of_rank: Vec<SiteId>,
    /// Every rank's site name, by rank.
    pub sites_by_rank: Vec<String>,
    /// The peers as the mesh needs them.
    pub peers: Vec<PeerInfo>,
}

impl JobPlacement {
    /// Reads the job's plan: every peer's address must parse, its site must be in the profile
    /// and its rank inside the plan; our rank must be in it too.
    pub fn from_job(ctx: &JobContext) -> Result<Self, JobMeshError> {
        let scenario = &ctx.scenario;
        let profile = Profile::parse(&scenario.profile_toml, &scenario.profile_name)?;
        let n = ctx.plan.peers.len();
        let mut peers = Vec::with_capacity(n);
        let mut site_of_rank = vec![0; n];
        let mut sites_by_rank = vec![String::new(); n];
        for p in &ctx.plan.peers {
            let addr: SocketAddr = p.addr.parse().map_err(|source| JobMeshError::PeerAddress {
                rank: p.rank,
                name: p.name.clone(),
                addr: p.addr.clone(),
                source,
            })?;
            let site = profile
                .site_id(&p.site)
                .ok_or_else(|| JobMeshError::PeerSite {
                    rank: p.rank,
                    name: p.name.clone(),
                    site: p.site.clone(),
                    profile: profile.name.clone(),
                })?;
            let r = p.rank as usize;
            let (Some(slot), Some(name)) = (site_of_rank.get_mut(r), sites_by_rank.get_mut(r))
            else {
                return Err(JobMeshError::PeerRank {
                    name: p.name.clone(),
                    rank: p.rank,
                    world: n,
                });
            };
            *slot = site;
            name.clone_from(&p.site);
            peers.push(PeerInfo {
                rank: r,
                name: p.name.clone(),
                addr,
                site: p.site.clone(),
            });
        }
        let rank = ctx.rank as usize;
        if rank >= n {
            return Err(JobMeshError::OwnRank { rank, world: n });
        }
        Ok(Self {
            rank,
            profile: Arc::new(profile),
            site_of_rank,
            sites_by_rank,
            peers,
        })
    }

    /// The mesh configuration of this node for the job, built as `fabric` says.
    pub fn mesh_config(
        &self,
        ctx: &JobContext,
        fabric: &FabricSettings,
    ) -> Result<MeshConfig, JobMeshError> {
        let id = &ctx.scenario.identity;
        if id.cert_pem.is_empty() {
            return Err(JobMeshError::NoCertificate);
        }
        let identity = NodeIdentity::from_pem(&id.ca_pem, &id.cert_pem, &id.key_pem)?;
        let mut config = MeshConfig::new(
            self.rank,
            self.peers.clone(),
            Arc::clone(&self.profile),
            identity,
            scenario_clock(ctx.scenario.epoch_unix_ms, ctx.scenario.time_dilation),
        );
        config.listen = Some(fabric.listen);
        config.socket = fabric.socket;
        config.udp_payload = fabric.udp_payload;
        config.session = format!("{}/{}", ctx.job_id, ctx.attempt);
        Ok(config)
    }
}

/// How a node builds the meshes of its jobs; every fabric job runner holds one.
#[derive(Debug, Clone, Copy)]
pub struct FabricSettings {
    /// The node's fabric address (`--listen`); peers dial the `--advertise` address.
    pub listen: SocketAddr,
    /// The socket kind (default: emulated, applying the profile's links).
    pub socket: SocketKind,
    /// UDP payload bytes per fabric datagram (default [`FABRIC_MTU`]).
    pub udp_payload: u16,
}

impl FabricSettings {
    /// Meshes bound on `listen`, on an emulated socket, with Ethernet-sized datagrams.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            socket: SocketKind::Emulated,
            udp_payload: FABRIC_MTU,
        }
    }

    /// The same with `bytes` of UDP payload per fabric datagram.
    pub fn with_udp_payload(mut self, bytes: u16) -> Self {
        self.udp_payload = bytes;
        self
    }

    /// The same with another socket kind (`Passthrough`: links off, the overhead baseline).
    pub fn with_socket(mut self, socket: SocketKind) -> Self {
        self.socket = socket;
        self
    }
}

/// Connects a job's mesh from `config`. The previous attempt's mesh (aborted for a re-plan a
/// moment ago) may still hold the port while its last delayed datagrams leave: a busy port is
/// retried for a bounded time.
pub async fn connect_mesh(ctx: &JobContext, mut config: MeshConfig) -> Result<Mesh, JobMeshError> {
    if config.forwarders.is_empty() && config.socket == SocketKind::Emulated {
        for (index, addr) in ctx.plan.forwarder_addrs.iter().enumerate() {
            config
                .forwarders
                .push(resolve_forwarder(index, addr, config.listen).await?);
        }
        if !config.forwarders.is_empty() {
            tracing::info!(
                job_id = %ctx.job_id,
                rank = config.rank,
                forwarders = ?config.forwarders,
                "shared trunks go through the forwarder{}",
                if config.forwarders.len() > 1 { "s (each trunk through the one that carries it)" } else { "" }
            );
        }
    }
    let listen = config.listen;
    tracing::info!(job_id = %ctx.job_id, rank = config.rank, ?listen, "connecting the job's mesh");
    let deadline = Instant::now() + PORT_PATIENCE;
    let mut backoff = Duration::from_millis(20);
    loop {
        match Mesh::connect(config.clone()).await {
            Err(TransportError::Socket { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse
                    && Instant::now() + backoff < deadline =>
            {
                tracing::debug!(
                    ?listen,
                    "fabric port still held by the previous attempt; retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            other => return Ok(other?),
        }
    }
}

/// Forwarder `index` of the plan (`forwarder_addrs[index]`, host:port, resolved now: a
/// restarted forwarder pod may have a new address by the next attempt), preferring the
/// address family of our `listen` address.
async fn resolve_forwarder(
    index: usize,
    addr: &str,
    listen: Option<SocketAddr>,
) -> Result<SocketAddr, JobMeshError> {
    let addr = addr.trim();
    let found: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|source| JobMeshError::ForwarderLookup {
            index,
            addr: addr.to_string(),
            source,
        })?
        .collect();
    let v4 = listen.is_none_or(|l| l.is_ipv4());
    let pick = found
        .iter()
        .find(|a| a.is_ipv4() == v4)
        .or(found.first())
        .copied()
        .ok_or_else(|| JobMeshError::ForwarderNone {
            index,
            addr: addr.to_string(),
        })?;
    Ok(pick)
}

/// How long a job waits for its fabric port to be released by the previous attempt.
const PORT_PATIENCE: Duration = Duration::from_secs(15);

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Emulated time now: how long ago the scenario epoch was, divided by the time dilation K
/// (zero if the epoch is in the future).
pub fn scenario_time(scenario: &Scenario) -> Duration {
    scenario.time_dilation.emulated(Duration::from_millis(
        unix_now_ms().saturating_sub(scenario.epoch_unix_ms),
    ))
}

/// The scenario clock: emulated time 0 is the controller's epoch (unix ms), so every node's
/// link schedules agree (up to the hosts' clock skew). Read to the nanosecond (not the
/// millisecond), so the barriers of node processes on one host release within microseconds
/// of each other. Dilated by the cluster's K: emulated time is the wall time since the epoch
/// divided by K, the same on every node, and quinn runs on it too (the mesh picks
/// `DilatedRuntime` for K > 1).
pub fn scenario_clock(epoch_unix_ms: u64, dilation: TimeDilation) -> EmuClock {
    let now = Instant::now();
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let ago = since_unix.saturating_sub(Duration::from_millis(epoch_unix_ms));
    EmuClock::dilated(now.checked_sub(ago).unwrap_or(now), dilation.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_counts_from_the_epoch() {
        let epoch = unix_now_ms().saturating_sub(5_000);
        let clock = scenario_clock(epoch, TimeDilation::NONE);
        assert!(clock.now() >= Duration::from_millis(4_900));
        // Dilated by 4: the same epoch is a quarter as long ago in emulated time, and the
        // clock's instants are K times further apart.
        let dilated = scenario_clock(epoch, TimeDilation::new(4).expect("valid"));
        assert_eq!(dilated.dilation(), 4);
        assert!(dilated.now() >= Duration::from_millis(1_225));
        assert!(dilated.now() < Duration::from_millis(2_500));
    }
}
