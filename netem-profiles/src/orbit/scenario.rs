//! A geometry scenario: a UTC epoch, named endpoints, and the tables of the paths between
//! them — what a profile's `[geometry]` section describes.
//!
//! A path is a list of endpoints (`["dsn", "relay", "farside-base"]`): its light time is the
//! sum over its legs, and it is up when every leg is up at the same instant (a bent-pipe
//! relay: no store-and-forward inside the path).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use super::endpoint::{Endpoint, GeometryOptions, LinkGeometry, Sky};
use super::lunar::MoonFrame;
use super::schedule::{GeometrySample, GeometryTable};
use super::time::JulianDay;
use super::{OrbitError, check_range};

/// Default horizon of the precomputed tables, scenario hours.
pub const DEFAULT_HORIZON_HOURS: f64 = 48.0;
/// Default grid step, scenario seconds.
pub const DEFAULT_STEP_S: f64 = 10.0;

/// Endpoints and the instant scenario time 0 stands for.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// UTC instant of scenario time 0.
    pub epoch: JulianDay,
    /// Precomputed span, scenario seconds.
    pub horizon_s: f64,
    /// Grid step, scenario seconds.
    pub step_s: f64,
    /// Visibility options.
    pub options: GeometryOptions,
    /// Named endpoints.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// The Moon's frame at scenario seconds already evaluated (keyed by the bits of the
    /// f64): every table of a scenario samples the same grid, so the lunar series runs once
    /// per grid point, not once per link.
    moon_cache: RefCell<HashMap<u64, MoonFrame>>,
}

impl Scenario {
    /// An empty scenario starting at `epoch` with the default horizon and step.
    pub fn new(epoch: JulianDay) -> Self {
        Self {
            epoch,
            horizon_s: DEFAULT_HORIZON_HOURS * 3600.0,
            step_s: DEFAULT_STEP_S,
            options: GeometryOptions::default(),
            endpoints: BTreeMap::new(),
            moon_cache: RefCell::new(HashMap::new()),
        }
    }

    /// The legs of `path`, validated: at least two endpoints, all known, no leg from an
    /// endpoint to itself.
    pub fn legs(&self, path: &[&str]) -> Result<Vec<LinkGeometry>, OrbitError> {
        if path.len() < 2 {
            return Err(OrbitError::Invalid {
                what: "geometry path length".to_string(),
                value: path.len() as f64,
                why: "a path needs at least two endpoints",
            });
        }
        let get = |name: &str| self.endpoints.get(name).ok_or(());
        let mut legs = Vec::with_capacity(path.len() - 1);
        for pair in path.windows(2) {
            let (Ok(a), Ok(b)) = (get(pair[0]), get(pair[1])) else {
                let unknown = if get(pair[0]).is_err() {
                    pair[0]
                } else {
                    pair[1]
                };
                return Err(OrbitError::UnknownEndpoint(unknown.to_string()));
            };
            if pair[0] == pair[1] {
                return Err(OrbitError::UnknownEndpoint(format!(
                    "{} (a leg from an endpoint to itself)",
                    pair[0]
                )));
            }
            legs.push(LinkGeometry {
                a: a.clone(),
                b: b.clone(),
                options: self.options,
            });
        }
        Ok(legs)
    }

    /// Geometry of `legs` at scenario second `s`.
    pub fn sample_path(&self, legs: &[LinkGeometry], s: f64) -> Result<GeometrySample, OrbitError> {
        let jd = self.epoch.plus_seconds(s);
        let cached = self.moon_cache.borrow().get(&s.to_bits()).copied();
        let sky = match cached {
            Some(frame) => Sky::with_moon(jd, frame),
            None => Sky::new(jd),
        };
        let mut total = GeometrySample {
            range_km: 0.0,
            up: true,
        };
        for leg in legs {
            let g = leg.sample_in(&sky)?;
            total.range_km += g.range_km;
            total.up &= g.up;
        }
        if cached.is_none()
            && let Some(frame) = sky.moon_if_computed()
        {
            self.moon_cache.borrow_mut().insert(s.to_bits(), *frame);
        }
        Ok(total)
    }

    /// The precomputed table of `path` at `time_scale`.
    pub fn path_table(&self, path: &[&str], time_scale: f64) -> Result<GeometryTable, OrbitError> {
        check_range(
            "geometry horizon (s)",
            self.horizon_s,
            1.0,
            366.0 * 86_400.0,
        )?;
        let legs = self.legs(path)?;
        GeometryTable::build(self.horizon_s, self.step_s, time_scale, |s| {
            self.sample_path(&legs, s)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::earth::StationNetwork;
    use super::super::lunar::{LunarOrbiter, LunarSite};
    use super::*;

    fn relay_scenario() -> Scenario {
        let epoch = JulianDay::from_civil(2026, 12, 1, 0, 0, 0.0).unwrap();
        let mut sc = Scenario::new(epoch);
        sc.horizon_s = 12.0 * 3600.0;
        sc.endpoints.insert(
            "dsn".into(),
            Endpoint::Network(StationNetwork::dsn(10.0).unwrap()),
        );
        sc.endpoints.insert(
            "relay".into(),
            Endpoint::LunarOrbiter(
                LunarOrbiter::circular("relay", 100.0, 0.0, 0.0, 0.0, epoch).unwrap(),
            ),
        );
        sc.endpoints.insert(
            "farside".into(),
            Endpoint::LunarSite(LunarSite::new("farside", 0.0, 110.0, 0.0, 0.0).unwrap()),
        );
        sc
    }

    /// Earth ↔ far side through the relay: up only when both legs are, never directly.
    #[test]
    fn relayed_path_needs_both_legs() {
        let sc = relay_scenario();
        let direct = sc.path_table(&["dsn", "farside"], 1.0).unwrap();
        assert_eq!(direct.outages().len(), 1);
        assert_eq!(direct.outages()[0].start, std::time::Duration::ZERO);
        assert_eq!(direct.outages()[0].end, std::time::Duration::MAX);
        let via = sc.path_table(&["dsn", "relay", "farside"], 1.0).unwrap();
        let up_leg = sc.path_table(&["dsn", "relay"], 1.0).unwrap();
        let down_leg = sc.path_table(&["relay", "farside"], 1.0).unwrap();
        let mut up_count = 0;
        for k in 0..4320 {
            let t = std::time::Duration::from_secs(k * 10);
            assert_eq!(
                via.is_up(t),
                up_leg.is_up(t) && down_leg.is_up(t),
                "t={t:?}"
            );
            up_count += usize::from(via.is_up(t));
            let sum = up_leg.delay_secs_at(t) + down_leg.delay_secs_at(t);
            assert!((via.delay_secs_at(t) - sum).abs() < 1e-9);
        }
        // A low equatorial relay over a base 20° beyond the limb: it sees the base while still
        // in view of the Earth only for a few minutes per orbit.
        assert!(up_count > 0 && up_count < 4320 / 2, "{up_count}");
    }

    #[test]
    fn bad_paths_are_refused() {
        let sc = relay_scenario();
        let e = sc.path_table(&["dsn"], 1.0).unwrap_err().to_string();
        assert!(e.contains("at least two"), "{e}");
        let e = sc
            .path_table(&["dsn", "mars"], 1.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`mars`"), "{e}");
        assert!(sc.path_table(&["dsn", "dsn"], 1.0).is_err());
    }
}
