//! The local recipient table at RCPT, seen from real clients: an unknown
//! local recipient is refused with 550 5.1.1 before anything is queued
//! (no bounce, so no backscatter to a forged sender), from a client in a
//! network namespace (outside `mynetworks`) and from loopback alike;
//! aliases and system users are accepted.
//!
//! Namespaces need root; see `support::netns`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::daemon::{Daemon, Options};
use support::netns::{NetNs, can_run, daemon_with};
use support::peers;
use support::user::SystemUser;

/// The reply swaks shows right after `-> RCPT TO:<to>`.
fn rcpt_reply<'a>(out: &'a str, to: &str) -> &'a str {
    let cmd = format!(" -> RCPT TO:<{to}>");
    out.lines()
        .skip_while(|l| *l != cmd)
        .nth(1)
        .unwrap_or_else(|| panic!("no RCPT TO:<{to}> in\n{out}"))
}

fn queued_rcpts(d: &Daemon) -> Vec<Vec<String>> {
    d.queue()
        .iter()
        .map(|m| {
            m["recipients"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["address"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

/// swaks from loopback (a trusted client).
fn swaks_loopback(port: u16, to: &str) -> (i32, String) {
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}")])
        .args(["--from", "someone@example.com", "--to", to])
        .args(["--timeout", "20", "--body", "local recipient test"])
        .output()
        .expect("swaks");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Options with `aliases` as the aliases file and `local` as the
/// `[local]` section; the directory holding the file goes with them.
fn options(aliases: &str, local: &str) -> (Options, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aliases");
    std::fs::write(&path, aliases).unwrap();
    let tail = format!(
        "[routing]\naliases = \"{}\"\n\n[local]\n{local}\n",
        path.display()
    );
    let options = Options {
        tail,
        ..Options::default()
    };
    (options, dir)
}

/// A daemon on loopback and on `ns`'s veth address (see [`options`]).
fn daemon(ns: &NetNs, aliases: &str, local: &str) -> (Daemon, tempfile::TempDir) {
    let (options, dir) = options(aliases, local);
    (daemon_with(ns, options), dir)
}

/// Waits (bounded) for the first message in `user`'s Maildir.
fn first_delivered(user: &SystemUser) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(m) = user.mail().into_iter().next() {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "nothing delivered to {}",
            user.name
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn unknown_local_recipients_are_refused_at_rcpt_from_any_client() {
    if !can_run() {
        return;
    }
    let ns = NetNs::create();
    // An alias whose target does not exist is still a known recipient (as
    // in Postfix): the table is about the recipient, not its expansion.
    let (d, _tables) = daemon(&ns, "support: root\nghost: no-such-user-either\n", "");

    for to in ["no-such-user@relay.test", "No-Such-User@localhost"] {
        let (rc, out) = ns.swaks(d.port, "forged@victim.example", to);
        assert_ne!(rc, 0, "the only recipient was refused:\n{out}");
        let reply = rcpt_reply(&out, to);
        assert_eq!(
            reply,
            format!(
                "<** 550 5.1.1 <{to}>: Recipient address rejected: User unknown in local recipient table"
            ),
            "{out}"
        );
        assert!(!out.contains("<-  354"), "no DATA after a refusal:\n{out}");
    }
    assert!(d.queue().is_empty(), "nothing queued, so nothing bounces");

    // Known recipients from the same outside client: a system user, an
    // alias, postmaster, and an alias with an unknown target.
    for to in [
        "root@relay.test",
        "support@localhost",
        "postmaster@relay.test",
        "ghost@relay.test",
    ] {
        let (rc, out) = ns.swaks(d.port, "someone@example.com", to);
        assert_eq!(rc, 0, "{to} is a known local recipient:\n{out}");
        assert!(rcpt_reply(&out, to).starts_with("<-  250 "), "{out}");
    }
    assert_eq!(d.queue().len(), 4);

    // From loopback, which may relay anywhere, the table applies too.
    let (rc, out) = swaks_loopback(d.port, "no-such-user@localhost,root@localhost");
    assert_eq!(rc, 0, "the known recipient still gets the message:\n{out}");
    assert!(
        rcpt_reply(&out, "no-such-user@localhost").starts_with("<** 550 5.1.1 "),
        "{out}"
    );
    let q = queued_rcpts(&d);
    assert_eq!(q.len(), 5, "{q:?}");
    assert!(
        q.iter()
            .all(|r| !r.iter().any(|a| a.starts_with("no-such-user@"))),
        "an unknown recipient is never queued: {q:?}"
    );
}

/// `recipient_delimiter` (default "+"): `user+tag` is accepted at RCPT
/// and delivered to `user`'s mailbox, `Delivered-To:` keeping the tag;
/// an alias applies to its extensions (`support+x` → `support`).
#[test]
fn an_extension_reaches_the_user_and_the_alias() {
    if !(peers::require_root("creating a system user")
        && peers::require("useradd")
        && peers::require("swaks"))
    {
        return;
    }
    let user = SystemUser::create("prdelim");
    let (mut options, _tables) = options(&format!("support: {}\n", user.name), "");
    options.delivery = true;
    let d = Daemon::start_with(options);

    let to = format!("{}+news@relay.test", user.name);
    let (rc, out) = swaks_loopback(d.port, &to);
    assert_eq!(rc, 0, "{to} is the user {} with a tag:\n{out}", user.name);
    let mail = first_delivered(&user);
    assert!(mail.contains(&format!("Delivered-To: {to}\n")), "{mail}");
    let (rc, out) = swaks_loopback(d.port, "Support+Urgent@localhost");
    assert_eq!(rc, 0, "the alias support covers support+urgent:\n{out}");
}

/// An empty `recipient_delimiter` turns extensions off: `user+tag` is a
/// name of its own, unknown here.
#[test]
fn an_empty_delimiter_makes_the_tag_part_of_the_name() {
    if !peers::require("swaks") {
        return;
    }
    let (options, _tables) = options("support: root\n", "recipient_delimiter = \"\"");
    let d = Daemon::start_with(options);
    for to in ["root+news@relay.test", "support+x@localhost"] {
        let (rc, out) = swaks_loopback(d.port, to);
        assert_ne!(rc, 0, "{out}");
        assert!(rcpt_reply(&out, to).starts_with("<** 550 5.1.1 "), "{out}");
    }
    let (rc, out) = swaks_loopback(d.port, "root@relay.test");
    assert_eq!(rc, 0, "{out}");
}

/// `[local] catch_all`: an unknown local recipient is accepted at RCPT,
/// even from outside mynetworks, and delivered to the catch-all user's
/// mailbox, `Delivered-To:` naming the recipient; known users keep theirs.
#[test]
fn a_catch_all_takes_unknown_local_recipients() {
    if !(can_run() && peers::require("useradd")) {
        return;
    }
    let ns = NetNs::create();
    let catch_all = SystemUser::create("prcatch");
    let (mut options, _tables) = options(
        "support: root\n",
        &format!("catch_all = \"{}\"", catch_all.name),
    );
    options.delivery = true;
    let d = daemon_with(&ns, options);

    let to = "No-Such-User+tag@relay.test";
    let (rc, out) = ns.swaks(d.port, "someone@example.com", to);
    assert_eq!(rc, 0, "the catch-all accepts any local part:\n{out}");
    assert!(rcpt_reply(&out, to).starts_with("<-  250 "), "{out}");
    let mail = first_delivered(&catch_all);
    assert!(mail.contains(&format!("Delivered-To: {to}\n")), "{mail}");
    assert!(mail.contains("relay policy test"), "{mail}");

    // Outside domains are still refused to an outside client.
    let (rc, out) = ns.swaks(d.port, "someone@example.com", "victim@example.com");
    assert_ne!(rc, 0, "{out}");
    assert!(
        rcpt_reply(&out, "victim@example.com").starts_with("<** 554 5.7.1 "),
        "{out}"
    );
}
