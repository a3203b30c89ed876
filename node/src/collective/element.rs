//! The element types a collective moves and how two elements reduce: one [`Element`]
//! implementation per datatype of nccl-tests' `-d` (int8 … bfloat16), each naming its
//! [`DataTypeName`]. The executor stays one piece of code for every type: it encodes and
//! decodes little-endian elements and combines them with [`Element::reduce`].
//!
//! Integer sums and products wrap (two's complement, as NCCL's device code does), so every
//! integer reduction is associative and its result does not depend on the order of the
//! schedule. Half and bfloat16 are computed in f32 and rounded back to the type after every
//! operation (what NCCL does for them without native arithmetic). `avg` is the sum divided
//! by the number of ranks once, at the end ([`Element::div_ranks`]; NCCL divides after the
//! sum for integers and pre-multiplies by 1/n for floats: we divide after for every type,
//! so the result is the correctly rounded quotient of the exact sum).

use std::fmt;

use half::{bf16, f16};
use spacefabric_proto::reduction::{DataTypeName, ReduceOpName};

/// One element type of a collective.
pub trait Element: bytemuck::Pod + PartialEq + fmt::Debug + Send + Sync + 'static {
    /// nccl-tests' name of the type.
    const DATATYPE: DataTypeName;
    /// Bytes of one element on the wire.
    const BYTES: usize;
    /// The largest n such that every integer in [−n, n] is exact in this type (2^24 for f32;
    /// `u64::MAX` for integers, which wrap instead of rounding).
    const EXACT_INTEGERS: u64;
    /// The element encoded in `bytes` (exactly [`Element::BYTES`] long, little-endian).
    fn read_le(bytes: &[u8]) -> Self;
    /// Appends the little-endian encoding.
    fn write_le(self, out: &mut Vec<u8>);
    /// `self ⊕ other` for `op` (`avg` reduces as `sum`; the division comes at the end).
    fn reduce(self, other: Self, op: ReduceOpName) -> Self;
    /// The average's final step: `self / world`.
    fn div_ranks(self, world: usize) -> Self;
    /// `v` in this type: wrapping for integers, rounded for floats (exact within
    /// [`Element::EXACT_INTEGERS`]).
    fn from_i64(v: i64) -> Self;
    /// A value the result must overwrite (NaN for floats, the type's maximum for integers).
    fn poison() -> Self;
}

macro_rules! integer_element {
    ($t:ty, $name:ident) => {
        impl Element for $t {
            const DATATYPE: DataTypeName = DataTypeName::$name;
            const BYTES: usize = std::mem::size_of::<$t>();
            const EXACT_INTEGERS: u64 = u64::MAX;
            #[inline]
            fn read_le(bytes: &[u8]) -> Self {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                b.copy_from_slice(bytes);
                <$t>::from_le_bytes(b)
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn reduce(self, other: Self, op: ReduceOpName) -> Self {
                match op {
                    ReduceOpName::Sum | ReduceOpName::Avg => self.wrapping_add(other),
                    ReduceOpName::Prod => self.wrapping_mul(other),
                    ReduceOpName::Max => self.max(other),
                    ReduceOpName::Min => self.min(other),
                }
            }
            fn div_ranks(self, world: usize) -> Self {
                // In i128 so that no world size overflows the divisor; the quotient of a
                // value of this type by a divisor ≥ 1 fits the type.
                let q = i128::from(self) / (world.max(1) as i128);
                q as $t
            }
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            fn poison() -> Self {
                <$t>::MAX
            }
        }
    };
}

integer_element!(i8, Int8);
integer_element!(u8, Uint8);
integer_element!(i32, Int32);
integer_element!(u32, Uint32);
integer_element!(i64, Int64);
integer_element!(u64, Uint64);

macro_rules! native_float_element {
    ($t:ty, $name:ident, $exact:expr) => {
        impl Element for $t {
            const DATATYPE: DataTypeName = DataTypeName::$name;
            const BYTES: usize = std::mem::size_of::<$t>();
            const EXACT_INTEGERS: u64 = $exact;
            #[inline]
            fn read_le(bytes: &[u8]) -> Self {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                b.copy_from_slice(bytes);
                <$t>::from_le_bytes(b)
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn reduce(self, other: Self, op: ReduceOpName) -> Self {
                match op {
                    ReduceOpName::Sum | ReduceOpName::Avg => self + other,
                    ReduceOpName::Prod => self * other,
                    ReduceOpName::Max => self.max(other),
                    ReduceOpName::Min => self.min(other),
                }
            }
            fn div_ranks(self, world: usize) -> Self {
                self / (world.max(1) as $t)
            }
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            fn poison() -> Self {
                <$t>::NAN
            }
        }
    };
}

native_float_element!(f32, Float, 1 << 24);
native_float_element!(f64, Double, 1 << 53);

macro_rules! short_float_element {
    ($t:ty, $name:ident, $exact:expr) => {
        impl Element for $t {
            const DATATYPE: DataTypeName = DataTypeName::$name;
            const BYTES: usize = 2;
            const EXACT_INTEGERS: u64 = $exact;
            #[inline]
            fn read_le(bytes: &[u8]) -> Self {
                let mut b = [0u8; 2];
                b.copy_from_slice(bytes);
                <$t>::from_le_bytes(b)
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn reduce(self, other: Self, op: ReduceOpName) -> Self {
                let (a, b) = (self.to_f32(), other.to_f32());
                <$t>::from_f32(match op {
                    ReduceOpName::Sum | ReduceOpName::Avg => a + b,
                    ReduceOpName::Prod => a * b,
                    ReduceOpName::Max => a.max(b),
                    ReduceOpName::Min => a.min(b),
                })
            }
            fn div_ranks(self, world: usize) -> Self {
                <$t>::from_f32(self.to_f32() / world.max(1) as f32)
            }
            fn from_i64(v: i64) -> Self {
                <$t>::from_f32(v as f32)
            }
            fn poison() -> Self {
                <$t>::NAN
            }
        }
    };
}

// Half: 11 significant bits; bfloat16: 8.
short_float_element!(f16, Half, 1 << 11);
short_float_element!(bf16, Bfloat16, 1 << 8);

/// Calls `$body` with the type alias `$T` bound to the Rust type of datatype `$d`
/// (`dispatch_datatype!(d, T => run::<T>(...))`): one generic function serves every `-d`.
#[macro_export]
macro_rules! dispatch_datatype {
    ($d:expr, $T:ident => $body:expr) => {{
        use spacefabric_proto::reduction::DataTypeName as __D;
        use $crate::collective::element::__half as __h;
        match $d {
            __D::Int8 => {
                type $T = i8;
                $body
            }
            __D::Uint8 => {
                type $T = u8;
                $body
            }
            __D::Int32 => {
                type $T = i32;
                $body
            }
            __D::Uint32 => {
                type $T = u32;
                $body
            }
            __D::Int64 => {
                type $T = i64;
                $body
            }
            __D::Uint64 => {
                type $T = u64;
                $body
            }
            __D::Half => {
                type $T = __h::f16;
                $body
            }
            __D::Float => {
                type $T = f32;
                $body
            }
            __D::Double => {
                type $T = f64;
                $body
            }
            __D::Bfloat16 => {
                type $T = __h::bf16;
                $body
            }
        }
    }};
}

#[doc(hidden)]
pub use half as __half;

/// Encodes `values` little-endian.
pub fn encode<T: Element>(values: &[T]) -> Vec<u8> {
    // One copy of the elements' bytes: every element type is plain old data, and on a
    // little-endian host its memory is its wire encoding. Pushing one element at a time
    // checked the capacity per element (9 % of the CPU of a lan 16 MiB all-reduce bench).
    #[cfg(target_endian = "little")]
    {
        bytemuck::cast_slice::<T, u8>(values).to_vec()
    }
    #[cfg(not(target_endian = "little"))]
    {
        let mut out = Vec::with_capacity(values.len().saturating_mul(T::BYTES));
        for &v in values {
            v.write_le(&mut out);
        }
        out
    }
}

/// `dst[i] = dst[i] ⊕ payload[i]` (reduce) or `dst[i] = payload[i]` (copy) over the
/// little-endian elements of `payload` (whose length the caller checked).
pub fn combine_into<T: Element>(dst: &mut [T], payload: &[u8], op: Option<ReduceOpName>) {
    match op {
        Some(op) => reduce_into(dst, payload, op),
        None => copy_into(dst, payload),
    }
}

/// `dst[i] = dst[i] ⊕ payload[i]`, one loop per op (the op is not matched per element).
fn reduce_into<T: Element>(dst: &mut [T], payload: &[u8], op: ReduceOpName) {
    fn each<T: Element>(dst: &mut [T], payload: &[u8], f: impl Fn(T, T) -> T) {
        dst.iter_mut()
            .zip(payload.chunks_exact(T::BYTES))
            .for_each(|(d, s)| *d = f(*d, read_element(s)));
    }
    match op {
        ReduceOpName::Sum | ReduceOpName::Avg => {
            each(dst, payload, |a, b| a.reduce(b, ReduceOpName::Sum));
        }
        ReduceOpName::Prod => each(dst, payload, |a, b| a.reduce(b, ReduceOpName::Prod)),
        ReduceOpName::Max => each(dst, payload, |a, b| a.reduce(b, ReduceOpName::Max)),
        ReduceOpName::Min => each(dst, payload, |a, b| a.reduce(b, ReduceOpName::Min)),
    }
}

/// One little-endian element from exactly [`Element::BYTES`] bytes: an unaligned load on a
/// little-endian host.
#[inline]
fn read_element<T: Element>(bytes: &[u8]) -> T {
    #[cfg(target_endian = "little")]
    {
        bytemuck::pod_read_unaligned(bytes)
    }
    #[cfg(not(target_endian = "little"))]
    {
        T::read_le(bytes)
    }
}

/// `dst[i] = payload[i]` for the elements both hold: one memory copy on a little-endian host
/// (an element's memory is its wire encoding), element by element otherwise.
fn copy_into<T: Element>(dst: &mut [T], payload: &[u8]) {
    #[cfg(target_endian = "little")]
    {
        let dst = bytemuck::cast_slice_mut::<T, u8>(dst);
        let n = dst.len().min(payload.len() / T::BYTES * T::BYTES);
        if let (Some(d), Some(s)) = (dst.get_mut(..n), payload.get(..n)) {
            d.copy_from_slice(s);
        }
    }
    #[cfg(not(target_endian = "little"))]
    {
        let src = payload.chunks_exact(T::BYTES).map(T::read_le);
        dst.iter_mut().zip(src).for_each(|(d, s)| *d = s);
    }
}

/// Longest element ([`Element::BYTES`] of u64 and f64).
const MAX_ELEMENT_BYTES: usize = 8;

/// [`combine_into`] from a payload that arrived in `pieces` (in order; the caller checked that
/// together they hold `dst.len()` elements), without joining them first. An element split
/// across two (or more) pieces is put together in a small buffer and combined on its own.
pub fn combine_pieces<'a, T: Element>(
    dst: &mut [T],
    pieces: impl IntoIterator<Item = &'a [u8]>,
    op: Option<ReduceOpName>,
) {
    let mut rest = dst;
    // The leading bytes of an element that a piece ended inside.
    let mut split = [0u8; MAX_ELEMENT_BYTES];
    let mut held = 0usize;
    for piece in pieces {
        let mut piece = piece;
        if held > 0 {
            let take = (T::BYTES - held).min(piece.len());
            let (head, tail) = piece.split_at(take);
            if let Some(slot) = split.get_mut(held..held + take) {
                slot.copy_from_slice(head);
            }
            held += take;
            piece = tail;
            if held < T::BYTES {
                continue;
            }
            let Some((first, after)) = rest.split_first_mut() else {
                return;
            };
            combine_into(std::slice::from_mut(first), &split[..T::BYTES], op);
            rest = after;
        }
        let whole = (piece.len() / T::BYTES).min(rest.len());
        let (now, after) = std::mem::take(&mut rest).split_at_mut(whole);
        let (body, tail) = piece.split_at(whole * T::BYTES);
        combine_into(now, body, op);
        rest = after;
        if tail.len() >= T::BYTES || T::BYTES > MAX_ELEMENT_BYTES {
            // More bytes than `dst` has room for: the caller's length check failed.
            return;
        }
        if let Some(slot) = split.get_mut(..tail.len()) {
            slot.copy_from_slice(tail);
        }
        held = tail.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Element>(v: T) {
        let bytes = encode(&[v]);
        assert_eq!(bytes.len(), T::BYTES);
        assert_eq!(bytes.len(), T::DATATYPE.size_bytes());
        assert_eq!(T::read_le(&bytes), v);
    }

    #[test]
    fn every_type_round_trips_with_its_size() {
        round_trip(-5i8);
        round_trip(250u8);
        round_trip(-70_000i32);
        round_trip(4_000_000_000u32);
        round_trip(-(1i64 << 40));
        round_trip(u64::MAX - 3);
        round_trip(f16::from_f32(-3.5));
        round_trip(1.25f32);
        round_trip(-2.5e300f64);
        round_trip(bf16::from_f32(96.0));
    }

    #[test]
    fn integers_wrap_and_average_after_the_sum() {
        assert_eq!(100i8.reduce(100, ReduceOpName::Sum), -56);
        assert_eq!(200u8.reduce(2, ReduceOpName::Prod), 144);
        assert_eq!(7i32.reduce(-3, ReduceOpName::Min), -3);
        assert_eq!(7u64.reduce(9, ReduceOpName::Max), 9);
        assert_eq!((-7i32).div_ranks(2), -3);
        assert_eq!(200u8.div_ranks(300), 0);
    }

    #[test]
    fn short_floats_round_to_their_type() {
        // 257 is not a bfloat16: 256 + 1 rounds to 256.
        let x = bf16::from_f32(256.0).reduce(bf16::from_f32(1.0), ReduceOpName::Sum);
        assert_eq!(x.to_f32(), 256.0);
        let y = f16::from_f32(3.0).reduce(f16::from_f32(-2.0), ReduceOpName::Prod);
        assert_eq!(y.to_f32(), -6.0);
        assert_eq!(f16::from_f32(6.0).div_ranks(4).to_f32(), 1.5);
    }

    /// Combines `src` into `dst` from the pieces `src`'s encoding is cut into at `cuts`
    /// (byte offsets), and into a copy of `dst` in one piece: both results must be equal.
    fn combined_in_pieces<T: Element>(
        dst: &[T],
        src: &[T],
        cuts: &[usize],
        op: Option<ReduceOpName>,
    ) {
        let bytes = encode(src);
        let mut pieces = Vec::new();
        let mut start = 0;
        for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
            pieces.push(&bytes[start..c]);
            start = c;
        }
        let mut whole = dst.to_vec();
        combine_into(&mut whole, &bytes, op);
        let mut split = dst.to_vec();
        combine_pieces(&mut split, pieces.iter().copied(), op);
        assert_eq!(split, whole, "cuts {cuts:?}, op {op:?}");
    }

    #[test]
    fn combining_from_pieces_equals_combining_the_joined_payload() {
        let dst: Vec<f32> = (0..9).map(|i| i as f32 * 1.5).collect();
        let src: Vec<f32> = (0..9).map(|i| 100.0 - i as f32).collect();
        // On element boundaries, inside an element, an element across three pieces, empty
        // pieces, one byte at a time.
        let one_by_one: Vec<usize> = (1..36).collect();
        let cut_sets: [&[usize]; 6] = [
            &[],
            &[4, 8],
            &[3, 5, 17],
            &[1, 2, 3],
            &[6, 6, 6, 35],
            &one_by_one,
        ];
        for cuts in cut_sets {
            for op in [None, Some(ReduceOpName::Sum), Some(ReduceOpName::Max)] {
                combined_in_pieces(&dst, &src, cuts, op);
            }
        }
        let dst: Vec<u64> = (0..5).map(|i| u64::MAX - i).collect();
        let src: Vec<u64> = (0..5).map(|i| i * 3 + 1).collect();
        combined_in_pieces(&dst, &src, &[7, 9, 30], Some(ReduceOpName::Sum));
        combined_in_pieces(&dst, &src, &[15, 16, 17], None);
        let dst = vec![bf16::from_f32(1.0); 6];
        let src: Vec<bf16> = (0..6).map(|i| bf16::from_f32(i as f32)).collect();
        combined_in_pieces(&dst, &src, &[1, 3, 5, 7, 9, 11], Some(ReduceOpName::Prod));
        combined_in_pieces(
            &[7i8, -3, 2],
            &[1i8, 1, 1],
            &[1, 2],
            Some(ReduceOpName::Sum),
        );
    }

    #[test]
    fn an_element_split_across_pieces_is_put_together_before_it_is_combined() {
        let mut dst = [1.0f32, 2.0];
        let bytes = encode(&[10.0f32, 20.0]);
        // 10.0's bytes cut 1 + 3, 20.0's bytes 2 + 2.
        let pieces = [&bytes[..1], &bytes[1..6], &bytes[6..]];
        combine_pieces(&mut dst, pieces, Some(ReduceOpName::Sum));
        assert_eq!(dst, [11.0, 22.0]);
    }

    #[test]
    fn the_dispatch_picks_the_type_of_the_name() {
        for d in DataTypeName::ALL {
            let (name, bytes) = crate::dispatch_datatype!(d, T => (T::DATATYPE, T::BYTES));
            assert_eq!(name, d);
            assert_eq!(bytes, d.size_bytes());
        }
    }
}
