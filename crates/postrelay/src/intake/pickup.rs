//! Pickup: queues the mail local users left in maildrop/ through
//! `sendmail` → `postrelay-postdrop` (formats: [`crate::maildrop`]).
//!
//! maildrop/ is set up by the spool before the daemon is ready
//! ([`crate::spool::DropDir::setup`]: mode 1730, group `postdrop`); the
//! spool also lists, opens, removes and quarantines its files. Pickup
//! lists maildrop/ and takes each ready file in name (arrival) order: at start, whenever postdrop finishes a file
//! (inotify on maildrop/ wakes it), and every `intake.maildrop_rescan` as
//! a safety net; without inotify, every second.
//!
//! Every file is hostile input: opened with `O_NOFOLLOW`, it must be a
//! regular file whose owner (recorded by the kernel: postdrop is setgid,
//! not setuid) is the uid its first line claims; the JSON is strict and
//! bounded, addresses are parsed, and the message goes through the same
//! [`Assembler`] as SMTP DATA, with the same limits
//! (`intake.message_size_limit`, header and line limits, hop count, bare
//! CR/LF). Its `Received:` field says `from userid <uid>`.
//!
//! A file that fails any check is moved to the spool's corrupt/ (as
//! `maildrop-<name>`) with an error log naming the uid; it is never
//! retried. A file postdrop abandoned (mode 0000) is removed; one still
//! being written after [`maildrop::STALE_AFTER`] belonged to a killed
//! postdrop and is removed too. Spool errors (disk full …) leave the file
//! for the next scan.
//!
//! **At least once.** The file is removed only after [`Queue::accept`]
//! committed the message; a crash in between queues it again at the next
//! start: a duplicate, never a loss.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::headers;
use super::message::{Assembler, Limits, Refusal};
use crate::config::Config;
use crate::maildrop::{self, DropHeader};
use crate::queue::Queue;
use crate::spool::{BodyType, BodyWriter, DropDir, Envelope, Opened, Origin, QueueId, Recipient};

/// How often maildrop/ is listed when inotify is unavailable.
const POLL: Duration = Duration::from_secs(1);

/// Runs until `shutdown`; a file being queued when it fires is finished.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let drop_dir = shared.queue.drop_dir();
    let dir = drop_dir.path().to_path_buf();
    // Watching starts before the first listing, so a file finished at any
    // moment is either listed or announced.
    let watch = match Watch::start(&dir) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                dir = %dir.display(), error = %e,
                "maildrop: no change notification (inotify); listing the directory every second instead"
            );
            None
        }
    };
    // Names committed whose removal failed: never queued twice by us.
    let mut committed: HashSet<String> = HashSet::new();
    let mut first = true;
    loop {
        scan(&shared, &drop_dir, &shutdown, &mut committed).await;
        if std::mem::take(&mut first) {
            tracing::debug!(dir = %dir.display(), notified = watch.is_some(), "maildrop: first listing done");
        }
        let (rescan, woken) = match &watch {
            Some(w) if w.is_alive() => (shared.config().intake.maildrop_rescan, Some(w)),
            _ => (POLL, None),
        };
        // Cancel safety: `notified` loses nothing when dropped (a wake-up
        // that comes meanwhile stays stored for the next wait).
        tokio::select! {
            _ = tokio::time::sleep(rescan) => {}
            _ = async {
                match woken {
                    Some(w) => w.woken.notified().await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Wakes pickup when postdrop has finished a file in maildrop/: it marks a
/// file ready (or abandoned) with `fchmod` (`IN_ATTRIB`); a file closed
/// after writing or moved in counts too. A thread of its own blocks in
/// `read` on the inotify descriptor and turns each batch of events into
/// one stored wake-up (what changed does not matter: pickup lists it all).
/// The thread ends at its first event after the watch is dropped, or with
/// the process.
struct Watch {
    woken: Arc<Notify>,
    alive: Arc<AtomicBool>,
}

impl Watch {
    fn start(dir: &Path) -> io::Result<Watch> {
        use nix::sys::inotify::{AddWatchFlags as F, InitFlags, Inotify};
        let ino = Inotify::init(InitFlags::IN_CLOEXEC)?;
        ino.add_watch(dir, F::IN_ATTRIB | F::IN_CLOSE_WRITE | F::IN_MOVED_TO)?;
        let woken = Arc::new(Notify::new());
        let alive = Arc::new(AtomicBool::new(true));
        let (weak, flag) = (Arc::downgrade(&woken), alive.clone());
        let shown = dir.display().to_string();
        std::thread::Builder::new()
            .name("maildrop-watch".into())
            .spawn(move || {
                loop {
                    let read = ino.read_events();
                    let Some(woken) = weak.upgrade() else { return };
                    match read {
                        Ok(_) => woken.notify_one(),
                        Err(nix::errno::Errno::EINTR) => {}
                        Err(e) => {
                            tracing::warn!(
                                dir = %shown, error = %e,
                                "maildrop: change notification failed; listing the directory every second instead"
                            );
                            flag.store(false, Ordering::Relaxed);
                            woken.notify_one();
                            return;
                        }
                    }
                }
            })?;
        Ok(Watch { woken, alive })
    }

    /// Whether change notifications still arrive.
    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

async fn scan(
    shared: &Arc<Shared>,
    drop_dir: &DropDir,
    shutdown: &CancellationToken,
    committed: &mut HashSet<String>,
) {
    let d = drop_dir.clone();
    let names = match tokio::task::spawn_blocking(move || d.list()).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            tracing::debug!(dir = %drop_dir.path().display(), error = %e, "maildrop: cannot list");
            return;
        }
        Err(_) => return,
    };
    for name in names {
        if shutdown.is_cancelled() {
            return;
        }
        if committed.contains(&name) {
            if drop_dir.remove(&name).is_ok() {
                committed.remove(&name);
            }
            continue;
        }
        if take(shared, drop_dir, &name).await == Taken::QueuedNotRemoved {
            committed.insert(name);
        }
    }
}

/// What became of one file.
#[derive(Debug, PartialEq, Eq)]
enum Taken {
    /// Queued and removed, quarantined, left for later, or to retry.
    Done,
    /// Queued, but the file could not be removed: it must never be queued
    /// again; its removal is retried.
    QueuedNotRemoved,
}

/// Reads, checks and queues one maildrop file.
async fn take(shared: &Arc<Shared>, drop_dir: &DropDir, name: &str) -> Taken {
    let path = drop_dir.file(name);
    let (queue, dir, config, n) = (
        shared.queue.clone(),
        drop_dir.clone(),
        shared.config(),
        name.to_owned(),
    );
    let loaded = match tokio::task::spawn_blocking(move || load(&queue, &dir, &config, &n)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "maildrop: pickup panicked");
            return Taken::Done;
        }
    };
    let (writer, envelope, uid, user) = match loaded {
        Loaded::Later => return Taken::Done,
        Loaded::TempFail(why) => {
            tracing::warn!(file = %path.display(), %why, "maildrop: will retry");
            return Taken::Done;
        }
        Loaded::Bad { uid, why } => {
            drop_dir.quarantine(name, uid, &why);
            return Taken::Done;
        }
        Loaded::Ready {
            writer,
            envelope,
            uid,
            user,
        } => (*writer, envelope, uid, user),
    };
    let id = writer.id().to_string();
    shared.maillog.picked_up(&id, &envelope.sender, uid);
    if let Err(e) = shared.queue.accept(writer, *envelope).await {
        tracing::error!(file = %path.display(), error = %e, "maildrop: commit failed; will retry");
        return Taken::Done;
    }
    tracing::info!(%id, uid, %user, "maildrop: queued a local submission");
    match drop_dir.remove(name) {
        Ok(()) => Taken::Done,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e,
                "maildrop: queued, but cannot remove the file; retrying the removal");
            Taken::QueuedNotRemoved
        }
    }
}

/// What one maildrop file turned out to be.
enum Loaded {
    /// Not ready yet, or gone.
    Later,
    /// Could not be read into the spool now; try again.
    TempFail(String),
    /// Unusable: to corrupt/.
    Bad { uid: Option<u32>, why: String },
    /// Received into the spool, ready to commit.
    Ready {
        writer: Box<BodyWriter>,
        envelope: Box<Envelope>,
        /// The submitter (also in the envelope's origin), for the log.
        uid: u32,
        user: String,
    },
}

fn bad(uid: u32, why: impl Into<String>) -> Loaded {
    Loaded::Bad {
        uid: Some(uid),
        why: why.into(),
    }
}

/// Opens, checks and receives one file (blocking).
fn load(queue: &Queue, drop_dir: &DropDir, config: &Config, name: &str) -> Loaded {
    let path = drop_dir.file(name);
    if !maildrop::is_drop_name(name) {
        return Loaded::Bad {
            uid: None,
            why: "not a maildrop file name".into(),
        };
    }
    let file = match drop_dir.open(name) {
        Ok(Opened::File(f)) => f,
        Ok(Opened::Gone) => return Loaded::Later,
        Ok(Opened::Symlink) => {
            return Loaded::Bad {
                uid: None,
                why: "a symbolic link".into(),
            };
        }
        Err(e) => return Loaded::TempFail(format!("cannot open: {e}")),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Loaded::TempFail(format!("cannot stat: {e}")),
    };
    let uid = meta.uid();
    if !meta.is_file() {
        return bad(uid, "not a regular file");
    }
    match meta.mode() & 0o7777 {
        maildrop::MODE_READY => {}
        maildrop::MODE_ABANDONED => {
            tracing::debug!(file = %path.display(), uid, "maildrop: removing a submission postdrop refused");
            let _ = drop_dir.remove(name);
            return Loaded::Later;
        }
        _ => {
            let age = meta
                .modified()
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .unwrap_or_default();
            if age > maildrop::STALE_AFTER {
                tracing::warn!(file = %path.display(), uid,
                    "maildrop: removing a submission left incomplete for a day (postdrop was killed?)");
                let _ = drop_dir.remove(name);
            }
            return Loaded::Later;
        }
    }
    let limit = config.intake.message_size_limit;
    // Dot-stuffing at most doubles a line; anything larger is not ours.
    let bound = (maildrop::MAX_JSON_LINE as u64 + 1).saturating_add(limit.saturating_mul(2)) + 3;
    if meta.len() > bound {
        return bad(
            uid,
            format!(
                "{} octets, more than the message size limit allows",
                meta.len()
            ),
        );
    }
    receive(queue, config, file, uid)
}

fn receive(queue: &Queue, config: &Config, file: File, uid: u32) -> Loaded {
    let mut r = BufReader::with_capacity(64 * 1024, file);
    let header = match maildrop::read_line(&mut r).and_then(|l| DropHeader::parse(&l)) {
        Ok(h) => h,
        Err(e) => return bad(uid, e.to_string()),
    };
    if header.uid != uid {
        return bad(
            uid,
            format!("claims uid {} but is owned by uid {uid}", header.uid),
        );
    }
    let writer = match queue.new_body() {
        Ok(w) => w,
        Err(e) => return Loaded::TempFail(e.to_string()),
    };
    let (mut asm, limits) = local_assembler(config, writer, uid);
    let mut eight_bit = false;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) => {
                asm.abort();
                return Loaded::TempFail(format!("read error: {e}"));
            }
        };
        if buf.is_empty() {
            asm.abort();
            return bad(uid, "the message lacks its end-of-data marker");
        }
        let fed = asm.feed(buf);
        eight_bit |= buf[..fed.consumed].iter().any(|&b| b >= 0x80);
        r.consume(fed.consumed);
        if fed.done {
            match r.fill_buf() {
                Ok([]) => {}
                Ok(_) => {
                    asm.abort();
                    return bad(uid, "data after the end-of-data marker");
                }
                Err(e) => {
                    asm.abort();
                    return Loaded::TempFail(format!("read error: {e}"));
                }
            }
            break;
        }
        if asm.received_size() > limits.message_size {
            break; // finish() reports it
        }
    }
    let writer = match asm.finish() {
        Ok(w) => w,
        Err(Refusal::Io(e)) => {
            return Loaded::TempFail(format!("cannot write the queue file: {e}"));
        }
        Err(refused) => return bad(uid, format!("refused: {}", refused.reply())),
    };
    let user = header.user;
    let envelope = local_envelope(
        *writer.id(),
        LocalSubmitter {
            uid,
            user: user.clone(),
        },
        header.sender,
        header.recipients,
        header.notify,
        eight_bit || header.body == maildrop::Body::EightBitMime,
    );
    Loaded::Ready {
        writer: Box::new(writer),
        envelope: Box::new(envelope),
        uid,
        user,
    }
}

/// Who submitted a local message: the uid the kernel reported (a
/// maildrop file's owner, or the submit socket's peer) and its user name.
pub(super) struct LocalSubmitter {
    pub uid: u32,
    pub user: String,
}

/// The [`Assembler`] for a local submission into `writer`: the intake
/// limits, and the `Received: … from userid N` trace field on top.
pub(super) fn local_assembler(
    config: &Config,
    writer: BodyWriter,
    uid: u32,
) -> (Assembler, Limits) {
    let id = *writer.id();
    let date = headers::rfc5322_now();
    let prefix = received_local(&config.hostname, uid, &id, &date);
    let intake = &config.intake;
    let limits = Limits {
        message_size: intake.message_size_limit,
        header_size: intake.header_size_limit,
        line_length: intake.line_length_limit,
    };
    let message_id = format!("{id}@{}", config.hostname);
    (
        Assembler::new(writer, limits, prefix, date, message_id),
        limits,
    )
}

/// The envelope of a local submission (checked addresses, DSN `notify`
/// for every recipient); `eight_bit` when declared or seen.
pub(super) fn local_envelope(
    id: QueueId,
    from: LocalSubmitter,
    sender: String,
    recipients: Vec<String>,
    notify: Option<Vec<String>>,
    eight_bit: bool,
) -> Envelope {
    let smtputf8 = !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
    let recipients = recipients
        .into_iter()
        .map(|a| Recipient {
            notify: notify.clone(),
            ..Recipient::new(a)
        })
        .collect();
    let origin = Origin::Local {
        uid: from.uid,
        user: from.user,
    };
    let mut envelope = Envelope::new(id, origin, sender, recipients);
    envelope.smtputf8 = smtputf8;
    if eight_bit {
        envelope.body = BodyType::EightBitMime;
    }
    envelope
}

/// The trace field of a local submission (as Postfix's pickup writes it).
pub fn received_local(hostname: &str, uid: u32, id: &QueueId, date: &str) -> String {
    format!("Received: by {hostname} (postrelay, from userid {uid})\r\n\tid {id}; {date}\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_names_the_uid() {
        let id: QueueId = "01JDWE7480B8Y9W7RBFMJ6HB71".parse().unwrap();
        assert_eq!(
            received_local("relay.test", 1000, &id, "Sun, 29 Nov 2026 17:00:00 +0000"),
            "Received: by relay.test (postrelay, from userid 1000)\r\n\tid \
             01JDWE7480B8Y9W7RBFMJ6HB71; Sun, 29 Nov 2026 17:00:00 +0000\r\n"
        );
    }
}
