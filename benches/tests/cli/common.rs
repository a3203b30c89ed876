//! What the bench's command-line tests share (the modules of the `cli` test binary use it as
//! `crate::common`): the binary, a run that must succeed with its JSON report, the table's
//! rows, and the host-bound marks a starved delay line leaves in a report.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

/// The bench binary this package built.
pub(crate) fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spacefabric-bench"))
}

/// `cmd` with a one-size (4 KiB), one-iteration ring all-reduce on `nodes` in-memory nodes of
/// the lan (no links, fast).
pub(crate) fn tiny_sweep(cmd: &mut Command, nodes: u32) -> &mut Command {
    cmd.args(["allreduce", "--fabric", "memory", "--profile", "lan"])
        .arg("--nodes")
        .arg(nodes.to_string())
        .args([
            "--algo", "ring", "-b", "4K", "-e", "4K", "-n", "1", "-w", "0",
        ])
}

/// [`tiny_sweep`] on 4 nodes with one element of the checked iteration corrupted: of the
/// messages 0 -> 1 (one lane), the barrier's (0), the timed iteration's 6 (3 reduce-scatter +
/// 3 all-gather) and the next barrier's (7) come first; the 9th is the first of the checked
/// iteration. The run must end FAILED with exit code 3.
pub(crate) fn corrupted_sweep(cmd: &mut Command) -> &mut Command {
    tiny_sweep(cmd, 4).args(["--corrupt", "0:1:8", "--lanes", "1"])
}

/// Runs `cmd`, asserts it exited 0 (naming `what` and printing both streams), returns its
/// output and stdout.
pub(crate) fn succeed(cmd: &mut Command, what: &str) -> (Output, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out, stdout)
}

/// Reads a JSON file the bench wrote.
pub(crate) fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Runs `cmd` with `--json FILE` added; asserts it succeeded; returns stdout and the report.
pub(crate) fn run_json(cmd: &mut Command) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let what = format!("{:?}", cmd.get_args().collect::<Vec<_>>());
    let (_, stdout) = succeed(cmd.arg("--json").arg(&json), &what);
    (stdout, read_json(&json))
}

/// The table's rows: every stdout line that is not a `#` line, split on white space.
pub(crate) fn rows(stdout: &str) -> Vec<Vec<&str>> {
    stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect()
}

/// The table's first row.
pub(crate) fn first_row(stdout: &str) -> Vec<&str> {
    rows(stdout)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no table row: {stdout}"))
}

/// A row's `host` object says host-bound because the delay line was late, and how to avoid it.
pub(crate) fn assert_starved(host: &serde_json::Value, what: &str) {
    assert_eq!(host["host_bound"], true, "{what}: {host}");
    assert!(
        host["causes"].as_array().unwrap().contains(&"late".into()),
        "{what}: {host}"
    );
    assert_eq!(host["avoid_with"], "--clock virtual", "{what}: {host}");
    assert!(
        host["share"]["delay_line_mean_late_us"].as_f64().unwrap() > 100.0,
        "{what}: {host}"
    );
}

/// The table row starting with `row_starts` (not a `#` line) carries `HOST:` and the cause;
/// the closing line counts it.
pub(crate) fn assert_table_marks(stdout: &str, row_starts: &str) {
    let row = stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.trim_start().starts_with(row_starts))
        .unwrap_or_else(|| panic!("no row {row_starts:?}: {stdout}"));
    assert!(row.contains("HOST:") && row.contains("late"), "{row}");
    assert!(
        stdout.contains("EVERY row was bounded by this host"),
        "{stdout}"
    );
}
