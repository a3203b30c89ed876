//! The workspace's binaries, located once for every test that runs them. An integration test
//! only gets `CARGO_BIN_EXE_*` for the binaries of its own package, so the controller's, the
//! node's and the bench's are found next to the test's own target directory and, when stale
//! (older than a source file of the workspace), built with the same cargo, profile and target
//! directory as the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// The workspace root (this crate lives in `testkit/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
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

/// `spacefabric-controller`, up to date.
pub fn controller() -> PathBuf {
    workspace_bin("spacefabric-controller", "spacefabric-controller")
}

/// `spacefabric-node`, up to date.
pub fn node() -> PathBuf {
    workspace_bin("spacefabric-node", "spacefabric-node")
}

/// `spacefabric-bench`, up to date.
pub fn bench() -> PathBuf {
    workspace_bin("spacefabric-bench", "spacefabric-bench")
}
