//! The host's share of a benchmark result: did this machine, rather than the link model,
//! set the number?
//!
//! What the host did to a run is measured by the fabric ([`HostSample`], [`HostShare`]: CPU,
//! run-queue wait, the delay line's lateness, receive-buffer drops; the nodes of a cluster
//! measure the same around each all-reduce point and report it with the point). Here the
//! bench judges it: [`judge`] marks a result host-bound when it missed its model by more than
//! [`MODEL_TOLERANCE`] *and* the host shows a cause: the process saturated the cores it may
//! use, its threads waited for a core, the delay line released datagrams later than the
//! link's delay budget, or a receive buffer overflowed. Under `--clock virtual` CPU costs no
//! emulated time, so nothing is host-bound there (the delay line's lateness is then tokio's
//! 1 ms timer grain, reported but not a host effect). Pure.

use std::time::Duration;

use serde::Serialize;
pub(crate) use spacefabric_fabric::host_load::{HostSample, HostShare, delay_line_stats};

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

/// The ranks' shares of one point combined into the worst one: the highest CPU use,
/// run-queue wait and delay-line lateness of any rank, the datagrams and receive-buffer drops
/// of all. A row is host-bound when any rank's host held it back, since the slowest rank
/// sets an iteration's time. `None` when no rank measured its host (older nodes).
pub(crate) fn worst_of<'a>(shares: impl IntoIterator<Item = &'a HostShare>) -> Option<HostShare> {
    let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    shares.into_iter().fold(None, |acc: Option<HostShare>, s| {
        Some(match acc {
            None => *s,
            Some(a) => HostShare {
                wall_s: a.wall_s.max(s.wall_s),
                cpu_util: max(a.cpu_util, s.cpu_util),
                cores: a.cores.max(s.cores),
                runq_wait_share: max(a.runq_wait_share, s.runq_wait_share),
                delay_line_datagrams: a
                    .delay_line_datagrams
                    .saturating_add(s.delay_line_datagrams),
                delay_line_mean_late_us: a.delay_line_mean_late_us.max(s.delay_line_mean_late_us),
                rcvbuf_drops: match (a.rcvbuf_drops, s.rcvbuf_drops) {
                    (Some(x), Some(y)) => Some(x.saturating_add(y)),
                    (x, y) => x.or(y),
                },
            },
        })
    })
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

/// What takes the host out of a run's numbers: the virtual clock for a run in this process,
/// a larger time dilation for a cluster of node processes (which has no virtual clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Remedy {
    /// `--clock virtual`.
    VirtualClock,
    /// Restart the cluster with `--time-dilation` at least this K.
    TimeDilation(u32),
}

impl std::fmt::Display for Remedy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::VirtualClock => f.write_str("--clock virtual"),
            Self::TimeDilation(k) => write!(f, "--time-dilation {k}"),
        }
    }
}

/// The dilation that would take the host out of a row of a cluster run at dilation `k`:
/// the host's part of the time (measured − model) shrinks about as 1/K (the host's work is
/// the same, each emulated second lasts K wall seconds), so K must grow by the ratio of that
/// part to the tolerance, rounded up to a power of two. Never below `2k`: the row was
/// host-bound at `k`.
pub(crate) fn dilation_to_avoid(k: u32, measured_s: f64, model_s: f64) -> u32 {
    let allowed = model_s * MODEL_TOLERANCE;
    let excess = measured_s - model_s;
    let factor = if allowed > 0.0 && excess.is_finite() {
        (excess / allowed).max(2.0)
    } else {
        2.0
    };
    let wanted = (f64::from(k.max(1)) * factor)
        .min(f64::from(1u32 << 20))
        .ceil();
    // In range by the min above.
    (wanted as u32).next_power_of_two()
}

/// What the footer adds to the host-bound count.
pub(crate) fn footer_note(clock: ClockMode, bound: usize, judged: usize) -> String {
    footer_note_with(clock, bound, judged, Remedy::VirtualClock)
}

/// [`footer_note`] with the run's remedy named.
pub(crate) fn footer_note_with(
    clock: ClockMode,
    bound: usize,
    judged: usize,
    remedy: Remedy,
) -> String {
    let advice = match remedy {
        Remedy::VirtualClock => "rerun with --clock virtual".to_string(),
        Remedy::TimeDilation(_) => {
            format!("restart the cluster with {remedy} or more (each row's avoid_with in the JSON)")
        }
    };
    if clock == ClockMode::Virtual {
        " - CPU costs no emulated time on the virtual clock".to_string()
    } else if bound == 0 {
        " - the links and the protocol set every number".to_string()
    } else if bound == judged {
        format!(" - EVERY row was bounded by this host, not the link model: {advice}")
    } else {
        format!(
            " - rows marked HOST missed their model because of this host (cpu: cores saturated, cpu-wait: threads waited for a core, late: delay line behind its budget, rcvbuf: receive buffer overflow); {advice}"
        )
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
    fn the_worst_rank_sets_the_combined_share() {
        let a = share(0.2, 0.05, 10.0, 0);
        let b = share(0.5, 0.30, 3.0, 2);
        let w = worst_of([&a, &b]).unwrap();
        assert_eq!(w.cpu_util, Some(0.5));
        assert_eq!(w.runq_wait_share, Some(0.30));
        assert_eq!(w.delay_line_mean_late_us, 10.0);
        assert_eq!(w.delay_line_datagrams, 200);
        assert_eq!(w.rcvbuf_drops, Some(2));
        // One rank waiting for a core is enough to mark a row that missed its model.
        let v = judge(
            ClockMode::Real,
            &w,
            2.0,
            Some(1.0),
            Duration::from_millis(1),
        );
        assert_eq!(v.causes, ["cpu-wait", "rcvbuf"]);
        assert!(v.host_bound);
        assert_eq!(worst_of([]), None);
    }

    #[test]
    fn the_dilation_to_avoid_grows_with_the_hosts_part_of_the_time() {
        // 14.5x the model at K = 1: the host's part is 270 tolerances -> K = 512.
        assert_eq!(dilation_to_avoid(1, 0.3408, 0.0235), 512);
        // 1.33x at K = 16: ~6.7 tolerances -> 107 -> 128.
        assert_eq!(dilation_to_avoid(16, 0.03142, 0.02354), 128);
        // Just over the tolerance: at least double.
        assert_eq!(dilation_to_avoid(4, 1.06, 1.0), 8);
        // No model: double.
        assert_eq!(dilation_to_avoid(3, 1.0, 0.0), 8);
        assert_eq!(Remedy::TimeDilation(64).to_string(), "--time-dilation 64");
        assert!(
            footer_note_with(ClockMode::Real, 1, 1, Remedy::TimeDilation(64))
                .ends_with("restart the cluster with --time-dilation 64 or more (each row's avoid_with in the JSON)")
        );
    }
}
