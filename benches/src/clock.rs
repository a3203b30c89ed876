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
