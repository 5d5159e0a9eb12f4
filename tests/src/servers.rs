//! The operators' servers run for real by a test: Prometheus and Alertmanager (the Debian
//! packages `prometheus` and `prometheus-alertmanager`), each on a loopback port with a
//! private temporary directory, and a webhook receiver the test runs itself that records
//! what Alertmanager delivers. Guards stop the servers by pid (SIGTERM, then SIGKILL) and
//! remove their directories when they drop, a panic included.
//!
//! HTTP is spoken by hand (std only): requests are HTTP/1.0, so Go's servers answer with a
//! plain body (no chunked encoding) and close the connection.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;

use crate::{TempDir, alerting::tool, daemon::free_port, process::ChildGuard};

/// Percent-encodes `text` for a URL's query string or a form body.
pub fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One HTTP/1.0 request; returns the status code and the body, or why it failed.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| e.to_string())?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some((content_type, bytes)) = body {
        request.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    }
    request.push_str("\r\n");
    let mut raw = request.into_bytes();
    if let Some((_, bytes)) = body {
        raw.extend_from_slice(bytes);
    }
    stream
        .write_all(&raw)
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("{method} {path}: reading the answer: {e}"))?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: not an HTTP answer: {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: bad status line in {head:?}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err(format!("{method} {path}: chunked answer to HTTP/1.0"));
    }
    Ok((status, body.to_string()))
}

/// A server process with a private directory, stopped and removed on drop.
pub struct Server {
    name: &'static str,
    pub addr: SocketAddr,
    child: Option<ChildGuard>,
    log: PathBuf,
    // Dropped after the child is stopped (field order).
    dir: TempDir,
}

impl Server {
    /// Starts `binary ARGS` (its output in `<dir>/<name>.log`) and waits, at most
    /// `timeout`, until `GET /-/ready` answers 200 on `addr`.
    fn start(
        name: &'static str,
        binary: &str,
        args: &[String],
        dir: TempDir,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Server {
        let log = dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("server log");
        let mut command = Command::new(tool(binary));
        command
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out);
        let mut server = Server {
            name,
            addr,
            child: Some(ChildGuard::spawn(command)),
            log,
            dir,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = server.child.as_mut().unwrap().child_mut().try_wait() {
                panic!("{name} exited at start-up ({status}):\n{}", server.log());
            }
            if matches!(http(addr, "GET", "/-/ready", None), Ok((200, _))) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not ready on {addr} within {timeout:?}:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").pid()
    }

    /// The server's own log (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `GET path` decoded as JSON; an error when the server does not answer 200 with JSON.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value, String> {
        match http(self.addr, "GET", path, None)? {
            (200, body) => serde_json::from_str(&body)
                .map_err(|e| format!("{} GET {path}: {e}: {body}", self.name)),
            (status, body) => Err(format!("{} GET {path}: {status}: {body}", self.name)),
        }
    }

    /// Writes `name` in the server's directory atomically (a rename), as file-based
    /// service discovery expects.
    pub fn write_file(&self, name: &str, text: &str) {
        let tmp = self.dir().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write server file");
        std::fs::rename(&tmp, self.dir().join(name)).expect("rename server file");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.signal(Signal::SIGTERM);
            if child.wait_timeout(Duration::from_secs(10)).is_none() {
                eprintln!("{} ignored SIGTERM for 10 s: killing it", self.name);
            }
            drop(child); // SIGKILL to its process group if it still runs, and reaped.
        }
    }
}

/// Prometheus on a loopback port, its configuration, rule and target files and its TSDB in
/// a private directory.
pub struct Prometheus(pub Server);

impl Prometheus {
    /// Writes `files` (name, text) and `prometheus.yml` (= `config`) into a new directory
    /// and starts Prometheus there. Paths in `config` are relative to that directory.
    /// Alerts are re-sent to Alertmanager every second (`--rules.alert.resend-delay`).
    pub fn start(config: &str, files: &[(&str, &str)]) -> Prometheus {
        let dir = TempDir::new("e2e-prometheus");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write prometheus file");
        }
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let args = vec![
            format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address={addr}"),
            "--rules.alert.resend-delay=1s".to_string(),
        ];
        Prometheus(Server::start(
            "prometheus",
            "prometheus",
            &args,
            dir,
            addr,
            Duration::from_secs(60),
        ))
    }

    /// The `data` of an API answer whose `status` is `success`.
    fn api(&self, path: &str) -> Result<serde_json::Value, String> {
        let answer = self.0.get_json(path)?;
        if answer["status"] != "success" {
            return Err(format!("prometheus GET {path}: {answer}"));
        }
        Ok(answer["data"].clone())
    }

    /// An instant query: the `data` of `/api/v1/query` (`resultType`, `result`).
    pub fn query(&self, expr: &str) -> Result<serde_json::Value, String> {
        self.api(&format!("/api/v1/query?query={}", urlencode(expr)))
            .map_err(|e| format!("{e}\n  query: {expr}"))
    }

    /// The series of an instant query's vector result (empty on error).
    pub fn vector(&self, expr: &str) -> Vec<serde_json::Value> {
        self.query(expr)
            .ok()
            .and_then(|d| d["result"].as_array().cloned())
            .unwrap_or_default()
    }

    /// `label_values(selector, label)` as Grafana asks it: `/api/v1/label/<label>/values`.
    pub fn label_values(&self, selector: &str, label: &str) -> Result<Vec<String>, String> {
        let data = self.api(&format!(
            "/api/v1/label/{label}/values?match[]={}",
            urlencode(selector)
        ))?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }

    /// The alerts pending or firing now (`/api/v1/alerts`).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        self.api("/api/v1/alerts")
            .ok()
            .and_then(|d| d["alerts"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The state (`pending`, `firing`) of the alert `name`, if it is active.
    pub fn alert_state(&self, name: &str) -> Option<String> {
        self.alerts()
            .iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .filter_map(|a| a["state"].as_str().map(str::to_string))
            .max_by_key(|s| s == "firing")
    }

    /// The loaded rule groups (`/api/v1/rules`).
    pub fn rules(&self) -> Result<serde_json::Value, String> {
        self.api("/api/v1/rules")
    }

    /// The active scrape targets (`/api/v1/targets`).
    pub fn targets(&self) -> Vec<serde_json::Value> {
        self.api("/api/v1/targets")
            .ok()
            .and_then(|d| d["activeTargets"].as_array().cloned())
            .unwrap_or_default()
    }
}

/// Alertmanager on a loopback port, clustering off, its storage in a private directory.
pub struct Alertmanager(pub Server);

impl Alertmanager {
    /// Writes `alertmanager.yml` (= `config`) into a new directory and starts Alertmanager.
    pub fn start(config: &str) -> Alertmanager {
        let dir = TempDir::new("e2e-alertmanager");
        let path = dir.path().join("alertmanager.yml");
        std::fs::write(&path, config).expect("write alertmanager.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let args = vec![
            format!("--config.file={}", path.display()),
            format!("--storage.path={}", dir.path().join("data").display()),
            format!("--web.listen-address={addr}"),
            // Empty: no gossip, no cluster port.
            "--cluster.listen-address=".to_string(),
        ];
        Alertmanager(Server::start(
            "alertmanager",
            "prometheus-alertmanager",
            &args,
            dir,
            addr,
            Duration::from_secs(60),
        ))
    }

    /// The alerts Alertmanager holds (`/api/v2/alerts`), with their status (inhibited...).
    pub fn alerts(&self) -> Result<serde_json::Value, String> {
        self.0.get_json("/api/v2/alerts")
    }
}

/// One notification Alertmanager delivered to the webhook.
#[derive(Debug, Clone)]
pub struct Notification {
    /// Since the webhook started.
    pub at: Duration,
    /// The request path: which receiver's URL was called.
    pub path: String,
    /// The webhook payload (`status`, `receiver`, `alerts`, `groupLabels`...).
    pub body: serde_json::Value,
}

impl Notification {
    /// (alert name, its status in this notification) for every alert it carries.
    pub fn alerts(&self) -> Vec<(String, String)> {
        self.body["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or("?").to_string(),
                    a["status"].as_str().unwrap_or("?").to_string(),
                )
            })
            .collect()
    }
}

/// A webhook receiver on a loopback port: a thread answers every POST with 200 and records
/// its JSON body; it stops when the guard drops.
pub struct Webhook {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Notification>>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
}

impl Webhook {
    pub fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("webhook address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let thread = {
            let (received, errors, stop) = (received.clone(), errors.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => match receive(stream) {
                            Ok((path, body)) => {
                                received.lock().unwrap().push(Notification {
                                    at: started.elapsed(),
                                    path,
                                    body,
                                });
                            }
                            Err(e) => errors.lock().unwrap().push(e),
                        },
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => errors.lock().unwrap().push(format!("accept: {e}")),
                    }
                }
            })
        };
        Webhook {
            addr,
            received,
            errors,
            stop,
            thread: Some(thread),
            started,
        }
    }

    /// Now on the clock of [`Notification::at`].
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// The URL of this receiver for `path` (e.g. `/page`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything delivered so far, in order.
    pub fn notifications(&self) -> Vec<Notification> {
        self.received.lock().unwrap().clone()
    }

    /// The first delivery of `alert` with `status` (`firing`, `resolved`), if any.
    pub fn first(&self, alert: &str, status: &str) -> Option<(Notification, serde_json::Value)> {
        self.notifications().into_iter().find_map(|n| {
            let a = n.body["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["labels"]["alertname"] == alert && a["status"] == status)
                .cloned()?;
            Some((n, a))
        })
    }

    /// One line per delivery (time, path, receiver, group status, alerts), then any
    /// request the receiver could not read.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for n in self.notifications() {
            out.push_str(&format!(
                "{:7.1}s {} receiver={} status={} alerts={:?}\n",
                n.at.as_secs_f64(),
                n.path,
                n.body["receiver"].as_str().unwrap_or("?"),
                n.body["status"].as_str().unwrap_or("?"),
                n.alerts(),
            ));
        }
        for e in self.errors.lock().unwrap().iter() {
            out.push_str(&format!("bad request: {e}\n"));
        }
        if out.is_empty() {
            out.push_str("(nothing delivered)\n");
        }
        out
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request (head, then `Content-Length` bytes of body), answers 200 and closes.
fn receive(mut stream: TcpStream) -> Result<(String, serde_json::Value), String> {
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed in the head: {:?}",
                String::from_utf8_lossy(&buf)
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or_else(|| format!("no Content-Length: {head:?}"))?;
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed in the body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    if method != "POST" {
        return Err(format!("{request_line}: not a POST"));
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + length])
        .map_err(|e| format!("{request_line}: body is not JSON: {e}"))?;
    Ok((path.to_string(), body))
}
