//! The vocabulary of a train job's names: its strategy (`TrainJob.strategy`, the wire enum
//! `v1::Strategy`) and its activation (`TrainJob.hidden_activation`, `v1::Activation`), with
//! their aliases and what they mean, said once for the controller that validates a spec, the
//! nodes that run it and the bench that builds it. [`Strategy`] and [`Activation`] are the
//! wire enums without their `UNSPECIFIED`: the names a command line, a report or a JSON file
//! uses live here, the conversions in [`crate::wire_enum::WireEnum`].

use std::fmt;
use std::str::FromStr;

use crate::algorithm::quoted_prefix;
use crate::v1;
use crate::wire_enum::{WireEnum, WireEnumError};

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
    pub const fn name(self) -> &'static str {
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

impl From<Strategy> for v1::Strategy {
    fn from(s: Strategy) -> Self {
        match s {
            Strategy::Sync => Self::Sync,
            Strategy::Sharded => Self::Sharded,
            Strategy::Diloco => Self::Diloco,
            Strategy::Hierarchical => Self::Hierarchical,
            Strategy::Streaming => Self::Streaming,
            Strategy::Delayed => Self::Delayed,
        }
    }
}

impl TryFrom<v1::Strategy> for Strategy {
    type Error = WireEnumError;

    fn try_from(wire: v1::Strategy) -> Result<Self, WireEnumError> {
        match wire {
            v1::Strategy::Unspecified => Err(WireEnumError::Unspecified {
                names: <Self as WireEnum>::NAMES,
            }),
            v1::Strategy::Sync => Ok(Self::Sync),
            v1::Strategy::Sharded => Ok(Self::Sharded),
            v1::Strategy::Diloco => Ok(Self::Diloco),
            v1::Strategy::Hierarchical => Ok(Self::Hierarchical),
            v1::Strategy::Streaming => Ok(Self::Streaming),
            v1::Strategy::Delayed => Ok(Self::Delayed),
        }
    }
}

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, UnknownStrategy> {
        Self::parse(s)
    }
}

/// In JSON a strategy is its name (`"diloco"`); reading accepts the aliases too.
impl serde::Serialize for Strategy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Strategy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::parse(&name).map_err(serde::de::Error::custom)
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
    /// Both activations.
    pub const ALL: [Self; 2] = [Self::Relu, Self::Tanh];

    /// Parses `relu` or `tanh`, ignoring case and surrounding blanks.
    pub fn parse(s: &str) -> Result<Self, UnknownActivation> {
        match s.trim().to_ascii_lowercase().as_str() {
            "relu" => Ok(Self::Relu),
            "tanh" => Ok(Self::Tanh),
            _ => Err(UnknownActivation(quoted_prefix(s))),
        }
    }

    /// The canonical name (`relu`, `tanh`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Relu => "relu",
            Self::Tanh => "tanh",
        }
    }
}

impl From<Activation> for v1::Activation {
    fn from(a: Activation) -> Self {
        match a {
            Activation::Relu => Self::Relu,
            Activation::Tanh => Self::Tanh,
        }
    }
}

impl TryFrom<v1::Activation> for Activation {
    type Error = WireEnumError;

    fn try_from(wire: v1::Activation) -> Result<Self, WireEnumError> {
        match wire {
            v1::Activation::Unspecified => Err(WireEnumError::Unspecified {
                names: <Self as WireEnum>::NAMES,
            }),
            v1::Activation::Relu => Ok(Self::Relu),
            v1::Activation::Tanh => Ok(Self::Tanh),
        }
    }
}

impl FromStr for Activation {
    type Err = UnknownActivation;

    fn from_str(s: &str) -> Result<Self, UnknownActivation> {
        Self::parse(s)
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
