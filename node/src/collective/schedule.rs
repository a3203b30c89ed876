//! Schedules: what every rank sends, receives and reduces, as pure data.
//!
//! A [`Schedule`] describes one collective on a vector of `count` elements per rank. It is a list
//! of [`Message`]s (from, to, element span, how the receiver combines it) and, per rank, an
//! ordered list of [`Step`]s naming the messages the rank sends and receives in that step.
//!
//! Semantics, shared by the executor, the in-memory simulator and the cost model:
//! - a rank starts step `s + 1` once every message it receives in step `s` has arrived and
//!   been combined (sends never block a rank: they are fire-and-forget once their payload is
//!   copied);
//! - the payload of every send in a step is read from the buffer as it is when the step
//!   starts, before any receive of that step is combined;
//! - a message's span is the same element range on sender and receiver (every algorithm here
//!   moves `data[span]` of the sender into `data[span]` of the receiver).
//!
//! Messages whose span is empty (possible when `count < world`) are left out, so vectors of
//! any length, even 0 or 1, work on any number of ranks.

use std::fmt;

use thiserror::Error;

/// A rank: index of a node in the collective, `0..world`.
pub type Rank = usize;

/// Index of a message in [`Schedule::messages`].
pub type MsgId = usize;

/// A contiguous range of elements of the vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// First element.
    pub start: usize,
    /// Number of elements.
    pub len: usize,
}

impl Span {
    /// The span `[start, end)`.
    pub fn range(start: usize, end: usize) -> Self {
        Self {
            start,
            len: end.saturating_sub(start),
        }
    }

    /// One past the last element.
    pub fn end(&self) -> usize {
        self.start + self.len
    }

    /// As a `Range` for slicing.
    pub fn as_range(&self) -> std::ops::Range<usize> {
        self.start..self.end()
    }

    /// The elements both spans cover.
    pub fn intersect(&self, other: &Self) -> Self {
        Self::range(self.start.max(other.start), self.end().min(other.end()))
    }

    /// Do the spans share an element?
    pub fn overlaps(&self, other: &Self) -> bool {
        self.intersect(other).len > 0
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end())
    }
}

/// What the receiver does with a message's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// `data[span] = data[span] ⊕ payload`, ⊕ the collective's reduction op (sum by
    /// default; see [`super::element::Element::reduce`]).
    Sum,
    /// `data[span] = payload`.
    Copy,
}

/// One transfer of `span` from `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// Sending rank.
    pub from: Rank,
    /// Receiving rank.
    pub to: Rank,
    /// Elements carried (same range on both sides).
    pub span: Span,
    /// How the receiver combines the payload.
    pub combine: Combine,
}

impl Message {
    /// Payload size in bytes for elements of `elem_bytes` bytes.
    pub fn bytes(&self, elem_bytes: usize) -> usize {
        self.span.len.saturating_mul(elem_bytes)
    }
}

/// What one rank does in one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Messages sent when the step starts.
    pub sends: Vec<MsgId>,
    /// Messages awaited (and combined) before the next step starts.
    pub recvs: Vec<MsgId>,
}

/// The collective a schedule computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collective {
    /// Every rank ends with the element-wise sum of all ranks' vectors.
    AllReduce,
    /// Rank `r` ends with the sum over its shard [`shard_span`]`(count, world, r)`; the rest of
    /// its buffer is scratch.
    ReduceScatter,
    /// Rank `r` contributes its shard [`shard_span`]`(count, world, r)`; every rank ends with
    /// every shard.
    AllGather,
    /// Every rank ends with the root's vector.
    Broadcast {
        /// The rank whose vector is copied.
        root: Rank,
    },
}

impl Collective {
    /// Short name for reports (`all_reduce`, as nccl-tests names its binaries).
    pub fn name(&self) -> &'static str {
        match self {
            Self::AllReduce => "all_reduce",
            Self::ReduceScatter => "reduce_scatter",
            Self::AllGather => "all_gather",
            Self::Broadcast { .. } => "broadcast",
        }
    }

    /// True when the result combines the ranks' values (all-reduce, reduce-scatter), so the
    /// reduction op applies; all-gather and broadcast only copy.
    pub fn reduces(&self) -> bool {
        matches!(self, Self::AllReduce | Self::ReduceScatter)
    }

    /// nccl-tests' bus bandwidth factor for `world` ranks: 2(p−1)/p for all-reduce, (p−1)/p
    /// for reduce-scatter and all-gather, 1 for broadcast.
    pub fn bus_factor(&self, world: usize) -> f64 {
        let p = world.max(1) as f64;
        match self {
            Self::AllReduce => 2.0 * (p - 1.0) / p,
            Self::ReduceScatter | Self::AllGather => (p - 1.0) / p,
            Self::Broadcast { .. } => 1.0,
        }
    }
}

/// A concrete algorithm (what [`super::Algorithm::Auto`] resolves to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Concrete {
    /// Ring reduce-scatter then ring all-gather (chain for broadcast).
    Ring,
    /// Recursive halving (reduce-scatter) then recursive doubling (all-gather), Rabenseifner;
    /// binomial tree for broadcast.
    HalvingDoubling,
    /// Binary tree reduce to rank 0 then binary tree broadcast.
    Tree,
    /// Reduce-scatter inside each site, shard exchange across sites, all-gather inside sites.
    Hierarchical,
}

impl Concrete {
    /// Every concrete algorithm.
    pub const ALL: [Self; 4] = [
        Self::Ring,
        Self::HalvingDoubling,
        Self::Tree,
        Self::Hierarchical,
    ];

    /// The short name used on the command line and in reports (`ring`, `hd`, `tree`, `hier`).
    pub fn short_name(&self) -> &'static str {
        match self {
            Self::Ring => "ring",
            Self::HalvingDoubling => "hd",
            Self::Tree => "tree",
            Self::Hierarchical => "hier",
        }
    }
}

impl fmt::Display for Concrete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

/// Why a schedule could not be built or does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScheduleError {
    /// A collective needs at least one rank.
    #[error("a collective needs at least one rank (world size 0)")]
    EmptyWorld,
    /// The site map does not have one entry per rank.
    #[error("the site map has {got} entries but the world has {world} ranks")]
    SiteMapSize {
        /// Entries given.
        got: usize,
        /// Ranks in the world.
        world: usize,
    },
    /// A broadcast root outside the world.
    #[error("broadcast root {root} is not a rank of a world of {world}")]
    BadRoot {
        /// The root asked for.
        root: Rank,
        /// Ranks in the world.
        world: usize,
    },
    /// More messages than a tag can number.
    #[error("the schedule needs {0} messages, more than the 2^24 a tag can number")]
    TooManyMessages(usize),
    /// Simulation: some ranks wait forever.
    #[error("deadlock: ranks {blocked:?} wait for messages never sent")]
    Deadlock {
        /// Ranks that cannot progress.
        blocked: Vec<Rank>,
    },
    /// Simulation: a message is referenced inconsistently.
    #[error("message {msg}: {problem}")]
    Inconsistent {
        /// The message.
        msg: MsgId,
        /// What is wrong.
        problem: String,
    },
    /// Simulation: the input vectors do not fit the schedule.
    #[error("input of rank {rank} has {got} elements, the schedule is for {count}")]
    InputSize {
        /// Rank of the bad input.
        rank: Rank,
        /// Its length.
        got: usize,
        /// The schedule's count.
        count: usize,
    },
}

/// A complete collective: messages and per-rank steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// What it computes.
    pub collective: Collective,
    /// How.
    pub algorithm: Concrete,
    /// Number of ranks.
    pub world: usize,
    /// Elements of the vector on every rank.
    pub count: usize,
    /// Bytes of one element (4, f32, unless [`Schedule::with_elem_bytes`] says otherwise):
    /// what a message of `n` elements puts on the wire is `n · elem_bytes`.
    pub elem_bytes: usize,
    /// Every message, indexed by [`MsgId`].
    pub messages: Vec<Message>,
    /// `steps[rank]`: that rank's ordered steps.
    pub steps: Vec<Vec<Step>>,
}

impl Schedule {
    /// Builds the schedule of `collective` with `algorithm` for `world` ranks and `count`
    /// elements. `site_of_rank` (one entry per rank) is used by the hierarchical algorithm;
    /// `None` puts every rank in one site.
    ///
    /// Algorithms that do not apply fall back, and [`Schedule::algorithm`] says what was
    /// built: reduce-scatter and all-gather have ring and halving-doubling forms (halving-
    /// doubling only for a power-of-two world, else ring; tree → ring), all-gather also a
    /// hierarchical one on two or more sites (each shard crosses to each other site once;
    /// reduce-scatter's hierarchical and one-site all-gather's → ring);
    /// broadcast has ring (a chain), halving-doubling (binomial tree), tree (binary) and
    /// hierarchical (root to one rank per site, then a binary tree inside each site).
    pub fn build(
        collective: Collective,
        algorithm: Concrete,
        world: usize,
        count: usize,
        site_of_rank: Option<&[usize]>,
    ) -> Result<Self, ScheduleError> {
        if world == 0 {
            return Err(ScheduleError::EmptyWorld);
        }
        if let Some(sites) = site_of_rank
            && sites.len() != world
        {
            return Err(ScheduleError::SiteMapSize {
                got: sites.len(),
                world,
            });
        }
        let groups = site_groups(site_of_rank, world);
        let mut b = Builder::new(world, count);
        let built = match collective {
            Collective::AllReduce => match algorithm {
                Concrete::Ring => {
                    let all: Vec<Rank> = (0..world).collect();
                    ring_reduce_scatter(&mut b, std::slice::from_ref(&all), Span::range(0, count));
                    ring_all_gather(&mut b, &[all], Span::range(0, count));
                    Concrete::Ring
                }
                Concrete::HalvingDoubling => {
                    rabenseifner(&mut b);
                    Concrete::HalvingDoubling
                }
                Concrete::Tree => {
                    tree_reduce(&mut b);
                    tree_broadcast(&mut b, &(0..world).collect::<Vec<_>>());
                    Concrete::Tree
                }
                Concrete::Hierarchical => {
                    hierarchical_all_reduce(&mut b, &groups);
                    Concrete::Hierarchical
                }
            },
            Collective::ReduceScatter | Collective::AllGather => {
                let all: Vec<Rank> = (0..world).collect();
                let whole = Span::range(0, count);
                let hd = algorithm == Concrete::HalvingDoubling && world.is_power_of_two();
                let hier = collective == Collective::AllGather
                    && algorithm == Concrete::Hierarchical
                    && groups.len() > 1;
                match (collective, hd) {
                    (Collective::ReduceScatter, true) => {
                        halving(&mut b, &all);
                    }
                    (Collective::ReduceScatter, false) => {
                        ring_reduce_scatter(&mut b, &[all], whole);
                    }
                    (_, _) if hier => {
                        hierarchical_all_gather(&mut b, &groups);
                    }
                    (_, true) => {
                        doubling(&mut b, &all);
                    }
                    (_, false) => {
                        ring_all_gather(&mut b, &[all], whole);
                    }
                }
                if hier {
                    Concrete::Hierarchical
                } else if hd {
                    Concrete::HalvingDoubling
                } else {
                    Concrete::Ring
                }
            }
            Collective::Broadcast { root } => {
                if root >= world {
                    return Err(ScheduleError::BadRoot { root, world });
                }
                let order: Vec<Rank> = (0..world).map(|i| (root + i) % world).collect();
                match algorithm {
                    Concrete::Ring => {
                        let pairs: Vec<(Rank, Rank)> =
                            order.windows(2).map(|w| (w[0], w[1])).collect();
                        for (from, to) in pairs {
                            b.round(vec![(from, to, Span::range(0, count), Combine::Copy)]);
                        }
                    }
                    Concrete::HalvingDoubling => binomial_broadcast(&mut b, &order),
                    Concrete::Tree => tree_broadcast(&mut b, &order),
                    Concrete::Hierarchical => hierarchical_broadcast(&mut b, &groups, root),
                }
                algorithm
            }
        };
        b.finish(collective, built)
    }

    /// The same schedule for elements of `elem_bytes` bytes (the messages are the same
    /// spans of elements; their bytes follow the element size).
    pub fn with_elem_bytes(mut self, elem_bytes: usize) -> Self {
        self.elem_bytes = elem_bytes;
        self
    }

    /// Bytes of message `msg` on the wire.
    pub fn message_bytes(&self, msg: &Message) -> usize {
        msg.bytes(self.elem_bytes)
    }

    /// Total bytes of all messages.
    pub fn total_bytes(&self) -> usize {
        self.messages.iter().map(|m| m.bytes(self.elem_bytes)).sum()
    }

    /// Where rank `rank`'s result lies in its buffer: the whole vector, except for
    /// reduce-scatter (its shard).
    pub fn result_span(&self, rank: Rank) -> Span {
        match self.collective {
            Collective::ReduceScatter => shard_span(self.count, self.world, rank),
            _ => Span::range(0, self.count),
        }
    }
}

/// The `index`-th of `parts` balanced contiguous pieces of `[0, count)`: the first
/// `count % parts` pieces have one element more. The contract's
/// [`shard_of_len`](spacefabric_proto::shard::shard_of_len) as a span: the controller's plan
/// cuts the sharded strategy's parameter shards with the same function.
pub fn shard_span(count: usize, parts: usize, index: usize) -> Span {
    let r = spacefabric_proto::shard::shard_of_len(count, parts, index);
    Span {
        start: r.start,
        len: r.len(),
    }
}

/// Shard `index` of `parts` pieces of `within` (a sub-range of the vector).
fn sub_shard(within: Span, parts: usize, index: usize) -> Span {
    let s = shard_span(within.len, parts, index);
    Span {
        start: within.start + s.start,
        len: s.len,
    }
}

/// Ranks grouped by site, each group in rank order, groups ordered by their first rank.
pub fn site_groups(site_of_rank: Option<&[usize]>, world: usize) -> Vec<Vec<Rank>> {
    let Some(sites) = site_of_rank else {
        return vec![(0..world).collect()];
    };
    let mut groups: Vec<(usize, Vec<Rank>)> = Vec::new();
    for (rank, &site) in sites.iter().enumerate() {
        match groups.iter_mut().find(|(s, _)| *s == site) {
            Some((_, g)) => g.push(rank),
            None => groups.push((site, vec![rank])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Accumulates messages and per-rank steps, one "round" at a time. A round gives every rank
/// it involves one new step holding its sends and receives of that round; ranks proceed
/// through rounds independently (data-driven), so a round is not a barrier.
struct Builder {
    world: usize,
    count: usize,
    messages: Vec<Message>,
    steps: Vec<Vec<Step>>,
}

impl Builder {
    fn new(world: usize, count: usize) -> Self {
        Self {
            world,
            count,
            messages: Vec::new(),
            steps: vec![Vec::new(); world],
        }
    }

    fn round(&mut self, transfers: Vec<(Rank, Rank, Span, Combine)>) {
        let mut step_of: Vec<Option<Step>> = vec![None; self.world];
        for (from, to, span, combine) in transfers {
            if span.len == 0 || from == to {
                continue;
            }
            let id = self.messages.len();
            self.messages.push(Message {
                from,
                to,
                span,
                combine,
            });
            step_of[from]
                .get_or_insert_with(Step::default)
                .sends
                .push(id);
            step_of[to].get_or_insert_with(Step::default).recvs.push(id);
        }
        for (rank, step) in step_of.into_iter().enumerate() {
            if let Some(step) = step {
                self.steps[rank].push(step);
            }
        }
    }

    fn finish(
        self,
        collective: Collective,
        algorithm: Concrete,
    ) -> Result<Schedule, ScheduleError> {
        if self.messages.len() >= 1 << 24 {
            return Err(ScheduleError::TooManyMessages(self.messages.len()));
        }
        Ok(Schedule {
            collective,
            algorithm,
            world: self.world,
            count: self.count,
            elem_bytes: 4,
            messages: self.messages,
            steps: self.steps,
        })
    }
}

/// Ring reduce-scatter inside each group over `within`: the group's `j`-th rank ends owning
/// the sum of shard `j` (of `group.len()` shards of `within`). Groups run side by side.
fn ring_reduce_scatter(b: &mut Builder, groups: &[Vec<Rank>], within: Span) {
    let rounds = groups
        .iter()
        .map(|g| g.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    for s in 0..rounds {
        let mut transfers = Vec::new();
        for g in groups {
            let k = g.len();
            if s + 1 >= k {
                continue;
            }
            for (j, &rank) in g.iter().enumerate() {
                // Chunk c starts at position c+1 and is complete at position c after k-1 hops:
                // in round s, position j sends chunk j-1-s to position j+1.
                let chunk = (j + 2 * k - 1 - s) % k;
                let next = g[(j + 1) % k];
                transfers.push((rank, next, sub_shard(within, k, chunk), Combine::Sum));
            }
        }
        b.round(transfers);
    }
}

/// Ring all-gather inside each group over `within`: the group's `j`-th rank starts with
/// shard `j` and ends with all of them.
fn ring_all_gather(b: &mut Builder, groups: &[Vec<Rank>], within: Span) {
    let rounds = groups
        .iter()
        .map(|g| g.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    for s in 0..rounds {
        let mut transfers = Vec::new();
        for g in groups {
            let k = g.len();
            if s + 1 >= k {
                continue;
            }
            for (j, &rank) in g.iter().enumerate() {
                let chunk = (j + k - s) % k;
                let next = g[(j + 1) % k];
                transfers.push((rank, next, sub_shard(within, k, chunk), Combine::Copy));
            }
        }
        b.round(transfers);
    }
}

/// Element span of blocks `[lo, hi)` of the `parts`-way partition of the vector.
fn blocks(count: usize, parts: usize, lo: usize, hi: usize) -> Span {
    let start = shard_span(count, parts, lo).start;
    let end = if hi >= parts {
        count
    } else {
        shard_span(count, parts, hi).start
    };
    Span::range(start, end)
}

/// Recursive halving reduce-scatter among `ranks` (a power-of-two count): the `i`-th of
/// them ends owning block `i` of the `ranks.len()`-way partition.
fn halving(b: &mut Builder, ranks: &[Rank]) {
    let p = ranks.len();
    let count = b.count;
    let mut own: Vec<(usize, usize)> = vec![(0, p); p];
    let mut d = p / 2;
    while d >= 1 {
        let mut transfers = Vec::new();
        for i in 0..p {
            let (lo, hi) = own[i];
            let mid = lo + (hi - lo) / 2;
            let (keep, give) = if i & d == 0 {
                ((lo, mid), (mid, hi))
            } else {
                ((mid, hi), (lo, mid))
            };
            transfers.push((
                ranks[i],
                ranks[i ^ d],
                blocks(count, p, give.0, give.1),
                Combine::Sum,
            ));
            own[i] = keep;
        }
        b.round(transfers);
        d /= 2;
    }
}

/// Recursive doubling all-gather among `ranks` (a power-of-two count): the `i`-th starts
/// with block `i` and ends with all blocks.
fn doubling(b: &mut Builder, ranks: &[Rank]) {
    let p = ranks.len();
    let count = b.count;
    let mut own: Vec<(usize, usize)> = (0..p).map(|i| (i, i + 1)).collect();
    let mut d = 1;
    while d < p {
        let mut transfers = Vec::new();
        for i in 0..p {
            let (lo, hi) = own[i];
            transfers.push((
                ranks[i],
                ranks[i ^ d],
                blocks(count, p, lo, hi),
                Combine::Copy,
            ));
        }
        for i in 0..p {
            let (lo, hi) = own[i];
            let (plo, phi) = own[i ^ d];
            own[i] = (lo.min(plo), hi.max(phi));
        }
        b.round(transfers);
        d *= 2;
    }
}

/// Rabenseifner's all-reduce. For a world that is not a power of two, with `p'` the largest
/// power of two below it and `rem = p − p'`: ranks `2i` (i < rem) first fold their vector
/// into rank `2i+1` and sit out; the `p'` remaining ranks run halving + doubling; then ranks
/// `2i+1` copy the result back to `2i`.
fn rabenseifner(b: &mut Builder) {
    let p = b.world;
    let whole = Span::range(0, b.count);
    let pof2 = if p.is_power_of_two() {
        p
    } else {
        p.next_power_of_two() / 2
    };
    let rem = p - pof2;
    if rem > 0 {
        b.round(
            (0..rem)
                .map(|i| (2 * i, 2 * i + 1, whole, Combine::Sum))
                .collect(),
        );
    }
    let group: Vec<Rank> = (0..rem).map(|i| 2 * i + 1).chain(2 * rem..p).collect();
    halving(b, &group);
    doubling(b, &group);
    if rem > 0 {
        b.round(
            (0..rem)
                .map(|i| (2 * i + 1, 2 * i, whole, Combine::Copy))
                .collect(),
        );
    }
}

/// Depth of position `v` in a binary heap-ordered tree.
fn depth(v: usize) -> usize {
    (usize::BITS - 1 - (v + 1).leading_zeros()) as usize
}

/// Binary tree reduce to position 0 of `0..world` (parent of `v` is `(v−1)/2`), level by
/// level from the leaves.
fn tree_reduce(b: &mut Builder) {
    let p = b.world;
    if p <= 1 {
        return;
    }
    let whole = Span::range(0, b.count);
    let max_depth = depth(p - 1);
    for level in (1..=max_depth).rev() {
        let transfers = (1..p)
            .filter(|&v| depth(v) == level)
            .map(|v| (v, (v - 1) / 2, whole, Combine::Sum))
            .collect();
        b.round(transfers);
    }
}

/// Binary tree broadcast over `order` (position 0 is the root; parent of position `v` is
/// `(v−1)/2`).
fn tree_broadcast(b: &mut Builder, order: &[Rank]) {
    let p = order.len();
    if p <= 1 {
        return;
    }
    let whole = Span::range(0, b.count);
    let max_depth = depth(p - 1);
    for level in 1..=max_depth {
        let transfers = (1..p)
            .filter(|&v| depth(v) == level)
            .map(|v| (order[(v - 1) / 2], order[v], whole, Combine::Copy))
            .collect();
        b.round(transfers);
    }
}

/// Binomial tree broadcast over `order` (position 0 is the root): in round `j`, positions
/// below `2^j` send to position `+2^j`.
fn binomial_broadcast(b: &mut Builder, order: &[Rank]) {
    let p = order.len();
    let whole = Span::range(0, b.count);
    let mut d = 1;
    while d < p {
        let transfers = (0..d.min(p - d))
            .map(|v| (order[v], order[v + d], whole, Combine::Copy))
            .collect();
        b.round(transfers);
        d *= 2;
    }
}

/// Hierarchical all-reduce: ring reduce-scatter inside every site (site rank `j` owns shard
/// `j` of its site's partition), one round in which every rank exchanges, with every rank
/// of every other site whose shard overlaps its own, its site's partial sum over the
/// overlap, then ring all-gather inside every site.
fn hierarchical_all_reduce(b: &mut Builder, groups: &[Vec<Rank>]) {
    let whole = Span::range(0, b.count);
    ring_reduce_scatter(b, groups, whole);
    let mut transfers = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for (hi, h) in groups.iter().enumerate() {
            if gi == hi {
                continue;
            }
            for (j, &a) in g.iter().enumerate() {
                let mine = sub_shard(whole, g.len(), j);
                for (l, &c) in h.iter().enumerate() {
                    let theirs = sub_shard(whole, h.len(), l);
                    let overlap = mine.intersect(&theirs);
                    transfers.push((a, c, overlap, Combine::Sum));
                }
            }
        }
    }
    b.round(transfers);
    ring_all_gather(b, groups, whole);
}

/// Hierarchical all-gather: every rank sends its shard once to each other site (to the rank
/// at its own site position there, wrapping when the sites differ in size), then each site
/// ring-all-gathers what its ranks hold. Every shard crosses to every other site exactly
/// once — the least any all-gather can move over a shared inter-site trunk — where a ring or
/// recursive doubling over all ranks carries a shard across the cut several times.
fn hierarchical_all_gather(b: &mut Builder, groups: &[Vec<Rank>]) {
    let (world, count) = (b.world, b.count);
    // held[site][position]: the ranks whose shards that position holds after the crossing.
    let mut held: Vec<Vec<Vec<Rank>>> = groups
        .iter()
        .map(|g| g.iter().map(|&r| vec![r]).collect())
        .collect();
    let mut transfers = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for (hi, h) in groups.iter().enumerate() {
            if gi == hi || h.is_empty() {
                continue;
            }
            for (j, &a) in g.iter().enumerate() {
                let l = j % h.len();
                transfers.push((a, h[l], shard_span(count, world, a), Combine::Copy));
                held[hi][l].push(a);
            }
        }
    }
    b.round(transfers);
    // Ring inside each site: in round s, position j forwards the set that position j − s
    // held after the crossing.
    let rounds = groups
        .iter()
        .map(|g| g.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    for s in 0..rounds {
        let mut transfers = Vec::new();
        for (hi, h) in groups.iter().enumerate() {
            let k = h.len();
            if s + 1 >= k {
                continue;
            }
            for (j, &rank) in h.iter().enumerate() {
                let origin = (j + k - s) % k;
                let next = h[(j + 1) % k];
                for &src in &held[hi][origin] {
                    transfers.push((rank, next, shard_span(count, world, src), Combine::Copy));
                }
            }
        }
        b.round(transfers);
    }
}

/// Hierarchical broadcast: the root sends to the first rank of every other site, then a
/// binary tree inside every site (rooted at the root in its own site).
fn hierarchical_broadcast(b: &mut Builder, groups: &[Vec<Rank>], root: Rank) {
    let whole = Span::range(0, b.count);
    let mut leaders = Vec::new();
    let mut orders = Vec::new();
    for g in groups {
        let leader = if g.contains(&root) { root } else { g[0] };
        leaders.push(leader);
        let mut order = vec![leader];
        order.extend(g.iter().copied().filter(|&r| r != leader));
        orders.push(order);
    }
    b.round(
        leaders
            .iter()
            .map(|&l| (root, l, whole, Combine::Copy))
            .collect(),
    );
    let max_len = orders.iter().map(Vec::len).max().unwrap_or(0);
    if max_len <= 1 {
        return;
    }
    let max_depth = depth(max_len - 1);
    for level in 1..=max_depth {
        let mut transfers = Vec::new();
        for order in &orders {
            for v in 1..order.len() {
                if depth(v) == level {
                    transfers.push((order[(v - 1) / 2], order[v], whole, Combine::Copy));
                }
            }
        }
        b.round(transfers);
    }
}

/// Runs a schedule in memory on `inputs` (one vector per rank) with the executor's
/// semantics, checking that it holds together: every message is sent by its sender and
/// received by its receiver exactly once, and no rank waits forever. Returns the final
/// buffers. Pure: no I/O, no clock.
pub fn simulate(schedule: &Schedule, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, ScheduleError> {
    if inputs.len() != schedule.world {
        return Err(ScheduleError::SiteMapSize {
            got: inputs.len(),
            world: schedule.world,
        });
    }
    for (rank, v) in inputs.iter().enumerate() {
        if v.len() != schedule.count {
            return Err(ScheduleError::InputSize {
                rank,
                got: v.len(),
                count: schedule.count,
            });
        }
    }
    let mut data: Vec<Vec<f32>> = inputs.to_vec();
    let mut mailbox: Vec<Option<Vec<f32>>> = vec![None; schedule.messages.len()];
    let mut sent = vec![false; schedule.messages.len()];
    let mut received = vec![false; schedule.messages.len()];
    let mut pc = vec![0usize; schedule.world];
    let mut issued = vec![false; schedule.world];
    loop {
        let mut progress = false;
        for rank in 0..schedule.world {
            while let Some(step) = schedule.steps[rank].get(pc[rank]) {
                if !issued[rank] {
                    // Sends go out when the step starts, before its receives.
                    for &m in &step.sends {
                        let msg = message(schedule, m)?;
                        if msg.from != rank {
                            return Err(inconsistent(
                                m,
                                format!("sent by rank {rank}, but its sender is {}", msg.from),
                            ));
                        }
                        if sent[m] {
                            return Err(inconsistent(m, "sent twice".to_string()));
                        }
                        sent[m] = true;
                        mailbox[m] = Some(data[rank][msg.span.as_range()].to_vec());
                    }
                    issued[rank] = true;
                    progress = true;
                }
                if !step
                    .recvs
                    .iter()
                    .all(|&m| mailbox.get(m).is_some_and(Option::is_some))
                {
                    break;
                }
                for &m in &step.recvs {
                    let msg = message(schedule, m)?;
                    if msg.to != rank {
                        return Err(inconsistent(
                            m,
                            format!("received by rank {rank}, but its receiver is {}", msg.to),
                        ));
                    }
                    if received[m] {
                        return Err(inconsistent(m, "received twice".to_string()));
                    }
                    received[m] = true;
                    let payload = mailbox[m].take().unwrap_or_default();
                    let dst = &mut data[rank][msg.span.as_range()];
                    match msg.combine {
                        Combine::Sum => dst.iter_mut().zip(&payload).for_each(|(d, s)| *d += s),
                        Combine::Copy => dst.copy_from_slice(&payload),
                    }
                    // Keep the slot non-empty-marked as consumed.
                    mailbox[m] = Some(Vec::new());
                }
                pc[rank] += 1;
                issued[rank] = false;
                progress = true;
            }
        }
        let blocked: Vec<Rank> = (0..schedule.world)
            .filter(|&r| pc[r] < schedule.steps[r].len())
            .collect();
        if blocked.is_empty() {
            break;
        }
        if !progress {
            return Err(ScheduleError::Deadlock { blocked });
        }
    }
    if let Some(m) = (0..schedule.messages.len()).find(|&m| !sent[m] || !received[m]) {
        return Err(inconsistent(
            m,
            format!("sent: {}, received: {}", sent[m], received[m]),
        ));
    }
    Ok(data)
}

fn message(schedule: &Schedule, m: MsgId) -> Result<&Message, ScheduleError> {
    schedule
        .messages
        .get(m)
        .ok_or_else(|| inconsistent(m, "no such message".to_string()))
}

fn inconsistent(msg: MsgId, problem: String) -> ScheduleError {
    ScheduleError::Inconsistent { msg, problem }
}
