//! The local process cluster of the controller's process tests: spawn a built binary with its
//! output in a log file, kill it when the test ends (or on purpose, as SIGKILL), the
//! controller's and the nodes' command lines, loopback ports, and a command run to completion
//! within a bound.
//!
//! Ports: the controller binds port 0 itself and the test reads the address it serves on from
//! its "controller serving" line (no port race). A controller restarted on the same address,
//! the nodes' fabric ports (they register the address before binding it per job) and the
//! metrics listeners still get a port from [`free_tcp`]/[`free_udp`] — bound then released, so
//! another process can take it in between; the binaries have no way to report those ports
//! yet. Within one test process no port is handed out twice.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A process killed if the test ends before it exits.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `bin args` with a clean environment (RUST_LOG=info), output into `<logs>/<name>.log`.
    pub fn spawn(name: &str, bin: &Path, args: &[String], logs: &Path) -> Self {
        Self::spawn_with_env(name, bin, args, [("RUST_LOG", "info")], logs)
    }

    /// [`Self::spawn`] with exactly `env` as the environment (nothing inherited, nothing
    /// added): a process configured by its environment alone, as a pod is.
    pub fn spawn_with_env<K, V>(
        name: &str,
        bin: &Path,
        args: &[String],
        env: impl IntoIterator<Item = (K, V)>,
        logs: &Path,
    ) -> Self
    where
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .args(args)
            .env_clear()
            .envs(env)
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

    /// [`Self::spawn`], and the first output line containing `marker` arrives on the receiver
    /// (which disconnects if the process ends its output without one). The output still goes
    /// to the log, copied line by line.
    pub fn spawn_announcing(
        name: &str,
        bin: &Path,
        args: &[String],
        logs: &Path,
        marker: &str,
    ) -> (Self, Receiver<String>) {
        let log = logs.join(format!("{name}.log"));
        let file = Arc::new(Mutex::new(
            std::fs::File::create(&log)
                .unwrap_or_else(|e| panic!("creating {}: {e}", log.display())),
        ));
        let mut child = Command::new(bin)
            .args(args)
            .env_clear()
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", bin.display()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        copy_lines(stdout, file.clone(), marker.to_string(), Some(tx.clone()));
        copy_lines(stderr, file, marker.to_string(), Some(tx));
        (
            Self {
                name: name.to_string(),
                child,
                log,
            },
            rx,
        )
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

/// Copies `from` line by line into `log`; the first line containing `marker` also goes to `tx`.
fn copy_lines(
    from: impl Read + Send + 'static,
    log: Arc<Mutex<std::fs::File>>,
    marker: String,
    mut tx: Option<Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut file) = log.lock() {
                let _ = writeln!(file, "{line}");
            }
            if line.contains(&marker)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line);
            }
        }
    });
}

/// The first `127.0.0.1:PORT` in a log line (plain or coloured text, or JSON).
pub fn loopback_addr_in(line: &str) -> Option<String> {
    let start = line.find("127.0.0.1:")?;
    let rest = &line[start + "127.0.0.1:".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then(|| format!("127.0.0.1:{digits}"))
}

/// `spacefabric-controller serve` flags: gRPC on `listen`, metrics on a free port, `profile`,
/// state under `dir/controller`, `token`.
pub fn controller_args(listen: &str, profile: &Path, dir: &Path, token: &str) -> Vec<String> {
    vec![
        "serve".into(),
        "--listen".into(),
        listen.into(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{}", free_tcp()),
        "--profile".into(),
        profile.display().to_string(),
        "--state-dir".into(),
        dir.join("controller").display().to_string(),
        "--join-token".into(),
        token.into(),
    ]
}

/// How long a controller may take to say it serves, on a loaded 2-core machine.
const CONTROLLER_START: Duration = Duration::from_secs(120);

/// Starts `spacefabric-controller serve` on port 0 of 127.0.0.1 with `profile`, its
/// state under `dir/controller` and `token`; returns it with its URL, read from its
/// "controller serving" line.
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
    let mut args = controller_args("127.0.0.1:0", profile, dir, token);
    args.extend_from_slice(extra);
    let (proc, serving) =
        Proc::spawn_announcing("controller", bin, &args, logs, "controller serving");
    let line = serving.recv_timeout(CONTROLLER_START).unwrap_or_else(|e| {
        panic!(
            "the controller did not say it serves ({e}):\n{}",
            proc.log_tail(30)
        )
    });
    let addr = loopback_addr_in(&line)
        .unwrap_or_else(|| panic!("no 127.0.0.1:PORT in the controller's line: {line}"));
    (proc, format!("http://{addr}"))
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

/// Ports this test process handed out already.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port from `bind` (port 0) that this test process has not handed out before.
fn fresh_port(bind: impl Fn() -> std::io::Result<u16>) -> u16 {
    let mut handed = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let handed = handed.get_or_insert_with(HashSet::new);
    loop {
        let port = bind().unwrap_or_else(|e| panic!("binding a port on 127.0.0.1:0: {e}"));
        if handed.insert(port) {
            return port;
        }
    }
}

/// A free TCP port on 127.0.0.1 (released: see the module's note on ports).
pub fn free_tcp() -> u16 {
    fresh_port(|| {
        Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port())
    })
}

/// A free UDP port on 127.0.0.1 (released: see the module's note on ports).
pub fn free_udp() -> u16 {
    fresh_port(|| {
        Ok(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port())
    })
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

/// Process clusters of one test process run one at a time (a 2-core machine runs one
/// five-process cluster at a time well, two badly): see [`ClusterSlot`].
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The right to run a cluster of processes in this test process, one holder at a time. Every
/// [`LocalCluster`] holds one; a test that starts its own controller and nodes (train
/// recovery, the Kubernetes environment, the soak) takes one with [`ClusterSlot::take`] and
/// keeps it until its processes are gone. Since a crate's integration tests share one test
/// binary, whose tests run on parallel threads, this is what keeps two such clusters from
/// running at once. A plain lock, not a timing: a test waits until the slot is free.
#[derive(Debug)]
pub struct ClusterSlot {
    _guard: std::sync::MutexGuard<'static, ()>,
}

impl ClusterSlot {
    /// Waits until no other cluster of this test process runs, then holds the slot until
    /// dropped (a test that panicked while holding it frees it too).
    pub fn take() -> Self {
        Self {
            _guard: ONE_CLUSTER_AT_A_TIME
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }
}

/// A controller and its nodes as processes on 127.0.0.1, in a temporary directory that holds
/// their state and logs; every process is killed when the cluster is dropped.
#[derive(Debug)]
pub struct LocalCluster {
    /// The controller's URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// The join token.
    pub token: String,
    /// The controller first, then the processes added, in order.
    pub procs: Vec<Proc>,
    /// Where the logs go (`<dir>/logs`).
    pub logs: PathBuf,
    /// The `spacefabric-node` binary.
    pub node_bin: PathBuf,
    dir: tempfile::TempDir,
    _slot: ClusterSlot,
}

impl LocalCluster {
    /// Starts the controller on `profile` with `token` and `extra` flags (e.g.
    /// `--time-dilation 4`), once it says it serves.
    pub fn start(profile: &Path, token: &str, extra: &[String]) -> Self {
        let slot = ClusterSlot::take();
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let (controller, url) = spawn_controller_with(
            &crate::bins::controller(),
            profile,
            dir.path(),
            token,
            &logs,
            extra,
        );
        Self {
            url,
            token: token.into(),
            procs: vec![controller],
            logs,
            node_bin: crate::bins::node(),
            dir,
            _slot: slot,
        }
    }

    /// The cluster's temporary directory (state, logs, files a test writes).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Adds a `spacefabric-node` agent named `name` with `extra` flags (e.g. `--site moon`).
    pub fn add_node(&mut self, name: &str, extra: &[&str]) -> &mut Proc {
        let mut args = node_args(&self.url, &self.token, name);
        args.extend(extra.iter().map(|a| (*a).to_string()));
        self.add(name, &self.node_bin.clone(), &args)
    }

    /// Adds any process (a forwarder, a second controller...).
    pub fn add(&mut self, name: &str, bin: &Path, args: &[String]) -> &mut Proc {
        self.procs.push(Proc::spawn(name, bin, args, &self.logs));
        let last = self.procs.len() - 1;
        &mut self.procs[last]
    }

    /// `spacefabric-bench SUBCOMMAND --controller URL --join-token T ARGS` with a clean
    /// environment: a job of this cluster.
    pub fn bench(&self, subcommand: &str, args: &[&str]) -> Command {
        let mut cmd = bench_command(&[
            subcommand,
            "--controller",
            &self.url,
            "--join-token",
            &self.token,
        ]);
        cmd.args(args);
        cmd
    }

    /// Runs a bench job of this cluster ([`Self::bench`]) within `limit` and asserts it
    /// succeeded; returns its stdout and the [`Self::context`] (15 log lines a process) for
    /// the test's own assertions.
    pub fn run_bench(&self, subcommand: &str, args: &[&str], limit: Duration) -> (String, String) {
        let out = run_bounded(self.bench(subcommand, args), limit);
        let context = self.context(&out, 15);
        assert!(out.status.success(), "bench failed: {context}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), context)
    }

    /// A command's output and the last `n` log lines of every process, for an assertion's
    /// message.
    pub fn context(&self, out: &Output, n: usize) -> String {
        let logs: String = self.procs.iter().map(|p| p.log_tail(n)).collect();
        format!(
            "stdout:\n{}\nstderr:\n{}\n{logs}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// `spacefabric-bench ARGS` with a clean environment.
pub fn bench_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(crate::bins::bench());
    cmd.env_clear().args(args);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_address_is_read_from_plain_coloured_and_json_lines() {
        for line in [
            "INFO spacefabric_controller::server: controller serving addr=127.0.0.1:40123 profile=lan",
            "\u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:40123\u{1b}[0m controller serving",
            r#"{"fields":{"message":"controller serving","addr":"127.0.0.1:40123"}}"#,
        ] {
            assert_eq!(
                loopback_addr_in(line).as_deref(),
                Some("127.0.0.1:40123"),
                "{line}"
            );
        }
        assert_eq!(loopback_addr_in("controller serving on 127.0.0.1:"), None);
    }

    #[test]
    fn no_port_is_handed_out_twice() {
        let ports: HashSet<u16> = (0..50)
            .map(|_| free_tcp())
            .chain((0..50).map(|_| free_udp()))
            .collect();
        assert_eq!(ports.len(), 100);
    }
}
