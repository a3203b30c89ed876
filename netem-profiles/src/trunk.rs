//! Trunks: which physical link a datagram from one node to another crosses.
//!
//! A profile's link between two sites is by default one shared trunk per direction
//! ([`LinkSharing`]): every ordered node pair of the two sites serialises through the same
//! queue at the same rate. With `terminals = k` the pairs are spread over k parallel trunks;
//! with `per_pair = true` every pair has its own private link. [`TrunkPlan`] is that
//! placement for one roster (rank → site), computed the same way by every process that knows
//! the roster — the in-process bench cluster, each node, the cost model — so they all agree
//! on which pairs queue behind each other.
//!
//! Placement on k terminals: the ordered node pairs (a, b) with a at the source site and b
//! at the destination site, taken in (rank a, rank b) order, go to terminals 0, 1, …, k−1,
//! 0, 1, … — each pair to the least-loaded terminal (by pairs placed), ties to the lowest.
//! One QUIC connection per node pair means this is placement per connection.
//!
//! Pure: no I/O, no clock.

use std::collections::HashMap;

use crate::profile::{LinkSharing, Profile, SiteId};

/// The physical link an ordered node pair uses in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrunkId {
    /// The pair's private link (`per_pair`, or inside a site by default).
    Private {
        /// Sending rank.
        from_rank: usize,
        /// Receiving rank.
        to_rank: usize,
    },
    /// Terminal `terminal` of the shared link `from_site → to_site`.
    Shared {
        /// Sending site.
        from_site: SiteId,
        /// Receiving site.
        to_site: SiteId,
        /// Which parallel trunk (0-based, < terminals).
        terminal: u32,
    },
}

impl TrunkId {
    /// Is this a trunk several node pairs may share?
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Shared { .. })
    }
}

/// Ranks placed on sites, and the trunk every ordered rank pair crosses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkPlan {
    site_of_rank: Vec<SiteId>,
    /// `trunks[from * world + to]` (the diagonal is unused: a rank never sends to itself).
    trunks: Vec<TrunkId>,
    /// Node pairs placed on each shared trunk.
    pairs: HashMap<TrunkId, usize>,
}

impl TrunkPlan {
    /// The placement for ranks on `site_of_rank` (site ids of `profile`).
    ///
    /// Site ids out of range are treated as private links (callers validate sites first;
    /// the plan never panics on them).
    pub fn new(profile: &Profile, site_of_rank: &[SiteId]) -> Self {
        let world = site_of_rank.len();
        let nsites = profile.sites.len();
        let mut trunks = Vec::with_capacity(world * world);
        let mut pairs: HashMap<TrunkId, usize> = HashMap::new();
        // Pairs placed so far per (from_site, to_site): the next pair goes to `count % k`.
        let mut placed: HashMap<(SiteId, SiteId), u32> = HashMap::new();
        for (a, &sa) in site_of_rank.iter().enumerate() {
            for (b, &sb) in site_of_rank.iter().enumerate() {
                let private = TrunkId::Private {
                    from_rank: a,
                    to_rank: b,
                };
                let sharing = if a == b || sa >= nsites || sb >= nsites {
                    LinkSharing::PerPair
                } else {
                    profile.sharing(sa, sb)
                };
                let id = match sharing {
                    LinkSharing::PerPair => private,
                    LinkSharing::Shared { terminals } => {
                        let n = placed.entry((sa, sb)).or_insert(0);
                        let terminal = *n % terminals.max(1);
                        *n = n.wrapping_add(1);
                        let id = TrunkId::Shared {
                            from_site: sa,
                            to_site: sb,
                            terminal,
                        };
                        *pairs.entry(id).or_insert(0) += 1;
                        id
                    }
                };
                trunks.push(id);
            }
        }
        Self {
            site_of_rank: site_of_rank.to_vec(),
            trunks,
            pairs,
        }
    }

    /// Number of ranks.
    pub fn world(&self) -> usize {
        self.site_of_rank.len()
    }

    /// The site of every rank.
    pub fn site_of_rank(&self) -> &[SiteId] {
        &self.site_of_rank
    }

    /// The trunk datagrams from rank `from` to rank `to` cross; `None` for a rank out of
    /// range.
    pub fn trunk(&self, from: usize, to: usize) -> Option<TrunkId> {
        let w = self.world();
        if from >= w || to >= w {
            return None;
        }
        self.trunks.get(from * w + to).copied()
    }

    /// Ordered node pairs the roster places on `trunk` (1 for a private link, 0 for an
    /// unknown trunk).
    pub fn pairs_on(&self, trunk: TrunkId) -> usize {
        match trunk {
            TrunkId::Private { .. } => 1,
            TrunkId::Shared { .. } => self.pairs.get(&trunk).copied().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(extra: &str) -> Profile {
        let text = format!(
            r#"
name = "t"
[sites.a]
[sites.b]
[[links]]
from = "a"
to = "a"
delay_ms = 0.1
[[links]]
from = "b"
to = "b"
delay_ms = 0.1
[[links]]
from = "a"
to = "b"
delay_ms = 10
rate_mbps = 100
{extra}
"#
        );
        Profile::parse(&text, "t.toml").unwrap()
    }

    #[test]
    fn one_trunk_carries_every_cross_site_pair() {
        let p = profile("");
        let plan = TrunkPlan::new(&p, &[0, 0, 1, 1]);
        let t = plan.trunk(0, 2).unwrap();
        assert!(t.is_shared());
        for (a, b) in [(0, 3), (1, 2), (1, 3)] {
            assert_eq!(plan.trunk(a, b), Some(t));
        }
        assert_eq!(plan.pairs_on(t), 4);
        // Back the other way: the other direction's trunk.
        let back = plan.trunk(2, 0).unwrap();
        assert_ne!(back, t);
        assert_eq!(plan.pairs_on(back), 4);
        // Inside a site: private.
        assert_eq!(
            plan.trunk(0, 1),
            Some(TrunkId::Private {
                from_rank: 0,
                to_rank: 1
            })
        );
        assert_eq!(plan.trunk(0, 9), None);
    }

    #[test]
    fn terminals_take_pairs_in_turn() {
        let p = profile("terminals = 3");
        let plan = TrunkPlan::new(&p, &[0, 0, 1, 1]);
        let terminal = |a, b| match plan.trunk(a, b) {
            Some(TrunkId::Shared { terminal, .. }) => terminal,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            [
                terminal(0, 2),
                terminal(0, 3),
                terminal(1, 2),
                terminal(1, 3)
            ],
            [0, 1, 2, 0]
        );
        let t0 = plan.trunk(0, 2).unwrap();
        assert_eq!(plan.pairs_on(t0), 2);
    }

    #[test]
    fn per_pair_keeps_private_links() {
        let p = profile("per_pair = true");
        let plan = TrunkPlan::new(&p, &[0, 1, 1]);
        assert_eq!(
            plan.trunk(0, 2),
            Some(TrunkId::Private {
                from_rank: 0,
                to_rank: 2
            })
        );
    }
}
