//! The bridge between the proto enums on the wire (`v1::Algorithm`, `v1::Strategy`,
//! `v1::Activation`: an `i32` in every message, which may hold a number this build does not
//! know) and the typed names a spec uses ([`AlgorithmName`], [`Strategy`], [`Activation`]:
//! the wire enum without its `UNSPECIFIED`, with the one table of names). Also the serde
//! form of those fields in the messages' JSON (the controller's state dir, `status --json`):
//! the name (`"ring"`), an empty string for unspecified, a bare number for a value this build
//! does not know; reading takes any of the three.

use std::fmt;

use crate::algorithm::AlgorithmName;
use crate::train_names::{Activation, Strategy};

/// A wire enum value that names nothing this build knows, or nothing at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireEnumError {
    /// The field is unset (`…_UNSPECIFIED`, 0) where a value is required.
    #[error("required (one of {names})")]
    Unspecified {
        /// The names a value may have, comma-separated.
        names: &'static str,
    },
    /// A number no variant has (a newer peer, or a corrupt message).
    #[error("unknown value {0}")]
    Unknown(i32),
}

/// A typed name with a wire enum behind it: the conversions every such field needs.
pub trait WireEnum: Sized + Copy + fmt::Display + 'static {
    /// Every value, in the order reports list them.
    const ALL: &'static [Self];
    /// The names of [`Self::ALL`], comma-separated (for error messages).
    const NAMES: &'static str;
    /// The wire number of the value.
    fn to_wire(self) -> i32;
    /// The canonical name (`ring`, `diloco`, `relu`).
    fn name(self) -> &'static str;
    /// Parses a canonical name or an alias; the error says what is accepted.
    fn parse_name(s: &str) -> Result<Self, String>;

    /// The value a wire number stands for: 0 (unspecified) and unknown numbers are errors.
    fn from_wire(value: i32) -> Result<Self, WireEnumError> {
        if value == 0 {
            return Err(WireEnumError::Unspecified { names: Self::NAMES });
        }
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.to_wire() == value)
            .ok_or(WireEnumError::Unknown(value))
    }

    /// Like [`WireEnum::from_wire`], with `default` for an unset field.
    fn from_wire_or(value: i32, default: Self) -> Result<Self, WireEnumError> {
        if value == 0 {
            Ok(default)
        } else {
            Self::from_wire(value)
        }
    }
}

/// The serde form of one wire enum field: the name, `""` for 0, a number when unknown.
fn to_text<T: WireEnum>(value: i32) -> Text {
    match T::from_wire(value) {
        Ok(v) => Text::Name(v.name()),
        Err(WireEnumError::Unspecified { .. }) => Text::Name(""),
        Err(WireEnumError::Unknown(n)) => Text::Number(n),
    }
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum Text {
    Name(&'static str),
    Number(i32),
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum TextIn {
    Name(String),
    Number(i32),
    /// The list of one name a train job's `strategies` was before `strategy`.
    Legacy(Vec<String>),
}

fn from_text<T: WireEnum, E: serde::de::Error>(text: TextIn) -> Result<i32, E> {
    match text {
        TextIn::Number(n) => Ok(n),
        TextIn::Name(s) if s.is_empty() => Ok(0),
        TextIn::Name(s) => T::parse_name(&s).map(T::to_wire).map_err(E::custom),
        TextIn::Legacy(list) => match list.as_slice() {
            [] => Ok(0),
            [s] => T::parse_name(s).map(T::to_wire).map_err(E::custom),
            more => Err(E::custom(format!(
                "{} names where one is expected",
                more.len()
            ))),
        },
    }
}

/// `#[serde(with = "…")]` modules of the wire enum fields of type `$ty`: `$one` for a single
/// field, `$many` for a repeated one (named in `build.rs`).
macro_rules! serde_modules {
    ($ty:ty, $one:ident, $many:ident) => {
        #[doc = concat!("`#[serde(with)]` for one `", stringify!($ty), "` wire field.")]
        pub mod $one {
            use super::*;
            use serde::{Deserialize, Deserializer, Serialize, Serializer};

            /// Writes the field's name.
            pub fn serialize<S: Serializer>(value: &i32, s: S) -> Result<S::Ok, S::Error> {
                to_text::<$ty>(*value).serialize(s)
            }

            /// Reads a name, `""` or a number.
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
                from_text::<$ty, D::Error>(TextIn::deserialize(d)?)
            }
        }

        #[doc = concat!("`#[serde(with)]` for a repeated `", stringify!($ty), "` wire field.")]
        pub mod $many {
            use super::*;
            use serde::{Deserialize, Deserializer, Serializer};

            /// Writes the field's names.
            pub fn serialize<S: Serializer>(values: &[i32], s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(values.iter().map(|v| to_text::<$ty>(*v)))
            }

            /// Reads names, `""` or numbers.
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i32>, D::Error> {
                Vec::<TextIn>::deserialize(d)?
                    .into_iter()
                    .map(from_text::<$ty, D::Error>)
                    .collect()
            }
        }
    };
}

serde_modules!(AlgorithmName, algorithm, algorithms);
serde_modules!(Strategy, strategy, strategies);
serde_modules!(Activation, activation, activations);

impl WireEnum for AlgorithmName {
    const ALL: &'static [Self] = &Self::ALL;
    const NAMES: &'static str = "ring, hd, tree, hier, auto";
    fn to_wire(self) -> i32 {
        crate::v1::Algorithm::from(self) as i32
    }
    fn name(self) -> &'static str {
        Self::name(self)
    }
    fn parse_name(s: &str) -> Result<Self, String> {
        Self::parse(s).map_err(|e| e.to_string())
    }
}

impl WireEnum for Strategy {
    const ALL: &'static [Self] = &Self::ALL;
    const NAMES: &'static str = "sync, sharded, diloco, hier, streaming, delayed";
    fn to_wire(self) -> i32 {
        crate::v1::Strategy::from(self) as i32
    }
    fn name(self) -> &'static str {
        Self::name(self)
    }
    fn parse_name(s: &str) -> Result<Self, String> {
        Self::parse(s).map_err(|e| e.to_string())
    }
}

impl WireEnum for Activation {
    const ALL: &'static [Self] = &Self::ALL;
    const NAMES: &'static str = "relu, tanh";
    fn to_wire(self) -> i32 {
        crate::v1::Activation::from(self) as i32
    }
    fn name(self) -> &'static str {
        Self::name(self)
    }
    fn parse_name(s: &str) -> Result<Self, String> {
        Self::parse(s).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1;

    /// Every name parses to its value, the value goes to the wire and back, and the wire
    /// number is the proto enum's: the one table, checked whole.
    #[test]
    fn every_name_round_trips_through_the_wire() {
        fn check<T: WireEnum + PartialEq + fmt::Debug>(wire: &[i32]) {
            assert_eq!(T::ALL.len(), wire.len());
            let listed: Vec<&str> = T::ALL.iter().map(|v| v.name()).collect();
            assert_eq!(T::NAMES, listed.join(", "));
            for (v, number) in T::ALL.iter().zip(wire) {
                assert_eq!(T::parse_name(v.name()), Ok(*v));
                assert_eq!(v.to_string(), v.name());
                assert_eq!(T::from_wire(v.to_wire()), Ok(*v));
                assert_eq!(T::from_wire_or(0, *v), Ok(*v));
                assert_eq!(v.to_wire(), *number, "{v}");
            }
            assert_eq!(
                T::from_wire(0),
                Err(WireEnumError::Unspecified { names: T::NAMES })
            );
            assert_eq!(T::from_wire(17), Err(WireEnumError::Unknown(17)));
            assert_eq!(T::from_wire(-1), Err(WireEnumError::Unknown(-1)));
        }
        check::<AlgorithmName>(&[
            v1::Algorithm::Ring as i32,
            v1::Algorithm::HalvingDoubling as i32,
            v1::Algorithm::Tree as i32,
            v1::Algorithm::Hierarchical as i32,
            v1::Algorithm::Auto as i32,
        ]);
        check::<Strategy>(&[
            v1::Strategy::Sync as i32,
            v1::Strategy::Sharded as i32,
            v1::Strategy::Diloco as i32,
            v1::Strategy::Hierarchical as i32,
            v1::Strategy::Streaming as i32,
            v1::Strategy::Delayed as i32,
        ]);
        check::<Activation>(&[v1::Activation::Relu as i32, v1::Activation::Tanh as i32]);
        // Every wire variant but UNSPECIFIED has a name.
        for n in 1..=5 {
            assert!(AlgorithmName::from_wire(n).is_ok(), "{n}");
        }
        assert!(AlgorithmName::from_wire(6).is_err());
        for n in 1..=6 {
            assert!(Strategy::from_wire(n).is_ok(), "{n}");
        }
        assert!(Strategy::from_wire(7).is_err());
        assert!(Activation::from_wire(2).is_ok() && Activation::from_wire(3).is_err());
    }

    #[test]
    fn json_says_names_and_reads_names_numbers_and_empty() {
        let job = v1::TrainJob {
            strategy: Strategy::Diloco.to_wire(),
            collective_algorithm: 17,
            ..v1::TrainJob::default()
        };
        let text = serde_json::to_value(&job).unwrap();
        assert_eq!(text["strategy"], "diloco");
        assert_eq!(text["collective_algorithm"], 17);
        assert_eq!(text["hidden_activation"], "");
        let back: v1::TrainJob = serde_json::from_value(text).unwrap();
        assert_eq!(back, job);
        let sweep = v1::AllReduceSweep {
            collective_algorithms: vec![
                AlgorithmName::Ring.to_wire(),
                AlgorithmName::Auto.to_wire(),
            ],
            ..v1::AllReduceSweep::default()
        };
        let text = serde_json::to_value(&sweep).unwrap();
        assert_eq!(
            text["collective_algorithms"],
            serde_json::json!(["ring", "auto"])
        );
        let mut aliased = text.clone();
        aliased["collective_algorithms"] = serde_json::json!(["Rabenseifner", 5]);
        let back: v1::AllReduceSweep = serde_json::from_value(aliased).unwrap();
        assert_eq!(
            back.collective_algorithms,
            vec![AlgorithmName::HalvingDoubling.to_wire(), 5]
        );
        // A state dir written when the fields were strings reads as it did.
        let old = serde_json::json!({"strategies": ["hierarchical"], "activation": "",
            "algorithm": "ring", "steps": 5});
        let mut fresh = serde_json::to_value(v1::TrainJob::default()).unwrap();
        for key in [
            "strategy",
            "hidden_activation",
            "collective_algorithm",
            "steps",
        ] {
            fresh.as_object_mut().unwrap().remove(key);
        }
        fresh
            .as_object_mut()
            .unwrap()
            .extend(old.as_object().unwrap().clone());
        let back: v1::TrainJob = serde_json::from_value(fresh).unwrap();
        assert_eq!(back.strategy, Strategy::Hierarchical.to_wire());
        assert_eq!(back.hidden_activation, 0);
        assert_eq!(back.collective_algorithm, AlgorithmName::Ring.to_wire());
        let mut bad = text;
        bad["collective_algorithms"] = serde_json::json!(["magic"]);
        let err = serde_json::from_value::<v1::AllReduceSweep>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown algorithm 'magic'"), "{err}");
    }
}
