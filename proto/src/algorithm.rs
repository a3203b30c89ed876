//! The vocabulary of collective algorithms in job specs: the names a spec may use (with their
//! aliases) and what they mean, said once for the controller that validates a spec and the
//! nodes that run it.

use std::fmt;

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
    pub fn name(self) -> &'static str {
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
