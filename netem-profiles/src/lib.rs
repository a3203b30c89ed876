//! netem-profiles: the link model of spacefabric.
//!
//! A [`Profile`] names sites (earth, moon, leo-3, ...) and one directed [`LinkSpec`] for every
//! ordered pair of sites, the link inside each site included, and how node pairs share it
//! ([`LinkSharing`]: one trunk between sites by default; [`TrunkPlan`] places node pairs;
//! [`TrunkCarriers`] gives each shared trunk the one forwarder process that carries it). A [`LinkModel`] is the per-link
//! state machine the emulated socket asks, for every datagram, whether to drop it (and why) or
//! when to deliver it.
//!
//! This crate is pure: no sockets, no wall clock, no global randomness. Time is always a
//! parameter — a [`Duration`](std::time::Duration) since the scenario epoch — and every random
//! draw comes from a per-link RNG seeded from (profile seed, link), so the same seed gives the
//! same verdicts. That is what lets the emulator, the cost model and the tests agree.
//!
//! Start with [`Profile::parse`] and [`LinkModel::on_packet`].

pub mod carriers;
pub mod error;
pub mod link;
pub mod orbit;
pub mod profile;
mod profile_toml;
pub mod relay;
pub mod rng;
pub mod schedule;
pub mod trunk;

pub use carriers::{CarriersError, Shard, ShardError, TrunkCarriers};
pub use error::{ProfileError, ProfileErrors};
pub use link::{DropCause, JITTER_CAP, LinkModel, Verdict};
pub use profile::{
    GeometryDelay, Jitter, JitterDist, LinkSharing, LinkSpec, LossModel, OutageMode, Profile, Site,
    SiteId,
};
pub use relay::{PathVerdict, RelayPath, path_summary};
pub use schedule::{OutageSchedule, PeriodicOutage, Window};
pub use trunk::{TrunkId, TrunkPlan};

/// Speed of light in vacuum, km/s: turns a distance into a one-way light time.
pub const SPEED_OF_LIGHT_KM_S: f64 = 299_792.458;

/// Bytes of IPv4 + UDP header counted on the wire for each datagram when serialising at a
/// link's rate (QUIC payload length + 28).
pub const UDP_IP_OVERHEAD_BYTES: usize = 28;

include!(concat!(env!("OUT_DIR"), "/shipped_profiles.rs"));

/// The text of the shipped profile `name` (embedded at build time), if there is one.
pub fn shipped_profile_text(name: &str) -> Option<&'static str> {
    SHIPPED_PROFILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// The names of the shipped profiles, sorted.
pub fn shipped_profile_names() -> Vec<&'static str> {
    SHIPPED_PROFILES.iter().map(|(n, _)| *n).collect()
}

/// The text of a profile named on a command line, and where it came from: `spec` is a
/// TOML file if one exists at that path, else the name of a shipped profile (embedded in
/// the binary, so no source tree is needed).
pub fn profile_text(spec: &str) -> Result<(String, String), ProfileErrors> {
    let path = std::path::Path::new(spec);
    if path.exists() {
        let origin = path.display().to_string();
        return std::fs::read_to_string(path)
            .map(|text| (text, origin.clone()))
            .map_err(|e| {
                ProfileErrors(vec![ProfileError {
                    origin,
                    line: 0,
                    key: String::new(),
                    message: format!("cannot read the file: {e}"),
                }])
            });
    }
    match shipped_profile_text(spec) {
        Some(text) => Ok((text.to_string(), format!("shipped profile {spec}"))),
        None => Err(ProfileErrors(vec![ProfileError {
            origin: spec.to_string(),
            line: 0,
            key: String::new(),
            message: format!(
                "no such file, and no shipped profile of that name (shipped: {})",
                shipped_profile_names().join(", ")
            ),
        }])),
    }
}

/// Loads and validates a profile named on a command line (see [`profile_text`]).
pub fn load_profile(spec: &str) -> Result<Profile, ProfileErrors> {
    let (text, origin) = profile_text(spec)?;
    Profile::parse(&text, &origin)
}

/// The directory of the profiles shipped with this crate (`netem-profiles/profiles`), as an
/// absolute path fixed at build time: for tests and tools run from a source checkout.
pub fn shipped_profiles_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles")
}
