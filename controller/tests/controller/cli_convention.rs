//! The command-line convention (docs/CLI.md) on spacefabric-controller and spacefabric-node:
//! `--version` with the git commit, exit codes 1 (runtime) and 2 (usage), shell completions,
//! and logs on stderr without ANSI colours off a terminal, as JSON with `--log-format json`.
//! (spacefabric-bench's exit codes 0-3: benches/tests/cli/cli_convention.rs.)
#![allow(clippy::unwrap_used)]

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use support::{workspace_bin, workspace_root};

fn controller() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spacefabric-controller"));
    cmd.env_clear();
    cmd
}

fn node_bin() -> PathBuf {
    workspace_bin("spacefabric-node", "spacefabric-node")
}

#[test]
fn every_binary_prints_its_version_and_commit() {
    for (name, bin) in [
        (
            "spacefabric-controller",
            PathBuf::from(env!("CARGO_BIN_EXE_spacefabric-controller")),
        ),
        ("spacefabric-node", node_bin()),
        (
            "spacefabric-bench",
            workspace_bin("spacefabric-bench", "spacefabric-bench"),
        ),
    ] {
        let out = Command::new(&bin).arg("--version").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}");
        let line = String::from_utf8(out.stdout).unwrap();
        assert!(
            line.starts_with(&format!("{name} {} (git ", env!("CARGO_PKG_VERSION"))),
            "{line}"
        );
    }
}

#[test]
fn an_unreachable_controller_is_a_runtime_failure_and_a_bad_profile_a_usage_error() {
    // a port nothing listens on: connection refused at once
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = controller()
        .args([
            "status",
            "--controller",
            &format!("http://127.0.0.1:{port}"),
        ])
        .args(["--join-token", "t"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\n[sites]\n").unwrap();
    let out = controller()
        .args(["profile", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = controller()
        .args(["status", "--join-token", "t"])
        .env("SPACEFABRIC_CA_CERT", "/ca.pem")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SPACEFABRIC_CONTROLLER_CA"), "{stderr}");
}

#[test]
fn completions_for_the_node_and_the_controller() {
    let out = Command::new(node_bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("forwarder") && script.contains("--node-name"));
    let out = controller().args(["completions", "zsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stdout).unwrap().contains("profile"));
}

/// The first log line of `spacefabric-controller serve` on a free port, with `extra` flags.
fn first_serve_log_line(extra: &[&str]) -> String {
    let profile = workspace_root().join("netem-profiles/profiles/lan.toml");
    let mut child = controller()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--profile")
        .arg(&profile)
        .args(["--join-token", "t"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    line
}

#[test]
fn logs_have_no_colours_off_a_terminal_and_json_on_request() {
    let text = first_serve_log_line(&[]);
    assert!(!text.is_empty(), "serve logged nothing");
    assert!(!text.contains('\u{1b}'), "ANSI escape in {text:?}");

    let json = first_serve_log_line(&["--log-format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("not one JSON object per line: {e}: {json:?}"));
    assert!(v["level"].is_string() && v["fields"].is_object(), "{v}");
}
