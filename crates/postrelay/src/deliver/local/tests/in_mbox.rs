//! Delivery into an mbox: format, refusals, locking, truncation after a
//! failed write.

use super::converter::reference;
use super::*;

fn fixed_time() -> jiff::ZonedDateTime {
    jiff::Timestamp::from_second(1_699_056_000) // 2023-11-04 00:00:00 UTC, a Saturday
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
}

#[test]
fn from_line_format() {
    let t = fixed_time();
    assert_eq!(
        mbox::from_line("a@b.example", &t),
        b"From a@b.example Sat Nov  4 00:00:00 2023\n"
    );
    assert_eq!(
        mbox::from_line("", &t),
        b"From MAILER-DAEMON Sat Nov  4 00:00:00 2023\n"
    );
    assert_eq!(
        mbox::from_line("\"a b\"@c", &t),
        b"From \"a_b\"@c Sat Nov  4 00:00:00 2023\n"
    );
}

/// Checks the `From ` line loosely (the date is now) and returns the rest.
pub(super) fn strip_from_line<'a>(bytes: &'a [u8], sender: &str) -> &'a [u8] {
    let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
    let line = std::str::from_utf8(&bytes[..nl]).unwrap();
    let prefix = format!("From {sender} ");
    assert!(line.starts_with(&prefix), "{line}");
    assert_eq!(line.len(), prefix.len() + 24, "asctime date: {line}");
    &bytes[nl + 1..]
}

#[test]
fn mbox_delivery() {
    let dir = TempDir::new().unwrap();
    let body = spool(dir.path(), BODY);
    let user = me(dir.path());
    let settings = mbox_settings(dir.path());
    let out = deliver_to(&user, &message(&body), &settings);
    let Outcome::Delivered(reply) = out else {
        panic!("{out:?}")
    };
    assert_eq!(reply.to_string(), "250 2.0.0 delivered to mailbox");
    let path = dir.path().join("tester");
    let m = fs::metadata(&path).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o600);
    assert_eq!(m.uid(), user.uid.as_raw());
    assert!(!dir.path().join("tester.lock").exists());

    let mut msg2 = message(&body);
    msg2.sender = "";
    assert!(matches!(
        deliver_to(&user, &msg2, &settings),
        Outcome::Delivered(_)
    ));

    let all = fs::read(&path).unwrap();
    let rest = strip_from_line(&all, "cron@host.example");
    let one: &[u8] =
        b"Return-Path: <cron@host.example>\nX-Original-To: root\nDelivered-To: root@host.example\n\
Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\nSubject: test\n\n\
>From the start\n>>From quoted\n.\ncaf\xc3\xa9 8-bit\n\n";
    assert!(rest.starts_with(one));
    let rest = strip_from_line(&rest[one.len()..], "MAILER-DAEMON");
    assert!(rest.starts_with(b"Return-Path: <>\n"));
    assert!(rest.ends_with(b"8-bit\n\n"));
}

#[test]
fn mbox_after_a_damaged_last_message_starts_a_new_line() {
    let dir = TempDir::new().unwrap();
    let body = spool(dir.path(), b"x\r\n");
    fs::write(
        dir.path().join("tester"),
        b"From a Sat Nov  4 00:00:00 2023\n\nno newline",
    )
    .unwrap();
    let out = deliver_to(&me(dir.path()), &message(&body), &mbox_settings(dir.path()));
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    let all = fs::read(dir.path().join("tester")).unwrap();
    assert!(
        all.starts_with(b"From a Sat Nov  4 00:00:00 2023\n\nno newline\nFrom cron@host.example ")
    );
}

#[test]
fn mbox_body_without_final_newline_still_ends_with_a_blank_line() {
    let dir = TempDir::new().unwrap();
    let body = spool(dir.path(), b"Subject: x\r\n\r\nlast");
    let out = deliver_to(&me(dir.path()), &message(&body), &mbox_settings(dir.path()));
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert!(
        fs::read(dir.path().join("tester"))
            .unwrap()
            .ends_with(b"\nlast\n\n")
    );
}

#[test]
fn mbox_symlink_and_hard_link_are_refused() {
    let dir = TempDir::new().unwrap();
    let body = spool(dir.path(), BODY);
    let target = dir.path().join("target");
    fs::write(&target, b"precious\n").unwrap();
    let mbox = dir.path().join("tester");

    symlink(&target, &mbox).unwrap();
    let r = deferred(deliver_to(
        &me(dir.path()),
        &message(&body),
        &mbox_settings(dir.path()),
    ));
    assert!(r.to_string().contains("symbolic link"), "{r}");

    fs::remove_file(&mbox).unwrap();
    fs::hard_link(&target, &mbox).unwrap();
    let r = deferred(deliver_to(
        &me(dir.path()),
        &message(&body),
        &mbox_settings(dir.path()),
    ));
    assert!(r.to_string().contains("2 hard links"), "{r}");
    assert_eq!(fs::read(&target).unwrap(), b"precious\n");
    assert!(!dir.path().join("tester.lock").exists());

    fs::remove_file(&mbox).unwrap();
    fs::create_dir(&mbox).unwrap();
    let r = deferred(deliver_to(
        &me(dir.path()),
        &message(&body),
        &mbox_settings(dir.path()),
    ));
    assert!(r.to_string().contains("mailbox"), "{r}");
}

#[test]
fn mbox_of_someone_else_is_refused() {
    if !crate::test_root::require_root("chown") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let body = spool(dir.path(), BODY);
    let mbox = dir.path().join("tester");
    fs::write(&mbox, b"").unwrap();
    std::os::unix::fs::chown(&mbox, Some(NOBODY), None).unwrap();
    let r = deferred(deliver_to(
        &me(dir.path()),
        &message(&body),
        &mbox_settings(dir.path()),
    ));
    assert!(
        r.to_string().contains(&format!("belongs to uid {NOBODY}")),
        "{r}"
    );
    assert_eq!(fs::metadata(&mbox).unwrap().len(), 0);
}

#[test]
fn missing_mbox_dir_is_deferred_with_its_path() {
    let dir = TempDir::new().unwrap();
    let body = spool(dir.path(), BODY);
    let spooldir = dir.path().join("no-spool");
    let r = deferred(deliver_to(
        &me(dir.path()),
        &message(&body),
        &mbox_settings(&spooldir),
    ));
    assert!(
        r.to_string().contains(&spooldir.display().to_string()),
        "{r}"
    );
}

#[test]
fn mbox_dotlock_held_then_stale() {
    let dir = TempDir::new().unwrap();
    let body = spool(dir.path(), BODY);
    let lock = dir.path().join("tester.lock");
    fs::write(&lock, b"").unwrap();
    let user = me(dir.path());
    let wait = Duration::from_millis(300);
    let r = mbox_deliver(&user, &message(&body), dir.path(), wait).unwrap_err();
    assert!(r.to_string().contains("is locked"), "{r}");
    assert!(lock.exists(), "someone else's lock is left alone");
    assert!(!dir.path().join("tester").exists());

    // Ten minutes old: a crashed program's, removed.
    let old = SystemTime::now() - Duration::from_secs(600);
    fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    mbox_deliver(&user, &message(&body), dir.path(), wait).unwrap();
    assert!(!lock.exists());
}

#[test]
fn mbox_fcntl_lock_held_by_a_reader() {
    use nix::fcntl::{FcntlArg, fcntl};
    let dir = TempDir::new().unwrap();
    let body = spool(dir.path(), BODY);
    let user = me(dir.path());
    let path = dir.path().join("tester");
    fs::write(&path, b"").unwrap();
    // A classic (process-associated) lock, as an MUA takes it.
    let held = fs::File::options().write(true).open(&path).unwrap();
    let lock = nix::libc::flock {
        l_type: nix::libc::F_WRLCK as nix::libc::c_short,
        l_whence: nix::libc::SEEK_SET as nix::libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    fcntl(&held, FcntlArg::F_SETLK(&lock)).unwrap();
    let r = mbox_deliver(
        &user,
        &message(&body),
        dir.path(),
        Duration::from_millis(300),
    )
    .unwrap_err();
    assert!(r.to_string().contains("locked by another program"), "{r}");
    assert!(!dir.path().join("tester.lock").exists(), "dotlock released");
    drop(held);
    mbox_deliver(
        &user,
        &message(&body),
        dir.path(),
        Duration::from_millis(300),
    )
    .unwrap();
}

#[test]
fn mbox_failed_write_is_truncated_back() {
    let dir = TempDir::new().unwrap();
    let body = spool(dir.path(), BODY);
    let user = me(dir.path());
    let settings = mbox_settings(dir.path());
    assert!(matches!(
        deliver_to(&user, &message(&body), &settings),
        Outcome::Delivered(_)
    ));
    let before = fs::read(dir.path().join("tester")).unwrap();
    // A directory opens but cannot be read: the From line and headers are
    // already written when the copy fails.
    let bad = TempDir::new().unwrap();
    let r = deferred(deliver_to(&user, &message(bad.path()), &settings));
    assert!(r.to_string().contains("cannot read queue file"), "{r}");
    assert_eq!(fs::read(dir.path().join("tester")).unwrap(), before);
    assert!(!dir.path().join("tester.lock").exists());
}

#[test]
fn mbox_concurrent_deliveries_do_not_interleave() {
    let dir = TempDir::new().unwrap();
    let big: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("line {i} From x\r\nFrom {i}\r\n").into_bytes())
        .collect();
    let body = spool(dir.path(), &big);
    let user = me(dir.path());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let out = deliver_to(&user, &message(&body), &mbox_settings(dir.path()));
                assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
            });
        }
    });
    let all = fs::read(dir.path().join("tester")).unwrap();
    let from_lines = all
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"From "))
        .count();
    assert_eq!(from_lines, 4);
    let one = reference(&big, true);
    assert_eq!(
        all.windows(one.len())
            .filter(|w| *w == one.as_slice())
            .count(),
        4
    );
}
