//! Shared trunks: one link object that the sockets of several nodes hold.
//!
//! A profile's link between two sites is by default one trunk per direction, shared by every
//! node pair of the two sites (`netem_profiles::LinkSharing`). In one process the nodes'
//! [`LinkTable`](super::LinkTable)s hold the same [`Trunk`] for every peer placed on it (see
//! `netem_profiles::TrunkPlan`), so every datagram from any Earth node to any Moon node asks
//! the same [`LinkModel`] under one lock: one serialiser, one FIFO tail-drop queue, one loss
//! and outage process. A [`TrunkSet`] creates each trunk once, on first use, for everyone
//! who asks for it by [`TrunkId`].
//!
//! A site pair the profile routes over relays (`[[routes]]`) gets a route trunk: its hops
//! are the shared trunks between consecutive sites of the route, applied one after the other
//! (each when the datagram reaches it; see `Path` in the socket module), so every route and
//! node crossing a hop queues in that hop's one FIFO.
//!
//! Counters and the delay line's hold limit belong to the trunk, so they add up over every
//! sender; each socket still counts its own traffic in its [`EmuStats`](super::EmuStats).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use netem_profiles::{LinkModel, Profile, SiteId, TrunkId};

use super::link_table::{DEFAULT_MAX_HELD_BYTES_PER_LINK, Link, LinkStats};

/// A link that several sockets send through; cheap to clone (a handle).
#[derive(Debug, Clone)]
pub struct Trunk(pub(crate) Arc<Link>);

impl Trunk {
    /// A trunk applying `model`, labelled `label` in metrics and stats, whose delay line
    /// holds at most `max_held_bytes` (see [`DEFAULT_MAX_HELD_BYTES_PER_LINK`]).
    pub fn new(label: impl Into<String>, model: LinkModel, max_held_bytes: u64) -> Self {
        Self(Arc::new(Link::new(label.into(), model, max_held_bytes)))
    }

    /// Counters of every datagram any sender offered to this trunk.
    pub fn stats(&self) -> LinkStats {
        self.0.stats()
    }

    /// Bytes waiting for serialisation at `now` (emulated time since the epoch).
    pub fn queued_bytes(&self, now: std::time::Duration) -> u64 {
        self.0.queued_bytes(now)
    }
}

/// The shared trunks of one roster, created on first use: every node in the process asks it
/// for the trunk of each peer, and nodes asking for the same [`TrunkId`] get the same trunk.
#[derive(Debug)]
pub struct TrunkSet {
    profile: Arc<Profile>,
    max_held_bytes: u64,
    trunks: Mutex<HashMap<TrunkId, Trunk>>,
}

impl TrunkSet {
    /// An empty set for `profile`'s links.
    pub fn new(profile: Arc<Profile>) -> Self {
        Self {
            profile,
            max_held_bytes: DEFAULT_MAX_HELD_BYTES_PER_LINK,
            trunks: Mutex::new(HashMap::new()),
        }
    }

    /// The profile the trunks follow.
    pub fn profile(&self) -> &Arc<Profile> {
        &self.profile
    }

    /// The trunk `id`, created (from the profile, seeded per terminal) if nobody asked for it
    /// before. `None` for a private link or a site the profile does not have: private links
    /// are per node pair and belong to one node's table.
    pub fn trunk(&self, id: TrunkId) -> Option<Trunk> {
        let TrunkId::Shared {
            from_site,
            to_site,
            terminal,
        } = id
        else {
            return None;
        };
        let sites = &self.profile.sites;
        let (from, to) = (sites.get(from_site)?, sites.get(to_site)?);
        if let Some(path) = self.profile.route(from_site, to_site) {
            return self.route(id, path, terminal);
        }
        let mut trunks = self.trunks.lock().unwrap_or_else(PoisonError::into_inner);
        let trunk = trunks.entry(id).or_insert_with(|| {
            let label = format!("{}->{}#{terminal}", from.name, to.name);
            let model = self.profile.trunk_model(from_site, to_site, terminal);
            Trunk::new(label, model, self.max_held_bytes)
        });
        Some(trunk.clone())
    }

    /// The trunk of a site pair the profile routes over relays: one link per hop, each the
    /// shared trunk (terminal 0) between two consecutive sites of `path`, created once and
    /// shared by every route and node that crosses it.
    fn route(&self, id: TrunkId, path: &[SiteId], terminal: u32) -> Option<Trunk> {
        if let Some(t) = self
            .trunks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            return Some(t.clone());
        }
        let (&first, &last) = (path.first()?, path.last()?);
        let mut hops = Vec::with_capacity(path.len().saturating_sub(1));
        for w in path.windows(2) {
            let hop = TrunkId::Shared {
                from_site: w[0],
                to_site: w[1],
                terminal: 0,
            };
            // A hop is never itself routed (the profile checks), so this does not recurse.
            if self.profile.route(w[0], w[1]).is_some() {
                return None;
            }
            hops.push(self.trunk(hop)?.0);
        }
        let names: Vec<&str> = path
            .iter()
            .filter_map(|&s| self.profile.sites.get(s).map(|s| s.name.as_str()))
            .collect();
        let label = format!(
            "{}->{}#{terminal} via {}",
            names.first().copied().unwrap_or("?"),
            names.last().copied().unwrap_or("?"),
            names
                .get(1..names.len().saturating_sub(1))
                .unwrap_or(&[])
                .join(",")
        );
        let summary = self.profile.trunk_model(first, last, terminal);
        let route = Trunk(Arc::new(Link::route(label, summary, hops)));
        let mut trunks = self.trunks.lock().unwrap_or_else(PoisonError::into_inner);
        Some(trunks.entry(id).or_insert(route).clone())
    }

    /// Counters of every trunk created so far, sorted by label.
    pub fn stats(&self) -> Vec<LinkStats> {
        let trunks = self.trunks.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<LinkStats> = trunks.values().map(Trunk::stats).collect();
        out.sort_by(|a, b| a.label.cmp(&b.label));
        out
    }
}
