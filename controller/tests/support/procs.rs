//! The cluster's processes in a test: spawn a built binary with its output in a log file,
//! kill it when the test ends (or on purpose, as SIGKILL), free loopback ports, and run a
//! command to completion within a bound.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// A process killed if the test ends before it exits.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `bin args` with a clean environment (RUST_LOG=info), output into `<logs>/<name>.log`.
    pub fn spawn(name: &str, bin: &Path, args: &[String], logs: &Path) -> Self {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .args(args)
            .env_clear()
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", bin.display()));
        Self {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// SIGKILL, as a crashed machine would: no goodbye to the controller or the peers.
    pub fn kill_hard(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The last `n` lines of the log, headed by the name.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(n).collect();
        format!(
            "--- {} ---\n{}\n",
            self.name,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `spacefabric-controller serve` on a free port of 127.0.0.1 with `profile`, its
/// state under `dir/controller` and `token`; returns it with its URL.
pub fn spawn_controller(
    bin: &Path,
    profile: &Path,
    dir: &Path,
    token: &str,
    logs: &Path,
) -> (Proc, String) {
    spawn_controller_with(bin, profile, dir, token, logs, &[])
}

/// [`spawn_controller`] with `extra` flags after the others (e.g. `--time-dilation 4`).
pub fn spawn_controller_with(
    bin: &Path,
    profile: &Path,
    dir: &Path,
    token: &str,
    logs: &Path,
    extra: &[String],
) -> (Proc, String) {
    let port = free_tcp();
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--metrics-listen".into(),
        format!("127.0.0.1:{}", free_tcp()),
        "--profile".into(),
        profile.display().to_string(),
        "--state-dir".into(),
        dir.join("controller").display().to_string(),
        "--join-token".into(),
        token.into(),
    ];
    args.extend_from_slice(extra);
    let proc = Proc::spawn("controller", bin, &args, logs);
    (proc, format!("http://127.0.0.1:{port}"))
}

/// The flags of a `spacefabric-node` agent named `name` on free loopback ports.
pub fn node_args(url: &str, token: &str, name: &str) -> Vec<String> {
    let quic = format!("127.0.0.1:{}", free_udp());
    vec![
        "--controller".into(),
        url.into(),
        "--join-token".into(),
        token.into(),
        "--name".into(),
        name.into(),
        "--listen".into(),
        quic.clone(),
        "--advertise".into(),
        quic,
        "--metrics-listen".into(),
        format!("127.0.0.1:{}", free_tcp()),
    ]
}

/// A free TCP port on 127.0.0.1.
pub fn free_tcp() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free UDP port on 127.0.0.1.
pub fn free_udp() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `cmd` with its stdout and stderr captured; its output arrives on the receiver when
/// it exits. Returns the pid too, to kill it when it overruns.
pub fn spawn_captured(mut cmd: Command) -> (u32, Receiver<std::io::Result<Output>>) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    (pid, rx)
}

/// Waits for a [`spawn_captured`] command's output, killing it (by pid) after `limit`.
pub fn wait_bounded(pid: u32, rx: &Receiver<std::io::Result<Output>>, limit: Duration) -> Output {
    match rx.recv_timeout(limit) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("the command did not finish within {limit:?}");
        }
    }
}

/// Runs `cmd` to completion within `limit`, killing it (by its pid) when it overruns.
pub fn run_bounded(cmd: Command, limit: Duration) -> Output {
    let (pid, rx) = spawn_captured(cmd);
    wait_bounded(pid, &rx, limit)
}
