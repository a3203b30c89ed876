//! The delivery scheduler: holds datagrams until their delivery time, then writes them to
//! the real socket.
//!
//! One binary heap ordered by (due instant, sequence number), so datagrams due at the same
//! instant leave in the order they were handed in. Two drivers:
//!
//! * [`SchedulerMode::Precise`] — one OS thread per process (shared by every socket):
//!   waits on a condition variable until a spin window before the earliest deadline, then
//!   busy-waits (`std::hint::spin_loop`) until it is due, and writes through a `std` clone of
//!   the sending socket. Sub-millisecond; costs CPU only while a deadline is less than the
//!   window away. The window is learned ([`LearnedSpinWindow`]): as long as the thread's
//!   recent timed waits overshot, plus a margin, at most [`SPIN_WINDOW`].
//! * [`SchedulerMode::TokioTimer`] — a tokio task per socket sleeping with
//!   `tokio::time::sleep_until`. Tokio's timer wheel has 1 ms granularity (deliveries are up
//!   to ~1 ms late), but it follows tokio's paused clock, which the precise thread cannot
//!   read — so tests with `start_paused` use it. Dropping the socket ends the task and
//!   discards what it still held (the precise thread delivers held datagrams regardless).
//!
//! [`SchedulerMode::Auto`] picks `TokioTimer` when tokio's clock is paused at bind time and
//! `Precise` otherwise.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::link_table::{Counters, EmuDropCause, Link};

/// The longest the precise thread spins before a deadline (the cap of its learned window,
/// see [`LearnedSpinWindow`]). A spin covers the wake-up from a timed futex wait: the thread
/// runs with a 1 ns timer slack (`tighten_timer_slack`), so the kernel's default 50 µs
/// rounding of its timers is gone. It was 200 µs (which covered that rounding): on a lan link
/// (50 µs delay) the thread then spun through every datagram's whole hold time, 15 % of the
/// CPU of a lan 16 MiB all-reduce bench (perf). On the loaded 2-core development VM, 1000,
/// 200, 50 and 20 µs measured no different: there the wait for a free core, not the timer,
/// made deliveries late.
pub const SPIN_WINDOW: Duration = Duration::from_micros(50);

/// The spin window's cap in use, in nanoseconds (process-wide; see [`set_spin_window`]).
static SPIN_WINDOW_NANOS: AtomicU64 = AtomicU64::new(SPIN_WINDOW.as_nanos() as u64);

/// Changes the longest the precise scheduler spins before a deadline (process-wide; default
/// [`SPIN_WINDOW`]); within it the window follows how late the thread's timed waits have
/// woken up recently ([`LearnedSpinWindow`]). Larger: more precise on a loaded machine, more
/// CPU.
pub fn set_spin_window(window: Duration) {
    SPIN_WINDOW_NANOS.store(
        window.as_nanos().min(u128::from(u64::MAX)) as u64,
        Ordering::Relaxed,
    );
}

/// The spin window's cap in use (see [`set_spin_window`]).
pub fn spin_window() -> Duration {
    Duration::from_nanos(SPIN_WINDOW_NANOS.load(Ordering::Relaxed))
}

/// Test hook: nanoseconds every delivery batch is held back (see [`set_starvation`]).
static STARVATION_NANOS: AtomicU64 = AtomicU64::new(0);

/// Test hook (process-wide; default zero): holds the delay line back by `delay` before every
/// delivery batch, as a host that cannot give the driver a core would. The lateness it causes
/// is counted in [`SchedulerStats`] like any other, which is what benchmarks use to mark
/// results the host bounded. Not for production runs.
pub fn set_starvation(delay: Duration) {
    STARVATION_NANOS.store(
        delay.as_nanos().min(u128::from(u64::MAX)) as u64,
        Ordering::Relaxed,
    );
}

fn starvation() -> Duration {
    Duration::from_nanos(STARVATION_NANOS.load(Ordering::Relaxed))
}

/// At most this many due datagrams are sent per lock acquisition.
const BATCH: usize = 64;

/// How many recent timed waits [`LearnedSpinWindow`] remembers.
const OVERSHOOT_SAMPLES: usize = 64;

/// What [`LearnedSpinWindow`] adds to the largest recent overshoot.
const SPIN_MARGIN: Duration = Duration::from_micros(5);

/// How long before a deadline the precise thread starts spinning, learned from its own timed
/// waits: a wait asked to end at `t` that ended at `t + o` overshot by `o` (the host's
/// wake-up latency: timer, scheduler, the lock). Spinning longer than the waits overshoot
/// only burns CPU; shorter makes deliveries late. The window is the largest overshoot of the
/// last [`OVERSHOOT_SAMPLES`] timed waits plus [`SPIN_MARGIN`], never more than the cap
/// ([`set_spin_window`]). It starts at the cap (nothing measured yet), so it is never
/// narrower than what the host was recently seen to need: on a loaded host, where wake-ups
/// are late by more than the cap, it stays at the cap, as before it was learned.
/// Pure: the caller passes the instants.
#[derive(Debug, Clone)]
pub(crate) struct LearnedSpinWindow {
    /// Recent overshoots, nanoseconds (a ring; `u64::MAX` = not measured yet).
    recent: [u64; OVERSHOOT_SAMPLES],
    next: usize,
}

impl Default for LearnedSpinWindow {
    fn default() -> Self {
        Self {
            recent: [u64::MAX; OVERSHOOT_SAMPLES],
            next: 0,
        }
    }
}

impl LearnedSpinWindow {
    /// A timed wait asked to end at `asked` ended (timed out) at `woke`.
    pub(crate) fn record(&mut self, asked: Instant, woke: Instant) {
        let overshoot = woke.saturating_duration_since(asked).as_nanos();
        if let Some(slot) = self.recent.get_mut(self.next) {
            *slot = u64::try_from(overshoot).unwrap_or(u64::MAX - 1);
        }
        self.next = (self.next + 1) % OVERSHOOT_SAMPLES;
    }

    /// The window to spin before the next deadline, at most `cap`.
    pub(crate) fn window(&self, cap: Duration) -> Duration {
        let largest = self.recent.iter().copied().max().unwrap_or(u64::MAX);
        if largest == u64::MAX {
            return cap;
        }
        (Duration::from_nanos(largest) + SPIN_MARGIN).min(cap)
    }
}

/// How held datagrams are timed; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulerMode {
    /// `TokioTimer` when tokio's clock is paused at bind time, else `Precise`.
    #[default]
    Auto,
    /// The process-wide OS thread: sleep, then spin to the deadline.
    Precise,
    /// A tokio task with `sleep_until` (1 ms granularity; follows a paused clock).
    TokioTimer,
}

/// Where a held datagram goes out: the sending socket's `std` clone and its counters.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) socket: StdUdpSocket,
    pub(crate) counters: Counters,
}

/// A datagram waiting for its delivery time.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) due: Instant,
    pub(crate) dest: SocketAddr,
    pub(crate) data: Box<[u8]>,
    /// Bytes counted for it in the link's and the socket's counters: the datagram's length,
    /// or for an encapsulated datagram at the forwarder the inner (QUIC) datagram's.
    pub(crate) counted: usize,
    pub(crate) out: Arc<Outbound>,
    pub(crate) link: Arc<Link>,
    /// On a route over relays, where the datagram goes when `link` (a hop) delivers it:
    /// instead of the socket, the next hop (see `Path` in the socket module).
    pub(crate) relay: Option<Relay>,
}

/// The rest of a route for a datagram held by one of its hops.
#[derive(Debug, Clone)]
pub(crate) struct Relay {
    /// The route (its `hops`).
    pub(crate) route: Arc<Link>,
    /// Index of the hop that takes the datagram next.
    pub(crate) next: usize,
    /// Emulated instant the current hop delivers it: the next hop's hand-over time, exact
    /// whatever the driver's lateness.
    pub(crate) arrival: Duration,
    /// The scenario clock (for the next hop's delivery instant).
    pub(crate) clock: super::EmuClock,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    held: Held,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed: the earliest (due, seq) is the greatest, for a max-heap.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.held.due, other.seq).cmp(&(self.held.due, self.seq))
    }
}

#[derive(Debug, Default)]
struct Queue {
    heap: BinaryHeap<Entry>,
    next_seq: u64,
}

/// Counters of the scheduler itself (for benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SchedulerStats {
    /// Datagrams written when due.
    pub delivered: u64,
    /// Times the driver woke up to deliver.
    pub wakeups: u64,
    /// Nanoseconds spent spinning just before deadlines (precise mode).
    pub spin_nanos: u64,
    /// Sum of lateness (delivery instant − due instant) in nanoseconds, as seen by the
    /// driver just before writing.
    pub late_nanos_sum: u64,
    /// Largest lateness seen, in nanoseconds.
    pub late_nanos_max: u64,
    /// The spin window the precise thread uses now, in nanoseconds ([`LearnedSpinWindow`];
    /// zero for the tokio driver).
    pub spin_window_nanos: u64,
}

#[derive(Debug, Default)]
struct StatCells {
    delivered: AtomicU64,
    wakeups: AtomicU64,
    spin_nanos: AtomicU64,
    late_nanos_sum: AtomicU64,
    late_nanos_max: AtomicU64,
    spin_window_nanos: AtomicU64,
}

/// The delay line of one process (precise) or one socket (tokio timer).
#[derive(Debug)]
pub(crate) struct Scheduler {
    queue: Mutex<Queue>,
    /// Precise driver: woken when a new earliest deadline arrives.
    wake: Condvar,
    head_changed: AtomicBool,
    /// Tokio driver: same role.
    notify: Arc<tokio::sync::Notify>,
    stats: StatCells,
}

impl Scheduler {
    fn new() -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            head_changed: AtomicBool::new(false),
            notify: Arc::new(tokio::sync::Notify::new()),
            stats: StatCells::default(),
        }
    }

    /// The process-wide precise scheduler, its thread started on first use.
    pub(crate) fn precise() -> std::io::Result<Arc<Self>> {
        static PRECISE: OnceLock<Arc<Scheduler>> = OnceLock::new();
        if let Some(s) = PRECISE.get() {
            return Ok(s.clone());
        }
        let candidate = Arc::new(Self::new());
        let mut started = false;
        let s = PRECISE.get_or_init(|| {
            started = true;
            candidate.clone()
        });
        if started {
            let driver = s.clone();
            std::thread::Builder::new()
                .name("spacefabric-emu-scheduler".into())
                .spawn(move || {
                    tighten_timer_slack();
                    driver.run_precise()
                })?;
        }
        Ok(s.clone())
    }

    /// A scheduler driven by a tokio task on the current runtime.
    pub(crate) fn tokio_timer() -> Arc<Self> {
        let s = Arc::new(Self::new());
        tokio::spawn(Self::run_tokio(Arc::downgrade(&s), s.notify.clone()));
        s
    }

    pub(crate) fn stats(&self) -> SchedulerStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SchedulerStats {
            delivered: l(&self.stats.delivered),
            wakeups: l(&self.stats.wakeups),
            spin_nanos: l(&self.stats.spin_nanos),
            late_nanos_sum: l(&self.stats.late_nanos_sum),
            late_nanos_max: l(&self.stats.late_nanos_max),
            spin_window_nanos: l(&self.stats.spin_window_nanos),
        }
    }

    /// Queues a datagram for delivery at `held.due`.
    pub(crate) fn push(&self, held: Held) {
        let earliest = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let seq = q.next_seq;
            q.next_seq += 1;
            q.heap.push(Entry { seq, held });
            q.heap.peek().is_some_and(|e| e.seq == seq)
        };
        if earliest {
            self.head_changed.store(true, Ordering::Release);
            self.wake.notify_one();
            self.notify.notify_one();
        }
    }

    /// Pops the entries due at `now` (at most `BATCH`) into `batch`; returns the next
    /// deadline still waiting.
    fn take_due(&self, q: &mut Queue, now: Instant, batch: &mut Vec<Held>) -> Option<Instant> {
        while batch.len() < BATCH {
            match q.heap.peek() {
                Some(e) if e.held.due <= now => {
                    if let Some(e) = q.heap.pop() {
                        batch.push(e.held);
                    }
                }
                _ => break,
            }
        }
        q.heap.peek().map(|e| e.held.due)
    }

    fn deliver(&self, batch: &mut Vec<Held>, now: Instant) {
        self.stats.wakeups.fetch_add(1, Ordering::Relaxed);
        for held in batch.drain(..) {
            let late = now.saturating_duration_since(held.due).as_nanos() as u64;
            self.stats.late_nanos_sum.fetch_add(late, Ordering::Relaxed);
            self.stats.late_nanos_max.fetch_max(late, Ordering::Relaxed);
            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            if held.relay.is_some() {
                super::socket::relay_onward(self, held);
                continue;
            }
            send_now(&held.out, &held.link, held.dest, &held.data, held.counted);
            held.link.counters.release(held.counted);
            held.out.counters.release(held.counted);
            held.link.record_held_gauge();
        }
    }

    fn run_precise(self: Arc<Self>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut learned = LearnedSpinWindow::default();
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            let next = self.take_due(&mut q, now, &mut batch);
            if !batch.is_empty() {
                drop(q);
                let starve = starvation();
                let now = if starve.is_zero() {
                    now
                } else {
                    std::thread::sleep(starve);
                    Instant::now()
                };
                self.deliver(&mut batch, now);
                q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            let Some(due) = next else {
                q = self.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let wait = due.saturating_duration_since(now);
            let window = learned.window(spin_window());
            self.stats
                .spin_window_nanos
                .store(window.as_nanos() as u64, Ordering::Relaxed);
            if wait > window {
                let asked = now + (wait - window);
                let (guard, waited) = self
                    .wake
                    .wait_timeout(q, wait - window)
                    .unwrap_or_else(PoisonError::into_inner);
                q = guard;
                if waited.timed_out() {
                    learned.record(asked, Instant::now());
                }
                continue;
            }
            // Spin to the deadline, without the lock, unless an earlier one arrives.
            self.head_changed.store(false, Ordering::Release);
            drop(q);
            let spin_start = Instant::now();
            while Instant::now() < due && !self.head_changed.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            self.stats
                .spin_nanos
                .fetch_add(spin_start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A handle that wakes the tokio driver (so it notices when its socket is gone).
    pub(crate) fn waker(&self) -> Arc<tokio::sync::Notify> {
        self.notify.clone()
    }

    /// The tokio driver holds the scheduler only while it delivers, so it ends as soon as
    /// the socket drops the scheduler (the socket wakes it on drop).
    async fn run_tokio(scheduler: std::sync::Weak<Self>, notify: Arc<tokio::sync::Notify>) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let notified = notify.notified();
            let Some(this) = scheduler.upgrade() else {
                return;
            };
            let now = tokio::time::Instant::now().into_std();
            let next = {
                let mut q = this.queue.lock().unwrap_or_else(PoisonError::into_inner);
                this.take_due(&mut q, now, &mut batch)
            };
            if !batch.is_empty() {
                let starve = starvation();
                let now = if starve.is_zero() {
                    now
                } else {
                    tokio::time::sleep(starve).await;
                    tokio::time::Instant::now().into_std()
                };
                this.deliver(&mut batch, now);
                continue;
            }
            drop(this);
            match next {
                None => notified.await,
                Some(due) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due.into()) => {}
                        _ = notified => {}
                    }
                }
            }
        }
    }
}

/// Writes one datagram to the real socket now, counting it (as `counted` bytes) as sent or
/// dropped.
pub(crate) fn send_now(out: &Outbound, link: &Link, dest: SocketAddr, data: &[u8], counted: usize) {
    match out.socket.send_to(data, dest) {
        Ok(_) => {
            out.counters.sent(counted);
            link.record_sent(counted);
        }
        Err(e) => {
            tracing::debug!(link = %link.label, %dest, error = %e, "emulated link: real socket refused a due datagram");
            out.counters.dropped(EmuDropCause::SendError);
            link.record_drop(EmuDropCause::SendError);
        }
    }
}

/// Asks the kernel to wake this thread's timed waits on time: Linux rounds a thread's timer
/// expiries up by its timer slack (50 µs by default) to batch wake-ups, which would make every
/// timed wait of the delay line up to 50 µs late and force a spin window wider than that.
/// With a 1 ns slack a timed futex wait wakes within the host's wake-up latency, so the
/// thread can sleep until [`spin_window`] before a deadline instead of spinning through it.
fn tighten_timer_slack() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1)) {
        tracing::debug!(error = %e, "emulated delay line: cannot set a 1 ns timer slack; timed waits may wake up to 50 µs late");
    }
}

/// Is tokio's clock paused? Compares it against a short spin of the wall clock.
pub(crate) fn tokio_clock_is_paused() -> bool {
    let t0 = tokio::time::Instant::now();
    let spin = Instant::now();
    while spin.elapsed() < Duration::from_micros(50) {
        std::hint::spin_loop();
    }
    tokio::time::Instant::now() == t0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spin_window_follows_the_largest_recent_overshoot_within_its_cap() {
        let cap = Duration::from_micros(50);
        let mut w = LearnedSpinWindow::default();
        // Nothing measured: the cap.
        assert_eq!(w.window(cap), cap);
        let t0 = Instant::now();
        let us = Duration::from_micros;
        // Waits that woke 3 µs late: 3 + the 5 µs margin.
        w.record(t0, t0 + us(3));
        // Still unmeasured slots: the cap until the ring is full.
        assert_eq!(w.window(cap), cap);
        for i in 1..OVERSHOOT_SAMPLES as u64 {
            w.record(t0 + us(100 * i), t0 + us(100 * i + 3));
        }
        assert_eq!(w.window(cap), us(8));
        // One wake-up 20 µs late widens it for the next OVERSHOOT_SAMPLES waits...
        w.record(t0, t0 + us(20));
        assert_eq!(w.window(cap), us(25));
        for _ in 0..OVERSHOOT_SAMPLES - 1 {
            w.record(t0, t0 + us(2));
            assert_eq!(w.window(cap), us(25));
        }
        // ...then it is forgotten.
        w.record(t0, t0 + us(2));
        assert_eq!(w.window(cap), us(7));
        // A wake-up later than the cap: the cap. One that came early counts as on time.
        w.record(t0, t0 + Duration::from_millis(4));
        assert_eq!(w.window(cap), cap);
        let mut early = LearnedSpinWindow::default();
        for _ in 0..OVERSHOOT_SAMPLES {
            early.record(t0 + us(10), t0);
        }
        assert_eq!(early.window(cap), SPIN_MARGIN);
        assert_eq!(early.window(us(1)), us(1), "never above the cap");
    }
}
