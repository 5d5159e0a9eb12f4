//! The control socket: a root-only Unix socket over which the CLI asks the running daemon
//! for its state. One JSON request line, one JSON response line.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt},
    net::UnixListener,
};

pub use super::snapshot::TcRequest;
use super::{
    http::SnapshotSource,
    snapshot::{Snapshot, TcReport},
};

/// Answers tc requests (the network controller, on the sampler thread).
pub type TcSource = std::sync::Arc<dyn Fn(TcRequest) -> Result<TcReport, String> + Send + Sync>;

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

/// Answers requests until the task is dropped.
pub async fn serve(listener: UnixListener, source: SnapshotSource, tc: TcSource) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let source = source.clone();
        let tc = tc.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(read);
            let got = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line));
            if !matches!(got.await, Ok(Ok(n)) if n > 0) {
                return;
            }
            let response = match serde_json::from_str::<Request>(&line) {
                Ok(Request::Snapshot { limit }) => {
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
                Ok(Request::Tc(req)) => {
                    let tc = tc.clone();
                    match tokio::task::spawn_blocking(move || tc(req)).await {
                        Ok(Ok(report)) => Response::Tc(Box::new(report)),
                        Ok(Err(e)) => Response::Error(e),
                        Err(e) => Response::Error(e.to_string()),
                    }
                }
                Err(e) => Response::Error(format!("bad request: {e}")),
            };
            let mut out = serde_json::to_vec(&response).unwrap_or_default();
            out.push(b'\n');
            let _ = write.write_all(&out).await;
        });
    }
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
