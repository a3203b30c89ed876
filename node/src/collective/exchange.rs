//! The point-to-point layer collectives run on: [`Exchange`], and an in-memory fabric.
//!
//! A collective only needs four things from the network: its rank, the world size, "send
//! these bytes to rank r under tag t" and "give me the bytes rank r sent under tag t". The
//! QUIC mesh (`transport::Mesh`) provides them over emulated links; [`MemoryFabric`] provides
//! them over in-process mailboxes for tests of everything above the transport.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::oneshot;

use netem_profiles::TrunkPlan;
use spacefabric_proto::reduction::{DataTypeName, ReduceOpName};

use super::element::Element;
use spacefabric_fabric::emu::EmuClock;
use spacefabric_fabric::transport::Payload;

/// A failure of the point-to-point layer, with its cause.
#[derive(Debug, Error)]
#[error("{context}")]
pub struct ExchangeError {
    context: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ExchangeError {
    /// An error described by `context` alone.
    pub fn msg(context: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            source: None,
        }
    }

    /// An error described by `context`, caused by `source`.
    pub fn with_source(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Tagged point-to-point messaging between the ranks of a fixed world.
///
/// Contract: every `send(to, tag, payload)` is matched by exactly one `recv(from, tag)` on
/// rank `to` (with `from` the sender); messages with distinct tags may arrive in any order;
/// `recv` waits until its message arrives. Collectives make every tag unique per (call,
/// lane, message), so an implementation never sees a (from, tag) pair twice in flight.
pub trait Exchange: Send + Sync {
    /// This node's rank, `0..world_size()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world_size(&self) -> usize;
    /// Sends `payload` to rank `to` under `tag`.
    fn send(
        &self,
        to: usize,
        tag: u64,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send;
    /// Waits for the payload rank `from` sent under `tag`.
    fn recv(
        &self,
        from: usize,
        tag: u64,
    ) -> impl Future<Output = Result<Bytes, ExchangeError>> + Send;
    /// [`Exchange::send`] of a payload held in pieces (a received one the executor passes
    /// on): a transport that sends pieces (the QUIC mesh) sends them as they are. The default
    /// joins them into one buffer for [`Exchange::send`].
    fn send_payload(
        &self,
        to: usize,
        tag: u64,
        payload: Payload,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        self.send(to, tag, payload.into_bytes())
    }
    /// [`Exchange::recv`], as the pieces the payload arrived in: a transport that receives in
    /// pieces (the QUIC mesh) hands them over without joining them, and the executor combines
    /// from them directly. The default wraps [`Exchange::recv`]'s one buffer.
    fn recv_payload(
        &self,
        from: usize,
        tag: u64,
    ) -> impl Future<Output = Result<Payload, ExchangeError>> + Send {
        async move { self.recv(from, tag).await.map(Payload::from) }
    }
    /// The scenario clock every rank shares (emulated time since the common epoch), if the
    /// ranks have one: with it a barrier releases every rank at the same instant. `None`
    /// (the default) leaves barriers to message arrival alone.
    fn clock(&self) -> Option<EmuClock> {
        None
    }
    /// Where the transport places node pairs on shared trunks, if it emulates them (then
    /// the collective tells it, per schedule, how many connections share each trunk).
    fn trunk_plan(&self) -> Option<&TrunkPlan> {
        None
    }
    /// `connections` connections use the trunk towards `peer` at once from now on: the
    /// transport paces to that share (see `spacefabric_fabric::transport::TrunkShare`).
    fn set_trunk_share(&self, _peer: usize, _connections: u32) {}
}

impl<T: Exchange> Exchange for Arc<T> {
    fn rank(&self) -> usize {
        (**self).rank()
    }
    fn trunk_plan(&self) -> Option<&TrunkPlan> {
        (**self).trunk_plan()
    }
    fn set_trunk_share(&self, peer: usize, connections: u32) {
        (**self).set_trunk_share(peer, connections);
    }
    fn world_size(&self) -> usize {
        (**self).world_size()
    }
    fn send(
        &self,
        to: usize,
        tag: u64,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        (**self).send(to, tag, payload)
    }
    fn recv(
        &self,
        from: usize,
        tag: u64,
    ) -> impl Future<Output = Result<Bytes, ExchangeError>> + Send {
        (**self).recv(from, tag)
    }
    fn recv_payload(
        &self,
        from: usize,
        tag: u64,
    ) -> impl Future<Output = Result<Payload, ExchangeError>> + Send {
        (**self).recv_payload(from, tag)
    }
    fn send_payload(
        &self,
        to: usize,
        tag: u64,
        payload: Payload,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        (**self).send_payload(to, tag, payload)
    }
    fn clock(&self) -> Option<EmuClock> {
        (**self).clock()
    }
}

impl<T: Exchange> Exchange for &T {
    fn rank(&self) -> usize {
        (**self).rank()
    }
    fn trunk_plan(&self) -> Option<&TrunkPlan> {
        (**self).trunk_plan()
    }
    fn set_trunk_share(&self, peer: usize, connections: u32) {
        (**self).set_trunk_share(peer, connections);
    }
    fn world_size(&self) -> usize {
        (**self).world_size()
    }
    fn send(
        &self,
        to: usize,
        tag: u64,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        (**self).send(to, tag, payload)
    }
    fn recv(
        &self,
        from: usize,
        tag: u64,
    ) -> impl Future<Output = Result<Bytes, ExchangeError>> + Send {
        (**self).recv(from, tag)
    }
    fn recv_payload(
        &self,
        from: usize,
        tag: u64,
    ) -> impl Future<Output = Result<Payload, ExchangeError>> + Send {
        (**self).recv_payload(from, tag)
    }
    fn send_payload(
        &self,
        to: usize,
        tag: u64,
        payload: Payload,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        (**self).send_payload(to, tag, payload)
    }
    fn clock(&self) -> Option<EmuClock> {
        (**self).clock()
    }
}

/// One slot of a mailbox: the payload arrived first, or the receiver is waiting.
#[derive(Debug)]
enum Slot {
    Arrived(Bytes),
    Waiting(oneshot::Sender<Bytes>),
}

/// A fault to inject: corrupt one element of one message (for tests of result checking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corruption {
    /// Sender of the message to corrupt.
    pub from: usize,
    /// Receiver of the message to corrupt.
    pub to: usize,
    /// Which of the messages from `from` to `to` (0 = the first one sent).
    pub nth: usize,
}

#[derive(Debug, Default)]
struct FabricState {
    /// `mailboxes[to]`: (from, tag) → slot.
    mailboxes: Vec<HashMap<(usize, u64), Slot>>,
    /// Messages sent per (from, to), for corruption and statistics.
    sent: HashMap<(usize, usize), usize>,
    /// Bytes sent per (from, to).
    bytes: HashMap<(usize, usize), u64>,
    corruption: Option<Corruption>,
    /// The element type the corruption adds 1 to (float unless said otherwise).
    corrupt_as: Option<DataTypeName>,
}

/// In-process mailboxes joining `world` ranks: no network, no delay. Build one, then hand
/// each rank its [`MemoryExchange`] from [`MemoryFabric::endpoints`].
#[derive(Debug, Clone)]
pub struct MemoryFabric {
    world: usize,
    state: Arc<Mutex<FabricState>>,
}

impl MemoryFabric {
    /// A fabric for `world` ranks.
    pub fn new(world: usize) -> Self {
        Self {
            world,
            state: Arc::new(Mutex::new(FabricState {
                mailboxes: (0..world).map(|_| HashMap::new()).collect(),
                ..FabricState::default()
            })),
        }
    }

    /// Flips the first element of one message (adds 1.0 to it, as an f32) to test result
    /// checking.
    pub fn corrupt(self, corruption: Corruption) -> Self {
        self.corrupt_typed(corruption, DataTypeName::Float)
    }

    /// Adds 1 to the first element, read as `datatype`, of one message (wrapping for
    /// integers), to test result checking of that type.
    pub fn corrupt_typed(self, corruption: Corruption, datatype: DataTypeName) -> Self {
        if let Ok(mut st) = self.state.lock() {
            st.corruption = Some(corruption);
            st.corrupt_as = Some(datatype);
        }
        self
    }

    /// One endpoint per rank, in rank order.
    pub fn endpoints(&self) -> Vec<MemoryExchange> {
        (0..self.world)
            .map(|rank| MemoryExchange {
                rank,
                fabric: self.clone(),
            })
            .collect()
    }

    /// Bytes sent from `from` to `to` so far.
    pub fn bytes_sent(&self, from: usize, to: usize) -> u64 {
        self.state
            .lock()
            .map(|st| st.bytes.get(&(from, to)).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Messages waiting in mailboxes with no receiver yet (0 after a clean collective).
    pub fn undelivered(&self) -> usize {
        self.state
            .lock()
            .map(|st| {
                st.mailboxes
                    .iter()
                    .flat_map(HashMap::values)
                    .filter(|s| matches!(s, Slot::Arrived(_)))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// One rank's endpoint of a [`MemoryFabric`].
#[derive(Debug, Clone)]
pub struct MemoryExchange {
    rank: usize,
    fabric: MemoryFabric,
}

fn poisoned() -> ExchangeError {
    ExchangeError::msg("in-memory fabric state poisoned by a panic")
}

impl Exchange for MemoryExchange {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.fabric.world
    }

    fn send(
        &self,
        to: usize,
        tag: u64,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        let result = (|| {
            let mut st = self.fabric.state.lock().map_err(|_| poisoned())?;
            if to >= st.mailboxes.len() {
                return Err(ExchangeError::msg(format!(
                    "rank {} sent to rank {to}, which is not in a world of {}",
                    self.rank,
                    st.mailboxes.len()
                )));
            }
            let nth = {
                let n = st.sent.entry((self.rank, to)).or_insert(0);
                *n += 1;
                *n - 1
            };
            *st.bytes.entry((self.rank, to)).or_insert(0) += payload.len() as u64;
            let datatype = st.corrupt_as.unwrap_or(DataTypeName::Float);
            let payload = match st.corruption {
                Some(c)
                    if c.from == self.rank
                        && c.to == to
                        && c.nth == nth
                        && payload.len() >= datatype.size_bytes() =>
                {
                    let mut v = payload.to_vec();
                    crate::dispatch_datatype!(datatype, T => {
                        let x = T::read_le(&v[..T::BYTES]).reduce(T::from_i64(1), ReduceOpName::Sum);
                        let mut one = Vec::with_capacity(T::BYTES);
                        x.write_le(&mut one);
                        v[..T::BYTES].copy_from_slice(&one);
                    });
                    Bytes::from(v)
                }
                _ => payload,
            };
            let key = (self.rank, tag);
            match st.mailboxes[to].remove(&key) {
                Some(Slot::Waiting(tx)) => {
                    // The receiver may have given up (dropped its future); that is its business.
                    let _ = tx.send(payload);
                }
                Some(Slot::Arrived(_)) => {
                    return Err(ExchangeError::msg(format!(
                        "rank {} sent tag {tag:#x} to rank {to} twice",
                        self.rank
                    )));
                }
                None => {
                    st.mailboxes[to].insert(key, Slot::Arrived(payload));
                }
            }
            Ok(())
        })();
        std::future::ready(result)
    }

    fn recv(
        &self,
        from: usize,
        tag: u64,
    ) -> impl Future<Output = Result<Bytes, ExchangeError>> + Send {
        let rank = self.rank;
        let registered = (|| {
            let mut st = self.fabric.state.lock().map_err(|_| poisoned())?;
            let key = (from, tag);
            match st.mailboxes[rank].remove(&key) {
                Some(Slot::Arrived(b)) => Ok(Err(b)),
                Some(Slot::Waiting(_)) => Err(ExchangeError::msg(format!(
                    "rank {rank} waits twice for tag {tag:#x} from rank {from}"
                ))),
                None => {
                    let (tx, rx) = oneshot::channel();
                    st.mailboxes[rank].insert(key, Slot::Waiting(tx));
                    Ok(Ok(rx))
                }
            }
        })();
        async move {
            match registered? {
                Err(ready) => Ok(ready),
                Ok(rx) => rx.await.map_err(|_| {
                    ExchangeError::msg(format!(
                        "rank {rank}: the fabric closed while waiting for tag {tag:#x} from rank {from}"
                    ))
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// An exchange that only records the trunk share it was told.
    struct ShareRecorder(AtomicU32);

    impl Exchange for ShareRecorder {
        fn rank(&self) -> usize {
            0
        }
        fn world_size(&self) -> usize {
            1
        }
        async fn send(&self, _to: usize, _tag: u64, _payload: Bytes) -> Result<(), ExchangeError> {
            Ok(())
        }
        async fn recv(&self, _from: usize, _tag: u64) -> Result<Bytes, ExchangeError> {
            Ok(Bytes::new())
        }
        fn set_trunk_share(&self, _peer: usize, connections: u32) {
            self.0.store(connections, Ordering::Relaxed);
        }
    }

    fn tell<E: Exchange>(e: E, connections: u32) {
        e.set_trunk_share(1, connections);
    }

    #[test]
    fn a_borrowed_or_shared_exchange_passes_the_trunk_share_on() {
        let inner = Arc::new(ShareRecorder(AtomicU32::new(0)));
        tell(&*inner, 3);
        assert_eq!(inner.0.load(Ordering::Relaxed), 3);
        tell(Arc::clone(&inner), 5);
        assert_eq!(inner.0.load(Ordering::Relaxed), 5);
    }
}
