//! The things a geometry-derived link connects, and the geometry between two of them at an
//! instant: range (hence light time) and whether the line of sight is clear.
//!
//! Visibility rules:
//! - a ground station or lunar site needs the other end at or above its elevation mask (its
//!   own body is then out of the way);
//! - otherwise the Earth blocks a line passing below `earth_grazing_km`, and the Moon blocks
//!   a line passing through it (tested when an end is a lunar orbiter, an escaping satellite
//!   or the Earth's centre);
//! - a station network serves through the member that sees the other end best (highest above
//!   its mask); the range is to that member, so a hand-over shows as a small delay step.

use std::cell::OnceCell;

use super::OrbitError;
use super::earth::{GroundStation, StationNetwork};
use super::escape::EscapeTrajectory;
use super::leo::{LeoSatellite, blocked_by_earth};
use super::lunar::{LunarOrbiter, LunarSite, MoonFrame, blocked_by_moon};
use super::schedule::GeometrySample;
use super::time::JulianDay;
use super::vector::Vec3;

/// One end of a geometry-derived link.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// The Earth as a whole (its centre; sees whatever the Moon does not hide).
    EarthCentre,
    /// One ground station.
    Station(GroundStation),
    /// Any of several ground stations.
    Network(StationNetwork),
    /// A site on the Moon.
    LunarSite(LunarSite),
    /// A Keplerian orbiter around the Moon.
    LunarOrbiter(LunarOrbiter),
    /// A LEO satellite (SGP4).
    Leo(Box<LeoSatellite>),
    /// A satellite escaping the Moon.
    Escape(EscapeTrajectory),
}

impl Endpoint {
    /// Name for reports.
    pub fn name(&self) -> &str {
        match self {
            Self::EarthCentre => "earth-centre",
            Self::Station(s) => &s.name,
            Self::Network(n) => &n.name,
            Self::LunarSite(s) => &s.name,
            Self::LunarOrbiter(o) => &o.name,
            Self::Leo(s) => &s.name,
            Self::Escape(s) => &s.name,
        }
    }
}

/// Options of the visibility rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeometryOptions {
    /// Height above the Earth's surface below which a line of sight between two points off
    /// the Earth counts as blocked (atmosphere), km. Default 80.
    pub earth_grazing_km: f64,
    /// Compare a ground station's mask with the apparent (refracted) elevation instead of the
    /// geometric one ([`super::refraction`]). Default false.
    pub refraction: bool,
}

impl Default for GeometryOptions {
    fn default() -> Self {
        Self {
            earth_grazing_km: 80.0,
            refraction: false,
        }
    }
}

/// The sky at one instant: the Moon's frame, computed only when an endpoint needs it.
#[derive(Debug)]
pub struct Sky {
    /// The instant.
    pub jd: JulianDay,
    moon: OnceCell<MoonFrame>,
}

impl Sky {
    /// The sky at `jd`.
    pub fn new(jd: JulianDay) -> Self {
        Self {
            jd,
            moon: OnceCell::new(),
        }
    }

    /// The sky at `jd` with the Moon's frame already known (e.g. from a cache).
    pub fn with_moon(jd: JulianDay, moon: MoonFrame) -> Self {
        Self {
            jd,
            moon: OnceCell::from(moon),
        }
    }

    /// The Moon's frame (computed on first use).
    pub fn moon(&self) -> &MoonFrame {
        self.moon.get_or_init(|| MoonFrame::at(self.jd))
    }

    /// The Moon's frame if something already needed it.
    pub fn moon_if_computed(&self) -> Option<&MoonFrame> {
        self.moon.get()
    }
}

/// A single place (a network is resolved into its members first).
#[derive(Debug, Clone, Copy)]
enum Place<'a> {
    EarthCentre,
    Station(&'a GroundStation),
    LunarSite(&'a LunarSite),
    Orbiter(&'a LunarOrbiter),
    Leo(&'a LeoSatellite),
    Escape(&'a EscapeTrajectory),
}

impl Place<'_> {
    fn position(self, sky: &Sky) -> Result<Vec3, OrbitError> {
        Ok(match self {
            Self::EarthCentre => Vec3::default(),
            Self::Station(s) => s.position(sky.jd),
            Self::LunarSite(s) => s.position(sky.moon()),
            Self::Orbiter(o) => o.position(sky.jd, sky.moon()),
            Self::Leo(s) => s.position(sky.jd)?,
            Self::Escape(s) => s.position(sky.jd, sky.moon()),
        })
    }

    fn on_earth(self) -> bool {
        matches!(self, Self::EarthCentre | Self::Station(_))
    }

    fn moon_occults(self) -> bool {
        matches!(self, Self::EarthCentre | Self::Orbiter(_) | Self::Escape(_))
    }
}

/// Margin of a surface end: how far above its mask it sees `other` (degrees; +∞ for ends
/// without a horizon).
fn horizon_margin(
    place: Place<'_>,
    me: Vec3,
    other: Vec3,
    sky: &Sky,
    opts: &GeometryOptions,
) -> f64 {
    match place {
        Place::Station(s) => {
            let h = super::earth::elevation_deg(me, s.up(sky.jd), other);
            let h = if opts.refraction {
                super::refraction::apparent_elevation_deg(h)
            } else {
                h
            };
            h - s.mask_deg
        }
        Place::LunarSite(s) => s.elevation_deg(sky.moon(), other) - s.mask_deg,
        _ => f64::INFINITY,
    }
}

/// Geometry between two single places: (sample, margin used to pick a network member).
fn between_places(
    (a, pa): (Place<'_>, Vec3),
    (b, pb): (Place<'_>, Vec3),
    sky: &Sky,
    opts: &GeometryOptions,
) -> (GeometrySample, f64) {
    let margin = horizon_margin(a, pa, pb, sky, opts).min(horizon_margin(b, pb, pa, sky, opts));
    let mut up = margin >= 0.0;
    let a_surface = matches!(a, Place::Station(_) | Place::LunarSite(_));
    let b_surface = matches!(b, Place::Station(_) | Place::LunarSite(_));
    if up && !a.on_earth() && !b.on_earth() {
        up = !blocked_by_earth(pa, pb, opts.earth_grazing_km);
    }
    let on_moon = matches!(a, Place::LunarSite(_)) || matches!(b, Place::LunarSite(_));
    if up && !on_moon && (a.moon_occults() || b.moon_occults()) && !(a_surface && b_surface) {
        up = !blocked_by_moon(pa, pb, sky.moon());
    }
    (
        GeometrySample {
            range_km: (pa - pb).norm(),
            up,
        },
        margin,
    )
}

/// Each place of `e` with its position at `sky` (computed once per sample).
fn located<'e>(e: &'e Endpoint, sky: &Sky) -> Result<Vec<(Place<'e>, Vec3)>, OrbitError> {
    places(e)
        .into_iter()
        .map(|p| Ok((p, p.position(sky)?)))
        .collect()
}

fn places(e: &Endpoint) -> Vec<Place<'_>> {
    match e {
        Endpoint::EarthCentre => vec![Place::EarthCentre],
        Endpoint::Station(s) => vec![Place::Station(s)],
        Endpoint::Network(n) => n.stations.iter().map(Place::Station).collect(),
        Endpoint::LunarSite(s) => vec![Place::LunarSite(s)],
        Endpoint::LunarOrbiter(o) => vec![Place::Orbiter(o)],
        Endpoint::Leo(s) => vec![Place::Leo(s)],
        Endpoint::Escape(s) => vec![Place::Escape(s)],
    }
}

/// A link between two endpoints, evaluated at any instant.
#[derive(Debug, Clone)]
pub struct LinkGeometry {
    /// One end.
    pub a: Endpoint,
    /// The other end.
    pub b: Endpoint,
    /// Visibility options.
    pub options: GeometryOptions,
}

impl LinkGeometry {
    /// A link between `a` and `b` with default options.
    pub fn new(a: Endpoint, b: Endpoint) -> Self {
        Self {
            a,
            b,
            options: GeometryOptions::default(),
        }
    }

    /// Range and visibility at `jd`. With networks, the pair of members that is up with the
    /// largest margin (or, when none is up, the largest margin) is used.
    pub fn sample(&self, jd: JulianDay) -> Result<GeometrySample, OrbitError> {
        self.sample_in(&Sky::new(jd))
    }

    /// [`Self::sample`] in a given sky (several links at one instant share the Moon).
    pub fn sample_in(&self, sky: &Sky) -> Result<GeometrySample, OrbitError> {
        let mut best: Option<(GeometrySample, f64)> = None;
        // Each place's position once (a network's members meet one satellite position).
        let (la, lb) = (located(&self.a, sky)?, located(&self.b, sky)?);
        for &pa in &la {
            for &pb in &lb {
                let (s, margin) = between_places(pa, pb, sky, &self.options);
                let better = match &best {
                    None => true,
                    Some((bs, bm)) => (s.up, margin) > (bs.up, *bm),
                };
                if better {
                    best = Some((s, margin));
                }
            }
        }
        Ok(best.map(|b| b.0).unwrap_or(GeometrySample {
            range_km: 0.0,
            up: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::earth::GroundStation;
    use super::super::moon::moon_position;
    use super::*;

    fn epoch() -> JulianDay {
        JulianDay::from_civil(2026, 12, 1, 0, 0, 0.0).unwrap()
    }

    /// The DSN ↔ near-side link is up exactly when some complex has the Moon above its mask,
    /// and its range is within an Earth radius of the centre-to-centre distance.
    #[test]
    fn dsn_to_near_side_follows_the_stations() {
        let dsn = StationNetwork::dsn(10.0).unwrap();
        let site = LunarSite::new("base", 0.0, 0.0, 0.0, 0.0).unwrap();
        let link = LinkGeometry::new(Endpoint::Network(dsn.clone()), Endpoint::LunarSite(site));
        for k in 0..200 {
            let jd = epoch().plus_seconds(k as f64 * 1800.0);
            let s = link.sample(jd).unwrap();
            let moon = moon_position(jd);
            assert_eq!(s.up, dsn.sees(jd, moon.equatorial_km), "k={k}");
            assert!((s.range_km - moon.distance_km).abs() < 6400.0 + 1737.4);
        }
    }

    /// Far-side sites (the antipode of the mean sub-Earth point, Von Kármán, and a site 100°
    /// from it) never see the Earth over a month of libration, with masks of 0° at both ends;
    /// a site 5° inside the mean limb (85°E) does see it part of the time (libration).
    #[test]
    fn far_side_site_never_links_to_earth() {
        let far_sites = [
            LunarSite::new("far", 0.0, 180.0, 0.0, 0.0).unwrap(),
            LunarSite::new("von-karman", -45.4, 177.6, 0.0, 0.0).unwrap(),
            LunarSite::new("beyond-limb", 10.0, 100.0, 0.0, 0.0).unwrap(),
        ];
        let limb = LunarSite::new("limb", 0.0, 85.0, 0.0, 0.0).unwrap();
        let dsn = StationNetwork::dsn(0.0).unwrap();
        let links: Vec<LinkGeometry> = far_sites
            .into_iter()
            .map(|s| LinkGeometry::new(Endpoint::EarthCentre, Endpoint::LunarSite(s)))
            .chain([LinkGeometry::new(
                Endpoint::Network(dsn),
                Endpoint::LunarSite(LunarSite::new("far", 0.0, 180.0, 0.0, 0.0).unwrap()),
            )])
            .collect();
        let limb_link = LinkGeometry::new(Endpoint::EarthCentre, Endpoint::LunarSite(limb));
        let (mut limb_up, mut limb_down) = (0, 0);
        for k in 0..(30 * 12) {
            let jd = epoch().plus_seconds(f64::from(k) * 7200.0);
            for link in &links {
                assert!(!link.sample(jd).unwrap().up, "{} at {k}", link.b.name());
            }
            if limb_link.sample(jd).unwrap().up {
                limb_up += 1;
            } else {
                limb_down += 1;
            }
        }
        assert!(
            limb_up > 0 && limb_down > 0,
            "{limb_up} up, {limb_down} down"
        );
    }

    /// With refraction on, a station's link rises earlier and sets later (the air lifts the
    /// Moon by ~5′ at a 10° mask: ~20–40 s at the Moon's rate).
    #[test]
    fn refraction_lengthens_station_passes() {
        let station = GroundStation::new("goldstone", 35.4267, -116.89, 1.0, 10.0).unwrap();
        let site = LunarSite::new("base", 0.0, 0.0, 0.0, 0.0).unwrap();
        let mut link = LinkGeometry::new(Endpoint::Station(station), Endpoint::LunarSite(site));
        let plain: Vec<bool> = (0..2880)
            .map(|k| {
                link.sample(epoch().plus_seconds(f64::from(k) * 30.0))
                    .unwrap()
                    .up
            })
            .collect();
        link.options.refraction = true;
        let refracted: Vec<bool> = (0..2880)
            .map(|k| {
                link.sample(epoch().plus_seconds(f64::from(k) * 30.0))
                    .unwrap()
                    .up
            })
            .collect();
        let (np, nr) = (
            plain.iter().filter(|u| **u).count(),
            refracted.iter().filter(|u| **u).count(),
        );
        assert!(plain.iter().zip(&refracted).all(|(p, r)| !p || *r));
        assert!(nr > np, "{nr} vs {np}");
        // Two rises and two sets in 24 h, each moved by one or two 30 s samples.
        assert!(nr - np <= 8, "{nr} vs {np}");
    }
}
