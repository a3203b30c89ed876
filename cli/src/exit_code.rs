//! One exit-code scheme for every spacefabric binary, so scripts and CI can tell a crash from
//! a typo from a wrong answer:
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | ok |
//! | 1 | runtime failure (a node died, a socket would not bind, the controller is unreachable) |
//! | 2 | usage: a bad flag or value (clap's own code), a bad profile or input file |
//! | 3 | wrong results: `#wrong > 0` in a sweep, or a verification failed |

use std::process::ExitCode;

/// How a spacefabric binary ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: everything asked for was done and every result verified.
    Ok,
    /// 1: the run failed at run time.
    Failure,
    /// 2: the command line or an input it names is wrong (clap exits 2 for its own errors).
    Usage,
    /// 3: the run finished but some result was wrong (`#wrong > 0`, a failed check).
    WrongResults,
}

impl ExitStatus {
    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::WrongResults => 3,
        }
    }

    /// Ok when no element was wrong, else [`ExitStatus::WrongResults`].
    pub const fn from_wrong_count(wrong: u64) -> Self {
        if wrong == 0 {
            Self::Ok
        } else {
            Self::WrongResults
        }
    }
}

/// An error that is the user's input, not the run: a binary that finds one in its error's
/// chain exits 2 ([`ExitStatus::Usage`]) instead of 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        Self::from(status.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        assert_eq!(ExitStatus::Ok.code(), 0);
        assert_eq!(ExitStatus::Failure.code(), 1);
        assert_eq!(ExitStatus::Usage.code(), 2);
        assert_eq!(ExitStatus::WrongResults.code(), 3);
        assert_eq!(ExitStatus::from_wrong_count(0), ExitStatus::Ok);
        assert_eq!(ExitStatus::from_wrong_count(7), ExitStatus::WrongResults);
        // clap's usage errors use the same code as ours.
        let err = clap::Command::new("x")
            .try_get_matches_from(["x", "--nope"])
            .err()
            .map(|e| e.exit_code());
        assert_eq!(err, Some(i32::from(ExitStatus::Usage.code())));
    }
}
