//! The host's share of a benchmark result: did this machine, rather than the link model,
//! set the number?
//!
//! A [`HostSample`] reads, at one instant, what the host did to the run so far:
//! * the process's CPU time and the time its threads waited for a core (Linux
//!   `/proc/self/task/*/schedstat`: run time and run-queue wait, in ns);
//! * the delay line's lateness (`SchedulerStats`: datagrams delivered and the sum of how late
//!   the scheduler released them against their due instant);
//! * datagrams the kernel dropped because a receiving socket's buffer was full (the `drops`
//!   column of `/proc/net/udp` for the run's own ports).
//!
//! [`HostShare::between`] turns two samples into rates over the interval, and [`judge`] marks
//! a result host-bound when it missed its model by more than [`MODEL_TOLERANCE`] *and* the
//! host shows a cause: the process saturated the cores it may use, its threads waited for a
//! core, the delay line released datagrams later than the link's delay budget, or a receive
//! buffer overflowed. Under `--clock virtual` CPU costs no emulated time, so nothing is
//! host-bound there (the delay line's lateness is then tokio's 1 ms timer grain, reported
//! but not a host effect). Pure arithmetic apart from [`HostSample::now`].

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;
use spacefabric_fabric::emu::{EmulatedSocket, SchedulerMode, SchedulerStats};

use crate::clock::ClockMode;

/// A result further than this above its model (5 %) may be host-bound.
pub(crate) const MODEL_TOLERANCE: f64 = 0.05;
/// CPU time over wall time × usable cores at or above this: the process saturated the host.
pub(crate) const CPU_SATURATED: f64 = 0.9;
/// Run-queue wait of all threads over wall time at or above this: threads waited for a core.
pub(crate) const RUNQ_WAIT_SHARE: f64 = 0.1;
/// The delay line's mean lateness may be this share of the smallest one-way link delay.
pub(crate) const LATENESS_SHARE_OF_DELAY: f64 = 0.05;
/// ... but never less than this (timer and wake-up noise of an idle host).
pub(crate) const LATENESS_FLOOR: Duration = Duration::from_micros(20);

/// What the host had done to the process at one instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostSample {
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
    pub(crate) fn now(sched: SchedulerStats, ports: &BTreeSet<u16>) -> Self {
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub(crate) struct HostShare {
    /// Wall-clock length of the interval, s.
    pub(crate) wall_s: f64,
    /// Process CPU time over wall time × usable cores (1.0 = every core busy with this run).
    pub(crate) cpu_util: Option<f64>,
    /// Usable cores.
    pub(crate) cores: usize,
    /// Run-queue wait of the process's threads over wall time.
    pub(crate) runq_wait_share: Option<f64>,
    /// Datagrams the delay line released in the interval.
    pub(crate) delay_line_datagrams: u64,
    /// Their mean lateness against their due instant, µs.
    pub(crate) delay_line_mean_late_us: f64,
    /// Datagrams the kernel dropped on full receive buffers of the run's sockets.
    pub(crate) rcvbuf_drops: Option<u64>,
}

impl HostShare {
    /// The share between two samples of the same run.
    pub(crate) fn between(a: &HostSample, b: &HostSample) -> Self {
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

/// Whether the host bounded a result, why, and what would avoid it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct HostVerdict {
    /// The result missed its model and the host shows a cause.
    pub(crate) host_bound: bool,
    /// The causes seen (`cpu`, `cpu-wait`, `late`, `rcvbuf`), whether or not the result missed.
    pub(crate) causes: Vec<&'static str>,
    /// What would take the host out of the result (empty when not host-bound).
    pub(crate) avoid_with: String,
}

impl HostVerdict {
    /// The table cell: `-`, or `HOST:` and the causes (`HOST:cpu,late`).
    pub(crate) fn cell(&self) -> String {
        if self.host_bound {
            format!("HOST:{}", self.causes.join(","))
        } else {
            "-".to_string()
        }
    }
}

/// Judges one result: `measured_s` against `model_s` (None: no model, e.g. emulation off),
/// with the host's `share` over the interval it was measured in; `min_delay` is the smallest
/// one-way delay of the links the run used (the delay budget of the delay line).
pub(crate) fn judge(
    clock: ClockMode,
    share: &HostShare,
    measured_s: f64,
    model_s: Option<f64>,
    min_delay: Duration,
) -> HostVerdict {
    let mut causes = Vec::new();
    if clock == ClockMode::Real {
        if share.cpu_util.is_some_and(|u| u >= CPU_SATURATED) {
            causes.push("cpu");
        }
        if share.runq_wait_share.is_some_and(|w| w >= RUNQ_WAIT_SHARE) {
            causes.push("cpu-wait");
        }
        let budget = min_delay
            .mul_f64(LATENESS_SHARE_OF_DELAY)
            .max(LATENESS_FLOOR);
        if share.delay_line_datagrams > 0 && share.delay_line_mean_late_us > budget_us(budget) {
            causes.push("late");
        }
        if share.rcvbuf_drops.is_some_and(|d| d > 0) {
            causes.push("rcvbuf");
        }
    }
    let missed = match model_s {
        Some(m) => measured_s > m * (1.0 + MODEL_TOLERANCE),
        None => true,
    };
    let host_bound = missed && !causes.is_empty();
    HostVerdict {
        host_bound,
        causes,
        avoid_with: if host_bound {
            "--clock virtual".to_string()
        } else {
            String::new()
        },
    }
}

fn budget_us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One judged row as the `train`, `fidelity` and `transfer` JSON carry it (the same fields as
/// the all-reduce JSON's `host`): the host's share over the row's interval and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct HostMark {
    /// CPU, run-queue wait, delay-line lateness and receive-buffer drops over the row.
    pub(crate) share: HostShare,
    /// `host_bound`, `causes`, `avoid_with`.
    #[serde(flatten)]
    pub(crate) verdict: HostVerdict,
}

impl HostMark {
    /// Judges one row measured between `before` and `after` (see [`judge`]).
    pub(crate) fn judge(
        clock: ClockMode,
        before: &HostSample,
        after: &HostSample,
        measured_s: f64,
        model_s: Option<f64>,
        min_delay: Duration,
    ) -> Self {
        let share = HostShare::between(before, after);
        let verdict = judge(clock, &share, measured_s, model_s, min_delay);
        Self { share, verdict }
    }
}

/// The delay line's counters seen by `sockets`: the process-wide precise scheduler's (every
/// socket on it reports the same one), or the sum over the sockets' own tokio-timer
/// schedulers (paused clock).
pub(crate) fn delay_line_stats<'a>(
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

/// The report's closing line over judged rows: `# Host-bound rows: B of J (clock C) - note`;
/// empty when no row was judged.
pub(crate) fn footer_line(clock: ClockMode, bound: usize, judged: usize) -> String {
    if judged == 0 {
        return String::new();
    }
    format!(
        "# Host-bound rows: {bound} of {judged} (clock {clock}){}\n",
        footer_note(clock, bound, judged)
    )
}

/// What the footer adds to the host-bound count.
pub(crate) fn footer_note(clock: ClockMode, bound: usize, judged: usize) -> String {
    if clock == ClockMode::Virtual {
        " - CPU costs no emulated time on the virtual clock".to_string()
    } else if bound == 0 {
        " - the links and the protocol set every number".to_string()
    } else if bound == judged {
        " - EVERY row was bounded by this host, not the link model: rerun with --clock virtual"
            .to_string()
    } else {
        " - rows marked HOST missed their model because of this host (cpu: cores saturated, cpu-wait: threads waited for a core, late: delay line behind its budget, rcvbuf: receive buffer overflow); --clock virtual avoids it".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(cpu: f64, wait: f64, late_us: f64, drops: u64) -> HostShare {
        HostShare {
            wall_s: 1.0,
            cpu_util: Some(cpu),
            cores: 2,
            runq_wait_share: Some(wait),
            delay_line_datagrams: 100,
            delay_line_mean_late_us: late_us,
            rcvbuf_drops: Some(drops),
        }
    }

    #[test]
    fn a_missed_model_with_a_host_cause_is_host_bound() {
        let d = Duration::from_micros(50);
        let v = judge(
            ClockMode::Real,
            &share(0.95, 0.0, 1.0, 0),
            1.2,
            Some(1.0),
            d,
        );
        assert!(v.host_bound);
        assert_eq!(v.causes, ["cpu"]);
        assert_eq!(v.cell(), "HOST:cpu");
        assert_eq!(v.avoid_with, "--clock virtual");
        let v = judge(
            ClockMode::Real,
            &share(0.2, 0.5, 900.0, 3),
            1.2,
            Some(1.0),
            d,
        );
        assert_eq!(v.causes, ["cpu-wait", "late", "rcvbuf"]);
    }

    #[test]
    fn a_result_on_its_model_or_without_a_cause_is_not() {
        let d = Duration::from_micros(50);
        // On the model although the CPU was saturated.
        let v = judge(
            ClockMode::Real,
            &share(0.99, 0.0, 0.0, 0),
            1.04,
            Some(1.0),
            d,
        );
        assert!(!v.host_bound);
        assert_eq!(v.causes, ["cpu"]);
        // Off the model, but the host was idle and punctual: the network's effect.
        let v = judge(ClockMode::Real, &share(0.1, 0.0, 5.0, 0), 2.0, Some(1.0), d);
        assert!(!v.host_bound);
        assert_eq!(v.cell(), "-");
        // The virtual clock: CPU costs no emulated time.
        let v = judge(
            ClockMode::Virtual,
            &share(1.0, 1.0, 500.0, 0),
            2.0,
            Some(1.0),
            d,
        );
        assert!(!v.host_bound && v.causes.is_empty());
    }

    #[test]
    fn lateness_is_judged_against_the_links_delay() {
        // 5 % of 1.28 s is 64 ms: 2 ms late is within budget on earth-moon ...
        let v = judge(
            ClockMode::Real,
            &share(0.1, 0.0, 2000.0, 0),
            2.0,
            Some(1.0),
            Duration::from_millis(1280),
        );
        assert!(!v.host_bound);
        // ... and far beyond it on a 50 µs LAN link.
        let v = judge(
            ClockMode::Real,
            &share(0.1, 0.0, 2000.0, 0),
            2.0,
            Some(1.0),
            Duration::from_micros(50),
        );
        assert!(v.host_bound);
        assert_eq!(v.causes, ["late"]);
    }

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
