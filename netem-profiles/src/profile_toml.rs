//! TOML front end of [`Profile`](crate::Profile): parsing and validation with line-precise
//! errors.
//!
//! The document is parsed with `toml`'s span-keeping tree ([`DeTable`]) and walked by hand
//! rather than through `serde` derive, so that validation never stops at the first problem:
//! every unknown key, bad value and missing link is reported, each with the origin, the 1-based
//! line and the dotted key (`links[1].loss.p`, array indices 0-based). The format itself is
//! documented key by key in `docs/PROFILES.md`.
//!
//! Scenario-time values (outage periods, phases, windows) are divided by the profile's
//! `time_scale` into emulated time here; light delay is never scaled.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::SPEED_OF_LIGHT_KM_S;
use crate::error::{ProfileError, ProfileErrors};
use crate::profile::{
    Jitter, JitterDist, LinkSharing, LinkSpec, LossModel, OutageMode, Profile, Site, SiteId,
};
use crate::schedule::{OutageSchedule, PeriodicOutage, Window};

type Value<'i> = Spanned<DeValue<'i>>;

mod geometry;

/// Keys of the document root.
const ROOT_KEYS: &[&str] = &[
    "name",
    "description",
    "seed",
    "time_scale",
    "geometry",
    "sites",
    "links",
    "routes",
];
/// Keys of a `[[routes]]` entry.
const ROUTE_KEYS: &[&str] = &["from", "to", "via", "description"];
/// Keys of a `[sites.<name>]` table.
const SITE_KEYS: &[&str] = &["description"];
/// Keys that describe one direction of a link (allowed in `[[links]]` and `[links.reverse]`).
const DIRECTION_KEYS: &[&str] = &[
    "delay_ms",
    "distance_km",
    "jitter",
    "loss",
    "duplicate",
    "rate_mbps",
    "rate_bps",
    "queue_bytes",
    "outages",
    "geometry",
    "outage",
    "store_bytes",
    "store_contact_plan",
];
/// Keys only a `[[links]]` entry has.
const LINK_ONLY_KEYS: &[&str] = &[
    "from",
    "to",
    "description",
    "reverse",
    "per_pair",
    "terminals",
];
/// Most parallel terminals a shared link may declare.
const MAX_TERMINALS: u64 = 4096;
const JITTER_KEYS: &[&str] = &["dist", "ms", "reorder"];
const BERNOULLI_KEYS: &[&str] = &["model", "p"];
const GILBERT_ELLIOTT_KEYS: &[&str] = &["model", "p", "r", "h", "k"];
const OUTAGES_KEYS: &[&str] = &["periodic", "windows"];
const PERIODIC_KEYS: &[&str] = &["period_s", "duration_s", "phase_s"];
const WINDOW_KEYS: &[&str] = &["start_s", "end_s"];

/// Largest jitter scale accepted, in ms (one hour): keeps every arrival time far from
/// `Duration` overflow.
const MAX_JITTER_MS: f64 = 3_600_000.0;
/// Largest delay or scenario time accepted, in seconds (about 31.7 years).
const MAX_SECONDS: f64 = 1.0e9;
/// Smallest default queue, in bytes: a few full-size datagrams always fit.
pub(crate) const MIN_DEFAULT_QUEUE_BYTES: u64 = 64 * 1024;
/// The default queue holds this much time at the link's rate (capped by one round trip).
pub(crate) const DEFAULT_QUEUE_TIME: Duration = Duration::from_millis(100);

/// Parses and validates a profile; `origin` names the source in error messages.
pub(crate) fn parse(text: &str, origin: &str) -> Result<Profile, ProfileErrors> {
    let mut cx = Context::new(text, origin);
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        for e in syntax_errors {
            let span = e.span().unwrap_or(0..0);
            cx.error(span, "", format!("TOML syntax: {}", e.message().trim_end()));
        }
        return Err(ProfileErrors(cx.errors));
    }
    let profile = read_profile(&mut cx, root.get_ref(), root.span());
    cx.errors.sort_by_key(|e| e.line);
    match profile {
        Some(p) if cx.errors.is_empty() => Ok(p),
        _ => {
            if cx.errors.is_empty() {
                cx.error(0..0, "", "invalid profile");
            }
            Err(ProfileErrors(cx.errors))
        }
    }
}

/// Where errors go, and how byte offsets become lines.
struct Context<'a> {
    origin: &'a str,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
    errors: Vec<ProfileError>,
    /// The `[geometry]` section, once read (links' `geometry` paths use it).
    geometry: geometry::GeometryState,
}

impl<'a> Context<'a> {
    fn new(text: &str, origin: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            origin,
            line_starts,
            errors: Vec::new(),
            geometry: geometry::GeometryState::default(),
        }
    }

    /// 1-based line of byte offset `at`.
    fn line(&self, at: usize) -> usize {
        self.line_starts
            .partition_point(|&start| start <= at)
            .max(1)
    }

    fn error(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        self.errors.push(ProfileError {
            origin: self.origin.to_string(),
            line: self.line(span.start),
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// Reports every key of `table` not in `allowed`.
    fn deny_unknown(&mut self, table: &DeTable<'_>, path: &str, allowed: &[&str]) {
        for (k, _) in table.iter() {
            if !allowed.contains(&k.get_ref().as_ref()) {
                let msg = match closest(k.get_ref(), allowed) {
                    Some(near) => format!("unknown key; did you mean `{near}`?"),
                    None => format!("unknown key; expected one of: {}", allowed.join(", ")),
                };
                self.error(k.span(), &join(path, k.get_ref()), msg);
            }
        }
    }

    fn as_table<'t, 'i>(&mut self, v: &'t Value<'i>, path: &str) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                let msg = format!("expected a table, found {}", other.type_str());
                self.error(v.span(), path, msg);
                None
            }
        }
    }

    fn as_str<'t>(&mut self, v: &'t Value<'_>, path: &str) -> Option<&'t str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            other => {
                let msg = format!("expected a string, found {}", other.type_str());
                self.error(v.span(), path, msg);
                None
            }
        }
    }

    fn as_bool(&mut self, v: &Value<'_>, path: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                let msg = format!("expected true or false, found {}", other.type_str());
                self.error(v.span(), path, msg);
                None
            }
        }
    }

    /// A finite number (integer or float).
    fn as_number(&mut self, v: &Value<'_>, path: &str) -> Option<f64> {
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|x| x as f64),
            DeValue::Float(f) => parse_float(f.as_str()),
            other => {
                let msg = format!("expected a number, found {}", other.type_str());
                self.error(v.span(), path, msg);
                return None;
            }
        };
        match parsed {
            Some(x) if x.is_finite() => Some(x),
            Some(x) => {
                self.error(
                    v.span(),
                    path,
                    format!("must be a finite number, found {x}"),
                );
                None
            }
            None => {
                self.error(v.span(), path, "not a valid number");
                None
            }
        }
    }

    /// A non-negative integer.
    fn as_u64(&mut self, v: &Value<'_>, path: &str) -> Option<u64> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(x) if x >= 0 => Some(x as u64),
                Ok(x) => {
                    self.error(v.span(), path, format!("must not be negative, found {x}"));
                    None
                }
                Err(_) => {
                    self.error(v.span(), path, "not a valid integer");
                    None
                }
            },
            other => {
                let msg = format!("expected a whole number, found {}", other.type_str());
                self.error(v.span(), path, msg);
                None
            }
        }
    }

    fn non_negative(&mut self, v: &Value<'_>, path: &str, max: f64) -> Option<f64> {
        self.at_most(v, path, max, |x| {
            (x < 0.0).then(|| format!("must not be negative, found {x}"))
        })
    }

    /// A number ≤ `max` that `too_low` does not refuse (it says why when it does): the
    /// lower bound is checked first, so a value can be reported once.
    fn at_most(
        &mut self,
        v: &Value<'_>,
        path: &str,
        max: f64,
        too_low: impl FnOnce(f64) -> Option<String>,
    ) -> Option<f64> {
        let x = self.as_number(v, path)?;
        if let Some(msg) = too_low(x) {
            self.error(v.span(), path, msg);
            return None;
        }
        if x > max {
            self.error(
                v.span(),
                path,
                format!("must be at most {max:e}, found {x}"),
            );
            return None;
        }
        Some(x)
    }

    fn probability(&mut self, v: &Value<'_>, path: &str) -> Option<f64> {
        let x = self.as_number(v, path)?;
        if !(0.0..=1.0).contains(&x) {
            let msg = format!("must be a probability between 0 and 1, found {x}");
            self.error(v.span(), path, msg);
            return None;
        }
        Some(x)
    }

    /// A number > 0 (and ≤ `max`).
    fn positive(&mut self, v: &Value<'_>, path: &str, max: f64) -> Option<f64> {
        self.at_most(v, path, max, |x| {
            (x <= 0.0).then(|| format!("must be greater than 0, found {x}"))
        })
    }

    /// Required key: reports it missing at `at` when absent.
    fn require<'t, 'i>(
        &mut self,
        table: &'t DeTable<'i>,
        key: &str,
        path: &str,
        at: Range<usize>,
    ) -> Option<&'t Value<'i>> {
        let v = table.get(key);
        if v.is_none() {
            self.error(at, &join(path, key), "missing required key");
        }
        v
    }
}

/// Parses a TOML float literal (sign, digits, exponent, `inf`, `nan`).
fn parse_float(s: &str) -> Option<f64> {
    let unsigned = s.trim_start_matches(['+', '-']);
    match unsigned {
        "nan" => Some(f64::NAN),
        "inf" if s.starts_with('-') => Some(f64::NEG_INFINITY),
        "inf" => Some(f64::INFINITY),
        _ => s.parse().ok(),
    }
}

/// The allowed key within edit distance 2 of `key`, if there is one.
fn closest<'k>(key: &str, allowed: &[&'k str]) -> Option<&'k str> {
    allowed
        .iter()
        .map(|a| (edit_distance(key, a), *a))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// Levenshtein distance over chars (keys are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Seconds (already validated finite, ≥ 0 and ≤ [`MAX_SECONDS`] × scale) to a `Duration`,
/// rounded to the nearest nanosecond.
fn seconds(x: f64) -> Duration {
    let ns = (x * 1e9).round();
    Duration::from_nanos(if ns <= 0.0 { 0 } else { ns as u64 })
}

/// A site name usable on command lines and in `--site-by-ordinal earth=0-3` lists.
fn valid_site_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn read_profile(
    cx: &mut Context<'_>,
    root: &DeTable<'_>,
    root_span: Range<usize>,
) -> Option<Profile> {
    cx.deny_unknown(root, "", ROOT_KEYS);
    let at_start = root_span.start..root_span.start;

    let name = cx
        .require(root, "name", "", at_start.clone())
        .and_then(|v| {
            let s = cx.as_str(v, "name")?;
            if s.trim().is_empty() {
                cx.error(v.span(), "name", "must not be empty");
                return None;
            }
            Some(s.to_string())
        });
    let description = match root.get("description") {
        Some(v) => cx.as_str(v, "description").map(str::to_string),
        None => Some(String::new()),
    };
    let seed = match root.get("seed") {
        Some(v) => cx.as_u64(v, "seed"),
        None => Some(0),
    };
    let time_scale = match root.get("time_scale") {
        Some(v) => cx.positive(v, "time_scale", 1.0e9),
        None => Some(1.0),
    };

    let sites = read_sites(cx, root, at_start.clone());
    let scale = time_scale.unwrap_or(1.0);
    if let Some(v) = root.get("geometry") {
        cx.geometry = geometry::read_section(cx, v, scale);
    }
    let routes = match (&sites, root.get("routes")) {
        (Some(sites), Some(v)) => read_routes(cx, v, sites),
        _ => Some(Vec::new()),
    };
    let read = match (&sites, root.get("links"), &routes) {
        (Some(sites), Some(v), Some(routes)) => read_links(cx, v, sites, routes, scale),
        (_, _, None) => None,
        (Some(sites), None, _) if !sites.is_empty() => {
            cx.error(
                at_start,
                "links",
                "missing: every pair of sites (and each site with itself) needs a [[links]] entry",
            );
            None
        }
        _ => None,
    };
    let (links, sharing, route_matrix) = match read {
        Some((l, s, r)) => (Some(l), Some(s), Some(r)),
        None => (None, None, None),
    };

    Some(Profile {
        name: name?,
        description: description?,
        seed: seed?,
        time_scale: time_scale?,
        sites: sites?.into_iter().map(|(site, _)| site).collect(),
        links: links?,
        sharing: sharing?,
        routes: route_matrix?,
    })
}

/// Per ordered site pair (`from * n + to`): the link spec, how node pairs share it, and the
/// route over relays if the pair is routed.
type LinkMatrices = (Vec<LinkSpec>, Vec<LinkSharing>, Vec<Option<Arc<[SiteId]>>>);

/// One `[[routes]]` entry: the sites from `from` to `to` (both included), and where it is.
struct RouteEntry {
    path: Vec<SiteId>,
    /// `routes[i]`.
    key: String,
    span: Range<usize>,
    line: usize,
}

/// Reads `[[routes]]`: every site known, no site twice, at least one relay.
fn read_routes(
    cx: &mut Context<'_>,
    v: &Value<'_>,
    sites: &[(Site, Range<usize>)],
) -> Option<Vec<RouteEntry>> {
    let items = table_array(cx, v, "routes")?;
    let known = || {
        sites
            .iter()
            .map(|(s, _)| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let site_id = |name: &str| sites.iter().position(|(s, _)| s.name == name);
    let mut ok = true;
    let mut out = Vec::new();
    for (p, item, t) in items {
        cx.deny_unknown(t, &p, ROUTE_KEYS);
        if let Some(d) = t.get("description") {
            cx.as_str(d, &join(&p, "description"));
        }
        // (site, span, key) in path order
        let mut named: Vec<(Option<SiteId>, Range<usize>, String)> = Vec::new();
        let mut entry_ok = true;
        for key in ["from", "via", "to"] {
            let Some(ev) = cx.require(t, key, &p, item.span()) else {
                entry_ok = false;
                continue;
            };
            let kp = join(&p, key);
            let values: Vec<(&Value<'_>, String)> = if key == "via" {
                match ev.get_ref() {
                    DeValue::Array(a) if !a.is_empty() => a
                        .iter()
                        .enumerate()
                        .map(|(i, x)| (x, format!("{kp}[{i}]")))
                        .collect(),
                    DeValue::Array(_) => {
                        cx.error(
                            ev.span(),
                            &kp,
                            "names no relay site: a route crosses at least one (else use a [[links]] entry)",
                        );
                        entry_ok = false;
                        continue;
                    }
                    other => {
                        let msg = format!(
                            "expected an array of site names, found {}",
                            other.type_str()
                        );
                        cx.error(ev.span(), &kp, msg);
                        entry_ok = false;
                        continue;
                    }
                }
            } else {
                vec![(ev, kp)]
            };
            for (x, xp) in values {
                let Some(name) = cx.as_str(x, &xp) else {
                    entry_ok = false;
                    continue;
                };
                let id = site_id(name);
                if id.is_none() {
                    let msg = format!("unknown site `{name}`; the sites are: {}", known());
                    cx.error(x.span(), &xp, msg);
                    entry_ok = false;
                }
                named.push((id, x.span(), xp));
            }
        }
        if entry_ok {
            for (i, (id, span, key)) in named.iter().enumerate() {
                if let Some(j) = named[..i].iter().position(|(other, _, _)| other == id) {
                    let msg = format!(
                        "the route visits site `{}` twice (also as {}): a route has no loops",
                        id.map_or("?", |s| sites[s].0.name.as_str()),
                        named[j].2
                    );
                    cx.error(span.clone(), key, msg);
                    entry_ok = false;
                }
            }
        }
        if !entry_ok {
            ok = false;
            continue;
        }
        // from, via.., to: `named` holds from, then via.., then to.
        let path: Vec<SiteId> = named.iter().filter_map(|(id, _, _)| *id).collect();
        out.push(RouteEntry {
            path,
            line: cx.line(item.span().start),
            key: p,
            span: t.get("from").map_or(item.span(), Spanned::span),
        });
    }
    ok.then_some(out)
}

/// The sites in file order, each with the span of its name.
fn read_sites(
    cx: &mut Context<'_>,
    root: &DeTable<'_>,
    at: Range<usize>,
) -> Option<Vec<(Site, Range<usize>)>> {
    let v = cx.require(root, "sites", "", at)?;
    let table = cx.as_table(v, "sites")?;
    if table.is_empty() {
        cx.error(
            v.span(),
            "sites",
            "no sites: a profile needs at least one [sites.<name>]",
        );
        return None;
    }
    let mut entries: Vec<_> = table.iter().collect();
    // The map is sorted by name; file order is the order of the names' positions.
    entries.sort_by_key(|(k, _)| k.span().start);
    let mut ok = true;
    let mut sites = Vec::new();
    for (k, v) in entries {
        let name = k.get_ref().as_ref();
        let path = join("sites", name);
        if !valid_site_name(name) {
            cx.error(
                k.span(),
                &path,
                "site names are 1 to 64 characters from A-Z a-z 0-9 - _ .",
            );
            ok = false;
        }
        let Some(t) = cx.as_table(v, &path) else {
            ok = false;
            continue;
        };
        cx.deny_unknown(t, &path, SITE_KEYS);
        let description = match t.get("description") {
            Some(d) => cx
                .as_str(d, &join(&path, "description"))
                .map(str::to_string),
            None => Some(String::new()),
        };
        match description {
            Some(description) => sites.push((
                Site {
                    name: name.to_string(),
                    description,
                },
                k.span(),
            )),
            None => ok = false,
        }
    }
    ok.then_some(sites)
}

/// One direction's settings as written; `None` = not given here.
#[derive(Debug, Clone, Default)]
struct DirectionKeys {
    delay: Option<Duration>,
    jitter: Option<Jitter>,
    loss: Option<LossModel>,
    duplicate: Option<f64>,
    rate_bps: Option<u64>,
    queue_bytes: Option<u64>,
    outages: Option<OutageSchedule>,
    geometry: Option<Arc<crate::orbit::GeometryTable>>,
    outage_mode: Option<OutageMode>,
}

impl DirectionKeys {
    /// `self` with every key `over` sets replaced by `over`'s value.
    fn overlaid(&self, over: &Self) -> Self {
        Self {
            delay: over.delay.or(self.delay),
            jitter: over.jitter.or(self.jitter),
            loss: over.loss.or(self.loss),
            duplicate: over.duplicate.or(self.duplicate),
            rate_bps: over.rate_bps.or(self.rate_bps),
            queue_bytes: over.queue_bytes.or(self.queue_bytes),
            outages: over.outages.clone().or_else(|| self.outages.clone()),
            geometry: over.geometry.clone().or_else(|| self.geometry.clone()),
            outage_mode: over.outage_mode.or(self.outage_mode),
        }
    }

    /// The final spec, given the round trip used for the default queue.
    fn resolve(&self, delay: Duration, rtt: Duration) -> LinkSpec {
        let rate_bps = self.rate_bps.filter(|&r| r > 0);
        let queue_limit_bytes = match (self.queue_bytes, rate_bps) {
            (Some(q), _) => q,
            (None, Some(bps)) => default_queue_bytes(bps, rtt),
            (None, None) => u64::MAX,
        };
        let (delay, geometry, outages) = geometry::apply(
            self.geometry.as_ref(),
            delay,
            self.outages.clone().unwrap_or_default(),
        );
        LinkSpec {
            delay,
            jitter: self.jitter.filter(|j| !j.amount.is_zero()),
            loss: self.loss.unwrap_or(LossModel::None),
            duplicate: self.duplicate.unwrap_or(0.0),
            rate_bps,
            queue_limit_bytes,
            outages,
            geometry,
            outage_mode: self.outage_mode.unwrap_or_default(),
            relay_hops: None,
        }
    }
}

/// The default queue limit: the bytes the link serialises in `min(rtt, 100 ms)`, at least
/// 64 KiB.
pub(crate) fn default_queue_bytes(rate_bps: u64, rtt: Duration) -> u64 {
    let t = rtt.min(DEFAULT_QUEUE_TIME);
    let bytes = u128::from(rate_bps) * t.as_nanos() / 8 / 1_000_000_000;
    (bytes.min(u128::from(u64::MAX)) as u64).max(MIN_DEFAULT_QUEUE_BYTES)
}

/// Reads the keys of one direction; `delay_required` when the link has no other source of
/// delay (the forward direction).
fn read_direction(cx: &mut Context<'_>, t: &DeTable<'_>, path: &str, scale: f64) -> DirectionKeys {
    let mut keys = DirectionKeys::default();

    match (t.get("delay_ms"), t.get("distance_km")) {
        (Some(_), Some(d)) => cx.error(
            d.span(),
            &join(path, "distance_km"),
            "give either delay_ms or distance_km, not both",
        ),
        (Some(v), None) => {
            keys.delay = cx
                .non_negative(v, &join(path, "delay_ms"), MAX_SECONDS * 1e3)
                .map(|ms| seconds(ms / 1e3));
        }
        (None, Some(v)) => {
            keys.delay = cx
                .non_negative(
                    v,
                    &join(path, "distance_km"),
                    MAX_SECONDS * SPEED_OF_LIGHT_KM_S,
                )
                .map(|km| seconds(km / SPEED_OF_LIGHT_KM_S));
        }
        (None, None) => {}
    }

    if let Some(v) = t.get("jitter") {
        keys.jitter = read_jitter(cx, v, &join(path, "jitter"));
    }
    if let Some(v) = t.get("loss") {
        keys.loss = read_loss(cx, v, &join(path, "loss"));
    }
    if let Some(v) = t.get("duplicate") {
        keys.duplicate = cx.probability(v, &join(path, "duplicate"));
    }

    match (t.get("rate_mbps"), t.get("rate_bps")) {
        (Some(_), Some(b)) => cx.error(
            b.span(),
            &join(path, "rate_bps"),
            "give either rate_mbps or rate_bps, not both",
        ),
        (Some(v), None) => {
            keys.rate_bps = cx
                .positive(v, &join(path, "rate_mbps"), 1.0e9)
                .map(|m| (m * 1e6).round() as u64);
        }
        (None, Some(v)) => {
            let p = join(path, "rate_bps");
            keys.rate_bps = match cx.as_u64(v, &p) {
                Some(0) => {
                    cx.error(
                        v.span(),
                        &p,
                        "must be greater than 0 (omit it for no limit)",
                    );
                    None
                }
                other => other,
            };
        }
        (None, None) => {}
    }

    if let Some(v) = t.get("queue_bytes") {
        let p = join(path, "queue_bytes");
        keys.queue_bytes = match cx.as_u64(v, &p) {
            Some(0) => {
                cx.error(v.span(), &p, "must be greater than 0");
                None
            }
            other => other,
        };
    }

    if let Some(v) = t.get("outages") {
        keys.outages = read_outages(cx, v, &join(path, "outages"), scale);
    }
    if t.contains_key("geometry") {
        keys.geometry = geometry::read_link_key(cx, t, path);
    }
    keys.outage_mode = read_outage_mode(cx, t, path);
    keys
}

/// `outage = "drop" | "store"`, `store_bytes` and `store_contact_plan` of one direction
/// (`None`: not given).
fn read_outage_mode(cx: &mut Context<'_>, t: &DeTable<'_>, path: &str) -> Option<OutageMode> {
    let contact_plan = match t.get("store_contact_plan") {
        Some(v) => Some((cx.as_bool(v, &join(path, "store_contact_plan"))?, v.span())),
        None => None,
    };
    let store_bytes = match t.get("store_bytes") {
        Some(v) => {
            let p = join(path, "store_bytes");
            match cx.as_u64(v, &p)? {
                0 => {
                    cx.error(v.span(), &p, "must be greater than 0");
                    return None;
                }
                b => Some((b, v.span())),
            }
        }
        None => None,
    };
    let mode_v = t.get("outage");
    let mode = match mode_v {
        Some(v) => {
            let p = join(path, "outage");
            match cx.as_str(v, &p)? {
                "drop" => Some("drop"),
                "store" => Some("store"),
                other => {
                    let msg = format!("unknown outage mode `{other}`; expected drop or store");
                    cx.error(v.span(), &p, msg);
                    return None;
                }
            }
        }
        None => None,
    };
    if let Some((_, span)) = &contact_plan
        && mode != Some("store")
    {
        cx.error(
            span.clone(),
            &join(path, "store_contact_plan"),
            "store_contact_plan needs outage = \"store\" in the same table",
        );
        return None;
    }
    match (mode, store_bytes) {
        (Some("store"), Some((b, _))) => Some(OutageMode::Store {
            buffer_bytes: b,
            contact_plan: contact_plan.is_some_and(|(on, _)| on),
        }),
        (Some("store"), None) => {
            let at = mode_v.map_or(0..0, Spanned::span);
            cx.error(
                at,
                &join(path, "outage"),
                "outage = \"store\" needs store_bytes (the bytes the upstream end may hold)",
            );
            None
        }
        (_, Some((_, span))) => {
            cx.error(
                span,
                &join(path, "store_bytes"),
                "store_bytes needs outage = \"store\" in the same table",
            );
            None
        }
        (Some(_), None) => Some(OutageMode::Drop),
        (None, None) => None,
    }
}

fn read_jitter(cx: &mut Context<'_>, v: &Value<'_>, path: &str) -> Option<Jitter> {
    let t = cx.as_table(v, path)?;
    cx.deny_unknown(t, path, JITTER_KEYS);
    let dist = cx.require(t, "dist", path, v.span()).and_then(|d| {
        let p = join(path, "dist");
        match cx.as_str(d, &p)? {
            "uniform" => Some(JitterDist::Uniform),
            "normal" => Some(JitterDist::Normal),
            "pareto" => Some(JitterDist::Pareto),
            other => {
                let msg =
                    format!("unknown distribution `{other}`; expected uniform, normal or pareto");
                cx.error(d.span(), &p, msg);
                None
            }
        }
    });
    let amount = cx
        .require(t, "ms", path, v.span())
        .and_then(|m| cx.non_negative(m, &join(path, "ms"), MAX_JITTER_MS))
        .map(|ms| seconds(ms / 1e3));
    let reorder = match t.get("reorder") {
        Some(r) => cx.as_bool(r, &join(path, "reorder")),
        None => Some(false),
    };
    Some(Jitter {
        dist: dist?,
        amount: amount?,
        reorder: reorder?,
    })
}

fn read_loss(cx: &mut Context<'_>, v: &Value<'_>, path: &str) -> Option<LossModel> {
    let t = cx.as_table(v, path)?;
    let model_v = cx.require(t, "model", path, v.span())?;
    let model_path = join(path, "model");
    let model = cx.as_str(model_v, &model_path)?;
    let prob = |cx: &mut Context<'_>, key: &str, default: Option<f64>| -> Option<f64> {
        match t.get(key) {
            Some(x) => cx.probability(x, &join(path, key)),
            None if default.is_some() => default,
            None => {
                cx.error(v.span(), &join(path, key), "missing required key");
                None
            }
        }
    };
    match model {
        "bernoulli" => {
            cx.deny_unknown(t, path, BERNOULLI_KEYS);
            let p = prob(cx, "p", None)?;
            Some(LossModel::Bernoulli { p })
        }
        "gilbert-elliott" => {
            cx.deny_unknown(t, path, GILBERT_ELLIOTT_KEYS);
            let p = prob(cx, "p", None);
            let r = prob(cx, "r", None);
            let h = prob(cx, "h", Some(0.0));
            let k = prob(cx, "k", Some(1.0));
            Some(LossModel::GilbertElliott {
                p: p?,
                r: r?,
                h: h?,
                k: k?,
            })
        }
        other => {
            let msg =
                format!("unknown loss model `{other}`; expected bernoulli or gilbert-elliott");
            cx.error(model_v.span(), &model_path, msg);
            None
        }
    }
}

/// An array of tables at `path`, each element with its own dotted path.
fn table_array<'t, 'i>(
    cx: &mut Context<'_>,
    v: &'t Value<'i>,
    path: &str,
) -> Option<Vec<(String, &'t Value<'i>, &'t DeTable<'i>)>> {
    let DeValue::Array(items) = v.get_ref() else {
        let msg = format!(
            "expected an array of tables, found {}",
            v.get_ref().type_str()
        );
        cx.error(v.span(), path, msg);
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match cx.as_table(item, &p) {
            Some(t) => out.push((p, item, t)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_outages(
    cx: &mut Context<'_>,
    v: &Value<'_>,
    path: &str,
    scale: f64,
) -> Option<OutageSchedule> {
    let t = cx.as_table(v, path)?;
    cx.deny_unknown(t, path, OUTAGES_KEYS);
    let max_s = MAX_SECONDS * scale;
    let mut ok = true;
    let mut sched = OutageSchedule::default();

    if let Some(pv) = t.get("periodic") {
        match table_array(cx, pv, &join(path, "periodic")) {
            Some(items) => {
                for (p, item, pt) in items {
                    cx.deny_unknown(pt, &p, PERIODIC_KEYS);
                    let period = cx
                        .require(pt, "period_s", &p, item.span())
                        .and_then(|x| cx.positive(x, &join(&p, "period_s"), max_s));
                    let duration = cx
                        .require(pt, "duration_s", &p, item.span())
                        .and_then(|x| cx.non_negative(x, &join(&p, "duration_s"), max_s));
                    let phase = match pt.get("phase_s") {
                        Some(x) => cx.non_negative(x, &join(&p, "phase_s"), max_s),
                        None => Some(0.0),
                    };
                    let (Some(period), Some(duration), Some(phase)) = (period, duration, phase)
                    else {
                        ok = false;
                        continue;
                    };
                    if duration > period {
                        let at = pt.get("duration_s").map_or(item.span(), Spanned::span);
                        let msg = format!(
                            "outage of {duration} s is longer than its period of {period} s"
                        );
                        cx.error(at, &join(&p, "duration_s"), msg);
                        ok = false;
                        continue;
                    }
                    if phase >= period {
                        let at = pt.get("phase_s").map_or(item.span(), Spanned::span);
                        let msg = format!(
                            "phase of {phase} s must be less than the period of {period} s"
                        );
                        cx.error(at, &join(&p, "phase_s"), msg);
                        ok = false;
                        continue;
                    }
                    let period = seconds(period / scale);
                    if period.is_zero() {
                        let at = pt.get("period_s").map_or(item.span(), Spanned::span);
                        cx.error(
                            at,
                            &join(&p, "period_s"),
                            "period is shorter than 1 ns of emulated time after time_scale",
                        );
                        ok = false;
                        continue;
                    }
                    let duration = seconds(duration / scale).min(period);
                    let phase = seconds(phase / scale);
                    sched.periodic.push(PeriodicOutage {
                        period,
                        duration,
                        phase: if phase >= period {
                            Duration::ZERO
                        } else {
                            phase
                        },
                    });
                }
            }
            None => ok = false,
        }
    }

    if let Some(wv) = t.get("windows") {
        match table_array(cx, wv, &join(path, "windows")) {
            Some(items) => {
                for (p, item, wt) in items {
                    cx.deny_unknown(wt, &p, WINDOW_KEYS);
                    let start = cx
                        .require(wt, "start_s", &p, item.span())
                        .and_then(|x| cx.non_negative(x, &join(&p, "start_s"), max_s));
                    let end = cx
                        .require(wt, "end_s", &p, item.span())
                        .and_then(|x| cx.non_negative(x, &join(&p, "end_s"), max_s));
                    let (Some(start), Some(end)) = (start, end) else {
                        ok = false;
                        continue;
                    };
                    if end <= start {
                        let at = wt.get("end_s").map_or(item.span(), Spanned::span);
                        let msg = format!("end_s ({end}) must be after start_s ({start})");
                        cx.error(at, &join(&p, "end_s"), msg);
                        ok = false;
                        continue;
                    }
                    sched.windows.push(Window {
                        start: seconds(start / scale),
                        end: seconds(end / scale),
                    });
                }
            }
            None => ok = false,
        }
    }
    sched.windows.sort();
    ok.then_some(sched)
}

/// Reads `per_pair` and `terminals` of one `[[links]]` entry: how its node pairs share it.
fn read_sharing(
    cx: &mut Context<'_>,
    t: &DeTable<'_>,
    path: &str,
    inside_site: bool,
) -> Option<LinkSharing> {
    let per_pair = match t.get("per_pair") {
        Some(v) => Some(cx.as_bool(v, &join(path, "per_pair"))?),
        None => None,
    };
    let terminals = match t.get("terminals") {
        Some(v) => {
            let p = join(path, "terminals");
            match cx.as_u64(v, &p)? {
                k @ 1..=MAX_TERMINALS => Some((k as u32, v.span())),
                k => {
                    let msg = format!("must be between 1 and {MAX_TERMINALS}, found {k}");
                    cx.error(v.span(), &p, msg);
                    return None;
                }
            }
        }
        None => None,
    };
    match (per_pair, terminals) {
        (Some(true), Some((_, span))) => {
            cx.error(
                span,
                &join(path, "terminals"),
                "a per_pair link has no shared terminals: remove `terminals` or set per_pair = false",
            );
            None
        }
        (Some(true), None) => Some(LinkSharing::PerPair),
        (_, Some((k, _))) => Some(LinkSharing::Shared { terminals: k }),
        (Some(false), None) => Some(LinkSharing::ONE_TRUNK),
        (None, None) if inside_site => Some(LinkSharing::PerPair),
        (None, None) => Some(LinkSharing::ONE_TRUNK),
    }
}

/// Reads `[[links]]` into the `from * n + to` matrix (specs, and how each is shared),
/// reporting missing and duplicated pairs.
fn read_links(
    cx: &mut Context<'_>,
    v: &Value<'_>,
    sites: &[(Site, Range<usize>)],
    routes: &[RouteEntry],
    scale: f64,
) -> Option<LinkMatrices> {
    let n = sites.len();
    // routed[from * n + to]: index of the [[routes]] entry routing the pair (both ways).
    let mut routed: Vec<Option<usize>> = vec![None; n * n];
    let mut ok = true;
    for (i, r) in routes.iter().enumerate() {
        let (Some(&a), Some(&b)) = (r.path.first(), r.path.last()) else {
            continue;
        };
        if let Some(first) = routed[a * n + b] {
            let msg = format!(
                "duplicate route between `{}` and `{}`: already routed by {} at line {}",
                sites[a].0.name, sites[b].0.name, routes[first].key, routes[first].line
            );
            cx.error(r.span.clone(), &join(&r.key, "from"), msg);
            ok = false;
            continue;
        }
        routed[a * n + b] = Some(i);
        routed[b * n + a] = Some(i);
    }
    let items = table_array(cx, v, "links")?;
    let site_id = |name: &str| sites.iter().position(|(s, _)| s.name == name);
    let mut allowed: Vec<&str> = LINK_ONLY_KEYS.to_vec();
    allowed.extend_from_slice(DIRECTION_KEYS);

    // matrix[from * n + to]: the spec; covered[..]: index of the [[links]] entry naming it
    let mut matrix: Vec<Option<LinkSpec>> = vec![None; n * n];
    let mut covered: Vec<Option<usize>> = vec![None; n * n];
    let mut sharing: Vec<LinkSharing> = vec![LinkSharing::PerPair; n * n];
    // line of the entry defining each unordered pair, for duplicate messages
    let mut entry_lines: Vec<usize> = Vec::with_capacity(items.len());

    for (idx, (p, item, t)) in items.iter().enumerate() {
        entry_lines.push(cx.line(item.span().start));
        cx.deny_unknown(t, p, &allowed);
        let endpoint = |cx: &mut Context<'_>, key: &str| -> Option<usize> {
            let ev = cx.require(t, key, p, item.span())?;
            let kp = join(p, key);
            let name = cx.as_str(ev, &kp)?;
            let id = site_id(name);
            if id.is_none() {
                let known: Vec<&str> = sites.iter().map(|(s, _)| s.name.as_str()).collect();
                let msg = format!("unknown site `{name}`; the sites are: {}", known.join(", "));
                cx.error(ev.span(), &kp, msg);
            }
            id
        };
        let from = endpoint(cx, "from");
        let to = endpoint(cx, "to");
        if let Some(d) = t.get("description") {
            cx.as_str(d, &join(p, "description"));
        }

        let forward = read_direction(cx, t, p, scale);
        let reverse_keys = match t.get("reverse") {
            Some(rv) => {
                let rp = join(p, "reverse");
                match cx.as_table(rv, &rp) {
                    Some(rt) => {
                        cx.deny_unknown(rt, &rp, DIRECTION_KEYS);
                        if from.is_some() && from == to {
                            cx.error(
                                rv.span(),
                                &rp,
                                "a link inside a site has one direction: remove `reverse`",
                            );
                        }
                        Some(read_direction(cx, rt, &rp, scale))
                    }
                    None => None,
                }
            }
            None => None,
        };
        let backward = match &reverse_keys {
            Some(r) => forward.overlaid(r),
            None => forward.clone(),
        };
        let (Some(from), Some(to)) = (from, to) else {
            ok = false;
            continue;
        };
        // The pair counts as covered even if the entry has other errors, so one bad value
        // does not also produce a "no link" error.
        let (a, b) = (from * n + to, to * n + from);
        if let Some(first) = covered[a] {
            let at = t.get("from").map_or(item.span(), Spanned::span);
            let msg = format!(
                "duplicate link between `{}` and `{}`: already defined by links[{first}] at line {}",
                sites[from].0.name, sites[to].0.name, entry_lines[first]
            );
            cx.error(at, &join(p, "from"), msg);
            ok = false;
            continue;
        }
        if let Some(r) = routed[a] {
            let at = t.get("from").map_or(item.span(), Spanned::span);
            let msg = format!(
                "`{}` and `{}` are routed over relays by {} at line {}: remove this link or the route",
                sites[from].0.name, sites[to].0.name, routes[r].key, routes[r].line
            );
            cx.error(at, &join(p, "from"), msg);
            ok = false;
            continue;
        }
        covered[a] = Some(idx);
        covered[b] = Some(idx);
        match read_sharing(cx, t, p, from == to) {
            Some(s) => {
                sharing[a] = s;
                sharing[b] = s;
            }
            None => ok = false,
        }

        // With `geometry`, delay_ms (optional) is a fixed part added to the light time.
        let fixed = |k: &DirectionKeys| k.delay.or(k.geometry.as_ref().map(|_| Duration::ZERO));
        let Some(fwd_delay) = fixed(&forward) else {
            if !["delay_ms", "distance_km", "geometry"]
                .iter()
                .any(|k| t.contains_key(*k))
            {
                cx.error(
                    item.span(),
                    &join(p, "delay_ms"),
                    "missing: a link needs delay_ms, distance_km or geometry",
                );
            }
            ok = false;
            continue;
        };
        let Some(bwd_delay) = fixed(&backward) else {
            ok = false;
            continue;
        };
        let rtt = geometry::max_delay(forward.geometry.as_ref(), fwd_delay)
            + geometry::max_delay(backward.geometry.as_ref(), bwd_delay);
        matrix[a] = Some(forward.resolve(fwd_delay, rtt));
        if a != b {
            matrix[b] = Some(backward.resolve(bwd_delay, rtt));
        }
    }

    // Every hop of a route is a direct link, one shared trunk.
    for r in routes {
        for (hop, w) in r.path.windows(2).enumerate() {
            let (a, b) = (w[0], w[1]);
            let (na, nb) = (&sites[a].0.name, &sites[b].0.name);
            let problem = if routed[a * n + b].is_some() {
                Some(format!(
                    "hop {hop} (`{na}` -> `{nb}`) is itself a routed pair: a hop must be a [[links]] entry"
                ))
            } else if covered[a * n + b].is_none() {
                Some(format!(
                    "hop {hop} (`{na}` -> `{nb}`) has no link: add [[links]] with from = \"{na}\", to = \"{nb}\""
                ))
            } else if sharing[a * n + b] != LinkSharing::ONE_TRUNK {
                Some(format!(
                    "hop {hop} (`{na}` -> `{nb}`) is {}: a relay hop is one shared trunk (remove per_pair / terminals from its link)",
                    sharing[a * n + b].describe()
                ))
            } else {
                None
            };
            if let Some(msg) = problem {
                cx.error(r.span.clone(), &join(&r.key, "via"), msg);
                ok = false;
            }
        }
    }

    // Every site pair needs a link (or a route); one error per unordered pair.
    for i in 0..n {
        for j in i..n {
            if covered[i * n + j].is_none() && routed[i * n + j].is_none() {
                let (si, span) = &sites[i];
                let sj = &sites[j].0;
                let msg = if i == j {
                    format!(
                        "no link inside site `{}`: add [[links]] with from = \"{0}\", to = \"{0}\"",
                        si.name
                    )
                } else {
                    format!(
                        "no link between sites `{}` and `{}`: add [[links]] with from = \"{0}\", to = \"{1}\"",
                        si.name, sj.name
                    )
                };
                cx.error(span.clone(), "links", msg);
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    // A routed pair's spec summarises its hops; it is one shared trunk end to end.
    let mut route_matrix: Vec<Option<Arc<[SiteId]>>> = vec![None; n * n];
    for r in routes {
        let (Some(&a), Some(&b)) = (r.path.first(), r.path.last()) else {
            continue;
        };
        let back: Vec<SiteId> = r.path.iter().rev().copied().collect();
        for (from, to, path) in [(a, b, r.path.clone()), (b, a, back)] {
            let hops: Option<Vec<LinkSpec>> = path
                .windows(2)
                .map(|w| matrix[w[0] * n + w[1]].clone())
                .collect();
            matrix[from * n + to] = Some(crate::relay::path_summary(&hops?));
            sharing[from * n + to] = LinkSharing::ONE_TRUNK;
            route_matrix[from * n + to] = Some(Arc::from(path));
        }
    }
    let specs: Vec<LinkSpec> = matrix.into_iter().collect::<Option<_>>()?;
    Some((specs, sharing, route_matrix))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "two"
[sites.a]
[sites.b]
[[links]]
from = "a"
to = "a"
delay_ms = 0.1
[[links]]
from = "b"
to = "b"
delay_ms = 0.1
[[links]]
from = "a"
to = "b"
distance_km = 384400
rate_mbps = 100
[links.reverse]
rate_mbps = 20
"#;

    #[test]
    fn minimal_profile_parses_in_file_order() {
        let p = Profile::parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(p.sites[0].name, "a");
        assert_eq!(p.sites[1].name, "b");
        let ab = p.link(0, 1);
        assert_eq!(ab.rate_bps, Some(100_000_000));
        assert_eq!(p.link(1, 0).rate_bps, Some(20_000_000));
        assert_eq!(ab.delay.as_millis(), 1282);
        // 100 ms at 100 Mbit/s
        assert_eq!(ab.queue_limit_bytes, 1_250_000);
        assert_eq!(p.link(0, 0).rate_bps, None);
        // Between sites: one shared trunk; inside a site: per node pair.
        assert_eq!(p.sharing(0, 1), LinkSharing::ONE_TRUNK);
        assert_eq!(p.sharing(1, 0), LinkSharing::ONE_TRUNK);
        assert_eq!(p.sharing(0, 0), LinkSharing::PerPair);
    }

    /// MINIMAL with `inside` added to the a–a link and `between` to the a–b link; also
    /// returns the text, for line numbers.
    fn with_keys(inside: &str, between: &str) -> (String, Result<Profile, ProfileErrors>) {
        let text = MINIMAL
            .replace(
                "from = \"a\"\nto = \"a\"\n",
                &format!("from = \"a\"\nto = \"a\"\n{inside}\n"),
            )
            .replace(
                "rate_mbps = 100\n",
                &format!("rate_mbps = 100\n{between}\n"),
            );
        let parsed = Profile::parse(&text, "t.toml");
        (text, parsed)
    }

    /// 1-based line of the first line of `text` starting with `prefix`.
    fn line_of(text: &str, prefix: &str) -> usize {
        text.lines().position(|l| l.starts_with(prefix)).unwrap() + 1
    }

    #[test]
    fn sharing_keys_choose_terminals_or_private_links() {
        let p = with_keys("per_pair = false", "terminals = 4").1.unwrap();
        assert_eq!(p.sharing(0, 0), LinkSharing::ONE_TRUNK);
        assert_eq!(p.sharing(0, 1), LinkSharing::Shared { terminals: 4 });
        assert_eq!(p.sharing(1, 0), LinkSharing::Shared { terminals: 4 });
        let p = with_keys("", "per_pair = true").1.unwrap();
        assert_eq!(p.sharing(0, 1), LinkSharing::PerPair);
    }

    #[test]
    fn sharing_errors_name_line_and_key() {
        let (text, parsed) = with_keys("", "per_pair = true\nterminals = 2");
        let e = parsed.unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].key, "links[2].terminals");
        assert_eq!(e.0[0].line, line_of(&text, "terminals"));
        let (text, parsed) = with_keys("terminals = 0", "per_pair = \"yes\"");
        let e = parsed.unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(keys, ["links[0].terminals", "links[2].per_pair"], "{e}");
        assert_eq!(e.0[0].line, line_of(&text, "terminals"));
        assert_eq!(e.0[1].line, line_of(&text, "per_pair"));
    }

    #[test]
    fn lines_are_one_based() {
        let cx = Context::new("a\nb\nc", "x");
        assert_eq!(cx.line(0), 1);
        assert_eq!(cx.line(1), 1);
        assert_eq!(cx.line(2), 2);
        assert_eq!(cx.line(4), 3);
    }

    #[test]
    fn floats_parse_with_specials() {
        assert!(parse_float("nan").unwrap().is_nan());
        assert!(parse_float("-nan").unwrap().is_nan());
        assert_eq!(parse_float("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float("+1.5e3"), Some(1500.0));
    }
}
