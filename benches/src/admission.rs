//! What a bench checks before it starts anything: the controller's own admission of the job it
//! is about to run in this process (`spacefabric_controller::validate::admit`, one code path:
//! field ranges, NaN and infinities, zero steps, and the cost per rank against the default
//! node budget), and that every output file it will write can be written — so a bad flag is
//! a clear error at once, not a NaN loss, an abort or a sweep whose results are lost at the end.

use std::fs::OpenOptions;
use std::path::Path;

use anyhow::Context;
use spacefabric_cli::exit_code::UsageError;
use spacefabric_proto::job_cost::NodeBudget;
use spacefabric_proto::v1::JobSpec;

/// Refuses `spec` on `nodes` ranks exactly as the controller would.
pub(crate) fn admit(spec: &JobSpec, nodes: usize) -> anyhow::Result<()> {
    let world = u32::try_from(nodes).context("--nodes is too large")?;
    spacefabric_controller::validate::admit(Some(spec), world, &NodeBudget::default())
        .map_err(|e| UsageError(format!("the controller would refuse this job: {e}")))?;
    Ok(())
}

/// Checks that each `(flag, path)` names a file this process can create or replace. A file
/// created by the check is removed again. A path that cannot be written is a usage error
/// (exit 2): the flag is wrong, nothing has run.
pub(crate) fn check_output_files(files: &[(&str, Option<&Path>)]) -> anyhow::Result<()> {
    for (flag, path) in files {
        let Some(path) = path else { continue };
        if path.is_dir() {
            return Err(UsageError(format!("{flag} {}: is a directory", path.display())).into());
        }
        let existed = path.exists();
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| UsageError(format!("{flag} {}: cannot write: {e}", path.display())))?;
        if !existed {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(())
}

/// Checks that `dir` is (or can be made) a directory.
pub(crate) fn check_output_dir(flag: &str, dir: Option<&Path>) -> anyhow::Result<()> {
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            UsageError(format!(
                "{flag} {}: cannot create the directory: {e}",
                dir.display()
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritable_outputs_are_refused_and_probes_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("out.json");
        check_output_files(&[("--json", Some(&fresh))]).unwrap();
        assert!(!fresh.exists());
        let missing = dir.path().join("no/such/dir/out.json");
        let err = check_output_files(&[("--json", Some(&missing))]).unwrap_err();
        assert!(format!("{err:#}").contains("--json"), "{err:#}");
        let err = check_output_files(&[("--plot", Some(dir.path()))]).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
    }
}
