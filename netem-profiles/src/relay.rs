//! Relay routes: a site pair whose datagrams cross relay sites, one link per hop
//! (DSN → relay orbiter → far-side base).
//!
//! A profile's `[[routes]]` entry names the relay sites (`via`); each hop is the profile's
//! own link between two consecutive sites, with its own delay, rate, loss, outages and
//! outage mode (a relay that stores while its next hop is down is `outage = "store"` on that
//! hop: [`crate::link`]). The emulator applies the hops one after the other, each when the
//! datagram reaches it (the forwarder "is" each relay). This module holds the pure pieces:
//! [`path_summary`], the one [`LinkSpec`] a routed pair shows to whoever reasons about the
//! pair as a whole (cost model, transport tuning, idle timeouts), and [`RelayPath`], the hop
//! models chained for one flow handed over in time order (tests, and what-if tools).
//!
//! Pure: no I/O, no clock.

use std::sync::Arc;
use std::time::Duration;

use crate::link::{LinkModel, Verdict};
use crate::profile::{LinkSpec, LossModel, OutageMode};
use crate::schedule::OutageSchedule;

/// The spec a routed pair presents as a whole: the hops' delays add up (`delay_at` sums the
/// hops' delays at an instant), the rate is the slowest hop's (with that hop's queue), the
/// path is down whenever a hop that drops is down (the union of those hops' outages: a
/// storing hop's outage delays datagrams, it does not refuse them, so a sender that watches
/// the path's contacts keeps sending into the store), independent Bernoulli
/// losses combine as `1 − Π(1 − pᵢ)` (a Gilbert-Elliott hop: the first one's process stands
/// for the path), duplication is the largest hop's, and there is no jitter. It never stores:
/// storing happens at the hops. The hops themselves are kept in
/// [`LinkSpec::relay_hops`].
pub fn path_summary(hops: &[LinkSpec]) -> LinkSpec {
    let delay = hops.iter().map(|h| h.delay).sum();
    let bottleneck = hops
        .iter()
        .filter_map(|h| {
            h.rate_bps
                .filter(|&r| r > 0)
                .map(|r| (r, h.queue_limit_bytes))
        })
        .min_by_key(|&(r, _)| r);
    let mut keep = 1.0f64;
    let mut loss = LossModel::None;
    for h in hops {
        match h.loss {
            LossModel::None => {}
            LossModel::Bernoulli { p } => keep *= 1.0 - p,
            ge @ LossModel::GilbertElliott { .. } => {
                if !matches!(loss, LossModel::GilbertElliott { .. }) {
                    loss = ge;
                }
            }
        }
    }
    if !matches!(loss, LossModel::GilbertElliott { .. }) && keep < 1.0 {
        loss = LossModel::Bernoulli { p: 1.0 - keep };
    }
    let mut outages = OutageSchedule::default();
    for h in hops.iter().filter(|h| h.outage_mode == OutageMode::Drop) {
        outages.periodic.extend_from_slice(&h.outages.periodic);
        outages.windows.extend_from_slice(&h.outages.windows);
    }
    outages.windows.sort();
    LinkSpec {
        delay,
        jitter: None,
        loss,
        duplicate: hops.iter().map(|h| h.duplicate).fold(0.0, f64::max),
        rate_bps: bottleneck.map(|(r, _)| r),
        queue_limit_bytes: bottleneck.map_or(u64::MAX, |(_, q)| q),
        outages,
        geometry: None,
        outage_mode: OutageMode::Drop,
        relay_hops: Some(Arc::from(hops)),
    }
}

/// The hop models of one route chained: hop `i + 1` is handed the datagram when hop `i`
/// delivers it. Exact for one flow whose datagrams are handed over in time order (each hop
/// then sees them in time order too); the emulator runs the same hop models event by event
/// for any number of flows. A duplicate made by a hop is not followed further (the
/// original is).
#[derive(Debug, Clone)]
pub struct RelayPath {
    hops: Vec<LinkModel>,
}

/// What became of a datagram on a [`RelayPath`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathVerdict {
    /// Delivered at the end of the path at `at`.
    Deliver {
        /// Arrival time at the destination.
        at: Duration,
    },
    /// Dropped at hop `hop` (0-based) with the link's verdict.
    Drop {
        /// The hop that dropped it.
        hop: usize,
        /// Why.
        cause: crate::link::DropCause,
    },
}

impl RelayPath {
    /// A path over `hops` in order (each hop's model in its initial state).
    pub fn new(hops: Vec<LinkModel>) -> Self {
        Self { hops }
    }

    /// The hops' models.
    pub fn hops(&self) -> &[LinkModel] {
        &self.hops
    }

    /// Hands a datagram of `len` bytes to the first hop at `now`.
    pub fn on_packet(&mut self, now: Duration, len: usize) -> PathVerdict {
        let mut t = now;
        for (hop, model) in self.hops.iter_mut().enumerate() {
            match model.on_packet(t, len) {
                Verdict::Deliver { at, .. } => t = at,
                Verdict::Drop(cause) => return PathVerdict::Drop { hop, cause },
            }
        }
        PathVerdict::Deliver { at: t }
    }
}
