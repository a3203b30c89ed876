//! [`Payload`]: a transfer's bytes as the pieces QUIC delivered them in, not copied into one
//! buffer. quinn hands a received stream out as slices of its decrypted packets
//! (`RecvStream::read_chunk`); the mesh keeps those slices, so a collective that reduces from
//! them (`spacefabric_node::collective::element::combine_pieces`) touches each received byte
//! once instead of first copying it into an assembled message (one user-space copy of every
//! received byte less: see docs/BENCHMARKS.md, "CPU per GB all-reduced").

use bytes::{Bytes, BytesMut};

/// A transfer's payload: its bytes in order, in one or more pieces (never an empty piece).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    pieces: Vec<Bytes>,
    len: usize,
}

impl Payload {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `piece` after the bytes held (an empty piece is not kept).
    pub fn push(&mut self, piece: Bytes) {
        if piece.is_empty() {
            return;
        }
        self.len = self.len.saturating_add(piece.len());
        self.pieces.push(piece);
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// The bytes as one buffer: the piece itself when there is one, else one copy.
    pub fn into_bytes(mut self) -> Bytes {
        match self.pieces.len() {
            0 => Bytes::new(),
            1 => self.pieces.pop().unwrap_or_default(),
            _ => {
                let mut whole = BytesMut::with_capacity(self.len);
                for p in &self.pieces {
                    whole.extend_from_slice(p);
                }
                whole.freeze()
            }
        }
    }
}

/// Cuts the bytes of `pieces` from byte `from` on into runs of at most `run` bytes, each as
/// the pieces (or parts of pieces: `Bytes::slice`, no copy) that hold it: how a sender hands
/// a payload to QUIC chunk by chunk.
pub(super) fn runs(pieces: &[Bytes], from: usize, run: usize) -> Vec<Vec<Bytes>> {
    let run = run.max(1);
    let mut out: Vec<Vec<Bytes>> = Vec::new();
    let mut current: Vec<Bytes> = Vec::new();
    let mut in_current = 0usize;
    let mut skip = from;
    for piece in pieces {
        let mut piece = piece.clone();
        if skip >= piece.len() {
            skip -= piece.len();
            continue;
        }
        let _ = piece.split_to(skip);
        skip = 0;
        while !piece.is_empty() {
            let take = (run - in_current).min(piece.len());
            current.push(piece.split_to(take));
            in_current += take;
            if in_current == run {
                out.push(std::mem::take(&mut current));
                in_current = 0;
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Self {
        let mut p = Self::new();
        p.push(bytes);
        p
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Self::from(Bytes::from(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_keep_their_order_and_join_into_one_buffer() {
        let mut p = Payload::new();
        p.push(Bytes::from_static(b"ab"));
        p.push(Bytes::new());
        p.push(Bytes::from_static(b"cde"));
        assert_eq!(p.len(), 5);
        assert_eq!(p.pieces().len(), 2, "the empty piece is not kept");
        assert_eq!(&p.into_bytes()[..], b"abcde");
    }

    #[test]
    fn runs_cut_pieces_at_run_boundaries_after_the_offset() {
        let pieces = [
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"defgh"),
            Bytes::from_static(b"ij"),
        ];
        let joined = |runs: Vec<Vec<Bytes>>| -> Vec<Vec<u8>> {
            runs.into_iter()
                .map(|r| r.iter().flat_map(|b| b.iter().copied()).collect())
                .collect()
        };
        assert_eq!(
            joined(runs(&pieces, 0, 4)),
            [&b"abcd"[..], b"efgh", b"ij"].map(<[u8]>::to_vec)
        );
        assert_eq!(
            joined(runs(&pieces, 4, 3)),
            [&b"efg"[..], b"hij"].map(<[u8]>::to_vec)
        );
        assert_eq!(joined(runs(&pieces, 3, 100)), [b"defghij".to_vec()]);
        assert!(runs(&pieces, 10, 4).is_empty());
        assert!(runs(&pieces, 11, 4).is_empty());
    }

    #[test]
    fn one_piece_is_handed_back_without_a_copy() {
        let b = Bytes::from(vec![7u8; 100]);
        let ptr = b.as_ptr();
        let joined = Payload::from(b).into_bytes();
        assert_eq!(joined.as_ptr(), ptr);
        assert!(Payload::new().into_bytes().is_empty());
    }
}
