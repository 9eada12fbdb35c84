//! `postrelay-postdrop SPOOL`: the only privileged step of local submission.
//! Installed setgid `postdrop` (`chown root:postdrop; chmod 2755`); run by
//! `sendmail`, never by hand.
//!
//! With its group it does exactly two things: open `SPOOL/maildrop` (after
//! checking that the directory is group `postdrop` and private to others)
//! and create one new file there (`O_EXCL`, `O_NOFOLLOW`, mode 0600). Then it
//! gives the group up for good (real, effective and saved gid) and, as the
//! plain user, reads the submission from stdin, checks it, writes the file,
//! `fsync`s it, marks it ready (mode 0640) and `syncfs`s the file system so
//! that the new directory entry is durable too (it cannot open maildrop/
//! for reading, so it cannot fsync the directory itself). Exit 0 means the
//! message is on disk; the daemon need not run.
//!
//! The uid and user name in the file come from getuid(), never from stdin;
//! the kernel also records the uid as the file's owner, which pickup checks.
//! Formats: see `postrelay::maildrop`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::ExitCode;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, umask};
use nix::unistd::{Gid, User, getegid, geteuid, getgid, getuid, setresgid};
use postrelay::maildrop::{self, DropHeader, FormatError, Submission};
use postrelay_smtp::data::{DataReceiver, DataViolation};

const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_OSERR: u8 = 71;
const EX_TEMPFAIL: u8 = 75;
const EX_NOPERM: u8 = 77;

/// A failure: exit status and what to tell the user.
struct Fail(u8, String);

fn main() -> ExitCode {
    match run() {
        Ok(name) => {
            println!("{name}");
            ExitCode::SUCCESS
        }
        Err(Fail(code, why)) => {
            eprintln!("postrelay-postdrop: {why}");
            ExitCode::from(code)
        }
    }
}

fn run() -> Result<String, Fail> {
    umask(Mode::from_bits_truncate(0o077));
    let mut args = std::env::args_os().skip(1);
    let (Some(spool), None) = (args.next(), args.next()) else {
        return Err(Fail(
            EX_USAGE,
            "usage: postrelay-postdrop SPOOL_DIRECTORY (it is run by sendmail)".into(),
        ));
    };
    let dir_path = maildrop::dir(&PathBuf::from(spool));
    let (uid, gid) = (getuid(), getgid());

    // --- With the group: open the directory and create the file. ---
    let dir = open(
        &dir_path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| no_access(e, &format!("cannot open {}", dir_path.display())))?;
    let st = nix::sys::stat::fstat(&dir).map_err(|e| {
        Fail(
            EX_TEMPFAIL,
            format!("cannot stat {}: {e}", dir_path.display()),
        )
    })?;
    let is_dir = st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR;
    let ours = geteuid().is_root() || Gid::from_raw(st.st_gid) == getegid();
    if !is_dir || st.st_mode & 0o007 != 0 || !ours {
        return Err(Fail(
            EX_NOPERM,
            format!(
                "{} is not a maildrop directory (expected group {}, no access for others)",
                dir_path.display(),
                maildrop::GROUP
            ),
        ));
    }
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mode = Mode::from_bits_truncate(maildrop::MODE_WRITING);
    let (name, fd) = (0..3)
        .find_map(|_| {
            let name = postrelay::spool::QueueId::generate().to_string();
            match openat(&dir, name.as_str(), flags, mode) {
                Err(Errno::EEXIST) => None,
                r => Some(r.map(|fd| (name, fd))),
            }
        })
        .unwrap_or(Err(Errno::EEXIST))
        .map_err(|e| {
            no_access(
                e,
                &format!("cannot create a file in {}", dir_path.display()),
            )
        })?;
    drop(dir);

    // --- For good: no group privilege from here on. ---
    setresgid(gid, gid, gid)
        .map_err(|e| Fail(EX_OSERR, format!("cannot drop the group privilege: {e}")))?;
    if getegid() != gid {
        return Err(Fail(
            EX_OSERR,
            "the group privilege is still in effect; refusing to go on".into(),
        ));
    }
    let mut file = File::from(fd);
    match fill(&mut file, uid.as_raw()) {
        Ok(()) => Ok(name),
        Err(fail) => {
            // Leave an empty file that pickup recognises as abandoned and
            // removes (removing it ourselves would need the group).
            let _ = file.set_len(0);
            let _ = file.set_permissions(PermissionsExt::from_mode(maildrop::MODE_ABANDONED));
            Err(fail)
        }
    }
}

/// Reads the submission from stdin into `file` and makes it durable and ready.
fn fill(file: &mut File, uid: u32) -> Result<(), Fail> {
    let mut input = BufReader::with_capacity(64 * 1024, io::stdin().lock());
    let line = maildrop::read_line(&mut input).map_err(format_fail)?;
    let sub = Submission::parse(&line).map_err(format_fail)?;
    let user = User::from_uid(getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .filter(|n| maildrop::check_user(n).is_ok())
        .unwrap_or_else(|| uid.to_string());
    let header = DropHeader {
        version: maildrop::VERSION,
        uid,
        user,
        sender: sub.sender.clone(),
        recipients: sub.recipients.clone(),
        body: sub.body,
        notify: sub.notify.clone(),
    };
    let mut out = io::BufWriter::with_capacity(64 * 1024, &*file);
    let mut line = header.to_line();
    line.push(b'\n');
    out.write_all(&line).map_err(io_fail)?;

    // Copy the DATA form through, checking it as the daemon will.
    let limit = sub.effective_limit();
    let mut rx = DataReceiver::with_max_line(0);
    let mut scratch = Vec::new();
    while !rx.is_done() {
        let buf = input
            .fill_buf()
            .map_err(|e| Fail(EX_TEMPFAIL, format!("cannot read the message: {e}")))?;
        if buf.is_empty() {
            return Err(Fail(
                EX_DATAERR,
                "the message ended without its end marker (was sendmail interrupted?)".into(),
            ));
        }
        scratch.clear();
        let n = rx.ingest(buf, &mut scratch).consumed;
        out.write_all(&buf[..n]).map_err(io_fail)?;
        input.consume(n);
        if rx.body_len() > limit {
            return Err(Fail(
                EX_DATAERR,
                format!("message too big (limit {limit} octets)"),
            ));
        }
    }
    if let Some(DataViolation::BareCr | DataViolation::BareLf) = rx.violation() {
        return Err(Fail(EX_DATAERR, "the message has a bare CR or LF".into()));
    }
    if input.read(&mut [0u8; 1]).map_err(io_fail)? != 0 {
        return Err(Fail(EX_DATAERR, "data after the end of the message".into()));
    }
    out.flush().map_err(io_fail)?;
    drop(out);
    file.sync_all().map_err(io_fail)?;
    // Removed before it was complete (pickup clears files left incomplete
    // for a day; an administrator may have): say so. Checked before the
    // file is marked ready, because from then on pickup may take it at
    // once, and then it is gone because it is queued, not lost.
    if file.metadata().map_err(io_fail)?.nlink() == 0 {
        return Err(Fail(
            EX_TEMPFAIL,
            "the maildrop file was removed while being written".into(),
        ));
    }
    file.set_permissions(PermissionsExt::from_mode(maildrop::MODE_READY))
        .map_err(io_fail)?;
    nix::unistd::syncfs(&*file).map_err(|e| io_fail(e.into()))?;
    Ok(())
}

fn format_fail(e: FormatError) -> Fail {
    match e {
        FormatError::Io(e) => Fail(EX_TEMPFAIL, format!("cannot read the submission: {e}")),
        other => Fail(EX_DATAERR, format!("malformed submission: {other}")),
    }
}

fn io_fail(e: io::Error) -> Fail {
    Fail(EX_TEMPFAIL, format!("cannot write the maildrop file: {e}"))
}

fn no_access(e: Errno, what: &str) -> Fail {
    match e {
        Errno::EACCES | Errno::EPERM => Fail(EX_NOPERM, format!("{what}: {e}; {}", why_denied())),
        Errno::ENOENT => Fail(
            EX_TEMPFAIL,
            format!("{what}: {e}; has the postrelay daemon run once on this spool?"),
        ),
        _ => Fail(EX_TEMPFAIL, format!("{what}: {e}")),
    }
}

/// Why the group could not reach maildrop/, as precisely as the process
/// can tell: not installed setgid, setgid ignored by the kernel, or the
/// directories not (yet) open to the group.
fn why_denied() -> String {
    let g = maildrop::GROUP;
    let install = format!(
        "postrelay-postdrop must be installed setgid {g} \
         (chown root:{g} postrelay-postdrop; chmod 2755 postrelay-postdrop)"
    );
    if getegid() != getgid() {
        // The setgid bit took effect: the directories are the problem.
        return format!(
            "running with group id {}, but the spool root (mode 0710) and maildrop/ (mode 1730) \
             are not open to that group; the daemon sets them up when it starts, if the group \
             {g} exists: (re)start it, and check that this program's group is {g}",
            getegid()
        );
    }
    let exe = std::fs::metadata("/proc/self/exe");
    let installed = exe.as_ref().is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.mode() & 0o2000 != 0
    });
    if !installed {
        return install;
    }
    let nnp = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NoNewPrivs:").map(|v| v.trim() == "1"))
        })
        .unwrap_or(false);
    if nnp {
        "postrelay-postdrop is setgid, but this process runs with no_new_privs set, so the \
         kernel ignored the setgid bit (a sandbox or a service setting such as systemd's \
         NoNewPrivileges=yes); submit from outside it, or over SMTP"
            .into()
    } else {
        "postrelay-postdrop is setgid, but the kernel did not apply it: is it on a file system \
         mounted nosuid? Install it on one that is not (such as /usr/sbin)"
            .into()
    }
}
