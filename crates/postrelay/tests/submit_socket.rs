//! The submit socket against real processes: the `sendmail` symlink run
//! as root and as `nobody` in the `postdrop` group (setpriv), a running
//! daemon, and a raw client that breaks the protocol the ways a hostile
//! local user could. What reaches the queue, who it says sent it, the
//! exact replies, and the fall back to maildrop/ when the socket is busy.
//!
//! Needs root (to install postdrop setgid and to switch users): skipped
//! with a message otherwise, a failure under `CI=true`.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use serde_json::Value;
use support::daemon::{Daemon, Options};
use support::install::{Install, run};
use support::peers;

/// A daemon whose configuration `nobody` may read; mail stays queued.
fn daemon(intake: &str) -> Daemon {
    let d = Daemon::start_with(Options {
        intake: format!("local_domains = [\"localhost\"]\n{intake}"),
        ..Options::default()
    });
    std::fs::set_permissions(d.dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&d.config, PermissionsExt::from_mode(0o644)).unwrap();
    d
}

fn socket(d: &Daemon) -> PathBuf {
    d.spool().join("submit.sock")
}

const MESSAGE: &[u8] = b"From: app@example.org\nTo: rcpt@relay.test\nSubject: fast\n\nhello\n";

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The submission line for one recipient.
fn first_line() -> Vec<u8> {
    b"{\"version\":1,\"sender\":\"app@example.org\",\"recipients\":[\"rcpt@relay.test\"],\
      \"body\":\"7bit\",\"notify\":null,\"size_limit\":1000000}\n"
        .to_vec()
}

/// Sends `bytes` (then closes our side when `close`) and returns the
/// daemon's reply line.
fn exchange(d: &Daemon, bytes: &[u8], close: bool) -> String {
    let mut s = UnixStream::connect(socket(d)).unwrap();
    // Bounded: a daemon that never answers fails the test instead of
    // hanging it.
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    // The daemon may answer before it has read everything (too big):
    // write from another thread and read here.
    let mut w = s.try_clone().unwrap();
    let bytes = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&bytes);
        if close {
            let _ = w.shutdown(std::net::Shutdown::Write);
        }
    });
    // A daemon that closes with our bytes unread makes the read end in
    // ECONNRESET after its reply: keep what came.
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    writer.join().unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn root_sendmail_goes_straight_to_the_daemon() {
    let Some(inst) = Install::new() else { return };
    let d = daemon("");
    let md = std::fs::metadata(socket(&d)).unwrap();
    let postdrop = nix::unistd::Group::from_name("postdrop").unwrap().unwrap();
    assert_eq!(md.mode() & 0o777, 0o660, "socket mode");
    assert_eq!(md.gid(), postdrop.gid.as_raw(), "socket group");

    let err = ok(&inst.sendmail_run(&d, &["-t", "-i", "-v"], MESSAGE));
    let q = d.wait_queue_len(1);
    let id = q[0]["id"].as_str().unwrap();
    assert!(
        err.contains(&format!(
            "queued by the daemon: 250 2.0.0 Ok: queued as {id}"
        )),
        "{err}"
    );
    assert_eq!(q[0]["origin"]["uid"], 0);
    assert_eq!(q[0]["origin"]["user"], "root");
    let body = String::from_utf8(d.body(id)).unwrap();
    assert!(body.contains("(postrelay, from userid 0)"), "{body}");
    assert!(body.contains("Subject: fast\r\n"), "{body}");
    assert!(
        d.stderr()
            .contains("submit socket: queued a local submission")
    );
    let dropped = std::fs::read_dir(d.spool().join("maildrop"))
        .unwrap()
        .count();
    assert_eq!(dropped, 0, "nothing went through maildrop/");
}

/// A member of `postdrop` uses the socket too, and the queue records the
/// uid the kernel gave, whatever the client claims; a user outside the
/// group is refused by the file system and goes through maildrop/.
#[test]
fn the_kernel_says_who_submits() {
    let Some(inst) = Install::new() else { return };
    if !peers::require("setpriv") {
        return;
    }
    let d = daemon("");
    let mut c = inst.command(&d, std::path::Path::new("setpriv"));
    c.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--groups=postdrop",
        "--",
    ])
    .arg(inst.sendmail())
    .args(["-t", "-i"]);
    ok(&run(&mut c, MESSAGE));
    let q = d.wait_queue_len(1);
    assert_eq!(q[0]["origin"]["uid"], 65534);
    assert_eq!(q[0]["origin"]["user"], "nobody");
    assert!(d.stderr().contains("submit socket: queued"));

    // The first line has no uid to forge: an extra field is refused.
    let forged = String::from_utf8(first_line())
        .unwrap()
        .replace("{", "{\"uid\":0,");
    let reply = exchange(&d, forged.as_bytes(), true);
    assert!(
        reply.starts_with("501 5.5.4 malformed submission") && reply.contains("uid"),
        "{reply}"
    );

    // Outside the group: no access to the socket, maildrop/ instead.
    ok(&inst.as_nobody(&d, &inst.sendmail(), &["-t", "-i"], MESSAGE));
    d.wait_queue_len(2);
    // Pickup logs it just after the commit that made it visible.
    d.wait_stderr("maildrop: queued a local submission");
}

/// What a hostile or broken client gets: a reply that says what is
/// wrong, and nothing queued.
#[test]
fn broken_submissions_get_precise_replies() {
    let Some(_inst) = Install::new() else { return };
    let d = daemon("message_size_limit = \"1 MiB\"\ndata_timeout = \"1s\"");
    let msg = |body: &[u8]| [first_line().as_slice(), body].concat();
    let big = {
        let mut b = b"Subject: big\r\n\r\n".to_vec();
        while b.len() < 3 << 20 {
            b.extend_from_slice(&[b'x'; 998]);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b".\r\n");
        b
    };
    let cases: Vec<(Vec<u8>, bool, &str)> = vec![
        (
            b"not json\n".to_vec(),
            true,
            "501 5.5.4 malformed submission",
        ),
        (
            vec![b'{'; 2 << 20],
            true,
            "501 5.5.4 malformed submission: the first line is longer than",
        ),
        (
            msg(b"Subject: cut\r\n\r\nno end"),
            true,
            "554 5.6.0 the message ended without its end-of-data line",
        ),
        (
            msg(b"Subject: two\r\n\r\nx\r\n.\r\nMAIL FROM:<a@b>\r\n"),
            true,
            "554 5.6.0 data after the end-of-data line",
        ),
        (
            msg(b"Subject: lf\r\n\r\nbare\nlf\r\n.\r\n"),
            true,
            "550 5.5.2 Message refused: bare <LF>",
        ),
        (
            msg(&big),
            false,
            "552 5.3.4 Message size exceeds fixed limit of 1048576",
        ),
        // Silent after the first line: the data timeout ends it.
        (first_line(), false, "421 4.4.2 no data for 1 s"),
    ];
    for (bytes, close, expected) in cases {
        let reply = exchange(&d, &bytes, close);
        assert!(
            reply.starts_with(expected),
            "expected {expected:?}, got {reply:?}"
        );
    }
    assert_eq!(d.queue().len(), 0, "nothing was queued");
}

/// With every slot taken by clients that send nothing, the next one is
/// told 421 at once, and sendmail still succeeds through maildrop/.
#[test]
fn a_busy_socket_sends_sendmail_to_maildrop() {
    let Some(inst) = Install::new() else { return };
    let d = daemon("");
    let held: Vec<UnixStream> = (0..64)
        .map(|_| UnixStream::connect(socket(&d)).unwrap())
        .collect();
    let reply = exchange(&d, b"", false);
    assert!(
        reply.starts_with("421 4.7.0 64 local submissions at once already"),
        "{reply}"
    );
    ok(&inst.sendmail_run(&d, &["-t", "-i"], MESSAGE));
    let q: Vec<Value> = d.wait_queue_len(1);
    assert_eq!(q[0]["origin"]["uid"], 0);
    // Pickup logs it just after the commit that made it visible.
    d.wait_stderr("maildrop: queued a local submission");
    drop(held);
}
