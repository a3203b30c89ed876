//! What the controller needs to know about a profile: the site names in profile order, the
//! one-way propagation delay between every ordered pair of sites, the seed, and the profile's
//! TOML text (handed to nodes at registration).
//!
//! The plan and the failure detector read a [`Topology`], not a full
//! [`netem_profiles::Profile`], so they stay small, pure and easy to build in tests.

use std::time::Duration;

use netem_profiles::Profile;

/// Sites and the light delays between them, as the controller sees a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Profile name (`earth-moon`).
    pub profile_name: String,
    /// The profile as TOML text, sent to every node at registration.
    pub profile_toml: String,
    /// Seed of every random draw in the scenario.
    pub seed: u64,
    /// Site names in profile order.
    pub sites: Vec<String>,
    /// `one_way[from * sites.len() + to]`: propagation delay of the link `from → to` at the
    /// scenario epoch.
    one_way: Vec<Duration>,
}

impl Topology {
    /// Builds a topology from site names and a one-way delay function (tests, tools).
    pub fn new(
        profile_name: impl Into<String>,
        profile_toml: impl Into<String>,
        seed: u64,
        sites: Vec<String>,
        delay: impl Fn(usize, usize) -> Duration,
    ) -> Self {
        let n = sites.len();
        let one_way = (0..n * n).map(|i| delay(i / n, i % n)).collect();
        Self {
            profile_name: profile_name.into(),
            profile_toml: profile_toml.into(),
            seed,
            sites,
            one_way,
        }
    }

    /// The controller's view of a validated profile (`toml` is the text it was parsed from).
    pub fn from_profile(profile: &Profile, toml: &str) -> Self {
        let sites = profile.sites.iter().map(|s| s.name.clone()).collect();
        Self::new(&profile.name, toml, profile.seed, sites, |a, b| {
            profile.link(a, b).delay_at(Duration::ZERO)
        })
    }

    /// Index of the site called `name`.
    pub fn site_index(&self, name: &str) -> Option<usize> {
        self.sites.iter().position(|s| s == name)
    }

    /// One-way delay from site `from` to site `to` (zero for an unknown site).
    pub fn one_way(&self, from: &str, to: &str) -> Duration {
        match (self.site_index(from), self.site_index(to)) {
            (Some(a), Some(b)) => self.one_way[a * self.sites.len() + b],
            _ => Duration::ZERO,
        }
    }
}
