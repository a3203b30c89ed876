//! Emulated time: a [`Duration`] since the scenario epoch, read from tokio's clock.
//!
//! Every verdict of the link model is expressed in this time. Reading it from
//! `tokio::time::Instant` (not `std::time::Instant`) is what lets tests run under tokio's
//! paused clock: quinn reads the same clock through `quinn::TokioRuntime`, so protocol
//! timers, the link model and the delivery scheduler all agree on "now".

use std::time::Duration;

use tokio::time::Instant;

/// The scenario clock of one process: emulated time is `tokio::time::Instant::now() - epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmuClock {
    epoch: Instant,
}

impl EmuClock {
    /// A clock whose time zero is `epoch` (the scenario epoch handed out by the controller,
    /// converted to this process's monotonic clock).
    pub fn new(epoch: Instant) -> Self {
        Self { epoch }
    }

    /// A clock whose epoch is the current instant.
    pub fn starting_now() -> Self {
        Self::new(Instant::now())
    }

    /// The scenario epoch on tokio's clock.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Emulated time since the epoch (zero before the epoch).
    pub fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.epoch)
    }

    /// The tokio instant at emulated time `t`.
    pub fn instant_at(&self, t: Duration) -> Instant {
        self.epoch
            .checked_add(t)
            .unwrap_or_else(|| self.epoch + Duration::from_secs(86_400 * 365 * 30))
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
}
