//! The command-line convention (docs/CLI.md) on the real spacefabric-bench binary: runs
//! ending in exit codes 0 (ok), 2 (usage) and 3 (wrong results), `--version` with the git
//! commit, shell completions, and a renamed variable failing with the new name. Exit code 1
//! (a runtime failure: an unreachable controller) is in
//! controller/tests/controller/cli_convention.rs — the bench waits 60 s for an unreachable
//! controller before it gives up.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::process::{Command, Output};

use common::corrupted_sweep;

/// The bench with nothing from the caller's environment deciding the run.
fn bench() -> Command {
    let mut cmd = common::bench();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A one-size, one-iteration sweep on the in-memory fabric (no links, fast).
fn tiny_sweep(cmd: &mut Command) -> &mut Command {
    common::tiny_sweep(cmd, 3)
}

#[test]
fn exit_0_ok() {
    let out = tiny_sweep(&mut bench()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn exit_2_usage() {
    // clap's own: an unknown flag
    let out = bench()
        .args(["allreduce", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // ours: an input that names nothing (a profile that does not exist)
    let out = bench()
        .args([
            "allreduce",
            "--fabric",
            "memory",
            "--profile",
            "no-such-profile",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-profile"),
        "{}",
        text(&out)
    );
    // an output file that cannot be written is refused before anything runs
    let dir = tempfile::tempdir().unwrap();
    let out = tiny_sweep(&mut bench())
        .arg("--json")
        .arg(dir.path().join("no/such/dir/r.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // a renamed variable: stops with the new name instead of being ignored
    let out = tiny_sweep(bench().env("SPACEFABRIC_BENCH_NODES", "4"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SPACEFABRIC_BENCH_NODES") && stderr.contains("SPACEFABRIC_NODES"),
        "{stderr}"
    );
}

#[test]
fn exit_3_wrong_results() {
    // corrupt one element of a message of the checked iteration
    let out = corrupted_sweep(&mut bench()).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}

#[test]
fn version_names_the_crate_version_and_the_commit() {
    let out = bench().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let line = String::from_utf8(out.stdout).unwrap();
    let expected_prefix = format!("spacefabric-bench {} (git ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&expected_prefix), "{line}");
    let commit = line
        .trim_end()
        .strip_prefix(&expected_prefix)
        .and_then(|r| r.strip_suffix(')'))
        .unwrap();
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{line}"
    );
}

#[test]
fn completions_cover_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = bench().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["spacefabric-bench", "allreduce", "transfer", "--profile"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let out = bench().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}
