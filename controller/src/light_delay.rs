//! The control plane's light delay: messages between the controller and a node take the
//! one-way propagation delay between the controller's site and the node's site, as they would
//! between Earth and the Moon.
//!
//! Where it is applied: in the handlers, not in a tower layer. The delay depends on the node's
//! site, which the core knows from the `node_id` in the request (a header could lie and a
//! layer would have to decode protobuf to find it), and a server stream needs a delay per
//! message, not per HTTP response. So:
//! - a unary node RPC (Register, Heartbeat, Deregister, ReportProgress, ReportResult) waits
//!   the node→controller delay before the core sees it, and the controller→node delay before
//!   its answer (or error) leaves: a Moon node's heartbeat is 1.28 s old when it is counted,
//!   and its round trip is 2.56 s;
//! - each event on a node's WatchControl stream is held until its send time plus the
//!   controller→node delay ([`delay_line`]): a constant delay keeps the order and never
//!   accumulates;
//! - client RPCs (status, job submission and watching) are taken to come from the
//!   controller's own site and are not delayed.
//!
//! Disabled, every delay is zero: same code path. With a time dilation K every delay lasts K
//! times longer on the wall clock (the profile's delays are emulated time).

use std::time::Duration;

use spacefabric_proto::time_dilation::TimeDilation;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// Whether to apply light delays, and the sleeps that do it.
#[derive(Debug, Clone, Copy)]
pub struct LightDelay {
    enabled: bool,
    dilation: TimeDilation,
}

impl LightDelay {
    /// `enabled = false` makes every delay zero.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            dilation: TimeDilation::NONE,
        }
    }

    /// The same with every delay dilated by K.
    pub fn dilated(self, dilation: TimeDilation) -> Self {
        Self { dilation, ..self }
    }

    /// The wall-clock delay actually applied for a one-way propagation delay of `one_way`
    /// (emulated time).
    pub fn effective(&self, one_way: Duration) -> Duration {
        if self.enabled {
            self.dilation.wall(one_way)
        } else {
            Duration::ZERO
        }
    }

    /// Waits out a one-way delay.
    pub async fn wait(&self, one_way: Duration) {
        let d = self.effective(one_way);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

/// A delay line: items sent with their send time on `input` come out of the returned stream
/// `delay` after that time, in order. Ends when `input` closes or `shutdown` turns true.
pub fn delay_line<T: Send + 'static>(
    mut input: mpsc::Receiver<(Instant, T)>,
    delay: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> ReceiverStream<T> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                item = input.recv() => item,
                _ = shutdown.wait_for(|s| *s) => None,
            };
            let Some((sent, item)) = item else { break };
            tokio::select! {
                () = tokio::time::sleep_until(sent + delay) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            if tx.send(item).await.is_err() {
                break;
            }
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test(start_paused = true)]
    async fn items_leave_in_order_one_delay_after_their_send_time() {
        let (tx, rx) = mpsc::channel(8);
        let (_stop, shutdown) = watch::channel(false);
        let start = Instant::now();
        let mut out = delay_line(rx, Duration::from_millis(1280), shutdown);
        tx.send((start, 1)).await.unwrap();
        tx.send((start + Duration::from_millis(10), 2))
            .await
            .unwrap();
        assert_eq!(out.next().await, Some(1));
        assert_eq!(start.elapsed(), Duration::from_millis(1280));
        assert_eq!(out.next().await, Some(2));
        assert_eq!(start.elapsed(), Duration::from_millis(1290));
        drop(tx);
        assert_eq!(out.next().await, None);
    }
}
