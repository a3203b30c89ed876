//! Emulated time: a [`Duration`] since the scenario epoch, read from tokio's clock, optionally
//! dilated.
//!
//! Every verdict of the link model is expressed in this time. Reading it from
//! `tokio::time::Instant` (not `std::time::Instant`) is what lets tests run under tokio's
//! paused clock: quinn reads the same clock through its runtime, so protocol timers, the link
//! model and the delivery scheduler all agree on "now".
//!
//! **Dilation** (DieCast's time-dilation factor): with a factor K, emulated time runs K times
//! slower than tokio's clock — `now = (tokio_now − epoch) / K`, and emulated instant t is
//! tokio instant `epoch + t·K`. Everything that waits must then wait on the clock: the delay
//! line ([`EmuClock::instant_at`]), quinn (through `transport::DilatedRuntime`), timeouts
//! ([`EmuClock::wall`]). Two uses: on tokio's paused clock (`--clock virtual`) a K of 1000
//! turns tokio's 1 ms timer grain into 1 µs of emulated time; on the wall clock a host K
//! times too slow for a link still emulates it faithfully. The mapping is exact in one
//! direction (`emulated_at(instant_at(t)) == t`) and floors by less than K ns in the other.

use std::time::Duration;

use tokio::time::Instant;

/// Far enough in the future to stand for "never" (30 years), for saturating conversions.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The scenario clock of one process: emulated time is `(tokio now − epoch) / dilation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmuClock {
    epoch: Instant,
    dilation: u32,
}

impl EmuClock {
    /// A clock whose time zero is `epoch` (the scenario epoch handed out by the controller,
    /// converted to this process's monotonic clock), undilated.
    pub fn new(epoch: Instant) -> Self {
        Self { epoch, dilation: 1 }
    }

    /// A clock whose emulated time runs `dilation` times slower than tokio's (0 counts as 1).
    pub fn dilated(epoch: Instant, dilation: u32) -> Self {
        Self {
            epoch,
            dilation: dilation.max(1),
        }
    }

    /// A clock whose epoch is the current instant.
    pub fn starting_now() -> Self {
        Self::new(Instant::now())
    }

    /// The scenario epoch on tokio's clock.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// The dilation factor K (1: emulated time is tokio time).
    pub fn dilation(&self) -> u32 {
        self.dilation
    }

    /// Emulated time since the epoch (zero before the epoch).
    pub fn now(&self) -> Duration {
        self.emulated_at(Instant::now())
    }

    /// The emulated time at tokio instant `at` (zero before the epoch).
    pub fn emulated_at(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.epoch) / self.dilation
    }

    /// Emulated time elapsed since tokio instant `since` (e.g. the instant a barrier
    /// released).
    pub fn elapsed_since(&self, since: Instant) -> Duration {
        Instant::now().saturating_duration_since(since) / self.dilation
    }

    /// The tokio instant at emulated time `t`.
    pub fn instant_at(&self, t: Duration) -> Instant {
        self.epoch
            .checked_add(self.wall(t))
            .unwrap_or_else(|| self.epoch + FAR)
    }

    /// How long an emulated span `d` lasts on tokio's clock (`d · K`, saturating).
    pub fn wall(&self, d: Duration) -> Duration {
        d.checked_mul(self.dilation).unwrap_or(FAR).min(FAR)
    }

    /// "Now" for quinn: a `std` instant that advances with emulated time (the epoch's `std`
    /// instant plus the emulated time).
    pub fn protocol_now(&self) -> std::time::Instant {
        let base = self.epoch.into_std();
        base.checked_add(self.now()).unwrap_or(base)
    }

    /// The tokio instant at which quinn's instant `at` (on [`Self::protocol_now`]'s scale)
    /// is reached.
    pub fn instant_of_protocol(&self, at: std::time::Instant) -> Instant {
        self.instant_at(at.saturating_duration_since(self.epoch.into_std()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_the_paused_tokio_clock() {
        let clock = EmuClock::starting_now();
        assert_eq!(clock.now(), Duration::ZERO);
        tokio::time::advance(Duration::from_millis(1280)).await;
        assert_eq!(clock.now(), Duration::from_millis(1280));
        assert_eq!(
            clock.instant_at(Duration::from_millis(5)),
            clock.epoch() + Duration::from_millis(5)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn is_zero_before_the_epoch() {
        let clock = EmuClock::new(Instant::now() + Duration::from_secs(10));
        assert_eq!(clock.now(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dilated_clock_maps_instants_both_ways_exactly() {
        let clock = EmuClock::dilated(Instant::now(), 16);
        assert_eq!(clock.dilation(), 16);
        // Emulated -> tokio -> emulated is the identity, to the nanosecond.
        for t in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(50),
            Duration::from_nanos(1_282_220_123),
            Duration::from_secs(86_400),
        ] {
            let at = clock.instant_at(t);
            assert_eq!(at, clock.epoch() + t * 16);
            assert_eq!(clock.emulated_at(at), t);
        }
        // Tokio -> emulated floors by less than K ns.
        let at = clock.epoch() + Duration::from_nanos(16 * 1000 + 15);
        assert_eq!(clock.emulated_at(at), Duration::from_nanos(1000));
        // 16 s of tokio time are 1 s of emulated time.
        tokio::time::advance(Duration::from_secs(16)).await;
        assert_eq!(clock.now(), Duration::from_secs(1));
        assert_eq!(
            clock.wall(Duration::from_millis(3)),
            Duration::from_millis(48)
        );
        assert_eq!(
            clock.elapsed_since(clock.epoch() + Duration::from_secs(8)),
            Duration::from_millis(500)
        );
        // quinn's instants advance with emulated time and map back to the same tokio instant.
        let p = clock.protocol_now();
        assert_eq!(p, clock.epoch().into_std() + Duration::from_secs(1));
        assert_eq!(
            clock.instant_of_protocol(p + Duration::from_millis(2)),
            clock.epoch() + Duration::from_secs(16) + Duration::from_millis(32)
        );
    }

    #[test]
    fn dilation_zero_is_one_and_huge_spans_saturate() {
        let clock = EmuClock::dilated(Instant::now(), 0);
        assert_eq!(clock.dilation(), 1);
        let clock = EmuClock::dilated(Instant::now(), 1000);
        assert_eq!(clock.wall(Duration::MAX), FAR);
        assert!(clock.instant_at(Duration::MAX) > clock.epoch());
    }
}
