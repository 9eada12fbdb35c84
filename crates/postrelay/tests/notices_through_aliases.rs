//! Notices postrelay writes itself enter the queue through the same door
//! as a client's message, so they follow `/etc/aliases` exactly as one
//! would: a bounce for cron mail from `root` reaches the human `root` is
//! aliased to, and a double bounce reaches whatever `postmaster` resolves
//! to (Debian's `postmaster: root`). Real parts: a real system user and
//! postrelay's own Maildir delivery; the failures come from transport-map
//! `error:` entries, so no network is involved.

mod support;

use std::time::{Duration, Instant};

use support::daemon::{Daemon, Options};
use support::peers::{require, require_root};
use support::smtp::Raw;
use support::user::SystemUser as User;

/// Sends one message over SMTP; it must be accepted.
fn send(port: u16, from: &str, to: &str, subject: &str) {
    let (mut c, _) = Raw::connect(port);
    c.cmd("EHLO cron.example");
    assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{to}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let reply = c.cmd(&format!("Subject: {subject}\r\n\r\nbody\r\n."));
    assert_eq!(reply.code, 250, "{}", reply.text());
    c.cmd("QUIT");
}

/// Waits (at most 60 s) for a message in `user`'s Maildir containing every
/// one of `needles`.
fn wait_for_mail(d: &Daemon, user: &User, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(m) = user
            .mail()
            .into_iter()
            .find(|m| needles.iter().all(|n| m.contains(n)))
        {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "no message with {needles:?} reached {} within 60 s; it has {:#?}\n{}",
            user.name,
            user.mail(),
            d.maillog()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bounces_and_double_bounces_follow_the_aliases() {
    if !(require("useradd") && require_root("creating a system user")) {
        return;
    }
    let user = User::create("prnotice");
    let tables = tempfile::tempdir().unwrap();
    let aliases = tables.path().join("aliases");
    std::fs::write(
        &aliases,
        format!(
            "# as Debian ships it\npostmaster: root\nroot: {}\n",
            user.name
        ),
    )
    .unwrap();
    let transport = tables.path().join("transport");
    std::fs::write(
        &transport,
        "fail.example error:5.1.1 no such mailbox here\n",
    )
    .unwrap();
    let d = Daemon::start_with(Options {
        tail: format!(
            "[routing]\naliases = \"{}\"\ntransport = \"{}\"\n",
            aliases.display(),
            transport.display()
        ),
        delivery: true,
        ..Options::default()
    });

    // Cron mail from root to an address that fails: the bounce goes to
    // root, which is the aliased user, never root's own mailbox.
    send(
        d.port,
        "root@relay.test",
        "gone@fail.example",
        "cron report",
    );
    let bounce = wait_for_mail(
        &d,
        &user,
        &[
            "Action: failed",
            "Final-Recipient: rfc822; gone@fail.example",
        ],
    );
    assert!(
        bounce.contains("X-Original-To: root@relay.test"),
        "delivered through the root alias: {bounce}"
    );

    // A sender whose own bounce fails: the double bounce goes to the
    // postmaster, which is root, which is the aliased user.
    send(
        d.port,
        "someone@fail.example",
        "lost@fail.example",
        "doomed",
    );
    let double = wait_for_mail(
        &d,
        &user,
        &["Final-Recipient: rfc822; someone@fail.example"],
    );
    assert!(
        double.contains("X-Original-To: postmaster@relay.test"),
        "delivered through the postmaster alias: {double}"
    );
    d.wait_maillog(&["postmaster non-delivery notification"], 1);
    d.wait_queue_len(0);
    let log = d.wait_maillog_settled();
    assert!(
        !log.contains("undeliverable notification discarded"),
        "no notice may be dropped: {log}"
    );
}
