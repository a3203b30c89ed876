//! The process metrics of the Prometheus client libraries' process collector
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`,
//! `process_start_time_seconds`), read from Linux's /proc at each scrape and rendered with the
//! HELP and TYPE of the catalog (`spacefabric_proto::metrics_catalog::PROCESS_METRICS`).
//! Parsing is separate from reading so it is tested on fixed text. Elsewhere than Linux the
//! files do not exist and the families are left out.

use std::fmt::Write as _;

use spacefabric_proto::metrics_catalog::{MetricKind, PROCESS_METRICS};

/// Clock ticks per second of the times in /proc/<pid>/stat: Linux reports them in USER_HZ,
/// which is 100 on every architecture it supports for user space.
const USER_HZ: f64 = 100.0;

/// One reading of the process metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessSample {
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_memory_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Process start, seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// Why /proc could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessMetricsError {
    /// A /proc file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A /proc file did not have the expected field.
    #[error("{path}: no {field}")]
    Parse {
        /// The file.
        path: &'static str,
        /// What was missing or malformed.
        field: &'static str,
    },
}

fn read(path: &'static str) -> Result<String, ProcessMetricsError> {
    std::fs::read_to_string(path).map_err(|source| ProcessMetricsError::Read { path, source })
}

/// Reads this process's metrics from /proc.
pub fn sample() -> Result<ProcessSample, ProcessMetricsError> {
    let stat = read("/proc/self/stat")?;
    let (utime, stime, start_ticks) = parse_stat(&stat).ok_or(ProcessMetricsError::Parse {
        path: "/proc/self/stat",
        field: "utime, stime and starttime",
    })?;
    let rss_kib =
        parse_vm_rss_kib(&read("/proc/self/status")?).ok_or(ProcessMetricsError::Parse {
            path: "/proc/self/status",
            field: "VmRSS",
        })?;
    let boot_time = parse_boot_time(&read("/proc/stat")?).ok_or(ProcessMetricsError::Parse {
        path: "/proc/stat",
        field: "btime",
    })?;
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map_err(|source| ProcessMetricsError::Read {
            path: "/proc/self/fd",
            source,
        })?
        .count();
    Ok(ProcessSample {
        cpu_seconds: (utime.saturating_add(stime)) as f64 / USER_HZ,
        resident_memory_bytes: rss_kib.saturating_mul(1024),
        // read_dir itself holds one descriptor open while counting.
        open_fds: u64::try_from(open_fds.saturating_sub(1)).unwrap_or(u64::MAX),
        start_time_seconds: boot_time as f64 + start_ticks as f64 / USER_HZ,
    })
}

/// (utime, stime, starttime) in clock ticks from /proc/<pid>/stat. The command name (field 2)
/// is in parentheses and may contain spaces and parentheses, so fields count from the last ')'.
pub fn parse_stat(stat: &str) -> Option<(u64, u64, u64)> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // after_comm starts at field 3 (state): field n is at index n - 3.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)?, field(15)?, field(22)?))
}

/// `VmRSS:` of /proc/<pid>/status, in KiB.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value = words.next()?.parse().ok()?;
    (words.next()? == "kB").then_some(value)
}

/// `btime` (boot time, seconds since the Unix epoch) of /proc/stat.
pub fn parse_boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Appends the four families in Prometheus text format (HELP, TYPE, sample).
pub fn render(sample: &ProcessSample, out: &mut String) {
    for spec in PROCESS_METRICS {
        let value = match spec.name {
            "process_cpu_seconds_total" => sample.cpu_seconds,
            "process_resident_memory_bytes" => sample.resident_memory_bytes as f64,
            "process_open_fds" => sample.open_fds as f64,
            "process_start_time_seconds" => sample.start_time_seconds,
            _ => continue,
        };
        let kind = match spec.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n",
            name = spec.name,
            help = spec.help,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacefabric_proto::metrics_catalog::families_without_help_or_type;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        // comm "a) b (c" contains spaces and parentheses.
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 \
                    12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((250, 50, 12345)));
        assert_eq!(parse_stat("4242 (x) S 1"), None);
    }

    #[test]
    fn rss_and_boot_time_are_found() {
        let status = "Name:\tnode\nVmPeak:\t  9000 kB\nVmRSS:\t  2048 kB\n";
        assert_eq!(parse_vm_rss_kib(status), Some(2048));
        assert_eq!(parse_vm_rss_kib("VmRSS: 12 MB\n"), None);
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn rendered_families_have_help_and_type() {
        let mut text = String::new();
        render(
            &ProcessSample {
                cpu_seconds: 1.5,
                resident_memory_bytes: 4096,
                open_fds: 7,
                start_time_seconds: 1.7e9,
            },
            &mut text,
        );
        assert!(families_without_help_or_type(&text).is_empty(), "{text}");
        for spec in PROCESS_METRICS {
            assert!(text.contains(&format!("\n{} ", spec.name)), "{}", spec.name);
        }
        assert!(text.contains("process_cpu_seconds_total 1.5\n"));
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_can_be_sampled() {
        let s = sample().expect("/proc is readable on Linux");
        assert!(s.resident_memory_bytes > 0);
        assert!(
            s.open_fds >= 3,
            "stdin, stdout, stderr at least: {}",
            s.open_fds
        );
        assert!(s.start_time_seconds > 1.0e9);
    }
}
