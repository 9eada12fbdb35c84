//! Pickup: queues the mail local users left in maildrop/ through
//! `sendmail` → `postrelay-postdrop` (formats: [`crate::maildrop`]).
//!
//! At start, before the daemon is ready, [`setup`] makes maildrop/ (mode
//! 1730, group `postdrop`) and lets the group search the spool root
//! (0710); without the group both stay private and only root can submit,
//! which it logs. Then it lists maildrop/ and takes each ready file in
//! name (arrival) order: at start, whenever postdrop finishes a file
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
//! **At least once.** The file is removed only after [`Shared::accept`]
//! committed the message; a crash in between queues it again at the next
//! start: a duplicate, never a loss.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
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
use crate::spool::{BodyType, BodyWriter, Envelope, Origin, QueueId, Recipient, Spool};

/// How often maildrop/ is listed when inotify is unavailable.
const POLL: Duration = Duration::from_secs(1);

/// Runs until `shutdown`; a file being queued when it fires is finished.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let dir = maildrop::dir(shared.spool.root());
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
        scan(&shared, &dir, &shutdown, &mut committed).await;
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

/// Sets up maildrop/ before the daemon says it is ready, so that a
/// `sendmail` run right after the start finds it open to the group; a
/// failure is logged, never fatal (root can still submit).
pub fn setup(root: &Path) {
    if let Err(e) = prepare(root) {
        tracing::error!(
            dir = %maildrop::dir(root).display(), error = %e,
            "maildrop: cannot set up the directory; local submission (sendmail) will fail"
        );
    }
}

/// Creates maildrop/ and gives it (and search access to the spool root) to
/// the `postdrop` group.
fn prepare(root: &Path) -> io::Result<()> {
    let dir = maildrop::dir(root);
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => crate::spool::durable::sync_dir(root)?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    if !fs::symlink_metadata(&dir)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "exists and is not a directory",
        ));
    }
    let private = |why: String| -> io::Result<()> {
        tracing::warn!(
            dir = %dir.display(),
            "maildrop: {why}; only root can submit mail with sendmail. Create the group \
             (groupadd --system {g}) and install postrelay-postdrop setgid {g} \
             (chown root:{g}; chmod 2755), then restart",
            g = maildrop::GROUP
        );
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
    };
    let group = match nix::unistd::Group::from_name(maildrop::GROUP) {
        Ok(Some(g)) => g,
        Ok(None) => return private(format!("the group {} does not exist", maildrop::GROUP)),
        Err(e) => return private(format!("cannot look up the group {}: {e}", maildrop::GROUP)),
    };
    for (path, mode) in [
        (&dir, maildrop::DIR_MODE),
        (&root.to_path_buf(), maildrop::ROOT_MODE),
    ] {
        if let Err(e) = nix::unistd::chown(path.as_path(), None, Some(group.gid)) {
            return private(format!(
                "cannot give {} to the group {}: {e}",
                path.display(),
                maildrop::GROUP
            ));
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

async fn scan(
    shared: &Arc<Shared>,
    dir: &Path,
    shutdown: &CancellationToken,
    committed: &mut HashSet<String>,
) {
    let d = dir.to_path_buf();
    let names = match tokio::task::spawn_blocking(move || list(&d)).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            tracing::debug!(dir = %dir.display(), error = %e, "maildrop: cannot list");
            return;
        }
        Err(_) => return,
    };
    for name in names {
        if shutdown.is_cancelled() {
            return;
        }
        let path = dir.join(&name);
        if committed.contains(&name) {
            if fs::remove_file(&path).is_ok() {
                committed.remove(&name);
            }
            continue;
        }
        let spool = shared.spool.clone();
        let config = shared.config();
        let p = path.clone();
        let loaded = match tokio::task::spawn_blocking(move || load(&spool, &config, &p)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "maildrop: pickup panicked");
                continue;
            }
        };
        match loaded {
            Loaded::Later => {}
            Loaded::TempFail(why) => {
                tracing::warn!(file = %path.display(), %why, "maildrop: will retry")
            }
            Loaded::Bad { uid, why } => quarantine(shared.spool.root(), &path, &name, uid, &why),
            Loaded::Ready {
                writer,
                envelope,
                uid,
                user,
            } => match shared.accept(writer, *envelope).await {
                Ok(env) => {
                    let id = env.id.to_string();
                    shared.maillog.line(
                        "pickup",
                        &id,
                        &format!("uid={uid} from=<{}>", crate::maillog::clean(&env.sender)),
                    );
                    shared.maillog.queued(&env);
                    tracing::info!(%id, uid, %user, "maildrop: queued a local submission");
                    if let Err(e) = fs::remove_file(&path) {
                        tracing::error!(file = %path.display(), error = %e,
                                "maildrop: queued, but cannot remove the file; retrying the removal");
                        committed.insert(name);
                    }
                }
                Err(e) => tracing::error!(file = %path.display(), error = %e,
                        "maildrop: commit failed; will retry"),
            },
        }
    }
}

/// File names in maildrop/, sorted (ids sort by arrival).
fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
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
        writer: BodyWriter,
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
fn load(spool: &Spool, config: &Config, path: &Path) -> Loaded {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if !maildrop::is_drop_name(&name) {
        return Loaded::Bad {
            uid: None,
            why: "not a maildrop file name".into(),
        };
    }
    let flags = nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC;
    let file = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::Later,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
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
            let _ = fs::remove_file(path);
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
                let _ = fs::remove_file(path);
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
    receive(spool, config, file, uid)
}

fn receive(spool: &Spool, config: &Config, file: File, uid: u32) -> Loaded {
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
    let writer = match spool.new_body() {
        Ok(w) => w,
        Err(e) => return Loaded::TempFail(e.to_string()),
    };
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
    let mut asm = Assembler::new(writer, limits, prefix, date, message_id);
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
    let smtputf8 = !header.sender.is_ascii() || header.recipients.iter().any(|r| !r.is_ascii());
    let recipients = header
        .recipients
        .into_iter()
        .map(|a| Recipient {
            notify: header.notify.clone(),
            ..Recipient::new(a)
        })
        .collect();
    let user = header.user;
    let mut envelope = Envelope::new(
        id,
        Origin::Local {
            uid,
            user: user.clone(),
        },
        header.sender,
        recipients,
    );
    envelope.smtputf8 = smtputf8;
    if eight_bit || header.body == maildrop::Body::EightBitMime {
        envelope.body = BodyType::EightBitMime;
    }
    Loaded::Ready {
        writer,
        envelope: Box::new(envelope),
        uid,
        user,
    }
}

/// The trace field of a local submission (as Postfix's pickup writes it).
pub fn received_local(hostname: &str, uid: u32, id: &QueueId, date: &str) -> String {
    format!("Received: by {hostname} (postrelay, from userid {uid})\r\n\tid {id}; {date}\r\n")
}

/// Moves an unusable file to corrupt/ (never retried), or removes it when
/// even that fails.
fn quarantine(root: &Path, path: &Path, name: &str, uid: Option<u32>, why: &str) {
    let target_name = if maildrop::is_drop_name(name) {
        format!("maildrop-{name}")
    } else {
        format!("maildrop-{}", QueueId::generate())
    };
    let target: PathBuf = root.join(crate::spool::CORRUPT_DIR).join(target_name);
    let uid = uid.map_or_else(|| "unknown".to_string(), |u| u.to_string());
    match fs::rename(path, &target) {
        Ok(()) => tracing::error!(
            file = %path.display(), moved_to = %target.display(), uid = %uid, %why,
            "maildrop: unusable submission moved to corrupt/"
        ),
        Err(e) => {
            tracing::error!(
                file = %path.display(), uid = %uid, %why, error = %e,
                "maildrop: unusable submission; cannot move it to corrupt/, removing it"
            );
            let _ = fs::remove_file(path);
        }
    }
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
