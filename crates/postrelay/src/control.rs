//! The control socket: how `postrelay queue hold|release|delete|flush`
//! reach the running daemon, so that the queue keeps one writer.
//!
//! Protocol: one JSON request line, one JSON response line, then close.
//! The socket is created mode 0600 and each peer's credentials are checked
//! (root or the daemon's own user); listing does not need it, since
//! `queue list` reads the spool directly.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::queue::Queue;
use crate::queue::track::Tracked;
use crate::spool::QueueId;

/// A request from the command line to the daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Put a message on hold.
    Hold { id: String },
    /// Release a held message.
    Release { id: String },
    /// Delete one message.
    Delete { id: String },
    /// Delete every message.
    DeleteAll,
    /// Make every message due now.
    Flush,
    /// Say which version runs, under which process id (`postrelay doctor`).
    Status,
    /// Say where a message stands and what its last attempt said
    /// (`postrelay send-test`): the answer's `track`.
    Track { id: String },
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// What happened, for the administrator.
    pub message: String,
    /// The answer to [`Request::Track`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<Tracked>,
}

impl Response {
    /// A failure saying `message`.
    pub fn failed(message: String) -> Response {
        Response {
            ok: false,
            message,
            track: None,
        }
    }
}

/// Carries out a request on the queue (used by the daemon, and directly by
/// the command line when no daemon runs).
pub fn execute(queue: &Queue, req: &Request) -> Response {
    let parse = |id: &str| id.parse::<QueueId>().map_err(|e| e.to_string());
    let result = match req {
        Request::Hold { id } => parse(id).and_then(|q| {
            queue
                .hold(&q)
                .map(|()| format!("{q}: placed on hold"))
                .map_err(|e| e.to_string())
        }),
        Request::Release { id } => parse(id).and_then(|q| {
            queue
                .release(&q)
                .map(|()| format!("{q}: released from hold"))
                .map_err(|e| e.to_string())
        }),
        Request::Delete { id } => parse(id).and_then(|q| {
            queue
                .delete(&q)
                .map(|()| format!("{q}: deleted"))
                .map_err(|e| e.to_string())
        }),
        Request::DeleteAll => queue
            .delete_all()
            .map(|n| format!("{} message(s) deleted", n.0))
            .map_err(|e| e.to_string()),
        Request::Status => Ok(status_message()),
        Request::Track { id } => return track(queue, parse(id)),
        Request::Flush => Ok(format!(
            "{} message(s) scheduled for immediate delivery",
            queue.flush().0
        )),
    };
    match result {
        Ok(message) => Response {
            ok: true,
            message,
            track: None,
        },
        Err(message) => Response::failed(message),
    }
}

/// The answer to [`Request::Track`] for the message `id`.
fn track(queue: &Queue, id: Result<QueueId, String>) -> Response {
    match id {
        Ok(q) => {
            let tracked = queue.track(&q);
            Response {
                ok: true,
                message: format!("{q}: {:?}", tracked.state),
                track: Some(tracked),
            }
        }
        Err(message) => Response::failed(message),
    }
}

/// The answer to [`Request::Status`]: `postrelay VERSION pid PID`.
pub fn status_message() -> String {
    format!(
        "postrelay {} pid {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    )
}

/// Binds the socket (replacing a stale one: the spool lock proves no
/// other daemon owns it) with mode 0600. Anything at the path that is not
/// a socket is left alone and refused.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket; choose another control_socket or remove it",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves requests until shutdown.
pub async fn serve(listener: UnixListener, queue: Queue, shutdown: CancellationToken) {
    let me = nix::unistd::geteuid().as_raw();
    loop {
        // Cancel safety: `accept` is cancel-safe.
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::error!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let allowed = stream
            .peer_cred()
            .map(|c| c.uid() == 0 || c.uid() == me)
            .unwrap_or(false);
        let queue = queue.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, queue, allowed).await {
                tracing::warn!(error = %e, "control request failed");
            }
        });
    }
}

async fn handle(stream: UnixStream, queue: Queue, allowed: bool) -> io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    // A request is tiny; 64 KiB bounds what a confused client can make us hold.
    let mut reader = BufReader::new(r.take(64 * 1024));
    let read = reader.read_line(&mut line);
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "control client sent nothing"))??;
    let response = if !allowed {
        Response::failed(
            "permission denied: only root or the postrelay user may change the queue".into(),
        )
    } else {
        match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                tracing::info!(?req, "control request");
                tokio::task::spawn_blocking(move || execute(&queue, &req))
                    .await
                    .unwrap_or_else(|e| Response::failed(format!("internal error: {e}")))
            }
            Err(e) => Response::failed(format!("bad request: {e}")),
        }
    };
    let mut out = serde_json::to_vec(&response).map_err(io::Error::other)?;
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}

/// Client side: sends one request to a running daemon. `Ok(None)` when no
/// daemon listens on `path`.
pub fn request(path: &PathBuf, req: &Request) -> io::Result<Option<Response>> {
    use std::io::{BufRead, Write};
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    // Deleting a large queue takes one fsync per message: minutes for
    // 100,000. Everything else answers at once.
    let patience = match req {
        Request::DeleteAll => Duration::from_secs(3600),
        Request::Status | Request::Track { .. } => Duration::from_secs(5),
        _ => Duration::from_secs(60),
    };
    stream.set_read_timeout(Some(patience))?;
    let mut out = serde_json::to_vec(req).map_err(io::Error::other)?;
    out.push(b'\n');
    stream.write_all(&out)?;
    let mut line = String::new();
    match io::BufReader::new(stream).read_line(&mut line) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the daemon did not answer within {} s; the request may still be running \
                     (see `postrelay queue list` and the daemon's log)",
                    patience.as_secs()
                ),
            ));
        }
        Err(e) => return Err(e),
    }
    serde_json::from_str(&line).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad answer from the daemon: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_replaces_a_stale_socket_but_no_other_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        drop(bind(&path).unwrap());
        // A socket left behind by a stopped daemon is replaced.
        drop(bind(&path).unwrap());
        let other = dir.path().join("notes.txt");
        std::fs::write(&other, "keep me").unwrap();
        let e = bind(&other).unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep me");
    }
}
