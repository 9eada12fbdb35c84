//! Delivery into `~/Maildir/`.
//!
//! Every directory is opened relative to its already opened parent, and
//! must belong to the recipient: a `~/Maildir` that is a symbolic link to
//! a directory of someone else is refused, one to a directory of their own
//! is followed. A missing directory is created (mode 0700; this code runs
//! as the user, so it is theirs) only inside a directory the user owns, as
//! they could have done themselves; the home directory itself is never
//! created.
//!
//! The message is written to `tmp/<unique>` (0600), fsynced, hard-linked
//! into `new/` (a link never replaces an existing file, unlike rename),
//! unlinked from `tmp/`, and `new/` is fsynced. On any error the `tmp/`
//! file is removed.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod, fstat, mkdirat};
use nix::unistd::{UnlinkatFlags, fsync, linkat, unlinkat};

use super::copy;
use super::user::{LocalUser, running_as};
use super::{LocalMessage, copy_reason, delivery_headers, errno_reason, io_reason};
use crate::deliver::Reason;

/// Deliveries made by this process, for unique file names (`Q<n>`).
static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// Delivers into `<home>/<maildir>`; returns the path of the new file.
pub(super) fn deliver(
    user: &LocalUser,
    msg: &LocalMessage<'_>,
    body: &mut dyn Read,
    maildir: &str,
) -> Result<PathBuf, Reason> {
    running_as(user)?;
    let parts = relative_parts(maildir)?;

    let mut path = user.home.clone();
    let mut dir = open_home(&user.home, user)?;
    for part in &parts {
        dir = open_dir(&dir, &path, part, user)?;
        path.push(part);
    }
    let tmp = open_dir(&dir, &path, "tmp", user)?;
    let new = open_dir(&dir, &path, "new", user)?;
    // Readers expect cur/ too (Python's mailbox refuses a Maildir without it).
    drop(open_dir(&dir, &path, "cur", user)?);
    let tmp_path = path.join("tmp");
    let new_path = path.join("new");

    let (name, file) = create_unique(&tmp, &tmp_path)?;
    let mut guard = TmpFile {
        dir: &tmp,
        name: &name,
        armed: true,
    };
    let file_path = tmp_path.join(&name);
    write_message(&file, &file_path, msg, body)?;

    match linkat(&tmp, name.as_str(), &new, name.as_str(), AtFlags::empty()) {
        Ok(()) => {}
        // File systems without hard links: rename (atomic as well; the
        // name is unique, so nothing is replaced in practice).
        Err(Errno::EPERM | Errno::EOPNOTSUPP) => {
            renameat(&tmp, name.as_str(), &new, name.as_str())
                .map_err(|e| errno_reason("move into new/", &file_path, e))?;
            guard.armed = false;
        }
        Err(e) => return Err(errno_reason("link into new/", &file_path, e)),
    }
    let delivered = new_path.join(&name);
    // From here on the message is in new/: removing it would lose it.
    if guard.armed {
        guard.armed = false;
        if let Err(e) = unlinkat(&tmp, name.as_str(), UnlinkatFlags::NoRemoveDir) {
            tracing::warn!(path = %file_path.display(), error = %e, "cannot remove delivered Maildir tmp file");
        }
    }
    fsync(&new).map_err(|e| errno_reason("fsync", &new_path, e))?;
    Ok(delivered)
}

/// Writes headers and body into the new tmp file, sets its mode and
/// fsyncs it.
fn write_message(
    file: &File,
    path: &Path,
    msg: &LocalMessage<'_>,
    body: &mut dyn Read,
) -> Result<(), Reason> {
    // Mode explicitly: the creation mode went through the umask.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io_reason("set the mode of", path, &e))?;
    let mut out = BufWriter::with_capacity(copy::CHUNK, file);
    out.write_all(&delivery_headers(msg))
        .map_err(|e| io_reason("write", path, &e))?;
    copy::copy_body(body, &mut out, false).map_err(|e| copy_reason(msg.body, path, e))?;
    out.flush().map_err(|e| io_reason("write", path, &e))?;
    drop(out);
    file.sync_all().map_err(|e| io_reason("fsync", path, &e))
}

/// Removes the tmp file unless the delivery got past it.
struct TmpFile<'a> {
    dir: &'a OwnedFd,
    name: &'a str,
    armed: bool,
}

impl Drop for TmpFile<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = unlinkat(self.dir, self.name, UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// Splits the configured Maildir path into directory names, refusing what
/// would leave the home directory.
fn relative_parts(maildir: &str) -> Result<Vec<String>, Reason> {
    let bad = |why: &str| {
        Reason::Local(format!(
            "local Maildir path {maildir:?} {why}: it must be relative to the home directory, like \"Maildir/\""
        ))
    };
    let mut parts = Vec::new();
    for c in Path::new(maildir).components() {
        match c {
            Component::Normal(s) => match s.to_str() {
                Some(s) => parts.push(s.to_string()),
                None => return Err(bad("is not UTF-8")),
            },
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(bad("is absolute")),
            Component::ParentDir => return Err(bad("contains \"..\"")),
        }
    }
    if parts.is_empty() {
        return Err(bad("is empty"));
    }
    Ok(parts)
}

/// Opens the home directory (following symbolic links: the passwd entry
/// is the administrator's).
fn open_home(home: &Path, user: &LocalUser) -> Result<OwnedFd, Reason> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    openat(nix::fcntl::AT_FDCWD, home, flags, Mode::empty()).map_err(|e| match e {
        Errno::ENOENT => Reason::Local(format!(
            "home directory {} of {} does not exist",
            home.display(),
            user.describe()
        )),
        Errno::ENOTDIR => Reason::Local(format!(
            "home directory {} of {} is not a directory",
            home.display(),
            user.describe()
        )),
        e => errno_reason("open home directory", home, e),
    })
}

/// Opens `parent/name` as a directory owned by the user, creating it when
/// missing and `parent` belongs to the user.
fn open_dir(
    parent: &OwnedFd,
    parent_path: &Path,
    name: &str,
    user: &LocalUser,
) -> Result<OwnedFd, Reason> {
    let path = parent_path.join(name);
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    // Twice at most: a directory created by someone else between our
    // open and our mkdir is simply opened the second time.
    for _ in 0..2 {
        match openat(parent, name, flags, Mode::empty()) {
            Ok(fd) => {
                check_owned(&fd, &path, user)?;
                return Ok(fd);
            }
            Err(Errno::ENOENT) => {}
            Err(Errno::ENOTDIR) => {
                return Err(Reason::Local(format!(
                    "{} is not a directory",
                    path.display()
                )));
            }
            Err(e) => return Err(errno_reason("open directory", &path, e)),
        }
        // Missing: create it only where the user could have.
        let st = fstat(parent).map_err(|e| errno_reason("stat", parent_path, e))?;
        if st.st_uid != user.uid.as_raw() {
            return Err(Reason::Local(format!(
                "will not create {}: {} belongs to uid {}, not to {}",
                path.display(),
                parent_path.display(),
                st.st_uid,
                user.describe()
            )));
        }
        match mkdirat(parent, name, Mode::S_IRWXU) {
            Ok(()) => {}
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(errno_reason("create directory", &path, e)),
        }
        let fd = openat(parent, name, flags | OFlag::O_NOFOLLOW, Mode::empty())
            .map_err(|e| errno_reason("open directory", &path, e))?;
        let st = fstat(&fd).map_err(|e| errno_reason("stat", &path, e))?;
        // Ours and still empty: the directory mkdirat just made (the
        // parent is the user's, so only they or root could swap it).
        if st.st_uid == nix::unistd::geteuid().as_raw() && st.st_nlink == 2 {
            fchmod(&fd, Mode::S_IRWXU).map_err(|e| errno_reason("set the mode of", &path, e))?;
            // Make the new entry durable before files are linked below it.
            fsync(parent).map_err(|e| errno_reason("fsync", parent_path, e))?;
        }
        check_owned(&fd, &path, user)?;
        return Ok(fd);
    }
    Err(Reason::Local(format!(
        "cannot create directory {}: it keeps appearing and disappearing",
        path.display()
    )))
}

/// Refuses a directory that does not belong to the user (typically a
/// symbolic link into someone else's files).
fn check_owned(fd: &OwnedFd, path: &Path, user: &LocalUser) -> Result<(), Reason> {
    let st = fstat(fd.as_fd()).map_err(|e| errno_reason("stat", path, e))?;
    if st.st_uid != user.uid.as_raw() {
        return Err(Reason::Local(format!(
            "refusing to deliver into {}: it belongs to uid {}, not to {} \
             (a symbolic link to someone else's directory?)",
            path.display(),
            st.st_uid,
            user.describe()
        )));
    }
    Ok(())
}

/// Creates a new, uniquely named file in `tmp/`.
fn create_unique(tmp: &OwnedFd, tmp_path: &Path) -> Result<(String, File), Reason> {
    let host = escaped_hostname();
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    for _ in 0..5 {
        let name = unique_name(&host);
        match openat(tmp, name.as_str(), flags, Mode::S_IRUSR | Mode::S_IWUSR) {
            Ok(fd) => return Ok((name, File::from(fd))),
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(errno_reason("create", &tmp_path.join(&name), e)),
        }
    }
    Err(Reason::Local(format!(
        "cannot find a free file name in {}",
        tmp_path.display()
    )))
}

/// `<seconds>.M<microseconds>P<pid>Q<deliveries>.<host>`.
fn unique_name(host: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seq = DELIVERIES.fetch_add(1, Ordering::Relaxed) + 1;
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        seq,
        host
    )
}

/// The host name for Maildir file names: `/` and `:` written as `\057`
/// and `\072`, as the Maildir specification asks.
fn escaped_hostname() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    escape_host(&host)
}

pub(super) fn escape_host(host: &str) -> String {
    let mut out = String::with_capacity(host.len());
    for c in host.chars() {
        match c {
            '/' => out.push_str("\\057"),
            ':' => out.push_str("\\072"),
            c => out.push(c),
        }
    }
    out
}
