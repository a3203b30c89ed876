//! Profile fixtures built in code: the one-site lan and the two-site profiles the tests used to
//! write out as TOML in each file. A [`ProfileSpec`] renders the TOML the binaries read
//! ([`ProfileSpec::toml`], [`ProfileSpec::write`]) and parses it for in-process tests
//! ([`ProfileSpec::profile`]), so a process test and an in-process test of the same scenario
//! cannot drift apart.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use netem_profiles::Profile;

/// A link's bandwidth, in the unit the profile spells it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// `rate_mbps = N`.
    Mbps(f64),
    /// `rate_bps = N`.
    Bps(u64),
}

/// One `[[links]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSpec {
    /// Source site.
    pub from: String,
    /// Destination site.
    pub to: String,
    /// One-way delay, ms.
    pub delay_ms: f64,
    /// Bandwidth; `None` = unlimited.
    pub rate: Option<Rate>,
    /// Further TOML lines of this link, verbatim (`loss = 0.01`, `[[links.outages.windows]]`...).
    pub extra: String,
}

/// A whole profile: header, sites in order, links.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileSpec {
    /// `name = ...`.
    pub name: String,
    /// `description = ...`, if any.
    pub description: Option<String>,
    /// `seed = ...`, if any.
    pub seed: Option<u64>,
    /// Site names, in order (site index = position).
    pub sites: Vec<String>,
    /// The links.
    pub links: Vec<LinkSpec>,
    /// `[[routes]]`: (from, to, the relay sites in order).
    pub routes: Vec<(String, String, Vec<String>)>,
}

/// Sites in order, each with its own link at 0.05 ms, unlimited; no link between sites yet
/// (add them with [`ProfileSpec::link`]).
pub fn sites(name: &str, sites: &[&str]) -> ProfileSpec {
    ProfileSpec {
        name: name.into(),
        description: None,
        seed: None,
        sites: sites.iter().map(|s| (*s).to_string()).collect(),
        links: sites
            .iter()
            .map(|s| LinkSpec::new(s, s, 0.05, None))
            .collect(),
        routes: Vec::new(),
    }
}

/// The lan every single-site test runs on: site `lan`, 0.05 ms, unlimited.
pub fn lan(name: &str) -> ProfileSpec {
    one_site(name, "lan", 0.05, None)
}

/// One site `site` whose internal link has `delay_ms` and `rate`.
pub fn one_site(name: &str, site: &str, delay_ms: f64, rate: Option<Rate>) -> ProfileSpec {
    sites(name, &[site]).inside(delay_ms, rate)
}

/// Two sites `a` and `b`, 0.05 ms inside each, `delay_ms` and `rate` between them (one link
/// entry, both directions).
pub fn two_sites(name: &str, a: &str, b: &str, delay_ms: f64, rate: Option<Rate>) -> ProfileSpec {
    sites(name, &[a, b]).link(LinkSpec::new(a, b, delay_ms, rate))
}

/// Earth and moon, 8 Mbit/s (one byte per µs) and 1.28 s apart: the paused-clock trunk and
/// forwarder tests' profile.
pub fn earth_moon_8mbit(name: &str) -> ProfileSpec {
    two_sites(name, "earth", "moon", 1280.0, Some(Rate::Bps(8_000_000)))
}

impl LinkSpec {
    /// A link with no extra lines.
    pub fn new(from: &str, to: &str, delay_ms: f64, rate: Option<Rate>) -> Self {
        Self {
            from: from.into(),
            to: to.into(),
            delay_ms,
            rate,
            extra: String::new(),
        }
    }

    /// With further TOML lines of this link, verbatim (`outage = "store"`...).
    pub fn with_extra(mut self, extra: &str) -> Self {
        self.extra.push_str(extra);
        if !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self
    }
}

impl ProfileSpec {
    /// With `description = ...`.
    pub fn described(mut self, description: &str) -> Self {
        self.description = Some(description.into());
        self
    }

    /// With `seed = ...`.
    pub fn seeded(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Every link inside a site gets `delay_ms` and `rate`.
    pub fn inside(mut self, delay_ms: f64, rate: Option<Rate>) -> Self {
        for link in self.links.iter_mut().filter(|l| l.from == l.to) {
            link.delay_ms = delay_ms;
            link.rate = rate;
        }
        self
    }

    /// Appends TOML lines to the last link (the cross-site one of [`two_sites`]).
    pub fn last_link_extra(mut self, extra: &str) -> Self {
        if let Some(link) = self.links.pop() {
            self.links.push(link.with_extra(extra));
        }
        self
    }

    /// With one more link, after the others.
    pub fn link(mut self, link: LinkSpec) -> Self {
        self.links.push(link);
        self
    }

    /// With a `[[routes]]` entry: `from` to `to` relayed by `via`, in order.
    pub fn route(mut self, from: &str, to: &str, via: &[&str]) -> Self {
        let via = via.iter().map(|s| (*s).to_string()).collect();
        self.routes.push((from.into(), to.into(), via));
        self
    }

    /// The profile as the TOML the binaries read.
    pub fn toml(&self) -> String {
        let mut out = String::new();
        writeln!(out, "name = {:?}", self.name).unwrap();
        if let Some(d) = &self.description {
            writeln!(out, "description = {d:?}").unwrap();
        }
        if let Some(seed) = self.seed {
            writeln!(out, "seed = {seed}").unwrap();
        }
        for site in &self.sites {
            writeln!(out, "[sites.{site}]").unwrap();
        }
        for link in &self.links {
            writeln!(out, "[[links]]").unwrap();
            writeln!(out, "from = {:?}", link.from).unwrap();
            writeln!(out, "to = {:?}", link.to).unwrap();
            writeln!(out, "delay_ms = {}", link.delay_ms).unwrap();
            match link.rate {
                Some(Rate::Mbps(m)) => writeln!(out, "rate_mbps = {m}").unwrap(),
                Some(Rate::Bps(b)) => writeln!(out, "rate_bps = {b}").unwrap(),
                None => {}
            }
            out.push_str(&link.extra);
        }
        for (from, to, via) in &self.routes {
            writeln!(
                out,
                "[[routes]]\nfrom = {from:?}\nto = {to:?}\nvia = {via:?}"
            )
            .unwrap();
        }
        out
    }

    /// The parsed profile (panics naming the fixture when the TOML is refused).
    pub fn profile(&self) -> Arc<Profile> {
        let origin = format!("{}.toml", self.name);
        Arc::new(
            Profile::parse(&self.toml(), &origin)
                .unwrap_or_else(|e| panic!("fixture {origin}: {e}\n{}", self.toml())),
        )
    }

    /// Writes the TOML to `dir/<name>.toml` and returns the path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.toml", self.name));
        std::fs::write(&path, self.toml())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_parses_with_its_sites_in_order() {
        for spec in [
            lan("lan-test"),
            two_sites("t", "a", "b", 3.0, Some(Rate::Mbps(500.0))).seeded(7),
            earth_moon_8mbit("two-sites").last_link_extra("queue_bytes = 3000"),
            one_site("slow", "hall", 20.0, Some(Rate::Mbps(100.0))).described("slow hall"),
        ] {
            let profile = spec.profile();
            let names: Vec<&str> = profile.sites.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(names, spec.sites, "{}", spec.toml());
        }
    }

    #[test]
    fn routes_render_after_the_links_and_parse() {
        let profile = sites("routed", &["earth", "relay", "base"])
            .link(LinkSpec::new("earth", "relay", 1200.0, None))
            .link(LinkSpec::new("relay", "base", 30.0, None).with_extra("outage = \"drop\""))
            .route("earth", "base", &["relay"])
            .profile();
        let id = |name| profile.site_id(name).unwrap();
        let (earth, relay, base) = (id("earth"), id("relay"), id("base"));
        assert_eq!(profile.route(earth, base), Some(&[earth, relay, base][..]));
    }
}
