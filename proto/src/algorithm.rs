//! The vocabulary of collective algorithms in job specs: the names a command line, a report
//! or a JSON file uses (with their aliases) for the wire enum `v1::Algorithm`, said once for
//! the controller that validates a spec, the nodes that run it and the bench that builds it.
//! [`AlgorithmName`] is the wire enum without its `UNSPECIFIED`; the conversions (and the
//! error for an unset or unknown number) are [`crate::wire_enum::WireEnum`]'s.

use std::fmt;
use std::str::FromStr;

use crate::v1;
use crate::wire_enum::WireEnumError;

/// A collective algorithm as a job spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlgorithmName {
    /// Ring (reduce-scatter + all-gather around one ring).
    Ring,
    /// Recursive halving-doubling (Rabenseifner).
    HalvingDoubling,
    /// Binary tree: reduce to the root, broadcast back.
    Tree,
    /// Topology-aware: inside each site, across sites once, back inside.
    Hierarchical,
    /// Chosen per message size by the cost model.
    Auto,
}

/// A name that is none of [`AlgorithmName::ALL`]'s (nor an alias).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown algorithm '{0}' (use ring, hd, tree, hier or auto)")]
pub struct UnknownAlgorithm(pub String);

impl AlgorithmName {
    /// Every algorithm, in the order reports list them.
    pub const ALL: [Self; 5] = [
        Self::Ring,
        Self::HalvingDoubling,
        Self::Tree,
        Self::Hierarchical,
        Self::Auto,
    ];

    /// The canonical (short) name: `ring`, `hd`, `tree`, `hier`, `auto`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ring => "ring",
            Self::HalvingDoubling => "hd",
            Self::Tree => "tree",
            Self::Hierarchical => "hier",
            Self::Auto => "auto",
        }
    }

    /// Parses a canonical name or an alias (`halving-doubling`, `rabenseifner`,
    /// `hierarchical`), ignoring case and surrounding blanks.
    pub fn parse(s: &str) -> Result<Self, UnknownAlgorithm> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ring" => Ok(Self::Ring),
            "hd" | "halving-doubling" | "rabenseifner" => Ok(Self::HalvingDoubling),
            "tree" => Ok(Self::Tree),
            "hier" | "hierarchical" => Ok(Self::Hierarchical),
            "auto" => Ok(Self::Auto),
            _ => Err(UnknownAlgorithm(quoted_prefix(s))),
        }
    }
}

/// At most 64 bytes of an input, for an error message: a hostile name is not echoed whole.
pub(crate) fn quoted_prefix(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl From<AlgorithmName> for v1::Algorithm {
    fn from(name: AlgorithmName) -> Self {
        match name {
            AlgorithmName::Ring => Self::Ring,
            AlgorithmName::HalvingDoubling => Self::HalvingDoubling,
            AlgorithmName::Tree => Self::Tree,
            AlgorithmName::Hierarchical => Self::Hierarchical,
            AlgorithmName::Auto => Self::Auto,
        }
    }
}

impl TryFrom<v1::Algorithm> for AlgorithmName {
    type Error = WireEnumError;

    fn try_from(wire: v1::Algorithm) -> Result<Self, WireEnumError> {
        match wire {
            v1::Algorithm::Unspecified => Err(WireEnumError::Unspecified {
                names: <Self as crate::wire_enum::WireEnum>::NAMES,
            }),
            v1::Algorithm::Ring => Ok(Self::Ring),
            v1::Algorithm::HalvingDoubling => Ok(Self::HalvingDoubling),
            v1::Algorithm::Tree => Ok(Self::Tree),
            v1::Algorithm::Hierarchical => Ok(Self::Hierarchical),
            v1::Algorithm::Auto => Ok(Self::Auto),
        }
    }
}

impl FromStr for AlgorithmName {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, UnknownAlgorithm> {
        Self::parse(s)
    }
}

impl fmt::Display for AlgorithmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_aliases_agree() {
        for a in AlgorithmName::ALL {
            assert_eq!(AlgorithmName::parse(a.name()), Ok(a));
        }
        assert_eq!(
            AlgorithmName::parse(" Hierarchical "),
            Ok(AlgorithmName::Hierarchical)
        );
        assert!(AlgorithmName::parse("magic").is_err());
        let long = "x".repeat(100_000);
        let e = AlgorithmName::parse(&long).unwrap_err().to_string();
        assert!(e.len() < 200, "{}", e.len());
    }
}
