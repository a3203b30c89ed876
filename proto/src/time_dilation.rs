//! Time dilation K of a process cluster (DieCast's time-dilation factor), as the controller,
//! its nodes and the benches attached to it agree on it.
//!
//! With K > 1 every process runs its emulated clock K times slower than the wall clock: an
//! emulated span `d` lasts `d · K` of wall time ([`TimeDilation::wall`]) and a wall span `w`
//! measured by a process is `w / K` of emulated time ([`TimeDilation::emulated`]), so a 2-core
//! host can emulate links K times faster than it could on the wall clock. The controller owns
//! K and hands it to every node in `RegisterResponse.time_dilation`; a node started with
//! another explicit K is refused ([`TimeDilation::agree`]). On the wire 0 means 1 (a request
//! without the field, an older peer).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The largest K accepted: a microsecond of emulated time lasts a second of wall time.
pub const MAX_TIME_DILATION: u32 = 1_000_000;

/// Far enough in the future to stand for "never" (30 years): where wall spans saturate.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// A dilation factor K, 1 ..= [`MAX_TIME_DILATION`] (1: emulated time is wall time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct TimeDilation(u32);

/// A K outside 1 ..= [`MAX_TIME_DILATION`], or not an integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time dilation '{value}': {reason}")]
pub struct BadTimeDilation {
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A node's explicit K differs from the controller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "time dilation mismatch: this node runs --time-dilation {node}, the controller runs --time-dilation {controller} (start the node with {controller}, or without the flag to take the controller's)"
)]
pub struct TimeDilationMismatch {
    /// The node's explicit K.
    pub node: TimeDilation,
    /// The controller's K.
    pub controller: TimeDilation,
}

impl TimeDilation {
    /// No dilation: emulated time is wall time.
    pub const NONE: Self = Self(1);

    /// K, checked: 1 ..= [`MAX_TIME_DILATION`].
    pub fn new(k: u32) -> Result<Self, BadTimeDilation> {
        if (1..=MAX_TIME_DILATION).contains(&k) {
            Ok(Self(k))
        } else {
            Err(BadTimeDilation {
                value: k.to_string(),
                reason: format!("must be an integer from 1 to {MAX_TIME_DILATION}"),
            })
        }
    }

    /// K from a protobuf field, where 0 (absent) means 1.
    pub fn from_wire(k: u32) -> Result<Self, BadTimeDilation> {
        if k == 0 { Ok(Self::NONE) } else { Self::new(k) }
    }

    /// K as a number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// True for K > 1.
    pub fn is_dilated(self) -> bool {
        self.0 > 1
    }

    /// How long an emulated span `emulated` lasts on the wall clock (`emulated · K`,
    /// saturating at 30 years).
    pub fn wall(self, emulated: Duration) -> Duration {
        emulated.checked_mul(self.0).unwrap_or(FAR).min(FAR)
    }

    /// The emulated span of a wall span `wall` (`wall / K`).
    pub fn emulated(self, wall: Duration) -> Duration {
        wall / self.0
    }

    /// The K a node runs: the controller's, unless the node was started with another
    /// explicit K, which is refused naming both.
    pub fn agree(node: Option<Self>, controller: Self) -> Result<Self, TimeDilationMismatch> {
        match node {
            Some(node) if node != controller => Err(TimeDilationMismatch { node, controller }),
            _ => Ok(controller),
        }
    }
}

impl Default for TimeDilation {
    fn default() -> Self {
        Self::NONE
    }
}

impl fmt::Display for TimeDilation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for TimeDilation {
    type Err = BadTimeDilation;

    /// An integer K ≥ 1; "4.0" is taken as 4, "2.5" is refused (the dilated clock maps
    /// instants exactly only for integer K).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad = |reason: &str| BadTimeDilation {
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let k = match t.parse::<u64>() {
            Ok(k) => k,
            Err(_) => match t.parse::<f64>() {
                Ok(f)
                    if f.is_finite()
                        && f.fract() == 0.0
                        && f >= 0.0
                        && f <= f64::from(u32::MAX) =>
                {
                    f as u64
                }
                Ok(_) => {
                    return Err(bad(&format!(
                        "must be an integer from 1 to {MAX_TIME_DILATION} (the dilated clock maps instants exactly only for whole K)"
                    )));
                }
                Err(_) => return Err(bad("not a number")),
            },
        };
        u32::try_from(k)
            .map_err(|_| bad(&format!("must be at most {MAX_TIME_DILATION}")))
            .and_then(|k| Self::new(k).map_err(|e| bad(&e.reason)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_factors_and_refuses_the_rest() {
        assert_eq!("4".parse::<TimeDilation>().map(TimeDilation::get), Ok(4));
        assert_eq!(
            "16.0".parse::<TimeDilation>().map(TimeDilation::get),
            Ok(16)
        );
        assert_eq!(" 1 ".parse::<TimeDilation>(), Ok(TimeDilation::NONE));
        for bad in [
            "0",
            "2.5",
            "-4",
            "abc",
            "",
            "1000001",
            "99999999999",
            "NaN",
            "inf",
        ] {
            let e = bad.parse::<TimeDilation>().expect_err(bad);
            assert!(e.to_string().contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[test]
    fn zero_on_the_wire_is_one() {
        assert_eq!(TimeDilation::from_wire(0), Ok(TimeDilation::NONE));
        assert_eq!(TimeDilation::from_wire(8).map(TimeDilation::get), Ok(8));
        assert!(TimeDilation::from_wire(MAX_TIME_DILATION + 1).is_err());
    }

    #[test]
    fn spans_map_both_ways() {
        let k = TimeDilation::new(16).expect("16 is valid");
        let d = Duration::from_nanos(1_282_220_123);
        assert_eq!(k.wall(d), d * 16);
        assert_eq!(k.emulated(k.wall(d)), d);
        assert_eq!(k.wall(Duration::MAX), FAR);
        assert_eq!(TimeDilation::NONE.wall(d), d);
    }

    #[test]
    fn a_node_with_another_explicit_factor_is_refused_naming_both() {
        let four = TimeDilation::new(4).expect("valid");
        let one = TimeDilation::NONE;
        assert_eq!(TimeDilation::agree(None, four), Ok(four));
        assert_eq!(TimeDilation::agree(Some(four), four), Ok(four));
        let e = TimeDilation::agree(Some(one), four).expect_err("differs");
        let text = e.to_string();
        assert!(
            text.contains("--time-dilation 1") && text.contains("--time-dilation 4"),
            "{text}"
        );
    }
}
