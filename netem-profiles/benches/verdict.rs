//! Cost of one verdict: nanoseconds per datagram of [`LinkModel::on_packet`] on the shipped
//! earth-moon cross link (rate-limited, lossless), the LAN link, and a lossy, jittery,
//! duplicating link with outages. Datagrams are handed over slightly slower than the link
//! serialises them, so the queue stays in its steady state and every call takes the full
//! path (outage check, loss draw, serialisation, delay, jitter, duplication).
//!
//! Run: `cargo bench -p netem-profiles --bench verdict -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netem_profiles::{LinkModel, Profile, shipped_profiles_dir};

const PAYLOAD: usize = 1200;

fn shipped_link(name: &str, from: &str, to: &str) -> LinkModel {
    let path = shipped_profiles_dir().join(format!("{name}.toml"));
    let profile = Profile::from_file(&path).expect("shipped profile");
    let (a, b) = (
        profile.site_id(from).expect("site"),
        profile.site_id(to).expect("site"),
    );
    profile.link_model(a, b)
}

const NOISY: &str = r#"
name = "noisy"
seed = 7
[sites.a]
[sites.b]
[[links]]
from = "a"
to = "a"
delay_ms = 0.05
[[links]]
from = "b"
to = "b"
delay_ms = 0.05
[[links]]
from = "a"
to = "b"
delay_ms = 20
rate_mbps = 200
duplicate = 0.01
loss = { model = "gilbert-elliott", p = 0.01, r = 0.3, h = 0.1, k = 0.999 }
jitter = { dist = "normal", ms = 2, reorder = false }
[[links.outages.periodic]]
period_s = 600
duration_s = 30
phase_s = 300
[[links.outages.windows]]
start_s = 1000
end_s = 1010
"#;

/// Time between hand-overs: 2 % slower than the link serialises a datagram.
fn pacing(link: &LinkModel) -> Duration {
    let bits = ((PAYLOAD + netem_profiles::UDP_IP_OVERHEAD_BYTES) * 8) as f64;
    let rate = link.spec().rate_bps.map_or(1e12, |r| r as f64);
    Duration::from_secs_f64(bits / rate * 1.02)
}

fn bench(c: &mut Criterion) {
    let noisy = Profile::parse(NOISY, "bench").expect("bench profile");
    let cases = [
        (
            "earth-moon cross link",
            shipped_link("earth-moon", "earth", "moon"),
        ),
        ("lan link", shipped_link("lan", "lan", "lan")),
        ("lossy jittery link with outages", noisy.link_model(0, 1)),
    ];
    let mut group = c.benchmark_group("on_packet");
    group.throughput(Throughput::Elements(1));
    for (name, link) in cases {
        let step = pacing(&link);
        let mut link = link;
        let mut now = Duration::ZERO;
        group.bench_function(name, |b| {
            b.iter(|| {
                now += step;
                black_box(link.on_packet(black_box(now), black_box(PAYLOAD)))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
