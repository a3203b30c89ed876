//! The vocabulary of a train job's names: its strategy (`TrainJob.strategies`) and its
//! activation (`TrainJob.activation`), with their aliases and what they mean, said once for
//! the controller that validates a spec, the nodes that run it and the bench that builds it.
//! The wire keeps the names as strings (a spec, a state file and a command line read the same
//! text); these enums are the only place that parses them.

use std::fmt;

use crate::algorithm::quoted_prefix;

/// A training strategy as a train job names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strategy {
    /// All-reduce gradients every step.
    Sync,
    /// Reduce-scatter gradients, update own shard, all-gather parameters.
    Sharded,
    /// H inner steps, then an outer Nesterov step on the averaged parameter delta.
    Diloco,
    /// Sync inside a site, DiLoCo across sites.
    Hierarchical,
    /// Streaming DiLoCo: parameter fragments synchronised in turn, each sync overlapped with
    /// τ inner steps before its result is merged.
    Streaming,
    /// DiLoCo with the outer update applied one outer step late: the all-reduce of a round's
    /// delta runs during the next round's inner steps.
    Delayed,
}

/// A strategy name that is none of [`Strategy::ALL`]'s (nor an alias).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy '{0}' (use sync, sharded, diloco, hier, streaming or delayed)")]
pub struct UnknownStrategy(pub String);

impl Strategy {
    /// Every strategy, in the order reports list them.
    pub const ALL: [Self; 6] = [
        Self::Sync,
        Self::Sharded,
        Self::Diloco,
        Self::Hierarchical,
        Self::Streaming,
        Self::Delayed,
    ];

    /// Parses a canonical name or the alias `hierarchical`, ignoring case and surrounding
    /// blanks.
    pub fn parse(s: &str) -> Result<Self, UnknownStrategy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sync" => Ok(Self::Sync),
            "sharded" => Ok(Self::Sharded),
            "diloco" => Ok(Self::Diloco),
            "hier" | "hierarchical" => Ok(Self::Hierarchical),
            "streaming" => Ok(Self::Streaming),
            "delayed" => Ok(Self::Delayed),
            _ => Err(UnknownStrategy(quoted_prefix(s))),
        }
    }

    /// The canonical (short) name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Sharded => "sharded",
            Self::Diloco => "diloco",
            Self::Hierarchical => "hier",
            Self::Streaming => "streaming",
            Self::Delayed => "delayed",
        }
    }

    /// True for the strategies with an outer step (DiLoCo and its variants): the ones whose
    /// outer gradient may be compressed and that evaluate and commit at every outer step.
    pub fn has_outer_step(self) -> bool {
        matches!(
            self,
            Self::Diloco | Self::Hierarchical | Self::Streaming | Self::Delayed
        )
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The non-linearity of the student MLP's hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `max(0, x)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
}

/// An activation name that is neither `relu` nor `tanh`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown activation '{0}' (use relu or tanh)")]
pub struct UnknownActivation(pub String);

impl Activation {
    /// Parses `relu` or `tanh`, ignoring case and surrounding blanks.
    pub fn parse(s: &str) -> Result<Self, UnknownActivation> {
        match s.trim().to_ascii_lowercase().as_str() {
            "relu" => Ok(Self::Relu),
            "tanh" => Ok(Self::Tanh),
            _ => Err(UnknownActivation(quoted_prefix(s))),
        }
    }

    /// The name in `TrainJob.activation`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Relu => "relu",
            Self::Tanh => "tanh",
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_the_alias_agrees() {
        for s in Strategy::ALL {
            assert_eq!(Strategy::parse(s.name()), Ok(s));
        }
        assert_eq!(
            Strategy::parse(" Hierarchical "),
            Ok(Strategy::Hierarchical)
        );
        assert!(Strategy::parse("gossip").is_err());
        for a in [Activation::Relu, Activation::Tanh] {
            assert_eq!(Activation::parse(a.name()), Ok(a));
        }
        let e = Activation::parse(&"g".repeat(10_000))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 200, "{}", e.len());
        assert_eq!(
            Strategy::parse("gossip").unwrap_err().to_string(),
            "unknown strategy 'gossip' (use sync, sharded, diloco, hier, streaming or delayed)"
        );
    }
}
