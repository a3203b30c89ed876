//! The hello exchange on a new connection's control stream: each side says its rank, the world
//! size and what it already holds from the other (the ledger's receiver state), and checks
//! what the other said. The dialling and the accepting side run the same exchange
//! ([`exchange_hello`]); only how they get the connection and its control stream differs.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::transport::frame::{self, FabricHello, FrameError, MAX_CONTROL_LEN};
use crate::transport::tls::{self, PeerCertError};

use super::connection::install;
use super::{Inner, PeerSlot, bump, close_code, lock, peer_slot};

/// Why a new connection did not become a peer's connection.
#[derive(Debug, thiserror::Error)]
pub(super) enum HandshakeError {
    /// The rank has no slot in this mesh.
    #[error("rank {0} is not a peer of this mesh")]
    NoSuchPeer(usize),
    /// quinn refused to start the connection.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The peer's address.
        addr: SocketAddr,
        /// quinn's reason.
        source: quinn::ConnectError,
    },
    /// The QUIC/TLS handshake failed.
    #[error("handshake: {0}")]
    Quic(quinn::ConnectionError),
    /// The peer's certificate does not name the node of that rank.
    #[error("certificate: {0}")]
    Certificate(PeerCertError),
    /// The control stream could not be opened or accepted.
    #[error("control stream: {0}")]
    ControlStream(quinn::ConnectionError),
    /// Our hello could not be written.
    #[error("sending hello: {0}")]
    SendHello(quinn::WriteError),
    /// The peer's hello was missing, malformed or inconsistent; the connection is closed.
    #[error("protocol error: {0}")]
    Protocol(ProtocolFault),
}

/// What a peer got wrong on a connection's control stream; the connection is closed with
/// this text as the reason.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProtocolFault {
    /// The control stream ended before the hello.
    #[error("control stream ended before the hello")]
    NoHello,
    /// A hello or control message that does not decode.
    #[error(transparent)]
    Frame(FrameError),
    /// A control message with no kind.
    #[error("control message without a kind")]
    ControlWithoutKind,
    /// The hello names another rank than the connection's.
    #[error("hello says rank {said} but the connection is rank {rank}'s")]
    RankMismatch {
        /// The rank in the hello.
        said: u32,
        /// The connection's rank.
        rank: usize,
    },
    /// The peer belongs to another mesh session (another job on that address).
    #[error(
        "peer rank {rank} is in mesh session `{theirs}`, ours is `{ours}` (a mesh of another job on that address)"
    )]
    OtherSession {
        /// The peer's rank.
        rank: usize,
        /// Its session, cut to 64 characters.
        theirs: String,
        /// Ours.
        ours: String,
    },
    /// The peer's world size is not ours.
    #[error("peer rank {rank} believes the world size is {theirs}, ours is {ours}")]
    WorldSize {
        /// The peer's rank.
        rank: usize,
        /// Its world size.
        theirs: u32,
        /// Ours.
        ours: usize,
    },
}

/// Accepting side: completes the handshake of a connection from `rank`, checks its
/// certificate, exchanges hellos and installs the connection.
pub(super) async fn accept_one(
    inner: &Arc<Inner>,
    rank: usize,
    connecting: quinn::Connecting,
) -> Result<(), HandshakeError> {
    let conn = connecting.await.map_err(HandshakeError::Quic)?;
    let slot = peer_slot(inner, rank).map_err(|_| HandshakeError::NoSuchPeer(rank))?;
    if let Err(e) = tls::peer_is(&conn, &slot.info.name) {
        conn.close(
            close_code::PROTOCOL.into(),
            b"certificate does not match the rank",
        );
        return Err(HandshakeError::Certificate(e));
    }
    let (send, recv) = conn
        .accept_bi()
        .await
        .map_err(HandshakeError::ControlStream)?;
    exchange_hello(inner, slot, rank, conn, send, recv).await?;
    Ok(())
}

/// Dialling side: connects to `rank` (TLS checks the server name), opens the control stream,
/// exchanges hellos and installs the connection.
pub(super) async fn dial_one(
    inner: &Arc<Inner>,
    rank: usize,
) -> Result<quinn::Connection, HandshakeError> {
    let slot = peer_slot(inner, rank).map_err(|_| HandshakeError::NoSuchPeer(rank))?;
    let connecting = inner
        .endpoint
        .connect_with(slot.client_config.clone(), slot.info.addr, &slot.info.name)
        .map_err(|source| HandshakeError::Connect {
            addr: slot.info.addr,
            source,
        })?;
    let conn = connecting.await.map_err(HandshakeError::Quic)?;
    let (send, recv) = conn
        .open_bi()
        .await
        .map_err(HandshakeError::ControlStream)?;
    exchange_hello(inner, slot, rank, conn.clone(), send, recv).await?;
    Ok(conn)
}

/// Writes our hello, reads and checks the peer's, then installs the connection. The dialler's
/// hello opens the control stream (the acceptor sees the stream only once it carries data), so
/// when the acceptor runs this the dialler's hello is already on its way: no side waits for
/// the other.
async fn exchange_hello(
    inner: &Arc<Inner>,
    slot: &PeerSlot,
    rank: usize,
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<(), HandshakeError> {
    send.write_chunk(frame::encode_delimited(&our_hello(inner, slot)))
        .await
        .map_err(HandshakeError::SendHello)?;
    let hello =
        match frame::read_delimited::<FabricHello>(&mut recv, "hello", MAX_CONTROL_LEN).await {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Err(protocol_close(inner, &conn, ProtocolFault::NoHello));
            }
            Err(e) => return Err(protocol_close(inner, &conn, ProtocolFault::Frame(e))),
        };
    if let Err(fault) = check_hello(inner, &hello, rank) {
        return Err(protocol_close(inner, &conn, fault));
    }
    install(inner, rank, conn, send, recv, hello);
    Ok(())
}

/// Counts a protocol error and closes the connection with the reason.
pub(super) fn protocol_close(
    inner: &Inner,
    conn: &quinn::Connection,
    fault: ProtocolFault,
) -> HandshakeError {
    bump(&inner.stats.protocol_errors, 1);
    conn.close(close_code::PROTOCOL.into(), fault.to_string().as_bytes());
    HandshakeError::Protocol(fault)
}

fn check_hello(inner: &Inner, hello: &FabricHello, rank: usize) -> Result<(), ProtocolFault> {
    if hello.rank as usize != rank {
        return Err(ProtocolFault::RankMismatch {
            said: hello.rank,
            rank,
        });
    }
    if hello.session != inner.session {
        return Err(ProtocolFault::OtherSession {
            rank,
            theirs: hello.session.chars().take(64).collect(),
            ours: inner.session.clone(),
        });
    }
    if hello.world_size as usize != inner.world_size {
        return Err(ProtocolFault::WorldSize {
            rank,
            theirs: hello.world_size,
            ours: inner.world_size,
        });
    }
    Ok(())
}

fn our_hello(inner: &Inner, slot: &PeerSlot) -> FabricHello {
    FabricHello {
        rank: inner.rank as u32,
        world_size: inner.world_size as u32,
        receiver_state: Some(lock(&slot.incoming).state()),
        session: inner.session.clone(),
    }
}
