//! Every Prometheus metric a node exports, in one list (name, type, HELP text), registered
//! at start-up with [`spacefabric_proto::metrics_catalog::describe_and_register`] together
//! with the emulated socket's families ([`spacefabric_fabric::emu::describe_metrics`]):
//! HELP/TYPE on every family, counters at 0 from the start, `spacefabric_build_info`. A test
//! checks that every metric the node's code records has an entry.

use spacefabric_proto::metrics_catalog::{MetricKind, MetricSpec};

/// The node's own metrics (the emulated socket's are described by the fabric crate).
pub const NODE_METRICS: &[MetricSpec] = &[
    MetricSpec {
        name: "spacefabric_node_registrations_total",
        kind: MetricKind::Counter,
        help: "Registrations of this node with the controller (first one and re-registrations)",
        initial_labels: &[],
    },
    MetricSpec {
        name: "spacefabric_node_heartbeat_rtt_seconds",
        kind: MetricKind::Histogram,
        help: "Round trip of a heartbeat to the controller, seconds",
        initial_labels: &[],
    },
    MetricSpec {
        name: "spacefabric_node_jobs_total",
        kind: MetricKind::Counter,
        help: "Jobs this node ran, by kind (all_reduce, train, ping) and outcome (ok = true/false)",
        initial_labels: &[
            &[("kind", "all_reduce"), ("ok", "true")],
            &[("kind", "all_reduce"), ("ok", "false")],
            &[("kind", "train"), ("ok", "true")],
            &[("kind", "train"), ("ok", "false")],
            &[("kind", "ping"), ("ok", "true")],
            &[("kind", "ping"), ("ok", "false")],
        ],
    },
];

/// Describes and registers the node's metrics and the emulated socket's.
pub fn describe_and_register() {
    spacefabric_proto::metrics_catalog::describe_and_register(NODE_METRICS);
    spacefabric_fabric::emu::describe_metrics();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use spacefabric_proto::metrics_catalog::{families_without_help_or_type, recorded_names};

    #[test]
    fn every_family_has_help_and_type_and_counters_start_at_zero() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe_and_register();
            spacefabric_proto::metrics_catalog::register_build_info("test");
            // Families that only appear with their first sample.
            metrics::histogram!("spacefabric_node_heartbeat_rtt_seconds").record(0.1);
            for name in recorded_names(include_str!("../../fabric/src/emu/link_table.rs")) {
                if name.ends_with("_total") {
                    metrics::counter!(name, "link" => "0->1").increment(1);
                } else {
                    metrics::gauge!(name, "link" => "0->1").set(1.0);
                }
            }
        });
        let text = handle.render();
        assert_eq!(
            families_without_help_or_type(&text),
            Vec::<String>::new(),
            "{text}"
        );
        assert!(
            text.contains("spacefabric_node_registrations_total 0"),
            "{text}"
        );
        assert!(
            text.contains("spacefabric_node_jobs_total{kind=\"train\",ok=\"false\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("# HELP spacefabric_emu_datagrams_sent_total"),
            "{text}"
        );
        assert!(text.contains("spacefabric_build_info{"), "{text}");
    }

    #[test]
    fn every_metric_the_node_records_is_in_the_catalog() {
        let names = recorded_names(include_str!("agent.rs"));
        assert_eq!(names.len(), NODE_METRICS.len(), "{names:?}");
        for name in names {
            assert!(
                NODE_METRICS.iter().any(|m| m.name == name),
                "{name} is recorded but has no entry (HELP text) in NODE_METRICS"
            );
        }
    }
}
