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

// ---- the converter ---------------------------------------------------------

/// The conversion done the simple way, on the whole input.
fn reference(input: &[u8], quote: bool) -> Vec<u8> {
    let mut text = Vec::new();
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'\r' && input.get(i + 1) == Some(&b'\n') {
            text.push(b'\n');
            i += 2;
        } else {
            text.push(input[i]);
            i += 1;
        }
    }
    if !quote {
        return text;
    }
    let mut out = Vec::new();
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        if n > 0 {
            out.push(b'\n');
        }
        let gts = line.iter().take_while(|&&b| b == b'>').count();
        if line[gts..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    out
}

/// A reader that returns at most `step` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn convert(input: &[u8], quote: bool, step: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let open = copy_body(&mut Trickle { data: input, step }, &mut out, quote).unwrap();
    (out, open)
}

#[test]
fn converter_examples() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"a\r\nb\r\n", b"a\nb\n"),
        (b"From x\r\n", b">From x\n"),
        (b">From x\r\n", b">>From x\n"),
        (b">>>From x\r\n", b">>>>From x\n"),
        (b"From\r\n", b"From\n"),
        (b"Fromage\r\n", b"Fromage\n"),
        (b">Fro\r\n", b">Fro\n"),
        (b">>\r\n", b">>\n"),
        (b"x From y\r\n", b"x From y\n"),
        (b" From y\r\n", b" From y\n"),
        (b"from y\r\n", b"from y\n"),
        (b"a\r\nFrom b\r\n>From c\r\n", b"a\n>From b\n>>From c\n"),
        (b"bare\rcr\r\n", b"bare\rcr\n"),
        (b"end\r", b"end\r"),
        (b"no newline", b"no newline"),
        (b">", b">"),
        (b"From ", b">From "),
        (b"", b""),
    ];
    for (input, want) in cases {
        for step in [1, 2, 3, 7, 1000] {
            let (got, _) = convert(input, true, step);
            assert_eq!(
                got,
                *want,
                "input {:?} step {step}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

#[test]
fn converter_reports_an_unterminated_last_line() {
    assert!(!convert(b"a\r\n", true, 1).1);
    assert!(convert(b"a\r\nb", true, 1).1);
    assert!(convert(b"a\r\n>", true, 1).1);
    assert!(convert(b"a\r", false, 1).1);
    assert!(!convert(b"", false, 1).1);
}

#[test]
fn converter_maildir_does_not_quote() {
    let (got, _) = convert(b"From x\r\n>From y\r\n", false, 1);
    assert_eq!(got, b"From x\n>From y\n");
}

#[test]
fn converter_long_prefix_in_bounded_memory() {
    let mut input = vec![b'>'; 200_000];
    input.extend_from_slice(b"From x\r\n");
    let (got, _) = convert(&input, true, 4096);
    assert_eq!(got.len(), input.len()); // one '>' more, one CR less
    assert!(got.starts_with(b">>>"));
    assert!(got.ends_with(b">From x\n"));
}

#[test]
fn converter_crlf_split_across_chunks() {
    // CR as the last byte of one chunk, LF the first of the next.
    let mut conv = Converter::new(true);
    let mut out = Vec::new();
    conv.push(b"a\r", &mut out).unwrap();
    conv.push(b"\nFro", &mut out).unwrap();
    conv.push(b"m x\r", &mut out).unwrap();
    conv.push(b"\n", &mut out).unwrap();
    assert!(!conv.finish(&mut out).unwrap());
    assert_eq!(out, b"a\n>From x\n");
}

proptest! {
    #[test]
    fn converter_matches_reference(
        input in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'>'), Just(b'F'), Just(b'r'),
                        Just(b'o'), Just(b'm'), Just(b' '), any::<u8>()],
            0..200),
        step in 1usize..20,
        quote in any::<bool>(),
    ) {
        let (got, _) = convert(&input, quote, step);
        prop_assert_eq!(got, reference(&input, quote));
    }
}

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

// ---- Maildir ---------------------------------------------------------------

#[test]
fn maildir_delivery() {
    let home = TempDir::new().unwrap();
    let body = spool(home.path(), BODY);
    let user = me(home.path());
    let out = deliver_to(&user, &message(&body), &maildir_settings());
    let Outcome::Delivered(reply) = out else {
        panic!("{out:?}")
    };
    assert_eq!(reply.to_string(), "250 2.0.0 delivered to maildir");

    let md = home.path().join("Maildir");
    for sub in ["", "tmp", "new", "cur"] {
        let m = fs::metadata(md.join(sub)).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o700, "{sub}");
        assert_eq!(m.uid(), user.uid.as_raw());
    }
    assert!(files_in(&md.join("tmp")).is_empty());
    assert!(files_in(&md.join("cur")).is_empty());
    let new = files_in(&md.join("new"));
    assert_eq!(new.len(), 1);
    let m = fs::metadata(&new[0]).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o600);
    assert_eq!(m.nlink(), 1);
    let mut want =
        b"Return-Path: <cron@host.example>\nX-Original-To: root\nDelivered-To: root@host.example\n"
            .to_vec();
    want.extend_from_slice(BODY_LF);
    assert_eq!(fs::read(&new[0]).unwrap(), want);

    // The name: time.M<usec>P<pid>Q<n>.<host>
    let name = new[0].file_name().unwrap().to_str().unwrap().to_string();
    let (secs, rest) = name.split_once('.').unwrap();
    assert!(secs.parse::<u64>().is_ok(), "{name}");
    let pid = format!("P{}Q", std::process::id());
    assert!(rest.starts_with('M') && rest.contains(&pid), "{name}");
    assert!(!name.contains('/') && !name.contains(':'), "{name}");

    // A second delivery gets another name.
    assert!(matches!(
        deliver_to(&user, &message(&body), &maildir_settings()),
        Outcome::Delivered(_)
    ));
    assert_eq!(files_in(&md.join("new")).len(), 2);
}

#[test]
fn maildir_in_a_subdirectory() {
    let home = TempDir::new().unwrap();
    let body = spool(home.path(), BODY);
    let settings = LocalSettings {
        maildir: "./Mail/inbox/".into(),
        ..LocalSettings::default()
    };
    let out = deliver_to(&me(home.path()), &message(&body), &settings);
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert_eq!(files_in(&home.path().join("Mail/inbox/new")).len(), 1);
}

#[test]
fn maildir_host_escaping() {
    assert_eq!(maildir::escape_host("a/b:c.d"), "a\\057b\\072c.d");
}

#[test]
fn maildir_path_must_stay_in_home() {
    let home = TempDir::new().unwrap();
    let body = spool(home.path(), BODY);
    for bad in ["/var/mail/x", "../other/Maildir", "Mail/../../x", "", "./"] {
        let settings = LocalSettings {
            maildir: bad.into(),
            ..LocalSettings::default()
        };
        let r = deferred(deliver_to(&me(home.path()), &message(&body), &settings));
        assert!(r.to_string().contains("relative to the home"), "{bad}: {r}");
    }
}

#[test]
fn missing_home_is_deferred_with_its_path() {
    let dir = TempDir::new().unwrap();
    let body = spool(dir.path(), BODY);
    let home = dir.path().join("no-such-home");
    let r = deferred(deliver_to(&me(&home), &message(&body), &maildir_settings()));
    assert_eq!(r.status(), "4.3.0");
    let text = r.to_string();
    assert!(text.contains(&home.display().to_string()), "{text}");
    assert!(text.contains("does not exist"), "{text}");
    assert!(!home.exists());
}

#[test]
fn maildir_symlink_to_own_directory_is_followed() {
    let home = TempDir::new().unwrap();
    let elsewhere = TempDir::new().unwrap();
    symlink(elsewhere.path(), home.path().join("Maildir")).unwrap();
    let body = spool(home.path(), BODY);
    let out = deliver_to(&me(home.path()), &message(&body), &maildir_settings());
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert_eq!(files_in(&elsewhere.path().join("new")).len(), 1);
}

const NOBODY: u32 = 65534;

#[test]
fn maildir_symlink_to_someone_elses_directory_is_refused() {
    if !crate::test_root::require_root("making a directory of another user") {
        return;
    }
    let home = TempDir::new().unwrap();
    let victim = TempDir::new().unwrap();
    std::os::unix::fs::chown(victim.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir(victim.path().join(sub)).unwrap();
        std::os::unix::fs::chown(victim.path().join(sub), Some(NOBODY), Some(NOBODY)).unwrap();
    }
    symlink(victim.path(), home.path().join("Maildir")).unwrap();
    let body = spool(home.path(), BODY);
    let r = deferred(deliver_to(
        &me(home.path()),
        &message(&body),
        &maildir_settings(),
    ));
    let text = r.to_string();
    assert!(text.contains("refusing to deliver into"), "{text}");
    assert!(text.contains(&format!("uid {NOBODY}")), "{text}");
    for sub in ["tmp", "new", "cur"] {
        assert!(files_in(&victim.path().join(sub)).is_empty());
    }
    // The same for a subdirectory.
    fs::remove_file(home.path().join("Maildir")).unwrap();
    fs::create_dir(home.path().join("Maildir")).unwrap();
    symlink(victim.path().join("new"), home.path().join("Maildir/new")).unwrap();
    let r = deferred(deliver_to(
        &me(home.path()),
        &message(&body),
        &maildir_settings(),
    ));
    assert!(r.to_string().contains("refusing to deliver into"), "{r}");
    assert!(files_in(&home.path().join("Maildir/tmp")).is_empty());
}

#[test]
fn maildir_not_created_in_a_home_the_user_does_not_own() {
    if !crate::test_root::require_root("chown") {
        return;
    }
    let home = TempDir::new().unwrap();
    std::os::unix::fs::chown(home.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let body = spool(&std::env::temp_dir(), b"x\r\n");
    let r = deferred(deliver_to(
        &me(home.path()),
        &message(&body),
        &maildir_settings(),
    ));
    assert!(r.to_string().contains("will not create"), "{r}");
    assert!(!home.path().join("Maildir").exists());
}

#[test]
fn maildir_unreadable_body_leaves_no_tmp_file() {
    let home = TempDir::new().unwrap();
    let body_dir = TempDir::new().unwrap(); // reading a directory fails
    let r = deferred(deliver_to(
        &me(home.path()),
        &message(body_dir.path()),
        &maildir_settings(),
    ));
    assert!(r.to_string().contains("cannot read queue file"), "{r}");
    assert!(files_in(&home.path().join("Maildir/tmp")).is_empty());
    assert!(files_in(&home.path().join("Maildir/new")).is_empty());
}

// ---- mbox ------------------------------------------------------------------

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
fn strip_from_line<'a>(bytes: &'a [u8], sender: &str) -> &'a [u8] {
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
