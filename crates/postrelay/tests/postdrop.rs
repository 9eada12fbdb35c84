//! The privilege claims docs/security.md makes for `postrelay-postdrop`,
//! the one setgid program, checked on the installed binary run as
//! `nobody`: it refuses a directory that is not the maildrop (wrong group,
//! or open to others) without creating anything there, and it has given
//! up the `postdrop` group (real, effective, saved) by the time it reads
//! its input.
//!
//! Submitting through it end to end (sendmail, pickup) is in `sendmail.rs`.

mod support;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::install::Install;
use support::peers;

/// The `postdrop` group's id (Install::new creates the group).
fn postdrop_gid() -> u32 {
    nix::unistd::Group::from_name("postdrop")
        .unwrap()
        .unwrap()
        .gid
        .as_raw()
}

/// A spool directory others may enter, with `maildrop/` of `group` and
/// `mode`.
fn spool(group: u32, mode: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let md = dir.path().join("maildrop");
    std::fs::create_dir(&md).unwrap();
    nix::unistd::chown(&md, Some(0.into()), Some(group.into())).unwrap();
    std::fs::set_permissions(&md, PermissionsExt::from_mode(mode)).unwrap();
    dir
}

/// Starts the installed postdrop as nobody on `spool`, stdin piped.
fn postdrop_as_nobody(inst: &Install, spool: &Path) -> Child {
    Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(inst.postdrop())
        .arg(spool)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn ready() -> Option<Install> {
    let inst = Install::new()?;
    peers::require("setpriv").then_some(inst)
}

#[test]
fn a_directory_that_is_not_the_maildrop_is_refused() {
    let Some(inst) = ready() else { return };
    let gid = postdrop_gid();
    // The real thing first, so that the refusals below are the checks'
    // doing and not a broken setup: nobody creates a file there.
    let good = spool(gid, 0o1730);
    let child = postdrop_as_nobody(&inst, good.path());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(65),
        "empty input is malformed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Vec<_> = std::fs::read_dir(good.path().join("maildrop"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .collect();
    assert_eq!(made.len(), 1, "postdrop could not create its file");
    assert_eq!(made[0].uid(), 65534, "the file is nobody's");

    for (what, group, mode) in [
        ("a directory of another group", 0, 0o1730),
        ("a maildrop open to others", gid, 0o1733),
    ] {
        let bad = spool(group, mode);
        let child = postdrop_as_nobody(&inst, bad.path());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(77), "{what}: {err}");
        assert!(
            err.contains(
                "is not a maildrop directory (expected group postdrop, no access for others)"
            ),
            "{what}: {err}"
        );
        let left = std::fs::read_dir(bad.path().join("maildrop"))
            .unwrap()
            .count();
        assert_eq!(left, 0, "{what}: postdrop created a file there");
    }
}

/// The `Gid:` line of /proc/PID/status: real, effective, saved, fs.
fn gids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Gid:"))
        .unwrap()
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect()
}

/// Whether the process is blocked in read(2) on its stdin: the syscall
/// number and first argument in /proc/PID/syscall.
fn reading_stdin(pid: u32) -> bool {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let mut words = s.split_whitespace();
    words.next() == Some(&nix::libc::SYS_read.to_string()) && words.next() == Some("0x0")
}

#[test]
fn the_group_is_dropped_before_input_is_read() {
    let Some(inst) = ready() else { return };
    let good = spool(postdrop_gid(), 0o1730);
    let mut child = postdrop_as_nobody(&inst, good.path());
    let pid = child.id();
    // The positive event: postdrop sits in read(2) on stdin, which we hold
    // open and silent. (It had the group when it started: it could create
    // its file in maildrop/, which nobody cannot.)
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reading_stdin(pid) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "postdrop exited before reading its input: {:?}",
            child.wait_with_output().unwrap()
        );
        assert!(Instant::now() < deadline, "postdrop never read its stdin");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_dir(good.path().join("maildrop"))
            .unwrap()
            .count(),
        1,
        "its file is created before it reads"
    );
    assert_eq!(
        gids(pid),
        [65534; 4],
        "real, effective, saved and fs gid while reading input (postdrop is {})",
        postdrop_gid()
    );
    // It is reading: garbage is refused as such.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"not a submission\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{err}");
    assert!(err.contains("malformed submission"), "{err}");
}
