//! The `[geometry]` section of a profile and the `geometry = [...]` key of a link: delays and
//! outages derived from orbital geometry (see `docs/ORBITS.md` and `docs/PROFILES.md`).
//!
//! ```toml
//! [geometry]
//! epoch = "2026-12-01T00:00:00Z"   # UTC instant of scenario time 0 (required)
//! horizon_hours = 48               # scenario hours precomputed (default 48)
//! step_s = 10                      # table step, scenario seconds (default 10)
//! refraction = false               # stations' masks vs refracted elevation (default false)
//!
//! [geometry.endpoints.dsn]
//! kind = "dsn"                     # Goldstone, Madrid, Canberra
//! mask_deg = 10
//!
//! [geometry.endpoints.base]
//! kind = "lunar-site"
//! lat_deg = 0.7
//! lon_deg = 23.5
//!
//! [[links]]
//! from = "earth"
//! to = "moon"
//! geometry = ["dsn", "base"]       # light time along the path; down when a leg is blocked
//! ```
//!
//! Tables are built once per distinct path (both directions share one) and kept behind an
//! `Arc`; the link model only reads them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::{Context, Value, join};
use crate::orbit::earth::{GroundStation, StationNetwork};
use crate::orbit::escape::EscapeTrajectory;
use crate::orbit::leo::LeoSatellite;
use crate::orbit::lunar::{LunarOrbiter, LunarSite, OrbiterFrame};
use crate::orbit::scenario::{DEFAULT_HORIZON_HOURS, DEFAULT_STEP_S, Scenario};
use crate::orbit::{Endpoint, GeometryTable, JulianDay, MOON_RADIUS_KM, OrbitError};
use crate::profile::GeometryDelay;
use crate::schedule::OutageSchedule;

const GEOMETRY_KEYS: &[&str] = &[
    "epoch",
    "horizon_hours",
    "step_s",
    "earth_grazing_km",
    "refraction",
    "endpoints",
];
const KINDS: &[&str] = &[
    "earth-centre",
    "dsn",
    "station",
    "network",
    "lunar-site",
    "lunar-orbiter",
    "tle",
    "escape",
];
const STATION_KEYS: &[&str] = &["kind", "lat_deg", "lon_deg", "alt_km", "mask_deg"];
const NETWORK_KEYS: &[&str] = &["kind", "mask_deg", "stations"];
const NETWORK_STATION_KEYS: &[&str] = &["name", "lat_deg", "lon_deg", "alt_km"];
const ORBITER_KEYS: &[&str] = &[
    "kind",
    "semi_major_axis_km",
    "altitude_km",
    "eccentricity",
    "inclination_deg",
    "raan_deg",
    "arg_periapsis_deg",
    "mean_anomaly_deg",
    "frame",
];
const TLE_KEYS: &[&str] = &["kind", "line1", "line2"];
const ESCAPE_KEYS: &[&str] = &["kind", "base", "v_inf_km_s", "launch_hours"];

/// Default elevation mask of ground stations, degrees (DSN practice: 6–10°).
const DEFAULT_STATION_MASK_DEG: f64 = 10.0;
/// Default elevation mask of lunar sites, degrees.
const DEFAULT_LUNAR_MASK_DEG: f64 = 5.0;

/// The `[geometry]` section as far as the parser got.
#[derive(Debug, Default)]
pub(super) enum GeometryState {
    /// The profile has none.
    #[default]
    Absent,
    /// It has one, with errors already reported (links do not repeat them).
    Invalid,
    /// Read and valid.
    Ready(Box<GeometrySection>),
}

/// A parsed `[geometry]` section and the tables built from it so far.
#[derive(Debug)]
pub(super) struct GeometrySection {
    pub(super) scenario: Scenario,
    time_scale: f64,
    tables: RefCell<HashMap<Vec<String>, Arc<GeometryTable>>>,
}

/// A number from `t[key]` within `[min, max]`, or `default` when absent (`None` = required).
fn number(
    cx: &mut Context<'_>,
    t: &DeTable<'_>,
    key: &str,
    path: &str,
    at: Range<usize>,
    default: Option<f64>,
    (min, max): (f64, f64),
) -> Option<f64> {
    let kp = join(path, key);
    let Some(v) = t.get(key) else {
        if default.is_none() {
            cx.error(at, &kp, "missing required key");
        }
        return default;
    };
    let x = cx.as_number(v, &kp)?;
    if x < min || x > max {
        cx.error(
            v.span(),
            &kp,
            format!("must be between {min} and {max}, found {x}"),
        );
        return None;
    }
    Some(x)
}

fn string<'t>(
    cx: &mut Context<'_>,
    t: &'t DeTable<'_>,
    key: &str,
    path: &str,
    at: Range<usize>,
) -> Option<&'t str> {
    let v = cx.require(t, key, path, at)?;
    cx.as_str(v, &join(path, key))
}

/// Reads `[geometry]`; `time_scale` is the profile's.
pub(super) fn read_section(cx: &mut Context<'_>, v: &Value<'_>, time_scale: f64) -> GeometryState {
    match read_section_inner(cx, v, time_scale) {
        Some(section) => GeometryState::Ready(Box::new(section)),
        None => GeometryState::Invalid,
    }
}

fn read_section_inner(
    cx: &mut Context<'_>,
    v: &Value<'_>,
    time_scale: f64,
) -> Option<GeometrySection> {
    let t = cx.as_table(v, "geometry")?;
    cx.deny_unknown(t, "geometry", GEOMETRY_KEYS);
    let at = v.span();
    let epoch = string(cx, t, "epoch", "geometry", at.clone()).and_then(|s| {
        match JulianDay::parse_utc(s) {
            Ok(jd) => Some(jd),
            Err(e) => {
                let span = t.get("epoch").map_or(at.clone(), |v| v.span());
                cx.error(span, "geometry.epoch", e.to_string());
                None
            }
        }
    });
    let horizon_h = number(
        cx,
        t,
        "horizon_hours",
        "geometry",
        at.clone(),
        Some(DEFAULT_HORIZON_HOURS),
        (0.01, 366.0 * 24.0),
    );
    let step_s = number(
        cx,
        t,
        "step_s",
        "geometry",
        at.clone(),
        Some(DEFAULT_STEP_S),
        (0.01, 600.0),
    );
    let grazing = number(
        cx,
        t,
        "earth_grazing_km",
        "geometry",
        at.clone(),
        Some(80.0),
        (0.0, 1000.0),
    );
    let refraction = match t.get("refraction") {
        None => Some(false),
        Some(v) => cx.as_bool(v, "geometry.refraction"),
    };
    let epoch = epoch?;
    let mut scenario = Scenario::new(epoch);
    scenario.options.refraction = refraction?;
    scenario.horizon_s = horizon_h? * 3600.0;
    scenario.step_s = step_s?;
    scenario.options.earth_grazing_km = grazing?;
    if scenario.horizon_s < scenario.step_s {
        cx.error(
            at,
            "geometry.horizon_hours",
            "the horizon must be at least one step",
        );
        return None;
    }
    let samples = scenario.horizon_s / scenario.step_s;
    if samples > crate::orbit::schedule::MAX_SAMPLES as f64 - 1.0 {
        let span = t.get("horizon_hours").map_or(at.clone(), |v| v.span());
        cx.error(
            span,
            "geometry.horizon_hours",
            format!(
                "horizon_hours / step_s gives {samples:.0} samples per link; at most {}: shorten the horizon or lengthen step_s",
                crate::orbit::schedule::MAX_SAMPLES - 1
            ),
        );
        return None;
    }

    let ev = cx.require(t, "endpoints", "geometry", at)?;
    let et = cx.as_table(ev, "geometry.endpoints")?;
    if et.is_empty() {
        cx.error(ev.span(), "geometry.endpoints", "no endpoints defined");
        return None;
    }
    let mut ok = true;
    // Escapes name a lunar site: read everything else first.
    for pass in 0..2 {
        for (k, item) in et.iter() {
            let name = k.get_ref().as_ref();
            let path = format!("geometry.endpoints.{name}");
            let Some(it) = cx.as_table(item, &path) else {
                ok &= pass == 1;
                continue;
            };
            let kind = it.get("kind").and_then(|kv| match kv.get_ref() {
                DeValue::String(s) => Some(s.as_ref()),
                _ => None,
            });
            if (kind == Some("escape")) != (pass == 1) {
                continue;
            }
            match read_endpoint(cx, &scenario, name, &path, item.span(), it) {
                Some(e) => {
                    scenario.endpoints.insert(name.to_string(), e);
                }
                None => ok = false,
            }
        }
    }
    ok.then_some(GeometrySection {
        scenario,
        time_scale,
        tables: RefCell::new(HashMap::new()),
    })
}

fn orbit_error(cx: &mut Context<'_>, at: Range<usize>, path: &str, e: &OrbitError) {
    cx.error(at, path, e.to_string());
}

fn read_endpoint(
    cx: &mut Context<'_>,
    scenario: &Scenario,
    name: &str,
    path: &str,
    at: Range<usize>,
    t: &DeTable<'_>,
) -> Option<Endpoint> {
    let kind = string(cx, t, "kind", path, at.clone())?;
    let lat = (-90.0, 90.0);
    let lon = (-180.0, 180.0);
    let mask = (0.0, 90.0);
    let result = match kind {
        "earth-centre" => {
            cx.deny_unknown(t, path, &["kind"]);
            Ok(Endpoint::EarthCentre)
        }
        "dsn" => {
            cx.deny_unknown(t, path, &["kind", "mask_deg"]);
            let m = number(
                cx,
                t,
                "mask_deg",
                path,
                at.clone(),
                Some(DEFAULT_STATION_MASK_DEG),
                mask,
            )?;
            StationNetwork::dsn(m).map(|mut n| {
                n.name = name.to_string();
                Endpoint::Network(n)
            })
        }
        "station" => {
            cx.deny_unknown(t, path, STATION_KEYS);
            let la = number(cx, t, "lat_deg", path, at.clone(), None, lat);
            let lo = number(cx, t, "lon_deg", path, at.clone(), None, lon);
            let al = number(cx, t, "alt_km", path, at.clone(), Some(0.0), (-0.5, 10.0));
            let m = number(
                cx,
                t,
                "mask_deg",
                path,
                at.clone(),
                Some(DEFAULT_STATION_MASK_DEG),
                mask,
            );
            GroundStation::new(name, la?, lo?, al?, m?).map(Endpoint::Station)
        }
        "network" => {
            cx.deny_unknown(t, path, NETWORK_KEYS);
            let m = number(
                cx,
                t,
                "mask_deg",
                path,
                at.clone(),
                Some(DEFAULT_STATION_MASK_DEG),
                mask,
            )?;
            let sv = cx.require(t, "stations", path, at.clone())?;
            let sp = join(path, "stations");
            let items = super::table_array(cx, sv, &sp)?;
            if items.is_empty() {
                cx.error(sv.span(), &sp, "a network needs at least one station");
                return None;
            }
            let mut stations = Vec::new();
            for (p, item, st) in items {
                cx.deny_unknown(st, &p, NETWORK_STATION_KEYS);
                let sname = string(cx, st, "name", &p, item.span());
                let la = number(cx, st, "lat_deg", &p, item.span(), None, lat);
                let lo = number(cx, st, "lon_deg", &p, item.span(), None, lon);
                let al = number(cx, st, "alt_km", &p, item.span(), Some(0.0), (-0.5, 10.0));
                let (Some(sname), Some(la), Some(lo), Some(al)) = (sname, la, lo, al) else {
                    return None;
                };
                match GroundStation::new(sname, la, lo, al, m) {
                    Ok(s) => stations.push(s),
                    Err(e) => {
                        orbit_error(cx, item.span(), &p, &e);
                        return None;
                    }
                }
            }
            StationNetwork::new(name, stations).map(Endpoint::Network)
        }
        "lunar-site" => {
            cx.deny_unknown(t, path, STATION_KEYS);
            let la = number(cx, t, "lat_deg", path, at.clone(), None, lat);
            let lo = number(cx, t, "lon_deg", path, at.clone(), None, lon);
            let al = number(cx, t, "alt_km", path, at.clone(), Some(0.0), (-10.0, 20.0));
            let m = number(
                cx,
                t,
                "mask_deg",
                path,
                at.clone(),
                Some(DEFAULT_LUNAR_MASK_DEG),
                mask,
            );
            LunarSite::new(name, la?, lo?, al?, m?).map(Endpoint::LunarSite)
        }
        "lunar-orbiter" => {
            cx.deny_unknown(t, path, ORBITER_KEYS);
            let a = match (t.get("semi_major_axis_km"), t.get("altitude_km")) {
                (Some(_), Some(v)) => {
                    cx.error(
                        v.span(),
                        &join(path, "altitude_km"),
                        "give either semi_major_axis_km or altitude_km (circular), not both",
                    );
                    None
                }
                (None, Some(_)) => number(
                    cx,
                    t,
                    "altitude_km",
                    path,
                    at.clone(),
                    None,
                    (0.0, 40_000.0),
                )
                .map(|h| MOON_RADIUS_KM + h),
                _ => number(
                    cx,
                    t,
                    "semi_major_axis_km",
                    path,
                    at.clone(),
                    None,
                    (0.0, 1e6),
                ),
            };
            let any = (-360.0, 360.0);
            let e = number(
                cx,
                t,
                "eccentricity",
                path,
                at.clone(),
                Some(0.0),
                (0.0, 1.0),
            );
            let i = number(
                cx,
                t,
                "inclination_deg",
                path,
                at.clone(),
                None,
                (0.0, 180.0),
            );
            let raan = number(cx, t, "raan_deg", path, at.clone(), Some(0.0), any);
            let argp = number(cx, t, "arg_periapsis_deg", path, at.clone(), Some(0.0), any);
            let m0 = number(cx, t, "mean_anomaly_deg", path, at.clone(), Some(0.0), any);
            let frame = match t.get("frame") {
                None => Some(OrbiterFrame::MoonEquator),
                Some(v) => {
                    let fp = join(path, "frame");
                    let key = cx.as_str(v, &fp)?;
                    let frame = OrbiterFrame::from_key(key);
                    if frame.is_none() {
                        cx.error(
                            v.span(),
                            &fp,
                            format!(
                                "unknown frame `{key}`; expected one of: {}",
                                OrbiterFrame::KEYS.join(", ")
                            ),
                        );
                    }
                    frame
                }
            };
            let frame = frame?;
            LunarOrbiter::new(name, a?, e?, i?, raan?, argp?, m0?, scenario.epoch)
                .map(|o| Endpoint::LunarOrbiter(o.in_frame(frame)))
        }
        "tle" => {
            cx.deny_unknown(t, path, TLE_KEYS);
            let l1 = string(cx, t, "line1", path, at.clone());
            let l2 = string(cx, t, "line2", path, at.clone());
            let (l1, l2) = (l1?, l2?);
            LeoSatellite::from_tle(name, l1, l2).and_then(|s| {
                let age_days = scenario.epoch.seconds_since(s.epoch) / 86_400.0;
                if age_days.abs() > 30.0 {
                    return Err(OrbitError::Tle {
                        name: name.to_string(),
                        why: format!(
                            "its epoch {} is {age_days:.0} days from the scenario epoch; SGP4 is only meaningful within days to weeks of a TLE's epoch",
                            s.epoch.to_iso()
                        ),
                    });
                }
                Ok(Endpoint::Leo(Box::new(s)))
            })
        }
        "escape" => {
            cx.deny_unknown(t, path, ESCAPE_KEYS);
            let base = string(cx, t, "base", path, at.clone());
            let v = number(cx, t, "v_inf_km_s", path, at.clone(), None, (0.05, 20.0));
            let launch_h = number(
                cx,
                t,
                "launch_hours",
                path,
                at.clone(),
                Some(0.0),
                (0.0, 366.0 * 24.0),
            );
            let base = base?;
            let site = match scenario.endpoints.get(base) {
                Some(Endpoint::LunarSite(s)) => s.clone(),
                _ => {
                    let span = t.get("base").map_or(at.clone(), |v| v.span());
                    cx.error(
                        span,
                        &join(path, "base"),
                        format!("`{base}` is not a lunar-site endpoint of [geometry.endpoints]"),
                    );
                    return None;
                }
            };
            EscapeTrajectory::new(
                name,
                site,
                v?,
                scenario.epoch.plus_seconds(launch_h? * 3600.0),
            )
            .map(Endpoint::Escape)
        }
        other => {
            let span = t.get("kind").map_or(at.clone(), |v| v.span());
            cx.error(
                span,
                &join(path, "kind"),
                format!(
                    "unknown kind `{other}`; expected one of: {}",
                    KINDS.join(", ")
                ),
            );
            return None;
        }
    };
    match result {
        Ok(e) => Some(e),
        Err(e) => {
            orbit_error(cx, at, path, &e);
            None
        }
    }
}

/// Reads the `geometry` key of a link direction `t` (at `path`) and returns the path's table.
pub(super) fn read_link_key(
    cx: &mut Context<'_>,
    t: &DeTable<'_>,
    path: &str,
) -> Option<Arc<GeometryTable>> {
    let v = t.get("geometry")?;
    let kp = join(path, "geometry");
    if t.contains_key("distance_km") {
        cx.error(
            v.span(),
            &kp,
            "give either geometry or distance_km, not both (delay_ms next to geometry adds a fixed delay)",
        );
        return None;
    }
    let state = std::mem::take(&mut cx.geometry);
    let table = match &state {
        GeometryState::Ready(section) => read_link_path(cx, v, &kp, Some(section)),
        GeometryState::Absent => read_link_path(cx, v, &kp, None),
        GeometryState::Invalid => None,
    };
    cx.geometry = state;
    table
}

/// The largest one-way delay of a direction: its fixed part plus its table's maximum.
pub(super) fn max_delay(table: Option<&Arc<GeometryTable>>, fixed: Duration) -> Duration {
    match table {
        Some(t) => fixed + Duration::from_secs_f64(t.delay_range_s().1),
        None => fixed,
    }
}

/// What a direction's spec holds once resolved: the delay bound, the geometry delay and the
/// outages with the table's visibility windows added.
pub(super) fn apply(
    table: Option<&Arc<GeometryTable>>,
    fixed: Duration,
    mut outages: OutageSchedule,
) -> (Duration, Option<GeometryDelay>, OutageSchedule) {
    let Some(table) = table else {
        return (fixed, None, outages);
    };
    outages.windows.extend_from_slice(table.outages());
    outages.windows.sort();
    (
        max_delay(Some(table), fixed),
        Some(GeometryDelay {
            table: Arc::clone(table),
            extra: fixed,
        }),
        outages,
    )
}

/// Reads a link's `geometry = ["a", "b", ...]` and returns the path's table (built once per
/// path; a path and its reverse share it).
fn read_link_path(
    cx: &mut Context<'_>,
    v: &Value<'_>,
    path: &str,
    section: Option<&GeometrySection>,
) -> Option<Arc<GeometryTable>> {
    let DeValue::Array(items) = v.get_ref() else {
        let msg = format!(
            "expected an array of endpoint names, e.g. [\"dsn\", \"base\"], found {}",
            v.get_ref().type_str()
        );
        cx.error(v.span(), path, msg);
        return None;
    };
    let mut names = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        names.push(cx.as_str(item, &format!("{path}[{i}]"))?.to_string());
    }
    let Some(section) = section else {
        cx.error(
            v.span(),
            path,
            "a geometry path needs a [geometry] section with an epoch and endpoints",
        );
        return None;
    };
    let mut key = names.clone();
    if key.last() < key.first() {
        key.reverse();
    }
    if let Some(t) = section.tables.borrow().get(&key) {
        return Some(Arc::clone(t));
    }
    let refs: Vec<&str> = key.iter().map(String::as_str).collect();
    match section.scenario.path_table(&refs, section.time_scale) {
        Ok(table) => {
            if table
                .outages()
                .first()
                .is_some_and(|w| w.len() >= table.horizon())
            {
                cx.error(
                    v.span(),
                    path,
                    format!(
                        "the path {} is never in view over the {} h horizon (a far-side site needs a relay)",
                        names.join(" → "),
                        section.scenario.horizon_s / 3600.0
                    ),
                );
                return None;
            }
            let table = Arc::new(table);
            section.tables.borrow_mut().insert(key, Arc::clone(&table));
            Some(table)
        }
        Err(e) => {
            let known: Vec<&str> = section
                .scenario
                .endpoints
                .keys()
                .map(String::as_str)
                .collect();
            let msg = match e {
                OrbitError::UnknownEndpoint(_) => {
                    format!("{e}; the endpoints are: {}", known.join(", "))
                }
                other => other.to_string(),
            };
            cx.error(v.span(), path, msg);
            None
        }
    }
}
