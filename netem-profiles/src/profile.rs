//! Profiles: the sites of a scenario and the directed link between every ordered pair of them.
//!
//! A profile is a TOML file (see `profiles/*.toml` for the shipped ones, and
//! `docs/PROFILES.md` for every key). [`Profile::parse`] reads and validates it, reporting
//! every problem with its file, line and key; after that every ordered site pair, the
//! same-site pair included, has exactly one [`LinkSpec`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ProfileError, ProfileErrors};
use crate::link::LinkModel;
use crate::orbit::GeometryTable;
use crate::schedule::OutageSchedule;

/// Index of a site in [`Profile::sites`] (file order).
pub type SiteId = usize;

/// A place where racks stand: a region on Earth, a lunar base, a satellite.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// Unique name, used by nodes (`--site moon`) and in reports.
    pub name: String,
    /// Free text for humans.
    pub description: String,
}

/// Statistical shape of the per-datagram jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JitterDist {
    /// Uniform in [0, 2·amount] minus amount, i.e. ±amount.
    Uniform,
    /// Normal with standard deviation `amount`.
    Normal,
    /// Pareto tail (shape 3) scaled so its mean is `amount`; always adds delay.
    Pareto,
}

/// Per-datagram variation of the propagation delay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    /// The distribution drawn from.
    pub dist: JitterDist,
    /// Its scale (see [`JitterDist`]).
    pub amount: Duration,
    /// May a datagram overtake the one sent before it? `false` keeps FIFO order, as on a
    /// single physical path; `true` lets jitter reorder, as netem does.
    pub reorder: bool,
}

/// How datagrams are lost at random (outages and queue overflow are separate causes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossModel {
    /// No random loss.
    None,
    /// Each datagram lost independently with probability `p`.
    Bernoulli { p: f64 },
    /// Two-state Gilbert-Elliott bursts, as in netem: `p` good→bad, `r` bad→good per datagram;
    /// a datagram is lost with probability `1 - k` in the good state and `1 - h` in the bad one.
    GilbertElliott { p: f64, r: f64, h: f64, k: f64 },
}

/// One direction of one link: everything a datagram from site A to site B goes through.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSpec {
    /// One-way propagation delay (light time plus fixed processing). For a geometry-derived
    /// link (`geometry` set) this is the largest delay over the precomputed horizon — a safe
    /// bound for sizing buffers; [`LinkSpec::delay_at`] gives the delay at an instant.
    pub delay: Duration,
    /// Per-datagram jitter on top of `delay`, if any.
    pub jitter: Option<Jitter>,
    /// Random loss.
    pub loss: LossModel,
    /// Probability that a delivered datagram is delivered twice.
    pub duplicate: f64,
    /// Serialisation rate in bit/s; `None` means unlimited (no queueing).
    pub rate_bps: Option<u64>,
    /// Bytes that may wait for serialisation before tail drop.
    pub queue_limit_bytes: u64,
    /// When the link is down (for a geometry-derived link, its visibility outages over the
    /// horizon are among the explicit windows).
    pub outages: OutageSchedule,
    /// Delay derived from orbital geometry, if any (see `docs/ORBITS.md`).
    pub geometry: Option<GeometryDelay>,
    /// What the link does with a datagram handed to it while it is down.
    pub outage_mode: OutageMode,
    /// For the summary of a routed site pair (`[[routes]]`): the hops' own specs, in path
    /// order. `delay_at` is then their sum; the other fields summarise the path (see
    /// [`crate::relay::path_summary`]). `None` for a link that is one physical hop.
    pub relay_hops: Option<Arc<[Self]>>,
}

/// What a link does with a datagram handed to it while it is down (key `outage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutageMode {
    /// Drop it (cause `outage`): a bent pipe. Datagrams already propagating still arrive.
    #[default]
    Drop,
    /// Store it at the upstream end, up to `buffer_bytes` waiting, and send it when the link
    /// is up again, in order, serialised at the link's rate; past the buffer it is dropped
    /// (cause `store_full`). A datagram propagating when the link goes down is lost (cause
    /// `in_flight`). See [`crate::link`] for the exact rules.
    Store {
        /// Bytes the upstream end may hold for the link (key `store_bytes`).
        buffer_bytes: u64,
        /// The upstream end follows the link's contact plan (key `store_contact_plan`,
        /// default false): it launches a datagram only if it arrives before the link's next
        /// outage starts, and stores it otherwise, as a DTN relay that knows its predicted
        /// occultations does. Nothing is then lost in flight; without it the end launches
        /// whatever finishes serialising before the outage (TIPTOP's forwarder).
        contact_plan: bool,
    },
}

impl OutageMode {
    /// Short text for reports: `drop`, `store 64 MiB`, `store 64 MiB, contact plan`.
    pub fn describe(self) -> String {
        match self {
            Self::Drop => "drop".to_string(),
            Self::Store {
                buffer_bytes,
                contact_plan,
            } => {
                let size = if buffer_bytes % (1 << 20) == 0 {
                    format!("{} MiB", buffer_bytes >> 20)
                } else {
                    format!("{buffer_bytes} B")
                };
                let plan = if contact_plan { ", contact plan" } else { "" };
                format!("store {size}{plan}")
            }
        }
    }
}

/// A link delay that follows orbital geometry: a precomputed light-time table plus a fixed
/// part (processing, e.g. a profile's `delay_ms` next to `geometry`).
#[derive(Debug, Clone, PartialEq)]
pub struct GeometryDelay {
    /// Light time (and outages) along the link's geometry path; shared by both directions.
    pub table: Arc<GeometryTable>,
    /// Added to the light time.
    pub extra: Duration,
}

impl LinkSpec {
    /// A link with only a fixed delay: no loss, no rate limit, always up.
    pub fn ideal(delay: Duration) -> Self {
        Self {
            delay,
            jitter: None,
            loss: LossModel::None,
            duplicate: 0.0,
            rate_bps: None,
            queue_limit_bytes: u64::MAX,
            outages: OutageSchedule::always_up(),
            geometry: None,
            outage_mode: OutageMode::Drop,
            relay_hops: None,
        }
    }

    /// One-way propagation delay at `t` since the scenario epoch: `delay`, or for a
    /// geometry-derived link the fixed part plus the light time interpolated from its table.
    /// For a routed pair's summary, the sum of the hops' delays at `t` (each hop's delay
    /// taken at the same instant: a bound for cost models, not a datagram's exact path time).
    #[inline]
    pub fn delay_at(&self, t: Duration) -> Duration {
        if let Some(hops) = &self.relay_hops {
            return hops.iter().map(|h| h.delay_at(t)).sum();
        }
        match &self.geometry {
            None => self.delay,
            Some(g) => g.extra + g.table.delay_at(t),
        }
    }

    /// Bandwidth-delay product in bytes for a round trip of `rtt`, at this link's rate
    /// (`None` when the rate is unlimited).
    pub fn bdp_bytes(&self, rtt: Duration) -> Option<u64> {
        self.rate_bps
            .map(|bps| (bps as f64 / 8.0 * rtt.as_secs_f64()).ceil() as u64)
    }
}

/// How the node pairs of two sites use the link between them (both directions alike).
///
/// Physics first: a link between two different sites is one shared trunk per direction
/// unless the profile says otherwise. See `docs/PROFILES.md` ("Link sharing").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkSharing {
    /// Every ordered node pair has its own private copy of the link (a terminal per node, or
    /// a non-blocking switch inside a site): the default inside a site, `per_pair = true`
    /// between sites.
    PerPair,
    /// `terminals` parallel trunks per direction, each with the link's full rate, its own
    /// FIFO queue, loss process and the link's outages; every ordered node pair of the two
    /// sites is placed on one of them (see [`crate::trunk::TrunkPlan`]). The default between
    /// two sites is one terminal; inside a site `per_pair = false` asks for it.
    Shared {
        /// Parallel trunks per direction (≥ 1).
        terminals: u32,
    },
}

impl LinkSharing {
    /// One shared trunk per direction: the default between two sites.
    pub const ONE_TRUNK: Self = Self::Shared { terminals: 1 };

    /// Short text for reports: `shared`, `shared x3`, `per pair`.
    pub fn describe(self) -> String {
        match self {
            Self::PerPair => "per pair".to_string(),
            Self::Shared { terminals: 1 } => "shared".to_string(),
            Self::Shared { terminals } => format!("shared x{terminals}"),
        }
    }
}

/// A validated scenario: sites, links between every ordered pair, seed and time scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Short name (`earth-moon`).
    pub name: String,
    /// Free text for humans.
    pub description: String,
    /// Seed of every random draw of every link.
    pub seed: u64,
    /// Scenario seconds per emulated second for orbital motion and outage schedules
    /// (1 = real time; 60 = an hour of orbit per minute). Light delay is never scaled.
    pub time_scale: f64,
    /// Sites in file order; [`SiteId`] indexes this.
    pub sites: Vec<Site>,
    /// `links[from * sites.len() + to]`.
    pub(crate) links: Vec<LinkSpec>,
    /// `sharing[from * sites.len() + to]`; the same for both directions of a link.
    pub(crate) sharing: Vec<LinkSharing>,
    /// `routes[from * sites.len() + to]`: for a site pair routed over relays (`[[routes]]`),
    /// the sites its datagrams cross, `from` and `to` included; `None` for a direct link.
    pub(crate) routes: Vec<Option<Arc<[SiteId]>>>,
}

impl Profile {
    /// Parses and validates a profile from TOML text; `origin` (usually the file path) is
    /// used in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ProfileErrors> {
        crate::profile_toml::parse(text, origin)
    }

    /// Reads and validates a profile file.
    pub fn from_file(path: &Path) -> Result<Self, ProfileErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ProfileErrors(vec![ProfileError {
                origin: origin.clone(),
                line: 0,
                key: String::new(),
                message: format!("cannot read the file: {e}"),
            }])
        })?;
        Self::parse(&text, &origin)
    }

    /// The id of the site called `name`.
    pub fn site_id(&self, name: &str) -> Option<SiteId> {
        self.sites.iter().position(|s| s.name == name)
    }

    /// The link from site `from` to site `to` (the same id for the link inside a site).
    ///
    /// # Panics
    /// If either id is out of range: ids come from [`Profile::site_id`] or `0..sites.len()`.
    pub fn link(&self, from: SiteId, to: SiteId) -> &LinkSpec {
        &self.links[from * self.sites.len() + to]
    }

    /// The sites datagrams from `from` to `to` cross when the profile routes the pair over
    /// relays (`[[routes]]`): `[from, via.., to]`, each consecutive pair one hop with its own
    /// link ([`Profile::link`]). `None` for a direct link or an id out of range.
    pub fn route(&self, from: SiteId, to: SiteId) -> Option<&[SiteId]> {
        let n = self.sites.len();
        if from >= n || to >= n {
            return None;
        }
        self.routes.get(from * n + to)?.as_deref()
    }

    /// Every routed site pair `(from, to, path)`, in site order.
    pub fn routes(&self) -> impl Iterator<Item = (SiteId, SiteId, &[SiteId])> + '_ {
        let n = self.sites.len();
        self.routes
            .iter()
            .enumerate()
            .filter_map(move |(i, r)| r.as_deref().map(|r| (i / n, i % n, r)))
    }

    /// How node pairs of `from` and `to` share the link between the two sites.
    ///
    /// # Panics
    /// If either id is out of range (as [`Profile::link`]).
    pub fn sharing(&self, from: SiteId, to: SiteId) -> LinkSharing {
        self.sharing
            .get(from * self.sites.len() + to)
            .copied()
            .unwrap_or(if from == to {
                LinkSharing::PerPair
            } else {
                LinkSharing::ONE_TRUNK
            })
    }

    /// A fresh state machine for terminal `terminal` of the shared link `from → to`.
    /// Terminal 0 is seeded exactly as [`Profile::link_model`]; the others get independent
    /// streams, identical in every process.
    pub fn trunk_model(&self, from: SiteId, to: SiteId, terminal: u32) -> LinkModel {
        let mut seed =
            crate::rng::link_seed(self.seed, &self.sites[from].name, &self.sites[to].name);
        if terminal > 0 {
            seed = crate::rng::link_seed(seed, "terminal", &terminal.to_string());
        }
        LinkModel::new(self.link(from, to).clone(), seed)
    }

    /// A fresh state machine for the link `from → to`, seeded from (profile seed, from, to):
    /// every process that builds it gets the same verdict sequence.
    pub fn link_model(&self, from: SiteId, to: SiteId) -> LinkModel {
        let seed = crate::rng::link_seed(self.seed, &self.sites[from].name, &self.sites[to].name);
        LinkModel::new(self.link(from, to).clone(), seed)
    }

    /// Round-trip propagation delay between two sites at `t` (both directions' delays).
    pub fn rtt(&self, a: SiteId, b: SiteId, t: Duration) -> Duration {
        self.link(a, b).delay_at(t) + self.link(b, a).delay_at(t)
    }

    /// The longest single outage any link has, in emulated time (for idle timeouts).
    pub fn longest_outage(&self) -> Duration {
        self.links
            .iter()
            .map(|l| l.outages.longest_outage())
            .max()
            .unwrap_or_default()
    }
}
