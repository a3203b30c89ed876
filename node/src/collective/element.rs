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
            fn read_le(bytes: &[u8]) -> Self {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                b.copy_from_slice(bytes);
                <$t>::from_le_bytes(b)
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
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
            fn read_le(bytes: &[u8]) -> Self {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                b.copy_from_slice(bytes);
                <$t>::from_le_bytes(b)
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
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
            fn read_le(bytes: &[u8]) -> Self {
                let mut b = [0u8; 2];
                b.copy_from_slice(bytes);
                <$t>::from_le_bytes(b)
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
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
    let src = payload.chunks_exact(T::BYTES).map(T::read_le);
    match op {
        Some(op) => dst
            .iter_mut()
            .zip(src)
            .for_each(|(d, s)| *d = d.reduce(s, op)),
        None => dst.iter_mut().zip(src).for_each(|(d, s)| *d = s),
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

    #[test]
    fn the_dispatch_picks_the_type_of_the_name() {
        for d in DataTypeName::ALL {
            let (name, bytes) = crate::dispatch_datatype!(d, T => (T::DATATYPE, T::BYTES));
            assert_eq!(name, d);
            assert_eq!(bytes, d.size_bytes());
        }
    }
}
