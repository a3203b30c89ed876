//! Shared by the integration tests that run the binaries (Kubernetes, jobs on node
//! processes): the workspace's paths, the manifests under deploy/k8s read as YAML, and the
//! workspace's binaries (an integration test only gets `CARGO_BIN_EXE_*` for the
//! binaries of its own package, so the node's and the bench's are located and, when stale,
//! built with the same cargo, profile and target directory as this test); [`procs`] runs them.

#![allow(dead_code, unreachable_pub)]

pub mod kustomize;
pub mod procs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use serde::Deserialize;
use serde_norway::Value;

/// The workspace root (this crate lives in `controller/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every YAML document of a file, in order (empty documents skipped).
pub fn yaml_docs(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// `v[k0][k1]...`, or None when any step is missing.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

/// `v[k0][k1]...` as a string, or None.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

/// `v[k0][k1]...` as a sequence (empty when missing).
pub fn seq_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The containers of a workload's pod template.
pub fn containers(obj: &Value) -> &[Value] {
    seq_at(obj, &["spec", "template", "spec", "containers"])
}

/// The env entry `name` of a container, if set.
pub fn env_entry<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    seq_at(container, &["env"])
        .iter()
        .find(|e| str_at(e, &["name"]) == Some(name))
}

/// The literal value of env `name` of a container, if set with `value:`.
pub fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    env_entry(container, name).and_then(|e| str_at(e, &["value"]))
}

/// The object of a kind and name among documents.
pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| {
            str_at(d, &["kind"]) == Some(kind) && str_at(d, &["metadata", "name"]) == Some(name)
        })
        .unwrap_or_else(|| panic!("no {kind}/{name} in the manifests"))
}

/// A binary of this workspace, up to date: the copy next to this test's own target directory
/// when it is newer than every source file of the workspace (as after `cargo test --workspace`,
/// which builds every package's binaries first), otherwise built now with
/// `cargo build -p PACKAGE --bin BIN` into the same target directory and profile.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    static BUILD: OnceLock<Mutex<()>> = OnceLock::new();
    let _one_build_at_a_time = BUILD.get_or_init(|| Mutex::new(())).lock();
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap().to_path_buf();
    let path = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    let fresh = modified(&path).is_some_and(|built| newest_source() <= built);
    if !fresh {
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(other) => other.to_string(),
        };
        let status = Command::new(env!("CARGO"))
            .current_dir(workspace_root())
            .args(["build", "--quiet", "-p", package, "--bin", bin, "--profile"])
            .arg(&profile)
            .arg("--target-dir")
            .arg(&target_dir)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cargo build -p {package} --bin {bin} failed"
        );
    }
    assert!(path.is_file(), "{} missing after the build", path.display());
    path
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time among the workspace's sources (Rust, proto, manifests of the
/// crates, Cargo.lock); target/, tests/ (no binary is built from them) and hidden
/// directories excluded.
fn newest_source() -> SystemTime {
    fn walk(dir: &Path, newest: &mut SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.')
                || ["target", "deploy", "docs", "tests"].contains(&name.as_ref())
            {
                continue;
            }
            if path.is_dir() {
                walk(&path, newest);
            } else if [".rs", ".proto", ".toml", ".lock"]
                .iter()
                .any(|ext| name.ends_with(ext))
                && let Some(t) = modified(&path)
            {
                *newest = (*newest).max(t);
            }
        }
    }
    let mut newest = SystemTime::UNIX_EPOCH;
    walk(&workspace_root(), &mut newest);
    newest
}

/// What a binary's `--help` says about its options: each flag (`--listen`, `-b`), the env
/// variable clap reads it from (`[env: SPACEFABRIC_LISTEN=]`) and its default
/// (`[default: 0.0.0.0:7400]`).
#[derive(Debug, Default)]
pub struct HelpOptions {
    pub options: Vec<HelpOption>,
}

/// One option of a `--help` listing.
#[derive(Debug, Default, Clone)]
pub struct HelpOption {
    pub flags: Vec<String>,
    pub env: Option<String>,
    pub default: Option<String>,
}

impl HelpOptions {
    /// Runs `BIN ARGS... --help` and parses its option listing.
    pub fn of(bin: &Path, args: &[&str]) -> Self {
        let out = Command::new(bin)
            .args(args)
            .arg("--help")
            // clap prints the value of a set env var in the help; keep the listing clean.
            .env_clear()
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} {args:?} --help failed: {}{}",
            bin.display(),
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        Self::parse(&text)
    }

    /// Parses clap's help text (short or long form).
    pub fn parse(text: &str) -> Self {
        let mut options: Vec<HelpOption> = Vec::new();
        let mut block = String::new();
        let mut current: Option<HelpOption> = None;
        let finish =
            |current: &mut Option<HelpOption>, block: &str, options: &mut Vec<HelpOption>| {
                if let Some(mut opt) = current.take() {
                    opt.env = bracketed(block, "[env: ")
                        .map(|s| s.split('=').next().unwrap_or("").to_string());
                    opt.default = bracketed(block, "[default: ");
                    options.push(opt);
                }
            };
        for line in text.lines() {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            if trimmed.starts_with('-') && indent <= 6 {
                finish(&mut current, &block, &mut options);
                block.clear();
                let flags = trimmed
                    .split_whitespace()
                    .take_while(|t| t.starts_with('-') || t.starts_with('<') || t.starts_with('['))
                    .map(|t| t.trim_end_matches(','))
                    .filter(|t| t.starts_with('-'))
                    .map(|t| t.split('=').next().unwrap_or(t).to_string())
                    .collect();
                current = Some(HelpOption {
                    flags,
                    ..HelpOption::default()
                });
            } else if !trimmed.is_empty() && indent == 0 {
                // A section heading ("Options:", "Commands:") ends the current option.
                finish(&mut current, &block, &mut options);
                block.clear();
                continue;
            }
            block.push_str(line);
            block.push('\n');
        }
        finish(&mut current, &block, &mut options);
        Self { options }
    }

    /// The option read from env variable `name`.
    pub fn by_env(&self, name: &str) -> Option<&HelpOption> {
        self.options.iter().find(|o| o.env.as_deref() == Some(name))
    }

    /// Whether `flag` (`--controller`, `-b`) is an option.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.options
            .iter()
            .any(|o| o.flags.iter().any(|f| f == flag))
    }

    /// Every env variable name the options read.
    pub fn envs(&self) -> Vec<&str> {
        self.options
            .iter()
            .filter_map(|o| o.env.as_deref())
            .collect()
    }
}

/// The text after `open` up to the closing `]`, across line breaks.
fn bracketed(block: &str, open: &str) -> Option<String> {
    let start = block.find(open)? + open.len();
    let end = block[start..].find(']')? + start;
    Some(
        block[start..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}
