//! The control socket: a root-only Unix socket over which the CLI asks the running daemon
//! for its state. One JSON request line, one JSON response line.
//!
//! Whatever a client does, it costs the daemon a bounded amount: every connection is its own
//! task on the surfaces' runtime (the tick runs on the sampler thread and never waits for
//! one), only root's connections are read (the peer's credentials, not just the socket's
//! mode), a request is read up to [`MAX_REQUEST`] bytes and for [`Limits::read`] at most, and
//! its answer is written for [`Limits::write`] at most. At most [`MAX_ANSWERING`] requests
//! are answered at once (a snapshot takes the state lock the tick also takes) and one tc
//! request (it is a whole tc pass on the sampler thread); a request past these is answered
//! "busy" at once. A client that is slow to send or to read holds neither.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::UnixListener,
    sync::Semaphore,
};

pub use super::snapshot::TcRequest;
use super::{
    http::SnapshotSource,
    snapshot::{Snapshot, TcReport},
};

/// Answers tc requests (the network controller, on the sampler thread).
pub type TcSource = Arc<dyn Fn(TcRequest) -> Result<TcReport, String> + Send + Sync>;

/// The longest request line the daemon reads, newline included. A request is a few dozen
/// bytes; anything near this is not the CLI, and reading it further would only let a
/// runaway client grow the daemon's memory.
pub const MAX_REQUEST: usize = 64 * 1024;

/// How many requests are answered at once; more are refused as busy. The CLI asks one at a
/// time; this bounds what a loop of clients can make the daemon build and hold.
pub const MAX_ANSWERING: usize = 4;

/// How long one connection may take at each step.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// To send the request line: a client that never sends its newline is dropped then.
    pub read: Duration,
    /// To take the answer: a client that stops reading (a full snapshot of a large node is
    /// some MiB, more than the socket buffers) is dropped then.
    pub write: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            read: Duration::from_secs(5),
            write: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The daemon's state with at most `limit` cgroups (all when absent).
    Snapshot { limit: Option<usize> },
    /// What tc has and what the policy wants (`enforcer tc show`), optionally applied now
    /// (`enforcer tc apply [--dry-run]`).
    Tc(TcRequest),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Snapshot(Box<Snapshot>),
    Tc(Box<TcReport>),
    Error(String),
}

#[derive(Debug, Error)]
pub enum ControlError {
    #[error("no enforcer daemon is running (nothing answers on {0})")]
    NoDaemon(PathBuf),
    #[error("{path}: permission denied: the control socket is root-only")]
    Denied { path: PathBuf },
    #[error("{path}: another enforcer daemon is already running (it answers on this socket)")]
    AlreadyRunning { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: bad answer from the daemon: {detail}")]
    Protocol { path: PathBuf, detail: String },
}

/// Binds the socket (mode 0600), replacing a stale one left by a daemon that died, and
/// refusing to start when a live daemon answers on it.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ControlError::AlreadyRunning {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Parses one request line (its newline optional). Every error is one line: it goes back to
/// the client as the answer's `error`.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    if line.len() > MAX_REQUEST {
        return Err(too_long());
    }
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    serde_json::from_slice(line).map_err(|e| crate::text::one_line(&format!("bad request: {e}")))
}

fn too_long() -> String {
    format!("bad request: longer than {} KiB", MAX_REQUEST / 1024)
}

/// Whether a peer of this uid may ask. The socket's mode (0600, root's) is the first guard;
/// this is the second, for a socket whose mode was changed or whose directory is shared
/// with a container: the daemon's answers describe every workload on the node, and a tc
/// request changes the node's shaping.
pub fn check_peer(uid: u32) -> Result<(), String> {
    if uid == 0 {
        Ok(())
    } else {
        Err(format!(
            "permission denied: the control socket is root-only (peer uid {uid})"
        ))
    }
}

/// What reading a request line came to.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// The line (its newline, if any, included).
    Line(Vec<u8>),
    /// The client closed without sending anything.
    Nothing,
    /// More than [`MAX_REQUEST`] bytes without a newline: nothing past them was read.
    TooLong,
}

/// Reads one line of at most [`MAX_REQUEST`] bytes; never reads past that bound, whatever
/// the client sends (the caller bounds the time).
async fn read_request(read: impl AsyncRead + Unpin) -> std::io::Result<Read> {
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST as u64 + 1));
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).await?;
    Ok(if line.is_empty() {
        Read::Nothing
    } else if line.len() > MAX_REQUEST {
        Read::TooLong
    } else {
        Read::Line(line)
    })
}

/// Writes one answer line within `limit`; a client that does not take it is dropped.
async fn answer(write: &mut (impl AsyncWrite + Unpin), response: &Response, limit: Duration) {
    let mut out = serde_json::to_vec(response).unwrap_or_default();
    out.push(b'\n');
    match tokio::time::timeout(limit, write.write_all(&out)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("control socket: writing the answer: {e}"),
        Err(_) => tracing::debug!("control socket: client did not take its answer in {limit:?}"),
    }
}

/// Answers requests until the task is dropped.
pub async fn serve(listener: UnixListener, source: SnapshotSource, tc: TcSource) {
    serve_with(listener, source, tc, Limits::default()).await
}

/// [`serve`] with explicit time bounds (the tests use short ones).
pub async fn serve_with(
    listener: UnixListener,
    source: SnapshotSource,
    tc: TcSource,
    limits: Limits,
) {
    let answerers = Answerers {
        source,
        tc,
        answering: Arc::new(Semaphore::new(MAX_ANSWERING)),
        tc_pass: Arc::new(Semaphore::new(1)),
    };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Each connection is its own task, so that a slow one holds up no other.
        tokio::spawn(connection(stream, answerers.clone(), limits));
    }
}

/// What answers requests, and how many may be answered at once.
#[derive(Clone)]
struct Answerers {
    source: SnapshotSource,
    tc: TcSource,
    answering: Arc<Semaphore>,
    tc_pass: Arc<Semaphore>,
}

fn busy(what: &str) -> Response {
    Response::Error(format!("busy: {what}; try again"))
}

impl Answerers {
    /// The answer to a parsed request; "busy" past the bounds on what is answered at once.
    async fn answer(&self, request: Request) -> Response {
        let Ok(_answering) = self.answering.clone().try_acquire_owned() else {
            return busy(&format!("{MAX_ANSWERING} requests are being answered"));
        };
        match request {
            Request::Snapshot { limit } => {
                let source = self.source.clone();
                let snapshot = tokio::task::spawn_blocking(move || {
                    let mut s = source();
                    if let Some(limit) = limit {
                        s.cgroups.truncate(limit);
                    }
                    s
                })
                .await;
                match snapshot {
                    Ok(s) => Response::Snapshot(Box::new(s)),
                    Err(e) => Response::Error(e.to_string()),
                }
            }
            Request::Tc(req) => {
                let Ok(_pass) = self.tc_pass.clone().try_acquire_owned() else {
                    return busy("another tc request is being answered");
                };
                let tc = self.tc.clone();
                match tokio::task::spawn_blocking(move || tc(req)).await {
                    Ok(Ok(report)) => Response::Tc(Box::new(report)),
                    Ok(Err(e)) => Response::Error(e),
                    Err(e) => Response::Error(e.to_string()),
                }
            }
        }
    }
}

async fn connection(stream: tokio::net::UnixStream, answerers: Answerers, limits: Limits) {
    // Credentials first, before a byte of the request is read.
    let peer = stream.peer_cred();
    let (read, mut write) = stream.into_split();
    let allowed = match &peer {
        Ok(cred) => check_peer(cred.uid()),
        Err(e) => Err(format!("permission denied: peer credentials unknown ({e})")),
    };
    if let Err(refusal) = allowed {
        match &peer {
            Ok(cred) => tracing::warn!(
                uid = cred.uid(),
                pid = cred.pid(),
                "control socket: refused a connection that is not root's"
            ),
            Err(e) => tracing::warn!("control socket: refused a connection: {e}"),
        }
        answer(&mut write, &Response::Error(refusal), limits.write).await;
        return;
    }
    let line = match tokio::time::timeout(limits.read, read_request(read)).await {
        Ok(Ok(Read::Line(line))) => line,
        Ok(Ok(Read::TooLong)) => {
            answer(&mut write, &Response::Error(too_long()), limits.write).await;
            return;
        }
        Ok(Ok(Read::Nothing)) => return,
        Ok(Err(e)) => {
            tracing::debug!("control socket: reading a request: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(
                "control socket: no request line within {:?}; dropped",
                limits.read
            );
            return;
        }
    };
    // The permits are held while the answer is made, not while it is written: a client
    // that does not read holds up no other.
    let response = match parse_request(&line) {
        Ok(request) => answerers.answer(request).await,
        Err(e) => Response::Error(e),
    };
    answer(&mut write, &response, limits.write).await;
}

/// The CLI side: one request, one answer.
pub fn request(path: &Path, request: &Request) -> Result<Response, ControlError> {
    let mut stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ControlError::NoDaemon(path.to_path_buf())
        }
        std::io::ErrorKind::PermissionDenied => ControlError::Denied {
            path: path.to_path_buf(),
        },
        _ => ControlError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let mut line = serde_json::to_vec(request).expect("requests serialise");
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    serde_json::from_str(&answer).map_err(|e| ControlError::Protocol {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Fetches a snapshot from the daemon.
/// `enforcer tc show|apply`: the daemon's tc report. The timeout is longer than a
/// snapshot's: a pass enters every pod namespace.
pub fn tc(path: &Path, req: TcRequest) -> Result<TcReport, ControlError> {
    match request(path, &Request::Tc(req))? {
        Response::Tc(r) => Ok(*r),
        Response::Snapshot(_) => Err(ControlError::Protocol {
            path: path.to_path_buf(),
            detail: "answered a tc request with a snapshot".into(),
        }),
        Response::Error(detail) => Err(ControlError::Protocol {
            path: path.to_path_buf(),
            detail,
        }),
    }
}

pub fn snapshot(path: &Path, limit: Option<usize>) -> Result<Snapshot, ControlError> {
    match request(path, &Request::Snapshot { limit })? {
        Response::Snapshot(s) => Ok(*s),
        Response::Tc(_) => Err(ControlError::Protocol {
            path: path.to_path_buf(),
            detail: "answered a snapshot request with a tc report".into(),
        }),
        Response::Error(detail) => Err(ControlError::Protocol {
            path: path.to_path_buf(),
            detail,
        }),
    }
}

#[cfg(test)]
mod tests;
