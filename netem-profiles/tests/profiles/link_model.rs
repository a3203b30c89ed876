//! The link state machine driven through profiles, on a fake clock (plain `Duration`s) with
//! fixed seeds: loss statistics, burst lengths, exact serialisation, queue limits, outage
//! edges, jitter bounds and determinism. No sleeping anywhere.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use netem_profiles::{DropCause, LinkModel, Profile, UDP_IP_OVERHEAD_BYTES, Verdict};

use crate::fixtures::sites_and_own_links;

const NS: Duration = Duration::from_nanos(1);

/// A two-site profile whose a -> b link has `extra` keys (TOML lines) added.
fn two_sites(seed: u64, extra: &str) -> Profile {
    two_sites_with(&format!("seed = {seed}\n"), extra)
}

/// Sites a and b with instant links inside, `header` lines after the name and the a -> b
/// link's `extra` keys.
fn two_sites_with(header: &str, extra: &str) -> Profile {
    let text = sites_and_own_links("t", header, &["a", "b"], 0.0)
        + &format!("\n[[links]]\nfrom = \"a\"\nto = \"b\"\n{extra}\n");
    Profile::parse(&text, "test").unwrap()
}

fn ab(p: &Profile) -> LinkModel {
    p.link_model(0, 1)
}

fn drops(v: &Verdict) -> Option<DropCause> {
    match v {
        Verdict::Drop(c) => Some(*c),
        Verdict::Deliver { .. } => None,
    }
}

fn arrival(v: Verdict) -> Duration {
    match v {
        Verdict::Deliver { at, .. } => at,
        Verdict::Drop(c) => panic!("dropped: {c:?}"),
    }
}

/// |observed - n·p| within 4 binomial standard deviations.
fn assert_binomial(observed: u64, n: u64, p: f64, what: &str) {
    let mean = n as f64 * p;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (observed as f64 - mean).abs() <= 4.0 * sigma,
        "{what}: {observed} of {n}, expected {mean:.1} ± {:.1} (4σ)",
        4.0 * sigma
    );
}

#[test]
fn bernoulli_loss_rate_is_within_a_binomial_tolerance_of_p() {
    for (seed, p) in [(1, 0.001), (2, 0.01), (3, 0.1), (4, 0.5)] {
        let profile = two_sites(
            seed,
            &format!("delay_ms = 1\nloss = {{ model = \"bernoulli\", p = {p} }}"),
        );
        let mut link = ab(&profile);
        let n = 200_000u64;
        let lost = (0..n)
            .filter(|&i| {
                drops(&link.on_packet(Duration::from_micros(i), 1200)) == Some(DropCause::Loss)
            })
            .count() as u64;
        assert_binomial(lost, n, p, &format!("p = {p}"));
    }
}

#[test]
fn gilbert_elliott_bursts_have_the_theoretical_mean_length() {
    // h = 0, k = 1: every datagram in the bad state is lost, none in the good one; bad runs are
    // geometric with mean 1/r, and the long-run loss rate is p / (p + r).
    let (p, r): (f64, f64) = (0.01, 0.25);
    let profile = two_sites(
        7,
        &format!("delay_ms = 1\nloss = {{ model = \"gilbert-elliott\", p = {p}, r = {r} }}"),
    );
    let mut link = ab(&profile);
    let n = 500_000u64;
    let mut bursts = Vec::new();
    let mut run = 0u64;
    let mut lost = 0u64;
    for i in 0..n {
        if drops(&link.on_packet(Duration::from_micros(i), 1200)) == Some(DropCause::Loss) {
            run += 1;
            lost += 1;
        } else if run > 0 {
            bursts.push(run);
            run = 0;
        }
    }
    let count = bursts.len() as f64;
    let mean = bursts.iter().sum::<u64>() as f64 / count;
    // Geometric: variance (1 - r) / r²; 4 standard errors of the mean.
    let se = ((1.0 - r) / (r * r)).sqrt() / count.sqrt();
    assert!(
        (mean - 1.0 / r).abs() <= 4.0 * se,
        "mean burst {mean}, expected {} ± {}",
        1.0 / r,
        4.0 * se
    );
    let rate = lost as f64 / n as f64;
    let expected = p / (p + r);
    assert!(
        (rate - expected).abs() < 0.004,
        "loss rate {rate}, expected {expected}"
    );
}

#[test]
fn n_bytes_at_r_bits_per_second_leave_exactly_n8_over_r_after_the_first_plus_delay() {
    // 100 Mbit/s, 10 ms: a 1222-byte payload is 1250 bytes on the wire = 10,000 bits = 100 us.
    let profile = two_sites(
        1,
        "delay_ms = 10\nrate_bps = 100000000\nqueue_bytes = 100000000",
    );
    let mut link = ab(&profile);
    let len = 1250 - UDP_IP_OVERHEAD_BYTES;
    let k = 1000u32;
    let arrivals: Vec<Duration> = (0..k)
        .map(|_| arrival(link.on_packet(Duration::ZERO, len)))
        .collect();
    let per = Duration::from_micros(100);
    let delay = Duration::from_millis(10);
    assert_eq!(
        arrivals[0],
        per + delay,
        "first: serialised, then the delay"
    );
    for (i, at) in arrivals.iter().enumerate() {
        assert_eq!(*at, per * (i as u32 + 1) + delay, "datagram {i}");
    }
    assert_eq!(arrivals[k as usize - 1] - arrivals[0], per * (k - 1));

    // Odd sizes and rates: the total stays exact (no per-datagram rounding drift).
    let profile = two_sites(
        1,
        "delay_ms = 0\nrate_bps = 7000000\nqueue_bytes = 100000000",
    );
    let mut link = ab(&profile);
    let len = 1171; // 1199 bytes on the wire
    let n = 7000u64;
    let mut last = Duration::ZERO;
    for _ in 0..n {
        last = arrival(link.on_packet(Duration::ZERO, len));
    }
    let exact_ns = (n * 1199 * 8 * 1_000_000_000).div_ceil(7_000_000);
    assert_eq!(last, Duration::from_nanos(exact_ns));

    // An idle link serialises a late datagram from its own hand-over time.
    let t = Duration::from_secs(20); // after the 9.59 s backlog has drained
    assert_eq!(
        arrival(link.on_packet(t, len)),
        t + Duration::from_nanos((1199u64 * 8 * 1_000_000_000).div_ceil(7_000_000))
    );
}

#[test]
fn queue_overflow_drops_at_the_limit() {
    // 8 Mbit/s = 1 byte/us; queue of 10 full datagrams of 1000 bytes on the wire.
    let profile = two_sites(1, "delay_ms = 1\nrate_mbps = 8\nqueue_bytes = 10000");
    let mut link = ab(&profile);
    let len = 1000 - UDP_IP_OVERHEAD_BYTES;
    for i in 0..10 {
        assert!(
            drops(&link.on_packet(Duration::ZERO, len)).is_none(),
            "datagram {i} fits"
        );
    }
    assert_eq!(link.queued_bytes(Duration::ZERO), 10_000);
    assert_eq!(
        link.on_packet(Duration::ZERO, len),
        Verdict::Drop(DropCause::Queue)
    );
    // A smaller datagram does not fit either: the queue is full to the byte.
    assert_eq!(
        link.on_packet(Duration::ZERO, 0),
        Verdict::Drop(DropCause::Queue)
    );
    // 1 ns before the first datagram has left there is still no room; at 1 ms exactly there is.
    let one = Duration::from_millis(1);
    assert_eq!(
        link.on_packet(one - NS, len),
        Verdict::Drop(DropCause::Queue)
    );
    assert!(drops(&link.on_packet(one, len)).is_none());
    assert_eq!(link.on_packet(one, len), Verdict::Drop(DropCause::Queue));
}

#[test]
fn outage_edges_are_exact_to_the_nanosecond_and_drops_say_outage() {
    // time_scale 10: scenario period 1000 s, outage 100 s from 300 s -> emulated 100 s, 10 s
    // from 30 s; window scenario [5000 s, 5000.5 s) -> emulated [500 s, 500.05 s).
    let text = "delay_ms = 5\n\
        [[links.outages.periodic]]\nperiod_s = 1000\nduration_s = 100\nphase_s = 300\n\
        [[links.outages.windows]]\nstart_s = 5000\nend_s = 5000.5\n";
    let profile = two_sites_with("time_scale = 10\n", text);
    for (from, to) in [(0, 1), (1, 0)] {
        let mut link = profile.link_model(from, to);
        let s = Duration::from_secs;
        let delay = Duration::from_millis(5);
        for (t, down) in [
            (s(30) - NS, false),
            (s(30), true),
            (s(40) - NS, true),
            (s(40), false),
            (s(130) - NS, false),
            (s(130), true),
            (s(500) - NS, false),
            (s(500), true),
            (s(500) + Duration::from_millis(50) - NS, true),
            (s(500) + Duration::from_millis(50), false),
        ] {
            let v = link.on_packet(t, 100);
            if down {
                assert_eq!(v, Verdict::Drop(DropCause::Outage), "t = {t:?}");
            } else {
                assert_eq!(arrival(v), t + delay, "t = {t:?}");
            }
        }
        let sched = &profile.link(from, to).outages;
        assert_eq!(sched.next_change(Duration::ZERO), Some(s(30)));
        assert_eq!(sched.next_change(s(30)), Some(s(40)));
        assert_eq!(profile.longest_outage(), s(10));
    }
}

#[test]
fn jitter_never_arrives_before_departure_and_keeps_fifo_unless_reorder() {
    for dist in ["uniform", "normal", "pareto"] {
        // Jitter far larger than the delay: the clamp at the departure must hold.
        let profile = two_sites(
            3,
            &format!("delay_ms = 1\nrate_mbps = 100\njitter = {{ dist = \"{dist}\", ms = 20 }}"),
        );
        let mut link = ab(&profile);
        let mut last = Duration::ZERO;
        for i in 0..20_000u64 {
            let now = Duration::from_micros(i * 200);
            let at = arrival(link.on_packet(now, 1000));
            // 1028 bytes at 100 Mbit/s = 82.24 us of serialisation
            assert!(
                at >= now + Duration::from_nanos(82_240),
                "{dist}: arrived before it left"
            );
            assert!(at >= last, "{dist}: FIFO broken");
            last = at;
        }
    }
    let profile = two_sites(
        3,
        "delay_ms = 10\njitter = { dist = \"normal\", ms = 2, reorder = true }",
    );
    let mut link = ab(&profile);
    let mut reordered = 0;
    let mut last = Duration::ZERO;
    let mut sum = 0.0;
    let n = 20_000u64;
    for i in 0..n {
        let now = Duration::from_micros(i * 100);
        let at = arrival(link.on_packet(now, 1000));
        if at < last {
            reordered += 1;
        }
        last = last.max(at);
        sum += (at - now).as_secs_f64();
    }
    assert!(
        reordered > 1000,
        "reorder = true lets jitter reorder ({reordered})"
    );
    let mean_ms = sum / n as f64 * 1e3;
    // normal jitter is centred on the delay: σ/√n ≈ 0.014 ms
    assert!((mean_ms - 10.0).abs() < 0.06, "mean one-way {mean_ms} ms");

    // Every draw is capped at ±8·ms: a heavy Pareto tail never holds a datagram longer.
    let profile = two_sites(
        4,
        "delay_ms = 10\njitter = { dist = \"pareto\", ms = 1, reorder = true }",
    );
    let mut link = ab(&profile);
    let cap =
        Duration::from_millis(10) + Duration::from_millis(1) * netem_profiles::JITTER_CAP as u32;
    let worst = (0..200_000u64)
        .map(|i| {
            let now = Duration::from_micros(i);
            arrival(link.on_packet(now, 100)) - now
        })
        .max()
        .unwrap();
    assert!(worst <= cap, "worst {worst:?} above the cap {cap:?}");
    assert!(
        worst > Duration::from_millis(15),
        "the tail is exercised ({worst:?})"
    );
}

#[test]
fn duplicates_at_the_configured_rate() {
    let profile = two_sites(5, "delay_ms = 1\nduplicate = 0.02");
    let mut link = ab(&profile);
    let n = 100_000u64;
    let dups = (0..n)
        .filter(|&i| {
            matches!(
                link.on_packet(Duration::from_micros(i), 100),
                Verdict::Deliver {
                    duplicate_at: Some(_),
                    ..
                }
            )
        })
        .count() as u64;
    assert_binomial(dups, n, 0.02, "duplicates");
}

const NOISY: &str = "delay_ms = 5\nrate_mbps = 50\nduplicate = 0.01\n\
    loss = { model = \"gilbert-elliott\", p = 0.02, r = 0.3, h = 0.2, k = 0.99 }\n\
    jitter = { dist = \"pareto\", ms = 1, reorder = true }";

fn verdicts(link: &mut LinkModel, n: u64) -> Vec<Verdict> {
    (0..n)
        .map(|i| link.on_packet(Duration::from_micros(i * 300), 1200))
        .collect()
}

#[test]
fn same_seed_gives_an_identical_verdict_sequence() {
    let a = verdicts(&mut ab(&two_sites(42, NOISY)), 50_000);
    let b = verdicts(&mut ab(&two_sites(42, NOISY)), 50_000);
    assert_eq!(a, b);
    let c = verdicts(&mut ab(&two_sites(43, NOISY)), 50_000);
    assert_ne!(a, c, "a different seed gives a different sequence");
}

/// Pearson correlation of two 0/1 sequences.
fn correlation(x: &[bool], y: &[bool]) -> f64 {
    let n = x.len() as f64;
    let mx = x.iter().filter(|&&b| b).count() as f64 / n;
    let my = y.iter().filter(|&&b| b).count() as f64 / n;
    let (mut cov, mut vx, mut vy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (da, db) = (f64::from(u8::from(a)) - mx, f64::from(u8::from(b)) - my);
        cov += da * db;
        vx += da * da;
        vy += db * db;
    }
    cov / (vx * vy).sqrt()
}

#[test]
fn different_links_draw_independent_streams() {
    let text = "delay_ms = 5\nloss = { model = \"bernoulli\", p = 0.3 }";
    let profile = two_sites(9, text);
    let n = 100_000u64;
    let lost = |mut link: LinkModel| -> Vec<bool> {
        (0..n)
            .map(|i| drops(&link.on_packet(Duration::from_micros(i), 100)).is_some())
            .collect()
    };
    let forward = lost(profile.link_model(0, 1));
    let backward = lost(profile.link_model(1, 0));
    let c = correlation(&forward, &backward);
    // Independent: |r| ~ 1/√n = 0.003; allow 4/√n.
    assert!(c.abs() < 4.0 / (n as f64).sqrt(), "correlation {c}");
    // And a stream against itself shifted by one: no serial correlation either.
    let c1 = correlation(&forward[1..], &forward[..forward.len() - 1]);
    assert!(c1.abs() < 4.0 / (n as f64).sqrt(), "lag-1 correlation {c1}");
    // Same link, two processes: identical.
    assert_eq!(forward, lost(profile.link_model(0, 1)));
}

mod properties {
    use super::*;
    use netem_profiles::{
        Jitter, JitterDist, LinkSpec, LossModel, OutageSchedule, PeriodicOutage, Window,
    };
    use proptest::prelude::*;

    fn spec() -> impl Strategy<Value = LinkSpec> {
        let dist = prop_oneof![
            Just(JitterDist::Uniform),
            Just(JitterDist::Normal),
            Just(JitterDist::Pareto)
        ];
        let jitter = proptest::option::of((dist, 0u64..50_000_000, any::<bool>()).prop_map(
            |(dist, ns, reorder)| Jitter {
                dist,
                amount: Duration::from_nanos(ns),
                reorder,
            },
        ));
        let loss = prop_oneof![
            Just(LossModel::None),
            (0.0..=1.0f64).prop_map(|p| LossModel::Bernoulli { p }),
            (0.0..=1.0f64, 0.0..=1.0f64, 0.0..=1.0f64, 0.0..=1.0f64)
                .prop_map(|(p, r, h, k)| LossModel::GilbertElliott { p, r, h, k }),
        ];
        let outages =
            proptest::collection::vec((1u64..10_000_000, 0u64..10_000_000, 0u64..10_000_000), 0..3)
                .prop_map(|v| OutageSchedule {
                    periodic: v
                        .into_iter()
                        .map(|(period, d, ph)| PeriodicOutage {
                            period: Duration::from_nanos(period),
                            duration: Duration::from_nanos(d % (period + 1)),
                            phase: Duration::from_nanos(ph % period),
                        })
                        .collect(),
                    windows: vec![Window {
                        start: Duration::from_millis(3),
                        end: Duration::from_millis(4),
                    }],
                });
        (
            0u64..2_000_000_000,
            jitter,
            loss,
            0.0..=1.0f64,
            proptest::option::of(1u64..100_000_000_000),
            1u64..100_000_000,
            outages,
        )
            .prop_map(
                |(delay, jitter, loss, duplicate, rate_bps, queue, outages)| LinkSpec {
                    delay: Duration::from_nanos(delay),
                    jitter,
                    loss,
                    duplicate,
                    rate_bps,
                    queue_limit_bytes: queue,
                    outages,
                    geometry: None,
                    outage_mode: netem_profiles::OutageMode::Drop,
                    relay_hops: None,
                },
            )
    }

    proptest! {
        #[test]
        fn any_link_any_traffic_arrives_no_earlier_than_sent_and_never_panics(
            spec in spec(),
            seed in any::<u64>(),
            // hand-over times mostly rise but may step back (several senders share a link)
            sends in proptest::collection::vec((-300_000i64..1_000_000, 0usize..70_000), 1..300),
        ) {
            let fifo = spec.jitter.is_none_or(|j| !j.reorder);
            let mut link = LinkModel::new(spec.clone(), seed);
            let mut now = Duration::ZERO;
            let mut last = Duration::ZERO;
            // FIFO is promised in hand-over time order, so it is checked while time rises.
            let mut monotonic = true;
            for (gap, len) in sends {
                monotonic &= gap >= 0;
                now = if gap >= 0 {
                    now + Duration::from_nanos(gap.unsigned_abs())
                } else {
                    now.saturating_sub(Duration::from_nanos(gap.unsigned_abs()))
                };
                match link.on_packet(now, len) {
                    Verdict::Deliver { at, duplicate_at } => {
                        prop_assert!(at >= now);
                        prop_assert!(duplicate_at.is_none_or(|d| d >= now));
                        if fifo && monotonic {
                            prop_assert!(at >= last, "FIFO: {at:?} < {last:?}");
                        }
                        last = last.max(at);
                    }
                    Verdict::Drop(DropCause::Outage) => prop_assert!(!spec.outages.is_up(now)),
                    Verdict::Drop(_) => prop_assert!(spec.outages.is_up(now)),
                }
            }
        }
    }
}
