//! `postrelay-sendmail`, the small sendmail program, against a real
//! daemon: what it submits itself is queued exactly as `postrelay
//! sendmail` queues it, and everything else (other modes, a broken
//! configuration, a daemon that is down) goes to the full binary, which
//! falls back to postdrop and maildrop/.
//!
//! To tell which program did the work, a "fast only" install puts a copy
//! of `postrelay-sendmail` beside a stand-in `postrelay` that only says
//! it was run and fails: what that install queues, the small program
//! queued by itself.
//!
//! Needs root (postdrop setgid): skipped with a message otherwise, a
//! failure under `CI=true`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use postrelay::cli::sendmail::fast::POSTRELAY_PATH;
use serde_json::Value;
use support::daemon::{Daemon, bin};
use support::install::{Install, SENDMAIL, body, daemon, maildrop, ok, queued, run};

/// What the stand-in full binary prints (and its exit status).
const STAND_IN: &str = "stand-in postrelay run with:";
const STAND_IN_EXIT: i32 = 69;

/// A directory with a copy of `postrelay-sendmail` as `sendmail` and the
/// stand-in `postrelay` beside it.
fn fast_only() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let sendmail = dir.path().join("sendmail");
    support::copy_executable(Path::new(SENDMAIL), &sendmail);
    support::write_executable(
        &dir.path().join("postrelay"),
        &format!("#!/bin/sh\necho \"{STAND_IN} $*\" >&2\nexit {STAND_IN_EXIT}\n"),
    );
    (dir, sendmail)
}

/// `postrelay sendmail ARGS`, the full binary.
fn full(inst: &Install, d: &Daemon, args: &[&str], input: &[u8]) -> Output {
    run(
        inst.command(d, Path::new(bin())).arg("sendmail").args(args),
        input,
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The message the daemon queued last (of `n` now in the queue), without
/// what differs from one submission to the next (queue id, times, the
/// daemon's `Received:`, `Date:` and `Message-ID:`).
fn last_queued(d: &Daemon, n: usize, before: &[Value]) -> (Value, String) {
    let q = queued(d, n);
    let new = q
        .into_iter()
        .find(|e| !before.iter().any(|b| b["id"] == e["id"]))
        .unwrap();
    let text = body(d, &new);
    let (header, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let kept: Vec<&str> = header
        .split("\r\n")
        .filter(|l| {
            !["Received:", "\t", "Date:", "Message-ID:"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    let envelope = serde_json::json!({
        "sender": new["sender"],
        "recipients": new["recipients"],
        "body": new["body"],
        "origin": new["origin"],
    });
    (envelope, format!("{}\r\n\r\n{rest}", kept.join("\r\n")))
}

/// Stderr with the queue id cut off (`-v` names it).
fn without_id(err: &str) -> String {
    err.split("queued as").next().unwrap_or("").to_string()
}

/// The forms cron, PHP, mail(1) and scripts use, and what they queue.
#[test]
fn what_it_submits_is_queued_as_the_full_binary_queues_it() {
    let Some(inst) = Install::new() else { return };
    let d = daemon();
    let (_dir, fast) = fast_only();
    let forms: [(&[&str], &[u8]); 7] = [
        (
            &["-t", "-i"],
            b"To: a@x.example\nSubject: php\n\nbody\n.\nmore\n",
        ),
        (
            &["-ti", "-f", "sender@example.org"],
            b"To: A <a@x.example>\nCc: b@y.example\nBcc: hidden@w.example\n\nx\n",
        ),
        (
            &["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
            "Subject: cron\n\nout \u{e9}\n".as_bytes(),
        ),
        (
            &[
                "-oi",
                "-f",
                "<>",
                "-N",
                "success,delay",
                "--",
                "r@x.example",
            ],
            b"no header line\n",
        ),
        (&["a@x.example"], b"Subject: dots\n\nbefore\n.\nafter\n"),
        (&["-v", "-t"], b"To: v@x.example\n\nv\n"),
        (
            &[
                "-F",
                "Zo\u{eb} \"Q\"",
                "-r",
                "u@Example.org",
                "u2@example.org",
            ],
            b"x\r\n",
        ),
    ];
    let mut n = 0;
    for (args, input) in forms {
        let before = d.queue();
        let by_fast = run(inst.command(&d, &fast).args(args), input);
        assert!(by_fast.status.success(), "{args:?}: {}", stderr(&by_fast));
        let (fast_env, fast_text) = last_queued(&d, n + 1, &before);
        let before = d.queue();
        let by_full = full(&inst, &d, args, input);
        assert!(by_full.status.success(), "{args:?}: {}", stderr(&by_full));
        let (full_env, full_text) = last_queued(&d, n + 2, &before);
        n += 2;
        assert_eq!(fast_env, full_env, "{args:?}");
        assert_eq!(fast_text, full_text, "{args:?}");
        assert_eq!(
            without_id(&stderr(&by_fast)),
            without_id(&stderr(&by_full)),
            "{args:?}"
        );
    }
    assert_eq!(std::fs::read_dir(maildrop(&d)).unwrap().count(), 0);
}

/// Bad input is refused by the small program itself, in the full
/// binary's words and exit status, and nothing is queued.
#[test]
fn it_refuses_bad_input_as_the_full_binary_does() {
    let Some(inst) = Install::new() else { return };
    let d = daemon();
    let (_dir, fast) = fast_only();
    let long = vec![b'x'; 2000];
    let cases: [(&[&str], &[u8], i32); 4] = [
        (&["-t"], b"Subject: none\n\nx\n", 64),
        (&["root"], &long, 65),
        (&["-t"], b"To: <<bad\n\nx\n", 65),
        (&["-f", "a@b.example, c@d.example", "root"], b"x\n", 64),
    ];
    for (args, input, code) in cases {
        let by_fast = run(inst.command(&d, &fast).args(args), input);
        let by_full = full(&inst, &d, args, input);
        assert_eq!(
            by_fast.status.code(),
            Some(code),
            "{args:?}: {}",
            stderr(&by_fast)
        );
        assert_eq!(by_full.status.code(), Some(code), "{args:?}");
        assert_eq!(stderr(&by_fast), stderr(&by_full), "{args:?}");
        assert!(stderr(&by_fast).starts_with("sendmail: "), "{args:?}");
    }
    assert!(d.queue().is_empty(), "{:#?}", d.queue());
}

/// Other modes, usage errors and a configuration it cannot read well go
/// to `postrelay sendmail` with the same arguments, before standard input
/// is read.
#[test]
fn the_full_binary_does_the_rest() {
    let Some(inst) = Install::new() else { return };
    let d = daemon();
    let (dir, fast) = fast_only();
    for args in [
        &["-bp"][..],
        &["-q"],
        &["-q30m"],
        &["-bs"],
        &["-Z", "root"],
        &["-bd"],
    ] {
        let out = run(inst.command(&d, &fast).args(args), b"Subject: x\n\nx\n");
        assert_eq!(out.status.code(), Some(STAND_IN_EXIT), "{args:?}");
        let want = format!("{STAND_IN} sendmail {}\n", args.join(" "));
        assert_eq!(stderr(&out), want, "{args:?}");
    }
    // A setting sendmail needs is wrong: the full binary says where.
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &bad,
        text.replacen("[intake]", "[intake]\nline_length_limit = 10", 1),
    )
    .unwrap();
    let mut c = inst.command(&d, &fast);
    let out = run(
        c.env("POSTRELAY_CONFIG", &bad).args(["-t", "-i"]),
        b"To: a@x.example\n\nx\n",
    );
    assert_eq!(stderr(&out), format!("{STAND_IN} sendmail -t -i\n"));
    let mut c = inst.command(&d, Path::new(bin()));
    let out = run(
        c.env("POSTRELAY_CONFIG", &bad).args(["sendmail", "-t"]),
        b"",
    );
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("line_length_limit"),
        "{}",
        stderr(&out)
    );
    assert!(d.queue().is_empty(), "{:#?}", d.queue());
}

/// With the daemon down, the small program drops the message into
/// maildrop/ through postdrop itself (the stand-in full binary is not
/// run: no second program start); the daemon queues it when it starts
/// again.
#[test]
fn with_the_daemon_down_it_goes_through_maildrop() {
    let Some(inst) = Install::new() else { return };
    let mut d = daemon();
    d.stop();
    let (_dir, fast) = fast_only();
    let msg = b"To: later@x.example\nSubject: offline\n\nqueued later\n";
    let out = run(inst.command(&d, &fast).args(["-t", "-i"]), msg);
    ok(&out);
    assert!(!stderr(&out).contains(STAND_IN), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(maildrop(&d)).unwrap().count(), 1);
    d.restart();
    let q = queued(&d, 1);
    assert_eq!(q[0]["recipients"][0]["address"], "later@x.example");
    assert!(body(&d, &q[0]).contains("queued later"));
    assert_eq!(q[0]["origin"]["uid"], 0);
}

/// Installed as the package installs it (`/usr/sbin/sendmail` a link to
/// `postrelay-sendmail`, `postrelay` beside it), the link works too.
#[test]
fn through_a_link_it_finds_the_full_binary() {
    let Some(inst) = Install::new() else { return };
    let d = daemon();
    let out = inst.sendmail_run(&d, &["-bp"], b"");
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("empty"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The full binary it runs is the one beside the program the link points
/// to (here the stand-in, which says so), not one beside the link, and
/// without one there it is `/usr/sbin/postrelay`, named when it is missing.
#[test]
fn the_full_binary_is_found_beside_the_link_target() {
    let Some(inst) = Install::new() else { return };
    let d = daemon();
    let (dir, fast) = fast_only();
    let sbin = dir.path().join("sbin");
    std::fs::create_dir(&sbin).unwrap();
    let link = sbin.join("sendmail");
    std::os::unix::fs::symlink(&fast, &link).unwrap();
    let out = run(inst.command(&d, &link).arg("-bp"), b"");
    assert_eq!(stderr(&out), format!("{STAND_IN} sendmail -bp\n"));
    assert_eq!(out.status.code(), Some(STAND_IN_EXIT));

    let alone = tempfile::tempdir().unwrap();
    let sendmail = alone.path().join("postrelay-sendmail");
    support::copy_executable(Path::new(SENDMAIL), &sendmail);
    std::os::unix::fs::symlink(&sendmail, alone.path().join("sendmail")).unwrap();
    if Path::new(POSTRELAY_PATH).exists() {
        eprintln!("{POSTRELAY_PATH} exists: not running the program that would run it");
        return;
    }
    let out = run(
        inst.command(&d, &alone.path().join("sendmail")).arg("-bp"),
        b"",
    );
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let want = format!("sendmail: cannot run {POSTRELAY_PATH} (needed for that mode): ");
    assert!(stderr(&out).starts_with(&want), "{}", stderr(&out));
    assert!(
        stderr(&out).ends_with("; nothing was sent\n"),
        "{}",
        stderr(&out)
    );
}

/// The full binary called `sendmail` (a link named so to `postrelay`, as
/// an install without the small program has it) is the sendmail command:
/// it submits and lists the queue.
#[test]
fn the_full_binary_called_sendmail_is_sendmail() {
    let Some(inst) = Install::new() else { return };
    let d = daemon();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("sendmail");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    ok(&run(
        inst.command(&d, &link).args(["-t", "-i"]),
        b"To: full@x.example\nSubject: argv0\n\nby the full binary\n",
    ));
    let q = queued(&d, 1);
    assert_eq!(q[0]["recipients"][0]["address"], "full@x.example");
    assert!(body(&d, &q[0]).contains("by the full binary"));
    let out = run(inst.command(&d, &link).arg("-bp"), b"");
    ok(&out);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("full@x.example"), "{listed}");
}

/// An error in a setting submission does not use is not its business:
/// the running daemon takes the message (the full binary refuses, 78).
#[test]
fn an_error_elsewhere_in_the_file_does_not_stop_it() {
    let Some(inst) = Install::new() else { return };
    let d = daemon();
    let (dir, fast) = fast_only();
    let broken = dir.path().join("broken.toml");
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&broken, format!("no_such_setting = 1\n{text}")).unwrap();
    let msg = b"To: a@x.example\n\nx\n";
    let mut c = inst.command(&d, &fast);
    ok(&run(
        c.env("POSTRELAY_CONFIG", &broken).args(["-t", "-i"]),
        msg,
    ));
    assert_eq!(queued(&d, 1)[0]["recipients"][0]["address"], "a@x.example");
    let mut c = inst.command(&d, Path::new(bin()));
    let out = run(
        c.env("POSTRELAY_CONFIG", &broken)
            .args(["sendmail", "-t", "-i"]),
        msg,
    );
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("no_such_setting"), "{}", stderr(&out));
}
