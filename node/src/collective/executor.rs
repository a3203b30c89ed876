//! The executor: runs one rank's part of any [`Schedule`] over an [`Exchange`].
//!
//! The vector is split into lanes ([`super::cost::lane_spans`]); every lane runs its own
//! schedule over its own slice, all lanes at once, so a collective keeps several transfers
//! (QUIC streams) in flight per link and successive lanes pipeline through multi-hop
//! algorithms. Within a lane a rank walks its steps in order: it copies the payload of each
//! send of the step (sends then proceed in the background; a span received as a copy in the
//! previous step is passed on as received instead), waits for the step's receives, combining
//! each from the pieces it arrived in as it arrives, then moves on. Every message's tag is unique per
//! (call, lane, message): see [`tag`].

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use netem_profiles::{TrunkId, TrunkPlan};
use spacefabric_fabric::transport::Payload;
use thiserror::Error;

use spacefabric_proto::reduction::ReduceOpName;

use super::element::{self, Element};
use super::exchange::{Exchange, ExchangeError};
use super::schedule::{Combine, Rank, Schedule, ScheduleError, Span};

/// Why a collective failed on this rank.
#[derive(Debug, Error)]
pub enum CollectiveError {
    /// Sending a message failed.
    #[error("rank {rank}: sending {bytes} bytes to rank {to} (tag {tag:#018x}) failed: {source}")]
    Send {
        /// This rank.
        rank: Rank,
        /// Destination.
        to: Rank,
        /// Tag of the message.
        tag: u64,
        /// Payload size.
        bytes: usize,
        /// The transport's error.
        source: ExchangeError,
    },
    /// Receiving a message failed.
    #[error("rank {rank}: receiving from rank {from} (tag {tag:#018x}) failed: {source}")]
    Recv {
        /// This rank.
        rank: Rank,
        /// Expected sender.
        from: Rank,
        /// Tag of the message.
        tag: u64,
        /// The transport's error.
        source: ExchangeError,
    },
    /// A peer sent a payload of the wrong size.
    #[error(
        "rank {rank}: message from rank {from} (tag {tag:#018x}) has {got} bytes, expected {expected}"
    )]
    PayloadSize {
        /// This rank.
        rank: Rank,
        /// Sender.
        from: Rank,
        /// Tag of the message.
        tag: u64,
        /// Bytes received.
        got: usize,
        /// Bytes the schedule says.
        expected: usize,
    },
    /// The schedule could not be built.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The cost model could not be evaluated.
    #[error(transparent)]
    Cost(#[from] super::cost::CostError),
    /// The exchange and the communicator disagree on the world.
    #[error("rank {rank} is not in a world of {world}")]
    BadRank {
        /// The exchange's rank.
        rank: Rank,
        /// The world size.
        world: usize,
    },
}

/// The tag of message `msg` of lane `lane` of collective call `call`:
/// `call` in the top 32 bits, `lane` in the next 8, `msg` in the low 24.
pub fn tag(call: u32, lane: usize, msg: usize) -> u64 {
    (u64::from(call) << 32) | (((lane & 0xff) as u64) << 24) | (msg as u64 & 0xff_ffff)
}

/// Combines a received payload into `dst` from the pieces it arrived in (no joining copy).
fn combine<T: Element>(dst: &mut [T], payload: &Payload, how: Combine, op: ReduceOpName) {
    let op = match how {
        Combine::Sum => Some(op),
        Combine::Copy => None,
    };
    element::combine_pieces(dst, payload.pieces().iter().map(|p| &p[..]), op);
}

/// For each peer this rank sends to over a shared trunk in `schedules` (the lanes of one
/// call, run at once), how many connections the schedules put on that trunk: the distinct
/// ordered rank pairs whose messages cross it. That is the share the transport paces to
/// (an upper bound on how many are busy at once: pairs a schedule uses one after the other
/// get less than they could).
pub(crate) fn trunk_shares(schedules: &[Schedule], plan: &TrunkPlan, me: Rank) -> Vec<(Rank, u32)> {
    let mut pairs: BTreeSet<(Rank, Rank)> = BTreeSet::new();
    for s in schedules {
        pairs.extend(s.messages.iter().map(|m| (m.from, m.to)));
    }
    let mut per_trunk: HashMap<TrunkId, u32> = HashMap::new();
    for &(a, b) in &pairs {
        if let Some(t) = plan.trunk(a, b).filter(TrunkId::is_shared) {
            *per_trunk.entry(t).or_insert(0) += 1;
        }
    }
    pairs
        .iter()
        .filter(|(a, _)| *a == me)
        .filter_map(|&(_, b)| {
            let t = plan.trunk(me, b)?;
            per_trunk.get(&t).map(|&n| (b, n))
        })
        .collect()
}

/// Runs this rank's steps of one lane's `schedule` on `data` (the lane's slice), reducing
/// with `op`; for `avg` the reduced elements of this rank's result are divided by the
/// world size at the end.
pub(crate) async fn run_lane<E: Exchange, T: Element>(
    ex: &E,
    schedule: &Schedule,
    call: u32,
    lane: usize,
    data: &mut [T],
    op: ReduceOpName,
) -> Result<(), CollectiveError> {
    let me = ex.rank();
    let Some(steps) = schedule.steps.get(me) else {
        return Err(CollectiveError::BadRank {
            rank: me,
            world: schedule.world,
        });
    };
    let mut sends = FuturesUnordered::new();
    // Payloads received with `Combine::Copy` in the previous step, whose span no later
    // combine touched: `data[span]` holds exactly their bytes, so a send of that span passes
    // the received pieces on instead of encoding the same bytes again (the all-gather half
    // of ring and hierarchical, the broadcast half of tree). Kept for one step only.
    let mut copied: Vec<(Span, Payload)> = Vec::new();
    for step in steps {
        for &m in &step.sends {
            let msg = schedule.messages[m];
            let t = tag(call, lane, m);
            let payload = match copied.iter().find(|(span, _)| *span == msg.span) {
                Some((_, received)) => received.clone(),
                None => Payload::from(element::encode(&data[msg.span.as_range()])),
            };
            let bytes = payload.len();
            sends.push(async move {
                ex.send_payload(msg.to, t, payload)
                    .await
                    .map_err(|source| CollectiveError::Send {
                        rank: me,
                        to: msg.to,
                        tag: t,
                        bytes,
                        source,
                    })
            });
        }
        copied.clear();
        let mut recvs = FuturesUnordered::new();
        for &m in &step.recvs {
            let msg = schedule.messages[m];
            let t = tag(call, lane, m);
            recvs.push(async move {
                let r = ex.recv_payload(msg.from, t).await;
                (msg, t, r)
            });
        }
        while !recvs.is_empty() {
            tokio::select! {
                Some((msg, t, r)) = recvs.next() => {
                    let payload = r.map_err(|source| CollectiveError::Recv { rank: me, from: msg.from, tag: t, source })?;
                    let expected = msg.bytes(T::BYTES);
                    if payload.len() != expected {
                        return Err(CollectiveError::PayloadSize {
                            rank: me, from: msg.from, tag: t, got: payload.len(), expected,
                        });
                    }
                    combine(&mut data[msg.span.as_range()], &payload, msg.combine, op);
                    copied.retain(|(span, _)| !span.overlaps(&msg.span));
                    if msg.combine == Combine::Copy {
                        copied.push((msg.span, payload));
                    }
                }
                Some(r) = sends.next(), if !sends.is_empty() => r?,
            }
        }
    }
    while let Some(r) = sends.next().await {
        r?;
    }
    if op == ReduceOpName::Avg && schedule.collective.reduces() {
        for x in &mut data[schedule.result_span(me).as_range()] {
            *x = x.div_ranks(schedule.world);
        }
    }
    Ok(())
}
