//! `postrelay queue list|show|hold|release|delete|flush` and `mailq`,
//! through the real binary, both with the daemon running (changes go
//! through its control socket, so the daemon's own index must follow) and
//! with it stopped (the command takes the spool lock and changes the files
//! itself). Also: a user other than root or the daemon's cannot change the
//! queue through the socket.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use support::daemon::{Daemon, bin};
use support::smtp::Raw;

/// An ID in the canonical form that names no message.
const ABSENT: &str = "01ARZ3NDEKTSV4RRFFQ69G5FAV";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a command that must succeed; returns its stdout.
fn ok(d: &Daemon, args: &[&str]) -> String {
    let o = d.cli(args);
    assert!(
        o.status.success(),
        "postrelay {args:?} failed ({}): {}{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs a command that must fail with exit status 1 and say `needle` on
/// stderr; returns stderr.
fn fails(d: &Daemon, args: &[&str], needle: &str) -> String {
    let o = d.cli(args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "postrelay {args:?} must fail: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let err = stderr(&o);
    assert!(
        err.contains(needle),
        "postrelay {args:?}: stderr should say {needle:?}: {err}"
    );
    err
}

/// Sends one message over SMTP; returns its queue ID.
fn send(port: u16, sender: &str, rcpts: &[&str]) -> String {
    let (mut c, g) = Raw::connect(port);
    assert_eq!(g.code, 220);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{sender}>")).code, 250);
    for r in rcpts {
        assert_eq!(c.cmd(&format!("RCPT TO:<{r}>")).code, 250);
    }
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"Subject: queue commands\r\n\r\nhello\r\n.\r\n");
    let r = c.reply();
    assert_eq!(r.code, 250, "{r:?}");
    let id = r.text().rsplit(' ').next().unwrap().to_string();
    assert_eq!(c.cmd("QUIT").code, 221);
    id
}

/// `queue list --json`, keyed by id.
fn json(d: &Daemon) -> std::collections::BTreeMap<String, serde_json::Value> {
    d.queue()
        .into_iter()
        .map(|m| (m["id"].as_str().unwrap().to_string(), m))
        .collect()
}

fn exists(d: &Daemon, dir: &str, name: String) -> bool {
    d.spool().join(dir).join(name).exists()
}

/// The line of the `queue list` table that starts with `id`.
fn list_line(list: &str, id: &str) -> String {
    list.lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{list}"))
        .to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Changes go through the daemon's control socket.
    Running,
    /// No daemon: the command works on the spool directly.
    Stopped,
}

/// The whole command set on a queue of three messages, step by step on
/// one daemon (each step starts from what the one before left).
fn queue_commands(mode: Mode) {
    let mut d = Daemon::start();
    assert_eq!(ok(&d, &["queue", "list"]), "Mail queue is empty\n");
    assert_eq!(ok(&d, &["queue", "list", "--json"]).trim(), "[]");

    let a = send(
        d.port,
        "alice@example.com",
        &["x@example.org", "y@example.org"],
    );
    let b = send(d.port, "", &["z@example.org"]);
    let c = send(d.port, "carol@example.com", &["w@example.net"]);
    if mode == Mode::Stopped {
        assert!(d.stop().success());
    }

    let q = list_json_shows_the_three(&d, &a, &b, &c);
    list_table_is_mailq_s(&d, &q, &a, &b);
    show_prints_the_envelope(&d, &a, &b);
    hold_moves_the_envelope_to_hold(&d, &a, &b);
    release_brings_it_back(&d, &a);
    delete_removes_one(&d, &b);
    bad_ids_change_nothing(&d, &c);
    mailq_symlink_lists_the_queue(&d);
    maillog_records_the_actions(&d, &a, &b);
    delete_all_empties_the_queue(&d);
    match mode {
        Mode::Running => the_daemon_s_index_followed(&d),
        Mode::Stopped => the_next_daemon_starts_from_the_changes(&mut d),
    }
}

/// `queue list --json`: the three messages, their senders, recipients,
/// location and size.
fn list_json_shows_the_three(
    d: &Daemon,
    a: &str,
    b: &str,
    c: &str,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let q = json(d);
    assert_eq!(
        q.keys().cloned().collect::<Vec<_>>(),
        {
            let mut v = vec![a.to_string(), b.to_string(), c.to_string()];
            v.sort();
            v
        },
        "{q:?}"
    );
    let m = &q[a];
    assert_eq!(m["sender"], "alice@example.com");
    assert_eq!(m["location"], "queue");
    let rcpts: Vec<&str> = m["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert_eq!(rcpts, ["x@example.org", "y@example.org"]);
    assert_eq!(m["size"].as_u64(), Some(d.body(a).len() as u64));
    assert_eq!(q[b]["sender"], "");
    q
}

/// `queue list`: the mailq table (header, a line per message with its
/// size and sender, its recipients, the total).
fn list_table_is_mailq_s(
    d: &Daemon,
    q: &std::collections::BTreeMap<String, serde_json::Value>,
    a: &str,
    b: &str,
) {
    let list = ok(d, &["queue", "list"]);
    let mut lines = list.lines();
    let header = lines.next().unwrap();
    for col in [
        "-Queue ID-",
        "--Size--",
        "----Arrival Time----",
        "-Sender/Recipient-------",
    ] {
        assert!(header.contains(col), "header {header:?}");
    }
    let la = list_line(&list, a);
    assert!(
        la.starts_with(&format!("{a} ")) && la.ends_with("alice@example.com"),
        "{la:?}"
    );
    assert!(
        la.split_whitespace().nth(1) == Some(&q[a]["size"].to_string()),
        "size column of {la:?}"
    );
    assert!(list_line(&list, b).ends_with("MAILER-DAEMON"), "{list}");
    for r in [
        "x@example.org",
        "y@example.org",
        "z@example.org",
        "w@example.net",
    ] {
        assert!(
            list.lines().any(|l| l.trim() == r),
            "recipient {r} listed:\n{list}"
        );
    }
    let total: u64 = q.values().map(|m| m["size"].as_u64().unwrap()).sum();
    assert_eq!(
        list.lines().last().unwrap(),
        format!("-- {} Kbytes in 3 Requests.", total.div_ceil(1024)),
        "{list}"
    );
}

/// `queue show`: id, location, sender and each recipient's state.
fn show_prints_the_envelope(d: &Daemon, a: &str, b: &str) {
    let show = ok(d, &["queue", "show", a]);
    for needle in [
        format!("id:        {a}"),
        "location:  queue".to_string(),
        "sender:    <alice@example.com>".to_string(),
        "recipient: <x@example.org> pending".to_string(),
        "recipient: <y@example.org> pending".to_string(),
    ] {
        assert!(show.contains(&needle), "show lacks {needle:?}:\n{show}");
    }
    assert!(ok(d, &["queue", "show", b]).contains("sender:    <>"));
}

/// `queue hold`: the envelope moves to hold/, the list marks it, a
/// second hold fails, flush skips it.
fn hold_moves_the_envelope_to_hold(d: &Daemon, a: &str, b: &str) {
    assert_eq!(
        ok(d, &["queue", "hold", a]),
        format!("{a}: placed on hold\n")
    );
    assert!(exists(d, "hold", format!("{a}.env")), "envelope in hold/");
    assert!(!exists(d, "queue", format!("{a}.env")), "and not in queue/");
    assert!(
        exists(d, "queue", format!("{a}.msg")),
        "body stays in queue/"
    );
    let list = ok(d, &["queue", "list"]);
    assert!(
        list_line(&list, a).starts_with(&format!("{a}!")),
        "held mark:\n{list}"
    );
    assert!(list.contains("(held by the administrator)"), "{list}");
    assert!(!list_line(&list, b).starts_with(&format!("{b}!")));
    assert_eq!(json(d)[a]["location"], "hold");
    assert!(ok(d, &["queue", "show", a]).contains("location:  hold"));
    fails(d, &["queue", "hold", a], "already on hold");
    // Held messages are not flushed: the daemon's index knows about the hold.
    assert_eq!(
        ok(d, &["queue", "flush"]),
        "2 message(s) scheduled for immediate delivery\n"
    );
}

/// `queue release`: back in queue/, a second release fails, flush
/// counts it again.
fn release_brings_it_back(d: &Daemon, a: &str) {
    assert_eq!(
        ok(d, &["queue", "release", a]),
        format!("{a}: released from hold\n")
    );
    assert!(exists(d, "queue", format!("{a}.env")));
    assert!(!exists(d, "hold", format!("{a}.env")));
    assert!(list_line(&ok(d, &["queue", "list"]), a).starts_with(&format!("{a} ")));
    fails(d, &["queue", "release", a], "not on hold");
    assert_eq!(
        ok(d, &["queue", "flush"]),
        "3 message(s) scheduled for immediate delivery\n"
    );
}

/// `queue delete ID`: both files gone, the list and flush count two.
fn delete_removes_one(d: &Daemon, b: &str) {
    assert_eq!(ok(d, &["queue", "delete", b]), format!("{b}: deleted\n"));
    assert!(!exists(d, "queue", format!("{b}.env")));
    assert!(!exists(d, "queue", format!("{b}.msg")));
    let list = ok(d, &["queue", "list"]);
    assert!(!list.contains(b), "{list}");
    assert!(list.trim_end().ends_with("in 2 Requests."), "{list}");
    assert_eq!(
        ok(d, &["queue", "flush"]),
        "2 message(s) scheduled for immediate delivery\n"
    );
}

/// Unknown and malformed IDs: a clear error, exit 1, nothing changed;
/// with several IDs the good ones are done.
fn bad_ids_change_nothing(d: &Daemon, c: &str) {
    for op in ["hold", "release", "delete"] {
        let err = fails(d, &["queue", op, ABSENT], "not in the queue");
        assert!(err.contains(ABSENT), "{err}");
        for bad in ["../../etc/passwd", "nonsense", "01arz3ndektsv4rrffq69g5fav"] {
            let err = fails(d, &["queue", op, bad], "invalid queue id");
            assert!(err.contains(bad), "{err}");
        }
    }
    fails(d, &["queue", "show", ABSENT], "no message");
    fails(d, &["queue", "show", "../queue"], "invalid queue id");
    // Several IDs: the good ones are done, the bad one makes the exit 1.
    let o = d.cli(&["queue", "hold", c, ABSENT]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(stdout(&o), format!("{c}: placed on hold\n"));
    assert_eq!(json(d)[c]["location"], "hold");
    ok(d, &["queue", "release", c]);
    assert_eq!(json(d).len(), 2, "nothing else changed");
}

/// mailq through a symlink prints what `queue list` prints.
fn mailq_symlink_lists_the_queue(d: &Daemon) {
    let links = tempfile::tempdir().unwrap();
    let mailq = links.path().join("mailq");
    std::os::unix::fs::symlink(bin(), &mailq).unwrap();
    let o = Command::new(&mailq)
        .env("POSTRELAY_CONFIG", &d.config)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), ok(d, &["queue", "list"]));
}

/// The mail log records the administrator's actions.
fn maillog_records_the_actions(d: &Daemon, a: &str, b: &str) {
    for needle in [
        format!("{a}: placed on hold"),
        format!("{a}: released from hold"),
        format!("{b}: removed"),
    ] {
        d.wait_maillog(&[&needle], 1);
    }
}

/// `queue delete --all`: nothing listed, queue/ empty, nothing to flush.
fn delete_all_empties_the_queue(d: &Daemon) {
    assert_eq!(
        ok(d, &["queue", "delete", "--all"]),
        "2 message(s) deleted\n"
    );
    assert_eq!(ok(d, &["queue", "list"]), "Mail queue is empty\n");
    assert_eq!(ok(d, &["queue", "list", "--json"]).trim(), "[]");
    let left: Vec<_> = std::fs::read_dir(d.spool().join("queue"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "queue/ after delete --all: {left:?}");
    assert_eq!(
        ok(d, &["queue", "flush"]),
        "0 message(s) scheduled for immediate delivery\n"
    );
}

/// Every change went through the daemon, and its index followed: a new
/// message, held, is not flushed.
fn the_daemon_s_index_followed(d: &Daemon) {
    let err = d.stderr();
    assert!(
        err.matches("control request").count() >= 10,
        "changes did not go through the control socket:\n{err}"
    );
    // Its index followed: a new message is the only one it flushes.
    let e = send(d.port, "eve@example.com", &["v@example.org"]);
    ok(d, &["queue", "hold", &e]);
    assert_eq!(
        ok(d, &["queue", "flush"]),
        "0 message(s) scheduled for immediate delivery\n"
    );
}

/// The direct changes are what the next daemon starts from, including a
/// hold made while it was down.
fn the_next_daemon_starts_from_the_changes(d: &mut Daemon) {
    d.restart();
    assert_eq!(ok(d, &["queue", "list"]), "Mail queue is empty\n");
    let e = send(d.port, "eve@example.com", &["v@example.org"]);
    assert!(d.stop().success());
    ok(d, &["queue", "hold", &e]);
    d.restart();
    assert_eq!(json(d)[&e]["location"], "hold");
    assert_eq!(
        ok(d, &["queue", "flush"]),
        "0 message(s) scheduled for immediate delivery\n",
        "a message held while the daemon was down is held after its start"
    );
}

#[test]
fn queue_commands_through_the_running_daemon() {
    queue_commands(Mode::Running);
}

#[test]
fn queue_commands_on_the_spool_without_a_daemon() {
    queue_commands(Mode::Stopped);
}

/// One message: `Request.`, not `Requests.`; a held message is counted.
#[test]
fn list_summary_for_one_message() {
    let d = Daemon::start();
    let id = send(d.port, "s@example.com", &["r@example.org"]);
    let size = json(&d)[&id]["size"].as_u64().unwrap();
    let list = ok(&d, &["queue", "list"]);
    assert_eq!(
        list.lines().last().unwrap(),
        format!("-- {} Kbytes in 1 Request.", size.div_ceil(1024))
    );
}

/// Runs `postrelay ARGS` as the user `nobody` (uid/gid 65534).
fn as_nobody(binary: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(binary)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("POSTRELAY_CONFIG")
        .output()
        .expect("run setpriv")
}

/// A user who is neither root nor the daemon's user cannot change the
/// queue: first the socket's mode (0600) keeps them out; with the mode
/// opened up (as a misconfiguration would), the daemon's peer-credential
/// check refuses them. Either way the message stays queued, not held.
#[test]
fn other_users_cannot_change_the_queue() {
    if !support::peers::require_root("running a command as nobody")
        || !support::peers::require("setpriv")
    {
        return;
    }
    let nobody = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(65534));
    assert!(
        matches!(nobody, Ok(Some(_))),
        "no user nobody (uid 65534) on this system: {nobody:?}"
    );
    let d = Daemon::start();
    let id = send(d.port, "s@example.com", &["r@example.org"]);
    let sock = d.dir.path().join("control.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket mode");

    // Let nobody reach the socket (not the spool) and run the program.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let public = tempfile::tempdir().unwrap();
    std::fs::set_permissions(public.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = public.path().join("postrelay");
    support::copy_executable(std::path::Path::new(bin()), &binary);
    let config = public.path().join("postrelay.toml");
    std::fs::copy(&d.config, &config).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

    let still_queued = |why: &str| {
        let q = json(&d);
        assert_eq!(q[&id]["location"], "queue", "{why}: {q:?}");
    };

    // 1. The socket's mode.
    for args in [
        vec!["queue", "hold", id.as_str()],
        vec!["queue", "delete", id.as_str()],
        vec!["queue", "delete", "--all"],
    ] {
        let o = as_nobody(&binary, &config, &args);
        assert!(!o.status.success(), "nobody ran {args:?}: {}", stdout(&o));
        assert!(
            stderr(&o).contains("ermission denied"),
            "{args:?} as nobody: {}",
            stderr(&o)
        );
        still_queued("socket mode 0600");
    }

    // 2. The peer-credential check, with the socket opened to everyone.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    for args in [
        vec!["queue", "hold", id.as_str()],
        vec!["queue", "delete", "--all"],
    ] {
        let o = as_nobody(&binary, &config, &args);
        assert!(!o.status.success(), "nobody ran {args:?}: {}", stdout(&o));
        assert!(
            stderr(&o).contains("only root or the postrelay user may change the queue"),
            "{args:?} as nobody through a 0666 socket: {}",
            stderr(&o)
        );
        still_queued("peer credentials");
    }
    // Root still can.
    ok(&d, &["queue", "hold", &id]);
}
