//! Metric families as data: the name, Prometheus type and HELP text of every metric a
//! spacefabric process exports, so each binary describes all of its families (HELP and TYPE
//! lines, which `promtool check metrics` requires), makes its counters exist at 0 from the
//! start, and exports a `spacefabric_build_info` gauge. The lists themselves live with each
//! binary (the controller's, the node's); the checks used by their tests live here.

/// A metric family's kind, as Prometheus' TYPE line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic count.
    Counter,
    /// Value that goes up and down.
    Gauge,
    /// Distribution (`_bucket`, `_sum`, `_count`).
    Histogram,
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct MetricSpec {
    /// Full name.
    pub name: &'static str,
    /// Its kind.
    pub kind: MetricKind,
    /// HELP text.
    pub help: &'static str,
    /// Label sets that exist from the start (empty: one unlabelled series).
    pub initial_labels: &'static [&'static [(&'static str, &'static str)]],
}

/// The build-info gauge (value 1, labels `version` and `git_commit`).
pub const BUILD_INFO: &str = "spacefabric_build_info";

/// Process metrics every spacefabric binary's `/metrics` carries, with the names and meanings
/// of the Prometheus client libraries' process collector. They are not recorded through the
/// `metrics` facade: the endpoint reads them from /proc at each scrape and renders them itself
/// (spacefabric-cli's process_metrics), because a CPU-seconds counter is fractional.
pub const PROCESS_METRICS: &[MetricSpec] = &[
    MetricSpec {
        name: "process_cpu_seconds_total",
        kind: MetricKind::Counter,
        help: "Total user and system CPU time spent by this process in seconds",
        initial_labels: &[],
    },
    MetricSpec {
        name: "process_resident_memory_bytes",
        kind: MetricKind::Gauge,
        help: "Resident memory size of this process in bytes",
        initial_labels: &[],
    },
    MetricSpec {
        name: "process_open_fds",
        kind: MetricKind::Gauge,
        help: "Number of open file descriptors of this process",
        initial_labels: &[],
    },
    MetricSpec {
        name: "process_start_time_seconds",
        kind: MetricKind::Gauge,
        help: "Start time of this process since the Unix epoch in seconds",
        initial_labels: &[],
    },
];

/// Sets the build-info gauge to 1 with this build's version and `git_commit` (the binaries
/// know it: spacefabric-cli bakes it in at build time and calls this when it installs the
/// recorder).
pub fn register_build_info(git_commit: &str) {
    metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "git_commit" => git_commit.to_string(),
    )
    .set(1.0);
}

/// Describes every metric of `specs` and the build-info gauge to the global recorder, and
/// creates counters and gauges at 0 (histograms appear at their first sample).
pub fn describe_and_register(specs: &[MetricSpec]) {
    metrics::describe_gauge!(
        BUILD_INFO,
        "Always 1; labels say which build of spacefabric this process runs"
    );
    for spec in specs {
        match spec.kind {
            MetricKind::Counter => metrics::describe_counter!(spec.name, spec.help),
            MetricKind::Gauge => metrics::describe_gauge!(spec.name, spec.help),
            MetricKind::Histogram => metrics::describe_histogram!(spec.name, spec.help),
        }
        let label_sets: Vec<Vec<metrics::Label>> = if spec.initial_labels.is_empty() {
            vec![Vec::new()]
        } else {
            spec.initial_labels
                .iter()
                .map(|set| {
                    set.iter()
                        .map(|&(k, v)| metrics::Label::new(k, v))
                        .collect()
                })
                .collect()
        };
        for labels in label_sets {
            match spec.kind {
                MetricKind::Counter => metrics::counter!(spec.name, labels).increment(0),
                MetricKind::Gauge => metrics::gauge!(spec.name, labels).set(0.0),
                MetricKind::Histogram => {}
            }
        }
    }
}

/// Checks a Prometheus text exposition: every family that has samples has a `# HELP` and
/// a `# TYPE` line. Returns the families without them.
pub fn families_without_help_or_type(exposition: &str) -> Vec<String> {
    let mut helped = std::collections::BTreeSet::new();
    let mut typed = std::collections::BTreeMap::new();
    let mut sampled = std::collections::BTreeSet::new();
    for line in exposition.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#"), Some("HELP"), Some(name)) => {
                helped.insert(name.to_string());
            }
            (Some("#"), Some("TYPE"), Some(name)) => {
                typed.insert(name.to_string(), words.next().unwrap_or("").to_string());
            }
            (Some(first), _, _) if !first.starts_with('#') => {
                let name = first.split('{').next().unwrap_or(first);
                sampled.insert(name.to_string());
            }
            _ => {}
        }
    }
    sampled
        .into_iter()
        .filter_map(|name| {
            // A histogram's or summary's samples carry suffixes on the family name.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s).filter(|f| {
                        matches!(
                            typed.get(*f).map(String::as_str),
                            Some("histogram" | "summary")
                        )
                    })
                })
                .unwrap_or(&name)
                .to_string();
            (!helped.contains(&family) || !typed.contains_key(&family)).then_some(family)
        })
        .collect()
}

/// Metric names recorded by `counter!`, `gauge!` and `histogram!` calls in `source` (a
/// Rust file's text): what a test checks against the catalog.
pub fn recorded_names(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for mac in ["counter!(", "gauge!(", "histogram!("] {
        for (i, _) in source.match_indices(mac) {
            let rest = source[i + mac.len()..].trim_start();
            if let Some(lit) = rest.strip_prefix('"')
                && let Some(end) = lit.find('"')
            {
                out.push(lit[..end].to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_catches_a_family_without_help() {
        let text = "# TYPE a_total counter\na_total 1\n# HELP b x\n# TYPE b gauge\nb 2\n";
        assert_eq!(families_without_help_or_type(text), ["a_total"]);
        let hist = "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_sum 0\nh_count 0\n";
        assert!(families_without_help_or_type(hist).is_empty());
    }

    #[test]
    fn recorded_names_are_found_in_source() {
        let src =
            "metrics::counter!(\"a_total\").increment(1); metrics::gauge!(\n  \"b\", \"l\" => x);";
        assert_eq!(recorded_names(src), ["a_total", "b"]);
    }
}
