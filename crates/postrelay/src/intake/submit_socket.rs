//! The submit socket (`<spool>/submit.sock`): `sendmail` hands a message
//! straight to the running daemon, which queues it through
//! [`Queue::accept`] (group commit) and answers once it is durable. The
//! protocol and who may connect: [`crate::maildrop`]. When the daemon
//! does not run, or answers 4xx, `sendmail` falls back to maildrop/ and
//! pickup.
//!
//! The submitter's uid comes from the kernel (`SO_PEERCRED`), never from
//! the client; its user name is looked up here (and reused for a minute:
//! most local mail comes from a few users). Everything the client
//! sends is hostile input: the first line is bounded and strict (the same
//! [`Submission`] postdrop reads), the message goes through the same
//! [`Assembler`] and limits as pickup's, with the SMTP DATA timeouts, and
//! at most [`MAX_AT_ONCE`] clients are served at once (the next one gets
//! `421 4.7.0` and `sendmail` uses maildrop/).
//!
//! Not for: the maildrop files (`pickup`), SMTP (`session`).

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postrelay_smtp::reply::Reply;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::Shared;
use super::message::{Assembler, Refusal};
use super::pickup::{LocalSubmitter, local_assembler, local_envelope};
use crate::maildrop::{self, FormatError, Submission};
use crate::spool::Health;

/// Most submissions received at once; the next client is told `421` and
/// uses maildrop/ instead, so a user holding connections open slows
/// nobody else down for long.
pub const MAX_AT_ONCE: usize = 64;

/// Creates the socket (replacing a stale one, like the control socket)
/// and opens it to the `postdrop` group (mode 0660) when that group
/// exists; otherwise it stays 0600 (only root and the daemon's user).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    let listener = crate::control::bind(path)?;
    if let Ok(Some(group)) = nix::unistd::Group::from_name(maildrop::GROUP) {
        use std::os::unix::fs::PermissionsExt;
        match nix::unistd::chown(path, None, Some(group.gid)) {
            Ok(()) => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?,
            Err(e) => tracing::warn!(
                socket = %path.display(), error = %e,
                "submit socket: cannot give it to the group {}; only root and the daemon's \
                 user use it, others go through maildrop/", maildrop::GROUP
            ),
        }
    }
    Ok(listener)
}

/// Serves submissions until shutdown; each one runs under `tracker`, so a
/// stop waits for a message being received or committed.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>, tracker: TaskTracker) {
    let slots = Arc::new(Semaphore::new(MAX_AT_ONCE));
    loop {
        // Cancel safety: `accept` is cancel-safe.
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::error!(error = %e, "submit socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shared.shutdown.cancelled() => break,
        };
        let permit = slots.clone().try_acquire_owned().ok();
        let shared = shared.clone();
        tracker.spawn(async move {
            let uid = stream.peer_cred().map(|c| c.uid());
            let mut stream = BufReader::with_capacity(64 * 1024, stream);
            let reply = match (permit, uid) {
                (None, _) => Reply::new(
                    421,
                    "4.7.0",
                    format!("{MAX_AT_ONCE} local submissions at once already; use maildrop/"),
                ),
                (Some(_), Err(e)) => Reply::new(
                    421,
                    "4.7.0",
                    format!("cannot tell who is connecting ({e}); use maildrop/"),
                ),
                (Some(_permit), Ok(uid)) => submit(&shared, &mut stream, uid).await,
            };
            let _ = stream.get_mut().write_all(&reply.encode()).await;
            let _ = stream.get_mut().shutdown().await;
        });
    }
}

/// Receives and queues one submission from `uid`; the reply says how it
/// ended (250 only once it is durable).
async fn submit(shared: &Shared, stream: &mut BufReader<UnixStream>, uid: u32) -> Reply {
    // Looked up (unless known) while the message arrives, not after it.
    let name = known_name(uid, Instant::now())
        .ok_or_else(|| tokio::task::spawn_blocking(move || user_name(uid)));
    let config = shared.config();
    let intake = &config.intake;
    let deadline = Instant::now() + intake.session_timeout;
    let line = match within(deadline, intake.data_timeout, read_line(stream)).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return format_refusal(&e),
        Err(reply) => return reply,
    };
    let sub = match Submission::parse(&line) {
        Ok(s) => s,
        Err(e) => return format_refusal(&e),
    };
    if let Health::Low { reason } = shared.queue.health() {
        tracing::warn!(%reason, uid, "submit socket: refusing, spool low");
        return Reply::new(452, "4.3.1", "Insufficient system storage, try again later");
    }
    let writer = match shared.queue.new_body() {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "submit socket: cannot create a queue file");
            return Reply::new(
                451,
                "4.3.0",
                "Local error creating the queue file, try again later",
            );
        }
    };
    let (mut asm, limits) = local_assembler(&config, writer, uid);
    let eight_bit = match receive(
        stream,
        &mut asm,
        limits.message_size,
        deadline,
        intake.data_timeout,
    )
    .await
    {
        Ok(e) => e,
        Err(reply) => {
            asm.abort();
            return reply;
        }
    };
    let writer = match asm.finish() {
        Ok(w) => w,
        Err(refusal) => {
            if let Refusal::Io(e) = &refusal {
                tracing::error!(error = %e, uid, "submit socket: cannot write the queue file");
            }
            return refusal.reply();
        }
    };
    let id = writer.id().to_string();
    let user = match name {
        Ok(known) => known,
        Err(lookup) => {
            let name = lookup.await.unwrap_or_else(|_| uid.to_string());
            remember_name(uid, &name, Instant::now());
            name
        }
    };
    let envelope = local_envelope(
        *writer.id(),
        LocalSubmitter {
            uid,
            user: user.clone(),
        },
        sub.sender,
        sub.recipients,
        sub.notify,
        eight_bit || sub.body == maildrop::Body::EightBitMime,
    );
    shared.maillog.picked_up(&id, &envelope.sender, uid);
    match shared.queue.accept(writer, envelope).await {
        Ok(_) => {
            tracing::info!(%id, uid, %user, "submit socket: queued a local submission");
            Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))
        }
        Err(e) => {
            tracing::error!(%id, error = %e, "submit socket: commit failed; message not accepted");
            super::not_queued(&e)
        }
    }
}

/// Feeds the message to `asm` up to its end-of-data line; whether it had
/// 8-bit octets. Stops early, for `finish` to report, once it is too big.
async fn receive(
    stream: &mut BufReader<UnixStream>,
    asm: &mut Assembler,
    size_limit: u64,
    deadline: Instant,
    idle: Duration,
) -> Result<bool, Reply> {
    let mut eight_bit = false;
    loop {
        let buf = match within(deadline, idle, stream.fill_buf()).await? {
            Ok(b) => b,
            Err(e) => {
                return Err(Reply::new(451, "4.3.0", format!("read error: {e}")));
            }
        };
        if buf.is_empty() {
            return Err(Reply::new(
                554,
                "5.6.0",
                "the message ended without its end-of-data line (\".\"); nothing queued",
            ));
        }
        let fed = asm.feed(buf);
        let (used, extra) = (fed.consumed, buf.len() - fed.consumed);
        eight_bit |= buf[..used].iter().any(|&b| b >= 0x80);
        stream.consume(used);
        if fed.done {
            if extra > 0 {
                return Err(Reply::new(
                    554,
                    "5.6.0",
                    "data after the end-of-data line; send one message per connection",
                ));
            }
            return Ok(eight_bit);
        }
        if asm.received_size() > size_limit {
            return Ok(eight_bit);
        }
    }
}

/// Runs `step` within `idle` and before `deadline`, or the reply saying
/// the client was too slow.
async fn within<T>(
    deadline: Instant,
    idle: Duration,
    step: impl std::future::Future<Output = T>,
) -> Result<T, Reply> {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(idle.min(left), step)
        .await
        .map_err(|_| {
            Reply::new(
                421,
                "4.4.2",
                format!(
                    "no data for {} s (or the submission took longer than allowed); nothing queued",
                    idle.min(left).as_secs()
                ),
            )
        })
}

/// The first line (without its `\n`), at most [`maildrop::MAX_JSON_LINE`]
/// octets.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<u8>, FormatError> {
    let mut line = Vec::new();
    let cap = maildrop::MAX_JSON_LINE as u64 + 1;
    (&mut *r).take(cap).read_until(b'\n', &mut line).await?;
    match line.pop() {
        Some(b'\n') => Ok(line),
        _ if line.len() as u64 + 1 >= cap => Err(FormatError::LineTooLong),
        _ => Err(FormatError::Truncated),
    }
}

fn format_refusal(e: &FormatError) -> Reply {
    match e {
        FormatError::Io(e) => Reply::new(451, "4.3.0", format!("read error: {e}")),
        other => Reply::new(501, "5.5.4", format!("malformed submission: {other}")),
    }
}

/// How long a submitter's user name is reused without a new lookup (a
/// renamed account keeps its old name in new envelopes at most this
/// long).
const NAME_KEPT_FOR: Duration = Duration::from_secs(60);

/// How many submitters' names are kept.
const NAMES_KEPT: usize = 16;

/// Names of recent submitters, with when they were looked up. A lookup
/// (NSS: `/etc/passwd`, LDAP …) is blocking work handed to another thread
/// and waited for, and most local mail comes from a few users (cron, the
/// web server).
static NAMES: Mutex<Vec<(u32, String, Instant)>> = Mutex::new(Vec::new());

/// The name of `uid` if it was looked up less than [`NAME_KEPT_FOR`]
/// before `now`.
fn known_name(uid: u32, now: Instant) -> Option<String> {
    let names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    names
        .iter()
        .find(|(u, _, at)| *u == uid && now.saturating_duration_since(*at) < NAME_KEPT_FOR)
        .map(|(_, name, _)| name.clone())
}

/// Keeps `name` for `uid`, looked up at `now`, in place of the oldest
/// entry when full.
fn remember_name(uid: u32, name: &str, now: Instant) {
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    names.retain(|(u, _, _)| *u != uid);
    if names.len() >= NAMES_KEPT {
        names.sort_by_key(|(_, _, at)| *at);
        names.remove(0);
    }
    names.push((uid, name.to_owned(), now));
}

/// The user name of `uid`, or the uid in decimal when it has none fit
/// for a header. Blocking (NSS may be slow): run it off the reactor.
fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .filter(|n| maildrop::check_user(n).is_ok())
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests;
