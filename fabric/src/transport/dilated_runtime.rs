//! quinn on a dilated emulated clock: a [`quinn::Runtime`] whose `now()` and timers follow an
//! [`EmuClock`] with a dilation factor K, so QUIC's RTT estimates, loss-detection and idle
//! timers, pacing and every timestamp it keeps are in emulated time while tokio (the wall
//! clock, or the paused clock of `--clock virtual`) runs K times faster underneath.
//!
//! quinn reads time only through its runtime (`Runtime::now`, `Runtime::new_timer`), so this
//! wrapper is all it takes; tasks and UDP sockets are tokio's as in `quinn::TokioRuntime`.
//! With K = 1 the mesh keeps `quinn::TokioRuntime` itself.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use quinn::{AsyncTimer, AsyncUdpSocket, Runtime};

use crate::emu::EmuClock;

/// quinn's runtime on a dilated [`EmuClock`].
#[derive(Debug, Clone, Copy)]
pub struct DilatedRuntime {
    clock: EmuClock,
}

impl DilatedRuntime {
    /// A runtime whose time is `clock`'s emulated time.
    pub fn new(clock: EmuClock) -> Self {
        Self { clock }
    }
}

impl Runtime for DilatedRuntime {
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(DilatedTimer {
            clock: self.clock,
            sleep: Box::pin(tokio::time::sleep_until(self.clock.instant_of_protocol(at))),
        })
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        tokio::spawn(future);
    }

    fn wrap_udp_socket(&self, sock: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        quinn::TokioRuntime.wrap_udp_socket(sock)
    }

    fn now(&self) -> Instant {
        self.clock.protocol_now()
    }
}

/// A tokio sleep at the tokio instant of a quinn (emulated) instant.
#[derive(Debug)]
struct DilatedTimer {
    clock: EmuClock,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl AsyncTimer for DilatedTimer {
    fn reset(mut self: Pin<&mut Self>, at: Instant) {
        let deadline = self.clock.instant_of_protocol(at);
        self.sleep.as_mut().reset(deadline);
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Future::poll(self.sleep.as_mut(), cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// quinn's timers fire at the dilated instant: a timer 10 ms of emulated time ahead fires
    /// after 10 ms × K of tokio time, not before, and quinn's clock then reads 10 ms later.
    #[tokio::test(start_paused = true)]
    async fn timers_fire_at_dilated_instants() {
        let clock = EmuClock::dilated(tokio::time::Instant::now(), 8);
        let rt = DilatedRuntime::new(clock);
        let start = rt.now();
        let tokio_start = tokio::time::Instant::now();
        let mut timer = rt.new_timer(start + Duration::from_millis(10));
        std::future::poll_fn(|cx| timer.as_mut().poll(cx)).await;
        assert_eq!(tokio_start.elapsed(), Duration::from_millis(80));
        assert_eq!(rt.now() - start, Duration::from_millis(10));
        // A reset timer follows the new instant.
        timer
            .as_mut()
            .reset(start + Duration::from_millis(10) + Duration::from_micros(250));
        std::future::poll_fn(|cx| timer.as_mut().poll(cx)).await;
        assert_eq!(tokio_start.elapsed(), Duration::from_millis(82));
    }
}
