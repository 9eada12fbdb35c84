//! The HTTP endpoint: `GET /metrics` (OpenMetrics text) and `GET /healthz`
//! (200 `ok` while the spool accepts mail, 503 with the reason when it
//! does not), on the `[metrics] listen` address.
//!
//! Not a web server: HTTP/1.x requests of at most 8 KiB, read within
//! 10 s, one response each, then the connection is closed. That is all
//! Prometheus and a load balancer's health check need, so there is no
//! HTTP library behind it.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use tokio::sync::watch;

use super::Metrics;
use crate::deliver::Deliverer;
use crate::queue::Queue;
use crate::spool::Health;

/// Largest request read.
const MAX_REQUEST: usize = 8 * 1024;
/// Time a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    queue: Queue,
    deliverer: watch::Receiver<Arc<Deliverer>>,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (metrics, queue) = (metrics.clone(), queue.clone());
        let deliverer = deliverer.borrow().clone();
        tokio::spawn(async move {
            if let Err(e) = respond(stream, &metrics, &queue, &deliverer).await {
                tracing::debug!(error = %e, "metrics: request failed");
            }
        });
    }
}

async fn respond(
    mut stream: TcpStream,
    metrics: &Metrics,
    queue: &Queue,
    deliverer: &Deliverer,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let request_line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let request_line = String::from_utf8_lossy(request_line);
    let mut words = request_line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if path.starts_with("/metrics") {
        let now = std::time::SystemTime::now();
        metrics.set_quota(&super::quota::usage(metrics, deliverer, now).await, now);
    }
    let (status, content_type, body) = route(method, path, metrics, queue);
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

const TEXT: &str = "text/plain; charset=utf-8";

fn route(
    method: &str,
    path: &str,
    metrics: &Metrics,
    queue: &Queue,
) -> (&'static str, &'static str, String) {
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", TEXT, "GET or HEAD only\n".into());
    }
    match path.split('?').next().unwrap_or("") {
        "/metrics" => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(queue.stats(), crate::queue::now_ms()),
        ),
        "/healthz" => match queue.spool().health() {
            Health::Ok => ("200 OK", TEXT, "ok\n".into()),
            Health::Low { reason } => (
                "503 Service Unavailable",
                TEXT,
                format!("spool: {reason}\n"),
            ),
        },
        _ => ("404 Not Found", TEXT, "try /metrics or /healthz\n".into()),
    }
}
