//! The forwarder encapsulation: the small header a node puts in front of a datagram it sends
//! through a forwarder, and that the forwarder puts in front of it on the way to the
//! destination node. Pure: no I/O, no clock.
//!
//! The datagram after the header is the node's QUIC datagram, untouched (the forwarder never
//! decrypts or rewrites it). The header says which shared trunk the datagram crosses and who
//! its true ends are, so the forwarder needs only the profile (not the roster) and the
//! receiving node can report the true source to quinn.
//!
//! # Layout, version 1 (52 bytes, big-endian, fixed size)
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 4  | magic `SFWD` (0x53 0x46 0x57 0x44) |
//! | 4  | 1  | version (1) |
//! | 5  | 1  | flags (none defined: must be 0) |
//! | 6  | 1  | relay hop index (must be 0: one forwarder carries a whole relay route, applying its hops in turn; the byte stays for chains of forwarders) |
//! | 7  | 1  | reserved (must be 0) |
//! | 8  | 2  | trunk: sending site (index into the profile's sites, file order) |
//! | 10 | 2  | trunk: receiving site |
//! | 12 | 4  | trunk: terminal (0-based, < the link's `terminals`) |
//! | 16 | 18 | true source: IPv6 address (IPv4 as `::ffff:a.b.c.d`) + port |
//! | 34 | 18 | true destination: the same |
//! | 52 | …  | the payload (≥ 1 byte) |
//!
//! A node writes its own bound address as the source (possibly unspecified); the forwarder
//! overwrites it with the UDP source it saw, which is what the destination would have seen
//! on a direct path. Anything else — short, wrong magic, unknown version, non-zero flags, hop
//! or reserved byte, empty payload — is a [`DecodeError`]: the caller counts and drops it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The four magic bytes every encapsulated datagram starts with.
pub const MAGIC: [u8; 4] = *b"SFWD";

/// The header version this code writes and reads.
pub const VERSION: u8 = 1;

/// Header length in bytes.
pub const HEADER_LEN: usize = 52;

/// Largest encapsulated datagram (the largest UDP payload over IPv4).
pub const MAX_ENCAPSULATED: usize = 65_507;

/// Largest inner datagram that fits in [`MAX_ENCAPSULATED`].
pub const MAX_INNER: usize = MAX_ENCAPSULATED - HEADER_LEN;

/// The shared trunk a datagram crosses, as site indices of the profile plus a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WireTrunk {
    /// Sending site (index into the profile's sites).
    pub from_site: u16,
    /// Receiving site.
    pub to_site: u16,
    /// Terminal of the link (0-based).
    pub terminal: u32,
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The trunk the datagram crosses.
    pub trunk: WireTrunk,
    /// The true source node.
    pub src: SocketAddr,
    /// The true destination node.
    pub dst: SocketAddr,
}

/// Why a datagram is not a valid encapsulated datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the header plus one payload byte.
    #[error("datagram of {0} bytes is shorter than the {HEADER_LEN}-byte header plus a payload")]
    Short(usize),
    /// The magic bytes are wrong.
    #[error("wrong magic (not an encapsulated datagram)")]
    Magic,
    /// A version this code does not speak.
    #[error("unknown encapsulation version {0}")]
    Version(u8),
    /// Flags, relay hop or reserved byte set.
    #[error("flags/hop/reserved bytes must be 0, got {0:#04x}/{1}/{2}")]
    Reserved(u8, u8, u8),
}

impl DecodeError {
    /// Short label for metrics and stats.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Short(_) => "short",
            Self::Magic => "magic",
            Self::Version(_) => "version",
            Self::Reserved(..) => "reserved",
        }
    }
}

fn put_addr(out: &mut [u8], addr: SocketAddr) {
    let v6 = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    out[..16].copy_from_slice(&v6.octets());
    out[16..18].copy_from_slice(&addr.port().to_be_bytes());
}

fn get_addr(b: &[u8; 18]) -> SocketAddr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[..16]);
    let v6 = Ipv6Addr::from(octets);
    let ip = match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    };
    SocketAddr::new(ip, u16::from_be_bytes([b[16], b[17]]))
}

/// Writes the header for `h` into `out`.
pub fn write_header(out: &mut [u8; HEADER_LEN], h: &Header) {
    out[0..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5..8].fill(0);
    out[8..10].copy_from_slice(&h.trunk.from_site.to_be_bytes());
    out[10..12].copy_from_slice(&h.trunk.to_site.to_be_bytes());
    out[12..16].copy_from_slice(&h.trunk.terminal.to_be_bytes());
    put_addr(&mut out[16..34], h.src);
    put_addr(&mut out[34..52], h.dst);
}

/// The header followed by `payload`, in one buffer.
pub fn encode(h: &Header, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN + payload.len()];
    let mut head = [0u8; HEADER_LEN];
    write_header(&mut head, h);
    out[..HEADER_LEN].copy_from_slice(&head);
    out[HEADER_LEN..].copy_from_slice(payload);
    out
}

/// Overwrites the source address of an encapsulated datagram (the forwarder's rewrite).
/// `datagram` must already have passed [`decode`].
pub fn set_source(datagram: &mut [u8], src: SocketAddr) {
    if let Some(field) = datagram.get_mut(16..34) {
        put_addr(field, src);
    }
}

/// Parses the header of `datagram`; the payload is `&datagram[HEADER_LEN..]`.
pub fn decode(datagram: &[u8]) -> Result<Header, DecodeError> {
    let Some(head) = datagram.first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::Short(datagram.len()));
    };
    if datagram.len() == HEADER_LEN {
        return Err(DecodeError::Short(datagram.len()));
    }
    if head[0..4] != MAGIC {
        return Err(DecodeError::Magic);
    }
    if head[4] != VERSION {
        return Err(DecodeError::Version(head[4]));
    }
    if head[5..8] != [0, 0, 0] {
        return Err(DecodeError::Reserved(head[5], head[6], head[7]));
    }
    let u16_at = |i: usize| u16::from_be_bytes([head[i], head[i + 1]]);
    let terminal = u32::from_be_bytes([head[12], head[13], head[14], head[15]]);
    let mut src = [0u8; 18];
    src.copy_from_slice(&head[16..34]);
    let mut dst = [0u8; 18];
    dst.copy_from_slice(&head[34..52]);
    Ok(Header {
        trunk: WireTrunk {
            from_site: u16_at(8),
            to_site: u16_at(10),
            terminal,
        },
        src: get_addr(&src),
        dst: get_addr(&dst),
    })
}

/// An unspecified IPv4 address with port 0: what a node writes as its source when it does not
/// know better (the forwarder fills in what it saw).
pub const UNSPECIFIED_SOURCE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn header() -> Header {
        Header {
            trunk: WireTrunk {
                from_site: 1,
                to_site: 0,
                terminal: 3,
            },
            src: "127.0.0.1:7001".parse().unwrap(),
            dst: "[2001:db8::7]:9000".parse().unwrap(),
        }
    }

    #[test]
    fn round_trips_v4_and_v6_addresses_and_the_payload() {
        let h = header();
        let d = encode(&h, b"quic bytes");
        assert_eq!(d.len(), HEADER_LEN + 10);
        assert_eq!(&d[..4], b"SFWD");
        assert_eq!(decode(&d).unwrap(), h);
        assert_eq!(&d[HEADER_LEN..], b"quic bytes");
    }

    #[test]
    fn the_forwarder_rewrites_only_the_source() {
        let h = header();
        let mut d = encode(&h, b"x");
        let seen: SocketAddr = "10.1.2.3:4567".parse().unwrap();
        set_source(&mut d, seen);
        let back = decode(&d).unwrap();
        assert_eq!(back.src, seen);
        assert_eq!(back.dst, h.dst);
        assert_eq!(back.trunk, h.trunk);
    }

    #[test]
    fn malformed_datagrams_are_errors_not_panics() {
        let good = encode(&header(), b"payload");
        assert_eq!(decode(&[]), Err(DecodeError::Short(0)));
        assert_eq!(decode(&good[..10]), Err(DecodeError::Short(10)));
        assert_eq!(
            decode(&good[..HEADER_LEN]),
            Err(DecodeError::Short(HEADER_LEN))
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(decode(&bad), Err(DecodeError::Magic));
        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(decode(&bad), Err(DecodeError::Version(2)));
        let mut bad = good.clone();
        bad[6] = 1;
        assert_eq!(decode(&bad), Err(DecodeError::Reserved(0, 1, 0)));
        assert_eq!(DecodeError::Reserved(0, 1, 0).as_str(), "reserved");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn any_header_round_trips(
            from_site in any::<u16>(), to_site in any::<u16>(), terminal in any::<u32>(),
            a in any::<[u8; 16]>(), pa in any::<u16>(), b in any::<u32>(), pb in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            let src = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), pa);
            let src = match src.ip() {
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => SocketAddr::new(IpAddr::V4(v4), pa),
                    None => src,
                },
                IpAddr::V4(_) => src,
            };
            let h = Header {
                trunk: WireTrunk { from_site, to_site, terminal },
                src,
                dst: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(b)), pb),
            };
            let d = encode(&h, &payload);
            prop_assert_eq!(decode(&d).unwrap(), h);
            prop_assert_eq!(&d[HEADER_LEN..], &payload[..]);
        }
    }
}
