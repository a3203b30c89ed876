//! Shared by the Kubernetes tests (k8s_manifests, k8s_env_configured): the manifests under
//! deploy/k8s read as YAML and the binaries' `--help` option listings. The workspace's paths
//! and binaries come from `spacefabric_testkit::bins`, the processes from
//! `spacefabric_testkit::procs`.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod kustomize;

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_norway::Value;

pub use spacefabric_testkit::bins::{workspace_bin, workspace_root};

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
