//! The `/metrics` endpoint: a deliberately small HTTP/1.1 responder (GET only, one
//! request per connection, bounded header size and time) so the daemon needs no web
//! framework for the one thing Prometheus asks of it.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{health, metrics, snapshot::Snapshot};

/// Produces the snapshot a scrape encodes.
pub type SnapshotSource = Arc<dyn Fn() -> Snapshot + Send + Sync>;

const MAX_REQUEST_HEAD: usize = 8192;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, source: SnapshotSource) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let source = source.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, source).await {
                        tracing::debug!("metrics connection: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("metrics listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(mut stream: TcpStream, source: SnapshotSource) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if read.is_err() {
        return Ok(());
    }
    read.unwrap()?;
    let request_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let request_line = String::from_utf8_lossy(request_line);
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_text = String::from_utf8_lossy(&head);
    let accept = head_text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("accept")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    let snapshot = |source: SnapshotSource| async move {
        tokio::task::spawn_blocking(move || source()).await.ok()
    };
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let openmetrics = metrics::wants_openmetrics(&accept);
            let source = source.clone();
            let body = tokio::task::spawn_blocking(move || {
                let text = metrics::encode(source());
                if openmetrics {
                    text
                } else {
                    metrics::to_prometheus_text(&text)
                }
            })
            .await
            .unwrap_or_default();
            let content_type = if openmetrics {
                metrics::CONTENT_TYPE
            } else {
                metrics::TEXT_CONTENT_TYPE
            };
            ("200 OK", content_type, body)
        }
        ("GET", "/healthz") => match snapshot(source.clone()).await {
            Some(s) => match health::health(&s, crate::clock::unix_now()) {
                Ok(()) => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_string()),
                Err(why) => (
                    "503 Service Unavailable",
                    "text/plain; charset=utf-8",
                    format!("unhealthy: {}\n", why.join("; ")),
                ),
            },
            None => (
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                "unhealthy: no snapshot\n".to_string(),
            ),
        },
        ("GET", "/readyz") => match snapshot(source.clone()).await {
            Some(s) => match health::ready(&s) {
                Ok(()) => ("200 OK", "text/plain; charset=utf-8", "ready\n".to_string()),
                Err(why) => (
                    "503 Service Unavailable",
                    "text/plain; charset=utf-8",
                    format!("not ready: {why}\n"),
                ),
            },
            None => (
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                "not ready: no snapshot\n".to_string(),
            ),
        },
        ("GET", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "enforcer: metrics at /metrics, health at /healthz, readiness at /readyz\n".to_string(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
