//! The host's share of a run: what this machine did to it, measured, so that a report can
//! say when the host, not the link model, set a number.
//!
//! A [`HostSample`] reads, at one instant, what the host did to the process so far:
//! * the process's CPU time and the time its threads waited for a core (Linux
//!   `/proc/self/task/*/schedstat`: run time and run-queue wait, in ns);
//! * the delay line's lateness ([`SchedulerStats`]: datagrams delivered and the sum of how late
//!   the scheduler released them against their due instant, wall time);
//! * datagrams the kernel dropped because a receiving socket's buffer was full (the `drops`
//!   column of `/proc/net/udp` for the run's own ports).
//!
//! [`HostShare::between`] turns two samples into rates over the interval. It lives in the
//! fabric because both measure it: the in-process benches around their endpoints, and every
//! node process around each point of an all-reduce job (reported to the controller with the
//! point, so a bench attached to a cluster can judge rows it did not run). Judging a share
//! against a model is the bench's (`spacefabric-bench`'s `host_share`). Pure arithmetic apart
//! from [`HostSample::now`].

use std::collections::BTreeSet;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::emu::{EmulatedSocket, SchedulerMode, SchedulerStats};

/// What the host had done to the process at one instant.
#[derive(Debug, Clone, Copy)]
pub struct HostSample {
    wall: Instant,
    /// CPU time of the process's live threads, ns (None off Linux).
    cpu_ns: Option<u64>,
    /// Run-queue wait of the process's live threads, ns.
    runq_wait_ns: Option<u64>,
    sched: SchedulerStats,
    /// Receive-buffer drops of the run's sockets (None when /proc/net/udp is unreadable).
    rcvbuf_drops: Option<u64>,
}

impl HostSample {
    /// Reads the process's counters now; `sched` is the delay line's, `ports` the run's UDP
    /// ports on this host.
    pub fn now(sched: SchedulerStats, ports: &BTreeSet<u16>) -> Self {
        let (cpu_ns, runq_wait_ns) = match schedstat() {
            Some((c, w)) => (Some(c), Some(w)),
            None => (None, None),
        };
        Self {
            wall: Instant::now(),
            cpu_ns,
            runq_wait_ns,
            sched,
            rcvbuf_drops: udp_drops(ports),
        }
    }
}

/// Sums `/proc/self/task/*/schedstat` (run ns, wait ns, slices) over the live threads.
fn schedstat() -> Option<(u64, u64)> {
    let mut run = 0u64;
    let mut wait = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        if let (Some(Some(r)), Some(Some(w))) = (fields.next(), fields.next()) {
            run = run.saturating_add(r);
            wait = wait.saturating_add(w);
        }
    }
    Some((run, wait))
}

/// Sums the `drops` column of /proc/net/udp and /proc/net/udp6 over sockets bound to `ports`.
fn udp_drops(ports: &BTreeSet<u16>) -> Option<u64> {
    if ports.is_empty() {
        return Some(0);
    }
    let mut total = None;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let sum: u64 = text
            .lines()
            .skip(1)
            .filter_map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let port = cols.get(1)?.rsplit(':').next()?;
                let port = u16::from_str_radix(port, 16).ok()?;
                if !ports.contains(&port) {
                    return None;
                }
                cols.last()?.parse::<u64>().ok()
            })
            .sum();
        total = Some(total.unwrap_or(0) + sum);
    }
    total
}

/// The host's share of one interval of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostShare {
    /// Wall-clock length of the interval, s.
    pub wall_s: f64,
    /// Process CPU time over wall time × usable cores (1.0 = every core busy with this run).
    pub cpu_util: Option<f64>,
    /// Usable cores.
    pub cores: usize,
    /// Run-queue wait of the process's threads over wall time.
    pub runq_wait_share: Option<f64>,
    /// Datagrams the delay line released in the interval.
    pub delay_line_datagrams: u64,
    /// Their mean lateness against their due instant, µs.
    pub delay_line_mean_late_us: f64,
    /// Datagrams the kernel dropped on full receive buffers of the run's sockets.
    pub rcvbuf_drops: Option<u64>,
}

impl HostShare {
    /// The share between two samples of the same run.
    pub fn between(a: &HostSample, b: &HostSample) -> Self {
        let wall = b.wall.saturating_duration_since(a.wall).as_secs_f64();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_wall = |x: Option<u64>, y: Option<u64>| match (x, y) {
            (Some(x), Some(y)) if wall > 0.0 => Some(y.saturating_sub(x) as f64 / 1e9 / wall),
            _ => None,
        };
        let delivered = b.sched.delivered.saturating_sub(a.sched.delivered);
        let late = b
            .sched
            .late_nanos_sum
            .saturating_sub(a.sched.late_nanos_sum);
        Self {
            wall_s: wall,
            cpu_util: per_wall(a.cpu_ns, b.cpu_ns).map(|u| u / cores as f64),
            cores,
            runq_wait_share: per_wall(a.runq_wait_ns, b.runq_wait_ns),
            delay_line_datagrams: delivered,
            delay_line_mean_late_us: if delivered == 0 {
                0.0
            } else {
                late as f64 / delivered as f64 / 1e3
            },
            rcvbuf_drops: match (a.rcvbuf_drops, b.rcvbuf_drops) {
                (Some(x), Some(y)) => Some(y.saturating_sub(x)),
                _ => None,
            },
        }
    }
}

/// The delay line's counters seen by `sockets`: the process-wide precise scheduler's (every
/// socket on it reports the same one), or the sum over the sockets' own tokio-timer
/// schedulers (paused clock).
pub fn delay_line_stats<'a>(
    sockets: impl IntoIterator<Item = &'a EmulatedSocket>,
) -> SchedulerStats {
    let mut sum = SchedulerStats::default();
    for sock in sockets {
        let Some(s) = sock.scheduler_stats() else {
            continue;
        };
        if sock.scheduler_mode() == SchedulerMode::Precise {
            return s;
        }
        sum.delivered += s.delivered;
        sum.wakeups += s.wakeups;
        sum.spin_nanos += s.spin_nanos;
        sum.late_nanos_sum += s.late_nanos_sum;
        sum.late_nanos_max = sum.late_nanos_max.max(s.late_nanos_max);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_of_this_process_read_on_linux() {
        let ports = BTreeSet::new();
        let a = HostSample::now(SchedulerStats::default(), &ports);
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let b = HostSample::now(SchedulerStats::default(), &ports);
        let s = HostShare::between(&a, &b);
        if cfg!(target_os = "linux") {
            assert!(s.cpu_util.is_some_and(|u| u > 0.0), "{s:?}");
        }
        assert_eq!(s.rcvbuf_drops.unwrap_or(0), 0);
    }
}
