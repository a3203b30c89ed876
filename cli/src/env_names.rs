//! Environment variable names: every flag `--some-flag` of every binary also reads
//! `SPACEFABRIC_SOME_FLAG` (docs/CLI.md has the table of all of them). Names that broke that
//! rule were renamed; setting an old name now stops the binary (exit 2) with an error naming
//! the new one, instead of being silently ignored. [`scheme_violations`] and [`table_rows`]
//! let each binary's tests hold its whole command tree to the rule and to the table.

/// An environment variable that was renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenamedEnv {
    /// The old name, no longer read.
    pub old: &'static str,
    /// The name to set instead.
    pub new: &'static str,
}

macro_rules! renamed {
    ($($old:literal => $new:literal,)*) => {
        &[$(RenamedEnv { old: $old, new: $new },)*]
    };
}

/// Every renamed variable (old -> new).
pub const RENAMED: &[RenamedEnv] = renamed! {
    "SPACEFABRIC_CA_CERT" => "SPACEFABRIC_CONTROLLER_CA",
    "SPACEFABRIC_CA_DIR" => "SPACEFABRIC_CA",
    "SPACEFABRIC_CA_FORCE" => "SPACEFABRIC_FORCE",
    "SPACEFABRIC_CA_OUT" => "SPACEFABRIC_OUT",
    "SPACEFABRIC_CONTACT_PLAN_HOURS" => "SPACEFABRIC_HOURS",
    "SPACEFABRIC_IDENTITY_OUT" => "SPACEFABRIC_OUT",
    "SPACEFABRIC_TIMELINE_HOURS" => "SPACEFABRIC_HOURS",
    "SPACEFABRIC_TIMELINE_PLOT" => "SPACEFABRIC_PLOT",
    "SPACEFABRIC_TIMELINE_STEP" => "SPACEFABRIC_STEP",
    "SPACEFABRIC_BENCH_DURATION" => "SPACEFABRIC_DURATION",
    "SPACEFABRIC_BENCH_HDR_DIR" => "SPACEFABRIC_HDR_DIR",
    "SPACEFABRIC_BENCH_JSON" => "SPACEFABRIC_JSON",
    "SPACEFABRIC_BENCH_LOAD_FRACTION" => "SPACEFABRIC_LOAD_FRACTION",
    "SPACEFABRIC_BENCH_MAX_LOAD_MBPS" => "SPACEFABRIC_MAX_LOAD_MBPS",
    "SPACEFABRIC_BENCH_NODES" => "SPACEFABRIC_NODES",
    "SPACEFABRIC_BENCH_OUTAGE_DURATION_S" => "SPACEFABRIC_OUTAGE_DURATION_S",
    "SPACEFABRIC_BENCH_OUTAGE_PERIOD_S" => "SPACEFABRIC_OUTAGE_PERIOD_S",
    "SPACEFABRIC_BENCH_OUTAGE_PHASE_S" => "SPACEFABRIC_OUTAGE_PHASE_S",
    "SPACEFABRIC_BENCH_PROBE_INTERVAL_MS" => "SPACEFABRIC_PROBE_INTERVAL_MS",
    "SPACEFABRIC_BENCH_SCHEDULER" => "SPACEFABRIC_SCHEDULER",
    "SPACEFABRIC_BENCH_SPIN_WINDOW_US" => "SPACEFABRIC_SPIN_WINDOW_US",
    "SPACEFABRIC_PING_ITERATIONS" => "SPACEFABRIC_ITERATIONS",
    "SPACEFABRIC_STATUS_JOBS" => "SPACEFABRIC_JOBS",
    "SPACEFABRIC_STATUS_JSON" => "SPACEFABRIC_JSON",
    "SPACEFABRIC_TRAIN_ACCELERATOR" => "SPACEFABRIC_ACCELERATOR",
    "SPACEFABRIC_TRAIN_ACTIVATION" => "SPACEFABRIC_ACTIVATION",
    "SPACEFABRIC_TRAIN_BATCH" => "SPACEFABRIC_BATCH",
    "SPACEFABRIC_TRAIN_COMMIT_EVERY" => "SPACEFABRIC_COMMIT_EVERY",
    "SPACEFABRIC_TRAIN_COMPRESS_BITS" => "SPACEFABRIC_COMPRESS_BITS",
    "SPACEFABRIC_TRAIN_COMPRESS_DENSITY" => "SPACEFABRIC_COMPRESS_DENSITY",
    "SPACEFABRIC_TRAIN_DEPTH" => "SPACEFABRIC_DEPTH",
    "SPACEFABRIC_TRAIN_EVAL_EVERY" => "SPACEFABRIC_EVAL_EVERY",
    "SPACEFABRIC_TRAIN_EVAL_SAMPLES" => "SPACEFABRIC_EVAL_SAMPLES",
    "SPACEFABRIC_TRAIN_FRAGMENTS" => "SPACEFABRIC_FRAGMENTS",
    "SPACEFABRIC_TRAIN_GRAD_CLIP" => "SPACEFABRIC_GRAD_CLIP",
    "SPACEFABRIC_TRAIN_INNER_LR" => "SPACEFABRIC_INNER_LR",
    "SPACEFABRIC_TRAIN_INNER_STEPS" => "SPACEFABRIC_INNER_STEPS",
    "SPACEFABRIC_TRAIN_INPUT" => "SPACEFABRIC_INPUT",
    "SPACEFABRIC_TRAIN_LR_DECAY_STEPS" => "SPACEFABRIC_LR_DECAY_STEPS",
    "SPACEFABRIC_TRAIN_MIN_LR_RATIO" => "SPACEFABRIC_MIN_LR_RATIO",
    "SPACEFABRIC_TRAIN_MIXING" => "SPACEFABRIC_MIXING",
    "SPACEFABRIC_TRAIN_MODEL" => "SPACEFABRIC_MODEL",
    "SPACEFABRIC_TRAIN_NO_ERROR_FEEDBACK" => "SPACEFABRIC_NO_ERROR_FEEDBACK",
    "SPACEFABRIC_TRAIN_OUTER_LR" => "SPACEFABRIC_OUTER_LR",
    "SPACEFABRIC_TRAIN_OUTER_MOMENTUM" => "SPACEFABRIC_OUTER_MOMENTUM",
    "SPACEFABRIC_TRAIN_OUTPUT" => "SPACEFABRIC_OUTPUT",
    "SPACEFABRIC_TRAIN_OVERLAP" => "SPACEFABRIC_OVERLAP",
    "SPACEFABRIC_TRAIN_SAMPLES" => "SPACEFABRIC_SAMPLES",
    "SPACEFABRIC_TRAIN_STEPS" => "SPACEFABRIC_STEPS",
    "SPACEFABRIC_TRAIN_STEP_TIME" => "SPACEFABRIC_STEP_TIME",
    "SPACEFABRIC_TRAIN_STRATEGY" => "SPACEFABRIC_STRATEGY",
    "SPACEFABRIC_TRAIN_SYNC_LR" => "SPACEFABRIC_SYNC_LR",
    "SPACEFABRIC_TRAIN_SYNC_STEPS" => "SPACEFABRIC_SYNC_STEPS",
    "SPACEFABRIC_TRAIN_TARGET_LOSS" => "SPACEFABRIC_TARGET_LOSS",
    "SPACEFABRIC_TRAIN_TEACHER_DEPTH" => "SPACEFABRIC_TEACHER_DEPTH",
    "SPACEFABRIC_TRAIN_TEACHER_WIDTH" => "SPACEFABRIC_TEACHER_WIDTH",
    "SPACEFABRIC_TRAIN_WARMUP" => "SPACEFABRIC_WARMUP",
    "SPACEFABRIC_TRAIN_WEIGHT_DECAY" => "SPACEFABRIC_WEIGHT_DECAY",
    "SPACEFABRIC_TRAIN_WIDTH" => "SPACEFABRIC_WIDTH",
    "SPACEFABRIC_TRANSFER_CC" => "SPACEFABRIC_CC",
    "SPACEFABRIC_TRANSFER_CLOCK" => "SPACEFABRIC_CLOCK",
    "SPACEFABRIC_TRANSFER_CONTACT_AWARE" => "SPACEFABRIC_CONTACT_AWARE",
    "SPACEFABRIC_TRANSFER_FLOWS" => "SPACEFABRIC_FLOWS",
    "SPACEFABRIC_TRANSFER_FROM" => "SPACEFABRIC_FROM",
    "SPACEFABRIC_TRANSFER_OUTAGE_AT" => "SPACEFABRIC_OUTAGE_AT",
    "SPACEFABRIC_TRANSFER_OUTAGE_FOR" => "SPACEFABRIC_OUTAGE_FOR",
    "SPACEFABRIC_TRANSFER_SIZE" => "SPACEFABRIC_SIZE",
    "SPACEFABRIC_TRANSFER_SKIP_GOODPUT" => "SPACEFABRIC_SKIP_GOODPUT",
    "SPACEFABRIC_TRANSFER_TIMEOUT" => "SPACEFABRIC_TIMEOUT",
    "SPACEFABRIC_TRANSFER_TO" => "SPACEFABRIC_TO",
};

/// The variable the scheme gives the flag `--long-name`: `SPACEFABRIC_LONG_NAME`.
pub fn env_for_flag(long: &str) -> String {
    format!(
        "SPACEFABRIC_{}",
        long.to_ascii_uppercase().replace('-', "_")
    )
}

fn walk<'a>(
    command: &'a clap::Command,
    path: &mut Vec<&'a str>,
    visit: &mut dyn FnMut(&[&str], &clap::Arg),
) {
    path.push(command.get_name());
    for arg in command.get_arguments() {
        visit(path, arg);
    }
    for sub in command.get_subcommands() {
        walk(sub, path, visit);
    }
    path.pop();
}

/// Every option of `command` (and its subcommands) whose environment variable breaks the
/// scheme, or that is a renamed variable's old name: "spacefabric-bench fidelity --nodes:
/// reads SPACEFABRIC_BENCH_NODES, the scheme says SPACEFABRIC_NODES".
pub fn scheme_violations(command: &clap::Command) -> Vec<String> {
    let mut out = Vec::new();
    walk(command, &mut Vec::new(), &mut |path, arg| {
        let Some(env) = arg.get_env().map(|e| e.to_string_lossy().into_owned()) else {
            return;
        };
        let what = format!("{} {}", path.join(" "), arg_label(arg));
        if let Some(long) = arg.get_long()
            && env != env_for_flag(long)
        {
            out.push(format!(
                "{what}: reads {env}, the scheme says {}",
                env_for_flag(long)
            ));
        }
        if !env.starts_with("SPACEFABRIC_") {
            out.push(format!("{what}: reads {env}, not a SPACEFABRIC_ name"));
        }
        if let Some(r) = RENAMED.iter().find(|r| r.old == env) {
            out.push(format!("{what}: reads {env}, renamed {}", r.new));
        }
    });
    out
}

fn arg_label(arg: &clap::Arg) -> String {
    match arg.get_long() {
        Some(long) => format!("--{long}"),
        None => format!("<{}>", arg.get_id()),
    }
}

/// What is wrong with `command`'s env variables against the scheme and the table `doc`
/// (docs/CLI.md): the scheme violations, then each missing table row; empty when all is
/// well. Every binary's unit test asserts it is empty.
pub fn problems(command: &clap::Command, doc: &str) -> Vec<String> {
    let mut out = scheme_violations(command);
    out.extend(
        table_rows(command)
            .into_iter()
            .filter(|row| !doc.contains(row.as_str()))
            .map(|row| format!("docs/CLI.md lacks the row {row}")),
    );
    out
}

/// The rows of docs/CLI.md's environment table for `command` (a binary's whole tree), one per
/// option with a variable: `| command path | --flag | VARIABLE | default |`.
pub fn table_rows(command: &clap::Command) -> Vec<String> {
    let mut out = Vec::new();
    walk(command, &mut Vec::new(), &mut |path, arg| {
        let Some(env) = arg.get_env().map(|e| e.to_string_lossy().into_owned()) else {
            return;
        };
        let default: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = if default.is_empty() {
            String::new()
        } else {
            format!("`{}`", default.join(","))
        };
        out.push(format!(
            "| `{}` | `{}` | `{env}` | {default} |",
            path.join(" "),
            arg_label(arg)
        ));
    });
    out
}

/// A renamed variable that is still set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {old} was renamed {new}: set {new} instead (and unset {old})")]
pub struct RenamedEnvError {
    /// The old name found in the environment.
    pub old: &'static str,
    /// The new name.
    pub new: &'static str,
}

/// The first renamed variable that `lookup` (the environment) still has set.
pub fn check_with(lookup: impl Fn(&str) -> Option<String>) -> Result<(), RenamedEnvError> {
    match RENAMED.iter().find(|r| lookup(r.old).is_some()) {
        Some(r) => Err(RenamedEnvError {
            old: r.old,
            new: r.new,
        }),
        None => Ok(()),
    }
}

/// [`check_with`] on the process environment.
pub fn check() -> Result<(), RenamedEnvError> {
    check_with(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_name_is_an_error_naming_the_new_one() {
        assert_eq!(check_with(|_| None), Ok(()));
        let err = check_with(|n| (n == "SPACEFABRIC_CA_CERT").then(|| "ca.pem".to_string()));
        let err = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("SPACEFABRIC_CA_CERT") && err.contains("SPACEFABRIC_CONTROLLER_CA"),
            "{err}"
        );
    }

    #[test]
    fn the_scheme_checker_finds_outliers_and_old_names() {
        let command = clap::Command::new("bin").subcommand(
            clap::Command::new("sub")
                .arg(
                    clap::Arg::new("nodes")
                        .long("nodes")
                        .env("SPACEFABRIC_NODES"),
                )
                .arg(
                    clap::Arg::new("dur")
                        .long("duration")
                        .env("SPACEFABRIC_BENCH_DURATION"),
                )
                .arg(
                    clap::Arg::new("ca")
                        .long("ca-cert")
                        .env("SPACEFABRIC_CA_CERT"),
                )
                .arg(clap::Arg::new("x").long("x").default_value("1")),
        );
        let v = scheme_violations(&command);
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[0].contains("bin sub --duration") && v[0].contains("SPACEFABRIC_DURATION"));
        assert!(
            v.iter()
                .any(|e| e.contains("renamed SPACEFABRIC_CONTROLLER_CA"))
        );
        let rows = table_rows(&command);
        assert_eq!(
            rows[0],
            "| `bin sub` | `--nodes` | `SPACEFABRIC_NODES` |  |"
        );
        assert_eq!(rows.len(), 3, "options without a variable have no row");
    }

    #[test]
    fn new_names_follow_the_scheme() {
        for r in RENAMED {
            assert!(r.new.starts_with("SPACEFABRIC_") && r.old != r.new);
            assert!(
                RENAMED.iter().all(|o| o.old != r.new),
                "{} is itself renamed",
                r.new
            );
        }
    }
}
