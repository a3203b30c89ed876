//! The socket quinn runs on: an emulated socket (the profile's links), the same with its links
//! off (passthrough) or quinn's own UDP socket; and how a closed mesh hands its port back at
//! once instead of after quinn's drain.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::emu::encap::WireTrunk;
use crate::emu::{EmuClock, EmulatedSocket, LinkTable, Trunk};

use super::{Inner, SocketKind, TransportError};

/// Frees the fabric port at once. Closing connections drains for three probe timeouts — tens
/// of seconds on a 2.56 s round trip — and quinn holds the socket until then, so the next job
/// attempt could not bind the node's port. The endpoint moves to a [`DiscardSocket`] to drain
/// and the emulated socket is retired, which makes quinn drop it.
pub(super) fn release_port(inner: &Inner) {
    let Some(emulated) = &inner.emulated else {
        return;
    };
    let discard = Arc::new(DiscardSocket {
        local: emulated.bound_addr(),
    });
    // Move first, retire after: quinn logs a receive error on its current socket as an
    // ERROR, on the socket it moved away from only at trace level (and then lets go of it).
    if let Err(e) = inner.endpoint.rebind_abstract(discard) {
        tracing::debug!(error = %e, "moving the closed endpoint off the fabric socket");
    }
    emulated.retire();
}

/// A socket that sends nowhere and never receives: where a closed endpoint drains.
#[derive(Debug)]
struct DiscardSocket {
    local: SocketAddr,
}

#[derive(Debug)]
struct AlwaysWritable;

impl quinn::UdpPoller for AlwaysWritable {
    fn poll_writable(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl quinn::AsyncUdpSocket for DiscardSocket {
    fn create_io_poller(self: Arc<Self>) -> std::pin::Pin<Box<dyn quinn::UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, _transmit: &quinn::udp::Transmit<'_>) -> io::Result<()> {
        Ok(())
    }

    fn poll_recv(
        &self,
        _cx: &mut std::task::Context<'_>,
        _bufs: &mut [io::IoSliceMut<'_>],
        _meta: &mut [quinn::udp::RecvMeta],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Pending
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The socket quinn runs on, and the emulated socket behind it if there is one.
pub(super) type BuiltSocket = (Arc<dyn quinn::AsyncUdpSocket>, Option<Arc<EmulatedSocket>>);

/// The link our datagrams to one peer cross.
pub(super) enum PeerLink {
    /// The pair's own copy of the link.
    Private(Box<netem_profiles::LinkModel>),
    /// A trunk shared with other node pairs.
    Shared(Trunk),
    /// A trunk shared with node pairs of other processes, applied by the forwarder at the
    /// address (the one that carries this trunk).
    Forwarded(WireTrunk, SocketAddr),
}

/// The socket seam: builds the socket quinn runs on, on `bound` (a clone of its handle) or
/// else on a socket bound to `addr`. `links` are (peer address, link from our site to the
/// peer's, label) for the emulated kinds; `forwarders` carry the [`PeerLink::Forwarded`] ones.
pub(super) fn build_socket(
    kind: SocketKind,
    addr: SocketAddr,
    bound: Option<&std::net::UdpSocket>,
    clock: EmuClock,
    max_udp_payload: usize,
    forwarders: &[SocketAddr],
    links: Vec<(SocketAddr, PeerLink, String)>,
) -> Result<BuiltSocket, TransportError> {
    let addr = match bound {
        Some(socket) => socket.local_addr().unwrap_or(addr),
        None => addr,
    };
    let socket_err = |source| TransportError::Socket { addr, source };
    let std_socket = || match bound {
        Some(socket) => socket.try_clone(),
        None => std::net::UdpSocket::bind(addr),
    };
    match kind {
        SocketKind::PlainUdp => {
            let socket = std_socket().map_err(socket_err)?;
            let socket = quinn::Runtime::wrap_udp_socket(&quinn::TokioRuntime, socket)
                .map_err(socket_err)?;
            Ok((socket, None))
        }
        SocketKind::Emulated | SocketKind::Passthrough => {
            let mut table = if kind == SocketKind::Passthrough {
                LinkTable::passthrough()
            } else {
                LinkTable::new(clock)
            }
            .with_max_udp_payload(max_udp_payload);
            for f in forwarders {
                table = table.with_forwarder(*f);
            }
            for (peer, link, label) in links {
                match link {
                    PeerLink::Private(model) => table.set_peer_labelled(peer, *model, label),
                    PeerLink::Shared(trunk) => table.set_peer_trunk(peer, &trunk),
                    PeerLink::Forwarded(trunk, via) => {
                        table.set_peer_forwarded_via(peer, trunk, via);
                    }
                }
            }
            let table = Arc::new(table);
            let socket = match bound {
                Some(_) => std_socket().and_then(|s| EmulatedSocket::from_std(s, table)),
                None => EmulatedSocket::bind(addr, table),
            }
            .map_err(socket_err)?;
            Ok((socket.clone(), Some(socket)))
        }
    }
}

/// The seed of a rank's quinn endpoint RNG: the scenario seed and the rank, spread over 32
/// bytes by splitmix64.
pub(super) fn endpoint_rng_seed(scenario_seed: u64, rank: usize) -> [u8; 32] {
    let mut state = scenario_seed ^ (rank as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = [0u8; 32];
    for chunk in out.chunks_exact_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}
