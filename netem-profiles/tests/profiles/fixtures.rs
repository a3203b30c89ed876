//! Profile text the netem-profiles tests share: the part every test profile starts with (its
//! name, its sites, each site's own link). The workspace's test kit (`spacefabric-testkit`)
//! builds profiles too, but it depends on this crate, so this crate's tests cannot use it (a
//! dependency cycle). What a test is about — the cross-site links, routes and keys under
//! test — it still writes out as TOML: the text format is what these tests test.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;

/// `name = "NAME"`, the `header` lines verbatim (`seed = 7\n`, a `[geometry]` section...), a
/// `[sites.S]` line per site and then, per site in order, its own link (`from` = `to` = S,
/// `delay_ms = inside_ms`, unlimited), each `[[links]]` after a blank line. The test appends
/// its cross-site links: they are `links[sites.len()]` onwards.
pub(crate) fn sites_and_own_links(
    name: &str,
    header: &str,
    sites: &[&str],
    inside_ms: f64,
) -> String {
    let mut text = format!("name = {name:?}\n{header}");
    for site in sites {
        writeln!(text, "[sites.{site}]").unwrap();
    }
    for site in sites {
        write!(
            text,
            "\n[[links]]\nfrom = {site:?}\nto = {site:?}\ndelay_ms = {inside_ms}\n"
        )
        .unwrap();
    }
    text
}

#[test]
fn own_links_come_first_in_site_order() {
    let text = sites_and_own_links("t", "seed = 3\n", &["a", "b"], 0.05);
    assert_eq!(
        text,
        "name = \"t\"\nseed = 3\n[sites.a]\n[sites.b]\n\n[[links]]\nfrom = \"a\"\nto = \"a\"\n\
         delay_ms = 0.05\n\n[[links]]\nfrom = \"b\"\nto = \"b\"\ndelay_ms = 0.05\n"
    );
}
