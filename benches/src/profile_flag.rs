//! The `--profile` flag of every bench (`allreduce`, `train`, `fidelity`): one loader, so that
//! each accepts the same spellings (a file path, or a shipped profile's name embedded in the
//! binary) and names the flag and the value in the same error.

use netem_profiles::Profile;

/// Loads the profile `spec` names (see `netem_profiles::load_profile`); the error names
/// `--profile`, the value and every line the profile was refused at, and is a usage error
/// (exit 2).
pub(crate) fn load_profile(spec: &str) -> anyhow::Result<Profile> {
    netem_profiles::load_profile(spec).map_err(|e| {
        spacefabric_cli::exit_code::UsageError(format!("--profile {spec}: {e}")).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shipped_name_loads_and_an_unknown_one_names_the_flag() {
        assert!(load_profile("lan").is_ok());
        let err = load_profile("no-such-profile").unwrap_err().to_string();
        assert!(err.starts_with("--profile no-such-profile: "), "{err}");
    }
}
