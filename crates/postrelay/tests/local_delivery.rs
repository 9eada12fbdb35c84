//! Local delivery into real users' mailboxes, read back by Python's
//! `mailbox` module (the reader of record for both formats here), through
//! the daemon's local delivery helper (`postrelay --privsep-local-helper`), which
//! writes each mailbox as its user.
//!
//! Needs root (to create users with `useradd` and to deliver to them);
//! skipped with a message otherwise, and a failure under `CI=true`.
//!
//! About mbox quoting: postrelay writes mboxrd (`^>*From ` gets one more
//! `>`). Python's `mailbox.mbox` splits messages on `^From ` lines and does
//! no unquoting at all, so what it returns is the quoted text; the tests
//! check that, and that removing one `>` from `^>+From ` lines gives the
//! original exactly (what an mboxrd reader does).

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use postrelay::deliver::Outcome;
use postrelay::deliver::local::{LocalSettings, MailboxKind};
use support::helper::Helper;
use tempfile::TempDir;

// ---- environment -----------------------------------------------------------

/// Whether the test can run: peers present and running as root.
fn ready() -> bool {
    if !support::peers::require("python3") || !support::peers::require("useradd") {
        return false;
    }
    support::peers::require_root("local delivery (useradd, delivery to other users)")
}

/// A system user created for one test; removed (with its home and mail
/// spool file) on drop.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl TestUser {
    fn create(home: Option<&Path>) -> TestUser {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "prtest{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut cmd = Command::new("useradd");
        cmd.args(["--shell", "/usr/sbin/nologin", "--user-group"]);
        match home {
            None => cmd.arg("--create-home"),
            Some(h) => cmd.arg("--no-create-home").arg("--home-dir").arg(h),
        };
        let out = cmd.arg(&name).output().expect("run useradd");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let u = nix::unistd::User::from_name(&name)
            .unwrap()
            .expect("the new user is visible");
        TestUser {
            name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let out = Command::new("userdel").arg("-r").arg(&self.name).output();
        match out {
            // 12: the home or mail spool could not be removed (none made).
            Ok(o) if o.status.success() || o.status.code() == Some(12) => {}
            Ok(o) => eprintln!(
                "userdel -r {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("userdel -r {}: {e}", self.name),
        }
    }
}

/// A mail spool directory like Debian's `/var/mail`: root:mail 2775.
fn spool_dir() -> TempDir {
    let dir = TempDir::new().unwrap();
    let mail = nix::unistd::Group::from_name("mail").ok().flatten();
    std::os::unix::fs::chown(dir.path(), Some(0), mail.map(|g| g.gid.as_raw())).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o2775)).unwrap();
    dir
}

// ---- messages --------------------------------------------------------------

/// Test bodies as the spool holds them (CRLF), each with an `X-Test-Seq:`.
fn bodies() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    v.push(
        b"Received: from localhost by host; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
X-Test-Seq: 0\r\nSubject: cron report\r\n\r\n\
From the top: a line starting with From.\r\n\
>From an already quoted line\r\n\
>>From twice\r\n\
.\r\n\
..\r\n\
\r\n\
From \r\n\
caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac, and a raw latin-1 byte: \xe9\r\n\
Fromage is not a From line\r\n\
trailing\r\n"
            .to_vec(),
    );
    v.push(b"X-Test-Seq: 1\r\nSubject: empty body\r\n\r\n".to_vec());
    // Big enough for many 64 KiB reads, with From lines everywhere.
    let mut big = b"X-Test-Seq: 2\r\nSubject: big\r\n\r\n".to_vec();
    for i in 0..60_000 {
        big.extend_from_slice(format!("From line {i}\r\n>From {i}\r\n{i:>40}\r\n").as_bytes());
    }
    v.push(big);
    v
}

fn crlf_to_lf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// One level of mboxrd quoting removed, as an mboxrd reader does.
fn unquote(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    for (n, line) in b.split(|&c| c == b'\n').enumerate() {
        if n > 0 {
            out.push(b'\n');
        }
        let gts = line.iter().take_while(|&&c| c == b'>').count();
        if gts > 0 && line[gts..].starts_with(b"From ") {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

const SENDER: &str = "cron@host.example";

/// What the file must hold for `body` (without the mbox `From ` line).
fn expected(user: &str, body: &[u8]) -> Vec<u8> {
    let mut want = format!(
        "Return-Path: <{SENDER}>\nX-Original-To: root\nDelivered-To: {user}@host.example\n"
    )
    .into_bytes();
    want.extend_from_slice(&crlf_to_lf(body));
    want
}

fn deliver_all(user: &TestUser, settings: &LocalSettings, bodies: &[Vec<u8>]) {
    let helper = Helper::start(settings);
    let recipient = format!("{}@host.example", user.name);
    for (i, body) in bodies.iter().enumerate() {
        match helper.deliver(&user.name, SENDER, &recipient, body) {
            Outcome::Delivered(_) => {}
            other => panic!("delivery {i} to {}: {other:?}", user.name),
        }
    }
}

// ---- reading back with Python ----------------------------------------------

/// One message as Python's `mailbox` returns it.
#[derive(Debug)]
struct PyMessage {
    seq: String,
    return_path: String,
    delivered_to: String,
    original_to: String,
    /// `get_from()` (mbox only): the `From ` line after `From `.
    from_line: String,
    bytes: Vec<u8>,
}

const READER: &str = r#"
import base64, json, mailbox, sys
kind, path = sys.argv[1], sys.argv[2]
box = mailbox.Maildir(path, factory=None, create=False) if kind == "maildir" else mailbox.mbox(path, create=False)
out = []
for key in box.keys():
    msg = box.get_message(key)
    out.append({
        "seq": msg["X-Test-Seq"] or "",
        "return_path": msg["Return-Path"] or "",
        "delivered_to": msg["Delivered-To"] or "",
        "original_to": msg["X-Original-To"] or "",
        "from_line": msg.get_from() if kind == "mbox" else "",
        "bytes": base64.b64encode(box.get_bytes(key)).decode(),
    })
json.dump(out, sys.stdout)
"#;

fn python_read(kind: &str, path: &Path) -> Vec<PyMessage> {
    let out = Command::new("python3")
        .args(["-c", READER, kind])
        .arg(path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python mailbox: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = |m: &serde_json::Value, k: &str| m[k].as_str().unwrap().to_string();
    let mut msgs: Vec<PyMessage> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| PyMessage {
            seq: s(m, "seq"),
            return_path: s(m, "return_path"),
            delivered_to: s(m, "delivered_to"),
            original_to: s(m, "original_to"),
            from_line: s(m, "from_line"),
            bytes: b64decode(&s(m, "bytes")),
        })
        .collect();
    msgs.sort_by(|a, b| a.seq.cmp(&b.seq));
    msgs
}

fn b64decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 {c}"),
        }
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for chunk in s.as_bytes().chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let mut acc = 0u32;
        for &c in &data {
            acc = (acc << 6) | val(c);
        }
        acc <<= 6 * (4 - data.len() as u32);
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..data.len()]);
    }
    out
}

fn check_headers(m: &PyMessage, user: &TestUser) {
    assert_eq!(m.return_path, format!("<{SENDER}>"));
    assert_eq!(m.delivered_to, format!("{}@host.example", user.name));
    assert_eq!(m.original_to, "root");
}

fn assert_owned(path: &Path, user: &TestUser, gid: u32, mode: u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
        (user.uid, gid, mode),
        "owner, group, mode of {}",
        path.display()
    );
}

// ---- tests -----------------------------------------------------------------

#[test]
fn maildir_round_trip_through_python() {
    if !ready() {
        return;
    }
    let user = TestUser::create(None);
    let bodies = bodies();
    deliver_all(&user, &LocalSettings::default(), &bodies);

    let md = user.home.join("Maildir");
    for sub in ["", "tmp", "new", "cur"] {
        assert_owned(&md.join(sub), &user, user.gid, 0o700);
    }
    let files: Vec<_> = std::fs::read_dir(md.join("new"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), bodies.len());
    for f in &files {
        assert_owned(f, &user, user.gid, 0o600);
    }
    assert_eq!(std::fs::read_dir(md.join("tmp")).unwrap().count(), 0);

    let msgs = python_read("maildir", &md);
    assert_eq!(msgs.len(), bodies.len());
    for (i, (m, body)) in msgs.iter().zip(&bodies).enumerate() {
        assert_eq!(m.seq, i.to_string());
        check_headers(m, &user);
        assert!(
            m.bytes == expected(&user.name, body),
            "message {i} differs after the Maildir round trip"
        );
    }
}

#[test]
fn mbox_round_trip_through_python() {
    if !ready() {
        return;
    }
    let user = TestUser::create(None);
    let spool = spool_dir();
    let settings = LocalSettings {
        kind: MailboxKind::Mbox,
        mbox_dir: spool.path().to_path_buf(),
        ..LocalSettings::default()
    };
    let bodies = bodies();
    deliver_all(&user, &settings, &bodies);

    let path = spool.path().join(&user.name);
    let mail_gid = nix::unistd::Group::from_name("mail")
        .ok()
        .flatten()
        .map_or(user.gid, |g| g.gid.as_raw());
    assert_owned(&path, &user, mail_gid, 0o600);
    assert!(!spool.path().join(format!("{}.lock", user.name)).exists());

    // Python splits on ^From lines: the right count proves the quoting.
    let msgs = python_read("mbox", &path);
    assert_eq!(msgs.len(), bodies.len());
    for (i, (m, body)) in msgs.iter().zip(&bodies).enumerate() {
        assert_eq!(m.seq, i.to_string());
        check_headers(m, &user);
        assert!(
            m.from_line.starts_with(&format!("{SENDER} ")),
            "{}",
            m.from_line
        );
        let want = expected(&user.name, body);
        // Python does not unquote: it returns the mboxrd text as stored.
        if want.windows(6).any(|w| w == b"\nFrom ") {
            assert!(m.bytes != want, "message {i}: From lines were not quoted");
        }
        assert!(
            unquote(&m.bytes) == want,
            "message {i} differs after the mbox round trip (unquoted)"
        );
    }
    // Explicitly, for the first message.
    let text = &msgs[0].bytes;
    for line in [
        &b"\n>From the top"[..],
        b"\n>>From an already quoted",
        b"\n>>>From twice",
        b"\n>From \n",
        b"\nFromage is not",
        b"\n.\n..\n",
    ] {
        assert!(
            text.windows(line.len()).any(|w| w == line),
            "{:?} missing",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn unknown_user_fails_with_5_1_1() {
    if !ready() {
        return;
    }
    let name = format!("prnouser{}", std::process::id());
    let helper = Helper::start(&LocalSettings::default());
    let body = b"Subject: x\r\n\r\nx\r\n";
    match helper.deliver(&name, SENDER, "nobody-here@host.example", body) {
        Outcome::Failed(r) => {
            assert_eq!(r.status(), "5.1.1");
            assert!(
                r.to_string().contains(&format!("no local user \"{name}\"")),
                "{r}"
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn user_without_a_home_is_deferred() {
    if !ready() {
        return;
    }
    let gone = PathBuf::from(format!("/nonexistent-prtest-{}", std::process::id()));
    let user = TestUser::create(Some(&gone));
    let helper = Helper::start(&LocalSettings::default());
    let body = b"Subject: x\r\n\r\nx\r\n";
    match helper.deliver(&user.name, SENDER, "r@host.example", body) {
        Outcome::Deferred(r) => {
            assert_eq!(r.status(), "4.3.0");
            assert!(r.to_string().contains(&gone.display().to_string()), "{r}");
        }
        other => panic!("expected Deferred, got {other:?}"),
    }
    assert!(!gone.exists());
}

/// A held dotlock is waited for (the bounded wait runs out, and the
/// delivery says so), and the mailbox is left alone meanwhile; once the
/// lock is gone the delivery goes through. The wait is proved by its
/// outcome, not by a test sleeping and finding the delivery unfinished.
#[test]
fn mbox_waits_for_a_held_dotlock() {
    if !ready() {
        return;
    }
    let user = TestUser::create(None);
    let spool = spool_dir();
    let lock = spool.path().join(format!("{}.lock", user.name));
    std::fs::write(&lock, b"").unwrap();

    let body = b"X-Test-Seq: 0\r\nSubject: x\r\n\r\nwaited\r\n";
    let settings = LocalSettings {
        kind: MailboxKind::Mbox,
        mbox_dir: spool.path().to_path_buf(),
        ..LocalSettings::default()
    };
    let helper = Helper::start(&settings);
    match helper.deliver(&user.name, SENDER, "r@host.example", body) {
        Outcome::Deferred(r) => {
            let text = r.to_string();
            assert!(
                text.contains(&format!("{} exists (waited 10s)", lock.display())),
                "{text}"
            );
        }
        other => panic!("a held dotlock was not waited for: {other:?}"),
    }
    assert!(lock.exists(), "someone else's dotlock is left alone");
    assert!(!spool.path().join(&user.name).exists());
    std::fs::remove_file(&lock).unwrap();
    let out = helper.deliver(&user.name, SENDER, "r@host.example", body);
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert!(!lock.exists(), "our own dotlock is removed");
    let msgs = python_read("mbox", &spool.path().join(&user.name));
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].bytes.ends_with(b"\nwaited\n"));
}
