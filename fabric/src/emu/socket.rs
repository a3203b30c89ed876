//! [`EmulatedSocket`]: quinn's `AsyncUdpSocket` over a real tokio UDP socket, with every
//! outgoing datagram passed through the link to its destination.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use netem_profiles::Verdict;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

use super::encap::{self, WireTrunk};
use super::link_table::{Counters, EmuDropCause, Link, LinkTable, TrafficStats};
use super::scheduler::{
    Held, Outbound, Relay, Scheduler, SchedulerMode, SchedulerStats, send_now,
    tokio_clock_is_paused,
};

/// Socket buffer size asked of the kernel (it caps it at `net.core.{r,w}mem_max`).
const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// What happened to one datagram handed to [`EmulatedSocket::send_traced`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Written to the real socket at once (no link, passthrough, or due immediately).
    SentNow,
    /// Held by the link; due at `at` (emulated time), a duplicate at `duplicate_at`.
    Held {
        /// Delivery time the link model assigned.
        at: Duration,
        /// Delivery time of the duplicate, if any.
        duplicate_at: Option<Duration>,
    },
    /// Dropped, with the cause.
    Dropped(EmuDropCause),
    /// Encapsulated and handed to the forwarder at once; the forwarder applies the shared
    /// trunk (its verdict is not known here).
    Forwarded,
}

/// Counters of one socket: outgoing traffic after emulation, plus what it received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EmuStats {
    /// Outgoing traffic (all links together).
    pub traffic: TrafficStats,
    /// Datagrams sent to destinations that have no link in the table (not emulated).
    pub unmapped_datagrams: u64,
    /// Datagrams received.
    pub received_datagrams: u64,
    /// Bytes received.
    pub received_bytes: u64,
    /// Datagrams sent encapsulated to the forwarder (their shared trunk is applied there).
    pub forwarded_datagrams: u64,
    /// Datagrams from the forwarder's address that did not decapsulate (dropped).
    pub malformed_from_forwarder: u64,
}

/// A UDP socket whose outgoing datagrams cross emulated links; see the [module docs](super).
pub struct EmulatedSocket {
    io: tokio::net::UdpSocket,
    out: Arc<Outbound>,
    links: Arc<LinkTable>,
    scheduler: OnceLock<Arc<Scheduler>>,
    mode: SchedulerMode,
    local: SocketAddr,
    unmapped: AtomicU64,
    warned_unmapped: AtomicBool,
    received_datagrams: AtomicU64,
    received_bytes: AtomicU64,
    forwarded_datagrams: AtomicU64,
    malformed_from_forwarder: AtomicU64,
    /// Set by [`EmulatedSocket::retire`]: receives fail, sends are discarded.
    retired: AtomicBool,
    /// The task last waiting to receive: [`Self::retire`] wakes it, so that quinn sees the
    /// retirement at once instead of at its next unrelated wake-up.
    receiver: Mutex<Option<Waker>>,
}

impl fmt::Debug for EmulatedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatedSocket")
            .field("local", &self.local)
            .field("passthrough", &self.links.is_passthrough())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl EmulatedSocket {
    /// Binds a real UDP socket on `addr` and emulates its outgoing traffic with `links`.
    /// Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr, links: Arc<LinkTable>) -> io::Result<Arc<Self>> {
        let domain = socket2::Domain::for_address(addr);
        let sock =
            socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        if addr.is_ipv6() {
            // Accept IPv4 peers on a [::] socket as well.
            let _ = sock.set_only_v6(false);
        }
        sock.bind(&addr.into())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind UDP {addr}: {e}")))?;
        Self::from_std(sock.into(), links)
    }

    /// Emulates the outgoing traffic of an already-bound UDP socket with `links`. A caller that
    /// binds port 0 itself learns its address before it builds the roster, and never has to
    /// release the port and bind it again (which another process could race for).
    /// Must be called inside a tokio runtime.
    pub fn from_std(std_sock: std::net::UdpSocket, links: Arc<LinkTable>) -> io::Result<Arc<Self>> {
        {
            let sock = socket2::SockRef::from(&std_sock);
            // Best effort: the kernel caps these; a smaller buffer only means earlier drops.
            let _ = sock.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
            let _ = sock.set_send_buffer_size(SOCKET_BUFFER_BYTES);
        }
        std_sock.set_nonblocking(true)?;
        let sender = std_sock.try_clone()?;
        let io = tokio::net::UdpSocket::from_std(std_sock)?;
        let local = io.local_addr()?;
        let mode = match links.scheduler_mode() {
            SchedulerMode::Auto if tokio_clock_is_paused() => SchedulerMode::TokioTimer,
            SchedulerMode::Auto => SchedulerMode::Precise,
            m => m,
        };
        let scheduler = OnceLock::new();
        if !links.is_passthrough() {
            let s = match mode {
                SchedulerMode::TokioTimer => Scheduler::tokio_timer(),
                _ => Scheduler::precise()?,
            };
            let _ = scheduler.set(s);
        }
        tracing::debug!(%local, ?mode, passthrough = links.is_passthrough(), "emulated socket bound");
        Ok(Arc::new(Self {
            io,
            out: Arc::new(Outbound {
                socket: sender,
                counters: Counters::default(),
            }),
            links,
            scheduler,
            mode,
            local,
            unmapped: AtomicU64::new(0),
            warned_unmapped: AtomicBool::new(false),
            received_datagrams: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            forwarded_datagrams: AtomicU64::new(0),
            malformed_from_forwarder: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            receiver: Mutex::new(None),
        }))
    }

    /// Takes the socket out of service: from now on a receive fails (which makes a quinn
    /// endpoint that moved to another socket let go of this one) and sends are discarded.
    /// The real socket closes — and its port is free again — once the last reference goes,
    /// at the latest when the datagrams still held for their link delay have left.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        let waiting = self
            .receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waiting {
            waker.wake();
        }
    }

    /// The address the real socket is bound to (the port resolved if 0 was asked).
    pub fn bound_addr(&self) -> SocketAddr {
        self.local
    }

    /// The link table this socket emulates.
    pub fn links(&self) -> &Arc<LinkTable> {
        &self.links
    }

    /// The scheduler mode actually in use (`Auto` resolved at bind time).
    pub fn scheduler_mode(&self) -> SchedulerMode {
        self.mode
    }

    /// This socket's counters.
    pub fn stats(&self) -> EmuStats {
        EmuStats {
            traffic: self.out.counters.snapshot(),
            unmapped_datagrams: self.unmapped.load(Ordering::Relaxed),
            received_datagrams: self.received_datagrams.load(Ordering::Relaxed),
            received_bytes: self.received_bytes.load(Ordering::Relaxed),
            forwarded_datagrams: self.forwarded_datagrams.load(Ordering::Relaxed),
            malformed_from_forwarder: self.malformed_from_forwarder.load(Ordering::Relaxed),
        }
    }

    /// Counters of the scheduler this socket uses (shared with every socket on it).
    pub fn scheduler_stats(&self) -> Option<SchedulerStats> {
        self.scheduler.get().map(|s| s.stats())
    }

    /// Sends one datagram through the link to `dest` and says what became of it. Never
    /// blocks; a full real socket on an immediate send is `WouldBlock`.
    pub fn send_traced(&self, dest: SocketAddr, contents: &[u8]) -> io::Result<Fate> {
        let Some(scheduler) = self.scheduler.get() else {
            // Passthrough: exactly a plain UDP socket.
            self.out.counters.offered(contents.len());
            self.out.socket.send_to(contents, dest)?;
            self.out.counters.sent(contents.len());
            return Ok(Fate::SentNow);
        };
        if let Some((trunk, forwarder)) = self.links.forwarded(dest) {
            return self.send_forwarded(forwarder, trunk, dest, contents);
        }
        let Some(link) = self.links.get(dest) else {
            self.out.counters.offered(contents.len());
            self.unmapped.fetch_add(1, Ordering::Relaxed);
            if !self.warned_unmapped.swap(true, Ordering::Relaxed) {
                tracing::warn!(local = %self.local, %dest, "no emulated link to this destination: sending unemulated");
            }
            self.out.socket.send_to(contents, dest)?;
            self.out.counters.sent(contents.len());
            return Ok(Fate::SentNow);
        };
        let path = Path {
            link: &link,
            out: &self.out,
            scheduler,
            clock: self.links.clock(),
            max_udp_payload: self.links.max_udp_payload(),
        };
        Ok(path.emulate(dest, contents, contents.len()))
    }

    /// Encapsulates `contents` for `dest` and hands it to the forwarder at once (the hop to
    /// the forwarder is not emulated; the forwarder applies the trunk).
    fn send_forwarded(
        &self,
        forwarder: SocketAddr,
        trunk: WireTrunk,
        dest: SocketAddr,
        contents: &[u8],
    ) -> io::Result<Fate> {
        self.out.counters.offered(contents.len());
        if contents.len() > self.links.max_udp_payload().min(encap::MAX_INNER) {
            self.out.counters.dropped(EmuDropCause::Oversize);
            return Ok(Fate::Dropped(EmuDropCause::Oversize));
        }
        let header = encap::Header {
            trunk,
            src: self.local,
            dst: dest,
        };
        let wire = encap::encode(&header, contents);
        self.out.socket.send_to(&wire, forwarder)?;
        self.out.counters.sent(contents.len());
        self.forwarded_datagrams.fetch_add(1, Ordering::Relaxed);
        Ok(Fate::Forwarded)
    }

    /// Turns a datagram that came from the forwarder into the inner datagram, in place:
    /// returns its length and true source, or `None` (counted) if it is malformed.
    fn unwrap_forwarded(&self, buf: &mut [u8], len: usize) -> Option<(usize, SocketAddr)> {
        let datagram = buf.get(..len)?;
        match encap::decode(datagram) {
            Ok(h) => {
                buf.copy_within(encap::HEADER_LEN..len, 0);
                Some((len - encap::HEADER_LEN, h.src))
            }
            Err(e) => {
                if self
                    .malformed_from_forwarder
                    .fetch_add(1, Ordering::Relaxed)
                    == 0
                {
                    tracing::warn!(local = %self.local, error = %e, "dropping a malformed datagram from the forwarder");
                }
                None
            }
        }
    }

    /// Is `from` a forwarder this socket sends shared-trunk traffic through?
    fn is_forwarder(&self, from: SocketAddr) -> bool {
        self.links.is_forwarder(from)
    }

    /// Receives one datagram (for callers that use the socket without quinn).
    /// A datagram from the forwarder is reported with its true source; a malformed one is
    /// counted and skipped.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let (mut len, mut addr) = self.io.recv_from(buf).await?;
            if self.is_forwarder(addr) {
                let Some(inner) = self.unwrap_forwarded(buf, len) else {
                    continue;
                };
                (len, addr) = inner;
            }
            self.received_datagrams.fetch_add(1, Ordering::Relaxed);
            self.received_bytes.fetch_add(len as u64, Ordering::Relaxed);
            return Ok((len, addr));
        }
    }
}

/// One datagram's way through one link: the link model's verdict, the hold limit and the
/// delay line. The same for a node's socket and for the forwarder, which is how both apply
/// a shared trunk with one code path.
///
/// A link with hops (a route over relays, see `TrunkSet`) applies them one after the other:
/// hop 0 at hand-over; when hop `i` delivers, the delay line hands the datagram to hop
/// `i + 1` at the exact emulated instant of that delivery ([`relay_onward`]) — the relay —
/// and the last hop delivers it to the destination. Drops at any hop are counted on that hop,
/// on the route and on the sending socket (or forwarder).
pub(crate) struct Path<'a> {
    pub(crate) link: &'a Arc<Link>,
    pub(crate) out: &'a Arc<Outbound>,
    pub(crate) scheduler: &'a Scheduler,
    pub(crate) clock: &'a super::EmuClock,
    pub(crate) max_udp_payload: usize,
}

impl Path<'_> {
    /// Sends `wire` to `dest` through the link, charged as `counted` bytes (the datagram the
    /// link carries; the forwarder's header is not part of it).
    pub(crate) fn emulate(&self, dest: SocketAddr, wire: &[u8], counted: usize) -> Fate {
        let (link, out) = (self.link, self.out);
        out.counters.offered(counted);
        link.counters.offered(counted);
        if counted > self.max_udp_payload {
            return self.drop_on(link, EmuDropCause::Oversize);
        }
        let now = self.clock.now();
        if link.hops.is_empty() {
            self.through(link, None, now, dest, wire, counted)
        } else {
            self.hop(0, now, dest, wire, counted)
        }
    }

    /// Hands the datagram to hop `i` of the route at emulated instant `now`.
    fn hop(&self, i: usize, now: Duration, dest: SocketAddr, wire: &[u8], counted: usize) -> Fate {
        let Some(hop) = self.link.hops.get(i) else {
            return Fate::Dropped(EmuDropCause::SendError);
        };
        hop.counters.offered(counted);
        let relay = (i + 1 < self.link.hops.len()).then(|| Relay {
            route: self.link.clone(),
            next: i + 1,
            arrival: now,
            clock: *self.clock,
        });
        self.through(hop, relay, now, dest, wire, counted)
    }

    /// `link`'s verdict at `now`, then the delay line: to `dest`, or on to the next hop.
    fn through(
        &self,
        link: &Arc<Link>,
        relay: Option<Relay>,
        now: Duration,
        dest: SocketAddr,
        wire: &[u8],
        counted: usize,
    ) -> Fate {
        let out = self.out;
        let (at, duplicate_at) = match link.verdict(now, counted) {
            Verdict::Drop(cause) => return self.drop_on(link, EmuDropCause::Link(cause)),
            Verdict::Deliver { at, duplicate_at } => (at, duplicate_at),
        };
        if relay.is_none()
            && at <= now
            && duplicate_at.is_none()
            && link.counters.held_datagrams() == 0
        {
            // Due now and nothing ahead of it on this link: no need to queue.
            send_now(out, link, dest, wire, counted);
            return Fate::SentNow;
        }
        for (i, due) in std::iter::once(at).chain(duplicate_at).enumerate() {
            if link.counters.held_bytes() + counted as u64 > link.hold_limit_bytes {
                return self.drop_on(link, EmuDropCause::HoldLimit);
            }
            if i > 0 {
                link.counters.duplicated();
                out.counters.duplicated();
            }
            link.counters.hold(counted);
            out.counters.hold(counted);
            link.record_held_gauge();
            self.scheduler.push(Held {
                due: self.clock.instant_at(due).into_std(),
                dest,
                data: wire.into(),
                counted,
                out: out.clone(),
                link: link.clone(),
                relay: relay.clone().map(|r| Relay { arrival: due, ..r }),
            });
        }
        Fate::Held { at, duplicate_at }
    }

    /// Counts a drop on `link` (a hop, or the link itself), the route and the sender.
    fn drop_on(&self, link: &Arc<Link>, cause: EmuDropCause) -> Fate {
        self.out.counters.dropped(cause);
        link.record_drop(cause);
        if !Arc::ptr_eq(link, self.link) {
            self.link.record_drop(cause);
        }
        Fate::Dropped(cause)
    }
}

/// The relay: hop `held.link` has delivered `held` at `relay.arrival`; hand it to the next
/// hop of its route at that instant (called by the delay line instead of sending it).
pub(crate) fn relay_onward(scheduler: &Scheduler, held: Held) {
    let Held {
        dest,
        data,
        counted,
        out,
        link,
        relay,
        ..
    } = held;
    link.counters.release(counted);
    out.counters.release(counted);
    link.record_sent(counted);
    link.record_held_gauge();
    let Some(relay) = relay else {
        return;
    };
    let path = Path {
        link: &relay.route,
        out: &out,
        scheduler,
        clock: &relay.clock,
        max_udp_payload: usize::MAX,
    };
    path.hop(relay.next, relay.arrival, dest, &data, counted);
}

impl Drop for EmulatedSocket {
    fn drop(&mut self) {
        if self.mode == SchedulerMode::TokioTimer
            && let Some(s) = self.scheduler.take()
        {
            let waker = s.waker();
            drop(s);
            waker.notify_one();
        }
    }
}

impl AsyncUdpSocket for EmulatedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(WritablePoller {
            socket: self,
            waiting: None,
        })
    }

    /// Splits a GSO batch (never produced, since `max_transmit_segments` is 1, but honoured)
    /// and sends each datagram through its link. Drops are not errors: quinn sees them as
    /// loss, as on a real path.
    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        if self.retired.load(Ordering::Acquire) {
            return Ok(());
        }
        let segment = match transmit.segment_size {
            Some(s) if s > 0 => s,
            _ => transmit.contents.len().max(1),
        };
        for datagram in transmit.contents.chunks(segment) {
            self.send_traced(transmit.destination, datagram)?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        {
            let mut receiver = self.receiver.lock().unwrap_or_else(PoisonError::into_inner);
            if !receiver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *receiver = Some(cx.waker().clone());
            }
        }
        if self.retired.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::Error::other("emulated socket retired")));
        }
        let max = bufs.len().min(meta.len());
        if max == 0 {
            return Poll::Ready(Ok(0));
        }
        loop {
            ready!(self.io.poll_recv_ready(cx))?;
            let mut count = 0;
            while count < max {
                match self.io.try_recv_from(&mut bufs[count]) {
                    Ok((len, addr)) => {
                        let (len, addr) = if self.is_forwarder(addr) {
                            match self.unwrap_forwarded(&mut bufs[count], len) {
                                Some(inner) => inner,
                                None => continue,
                            }
                        } else {
                            (len, addr)
                        };
                        meta[count] = RecvMeta {
                            addr,
                            len,
                            stride: len,
                            ecn: None,
                            dst_ip: None,
                        };
                        self.received_datagrams.fetch_add(1, Ordering::Relaxed);
                        self.received_bytes.fetch_add(len as u64, Ordering::Relaxed);
                        count += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if count == 0 => return Poll::Ready(Err(e)),
                    Err(_) => break,
                }
            }
            if count > 0 {
                return Poll::Ready(Ok(count));
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// One datagram per `try_send`: the link model decides per datagram anyway.
    fn max_transmit_segments(&self) -> usize {
        1
    }

    /// The inner socket has no GRO: one datagram per buffer, `stride == len`.
    fn max_receive_segments(&self) -> usize {
        1
    }

    /// The emulated path never fragments: quinn's path-MTU discovery runs, up to the table's
    /// [`LinkTable::max_udp_payload`] (larger datagrams are dropped as `oversize`).
    fn may_fragment(&self) -> bool {
        false
    }
}

/// Ready unless the real socket's send buffer is full (only immediate sends can see that).
struct WritablePoller {
    socket: Arc<EmulatedSocket>,
    waiting: Option<Pin<Box<dyn Future<Output = io::Result<()>> + Send + Sync>>>,
}

impl fmt::Debug for WritablePoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WritablePoller")
            .field("local", &self.socket.local)
            .finish_non_exhaustive()
    }
}

impl UdpPoller for WritablePoller {
    fn poll_writable(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.waiting.is_none() {
            let socket = self.socket.clone();
            self.waiting = Some(Box::pin(async move { socket.io.writable().await }));
        }
        let result = match self.waiting.as_mut() {
            Some(fut) => ready!(fut.as_mut().poll(cx)),
            None => Ok(()),
        };
        self.waiting = None;
        Poll::Ready(result)
    }
}
