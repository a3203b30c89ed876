//! Collectives: all-reduce, reduce-scatter, all-gather and broadcast of any [`Element`]
//! type (nccl-tests' datatypes, [`element`]) with any reduction op (sum, prod, max, min,
//! avg) over any point-to-point [`Exchange`] — the QUIC mesh in a node, in-memory mailboxes
//! in tests.
//!
//! Every algorithm is a [`Schedule`]: pure data saying, per rank, which span goes to whom,
//! what arrives from whom and how it is combined ([`schedule`]). One executor runs any
//! schedule ([`executor`]); the [`CostModel`] runs the same schedules over a profile's links
//! and predicts their time, which is how [`Algorithm::Auto`] chooses ([`cost`]); [`verify`]
//! crafts inputs whose reductions are exact so results are checked to the bit.
//!
//! Entry points: build a [`Communicator`] around an exchange (plus, for hierarchical and
//! auto, where the ranks are and what the links cost), then call [`all_reduce`],
//! [`reduce_scatter`], [`all_gather`] or [`broadcast`]. Every rank must make the same calls
//! in the same order with the same arguments (as with MPI or NCCL).

pub mod cost;
pub mod element;
pub mod exchange;
pub mod executor;
mod mesh_exchange;
pub mod schedule;
pub mod sweep;
pub mod verify;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use spacefabric_proto::algorithm::AlgorithmName;
use spacefabric_proto::wire_enum::{WireEnum, WireEnumError};
use tokio::time::Instant;

pub use cost::{Bound, CostModel, LinkCost, Prediction, lane_spans};
pub use element::Element;
pub use exchange::{Corruption, Exchange, ExchangeError, MemoryExchange, MemoryFabric};
pub use executor::CollectiveError;
pub use schedule::{
    Collective, Concrete, Rank, Schedule, ScheduleError, Span, shard_span, simulate,
};
pub use spacefabric_proto::reduction::{DataTypeName, ReduceOpName};

/// Slack on top of the longest link delay before a [`Communicator::barrier`] releases:
/// host scheduling and QUIC processing of the barrier's messages on a loaded machine.
pub const BARRIER_MARGIN: Duration = Duration::from_millis(5);

/// Whole microseconds of `d` (saturating).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Which algorithm a collective uses (serde: its short name, `ring` … `auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    /// Ring: bandwidth-optimal, 2(p−1) latencies.
    #[serde(rename = "ring")]
    Ring,
    /// Recursive halving-doubling (Rabenseifner): bandwidth-optimal, 2 lg p latencies.
    #[serde(rename = "hd")]
    HalvingDoubling,
    /// Binary tree reduce then broadcast: 2 lg p latencies, the whole vector per hop.
    #[serde(rename = "tree")]
    Tree,
    /// Inside each site, then across sites once, then inside each site again.
    #[serde(rename = "hier")]
    Hierarchical,
    /// The algorithm the cost model predicts fastest for this size and these links.
    #[serde(rename = "auto")]
    Auto,
}

impl Algorithm {
    /// The concrete algorithm, if this is not `Auto`.
    pub fn concrete(self) -> Option<Concrete> {
        match self {
            Self::Ring => Some(Concrete::Ring),
            Self::HalvingDoubling => Some(Concrete::HalvingDoubling),
            Self::Tree => Some(Concrete::Tree),
            Self::Hierarchical => Some(Concrete::Hierarchical),
            Self::Auto => None,
        }
    }

    /// Short name (`ring`, `hd`, `tree`, `hier`, `auto`).
    pub fn short_name(self) -> &'static str {
        self.concrete().map_or("auto", |c| c.short_name())
    }

    /// The algorithm a wire value (`v1::Algorithm`, a plan's or a result's) names: unset
    /// and unknown numbers are errors.
    pub fn from_wire(value: i32) -> Result<Self, WireEnumError> {
        AlgorithmName::from_wire(value).map(Self::from)
    }

    /// This algorithm as the wire's `v1::Algorithm` number.
    pub fn to_wire(self) -> i32 {
        AlgorithmName::from(self).to_wire()
    }
}

impl From<Algorithm> for AlgorithmName {
    fn from(a: Algorithm) -> Self {
        match a {
            Algorithm::Ring => Self::Ring,
            Algorithm::HalvingDoubling => Self::HalvingDoubling,
            Algorithm::Tree => Self::Tree,
            Algorithm::Hierarchical => Self::Hierarchical,
            Algorithm::Auto => Self::Auto,
        }
    }
}

impl From<Concrete> for Algorithm {
    fn from(c: Concrete) -> Self {
        match c {
            Concrete::Ring => Self::Ring,
            Concrete::HalvingDoubling => Self::HalvingDoubling,
            Concrete::Tree => Self::Tree,
            Concrete::Hierarchical => Self::Hierarchical,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

pub use spacefabric_proto::algorithm::UnknownAlgorithm;

impl From<AlgorithmName> for Algorithm {
    fn from(name: AlgorithmName) -> Self {
        match name {
            AlgorithmName::Ring => Self::Ring,
            AlgorithmName::HalvingDoubling => Self::HalvingDoubling,
            AlgorithmName::Tree => Self::Tree,
            AlgorithmName::Hierarchical => Self::Hierarchical,
            AlgorithmName::Auto => Self::Auto,
        }
    }
}

/// Parses the spec vocabulary of [`AlgorithmName`] (the one the controller validates with).
impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlgorithmName::parse(s).map(Self::from)
    }
}

/// Tuning of the executor. Defaults: 4 lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectiveConfig {
    /// Lanes a vector is split into and run side by side (each a separate stream per hop);
    /// vectors under 64 KiB per lane use fewer. Default 4; at most 255.
    pub lanes: usize,
}

impl Default for CollectiveConfig {
    fn default() -> Self {
        Self { lanes: 4 }
    }
}

/// An exchange plus what the collectives need to know about the world: where each rank is
/// (for hierarchical) and what the links cost (for auto), and a call counter that keeps the
/// tags of successive collectives apart.
#[derive(Debug)]
pub struct Communicator<E> {
    exchange: E,
    cost: CostModel,
    config: CollectiveConfig,
    calls: AtomicU32,
}

impl<E: Exchange> Communicator<E> {
    /// All ranks on one site, with a nominal LAN cost model (50 µs, 10 Gbit/s) for `Auto`.
    pub fn new(exchange: E) -> Self {
        let world = exchange.world_size();
        Self {
            exchange,
            cost: CostModel::uniform(world, Duration::from_micros(50), Some(10_000_000_000)),
            config: CollectiveConfig::default(),
            calls: AtomicU32::new(0),
        }
    }

    /// Uses `cost` (which also says which site every rank is on).
    pub fn with_cost_model(mut self, cost: CostModel) -> Result<Self, CollectiveError> {
        if cost.world() != self.exchange.world_size() {
            return Err(CollectiveError::Cost(cost::CostError::WorldMismatch {
                got: cost.world(),
                world: self.exchange.world_size(),
            }));
        }
        self.cost = cost;
        Ok(self)
    }

    /// Uses `config`.
    pub fn with_config(mut self, config: CollectiveConfig) -> Self {
        self.config = config;
        self
    }

    /// The exchange.
    pub fn exchange(&self) -> &E {
        &self.exchange
    }

    /// The cost model.
    pub fn cost_model(&self) -> &CostModel {
        &self.cost
    }

    /// The executor configuration.
    pub fn config(&self) -> CollectiveConfig {
        self.config
    }

    /// Emulated time since tokio instant `start` (e.g. a barrier's release) on the ranks'
    /// shared clock, which may be dilated; tokio time when the exchange has no clock.
    pub fn elapsed_since(&self, start: Instant) -> Duration {
        match self.exchange.clock() {
            Some(clock) => clock.elapsed_since(start),
            None => start.elapsed(),
        }
    }

    /// This rank.
    pub fn rank(&self) -> Rank {
        self.exchange.rank()
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.exchange.world_size()
    }

    /// The concrete algorithm `algorithm` means for `collective` on `count` elements of
    /// `elem_bytes` bytes here.
    pub fn resolve(
        &self,
        collective: Collective,
        algorithm: Algorithm,
        count: usize,
        elem_bytes: usize,
    ) -> Result<Concrete, CollectiveError> {
        match algorithm.concrete() {
            Some(c) => Ok(c),
            None => Ok(self
                .cost
                .choose(collective, count, elem_bytes, self.config.lanes)?),
        }
    }

    /// Waits until every rank has entered the barrier, then releases every rank at the same
    /// instant; returns that instant (the start of whatever the ranks do next).
    ///
    /// Every rank sends every other rank the emulated time at which it entered (on the
    /// exchange's shared scenario clock) and waits for theirs. Releasing on the last arrival
    /// alone does not align ranks: on two sites a light delay L apart, a skew d < L between
    /// them survives (mirrored) — the early site hears the late one at `t + d + L`, the late
    /// site hears the early one at `t + L` — and the next timed collective counts it. So each
    /// rank instead sleeps until the common instant `max(entered) +` [`CostModel::max_delay_s`]
    /// `+` [`BARRIER_MARGIN`], by which every rank holds every message if the links are what
    /// the cost model says. A rank whose messages came later than that (links slower than
    /// the model) goes as soon as it has them, and the returned instant is its own
    /// release time. Without a shared clock ([`Exchange::clock`] is `None`) the barrier
    /// releases on the last arrival.
    pub async fn barrier(&self) -> Result<Instant, CollectiveError> {
        let world = self.world_size();
        let me = self.rank();
        if me >= world {
            return Err(CollectiveError::BadRank { rank: me, world });
        }
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let ex = &self.exchange;
        let clock = ex.clock();
        let entered_us = clock.map_or(0, |c| micros(c.now()));
        let note = bytes::Bytes::copy_from_slice(&entered_us.to_le_bytes());
        let sends = (0..world).filter(|&r| r != me).map(|to| {
            let note = note.clone();
            async move {
                let t = executor::tag(call, 0, me * world + to);
                ex.send(to, t, note)
                    .await
                    .map_err(|source| CollectiveError::Send {
                        rank: me,
                        to,
                        tag: t,
                        bytes: 8,
                        source,
                    })
            }
        });
        let recvs = (0..world).filter(|&r| r != me).map(|from| async move {
            let t = executor::tag(call, 0, from * world + me);
            let payload = ex
                .recv(from, t)
                .await
                .map_err(|source| CollectiveError::Recv {
                    rank: me,
                    from,
                    tag: t,
                    source,
                })?;
            let entered: [u8; 8] =
                payload
                    .as_ref()
                    .try_into()
                    .map_err(|_| CollectiveError::PayloadSize {
                        rank: me,
                        from,
                        tag: t,
                        got: payload.len(),
                        expected: 8,
                    })?;
            Ok::<u64, CollectiveError>(u64::from_le_bytes(entered))
        });
        let (_, entered) = futures::future::try_join(
            futures::future::try_join_all(sends),
            futures::future::try_join_all(recvs),
        )
        .await?;
        let Some(clock) = clock else {
            return Ok(Instant::now());
        };
        let last_entry = entered.into_iter().fold(entered_us, u64::max);
        let wait = Duration::try_from_secs_f64(self.cost.max_delay_s()).unwrap_or(Duration::ZERO)
            + BARRIER_MARGIN;
        // Every entry was sent before it arrived, so on a shared clock none is later than
        // now; a later one (a peer's clock ahead of ours, or garbage) must not hold us
        // beyond one barrier wait from now.
        let release = Duration::from_micros(last_entry)
            .saturating_add(wait)
            .min(clock.now() + wait);
        let at = clock.instant_at(release);
        if Instant::now() < at {
            tokio::time::sleep_until(at).await;
            Ok(at)
        } else {
            Ok(Instant::now())
        }
    }

    /// Runs `collective` in place on `data` with `algorithm`, reducing with `op` (ignored by
    /// all-gather and broadcast); returns the algorithm used.
    pub async fn run<T: Element>(
        &self,
        collective: Collective,
        algorithm: Algorithm,
        op: ReduceOpName,
        data: &mut [T],
    ) -> Result<Concrete, CollectiveError> {
        let world = self.world_size();
        let rank = self.rank();
        if rank >= world {
            return Err(CollectiveError::BadRank { rank, world });
        }
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let concrete = self.resolve(collective, algorithm, data.len(), T::BYTES)?;
        let spans = lane_spans(data.len(), T::BYTES, self.config.lanes);
        let mut schedules = Vec::with_capacity(spans.len());
        for span in &spans {
            schedules.push(
                Schedule::build(
                    collective,
                    concrete,
                    world,
                    span.len,
                    Some(self.cost.site_of_rank()),
                )?
                .with_elem_bytes(T::BYTES),
            );
        }
        if let Some(plan) = self.exchange.trunk_plan() {
            for (peer, share) in executor::trunk_shares(&schedules, plan, rank) {
                self.exchange.set_trunk_share(peer, share);
            }
        }
        let mut rest: &mut [T] = data;
        let mut lanes = Vec::with_capacity(spans.len());
        for (lane, (span, sched)) in spans.iter().zip(&schedules).enumerate() {
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(span.len);
            rest = tail;
            lanes.push(executor::run_lane(
                &self.exchange,
                sched,
                call,
                lane,
                mine,
                op,
            ));
        }
        futures::future::try_join_all(lanes).await?;
        Ok(schedules.first().map_or(concrete, |s| s.algorithm))
    }
}

/// All-reduce (sum) of `data` across all ranks, in place; returns the algorithm used.
pub async fn all_reduce<E: Exchange, T: Element>(
    comm: &Communicator<E>,
    algorithm: Algorithm,
    data: &mut [T],
) -> Result<Concrete, CollectiveError> {
    comm.run(Collective::AllReduce, algorithm, ReduceOpName::Sum, data)
        .await
}

/// All-reduce with reduction `op` of `data` across all ranks, in place; returns the
/// algorithm used.
pub async fn all_reduce_op<E: Exchange, T: Element>(
    comm: &Communicator<E>,
    algorithm: Algorithm,
    op: ReduceOpName,
    data: &mut [T],
) -> Result<Concrete, CollectiveError> {
    comm.run(Collective::AllReduce, algorithm, op, data).await
}

/// Reduce-scatter (sum), in place: afterwards this rank's shard
/// [`shard_span`]`(data.len(), world, rank)` of `data` holds the sum over all ranks of that
/// shard (the rest of `data` is scratch). Returns that span.
///
/// The lanes split the vector, so with several lanes a rank's result is its shard of every
/// lane; this function therefore runs with one lane so the result is one contiguous shard.
pub async fn reduce_scatter<E: Exchange, T: Element>(
    comm: &Communicator<E>,
    algorithm: Algorithm,
    data: &mut [T],
) -> Result<Span, CollectiveError> {
    single_lane(comm, Collective::ReduceScatter, algorithm, data).await?;
    Ok(shard_span(data.len(), comm.world_size(), comm.rank()))
}

/// All-gather, in place: this rank's shard [`shard_span`]`(data.len(), world, rank)` of
/// `data` is its contribution; afterwards `data` holds every rank's shard.
pub async fn all_gather<E: Exchange, T: Element>(
    comm: &Communicator<E>,
    algorithm: Algorithm,
    data: &mut [T],
) -> Result<(), CollectiveError> {
    single_lane(comm, Collective::AllGather, algorithm, data).await
}

/// Broadcast of `root`'s `data` to every rank, in place.
pub async fn broadcast<E: Exchange, T: Element>(
    comm: &Communicator<E>,
    algorithm: Algorithm,
    root: Rank,
    data: &mut [T],
) -> Result<(), CollectiveError> {
    comm.run(
        Collective::Broadcast { root },
        algorithm,
        ReduceOpName::Sum,
        data,
    )
    .await
    .map(|_| ())
}

async fn single_lane<E: Exchange, T: Element>(
    comm: &Communicator<E>,
    collective: Collective,
    algorithm: Algorithm,
    data: &mut [T],
) -> Result<(), CollectiveError> {
    let world = comm.world_size();
    let rank = comm.rank();
    if rank >= world {
        return Err(CollectiveError::BadRank { rank, world });
    }
    let call = comm.calls.fetch_add(1, Ordering::Relaxed);
    let concrete = comm.resolve(collective, algorithm, data.len(), T::BYTES)?;
    let sched = Schedule::build(
        collective,
        concrete,
        world,
        data.len(),
        Some(comm.cost.site_of_rank()),
    )?
    .with_elem_bytes(T::BYTES);
    executor::run_lane(&comm.exchange, &sched, call, 0, data, ReduceOpName::Sum).await
}
