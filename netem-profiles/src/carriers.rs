//! Which forwarder process carries each shared trunk, when a cluster runs several
//! (docs/ARCHITECTURE.md, "The space segment"; docs/KUBERNETES.md, "Forwarder").
//!
//! A trunk has one FIFO queue and one rate: if two forwarders both applied it, each would
//! hold its own copy and the trunk would carry twice its rate (physics). [`TrunkCarriers`]
//! therefore gives every shared trunk of a profile **exactly one** forwarder, computed from
//! the profile and the number of forwarders alone, the same way by the controller, every
//! node (which sends each trunk's datagrams to its carrier) and every forwarder (which refuses
//! the datagrams of trunks it does not carry).
//!
//! Placement:
//! - The unit is one **directed** trunk `from → to #terminal` (each direction is its own
//!   FIFO and rate, so the two directions of a site pair may sit on different forwarders:
//!   this is what lets a two-site profile use two forwarders).
//! - A relay route (`[[routes]]`) is one trunk on the wire, but its hops are the shared
//!   trunks (terminal 0) of their site pairs, which direct traffic and other routes cross
//!   too: a route and every hop it crosses form one group (union-find), carried together.
//! - Each group weighs the sum of its direct trunks' rates (a trunk without a rate limit
//!   weighs [`UNLIMITED_RATE_WEIGHT_BPS`]). Groups are taken heaviest first (ties: the
//!   smallest trunk id first) and each goes to the least-loaded forwarder so far (ties: the
//!   lowest index): longest-processing-time-first, balancing the bytes each forwarder may
//!   have to move. More forwarders than groups leaves the last ones idle.
//!
//! Pure: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};

use crate::profile::{LinkSharing, Profile, SiteId};
use crate::trunk::TrunkId;

/// The weight of a trunk without a rate limit (100 Gbit/s): heavier than any real terminal.
pub const UNLIMITED_RATE_WEIGHT_BPS: u64 = 100_000_000_000;

/// Why no assignment could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarriersError {
    /// Zero forwarders were given.
    #[error("no forwarders: at least one must carry the shared trunks")]
    NoForwarders,
}

/// Every shared trunk of one profile, and the forwarder (index into the forwarder list)
/// that carries it; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkCarriers {
    forwarders: usize,
    carrier: BTreeMap<TrunkId, usize>,
    /// Sum of the weights of the groups each forwarder carries (bits per second).
    load_bps: Vec<u64>,
}

/// A tiny union-find over trunk indices.
struct Groups {
    parent: Vec<usize>,
}

impl Groups {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n).collect(),
        }
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            let up = self.parent[self.parent[i]];
            self.parent[i] = up;
            i = up;
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        // The smaller index stays the root: deterministic whatever the order of unions.
        if ra < rb {
            self.parent[rb] = ra;
        } else if rb < ra {
            self.parent[ra] = rb;
        }
    }
}

/// Every shared trunk of `profile`, sorted (`from_site`, `to_site`, `terminal`).
pub fn shared_trunks(profile: &Profile) -> Vec<TrunkId> {
    let n = profile.sites.len();
    let mut out = Vec::new();
    for from_site in 0..n {
        for to_site in 0..n {
            if let LinkSharing::Shared { terminals } = profile.sharing(from_site, to_site) {
                for terminal in 0..terminals {
                    out.push(TrunkId::Shared {
                        from_site,
                        to_site,
                        terminal,
                    });
                }
            }
        }
    }
    out
}

impl TrunkCarriers {
    /// The assignment of `profile`'s shared trunks to `forwarders` forwarders.
    pub fn new(profile: &Profile, forwarders: usize) -> Result<Self, CarriersError> {
        if forwarders == 0 {
            return Err(CarriersError::NoForwarders);
        }
        let trunks = shared_trunks(profile);
        let index: BTreeMap<TrunkId, usize> =
            trunks.iter().enumerate().map(|(i, t)| (*t, i)).collect();
        let mut groups = Groups::new(trunks.len());
        let mut weight = vec![0u64; trunks.len()];
        for (i, t) in trunks.iter().enumerate() {
            let TrunkId::Shared {
                from_site, to_site, ..
            } = *t
            else {
                continue;
            };
            match profile.route(from_site, to_site) {
                Some(path) => {
                    for w in path.windows(2) {
                        let hop = hop_id(w[0], w[1]);
                        if let Some(&h) = index.get(&hop) {
                            groups.union(i, h);
                        }
                    }
                }
                None => {
                    weight[i] = profile
                        .link(from_site, to_site)
                        .rate_bps
                        .unwrap_or(UNLIMITED_RATE_WEIGHT_BPS);
                }
            }
        }
        // Group root -> (weight, members); roots are the smallest member index, so a
        // BTreeMap over roots is in trunk-id order.
        let mut by_root: BTreeMap<usize, (u64, Vec<usize>)> = BTreeMap::new();
        for (i, w) in weight.iter().enumerate() {
            let root = groups.find(i);
            let g = by_root.entry(root).or_default();
            g.0 = g.0.saturating_add(*w);
            g.1.push(i);
        }
        let mut order: Vec<(usize, u64, Vec<usize>)> =
            by_root.into_iter().map(|(r, (w, m))| (r, w, m)).collect();
        // Heaviest first; ties by the smallest trunk id (the root).
        order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut load_bps = vec![0u64; forwarders];
        let mut carrier = BTreeMap::new();
        for (_, w, members) in order {
            let (f, _) = load_bps
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(&b.0)))
                .unwrap_or((0, &0));
            if let Some(l) = load_bps.get_mut(f) {
                *l = l.saturating_add(w);
            }
            for m in members {
                carrier.insert(trunks[m], f);
            }
        }
        Ok(Self {
            forwarders,
            carrier,
            load_bps,
        })
    }

    /// How many forwarders share the trunks.
    pub fn forwarders(&self) -> usize {
        self.forwarders
    }

    /// The forwarder (index) that carries `trunk`; `None` for a private link or a trunk the
    /// profile does not share.
    pub fn carrier(&self, trunk: TrunkId) -> Option<usize> {
        self.carrier.get(&trunk).copied()
    }

    /// The trunks forwarder `forwarder` carries, sorted (empty for an idle or unknown one).
    pub fn trunks_of(&self, forwarder: usize) -> Vec<TrunkId> {
        self.carrier
            .iter()
            .filter(|(_, f)| **f == forwarder)
            .map(|(t, _)| *t)
            .collect()
    }

    /// Every shared trunk and its carrier, sorted by trunk.
    pub fn iter(&self) -> impl Iterator<Item = (TrunkId, usize)> + '_ {
        self.carrier.iter().map(|(t, f)| (*t, *f))
    }

    /// The summed rate (bits per second) of the trunks each forwarder carries, by index: the
    /// most it may have to move per second (routes count their hops once).
    pub fn load_bps(&self) -> &[u64] {
        &self.load_bps
    }

    /// The forwarders that carry at least one trunk.
    pub fn busy(&self) -> BTreeSet<usize> {
        self.carrier.values().copied().collect()
    }
}

fn hop_id(from_site: SiteId, to_site: SiteId) -> TrunkId {
    TrunkId::Shared {
        from_site,
        to_site,
        terminal: 0,
    }
}

/// A forwarder's place among the cluster's forwarders: `index` of `count` (`--shard I/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index into the forwarder list the controller hands the nodes.
    pub index: usize,
    /// How many forwarders there are.
    pub count: usize,
}

/// Why a `I/N` shard spec does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not of the form `I/N`.
    #[error("shard {0:?} is not I/N (e.g. 0/2)")]
    Form(String),
    /// I or N is not a number.
    #[error("shard {spec:?}: {part:?} is not a whole number")]
    Number {
        /// The whole spec.
        spec: String,
        /// The part that is not a number.
        part: String,
    },
    /// N is 0, or I is not below N.
    #[error(
        "shard {spec:?}: index {index} must be below the count {count} (and the count at least 1)"
    )]
    Range {
        /// The whole spec.
        spec: String,
        /// I.
        index: usize,
        /// N.
        count: usize,
    },
}

impl Shard {
    /// The only forwarder: it carries every trunk.
    pub const ONLY: Self = Self { index: 0, count: 1 };

    /// Parses `I/N` (`0/2`): forwarder I of N, 0-based.
    pub fn parse(spec: &str) -> Result<Self, ShardError> {
        let (i, n) = spec
            .trim()
            .split_once('/')
            .ok_or_else(|| ShardError::Form(spec.to_string()))?;
        let num = |part: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|_| ShardError::Number {
                    spec: spec.to_string(),
                    part: part.to_string(),
                })
        };
        let (index, count) = (num(i)?, num(n)?);
        if count == 0 || index >= count {
            return Err(ShardError::Range {
                spec: spec.to_string(),
                index,
                count,
            });
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_sites(extra_ab: &str) -> Profile {
        let text = format!(
            r#"
name = "t"
[sites.a]
[sites.b]
[sites.c]
[[links]]
from = "a"
to = "a"
delay_ms = 0.1
[[links]]
from = "b"
to = "b"
delay_ms = 0.1
[[links]]
from = "c"
to = "c"
delay_ms = 0.1
[[links]]
from = "a"
to = "b"
delay_ms = 10
rate_mbps = 100
{extra_ab}
[[links]]
from = "a"
to = "c"
delay_ms = 10
rate_mbps = 50
[[links]]
from = "b"
to = "c"
delay_ms = 10
rate_mbps = 20
"#
        );
        Profile::parse(&text, "t.toml").unwrap()
    }

    fn every_trunk_once(p: &Profile, c: &TrunkCarriers) {
        let all = shared_trunks(p);
        let mut seen = BTreeSet::new();
        for f in 0..c.forwarders() {
            for t in c.trunks_of(f) {
                assert!(seen.insert(t), "{t:?} carried twice");
                assert_eq!(c.carrier(t), Some(f));
            }
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), all);
    }

    #[test]
    fn every_trunk_has_exactly_one_carrier() {
        let p = three_sites("terminals = 2");
        // 2 terminals a<->b (4 directed) + a<->c (2) + b<->c (2).
        assert_eq!(shared_trunks(&p).len(), 8);
        for n in 1..=10 {
            let c = TrunkCarriers::new(&p, n).unwrap();
            every_trunk_once(&p, &c);
            // Deterministic: the same inputs give the same table.
            assert_eq!(c, TrunkCarriers::new(&p, n).unwrap());
        }
        let one = TrunkCarriers::new(&p, 1).unwrap();
        assert_eq!(one.trunks_of(0).len(), 8);
        assert!(
            one.carrier(TrunkId::Private {
                from_rank: 0,
                to_rank: 1
            })
            .is_none()
        );
    }

    #[test]
    fn heaviest_first_to_the_least_loaded() {
        let p = three_sites("");
        // Trunks: a->b, b->a 100; a->c, c->a 50; b->c, c->b 20 Mbit/s.
        let c = TrunkCarriers::new(&p, 2).unwrap();
        let t = |f: SiteId, to: SiteId| TrunkId::Shared {
            from_site: f,
            to_site: to,
            terminal: 0,
        };
        // 100 (a->b) -> 0, 100 (b->a) -> 1, 50 (a->c) -> 0, 50 (c->a) -> 1, 20 -> 0, 20 -> 1.
        assert_eq!(c.carrier(t(0, 1)), Some(0));
        assert_eq!(c.carrier(t(1, 0)), Some(1));
        assert_eq!(c.carrier(t(0, 2)), Some(0));
        assert_eq!(c.carrier(t(2, 0)), Some(1));
        assert_eq!(c.carrier(t(1, 2)), Some(0));
        assert_eq!(c.carrier(t(2, 1)), Some(1));
        assert_eq!(c.load_bps(), &[170_000_000, 170_000_000]);
    }

    #[test]
    fn more_forwarders_than_trunks_leaves_idle_ones() {
        let p = three_sites("");
        let c = TrunkCarriers::new(&p, 9).unwrap();
        every_trunk_once(&p, &c);
        assert_eq!(c.busy(), (0..6).collect());
        for idle in 6..9 {
            assert!(c.trunks_of(idle).is_empty());
            assert_eq!(c.load_bps()[idle], 0);
        }
    }

    #[test]
    fn zero_forwarders_is_an_error() {
        let p = three_sites("");
        assert_eq!(TrunkCarriers::new(&p, 0), Err(CarriersError::NoForwarders));
    }

    #[test]
    fn a_route_and_its_hops_share_one_carrier() {
        let text = crate::shipped_profile_text("lunar-farside-relay").unwrap();
        let p = Profile::parse(text, "lunar-farside-relay").unwrap();
        let routes: Vec<_> = p
            .routes()
            .map(|(a, b, path)| (a, b, path.to_vec()))
            .collect();
        assert!(!routes.is_empty());
        for n in 1..=4 {
            let c = TrunkCarriers::new(&p, n).unwrap();
            every_trunk_once(&p, &c);
            for (a, b, path) in &routes {
                let route = c.carrier(hop_id(*a, *b)).unwrap();
                for w in path.windows(2) {
                    assert_eq!(c.carrier(hop_id(w[0], w[1])), Some(route), "n={n}");
                }
            }
        }
    }

    #[test]
    fn shards_parse_and_name_what_is_wrong() {
        assert_eq!(Shard::parse("1/3"), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(Shard::parse(" 0/1 ").unwrap(), Shard::ONLY);
        assert_eq!(Shard::parse("1/3").unwrap().to_string(), "1/3");
        assert!(matches!(Shard::parse("3"), Err(ShardError::Form(_))));
        assert!(matches!(
            Shard::parse("x/3"),
            Err(ShardError::Number { part, .. }) if part == "x"
        ));
        assert!(matches!(
            Shard::parse("3/3"),
            Err(ShardError::Range {
                index: 3,
                count: 3,
                ..
            })
        ));
        assert!(matches!(Shard::parse("0/0"), Err(ShardError::Range { .. })));
    }
}
