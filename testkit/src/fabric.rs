//! The in-process fabric harness (quinn's `Pair`, for N ranks): one loopback UDP socket per
//! rank bound to port 0 and KEPT until its mesh takes it (`MeshConfig::bound`), so no port is
//! released and bound again (which another process could race for); a dev CA with one
//! identity per rank, the roster, one profile and one scenario clock. Tests take
//! [`FabricCluster::config`] and change what they exercise before connecting.

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;

use netem_profiles::Profile;
use spacefabric_fabric::emu::EmuClock;
use spacefabric_fabric::transport::tls::{DevCa, NodeIdentity};
use spacefabric_fabric::transport::{Mesh, MeshConfig, PeerInfo, TransportError};

/// `n` loopback UDP sockets on port 0, kept open.
pub fn bound_sockets(n: usize) -> Vec<Arc<UdpSocket>> {
    (0..n)
        .map(|_| {
            Arc::new(
                UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                    .unwrap_or_else(|e| panic!("binding a UDP socket on 127.0.0.1:0: {e}")),
            )
        })
        .collect()
}

/// N ranks ready to connect: rank r is `node-r` on site `sites[r]` at its socket's address.
#[derive(Debug)]
pub struct FabricCluster {
    /// The CA that issued every identity (tests issue strangers from it).
    pub ca: DevCa,
    /// The roster every rank gets.
    pub peers: Vec<PeerInfo>,
    /// One pre-bound socket per rank (empty after [`Self::release_sockets`]).
    pub sockets: Vec<Arc<UdpSocket>>,
    /// One identity per rank.
    pub identities: Vec<NodeIdentity>,
    /// The profile.
    pub profile: Arc<Profile>,
    /// The scenario clock, started at creation (under a paused tokio clock when the test is).
    pub clock: EmuClock,
}

impl FabricCluster {
    /// Ranks on the named sites of `profile`.
    pub fn new(profile: Arc<Profile>, sites: &[&str]) -> Self {
        let ca = DevCa::generate().unwrap();
        let sockets = bound_sockets(sites.len());
        let peers: Vec<PeerInfo> = sites
            .iter()
            .enumerate()
            .map(|(rank, site)| PeerInfo {
                rank,
                name: format!("node-{rank}"),
                addr: sockets[rank].local_addr().unwrap(),
                site: (*site).to_string(),
            })
            .collect();
        let identities = peers.iter().map(|p| ca.issue(&p.name).unwrap()).collect();
        Self {
            ca,
            peers,
            sockets,
            identities,
            profile,
            clock: EmuClock::new(tokio::time::Instant::now()),
        }
    }

    /// Ranks on sites given by index into `profile.sites`.
    pub fn on_site_indices(profile: Arc<Profile>, sites: &[usize]) -> Self {
        let names: Vec<String> = sites
            .iter()
            .map(|&s| profile.sites[s].name.clone())
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Self::new(profile, &names)
    }

    /// Rank `rank`'s mesh configuration, on its pre-bound socket when it still has one.
    pub fn config(&self, rank: usize) -> MeshConfig {
        let mut config = MeshConfig::new(
            rank,
            self.peers.clone(),
            self.profile.clone(),
            self.identities[rank].clone(),
            self.clock,
        );
        config.bound = self.sockets.get(rank).cloned();
        config
    }

    /// Lets go of the pre-bound sockets: meshes then bind their peer address themselves (for
    /// tests about binding, or that put something else than a mesh on a rank's address).
    pub fn release_sockets(&mut self) {
        self.sockets.clear();
    }

    /// Connects every rank's mesh with `config(rank)` changed by `adjust`, concurrently, and
    /// returns each rank's outcome (for tests of a refused connection).
    pub async fn try_connect_with(
        &self,
        adjust: impl Fn(&mut MeshConfig),
    ) -> Vec<Result<Mesh, TransportError>> {
        let handles: Vec<_> = (0..self.peers.len())
            .map(|r| {
                let mut config = self.config(r);
                adjust(&mut config);
                tokio::spawn(Mesh::connect(config))
            })
            .collect();
        let mut meshes = Vec::new();
        for (rank, h) in handles.into_iter().enumerate() {
            meshes.push(
                h.await
                    .unwrap_or_else(|e| panic!("rank {rank}: the connecting task: {e}")),
            );
        }
        meshes
    }

    /// Connects every rank's mesh with `config(rank)` changed by `adjust`, concurrently.
    pub async fn connect_with(&self, adjust: impl Fn(&mut MeshConfig)) -> Vec<Mesh> {
        self.try_connect_with(adjust)
            .await
            .into_iter()
            .enumerate()
            .map(|(rank, m)| m.unwrap_or_else(|e| panic!("rank {rank}: connecting the mesh: {e}")))
            .collect()
    }

    /// Connects every rank's mesh as configured, concurrently.
    pub async fn connect_all(&self) -> Vec<Mesh> {
        self.connect_with(|_| {}).await
    }
}
