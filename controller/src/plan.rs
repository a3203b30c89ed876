//! The plan, as pure functions: membership + topology → ranks and site groups; plan + job
//! spec → data and parameter shards and the algorithms to run.
//!
//! No I/O, no clock: the controller calls these on every membership change and every job
//! start, and the property tests call them with arbitrary inputs.
//!
//! Rules:
//! - Ranks go to the live members ordered by (site in profile order, join ordinal), so the
//!   ranks of a site are contiguous and a site's leader is its lowest rank.
//! - Shards are contiguous half-open ranges; the first `len % world` ranks get one extra
//!   index, so every index is covered exactly once.

use std::ops::Range;

use spacefabric_proto::v1::{JobPlan, JobSpec, Peer, ShardRange, SiteGroup, job_spec};

use crate::topology::Topology;

/// A member as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanMember {
    /// Stable node id.
    pub node_id: String,
    /// Node name (the identity key).
    pub name: String,
    /// Site name (one of the topology's sites).
    pub site: String,
    /// Where peers reach the node's QUIC endpoint.
    pub addr: String,
    /// Join order: ties inside a site are broken by it.
    pub ordinal: u64,
}

/// Ranks and site groups of the live members.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct MembershipPlan {
    /// `peers[r].rank == r`.
    pub peers: Vec<Peer>,
    /// Every site of the topology that has members, in profile order.
    pub sites: Vec<SiteGroup>,
}

impl MembershipPlan {
    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.peers.len()
    }

    /// The rank of `node_id`, if it is in the plan.
    pub fn rank_of(&self, node_id: &str) -> Option<u32> {
        self.peers
            .iter()
            .find(|p| p.node_id == node_id)
            .map(|p| p.rank)
    }
}

/// Assigns ranks to `members` (all of them live) and groups them by site.
///
/// Members on a site the topology does not know sort after the known sites, by name.
pub fn assign_ranks(members: &[PlanMember], topology: &Topology) -> MembershipPlan {
    let mut ordered: Vec<&PlanMember> = members.iter().collect();
    let site_key = |m: &PlanMember| topology.site_index(&m.site).unwrap_or(usize::MAX);
    ordered.sort_by(|a, b| {
        (site_key(a), &a.site, a.ordinal, &a.node_id).cmp(&(
            site_key(b),
            &b.site,
            b.ordinal,
            &b.node_id,
        ))
    });
    let peers: Vec<Peer> = ordered
        .iter()
        .enumerate()
        .map(|(rank, m)| Peer {
            rank: rank as u32,
            name: m.name.clone(),
            site: m.site.clone(),
            addr: m.addr.clone(),
            node_id: m.node_id.clone(),
        })
        .collect();
    let mut sites: Vec<SiteGroup> = Vec::new();
    for peer in &peers {
        match sites.last_mut() {
            Some(group) if group.site == peer.site => group.ranks.push(peer.rank),
            _ => sites.push(SiteGroup {
                site: peer.site.clone(),
                ranks: vec![peer.rank],
            }),
        }
    }
    MembershipPlan { peers, sites }
}

/// Splits `0..len` into `parts` contiguous ranges covering every index exactly once; the first
/// `len % parts` ranges are one longer. `parts == 0` gives no ranges.
pub fn shard_ranges(len: u64, parts: usize) -> Vec<Range<u64>> {
    spacefabric_proto::shard::even_split(len, parts)
}

/// Sizes a job's shards are cut from: (data length, parameter length). A train job's zero
/// fields take the defaults of `TrainJob::resolved`, the same the nodes apply.
pub fn job_lengths(spec: &JobSpec) -> (u64, u64) {
    match &spec.kind {
        Some(job_spec::Kind::AllReduce(a)) => (a.max_bytes / 4, 0),
        Some(job_spec::Kind::Train(t)) => (t.resolved().dataset_samples, t.parameter_count()),
        Some(job_spec::Kind::Ping(_)) | None => (0, 0),
    }
}

fn shards(len: u64, world: usize) -> Vec<ShardRange> {
    shard_ranges(len, world)
        .into_iter()
        .enumerate()
        .map(|(rank, r)| ShardRange {
            rank: rank as u32,
            start: r.start,
            end: r.end,
        })
        .collect()
}

/// The plan of one job over the current membership plan.
pub fn job_plan(plan: &MembershipPlan, plan_version: u64, spec: &JobSpec) -> JobPlan {
    let world = plan.world_size();
    let (data_len, param_len) = job_lengths(spec);
    let algorithms = match &spec.kind {
        Some(job_spec::Kind::AllReduce(a)) => {
            let mut out: Vec<i32> = Vec::new();
            for &algo in &a.collective_algorithms {
                if !out.contains(&algo) {
                    out.push(algo);
                }
            }
            out
        }
        // The world group's algorithm (`auto` unless the job names one); site groups and
        // site leaders always pick theirs with the cost model.
        Some(job_spec::Kind::Train(t)) => vec![t.resolved().collective_algorithm],
        Some(job_spec::Kind::Ping(_)) | None => Vec::new(),
    };
    JobPlan {
        plan_version,
        world_size: world as u32,
        peers: plan.peers.clone(),
        sites: plan.sites.clone(),
        data_shards: shards(data_len, world),
        param_shards: if param_len > 0 {
            shards(param_len, world)
        } else {
            Vec::new()
        },
        collective_algorithms: algorithms,
        data_len,
        param_len,
        // Filled in by the core from its configuration.
        forwarder_addrs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn topo() -> Topology {
        Topology::new("t", "", 1, vec!["earth".into(), "moon".into()], |_, _| {
            Duration::ZERO
        })
    }

    fn member(i: u64, site: &str) -> PlanMember {
        PlanMember {
            node_id: format!("n{i}"),
            name: format!("node-{i}"),
            site: site.into(),
            addr: format!("127.0.0.1:{}", 7500 + i),
            ordinal: i,
        }
    }

    #[test]
    fn ranks_are_contiguous_per_site_in_profile_order() {
        let members = vec![
            member(0, "moon"),
            member(1, "earth"),
            member(2, "moon"),
            member(3, "earth"),
        ];
        let plan = assign_ranks(&members, &topo());
        let names: Vec<_> = plan.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["node-1", "node-3", "node-0", "node-2"]);
        assert_eq!(plan.sites.len(), 2);
        assert_eq!(plan.sites[0].site, "earth");
        assert_eq!(plan.sites[0].ranks, [0, 1]);
        assert_eq!(plan.sites[1].ranks, [2, 3]);
    }

    #[test]
    fn shards_split_the_remainder_over_the_first_ranks() {
        assert_eq!(shard_ranges(10, 4), vec![0..3, 3..6, 6..8, 8..10]);
        assert_eq!(shard_ranges(2, 4), vec![0..1, 1..2, 2..2, 2..2]);
        assert!(shard_ranges(5, 0).is_empty());
    }
}
