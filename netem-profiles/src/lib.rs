//! netem-profiles: the link model of spacefabric.
//!
//! A [`Profile`] names sites (earth, moon, leo-3, ...) and one directed [`LinkSpec`] for every
//! ordered pair of sites, the link inside each site included, and how node pairs share it
//! ([`LinkSharing`]: one trunk between sites by default; [`TrunkPlan`] places node pairs). A [`LinkModel`] is the per-link
//! state machine the emulated socket asks, for every datagram, whether to drop it (and why) or
//! when to deliver it.
//!
//! This crate is pure: no sockets, no wall clock, no global randomness. Time is always a
//! parameter — a [`Duration`](std::time::Duration) since the scenario epoch — and every random
//! draw comes from a per-link RNG seeded from (profile seed, link), so the same seed gives the
//! same verdicts. That is what lets the emulator, the cost model and the tests agree.
//!
//! Start with [`Profile::parse`] and [`LinkModel::on_packet`].

pub mod error;
pub mod link;
pub mod orbit;
pub mod profile;
mod profile_toml;
pub mod rng;
pub mod schedule;
pub mod trunk;

pub use error::{ProfileError, ProfileErrors};
pub use link::{DropCause, JITTER_CAP, LinkModel, Verdict};
pub use profile::{
    GeometryDelay, Jitter, JitterDist, LinkSharing, LinkSpec, LossModel, Profile, Site, SiteId,
};
pub use schedule::{OutageSchedule, PeriodicOutage, Window};
pub use trunk::{TrunkId, TrunkPlan};

/// Speed of light in vacuum, km/s: turns a distance into a one-way light time.
pub const SPEED_OF_LIGHT_KM_S: f64 = 299_792.458;

/// Bytes of IPv4 + UDP header counted on the wire for each datagram when serialising at a
/// link's rate (QUIC payload length + 28).
pub const UDP_IP_OVERHEAD_BYTES: usize = 28;

/// The directory of the profiles shipped with this crate (`netem-profiles/profiles`), as an
/// absolute path fixed at build time: for tests and tools run from a source checkout.
pub fn shipped_profiles_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles")
}
