//! The sendmail interface against real processes: `postrelay-sendmail`
//! called through a `sendmail` symlink (and `postrelay sendmail`), a
//! setgid copy of `postrelay-postdrop`, a running (or stopped) daemon,
//! an unprivileged user (`nobody` through setpriv), bsd-mailx's mail(1),
//! and strace (to hold postdrop in its last step).
//!
//! Needs root (to install postdrop setgid and to switch users): skipped
//! with a message otherwise, a failure under `CI=true`.

mod support;

use support::install::{
    Install, body, daemon, maildrop, ok, queued, recipients, run, wait_for, without_socket,
};

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use support::daemon::{Daemon, Options, bin};
use support::peers;

#[test]
fn root_submits_through_the_symlink_and_the_subcommand() {
    let Some(inst) = Install::new() else { return };
    let d = daemon();
    ok(&inst.sendmail_run(&d, &["root"], b"hi\n"));
    let mut c = inst.command(&d, Path::new(bin()));
    ok(&run(
        c.args(["sendmail", "-i", "root@relay.test"]),
        b"Subject: two\n\nsecond\n",
    ));
    let q = queued(&d, 2);
    for env in &q {
        assert_eq!(env["sender"], "root@relay.test");
        assert_eq!(recipients(env), ["root@relay.test"]);
        assert_eq!(env["origin"]["kind"], "local");
        assert_eq!(env["origin"]["uid"], 0);
        assert_eq!(env["origin"]["user"], "root");
    }
    let first = body(&d, &q[0]);
    assert!(
        first.starts_with("Received: by relay.test (postrelay, from userid 0)\r\n\tid "),
        "{first}"
    );
    for h in [
        "\r\nFrom: root <root@relay.test>\r\n",
        "\r\nDate: ",
        "\r\nMessage-ID: <",
    ] {
        assert!(first.contains(h), "{h:?} missing in {first}");
    }
    assert!(first.ends_with("\r\n\r\nhi\r\n"), "{first:?}");
    assert!(body(&d, &q[1]).contains("Subject: two\r\n"));
    d.wait_maillog(&["pickup"], 1);
    assert_eq!(std::fs::read_dir(maildrop(&d)).unwrap().count(), 0);
}

#[test]
fn submission_works_while_the_daemon_is_stopped() {
    let Some(inst) = Install::new() else { return };
    let mut d = daemon();
    d.stop();
    // The stopped daemon's socket is still there: sendmail is refused
    // there and uses maildrop/.
    assert!(d.spool().join("submit.sock").exists());
    ok(&inst.sendmail_run(
        &d,
        &["someone@example.org"],
        b"Subject: offline\n\nqueued later\n",
    ));
    let files: Vec<_> = std::fs::read_dir(maildrop(&d)).unwrap().collect();
    assert_eq!(files.len(), 1);
    let meta = files[0].as_ref().unwrap().metadata().unwrap();
    assert_eq!(
        meta.mode() & 0o7777,
        0o640,
        "a complete maildrop file is 0640"
    );
    d.restart();
    let q = queued(&d, 1);
    assert_eq!(recipients(&q[0]), ["someone@example.org"]);
    assert!(body(&d, &q[0]).contains("queued later"));
}

#[test]
fn recipients_from_headers_and_bcc_removed() {
    let Some(inst) = Install::new() else { return };
    let d = daemon();
    let msg = b"To: A <a@x.example>, b@y.example\nCc: \"Last, First\" <c@z.example>\nBcc: hidden@w.example\nSubject: t\n\nbody\n";
    ok(&inst.sendmail_run(&d, &["-t", "-i", "extra@v.example"], msg));
    let q = queued(&d, 1);
    assert_eq!(
        recipients(&q[0]),
        [
            "extra@v.example",
            "a@x.example",
            "b@y.example",
            "c@z.example",
            "hidden@w.example"
        ]
    );
    let text = body(&d, &q[0]);
    assert!(!text.contains("Bcc") && !text.contains("hidden"), "{text}");
    assert!(
        text.contains("To: A <a@x.example>, b@y.example\r\n"),
        "{text}"
    );
}

#[test]
fn lone_dot_ends_input_unless_i() {
    let Some(inst) = Install::new() else { return };
    let d = daemon();
    ok(&inst.sendmail_run(
        &d,
        &["a@example.org"],
        b"Subject: dot\n\nbefore\n.\nafter\n",
    ));
    queued(&d, 1);
    ok(&inst.sendmail_run(
        &d,
        &["-i", "b@example.org"],
        b"Subject: dot\n\nbefore\n.\n..x\nafter\n",
    ));
    let q = queued(&d, 2);
    let by_rcpt = |r: &str| q.iter().find(|e| recipients(e) == [r]).unwrap();
    let cut = body(&d, by_rcpt("a@example.org"));
    assert!(cut.ends_with("\r\n\r\nbefore\r\n"), "{cut:?}");
    let whole = body(&d, by_rcpt("b@example.org"));
    assert!(
        whole.ends_with("\r\n\r\nbefore\r\n.\r\n..x\r\nafter\r\n"),
        "{whole:?}"
    );
}

#[test]
fn sender_full_name_and_historic_flags() {
    let Some(inst) = Install::new() else { return };
    let d = daemon();
    let args = [
        "-oi",
        "-oem",
        "-odi",
        "-B",
        "8BITMIME",
        "-N",
        "never",
        "-F",
        "Cron Daemon",
        "-f",
        "cron@example.org",
        "-R",
        "hdrs",
        "-V",
        "envid",
        "-L",
        "x",
        "-U",
        "root",
    ];
    // LF-only and CR-only lines both become CRLF.
    ok(&inst.sendmail_run(&d, &args, b"Subject: flags\n\nlf line\ncr line\rend\n"));
    let q = queued(&d, 1);
    let env = &q[0];
    assert_eq!(env["sender"], "cron@example.org");
    assert_eq!(env["body"], "8bitmime");
    assert_eq!(env["recipients"][0]["notify"], serde_json::json!(["NEVER"]));
    let text = body(&d, env);
    assert!(
        text.contains("\r\nFrom: Cron Daemon <cron@example.org>\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with("\r\n\r\nlf line\r\ncr line\r\nend\r\n"),
        "{text:?}"
    );

    ok(&inst.sendmail_run(&d, &["-f", "<>", "-r", "", "x@example.org"], b"no header\n"));
    let q = queued(&d, 2);
    let null = q
        .iter()
        .find(|e| recipients(e) == ["x@example.org"])
        .unwrap();
    assert_eq!(null["sender"], "");
}

#[test]
fn usage_errors() {
    let Some(inst) = Install::new() else { return };
    let d = daemon();
    for (args, want) in [
        (&["-Z", "root"][..], "unknown option -Z"),
        (&[][..], "no recipients"),
        (&["-t"][..], "no recipients"),
        (&["-bd"][..], "not supported"),
    ] {
        let out = inst.sendmail_run(&d, args, b"Subject: x\n\nx\n");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(
            err.contains(want) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    let big = vec![b'x'; 2000];
    let out = inst.sendmail_run(&d, &["root"], &big);
    assert_eq!(
        out.status.code(),
        Some(65),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A loop is refused up front, not accepted and then dropped by pickup.
    let looping = "Received: from a by b\n".repeat(51) + "Subject: loop\n\nx\n";
    let out = inst.sendmail_run(&d, &["root"], looping.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{err}");
    assert!(err.contains("mail loop"), "{err}");
    // Nothing was dropped: the maildrop is empty as sendmail exits...
    assert_eq!(std::fs::read_dir(maildrop(&d)).unwrap().count(), 0);
    // ...and pickup, seen working since (it queued the next message),
    // queued nothing else and set nothing aside.
    ok(&inst.sendmail_run(&d, &["root"], b"Subject: after the loop\n\nx\n"));
    let q = queued(&d, 1);
    assert!(
        body(&d, &q[0]).contains("Subject: after the loop"),
        "{q:#?}"
    );
    assert_eq!(
        std::fs::read_dir(d.spool().join("corrupt"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn unprivileged_user_submits_but_cannot_look() {
    let Some(inst) = Install::new() else { return };
    if !peers::require("setpriv") {
        return;
    }
    let mut d = daemon();
    let out = inst.as_nobody(
        &d,
        &inst.sendmail(),
        &["root"],
        b"Subject: from nobody\n\nhello\n",
    );
    ok(&out);
    let q = queued(&d, 1);
    assert_eq!(q[0]["origin"]["uid"], 65534);
    assert_eq!(q[0]["origin"]["user"], "nobody");
    assert_eq!(q[0]["sender"], "nobody@relay.test");
    assert!(body(&d, &q[0]).contains("(postrelay, from userid 65534)"));

    // A file of root's, left while the daemon is down.
    d.stop();
    ok(&inst.sendmail_run(&d, &["root"], b"secret\n"));
    let name = std::fs::read_dir(maildrop(&d))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let file = maildrop(&d).join(&name);
    let md = maildrop(&d);
    let queue = d.spool().join("queue");
    let msg = std::fs::read_dir(&queue)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "msg"))
        .unwrap();
    for (prog, args) in [
        ("ls", vec![md.as_os_str()]),
        ("cat", vec![file.as_os_str()]),
        ("rm", vec!["-f".as_ref(), file.as_os_str()]),
        ("ls", vec![queue.as_os_str()]),
        ("cat", vec![msg.as_os_str()]),
    ] {
        let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
        let out = inst.as_nobody(&d, Path::new(prog), &args, b"");
        assert!(!out.status.success(), "nobody could {prog} {args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "{prog} {args:?}"
        );
    }
    assert!(file.exists(), "root's maildrop file must survive");
    let mailq = inst.dir.path().join("mailq");
    let out = inst.as_nobody(&d, &mailq, &[], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("run this as root"),
        "{err}"
    );
    d.restart();
    queued(&d, 2);
}

/// sendmail and the queue commands read the configuration without the
/// daemon's secrets: a transport map naming a relay does not break them,
/// and root's mailq works while the password file belongs to another user
/// (the daemon's, when it does not run as root).
#[test]
fn local_tools_need_neither_relays_secrets_nor_their_owner() {
    let Some(inst) = Install::new() else { return };
    let files = tempfile::tempdir().unwrap();
    let pw = files.path().join("password");
    std::fs::write(&pw, "secret\n").unwrap();
    std::fs::set_permissions(&pw, PermissionsExt::from_mode(0o600)).unwrap();
    let transport = files.path().join("transport");
    std::fs::write(&transport, "* relay:prov\n").unwrap();
    let d = Daemon::start_with(Options {
        intake: "local_domains = [\"localhost\"]".into(),
        tail: format!(
            "[[relay]]\nname = \"prov\"\nhost = \"127.0.0.1\"\nport = 9\n\
             username = \"u\"\npassword_file = \"{}\"\n\
             [routing]\ntransport = \"{}\"\n",
            pw.display(),
            transport.display()
        ),
        ..Options::default()
    });
    // As a daemon running as another user would own it.
    nix::unistd::chown(&pw, Some(65534.into()), None).unwrap();
    ok(&inst.sendmail_run(&d, &["someone@example.org"], b"Subject: t\n\nx\n"));
    queued(&d, 1);
    let mailq = inst.dir.path().join("mailq");
    let out = run(inst.command(&d, &mailq).arg("--config").arg(&d.config), b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("someone@example.org"), "{text}");
}

/// Pickup is woken by the finished file (inotify), not by its periodic
/// listing, here set to an hour: the message is queued all the same.
#[test]
fn pickup_wakes_when_a_submission_is_finished() {
    let Some(inst) = Install::new() else { return };
    let d = Daemon::start_with(Options {
        intake: "local_domains = [\"localhost\"]\nmaildrop_rescan = \"1h\"".into(),
        ..Options::default()
    });
    // Submit after pickup's first listing (which would find the file
    // without any notification).
    wait_for(
        || d.stderr().contains("maildrop: first listing done"),
        "pickup's first listing",
    );
    without_socket(&d);
    ok(&inst.sendmail_run(&d, &["root@relay.test"], b"Subject: woken\n\nhi\n"));
    let q = queued(&d, 1);
    assert!(body(&d, &q[0]).contains("Subject: woken"));
    let log = d.stderr();
    assert!(!log.contains("no change notification"), "{log}");
}

/// Pickup takes a file the moment postdrop marks it ready, while postdrop
/// is still making that mark durable: postdrop must not mistake the file
/// being gone (queued) for a failure, or the sender would try again and
/// the message would go out twice. strace holds postdrop's final syncfs
/// for a second, so pickup always wins that race here.
#[test]
fn a_file_taken_at_once_is_a_success() {
    let Some(inst) = Install::new() else { return };
    if !peers::require("strace") {
        return;
    }
    let d = daemon();
    without_socket(&d);
    let slow = inst.dir.path().join("slow-postdrop");
    support::write_executable(
        &slow,
        &format!(
            "#!/bin/sh\nexec strace -qq -o /dev/null -e trace=syncfs \
             -e inject=syncfs:delay_exit=1000000 '{}' \"$@\"\n",
            inst.postdrop().display()
        ),
    );
    let mut c = inst.command(&d, &inst.sendmail());
    c.env("POSTRELAY_POSTDROP", &slow).arg("root@relay.test");
    ok(&run(&mut c, b"Subject: taken at once\n\nhi\n"));
    let q = queued(&d, 1);
    assert!(body(&d, &q[0]).contains("Subject: taken at once"));
}

/// When the group privilege is missing, postdrop says which of the causes
/// an administrator meets it is: a copy that is not setgid, or a setgid
/// bit the kernel ignores because no_new_privs is set.
#[test]
fn postdrop_says_why_it_has_no_group() {
    let Some(inst) = Install::new() else { return };
    if !peers::require("setpriv") {
        return;
    }
    let d = daemon();
    let plain = inst.dir.path().join("postrelay-postdrop-plain");
    support::copy_executable(&inst.postdrop(), &plain);
    std::fs::set_permissions(&plain, PermissionsExt::from_mode(0o755)).unwrap();
    let setgid = inst.postdrop();
    let cases = [
        (
            vec![plain.to_str().unwrap()],
            "must be installed setgid postdrop",
        ),
        (
            vec!["setpriv", "--no-new-privs", setgid.to_str().unwrap()],
            "no_new_privs",
        ),
    ];
    for (argv, expect) in cases {
        let mut args: Vec<&str> = argv[1..].to_vec();
        let spool = d.spool();
        args.push(spool.to_str().unwrap());
        let out = inst.as_nobody(&d, Path::new(argv[0]), &args, b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(77), "{argv:?}: {err}");
        assert!(
            err.contains("Permission denied") && err.contains(expect),
            "{argv:?}: {err}"
        );
    }
    assert_eq!(std::fs::read_dir(maildrop(&d)).unwrap().count(), 0);
}

#[test]
fn hostile_maildrop_files_go_to_corrupt() {
    let Some(inst) = Install::new() else { return };
    let mut d = daemon();
    d.stop();
    let md = maildrop(&d);
    let good_header = r#"{"version":1,"uid":1000,"user":"mallory","sender":"","recipients":["a@b.example"],"body":"7bit","notify":null}"#;
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "01JDWE7480B8Y9W7RBFMJ6HB71",
            b"not json\nx\r\n.\r\n".to_vec(),
        ),
        // Owned by root, but claims uid 1000.
        (
            "01JDWE7480B8Y9W7RBFMJ6HB72",
            format!("{good_header}\nx\r\n.\r\n").into_bytes(),
        ),
        // No end-of-data marker.
        (
            "01JDWE7480B8Y9W7RBFMJ6HB73",
            format!("{}\nx\r\n", good_header.replace("1000", "0")).into_bytes(),
        ),
    ];
    for (name, content) in &cases {
        let p = md.join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, PermissionsExt::from_mode(0o640)).unwrap();
    }
    // An abandoned file is removed; an incomplete one is left alone.
    for (name, mode) in [
        ("01JDWE7480B8Y9W7RBFMJ6HB74", 0o000),
        ("01JDWE7480B8Y9W7RBFMJ6HB75", 0o600),
    ] {
        let p = md.join(name);
        std::fs::write(&p, b"").unwrap();
        std::fs::set_permissions(&p, PermissionsExt::from_mode(mode)).unwrap();
    }
    d.restart();
    let corrupt = d.spool().join("corrupt");
    wait_for(
        || {
            (1..=3).all(|i| {
                corrupt
                    .join(format!("maildrop-01JDWE7480B8Y9W7RBFMJ6HB7{i}"))
                    .exists()
            })
        },
        "the bad files to move to corrupt/",
    );
    wait_for(
        || !md.join("01JDWE7480B8Y9W7RBFMJ6HB74").exists(),
        "the abandoned file to go",
    );
    assert!(md.join("01JDWE7480B8Y9W7RBFMJ6HB75").exists());
    assert!(d.queue().is_empty());
    assert!(
        d.stderr().contains("claims uid 1000 but is owned by uid 0"),
        "{}",
        d.stderr()
    );
    drop(inst);
}

#[test]
fn smtp_on_stdin_relays_to_the_daemon() {
    let Some(inst) = Install::new() else { return };
    let mut d = daemon();
    let out = inst.sendmail_run(&d, &["-bs"], b"EHLO me.example\r\nQUIT\r\n");
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("220 ") && text.contains("\r\n221 "),
        "{text}"
    );
    d.stop();
    let out = inst.sendmail_run(&d, &["-bs"], b"QUIT\r\n");
    assert_eq!(out.status.code(), Some(75));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("421 "));
}

#[test]
fn bsd_mailx_sends_through_our_sendmail() {
    let Some(inst) = Install::new() else { return };
    if !peers::require("bsd-mailx") {
        return;
    }
    let d = daemon();
    // bsd-mailx reads `set sendmail=…` from $MAILRC; /usr/sbin/sendmail is
    // left alone.
    let rc = inst.dir.path().join("mailrc");
    std::fs::write(&rc, format!("set sendmail={}\n", inst.sendmail().display())).unwrap();
    let mut c = inst.command(&d, Path::new("bsd-mailx"));
    c.env("MAILRC", &rc)
        .env("HOME", inst.dir.path())
        .args(["-s", "via mailx", "user@example.org"]);
    let out = run(&mut c, b"hello from mailx\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let q = queued(&d, 1);
    assert_eq!(recipients(&q[0]), ["user@example.org"]);
    let text = body(&d, &q[0]);
    assert!(
        text.contains("Subject: via mailx\r\n") && text.contains("hello from mailx\r\n"),
        "{text}"
    );
}
