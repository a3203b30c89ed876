//! Cost of geometry lookups on the packet path: delay interpolation and up/down state from a
//! precomputed [`GeometryTable`], and (for contrast) one direct evaluation of the geometry.
//!
//! Run: `cargo bench -p netem-profiles --bench orbit`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use netem_profiles::orbit::earth::StationNetwork;
use netem_profiles::orbit::lunar::LunarOrbiter;
use netem_profiles::orbit::{Endpoint, GeometryTable, JulianDay, LinkGeometry};

fn tables() -> (GeometryTable, LinkGeometry, JulianDay) {
    let epoch = JulianDay(2_461_375.5); // 2026-12-01T00:00:00Z
    let relay = LunarOrbiter::circular("relay", 100.0, 0.0, 0.0, 0.0, epoch).expect("valid orbit");
    let link = LinkGeometry::new(
        Endpoint::Network(StationNetwork::dsn(10.0).expect("valid stations")),
        Endpoint::LunarOrbiter(relay),
    );
    // Two days at 10 s: ~24 occultations → ~50 outage windows to search.
    let table = GeometryTable::build(2.0 * 86_400.0, 10.0, 1.0, |s| {
        link.sample(epoch.plus_seconds(s))
    })
    .expect("table");
    (table, link, epoch)
}

fn bench(c: &mut Criterion) {
    let (table, link, epoch) = tables();
    let horizon_ns = table.horizon().as_nanos() as u64;
    // A cheap LCG spreads lookups over the whole horizon (no cache-friendly sequence).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next_t = move || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        Duration::from_nanos((x >> 11) % horizon_ns)
    };
    c.bench_function("baseline_random_instant_only", |b| {
        b.iter(|| black_box(next_t()))
    });
    c.bench_function("geometry_table_delay_at", |b| {
        b.iter(|| black_box(table.delay_at(black_box(next_t()))))
    });
    c.bench_function("geometry_table_is_up", |b| {
        b.iter(|| black_box(table.is_up(black_box(next_t()))))
    });
    // The whole verdict path on a geometry-derived link (profile text → LinkModel), datagrams
    // 1 µs apart: outage state cached by the link model, delay from the table.
    let profile = netem_profiles::Profile::parse(
        &format!(
            r#"name = "bench"
[geometry]
epoch = "2026-12-01T00:00:00Z"
horizon_hours = 48
[geometry.endpoints.dsn]
kind = "dsn"
[geometry.endpoints.relay]
kind = "lunar-orbiter"
altitude_km = 100
inclination_deg = 0
[sites.earth]
[sites.relay]
[[links]]
from = "earth"
to = "earth"
delay_ms = 0.05
[[links]]
from = "relay"
to = "relay"
delay_ms = 0.05
[[links]]
from = "earth"
to = "relay"
geometry = ["dsn", "relay"]
rate_mbps = {rate}
queue_bytes = 1000000000000
"#,
            rate = 100_000
        ),
        "bench.toml",
    )
    .expect("bench profile");
    let mut model = profile.link_model(0, 1);
    let mut now = Duration::ZERO;
    c.bench_function("link_model_on_packet_geometry_link", |b| {
        b.iter(|| {
            now += Duration::from_micros(1);
            black_box(model.on_packet(black_box(now), 1200))
        })
    });
    c.bench_function("geometry_direct_sample_dsn_relay", |b| {
        b.iter(|| black_box(link.sample(black_box(epoch.plus_seconds(1234.5)))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
