//! `fidelity --through-forwarder`: node pairs behind a shared trunk go through the real
//! forwarder (in the bench's process, on its own UDP socket), every probe's model arrival is
//! the forwarder's verdict moved back to the send, and the trunk's counters are the
//! forwarder's. On the virtual clock the only error left is the timer grain, so an error of
//! a light delay (a verdict taken against the wrong instant) or a lost probe fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{bench, run_json};

#[test]
fn fidelity_through_the_forwarder_carries_every_cross_site_probe_on_time() {
    let (_, v) = run_json(bench().args([
        "fidelity",
        "--profile",
        "earth-moon",
        "--nodes",
        "4",
        "--duration",
        "2",
        "--clock",
        "virtual",
        "--through-forwarder",
    ]));
    assert_eq!(v["through_forwarder"], true, "{v}");
    let fwd = &v["forwarder"];
    assert!(fwd["received_datagrams"].as_u64().unwrap() > 0, "{fwd}");
    let rejected: u64 = fwd["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_u64().unwrap())
        .sum();
    assert_eq!(rejected, 0, "{fwd}");
    let classes = v["classes"].as_array().unwrap();
    for class in ["earth->moon", "moon->earth"] {
        let c = classes.iter().find(|c| c["class"] == class).unwrap();
        let sent = c["probes_sent"].as_u64().unwrap();
        assert!(sent > 0, "{c}");
        assert_eq!(c["probes_received"].as_u64().unwrap(), sent, "{c}");
        // Never faster than the link, and on time to the virtual clock's grain.
        let cfg = c["configured_one_way_ms"].as_f64().unwrap();
        assert!(c["latency_ms_p50"].as_f64().unwrap() >= cfg, "{c}");
        assert!(c["error_ms_max"].as_f64().unwrap() < 0.1, "{c}");
        // The class's traffic is the forwarder's trunk's.
        let trunk = fwd["trunks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["label"] == format!("{class}#0"))
            .unwrap();
        assert_eq!(
            c["link_traffic"]["sent_datagrams"], trunk["traffic"]["sent_datagrams"],
            "{c}"
        );
        assert!(trunk["traffic"]["sent_datagrams"].as_u64().unwrap() >= sent);
    }
}

#[test]
fn through_forwarder_refuses_an_added_outage_as_a_usage_error() {
    let out = bench()
        .args([
            "fidelity",
            "--profile",
            "earth-moon",
            "--through-forwarder",
            "--outage-period-s",
            "10",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--through-forwarder") && stderr.contains("--outage-period-s"),
        "{stderr}"
    );
}
