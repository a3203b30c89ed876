//! Framing on the fabric's QUIC streams: length-delimited prost messages (varint length, then
//! the message, as `prost::Message::encode_length_delimited` writes them) and the checks a
//! received [`TransferHeader`] must pass before any payload byte is accepted.
//!
//! A transfer stream is `TransferHeader` + raw payload bytes; the control stream carries a
//! `FabricHello` each way, then `FabricControl` messages (see `proto/spacefabric/v1/fabric.proto`).

use bytes::Bytes;
use prost::Message;
pub use spacefabric_proto::v1::{
    FabricControl, FabricHello, PartialTransfer, ReceiverState, TransferHeader,
    fabric_control::Kind as ControlKind,
};

/// Longest transfer header accepted (a real one is under 60 bytes).
pub const MAX_HEADER_LEN: usize = 256;
/// Longest control message accepted (a hello lists the partial and done transfers).
pub const MAX_CONTROL_LEN: usize = 1 << 20;

/// A frame that cannot be accepted.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a {what}")]
    Truncated {
        /// The frame being read.
        what: &'static str,
    },
    /// The length prefix is not a valid varint or exceeds the limit.
    #[error("{what} length {len} exceeds the limit of {max} bytes")]
    TooLong {
        /// The frame being read.
        what: &'static str,
        /// The announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a valid message.
    #[error("{what} does not decode: {source}")]
    Decode {
        /// The frame being read.
        what: &'static str,
        /// prost's complaint.
        source: prost::DecodeError,
    },
    /// The message decodes but says something impossible.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The frame being read.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Reading the stream failed (connection lost, stream reset).
    #[error("reading a {what}: {source}")]
    Read {
        /// The frame being read.
        what: &'static str,
        /// quinn's error.
        source: quinn::ReadError,
    },
}

/// Encodes a message with its varint length prefix.
pub fn encode_delimited<M: Message>(message: &M) -> Bytes {
    Bytes::from(message.encode_length_delimited_to_vec())
}

/// Reads one length-delimited message of at most `max` bytes. `Ok(None)` when the stream
/// ends cleanly before the first byte (the peer finished the stream).
pub async fn read_delimited<M: Message + Default>(
    recv: &mut quinn::RecvStream,
    what: &'static str,
    max: usize,
) -> Result<Option<M>, FrameError> {
    let mut len: u64 = 0;
    let mut shift = 0u32;
    let mut first = true;
    loop {
        let mut byte = [0u8; 1];
        match recv.read(&mut byte).await {
            Ok(Some(1)) => {}
            Ok(Some(_)) => continue,
            Ok(None) if first => return Ok(None),
            Ok(None) => return Err(FrameError::Truncated { what }),
            Err(source) => return Err(FrameError::Read { what, source }),
        }
        first = false;
        if shift >= 63 {
            return Err(FrameError::TooLong {
                what,
                len: u64::MAX,
                max,
            });
        }
        len |= u64::from(byte[0] & 0x7f) << shift;
        shift += 7;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    if len > max as u64 {
        return Err(FrameError::TooLong { what, len, max });
    }
    let mut buf = vec![0u8; len as usize];
    recv.read_exact(&mut buf).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(_) => FrameError::Truncated { what },
        quinn::ReadExactError::ReadError(source) => FrameError::Read { what, source },
    })?;
    M::decode(buf.as_slice())
        .map(Some)
        .map_err(|source| FrameError::Decode { what, source })
}

/// Checks a transfer header received from the peer of rank `peer_rank`.
pub fn check_header(
    header: &TransferHeader,
    peer_rank: usize,
    max_transfer_bytes: u64,
) -> Result<(), FrameError> {
    let invalid = |reason: String| FrameError::Invalid {
        what: "transfer header",
        reason,
    };
    if header.from_rank as usize != peer_rank {
        return Err(invalid(format!(
            "from_rank {} on a connection with rank {peer_rank}",
            header.from_rank
        )));
    }
    if header.total_len > max_transfer_bytes {
        return Err(invalid(format!(
            "total_len {} exceeds the limit of {max_transfer_bytes} bytes",
            header.total_len
        )));
    }
    if header.offset > header.total_len {
        return Err(invalid(format!(
            "offset {} beyond total_len {}",
            header.offset, header.total_len
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> TransferHeader {
        TransferHeader {
            from_rank: 2,
            tag: 7,
            transfer_id: 9,
            seq: 0,
            offset: 0,
            total_len: 100,
        }
    }

    #[test]
    fn header_checks_name_the_problem() {
        assert!(check_header(&header(), 2, 1000).is_ok());
        let e = check_header(&header(), 3, 1000).unwrap_err();
        assert!(e.to_string().contains("from_rank 2"), "{e}");
        let e = check_header(&header(), 2, 10).unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
        let mut h = header();
        h.offset = 101;
        let e = check_header(&h, 2, 1000).unwrap_err();
        assert!(e.to_string().contains("offset 101"), "{e}");
    }

    #[test]
    fn delimited_encoding_starts_with_the_length() {
        let bytes = encode_delimited(&header());
        assert_eq!(bytes[0] as usize, bytes.len() - 1);
        let decoded = TransferHeader::decode_length_delimited(bytes).unwrap();
        assert_eq!(decoded, header());
    }
}
