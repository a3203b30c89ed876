#![allow(clippy::unwrap_used)]
//! Relay routes and store-and-forward links, driven with explicit instants (no clock):
//! the model's rules from `netem_profiles::link` ("Store-and-forward") and
//! `netem_profiles::relay`, and the profile keys `[[routes]]`, `outage`, `store_bytes`.

use std::time::Duration;

use netem_profiles::{
    DropCause, LinkModel, LinkSpec, OutageMode, OutageSchedule, PathVerdict, Profile, RelayPath,
    UDP_IP_OVERHEAD_BYTES, Verdict, Window,
};

use crate::fixtures::sites_and_own_links;

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

fn us(x: u64) -> Duration {
    Duration::from_micros(x)
}

/// 1000 bytes on the wire.
const LEN: usize = 1000 - UDP_IP_OVERHEAD_BYTES;

/// 1 Mbit/s (1000 wire bytes = 8 ms), 100 ms delay, down over [1 s, 3 s), storing up to
/// `store` bytes.
fn store_link(store: u64) -> LinkModel {
    store_link_with(store, false)
}

/// [`store_link`], its upstream end following the contact plan or not.
fn store_link_with(store: u64, contact_plan: bool) -> LinkModel {
    let mut spec = LinkSpec::ideal(ms(100));
    spec.rate_bps = Some(1_000_000);
    spec.queue_limit_bytes = 100_000;
    spec.outages = OutageSchedule {
        periodic: vec![],
        windows: vec![Window {
            start: ms(1000),
            end: ms(3000),
        }],
    };
    spec.outage_mode = OutageMode::Store {
        buffer_bytes: store,
        contact_plan,
    };
    LinkModel::new(spec, 7)
}

fn at(v: Verdict) -> Duration {
    match v {
        Verdict::Deliver { at, .. } => at,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[test]
fn stored_datagrams_leave_in_order_when_the_link_returns() {
    let mut link = store_link(10_000);
    let arrivals: Vec<Duration> = [1500, 1600, 1700]
        .into_iter()
        .map(|t| at(link.on_packet(ms(t), LEN)))
        .collect();
    // Serialised back to back from the return at 3 s, then 100 ms of light.
    assert_eq!(arrivals, vec![ms(3108), ms(3116), ms(3124)]);
    assert_eq!(link.stored_bytes(ms(2000)), 3000);
    // One has left by 3.010 s; all by 3.024 s.
    assert_eq!(link.stored_bytes(ms(3010)), 2000);
    assert_eq!(link.stored_bytes(ms(3024)), 0);
    // A datagram handed over right after the return queues behind the stored ones.
    assert_eq!(at(link.on_packet(ms(3001), LEN)), ms(3132));
}

#[test]
fn a_full_store_drops_and_counts_only_what_does_not_fit() {
    let mut link = store_link(2500);
    assert_eq!(at(link.on_packet(ms(1500), LEN)), ms(3108));
    assert_eq!(at(link.on_packet(ms(1500), LEN)), ms(3116));
    assert_eq!(
        link.on_packet(ms(1500), LEN),
        Verdict::Drop(DropCause::StoreFull)
    );
    // Still down, still full.
    assert_eq!(
        link.on_packet(ms(2999), LEN),
        Verdict::Drop(DropCause::StoreFull)
    );
    // Once the stored ones have left, the link takes new ones at once.
    assert_eq!(at(link.on_packet(ms(3016), LEN)), ms(3124));
}

#[test]
fn a_datagram_propagating_when_the_link_goes_down_is_lost() {
    let mut link = store_link(10_000);
    // Leaves at 0.900 s, arrives at 1.000 s exactly: arrives (the outage starts then).
    assert_eq!(at(link.on_packet(ms(892), LEN)), ms(1000));
    // Leaves at 0.958 s, would arrive at 1.058 s: lost on the way.
    assert_eq!(
        link.on_packet(ms(950), LEN),
        Verdict::Drop(DropCause::InFlight)
    );
    // The link time it used stays used: the next one leaves at 0.966 s and is lost too.
    assert_eq!(
        link.on_packet(ms(950), LEN),
        Verdict::Drop(DropCause::InFlight)
    );
    // After the outage, nothing is in the way.
    assert_eq!(at(link.on_packet(ms(3500), LEN)), ms(3608));
}

#[test]
fn serialisation_that_would_cross_the_outage_waits_for_the_return() {
    let mut link = store_link(10_000);
    // Starts at 0.995 s, would finish at 1.003 s, after the outage starts: stored, sent
    // again from the start at 3 s.
    assert_eq!(at(link.on_packet(ms(995), LEN)), ms(3108));
    assert_eq!(link.stored_bytes(ms(2000)), 1000);
}

#[test]
fn a_drop_link_keeps_dropping_in_outages_and_lets_photons_in_flight_arrive() {
    let mut link = store_link(10_000);
    let mut spec = link.spec().clone();
    spec.outage_mode = OutageMode::Drop;
    link = LinkModel::new(spec, 7);
    assert_eq!(at(link.on_packet(ms(950), LEN)), ms(1058));
    assert_eq!(
        link.on_packet(ms(1500), LEN),
        Verdict::Drop(DropCause::Outage)
    );
}

#[test]
fn two_hops_arrive_after_both_delays_and_both_serialisations() {
    let mut up = LinkSpec::ideal(ms(100));
    up.rate_bps = Some(10_000_000); // 0.8 ms per 1000 bytes
    up.queue_limit_bytes = 1 << 20;
    let mut down = LinkSpec::ideal(ms(1200));
    down.rate_bps = Some(1_000_000); // 8 ms per 1000 bytes
    down.queue_limit_bytes = 1 << 20;
    let mut path = RelayPath::new(vec![LinkModel::new(up, 1), LinkModel::new(down, 2)]);
    assert_eq!(
        path.on_packet(ms(5), LEN),
        PathVerdict::Deliver {
            at: ms(5) + us(800) + ms(100) + ms(8) + ms(1200)
        }
    );
    // Back to back: the second waits behind the first on the slow hop only.
    assert_eq!(
        path.on_packet(ms(5), LEN),
        PathVerdict::Deliver {
            at: ms(5) + us(1600) + ms(100) + ms(16) + ms(1200) - us(800)
        }
    );
}

#[test]
fn a_relay_stores_across_its_next_hops_outage() {
    // Hop 0 always up; hop 1 (relay → base) down over [1 s, 3 s), storing.
    let mut up = LinkSpec::ideal(ms(100));
    up.rate_bps = Some(10_000_000);
    let mut path = RelayPath::new(vec![LinkModel::new(up, 1), store_link(1 << 20)]);
    // Reaches the relay at 1.5008 s, during the outage: leaves the relay at 3.008 s.
    assert_eq!(
        path.on_packet(ms(1400), LEN),
        PathVerdict::Deliver { at: ms(3108) }
    );
    let mut tiny = RelayPath::new(vec![
        LinkModel::new(LinkSpec::ideal(ms(1)), 1),
        store_link(1500),
    ]);
    assert!(matches!(
        tiny.on_packet(ms(1400), LEN),
        PathVerdict::Deliver { .. }
    ));
    assert_eq!(
        tiny.on_packet(ms(1400), LEN),
        PathVerdict::Drop {
            hop: 1,
            cause: DropCause::StoreFull
        }
    );
}

/// earth -> relay -> base, the second hop storing across its outage; earth <-> base routed.
fn routed() -> String {
    sites_and_own_links("relay", "", &["earth", "relay", "base"], 0.05) + ROUTE
}

/// The cross-site links and the route of [`routed`].
const ROUTE: &str = r#"[[links]]
from = "earth"
to = "relay"
delay_ms = 1200
rate_mbps = 100
[[links]]
from = "relay"
to = "base"
delay_ms = 30
rate_mbps = 20
outage = "store"
store_bytes = 67108864
outages = { windows = [{ start_s = 10, end_s = 20 }] }
[[routes]]
from = "earth"
to = "base"
via = ["relay"]
"#;

#[test]
fn a_route_is_parsed_into_hops_and_summarised() {
    let p = Profile::parse(&routed(), "relay.toml").unwrap();
    let (e, r, b) = (
        p.site_id("earth").unwrap(),
        p.site_id("relay").unwrap(),
        p.site_id("base").unwrap(),
    );
    assert_eq!(p.route(e, b), Some(&[e, r, b][..]));
    assert_eq!(p.route(b, e), Some(&[b, r, e][..]));
    assert_eq!(p.route(e, r), None);
    let summary = p.link(e, b);
    assert_eq!(summary.delay_at(Duration::ZERO), ms(1230));
    assert_eq!(summary.rate_bps, Some(20_000_000));
    // The only outage is on a storing hop: the path takes datagrams throughout (they wait).
    assert!(summary.outages.is_up(ms(15_000)));
    assert!(!p.link(r, b).outages.is_up(ms(15_000)));
    assert_eq!(p.longest_outage(), ms(10_000));
    assert_eq!(summary.outage_mode, OutageMode::Drop);
    assert_eq!(
        p.link(r, b).outage_mode,
        OutageMode::Store {
            buffer_bytes: 64 << 20,
            contact_plan: false,
        }
    );
    // The store applies to the direction it was written for; the reverse mirrors the keys.
    assert_eq!(p.link(b, r).outage_mode, p.link(r, b).outage_mode);
    assert_eq!(p.routes().count(), 2);
}

fn errors(text: &str) -> Vec<(usize, String, String)> {
    match Profile::parse(text, "bad.toml") {
        Ok(_) => panic!("expected errors"),
        Err(e) => {
            e.0.into_iter()
                .map(|e| (e.line, e.key, e.message))
                .collect()
        }
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn route_errors_name_the_line_and_key() {
    let unknown = routed().replace("via = [\"relay\"]", "via = [\"relya\"]");
    let e = errors(&unknown);
    assert_eq!(e[0].0, line_of(&unknown, "via ="));
    assert_eq!(e[0].1, "routes[0].via[0]");
    assert!(e[0].2.contains("unknown site `relya`"), "{e:?}");

    let looped = routed().replace("via = [\"relay\"]", "via = [\"relay\", \"earth\"]");
    let e = errors(&looped);
    assert_eq!(e[0].1, "routes[0].via[1]");
    assert!(e[0].2.contains("twice"), "{e:?}");

    let hop_block = "[[links]]\nfrom = \"relay\"\nto = \"base\"\ndelay_ms = 30\nrate_mbps = 20\noutage = \"store\"\nstore_bytes = 67108864\noutages = { windows = [{ start_s = 10, end_s = 20 }] }\n";
    assert!(routed().contains(hop_block));
    let no_hop = routed().replace(hop_block, "");
    let e = errors(&no_hop);
    let route_line = line_of(&no_hop, "[[routes]]") + 1;
    assert!(
        e.iter().any(|(l, k, m)| *l == route_line
            && k == "routes[0].via"
            && m.contains("hop 1 (`relay` -> `base`) has no link")),
        "{e:?}"
    );

    let direct = format!(
        "{}[[links]]\nfrom = \"base\"\nto = \"earth\"\ndelay_ms = 1\n",
        routed()
    );
    let e = errors(&direct);
    assert_eq!(e[0].1, "links[5].from");
    assert!(e[0].2.contains("routed over relays by routes[0]"), "{e:?}");

    let no_buffer = routed().replace("store_bytes = 67108864\n", "");
    let e = errors(&no_buffer);
    assert_eq!(e[0].0, line_of(&no_buffer, "outage = \"store\""));
    assert_eq!(e[0].1, "links[4].outage");
    assert!(e[0].2.contains("needs store_bytes"), "{e:?}");

    let per_pair = routed().replace("rate_mbps = 20\n", "rate_mbps = 20\nper_pair = true\n");
    let e = errors(&per_pair);
    assert_eq!(e[0].1, "routes[0].via");
    assert!(e[0].2.contains("one shared trunk"), "{e:?}");
}

#[test]
fn following_the_contact_plan_stores_what_would_arrive_after_the_outage_starts() {
    let mut link = store_link_with(10_000, true);
    // Leaves at 0.900 s, arrives at 1.000 s exactly: launched (the outage starts then).
    assert_eq!(at(link.on_packet(ms(892), LEN)), ms(1000));
    // Would leave at 0.958 s and arrive at 1.058 s, inside the outage: stored instead of
    // lost, and the link idles until the return. The next one waits behind it.
    assert_eq!(at(link.on_packet(ms(950), LEN)), ms(3108));
    assert_eq!(at(link.on_packet(ms(950), LEN)), ms(3116));
    // The first counts against the store, the one queued behind it against the queue (as
    // for a serialisation that would cross the outage).
    assert_eq!(link.stored_bytes(ms(2000)), 1000);
    // The same two datagrams on a link that launches until the outage are lost in flight.
    let mut tiptop = store_link_with(10_000, false);
    assert_eq!(at(tiptop.on_packet(ms(892), LEN)), ms(1000));
    for _ in 0..2 {
        assert_eq!(
            tiptop.on_packet(ms(950), LEN),
            Verdict::Drop(DropCause::InFlight)
        );
    }
}

#[test]
fn store_contact_plan_is_read_and_needs_a_storing_link() {
    let on = routed().replace(
        "store_bytes = 67108864",
        "store_bytes = 67108864\nstore_contact_plan = true",
    );
    let p = Profile::parse(&on, "relay.toml").unwrap();
    let (r, b) = (p.site_id("relay").unwrap(), p.site_id("base").unwrap());
    assert_eq!(
        p.link(r, b).outage_mode,
        OutageMode::Store {
            buffer_bytes: 64 << 20,
            contact_plan: true,
        }
    );
    assert_eq!(
        p.link(r, b).outage_mode.describe(),
        "store 64 MiB, contact plan"
    );
    // On a link that drops in its outages there is no store to follow a plan with.
    let bad = routed().replace(
        "rate_mbps = 100",
        "rate_mbps = 100\nstore_contact_plan = true",
    );
    let errs = errors(&bad);
    assert!(
        errs.iter().any(
            |(line, key, msg)| *line == line_of(&bad, "store_contact_plan")
                && key.ends_with("store_contact_plan")
                && msg.contains("needs outage = \"store\"")
        ),
        "{errs:?}"
    );
}
