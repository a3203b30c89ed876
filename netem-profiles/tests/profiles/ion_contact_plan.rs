//! The ION contact-plan export checked against ionadmin's grammar and rules (ION-DTN
//! `ici/utils/ionadmin.c` `executeAdd` and `ici/library/rfx.c` `rfx_insert_contact`):
//! `a contact <from> <until> <from node> <to node> <rate> [confidence]`,
//! `a range <from> <until> <from node> <to node> <owlt>`; times `+N` or
//! `yyyy/mm/dd-hh:mm:ss` (a time token starting with `0` means a hypothetical contact and
//! one starting with `-` a registration: we must write neither); `until > from`; node
//! numbers > 0; the rate and the OWLT are read into an `unsigned int`; contacts of one
//! node pair must not overlap (closed intervals: ION ignores an overlapping one), nor ranges.
//! On top of the grammar: every contact is covered, second for second, by the ranges of its
//! node pair (in either order).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use netem_profiles::Profile;
use netem_profiles::orbit::contact_plan::{ION_MAX_RATE_BYTES_S, contact_plan};

use crate::fixtures::sites_and_own_links;

/// Closed intervals `(from, until, rate or owlt)` per node pair.
type ByPair = HashMap<(u64, u64), Vec<(u64, u64, u64)>>;

#[derive(Debug, Default)]
struct Plan {
    /// (from, to) → contacts with their rate.
    contacts: ByPair,
    /// (a, b) → ranges with their OWLT.
    ranges: ByPair,
}

fn time(tok: &str, line: usize) -> Result<u64, String> {
    if tok.starts_with('0') || tok.starts_with('-') {
        return Err(format!(
            "line {line}: time `{tok}` would be read as hypothetical/registration"
        ));
    }
    let digits = tok
        .strip_prefix('+')
        .ok_or_else(|| format!("line {line}: time `{tok}` is not +N"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("line {line}: time `{tok}` is not +N"));
    }
    digits
        .parse()
        .map_err(|e| format!("line {line}: time `{tok}`: {e}"))
}

fn number(tok: &str, what: &str, line: usize) -> Result<u64, String> {
    if !tok.bytes().all(|b| b.is_ascii_digit()) || tok.is_empty() {
        return Err(format!(
            "line {line}: {what} `{tok}` is not an unsigned integer"
        ));
    }
    tok.parse()
        .map_err(|e| format!("line {line}: {what} `{tok}`: {e}"))
}

/// Parses `text` as ionadmin would and checks its rules; `nodes` is the number of sites.
fn check_ionrc(text: &str, nodes: u64) -> Result<Plan, String> {
    let mut plan = Plan::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let tok: Vec<&str> = l.split_whitespace().collect();
        let (kind, n_ok) = match tok.as_slice() {
            ["a", "contact", ..] => ("contact", tok.len() == 7 || tok.len() == 8),
            ["a", "range", ..] => ("range", tok.len() == 7),
            _ => {
                return Err(format!(
                    "line {line}: not an `a contact`/`a range` command: {l}"
                ));
            }
        };
        if !n_ok {
            return Err(format!("line {line}: wrong token count: {l}"));
        }
        let (t0, t1) = (time(tok[2], line)?, time(tok[3], line)?);
        if t1 <= t0 {
            return Err(format!("line {line}: until {t1} is not after from {t0}"));
        }
        let (n1, n2) = (
            number(tok[4], "from node", line)?,
            number(tok[5], "to node", line)?,
        );
        for n in [n1, n2] {
            if n == 0 || n > nodes {
                return Err(format!("line {line}: node {n} outside 1..={nodes}"));
            }
        }
        if n1 == n2 {
            return Err(format!(
                "line {line}: a contact or range from node {n1} to itself"
            ));
        }
        let v = number(tok[6], "rate/owlt", line)?;
        if v > u64::from(u32::MAX) {
            return Err(format!(
                "line {line}: {v} does not fit ionadmin's unsigned int"
            ));
        }
        let map = if kind == "contact" {
            if v == 0 {
                return Err(format!("line {line}: xmit rate 0"));
            }
            &mut plan.contacts
        } else {
            &mut plan.ranges
        };
        map.entry((n1, n2)).or_default().push((t0, t1, v));
    }
    for (what, map) in [("contact", &mut plan.contacts), ("range", &mut plan.ranges)] {
        for (pair, list) in map.iter_mut() {
            list.sort_unstable();
            for w in list.windows(2) {
                if w[1].0 <= w[0].1 {
                    return Err(format!(
                        "{what}s {pair:?} overlap: {:?} and {:?}",
                        w[0], w[1]
                    ));
                }
            }
        }
    }
    for (&(from, to), list) in &plan.contacts {
        let mut ranges: Vec<(u64, u64, u64)> = [(from, to), (to, from)]
            .iter()
            .filter_map(|k| plan.ranges.get(k))
            .flatten()
            .copied()
            .collect();
        ranges.sort_unstable();
        for &(t0, t1, _) in list {
            // Walk the sorted, disjoint ranges: each second of [t0, t1] must be in one.
            let mut next = t0;
            for &(r0, r1, _) in &ranges {
                if r0 <= next && r1 >= next {
                    next = r1 + 1;
                }
                if next > t1 {
                    break;
                }
            }
            if next <= t1 {
                return Err(format!(
                    "contact {from}->{to} [{t0}, {t1}] has no range at second {next}"
                ));
            }
        }
    }
    Ok(plan)
}

fn shipped(name: &str) -> Profile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("profiles")
        .join(name);
    Profile::from_file(&path).unwrap()
}

/// The shipped geometry profiles' plans over their 48 h horizon are valid ionrc, every
/// contact has its range, and the far-side relay has the occultation gaps.
#[test]
fn shipped_geometry_profiles_export_valid_ionrc() {
    for name in ["lunar-farside-relay.toml", "earth-moon-dsn.toml"] {
        let profile = shipped(name);
        let plan = contact_plan(&profile, Duration::from_secs(48 * 3600));
        assert!(plan.warnings.is_empty(), "{name}: {:?}", plan.warnings);
        let parsed = check_ionrc(&plan.text, profile.sites.len() as u64)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", plan.text));
        let earth = profile.site_id("earth").unwrap() as u64 + 1;
        let moon = 3 - earth;
        let em = &parsed.contacts[&(earth, moon)];
        assert!(em.len() >= 2, "{name}: {em:?}");
        // The Earth–Moon range is 1.2–1.4 light seconds: OWLT 1.
        for r in &parsed.ranges[&(earth.min(moon), earth.max(moon))] {
            assert_eq!(r.2, 1, "{name}: {r:?}");
        }
    }
}

/// An unlimited link (and one above 34.36 Gbit/s) is written at ION's 32-bit maximum with a
/// warning naming the link and the nodes, in the plan and in `warnings`.
#[test]
fn rates_above_ion_limit_are_clamped_with_a_warning() {
    let text = sites_and_own_links("fast", "", &["a", "b", "c"], 0.05)
        + r#"[[links]]
from = "a"
to = "b"
distance_km = 384400
[[links]]
from = "a"
to = "c"
distance_km = 1000
rate_mbps = 40000
[[links]]
from = "b"
to = "c"
distance_km = 1000
rate_mbps = 34000
"#;
    let profile = Profile::parse(&text, "fast.toml").unwrap();
    let plan = contact_plan(&profile, Duration::from_secs(3600));
    let parsed = check_ionrc(&plan.text, 3).unwrap_or_else(|e| panic!("{e}\n{}", plan.text));
    assert_eq!(parsed.contacts[&(1, 2)][0].2, ION_MAX_RATE_BYTES_S);
    assert_eq!(parsed.contacts[&(2, 1)][0].2, ION_MAX_RATE_BYTES_S);
    assert_eq!(parsed.contacts[&(1, 3)][0].2, ION_MAX_RATE_BYTES_S);
    // 34 Gbit/s = 4.25e9 bytes/s fits.
    assert_eq!(parsed.contacts[&(2, 3)][0].2, 4_250_000_000);
    assert_eq!(plan.warnings.len(), 4, "{:?}", plan.warnings);
    assert!(
        plan.warnings[0].contains("a -> b (nodes 1 -> 2)"),
        "{:?}",
        plan.warnings
    );
    assert!(plan.warnings[0].contains("unlimited"));
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("5000000000 bytes/s"))
    );
    for w in &plan.warnings {
        assert!(plan.text.contains(&format!("# WARNING: {w}")));
    }
    // Intra-site links (50 µs, unlimited) are not exported: no contact from a node to itself.
    assert!(!plan.text.contains("a contact +0 +3600 1 1"));
}

/// The checker itself refuses what ionadmin would refuse or misread.
#[test]
fn the_checker_refuses_bad_plans() {
    let bad = [
        "a contact +0 +10 1 2 4294967296",
        "a contact 0 +10 1 2 100",
        "a contact +10 +10 1 2 100",
        "a contact +0 +10 0 2 100",
        "a contact +0 +10 1 3 100",
        "a contact +0 +10 1 2 100\na contact +10 +20 1 2 100",
        "a contact +0 +10 1 2 100\na range +0 +5 1 2 1",
        "a range +0 +10 2 1 1\na range +10 +20 1 2 1\na range +10 +20 2 1 1",
        "a contact +0 +10 1 2",
        "x contact +0 +10 1 2 100",
    ];
    for b in bad {
        assert!(check_ionrc(b, 2).is_err(), "accepted: {b}");
    }
    assert!(
        check_ionrc(
            "# c\na contact +0 +10 1 2 100\na range +0 +4 2 1 1\na range +5 +10 2 1 1",
            2
        )
        .is_ok()
    );
}
