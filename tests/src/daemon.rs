//! The real `enforcer` binary run as a daemon for a test, stopped (SIGTERM, then SIGKILL)
//! when the guard drops.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;

use crate::{TempDir, process::ChildGuard};

/// The enforcer binary under test: `$ENFORCER_BIN` (set by `cargo xtask test`), else the
/// workspace's release build, else its debug build.
pub fn enforcer_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENFORCER_BIN") {
        return PathBuf::from(bin);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    for profile in ["release", "debug"] {
        let bin = workspace.join("target").join(profile).join("enforcer");
        if bin.exists() {
            return bin;
        }
    }
    panic!("no enforcer binary: run `cargo build --release -p enforcer` or `cargo xtask test`")
}

/// Runs `enforcer ARGS` to completion.
pub fn enforcer(args: &[&str]) -> Output {
    Command::new(enforcer_bin())
        .args(args)
        .output()
        .expect("run enforcer")
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Where the config file goes: given the daemon's directory and the config's text, writes
/// it and returns the path handed to `--config`.
pub type PlaceConfig = Box<dyn FnOnce(&Path, &str) -> PathBuf>;

/// How the daemon is started, beyond its configuration.
#[derive(Default)]
pub struct Launch {
    /// Extra command-line flags (e.g. `--dry-run`).
    pub flags: Vec<String>,
    /// Default: `<dir>/enforcer.toml`.
    pub place_config: Option<PlaceConfig>,
    /// A tmpfs of this many bytes mounted at this (existing) directory in a private mount
    /// namespace of the daemon's own: the daemon sees it, the host does not (the test
    /// reaches it through `/proc/<pid>/root`).
    pub private_tmpfs: Option<(PathBuf, u64)>,
    /// Directories bind-mounted read-only onto themselves in that private mount namespace
    /// (e.g. a cgroup's directories: the daemon's writes there fail with EROFS, as on a node
    /// whose agent was given a read-only `/sys/fs/cgroup`); the host's mounts are untouched.
    pub read_only: Vec<PathBuf>,
}

pub struct Daemon {
    child: Option<ChildGuard>,
    pub dir: TempDir,
    pub socket: PathBuf,
    pub metrics: SocketAddr,
    pub config: PathBuf,
    log: PathBuf,
    flags: Vec<String>,
    private_tmpfs: Option<(PathBuf, u64)>,
    read_only: Vec<PathBuf>,
}

impl Daemon {
    /// Writes a config with a private socket and metrics port, plus `extra` TOML appended
    /// (e.g. classification rules), starts the daemon and waits until it answers.
    pub fn start(daemon_section: &str, extra: &str) -> Daemon {
        Daemon::start_with(daemon_section, extra, Launch::default())
    }

    /// [`Daemon::start`], started as `launch` says.
    pub fn start_with(daemon_section: &str, extra: &str, launch: Launch) -> Daemon {
        let dir = TempDir::new("enforcer-daemon");
        let socket = dir.path().join("enforcer.sock");
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let text = format!(
            "[daemon]\nsocket = \"{}\"\nmetrics_listen = \"{metrics}\"\nnode_name = \"test-node\"\njournal = \"{}\"\nusage_ledger = \"{}\"\nstate_dir = \"{}\"\n{daemon_section}\n{extra}\n",
            socket.display(),
            dir.path().join("journal.jsonl").display(),
            dir.path().join("usage.jsonl").display(),
            dir.path().join("state").display(),
        );
        let config = match launch.place_config {
            Some(place) => place(dir.path(), &text),
            None => {
                let config = dir.path().join("enforcer.toml");
                std::fs::write(&config, &text).expect("write config");
                config
            }
        };
        let log = dir.path().join("daemon.log");
        let mut daemon = Daemon {
            child: None,
            dir,
            socket,
            metrics,
            config,
            log,
            flags: launch.flags,
            private_tmpfs: launch.private_tmpfs,
            read_only: launch.read_only,
        };
        daemon.spawn();
        daemon
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut command = Command::new(enforcer_bin());
        command
            .args(["run", "--config"])
            .arg(&self.config)
            .args(&self.flags)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        if self.private_tmpfs.is_some() || !self.read_only.is_empty() {
            private_mounts(&mut command, self.private_tmpfs.as_ref(), &self.read_only);
        }
        self.child = Some(ChildGuard::spawn(command));
        self.wait_ready(Duration::from_secs(20));
    }

    /// SIGKILL (no clean-up at all), then start again with the same configuration.
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.respawn();
    }

    /// SIGKILL: what an OOM kill or a crash does; the daemon cleans up nothing.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.signal(Signal::SIGKILL);
        child.wait_timeout(Duration::from_secs(10)).expect("killed");
        assert!(
            self.socket.exists(),
            "SIGKILL leaves the socket file behind"
        );
    }

    /// SIGTERM and wait (as a DaemonSet rolling update does); the guard stays, to respawn.
    pub fn sigterm(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take().expect("running");
        child.signal(Signal::SIGTERM);
        child.wait_timeout(Duration::from_secs(10))
    }

    /// Starts the daemon again with the same configuration, state and journal.
    pub fn respawn(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().child_mut().try_wait().unwrap() {
                panic!("enforcer exited early ({status}):\n{}", self.log());
            }
            let answering = std::os::unix::net::UnixStream::connect(&self.socket).is_ok();
            if answering && TcpStream::connect(self.metrics).is_ok() {
                // The first tick and scan happen right after start; give them a moment.
                std::thread::sleep(Duration::from_millis(300));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "enforcer not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().pid()
    }

    /// The usage ledger's live segment.
    pub fn ledger_path(&self) -> std::path::PathBuf {
        self.dir.path().join("usage.jsonl")
    }

    /// The usage ledger's records, every segment, oldest first.
    pub fn ledger(&self) -> Vec<enforcer::model::usage::UsageRecord> {
        enforcer::surfaces::ledger::read(&self.dir.path().join("usage.jsonl"))
            .expect("read the usage ledger")
            .0
    }

    pub fn journal(&self) -> Vec<enforcer::actuators::journal::Entry> {
        enforcer::actuators::journal::read(&self.dir.path().join("journal.jsonl"))
            .expect("read journal")
    }

    /// Starts with extra command-line flags (e.g. `--dry-run`).
    pub fn start_with_flags(daemon_section: &str, extra: &str, flags: &[&str]) -> Daemon {
        let launch = Launch {
            flags: flags.iter().map(|s| s.to_string()).collect(),
            ..Launch::default()
        };
        Daemon::start_with(daemon_section, extra, launch)
    }

    /// Runs a CLI command against this daemon's socket.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let socket = self.socket.to_str().unwrap();
        all.extend(["--socket", socket]);
        enforcer(&all)
    }

    /// GET /metrics.
    pub fn scrape(&self) -> String {
        http_get(self.metrics, "/metrics")
    }

    /// Stops with SIGTERM and returns the exit status (None if it had to be killed).
    pub fn stop(mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take().unwrap();
        child.signal(Signal::SIGTERM);
        child.wait_timeout(Duration::from_secs(10))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.signal(Signal::SIGTERM);
            if child.wait_timeout(Duration::from_secs(5)).is_none() {
                drop(child); // SIGKILL
            }
        }
    }
}

/// Runs `command` in a mount namespace of its own (nothing propagates back to the host)
/// with a tmpfs of `size` bytes at `dir` and each of `read_only` bound read-only onto itself.
fn private_mounts(command: &mut Command, tmpfs: Option<&(PathBuf, u64)>, read_only: &[PathBuf]) {
    use std::{ffi::CString, os::unix::ffi::OsStrExt, os::unix::process::CommandExt};
    let c_path = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("path without NUL");
    // Everything allocated before the fork: the child only makes system calls.
    let tmpfs = tmpfs.map(|(dir, size)| {
        (
            c_path(dir),
            CString::new(format!("size={size}")).expect("no NUL"),
        )
    });
    let read_only: Vec<CString> = read_only.iter().map(|p| c_path(p)).collect();
    let fail = || Err(std::io::Error::last_os_error());
    // SAFETY: the closure only calls unshare(2) and mount(2) on memory it owns.
    unsafe {
        command.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail();
            }
            let none = std::ptr::null();
            if libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                none.cast(),
            ) != 0
            {
                return fail();
            }
            if let Some((target, options)) = &tmpfs
                && libc::mount(
                    c"tmpfs".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    options.as_ptr().cast(),
                ) != 0
            {
                return fail();
            }
            for dir in &read_only {
                if libc::mount(dir.as_ptr(), dir.as_ptr(), none, libc::MS_BIND, none.cast()) != 0
                    || libc::mount(
                        none,
                        dir.as_ptr(),
                        none,
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        none.cast(),
                    ) != 0
                {
                    return fail();
                }
            }
            Ok(())
        });
    }
}

/// A minimal HTTP GET returning the body.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "unexpected response: {head}"
    );
    body.to_string()
}

/// The value of the sample whose line starts with `series` (name and labels exactly as
/// exposed), e.g. `enforcer_cpu_seconds_total{class="offline",priority="P3"}`.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}
