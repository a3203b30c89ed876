//! The emulated socket: quinn over emulated space links, inside the sending process.
//!
//! A node's QUIC endpoint runs on an [`EmulatedSocket`]: a real UDP socket whose outgoing
//! datagrams each cross the [`LinkModel`](netem_profiles::LinkModel) of the link from this
//! node to the destination, held in a [`LinkTable`]. The model answers *drop* (loss,
//! outage, queue) or *deliver at t*; the socket then holds the datagram until t and writes
//! it to the real socket. Receiving is not emulated: the sender already applied the link.
//!
//! A link between two sites is by default one shared [`Trunk`] per direction: the tables of
//! all nodes in a process hold the same trunk object for every peer the roster places on it
//! (a [`TrunkSet`] hands them out), so their datagrams serialise through one queue.
//!
//! Process clusters share a trunk through a **forwarder** (`crate::forwarder`): a table built
//! [`LinkTable::with_forwarder`] sends the datagrams of peers added with
//! [`LinkTable::set_peer_forwarded`] encapsulated ([`encap`]) to the forwarder, which applies
//! the trunk with the same [`Trunk`] and delay line, and decapsulates what the forwarder
//! delivers, reporting the true source to quinn. The hop to the forwarder is not emulated.
//!
//! Time is [`EmuClock`] — tokio's clock minus the scenario epoch — so tests under tokio's
//! paused clock time-warp quinn, the link model and the delay line together.
//!
//! # Segments and MTU
//! * `max_transmit_segments() == 1`: quinn hands over one datagram per `try_send`, and the
//!   link model decides per datagram. A transmit with `segment_size` set is still split
//!   into `segment_size` chunks (the last may be shorter).
//! * The inner tokio socket has no GRO: `max_receive_segments() == 1` and each received
//!   buffer is one datagram with `stride == len` (quinn splits buffers by stride; a zero
//!   stride would make it loop forever).
//! * The emulated path has an IP MTU of [`EMULATED_PATH_MTU`] (1500, Ethernet-like), i.e. at
//!   most [`MAX_UDP_PAYLOAD`] = 1472 bytes of UDP payload; larger datagrams are dropped with
//!   cause `oversize`, never fragmented. `may_fragment()` is `false`, which enables quinn's
//!   path-MTU discovery (quinn disables it for sockets that may fragment); with quinn's
//!   default upper bound (1452) it settles below the limit. A table built with
//!   [`LinkTable::with_max_udp_payload`] carries larger datagrams (up to 65,507 bytes on
//!   loopback), each still serialised for its full length: the mesh uses it when asked for
//!   larger fabric datagrams, to cut per-datagram CPU on a crowded host.
//! * ECN marks and the source IP of a transmit are not carried (the inner socket is a plain
//!   tokio socket); received datagrams report `ecn: None`.
//!
//! # Scheduler
//! Held datagrams wait in one binary heap per scheduler, ordered by (due instant, arrival
//! order). Tokio's timers tick at 1 ms, too coarse for LAN links (target: p99 error
//! ≤ 0.2 ms), so the default driver outside paused-clock tests is one OS thread per process
//! that sleeps on a condition variable (1 ns timer slack) until a spin window before the
//! earliest deadline, then spins until it is due, and writes through a `std` clone of the
//! sending socket. The window is as long as the thread's recent timed waits overshot, plus
//! 5 µs, at most [`SPIN_WINDOW`] (50 µs). Under tokio's paused clock a tokio-timer task drives the same heap
//! instead (the thread cannot see paused time). See [`SchedulerMode`].
//!
//! Measured (`spacefabric-bench fidelity`, 2-core VM shared with other jobs at load 12–16;
//! details in docs/BENCHMARKS.md, "Emulator fidelity"): with the process at real-time
//! priority, average lateness at send 40–50 µs; end-to-end p99 error (arrival − model time)
//! 0.59 ms on earth-moon and 0.44 ms on lan with 8 nodes in one process, 0.093 ms on lan with
//! 2 nodes; the 1 ms tokio timer gives a 1.2 ms median error instead. At normal priority on the
//! loaded machine the thread waits for a core and p99 errors grow to 7–24 ms. CPU: ~7–12 % of
//! a core for ~18–20 k datagrams/s, of which spinning is 0.2–7 % (the thread sleeps otherwise).
//! Spinning uses `spin_loop` rather than `yield_now`: on a loaded machine a yield can hand the
//! core away for a whole time slice (the yielding variant measured 0.5 ms average lateness
//! against 0.11 ms). The spin window's cap is tunable with [`set_spin_window`].
//!
//! A datagram that is due immediately (no rate limit, zero delay) and has nothing queued
//! ahead of it on its link is written inline, without the scheduler.
//!
//! # Memory bound
//! Every held datagram counts against its link. For a rate-limited link the model itself
//! bounds the bytes waiting for serialisation by the link's queue limit, and the bytes
//! propagating by rate × (delay + jitter reach); the hold limit is their sum (doubled when
//! the link duplicates) plus 256 KiB slack. A link without a rate limit is bounded by its
//! queue limit, capped at [`DEFAULT_MAX_HELD_BYTES_PER_LINK`] (1 GiB, configurable with
//! [`LinkTable::with_max_held_bytes_per_link`]); beyond it datagrams drop with cause
//! `hold_limit`. So memory ≤ Σ over links of their hold limits, plus ~100 bytes of
//! bookkeeping per datagram.
//!
//! # Metrics (`metrics` crate; install the recorder before adding links)
//! `spacefabric_emu_datagrams_sent_total{link}`, `spacefabric_emu_bytes_sent_total{link}`,
//! `spacefabric_emu_datagrams_dropped_total{link,cause}`, gauges
//! `spacefabric_emu_queue_bytes{link}` and `spacefabric_emu_held_datagrams{link}`. The same
//! counters are readable without a recorder through [`EmulatedSocket::stats`] and
//! [`LinkTable::link_stats`].

mod clock;
pub mod encap;
mod link_table;
mod scheduler;
mod socket;
mod trunks;

pub use clock::EmuClock;
pub use link_table::{
    DEFAULT_MAX_HELD_BYTES_PER_LINK, EmuDropCause, LinkStats, LinkTable, TrafficStats,
    describe_metrics,
};
pub use scheduler::{
    SPIN_WINDOW, SchedulerMode, SchedulerStats, set_spin_window, set_starvation, spin_window,
};
pub use socket::{EmuStats, EmulatedSocket, Fate};
pub use trunks::{Trunk, TrunkSet};

// For the forwarder (`crate::forwarder`), which applies trunks with this same code.
pub(crate) use link_table::Counters;
pub(crate) use scheduler::{Outbound, Scheduler, tokio_clock_is_paused};
pub(crate) use socket::Path;

/// IP MTU of every emulated path, in bytes.
pub const EMULATED_PATH_MTU: usize = 1500;

/// Largest UDP payload an emulated path carries: the MTU minus IPv4 and UDP headers.
pub const MAX_UDP_PAYLOAD: usize = EMULATED_PATH_MTU - netem_profiles::UDP_IP_OVERHEAD_BYTES;
