//! Which clock an in-process benchmark runs on, and the tokio runtime that provides it.
//!
//! * `real` (the default): a multi-threaded runtime on the wall clock. This is what makes
//!   spacefabric an emulator, and the host's CPU is part of every result.
//! * `virtual`: every node of the run in this process on one current-thread runtime with
//!   tokio's clock paused. Time moves only when every task waits (tokio then jumps to the next
//!   timer), so CPU work costs no emulated time: a result is the link model's and the
//!   protocol's alone, whatever the host's load. The emulated sockets still write real
//!   loopback datagrams; the paused clock advances only when the runtime is idle, after it has
//!   polled the I/O driver, so a datagram written before the runtime parks is read at the
//!   same emulated instant. Compute must be declared (`train --step-time`). The all-reduce
//!   cluster also dilates its scenario clock by [`VIRTUAL_DILATION`], so that tokio's 1 ms
//!   timer grain is 1 µs of emulated time (LAN links are 50 µs).

use clap::ValueEnum;

/// Dilation of the scenario clock under `--clock virtual`: tokio's timers have a 1 ms grain
/// (a paused clock jumps from one whole millisecond to the next), so emulated time runs 1000
/// times slower than tokio's paused clock and the grain becomes 1 µs of emulated time. quinn,
/// the delay line, barriers and timeouts all follow the dilated clock; it costs no wall time.
pub(crate) const VIRTUAL_DILATION: u32 = 1000;

/// Under `--clock virtual` the timer grain is kept to at most 1/20 (5 %) of the smallest link
/// delay of the run ([`ClockMode::dilation_for`]).
pub(crate) const GRAIN_PER_DELAY: u32 = 20;

/// The largest dilation: a 1 ns grain. Emulated spans are multiplied by it on tokio's clock,
/// whose timers reach about two years: 60 s of emulated idle timeout is 694 days at this K.
pub(crate) const MAX_VIRTUAL_DILATION: u32 = 1_000_000;
use serde::Serialize;

/// The clock of an in-process benchmark (`--clock`, env `SPACEFABRIC_CLOCK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ClockMode {
    /// The wall clock, multi-threaded runtime: an emulator, host CPU included.
    #[default]
    Real,
    /// tokio's paused clock on one thread: link model and protocol only, no CPU cost.
    Virtual,
}

impl ClockMode {
    /// The flag's value, as in `--clock virtual`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Real => "real",
            Self::Virtual => "virtual",
        }
    }

    /// One line for a report header saying what the clock means for the numbers.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Real => "real (wall clock; the host's CPU and load are part of every time below)",
            Self::Virtual => {
                "virtual (tokio's paused clock, one thread: CPU costs no time; times are the links' and the protocol's; same seed, same table)"
            }
        }
    }

    /// The dilation of the scenario clock the run uses (see [`VIRTUAL_DILATION`]).
    pub(crate) fn dilation(self) -> u32 {
        match self {
            Self::Real => 1,
            Self::Virtual => VIRTUAL_DILATION,
        }
    }

    /// The dilation for a run whose smallest one-way link delay is `min_delay`: 1 on the real
    /// clock; on the virtual clock at least [`VIRTUAL_DILATION`], and enough that tokio's
    /// 1 ms grain is at most 1/[`GRAIN_PER_DELAY`] of that delay (0.5 µs formation links:
    /// K = 40,000, a 25 ns grain), capped at [`MAX_VIRTUAL_DILATION`].
    pub(crate) fn dilation_for(self, min_delay: std::time::Duration) -> u32 {
        match self {
            Self::Real => 1,
            Self::Virtual => {
                let ns = min_delay.as_nanos().max(1);
                let wanted = (1_000_000u128 * u128::from(GRAIN_PER_DELAY)).div_ceil(ns);
                wanted.clamp(
                    u128::from(VIRTUAL_DILATION),
                    u128::from(MAX_VIRTUAL_DILATION),
                ) as u32
            }
        }
    }

    /// The tokio runtime for this clock.
    pub(crate) fn runtime(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Self::Real => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build(),
            Self::Virtual => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build(),
        }
    }
}

impl std::fmt::Display for ClockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_virtual_grain_follows_the_smallest_link_delay() {
        assert_eq!(ClockMode::Real.dilation_for(Duration::from_nanos(500)), 1);
        // LAN and Earth-Moon: 1 µs grain is already under 5 % of 50 µs.
        let v = ClockMode::Virtual;
        assert_eq!(v.dilation_for(Duration::from_micros(50)), 1000);
        assert_eq!(v.dilation_for(Duration::from_millis(1282)), 1000);
        // 0.5 µs formation links: 25 ns grain.
        assert_eq!(v.dilation_for(Duration::from_nanos(500)), 40_000);
        assert_eq!(v.dilation_for(Duration::ZERO), MAX_VIRTUAL_DILATION);
    }
}
