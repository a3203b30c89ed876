//! The cost model: a schedule's predicted completion time over a profile's links, and the
//! reference bound reports compare against.
//!
//! Links are those of the emulator: the ordered pair of ranks (a, b) crosses the trunk the
//! profile's sharing places it on (`netem_profiles::TrunkPlan`): between two sites by default
//! one trunk per direction shared by every node pair, inside a site a link of its own. A
//! message of `n` bytes from `a` to `b` issued at `t` starts serialising when that trunk is
//! free (a trunk serialises its messages in issue order, whichever pair sent them: concurrent
//! cross-site messages queue behind each other), leaves after `n·8/rate` and arrives
//! `delay(a→b)` later, plus an optional fixed per-message overhead. A rank issues a step's
//! sends when the step starts and starts its next step when the step's receives have all
//! arrived (the executor's semantics, see [`super::schedule`]). The completion time is the
//! latest finish over ranks: the critical path through the schedule's dependency graph.
//!
//! On uniform links (delay α, β = 8/rate s/byte) this gives the textbook α-β formulas: ring
//! all-reduce `2(p−1)α + 2(p−1)/p·nβ`, Rabenseifner `2 lg p·α + 2(p−1)/p·nβ` (p = 2^k),
//! binary tree `2⌊lg p⌋(α + nβ)` (a parent talks to its two children over two links at once).
//!
//! Pure: no I/O, no clock; time is a parameter (delay at `t` since the scenario epoch).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use netem_profiles::{LinkSharing, Profile, SiteId, TrunkPlan};
use thiserror::Error;

use super::schedule::{Collective, Concrete, Rank, Schedule, ScheduleError, shard_span};

/// Delay and rate of one directed link, as the cost model sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkCost {
    /// One-way delay, seconds.
    pub delay_s: f64,
    /// Rate in bit/s; `None` = unlimited.
    pub rate_bps: Option<f64>,
}

impl LinkCost {
    /// Seconds to serialise `bytes` on this link.
    pub fn serialise_s(&self, bytes: f64) -> f64 {
        match self.rate_bps {
            Some(r) if r > 0.0 => bytes * 8.0 / r,
            _ => 0.0,
        }
    }
}

/// A problem building a cost model.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CostError {
    /// A rank's site is not a site of the profile.
    #[error("rank {rank} is placed on site {site}, but profile '{profile}' has {sites} sites")]
    UnknownSite {
        /// The rank.
        rank: Rank,
        /// Its site id.
        site: SiteId,
        /// The profile's name.
        profile: String,
        /// How many sites the profile has.
        sites: usize,
    },
    /// The schedules to predict do not belong together.
    #[error("schedule for {got} ranks, the cost model has {world}")]
    WorldMismatch {
        /// Ranks of the schedule.
        got: usize,
        /// Ranks of the model.
        world: usize,
    },
    /// Building a schedule failed.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// What the model predicts for a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Completion time of the slowest rank, seconds.
    pub total_s: f64,
    /// Finish time per rank, seconds.
    pub finish_s: Vec<f64>,
    /// Bytes carried per (source site, destination site) class.
    pub bytes_by_class: HashMap<(SiteId, SiteId), u64>,
}

/// The reference bound of a collective on these links, and what it is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// The bound, seconds.
    pub total_s: f64,
    /// Its latency part, seconds.
    pub latency_s: f64,
    /// Its bandwidth part, seconds.
    pub bandwidth_s: f64,
    /// Which formula was used, for report headers.
    pub formula: &'static str,
}

/// Per-link delays and rates for a placement of ranks on sites.
#[derive(Debug, Clone, PartialEq)]
pub struct CostModel {
    site_of_rank: Vec<SiteId>,
    site_names: Vec<String>,
    nsites: usize,
    /// `links[from_site * nsites + to_site]`.
    links: Vec<LinkCost>,
    /// `channel[from_rank * world + to_rank]`: the serialiser (trunk) a message between the
    /// two ranks queues on; equal ids queue behind each other. `None`: every ordered rank
    /// pair has its own.
    channel: Option<Vec<usize>>,
    /// `parallel[from_site * nsites + to_site]`: parallel trunks between the sites (the
    /// bound's capacity is rate × this); empty = 1 everywhere.
    parallel: Vec<u32>,
    /// Fixed cost added to every message's arrival (framing, stream setup), seconds.
    pub per_message_overhead_s: f64,
}

impl CostModel {
    /// The links of `profile` at `t` since the scenario epoch, for ranks placed on the sites
    /// `site_of_rank`.
    pub fn from_profile(
        profile: &Profile,
        site_of_rank: Vec<SiteId>,
        t: Duration,
    ) -> Result<Self, CostError> {
        let nsites = profile.sites.len();
        if let Some((rank, &site)) = site_of_rank.iter().enumerate().find(|(_, s)| **s >= nsites) {
            return Err(CostError::UnknownSite {
                rank,
                site,
                profile: profile.name.clone(),
                sites: nsites,
            });
        }
        let mut links = Vec::with_capacity(nsites * nsites);
        let mut parallel = Vec::with_capacity(nsites * nsites);
        for a in 0..nsites {
            for b in 0..nsites {
                let spec = profile.link(a, b);
                links.push(LinkCost {
                    delay_s: spec.delay_at(t).as_secs_f64(),
                    rate_bps: spec.rate_bps.map(|r| r as f64),
                });
                parallel.push(match profile.sharing(a, b) {
                    LinkSharing::Shared { terminals } => terminals.max(1),
                    LinkSharing::PerPair => 1,
                });
            }
        }
        let plan = TrunkPlan::new(profile, &site_of_rank);
        let world = site_of_rank.len();
        let mut ids: HashMap<netem_profiles::TrunkId, usize> = HashMap::new();
        let mut channel = Vec::with_capacity(world * world);
        for a in 0..world {
            for b in 0..world {
                let next = ids.len();
                let id = plan
                    .trunk(a, b)
                    .map_or(next, |t| *ids.entry(t).or_insert(next));
                channel.push(id);
            }
        }
        Ok(Self {
            site_of_rank,
            site_names: profile.sites.iter().map(|s| s.name.clone()).collect(),
            nsites,
            links,
            channel: Some(channel),
            parallel,
            per_message_overhead_s: 0.0,
        })
    }

    /// `world` ranks on one site, every link with the same `delay` and `rate_bps`.
    pub fn uniform(world: usize, delay: Duration, rate_bps: Option<u64>) -> Self {
        Self::sites(
            vec![0; world],
            vec![LinkCost {
                delay_s: delay.as_secs_f64(),
                rate_bps: rate_bps.map(|r| r as f64),
            }],
        )
    }

    /// Ranks placed by `site_of_rank` over `links.len().isqrt()` sites with the given
    /// `links[from * nsites + to]` (for tests and what-if questions).
    ///
    /// # Panics
    /// If `links.len()` is not a square or a site id is out of range (programming errors).
    pub fn sites(site_of_rank: Vec<SiteId>, links: Vec<LinkCost>) -> Self {
        let nsites = links.len().isqrt();
        assert_eq!(
            nsites * nsites,
            links.len(),
            "links must be nsites × nsites"
        );
        assert!(
            site_of_rank.iter().all(|&s| s < nsites),
            "site id out of range"
        );
        Self {
            site_of_rank,
            site_names: (0..nsites).map(|s| format!("site{s}")).collect(),
            nsites,
            links,
            channel: None,
            parallel: Vec::new(),
            per_message_overhead_s: 0.0,
        }
    }

    /// The serialiser a message from rank `a` to rank `b` queues on.
    fn channel(&self, a: Rank, b: Rank) -> usize {
        let w = self.world();
        match &self.channel {
            Some(c) => c.get(a * w + b).copied().unwrap_or(a * w + b),
            None => a * w + b,
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

    /// Name of site `s`.
    pub fn site_name(&self, s: SiteId) -> &str {
        self.site_names.get(s).map(String::as_str).unwrap_or("?")
    }

    /// Number of distinct sites that hold at least one rank.
    pub fn populated_sites(&self) -> Vec<SiteId> {
        let mut s: Vec<SiteId> = self.site_of_rank.clone();
        s.sort_unstable();
        s.dedup();
        s
    }

    /// The longest one-way delay between any two ranks (plus the per-message overhead),
    /// seconds: how long a message from any rank to any other takes at least. The barrier
    /// waits this long after the last rank entered, so every rank holds everyone's message.
    pub fn max_delay_s(&self) -> f64 {
        if self.world() < 2 {
            return 0.0;
        }
        let sites = self.populated_sites();
        let mut alpha: f64 = 0.0;
        for &a in &sites {
            for &b in &sites {
                // Two ranks on one site still use the site's own link.
                if a != b || self.site_of_rank.iter().filter(|&&s| s == a).count() > 1 {
                    alpha = alpha.max(self.site_link(a, b).delay_s);
                }
            }
        }
        alpha + self.per_message_overhead_s
    }

    /// The link between two sites.
    pub fn site_link(&self, from: SiteId, to: SiteId) -> LinkCost {
        self.links[from * self.nsites + to]
    }

    /// The link from rank `a` to rank `b`.
    pub fn link(&self, a: Rank, b: Rank) -> LinkCost {
        self.site_link(self.site_of_rank[a], self.site_of_rank[b])
    }

    /// Predicted completion of `lanes`: schedules run side by side on the same ranks (each
    /// over its own slice of the vector) and sharing the links.
    pub fn predict(&self, lanes: &[Schedule]) -> Result<Prediction, CostError> {
        let world = self.world();
        for s in lanes {
            if s.world != world {
                return Err(CostError::WorldMismatch {
                    got: s.world,
                    world,
                });
            }
        }
        #[derive(PartialEq)]
        struct Ready(f64, usize, Rank);
        impl Eq for Ready {}
        impl PartialOrd for Ready {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for Ready {
            fn cmp(&self, other: &Self) -> Ordering {
                // Min-heap on time, ties broken by (lane, rank) for determinism.
                other
                    .0
                    .total_cmp(&self.0)
                    .then_with(|| other.1.cmp(&self.1))
                    .then_with(|| other.2.cmp(&self.2))
            }
        }
        let nl = lanes.len();
        let mut arrival: Vec<Vec<Option<f64>>> =
            lanes.iter().map(|s| vec![None; s.messages.len()]).collect();
        let mut pc = vec![vec![0usize; world]; nl];
        // Start time of the current step of (lane, rank) once its sends are issued.
        let mut issued_at: Vec<Vec<Option<f64>>> = vec![vec![None; world]; nl];
        let mut finish = vec![0.0f64; world];
        let mut link_free: HashMap<usize, f64> = HashMap::new();
        let mut bytes_by_class: HashMap<(SiteId, SiteId), u64> = HashMap::new();
        let mut heap = BinaryHeap::new();
        for (l, sched) in lanes.iter().enumerate() {
            for r in 0..world {
                if !sched.steps[r].is_empty() {
                    heap.push(Ready(0.0, l, r));
                }
            }
        }
        while let Some(Ready(t, l, r)) = heap.pop() {
            let sched = &lanes[l];
            let step = &sched.steps[r][pc[l][r]];
            issued_at[l][r] = Some(t);
            let mut touched = vec![r];
            for &m in &step.sends {
                let msg = sched.messages[m];
                let link = self.link(msg.from, msg.to);
                let free = link_free
                    .entry(self.channel(msg.from, msg.to))
                    .or_insert(0.0);
                let begin = free.max(t);
                *free = begin + link.serialise_s(sched.message_bytes(&msg) as f64);
                arrival[l][m] = Some(*free + link.delay_s + self.per_message_overhead_s);
                *bytes_by_class
                    .entry((self.site_of_rank[msg.from], self.site_of_rank[msg.to]))
                    .or_insert(0) += sched.message_bytes(&msg) as u64;
                touched.push(msg.to);
            }
            for x in touched {
                // A rank whose current step is issued and whose receives have all been
                // sent finishes that step when the last one arrives, and starts the next.
                let Some(began) = issued_at[l][x] else {
                    continue;
                };
                let step = &sched.steps[x][pc[l][x]];
                let mut end = began;
                let mut all = true;
                for &m in &step.recvs {
                    match arrival[l][m] {
                        Some(a) => end = end.max(a),
                        None => all = false,
                    }
                }
                if !all {
                    continue;
                }
                issued_at[l][x] = None;
                pc[l][x] += 1;
                finish[x] = finish[x].max(end);
                if pc[l][x] < sched.steps[x].len() {
                    heap.push(Ready(end, l, x));
                }
            }
        }
        for (l, sched) in lanes.iter().enumerate() {
            if let Some(r) = (0..world).find(|&r| pc[l][r] < sched.steps[r].len()) {
                let blocked = vec![r];
                return Err(CostError::Schedule(ScheduleError::Deadlock { blocked }));
            }
        }
        let total_s = finish.iter().copied().fold(0.0, f64::max);
        Ok(Prediction {
            total_s,
            finish_s: finish,
            bytes_by_class,
        })
    }

    /// Predicted time of `collective` with `algorithm` on `count` elements of `elem_bytes`
    /// bytes each, split into `lanes` (see [`lane_spans`]).
    pub fn predict_collective(
        &self,
        collective: Collective,
        algorithm: Concrete,
        count: usize,
        elem_bytes: usize,
        lanes: usize,
    ) -> Result<Prediction, CostError> {
        let schedules = lane_spans(count, elem_bytes, lanes)
            .into_iter()
            .map(|span| {
                Schedule::build(
                    collective,
                    algorithm,
                    self.world(),
                    span.len,
                    Some(&self.site_of_rank),
                )
                .map(|s| s.with_elem_bytes(elem_bytes))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.predict(&schedules)
    }

    /// The algorithm with the smallest predicted time for `collective` on `count` elements
    /// of `elem_bytes` bytes (hierarchical only considered when the ranks span more than one
    /// site). Ties go to the first in [`Concrete::ALL`] order.
    pub fn choose(
        &self,
        collective: Collective,
        count: usize,
        elem_bytes: usize,
        lanes: usize,
    ) -> Result<Concrete, CostError> {
        let multi_site = self.populated_sites().len() > 1;
        let mut best: Option<(f64, Concrete)> = None;
        for algo in Concrete::ALL {
            if algo == Concrete::Hierarchical && !multi_site {
                continue;
            }
            let t = self
                .predict_collective(collective, algo, count, elem_bytes, lanes)?
                .total_s;
            if best.is_none_or(|(bt, _)| t < bt) {
                best = Some((t, algo));
            }
        }
        Ok(best.map(|(_, a)| a).unwrap_or(Concrete::Ring))
    }

    /// The reference bound for an all-reduce of `bytes` per rank, the number reports put
    /// beside the measured time (eff % = bound / time).
    ///
    /// - Ranks on two or more sites (the cut bound): `α_g + n·8/B_min`, with `α_g` the largest
    ///   one-way delay between two populated sites and `B_min` the smallest capacity of a
    ///   link between two populated sites (its rate × its parallel terminals): each site
    ///   must learn the other sites' n-byte partial sum across the link, and the last byte
    ///   to leave arrives one delay later.
    /// - Ranks on one site: `max(α, 2(p−1)/p·n·8/B)` with α and B the site's link: the
    ///   first result cannot arrive before one message crossed a link, and a rank with one
    ///   port of rate B must move 2(p−1)/p·n bytes (the bus-bandwidth bound nccl-tests'
    ///   busbw refers to).
    ///
    /// With shared trunks (the default between sites) no algorithm can beat the cut bound.
    /// A `per_pair` link gives every node pair its own copy, so an algorithm spreading
    /// traffic over parallel pairs can beat it there: eff > 100 % then says "faster than one
    /// link could", which that profile allows.
    pub fn all_reduce_bound(&self, bytes: f64) -> Bound {
        let sites = self.populated_sites();
        let p = self.world().max(1) as f64;
        if sites.len() > 1 {
            let mut alpha: f64 = 0.0;
            let mut rate: Option<f64> = None;
            for &a in &sites {
                for &b in &sites {
                    if a == b {
                        continue;
                    }
                    let l = self.site_link(a, b);
                    alpha = alpha.max(l.delay_s);
                    let k = self.parallel.get(a * self.nsites + b).copied().unwrap_or(1);
                    if let Some(r) = l.rate_bps.filter(|r| *r > 0.0).map(|r| r * f64::from(k)) {
                        rate = Some(rate.map_or(r, |x: f64| x.min(r)));
                    }
                }
            }
            let bw = rate.map_or(0.0, |r| bytes * 8.0 / r);
            Bound {
                total_s: alpha + bw,
                latency_s: alpha,
                bandwidth_s: bw,
                formula: "two-site cut: alpha_g + n*8/B_min(cross-site)",
            }
        } else {
            let site = sites.first().copied().unwrap_or(0);
            let l = self.site_link(site, site);
            let bw = l.serialise_s(2.0 * (p - 1.0) / p * bytes);
            let alpha = if self.world() > 1 { l.delay_s } else { 0.0 };
            Bound {
                total_s: alpha.max(bw),
                latency_s: alpha,
                bandwidth_s: bw,
                formula: "one site: max(alpha, 2(p-1)/p*n*8/B)",
            }
        }
    }
}

/// How a vector of `count` elements of `elem_bytes` bytes is split into at most `lanes`
/// lanes run side by side (each lane its own schedule over its slice, on its own streams).
/// Lanes are never smaller than [`MIN_LANE_BYTES`], so small vectors use one lane.
pub fn lane_spans(count: usize, elem_bytes: usize, lanes: usize) -> Vec<super::schedule::Span> {
    let min_lane_elems = (MIN_LANE_BYTES / elem_bytes.max(1)).max(1);
    let n = lanes
        .clamp(1, 255)
        .min(count.div_ceil(min_lane_elems))
        .max(1);
    (0..n).map(|i| shard_span(count, n, i)).collect()
}

/// Smallest lane, in bytes (16 Ki f32 elements).
pub const MIN_LANE_BYTES: usize = 64 * 1024;
