//! Local delivery, by subject: [`converter`], [`in_maildir`], [`in_mbox`],
//! [`killed`] (an mbox delivery cut short by a kill); here the helpers
//! they share, headers and user lookup.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::unistd::{getegid, geteuid};

use proptest::prelude::*;
use tempfile::TempDir;

use super::copy::{Converter, copy_body};
use super::*;

// ---- helpers ---------------------------------------------------------------

/// A record for the user running the tests, with a temporary home.
fn me(home: &Path) -> LocalUser {
    LocalUser {
        name: "tester".to_string(),
        uid: geteuid(),
        gid: getegid(),
        home: home.to_path_buf(),
    }
}

/// Writes a spool body (CRLF) and returns its path.
fn spool(dir: &Path, body: &[u8]) -> PathBuf {
    let path = dir.join(format!("body-{}", body.len()));
    fs::write(&path, body).unwrap();
    path
}

fn message<'a>(body: &'a Path) -> LocalMessage<'a> {
    LocalMessage {
        sender: "cron@host.example",
        recipient: "root@host.example",
        original_recipient: Some("root"),
        body,
    }
}

fn maildir_settings() -> LocalSettings {
    LocalSettings::default()
}

fn mbox_settings(dir: &Path) -> LocalSettings {
    LocalSettings {
        kind: MailboxKind::Mbox,
        mbox_dir: dir.to_path_buf(),
        ..LocalSettings::default()
    }
}

/// `mbox::deliver` with the body opened from its file.
fn mbox_deliver(
    user: &LocalUser,
    msg: &LocalMessage<'_>,
    dir: &Path,
    wait: Duration,
) -> Result<PathBuf, Reason> {
    let mut body = std::fs::File::open(msg.body).unwrap();
    mbox::deliver(user, msg, &mut body, dir, wait)
}

fn deferred(outcome: Outcome) -> Reason {
    match outcome {
        Outcome::Deferred(r) => r,
        other => panic!("expected Deferred, got {other:?}"),
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

const BODY: &[u8] = b"Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Subject: test\r\n\
\r\n\
From the start\r\n\
>From quoted\r\n\
.\r\n\
caf\xc3\xa9 8-bit\r\n";

const BODY_LF: &[u8] = b"Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\n\
Subject: test\n\
\n\
From the start\n\
>From quoted\n\
.\n\
caf\xc3\xa9 8-bit\n";

/// The uid of `nobody`, owner of what a delivery must refuse.
const NOBODY: u32 = 65534;

// ---- headers ---------------------------------------------------------------

#[test]
fn headers_in_postfix_order_and_sanitized() {
    let body = Path::new("/nonexistent");
    let mut msg = message(body);
    assert_eq!(
        String::from_utf8(delivery_headers(&msg)).unwrap(),
        "Return-Path: <cron@host.example>\nX-Original-To: root\nDelivered-To: root@host.example\n"
    );
    msg.original_recipient = Some("root@host.example");
    msg.sender = "";
    assert_eq!(
        String::from_utf8(delivery_headers(&msg)).unwrap(),
        "Return-Path: <>\nDelivered-To: root@host.example\n"
    );
    msg.original_recipient = None;
    msg.sender = "a@b\r\nX-Evil: 1";
    msg.recipient = "r@h\nBcc: x\t";
    assert_eq!(
        String::from_utf8(delivery_headers(&msg)).unwrap(),
        "Return-Path: <a@b??X-Evil: 1>\nDelivered-To: r@h?Bcc: x\t\n"
    );
}

#[test]
fn full_disk_and_quota_are_mailbox_full() {
    let p = Path::new("/m");
    for errno in [nix::libc::ENOSPC, nix::libc::EDQUOT] {
        let r = io_reason("write", p, &io::Error::from_raw_os_error(errno));
        assert!(matches!(r, Reason::MailboxFull(_)), "{r:?}");
        assert_eq!(r.status(), "4.2.2");
        assert!(!r.is_permanent());
    }
    let r = io_reason("write", p, &io::Error::from_raw_os_error(nix::libc::EIO));
    assert_eq!(r.status(), "4.3.0");
}

// ---- user lookup -----------------------------------------------------------

#[test]
fn unknown_user_bounces_with_5_1_1() {
    let dir = TempDir::new().unwrap();
    let body = spool(dir.path(), BODY);
    let out = deliver(
        "prnosuchuser-x9q",
        &message(&body),
        &LocalSettings::default(),
    );
    let Outcome::Failed(reason) = out else {
        panic!("expected Failed, got {out:?}");
    };
    assert_eq!(reason.status(), "5.1.1");
    assert_eq!(
        reason.to_string(),
        "no local user \"prnosuchuser-x9q\"; add an alias or create the user"
    );
}

#[test]
fn delivery_runs_as_the_recipient_only() {
    // Root included: mailboxes are written by the recipient's own process
    // (the helper's child), never by a privileged one on their behalf.
    let home = TempDir::new().unwrap();
    let mut user = me(home.path());
    user.uid = nix::unistd::Uid::from_raw(user.uid.as_raw() + 1);
    let body = spool(home.path(), BODY);
    for settings in [maildir_settings(), mbox_settings(home.path())] {
        let r = deferred(deliver_to(&user, &message(&body), &settings));
        assert!(r.to_string().contains("must run as the recipient"), "{r}");
    }
    assert_eq!(
        files_in(home.path()).len(),
        1,
        "nothing but the body was made"
    );
}

mod converter;
mod in_maildir;
mod in_mbox;
mod killed;
