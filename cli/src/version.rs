//! The version every binary prints with `--version`: the workspace version and the git commit
//! it was built from (cli/build.rs: `SPACEFABRIC_GIT_COMMIT` from the build environment, else
//! `git rev-parse`, else "unknown").

/// The git commit (12 hex digits) the binaries were built from, or "unknown".
pub const GIT_COMMIT: &str = env!("SPACEFABRIC_GIT_COMMIT");

/// The workspace version (every spacefabric crate has the same one).
pub const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `--version` prints after the binary's name: `0.1.0 (git 0123456789ab)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("SPACEFABRIC_GIT_COMMIT"),
    ")"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_the_crate_version_and_a_commit() {
        assert!(VERSION.starts_with(CRATE_VERSION));
        assert!(VERSION.ends_with(&format!("(git {GIT_COMMIT})")));
        assert!(
            GIT_COMMIT == "unknown" || GIT_COMMIT.chars().all(|c| c.is_ascii_hexdigit()),
            "{GIT_COMMIT}"
        );
    }
}
