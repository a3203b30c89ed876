//! Every Prometheus metric the controller exports, in one list (name, type, HELP text),
//! registered at start-up by [`spacefabric_proto::metrics_catalog::describe_and_register`]:
//! HELP/TYPE on every family, counters at 0 from the start, `spacefabric_build_info`. A test
//! checks that every metric the controller's code records has an entry here.

use spacefabric_proto::metrics_catalog::{MetricKind, MetricSpec};

/// The controller's metrics.
pub const CONTROLLER_METRICS: &[MetricSpec] = &[
    MetricSpec {
        name: "spacefabric_controller_registrations_total",
        kind: MetricKind::Counter,
        help: "Node registrations accepted",
        initial_labels: &[],
    },
    MetricSpec {
        name: "spacefabric_controller_heartbeats_total",
        kind: MetricKind::Counter,
        help: "Heartbeats received from nodes",
        initial_labels: &[],
    },
    MetricSpec {
        name: "spacefabric_controller_nodes_declared_dead_total",
        kind: MetricKind::Counter,
        help: "Nodes declared dead after missing their heartbeats",
        initial_labels: &[],
    },
    MetricSpec {
        name: "spacefabric_controller_unauthenticated_total",
        kind: MetricKind::Counter,
        help: "Requests refused for a missing or wrong join token",
        initial_labels: &[],
    },
    MetricSpec {
        name: "spacefabric_controller_jobs_submitted_total",
        kind: MetricKind::Counter,
        help: "Jobs submitted",
        initial_labels: &[],
    },
    MetricSpec {
        name: "spacefabric_controller_jobs_finished_total",
        kind: MetricKind::Counter,
        help: "Jobs that reached a final state, by state (succeeded, failed, cancelled)",
        initial_labels: &[
            &[("state", "succeeded")],
            &[("state", "failed")],
            &[("state", "cancelled")],
        ],
    },
    MetricSpec {
        name: "spacefabric_controller_state_write_errors_total",
        kind: MetricKind::Counter,
        help: "Failed writes of the controller's persisted state (retried on the next change)",
        initial_labels: &[],
    },
    MetricSpec {
        name: "spacefabric_controller_state_bytes_written_total",
        kind: MetricKind::Counter,
        help: "Bytes the controller wrote to its state dir (change-log lines and snapshots)",
        initial_labels: &[],
    },
    MetricSpec {
        name: "spacefabric_controller_plan_version",
        kind: MetricKind::Gauge,
        help: "Version of the current cluster plan (bumped on every membership change)",
        initial_labels: &[],
    },
    MetricSpec {
        name: "spacefabric_controller_nodes_in_plan",
        kind: MetricKind::Gauge,
        help: "Nodes in the current cluster plan",
        initial_labels: &[],
    },
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use spacefabric_proto::metrics_catalog::{
        describe_and_register, families_without_help_or_type, recorded_names,
    };

    #[test]
    fn every_family_has_help_and_type_and_counters_start_at_zero() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe_and_register(CONTROLLER_METRICS);
            spacefabric_proto::metrics_catalog::register_build_info("test");
        });
        let text = handle.render();
        assert_eq!(
            families_without_help_or_type(&text),
            Vec::<String>::new(),
            "{text}"
        );
        for spec in CONTROLLER_METRICS {
            assert!(
                text.contains(&format!("# HELP {} ", spec.name)),
                "{}\n{text}",
                spec.name
            );
        }
        assert!(
            text.contains("spacefabric_controller_registrations_total 0"),
            "{text}"
        );
        assert!(
            text.contains("spacefabric_controller_jobs_finished_total{state=\"failed\"} 0"),
            "{text}"
        );
        assert!(text.contains("spacefabric_build_info{"), "{text}");
    }

    #[test]
    fn every_metric_the_controller_records_is_in_the_catalog() {
        let sources = [
            include_str!("service.rs"),
            include_str!("server.rs"),
            include_str!("cli.rs"),
            include_str!("core.rs"),
        ];
        let names: Vec<String> = sources.iter().flat_map(|s| recorded_names(s)).collect();
        assert!(names.len() >= 9, "{names:?}");
        for name in names {
            assert!(
                CONTROLLER_METRICS.iter().any(|m| m.name == name),
                "{name} is recorded but has no entry (HELP text) in CONTROLLER_METRICS"
            );
        }
    }
}
