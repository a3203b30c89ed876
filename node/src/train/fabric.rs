//! Training over the collective module: how a strategy's [`GradientSync`] groups are made from
//! real point-to-point exchanges (the QUIC mesh in a node, in-memory mailboxes in tests).
//!
//! - [`CollectiveGroup`]: a [`Communicator`] and an [`Algorithm`] as a `GradientSync`
//!   (sums from the collectives, divided by the group size).
//! - [`SubGroup`]: some ranks of an exchange as an exchange of their own (the ranks of a site,
//!   or one leader per site), with a tag salt so their collectives never collide with the
//!   world's on a shared link.
//! - [`MeteredExchange`] and [`LinkBytes`]: payload bytes sent per link class
//!   (`intra-earth`, `earth-moon`, ...), the x-axis of loss-against-bytes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::strategy::{GradientSync, TrafficMeter};
use super::{ConfigError, TrainError};
use crate::collective::{self, Algorithm, Communicator, CostModel, Exchange, ExchangeError};

fn collective_error(op: &'static str, e: impl std::fmt::Display) -> TrainError {
    TrainError::Collective {
        op,
        detail: e.to_string(),
    }
}

/// A communicator plus the algorithm every collective of this group uses.
#[derive(Debug)]
pub struct CollectiveGroup<E> {
    comm: Communicator<E>,
    algorithm: Algorithm,
}

impl<E: Exchange> CollectiveGroup<E> {
    /// The group of `exchange`'s ranks, with `cost` saying where they are (for hierarchical
    /// and auto algorithms).
    pub fn new(exchange: E, cost: CostModel, algorithm: Algorithm) -> Result<Self, TrainError> {
        let comm = Communicator::new(exchange)
            .with_cost_model(cost)
            .map_err(ConfigError::CollectiveGroup)?;
        Ok(Self { comm, algorithm })
    }

    /// The communicator.
    pub fn communicator(&self) -> &Communicator<E> {
        &self.comm
    }

    fn scale(&self, data: &mut [f32]) {
        let n = self.comm.world_size();
        if n > 1 {
            let inv = 1.0 / n as f32;
            data.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

impl<E: Exchange> GradientSync for CollectiveGroup<E> {
    fn rank(&self) -> usize {
        self.comm.rank()
    }

    fn world_size(&self) -> usize {
        self.comm.world_size()
    }

    async fn all_reduce_mean(&self, data: &mut [f32]) -> Result<(), TrainError> {
        if self.comm.world_size() > 1 {
            collective::all_reduce(&self.comm, self.algorithm, data)
                .await
                .map_err(|e| collective_error("all_reduce", e))?;
            self.scale(data);
        }
        Ok(())
    }

    async fn reduce_scatter_mean(&self, data: &mut [f32]) -> Result<(), TrainError> {
        if self.comm.world_size() > 1 {
            let span = collective::reduce_scatter(&self.comm, self.algorithm, data)
                .await
                .map_err(|e| collective_error("reduce_scatter", e))?;
            self.scale(&mut data[span.start..span.start + span.len]);
        }
        Ok(())
    }

    async fn all_gather(&self, data: &mut [f32]) -> Result<(), TrainError> {
        if self.comm.world_size() > 1 {
            collective::all_gather(&self.comm, self.algorithm, data)
                .await
                .map_err(|e| collective_error("all_gather", e))?;
        }
        Ok(())
    }

    async fn broadcast(&self, root: usize, data: &mut [f32]) -> Result<(), TrainError> {
        if self.comm.world_size() > 1 {
            collective::broadcast(&self.comm, self.algorithm, root, data)
                .await
                .map_err(|e| collective_error("broadcast", e))?;
        }
        Ok(())
    }
}

/// Some ranks of an exchange (`members`, in group order) as an exchange of their own.
#[derive(Debug, Clone)]
pub struct SubGroup<E> {
    inner: E,
    members: Vec<usize>,
    index: usize,
    salt: u64,
}

impl<E: Exchange> SubGroup<E> {
    /// The group of `members` (ranks of `inner`, in group order; `inner`'s own rank must be
    /// one of them). `group_id` (1..=255) goes into the top byte of every tag, so two groups
    /// over one exchange never mix their messages; collectives keep their call counter below
    /// 2^24, which leaves that byte free.
    pub fn new(inner: E, members: Vec<usize>, group_id: u8) -> Result<Self, TrainError> {
        let me = inner.rank();
        let Some(index) = members.iter().position(|&m| m == me) else {
            return Err(ConfigError::NotAMember {
                group_id,
                rank: me,
                members,
            }
            .into());
        };
        if let Some(&bad) = members.iter().find(|&&m| m >= inner.world_size()) {
            return Err(ConfigError::MemberOutsideWorld {
                group_id,
                member: bad,
                world: inner.world_size(),
            }
            .into());
        }
        Ok(Self {
            inner,
            members,
            index,
            salt: u64::from(group_id) << 56,
        })
    }

    /// The members' ranks in the underlying exchange.
    pub fn members(&self) -> &[usize] {
        &self.members
    }

    fn member(&self, index: usize) -> Result<usize, ExchangeError> {
        self.members.get(index).copied().ok_or_else(|| {
            ExchangeError::msg(format!(
                "sub-group rank {index} out of range (group of {})",
                self.members.len()
            ))
        })
    }
}

impl<E: Exchange> Exchange for SubGroup<E> {
    fn rank(&self) -> usize {
        self.index
    }

    fn world_size(&self) -> usize {
        self.members.len()
    }

    fn send(
        &self,
        to: usize,
        tag: u64,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        let target = self.member(to);
        let tag = tag ^ self.salt;
        async move { self.inner.send(target?, tag, payload).await }
    }

    fn recv(
        &self,
        from: usize,
        tag: u64,
    ) -> impl Future<Output = Result<Bytes, ExchangeError>> + Send {
        let source = self.member(from);
        let tag = tag ^ self.salt;
        async move { self.inner.recv(source?, tag).await }
    }
}

/// Payload bytes sent per link class, shared by every exchange of a cluster (or one node).
#[derive(Debug)]
pub struct LinkBytes {
    classes: Vec<String>,
    counts: Vec<AtomicU64>,
    /// `class_of[from_rank * world + to_rank]`.
    class_of: Vec<usize>,
    world: usize,
}

impl LinkBytes {
    /// Counters for ranks placed on the named sites (`site_of_rank[r]` = site of rank r). A
    /// link class is an unordered site pair: `intra-<site>` or `<a>-<b>` (in order of first
    /// appearance).
    pub fn new(site_of_rank: &[String]) -> Self {
        let mut sites: Vec<&str> = Vec::new();
        for s in site_of_rank {
            if !sites.contains(&s.as_str()) {
                sites.push(s);
            }
        }
        let mut classes = Vec::new();
        let mut pair_class = vec![0usize; sites.len() * sites.len()];
        for a in 0..sites.len() {
            for b in a..sites.len() {
                let name = if a == b {
                    format!("intra-{}", sites[a])
                } else {
                    format!("{}-{}", sites[a], sites[b])
                };
                pair_class[a * sites.len() + b] = classes.len();
                pair_class[b * sites.len() + a] = classes.len();
                classes.push(name);
            }
        }
        let site_index: Vec<usize> = site_of_rank
            .iter()
            .map(|s| sites.iter().position(|x| x == s).unwrap_or(0))
            .collect();
        let world = site_of_rank.len();
        let mut class_of = vec![0; world * world];
        for from in 0..world {
            for to in 0..world {
                class_of[from * world + to] =
                    pair_class[site_index[from] * sites.len() + site_index[to]];
            }
        }
        Self {
            counts: classes.iter().map(|_| AtomicU64::new(0)).collect(),
            classes,
            class_of,
            world,
        }
    }

    /// Counts `bytes` sent from rank `from` to rank `to` (unknown ranks are ignored).
    pub fn record(&self, from: usize, to: usize, bytes: u64) {
        if from < self.world && to < self.world {
            let class = self.class_of[from * self.world + to];
            self.counts[class].fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// The link classes, in reporting order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }
}

impl TrafficMeter for LinkBytes {
    fn snapshot(&self) -> Vec<(String, u64)> {
        self.classes
            .iter()
            .zip(&self.counts)
            .map(|(c, n)| (c.clone(), n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// An exchange that counts what it sends in a [`LinkBytes`].
#[derive(Debug, Clone)]
pub struct MeteredExchange<E> {
    inner: E,
    meter: Arc<LinkBytes>,
}

impl<E: Exchange> MeteredExchange<E> {
    /// Counts `inner`'s sends in `meter`.
    pub fn new(inner: E, meter: Arc<LinkBytes>) -> Self {
        Self { inner, meter }
    }

    /// The wrapped exchange.
    pub fn inner(&self) -> &E {
        &self.inner
    }
}

impl<E: Exchange> Exchange for MeteredExchange<E> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn world_size(&self) -> usize {
        self.inner.world_size()
    }

    fn send(
        &self,
        to: usize,
        tag: u64,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        self.meter
            .record(self.inner.rank(), to, payload.len() as u64);
        self.inner.send(to, tag, payload)
    }

    fn recv(
        &self,
        from: usize,
        tag: u64,
    ) -> impl Future<Output = Result<Bytes, ExchangeError>> + Send {
        self.inner.recv(from, tag)
    }
}

/// The cost model of a group: the profile's links for the group's members, placed on the
/// sites `site_of_rank` names (profile site ids).
pub fn group_cost(
    profile: &netem_profiles::Profile,
    site_of_member: Vec<netem_profiles::SiteId>,
) -> Result<CostModel, TrainError> {
    CostModel::from_profile(profile, site_of_member, std::time::Duration::ZERO)
        .map_err(|e| ConfigError::CostModel(e).into())
}

/// The groups rank `exchange.rank()` trains in, made from one exchange of the whole job:
/// the world (every rank) and, for the hierarchical strategy, its site (the ranks on its site,
/// in rank order, so the lowest is the site leader) and — on site leaders only — the leaders
/// (one per site, sites ordered by their lowest rank). `site_of_rank` gives each rank's
/// profile site.
pub fn job_groups<E: Exchange + Clone>(
    exchange: E,
    profile: &netem_profiles::Profile,
    site_of_rank: &[netem_profiles::SiteId],
    hierarchical: bool,
    algorithm: Algorithm,
) -> Result<super::Groups<CollectiveGroup<SubGroup<E>>>, TrainError> {
    let world = exchange.world_size();
    let me = exchange.rank();
    ConfigError::check_site_count("groups", site_of_rank.len(), world)?;
    let all: Vec<usize> = (0..world).collect();
    let world_group = CollectiveGroup::new(
        SubGroup::new(exchange.clone(), all, 1)?,
        group_cost(profile, site_of_rank.to_vec())?,
        algorithm,
    )?;
    if !hierarchical {
        return Ok(super::Groups {
            world: world_group,
            site: None,
            leaders: None,
        });
    }
    let my_site = site_of_rank[me];
    let site_members: Vec<usize> = (0..world).filter(|&r| site_of_rank[r] == my_site).collect();
    let site_group = CollectiveGroup::new(
        SubGroup::new(exchange.clone(), site_members.clone(), 2)?,
        group_cost(profile, vec![my_site; site_members.len()])?,
        Algorithm::Auto,
    )?;
    let mut leaders: Vec<usize> = Vec::new();
    for r in 0..world {
        if !leaders.iter().any(|&l| site_of_rank[l] == site_of_rank[r]) {
            leaders.push(r);
        }
    }
    let leaders_group = if leaders.contains(&me) {
        let sites = leaders.iter().map(|&l| site_of_rank[l]).collect();
        Some(CollectiveGroup::new(
            SubGroup::new(exchange, leaders, 3)?,
            group_cost(profile, sites)?,
            Algorithm::Auto,
        )?)
    } else {
        None
    };
    Ok(super::Groups {
        world: world_group,
        site: Some(site_group),
        leaders: leaders_group,
    })
}
