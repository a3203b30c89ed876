//! The vocabulary of element types and reduction operators in all-reduce job specs, with the
//! names nccl-tests uses for them (`-d float`, `-o sum`): said once for the controller that
//! validates a spec, the nodes that run it and the bench that prints `type` and `redop`.

use std::fmt;

use crate::algorithm::quoted_prefix;

/// An element type a collective moves (nccl-tests' `-d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataTypeName {
    /// Signed 8-bit integer (`int8`).
    Int8,
    /// Unsigned 8-bit integer (`uint8`).
    Uint8,
    /// Signed 32-bit integer (`int32`).
    Int32,
    /// Unsigned 32-bit integer (`uint32`).
    Uint32,
    /// Signed 64-bit integer (`int64`).
    Int64,
    /// Unsigned 64-bit integer (`uint64`).
    Uint64,
    /// IEEE 754 binary16 (`half`).
    Half,
    /// IEEE 754 binary32 (`float`), the default.
    Float,
    /// IEEE 754 binary64 (`double`).
    Double,
    /// bfloat16: binary32's exponent, 8 bits of significand (`bfloat16`).
    Bfloat16,
}

/// A reduction operator (nccl-tests' `-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReduceOpName {
    /// Sum, the default.
    Sum,
    /// Product.
    Prod,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Average: the sum divided by the number of ranks.
    Avg,
}

/// A datatype name that is none of [`DataTypeName::ALL`]'s (nor an alias).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown datatype '{0}' (use int8, uint8, int32, uint32, int64, uint64, half, float, double, bfloat16 or all)"
)]
pub struct UnknownDataType(pub String);

/// A reduction name that is none of [`ReduceOpName::ALL`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown reduction op '{0}' (use sum, prod, max, min, avg or all)")]
pub struct UnknownReduceOp(pub String);

impl DataTypeName {
    /// Every datatype, in nccl-tests' order (what `-d all` runs).
    pub const ALL: [Self; 10] = [
        Self::Int8,
        Self::Uint8,
        Self::Int32,
        Self::Uint32,
        Self::Int64,
        Self::Uint64,
        Self::Half,
        Self::Float,
        Self::Double,
        Self::Bfloat16,
    ];

    /// What an empty list in a spec means.
    pub const DEFAULT: Self = Self::Float;

    /// nccl-tests' name (its `type` column).
    pub fn name(self) -> &'static str {
        match self {
            Self::Int8 => "int8",
            Self::Uint8 => "uint8",
            Self::Int32 => "int32",
            Self::Uint32 => "uint32",
            Self::Int64 => "int64",
            Self::Uint64 => "uint64",
            Self::Half => "half",
            Self::Float => "float",
            Self::Double => "double",
            Self::Bfloat16 => "bfloat16",
        }
    }

    /// Bytes of one element (nccl-tests' `wordSize`): count = bytes / this.
    pub fn size_bytes(self) -> usize {
        match self {
            Self::Int8 | Self::Uint8 => 1,
            Self::Half | Self::Bfloat16 => 2,
            Self::Int32 | Self::Uint32 | Self::Float => 4,
            Self::Int64 | Self::Uint64 | Self::Double => 8,
        }
    }

    /// True for the floating-point types.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            Self::Half | Self::Float | Self::Double | Self::Bfloat16
        )
    }

    /// Parses a name or an alias (nccl's `char`, `int`, `float16`, `float32`, `float64`,
    /// `bf16`, `fp16`, `fp32`, `fp64`), ignoring case and surrounding blanks. `all` is not a
    /// datatype: see [`DataTypeName::parse_list`].
    pub fn parse(s: &str) -> Result<Self, UnknownDataType> {
        match s.trim().to_ascii_lowercase().as_str() {
            "int8" | "char" => Ok(Self::Int8),
            "uint8" => Ok(Self::Uint8),
            "int32" | "int" => Ok(Self::Int32),
            "uint32" => Ok(Self::Uint32),
            "int64" => Ok(Self::Int64),
            "uint64" => Ok(Self::Uint64),
            "half" | "float16" | "fp16" => Ok(Self::Half),
            "float" | "float32" | "fp32" => Ok(Self::Float),
            "double" | "float64" | "fp64" => Ok(Self::Double),
            "bfloat16" | "bf16" => Ok(Self::Bfloat16),
            _ => Err(UnknownDataType(quoted_prefix(s))),
        }
    }

    /// The datatypes a list of names means: `all` is every one, an empty list the default;
    /// duplicates are kept once, in the order first given.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<Self>, UnknownDataType> {
        parse_list_of(names, &Self::ALL, Self::DEFAULT, Self::parse)
    }
}

impl ReduceOpName {
    /// Every op, in nccl-tests' order (what `-o all` runs).
    pub const ALL: [Self; 5] = [Self::Sum, Self::Prod, Self::Max, Self::Min, Self::Avg];

    /// What an empty list in a spec means.
    pub const DEFAULT: Self = Self::Sum;

    /// nccl-tests' name (its `redop` column).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sum => "sum",
            Self::Prod => "prod",
            Self::Max => "max",
            Self::Min => "min",
            Self::Avg => "avg",
        }
    }

    /// Parses a name, ignoring case and surrounding blanks. `all` is not an op: see
    /// [`ReduceOpName::parse_list`].
    pub fn parse(s: &str) -> Result<Self, UnknownReduceOp> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sum" => Ok(Self::Sum),
            "prod" => Ok(Self::Prod),
            "max" => Ok(Self::Max),
            "min" => Ok(Self::Min),
            "avg" => Ok(Self::Avg),
            _ => Err(UnknownReduceOp(quoted_prefix(s))),
        }
    }

    /// The ops a list of names means: `all` is every one, an empty list the default;
    /// duplicates are kept once, in the order first given.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<Self>, UnknownReduceOp> {
        parse_list_of(names, &Self::ALL, Self::DEFAULT, Self::parse)
    }
}

impl fmt::Display for DataTypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for ReduceOpName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DataTypeName {
    type Err = UnknownDataType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl std::str::FromStr for ReduceOpName {
    type Err = UnknownReduceOp;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The values a list of names means: `all` is every one of `all`, an empty list `default`;
/// duplicates are kept once, in the order first given.
fn parse_list_of<T: Copy + PartialEq, E, S: AsRef<str>>(
    names: &[S],
    all: &[T],
    default: T,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Vec<T>, E> {
    let mut out = Vec::new();
    for n in names {
        let n = n.as_ref();
        let add: Vec<T> = if n.trim().eq_ignore_ascii_case("all") {
            all.to_vec()
        } else {
            vec![parse(n)?]
        };
        for v in add {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    if out.is_empty() {
        out.push(default);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_all_expands() {
        for d in DataTypeName::ALL {
            assert_eq!(DataTypeName::parse(d.name()), Ok(d));
        }
        for o in ReduceOpName::ALL {
            assert_eq!(ReduceOpName::parse(o.name()), Ok(o));
        }
        assert_eq!(
            DataTypeName::parse_list(&["all"]).ok(),
            Some(DataTypeName::ALL.to_vec())
        );
        assert_eq!(
            ReduceOpName::parse_list(&["min", "ALL"]).ok(),
            Some(vec![
                ReduceOpName::Min,
                ReduceOpName::Sum,
                ReduceOpName::Prod,
                ReduceOpName::Max,
                ReduceOpName::Avg
            ])
        );
        let none: [&str; 0] = [];
        assert_eq!(
            DataTypeName::parse_list(&none).ok(),
            Some(vec![DataTypeName::Float])
        );
        assert_eq!(
            ReduceOpName::parse_list(&none).ok(),
            Some(vec![ReduceOpName::Sum])
        );
    }

    #[test]
    fn unknown_names_are_named_in_the_error() {
        let e = DataTypeName::parse("float8").err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("'float8'") && e.contains("bfloat16")));
        let e = ReduceOpName::parse_list(&["sum", "xor"])
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("'xor'")));
    }

    #[test]
    fn sizes_follow_the_types() {
        assert_eq!(DataTypeName::Int8.size_bytes(), 1);
        assert_eq!(DataTypeName::Bfloat16.size_bytes(), 2);
        assert_eq!(DataTypeName::Float.size_bytes(), 4);
        assert_eq!(DataTypeName::Double.size_bytes(), 8);
    }
}
