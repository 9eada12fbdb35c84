//! Privilege separation, as root (CI runs as root; skipped otherwise, a
//! failure under `CI=true`): the daemon started as root speaks SMTP as an
//! unprivileged user, and only the local delivery helper, a separate
//! process, keeps root; mail to a local user is written by that user; the
//! helper refuses what a compromised daemon could ask of it.

mod support;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use postrelay::deliver::Outcome;
use postrelay::deliver::local::{LocalSettings, MailboxKind};
use postrelay::privsep::wire::Request;
use support::daemon::{Daemon, Options, bin};
use support::helper::Helper;
use support::peers::{require, require_root};
use support::user::SystemUser;
use tempfile::TempDir;

fn ready() -> bool {
    require("useradd") && require_root("privilege separation (useradd, starting as root)")
}

/// The `Uid:`/`Gid:`/`Groups:` values of `/proc/<pid>/status`.
fn ids(pid: u32) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = |key: &str| -> Vec<u32> {
        let l = status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in the status of {pid}"));
        l[key.len()..]
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    (line("Uid:"), line("Gid:"), line("Groups:"))
}

/// The children of `pid` whose command line contains `word`.
fn children(pid: u32, word: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces, so after the ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
        if ppid == Some(pid) && String::from_utf8_lossy(&cmdline).contains(word) {
            found.push(child);
        }
    }
    found
}

/// Sends a message from cron@relay.test to `to` with swaks; it must be
/// accepted.
fn swaks(port: u16, to: &str, subject: &str) {
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}")])
        .args(["--from", "cron@relay.test", "--to", to])
        .args(["--header", &format!("Subject: {subject}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Starts the daemon as root with `[daemon] user` a fresh system user.
fn daemon_as(user: &SystemUser) -> Daemon {
    Daemon::start_with(Options {
        daemon_user: Some(user.name.clone()),
        delivery: true,
        ..Options::default()
    })
}

#[test]
fn the_smtp_process_is_not_root_and_the_helper_is_separate() {
    if !ready() {
        return;
    }
    let account = SystemUser::create("prdaemon");
    let d = daemon_as(&account);
    let pw = nix::unistd::User::from_name(&account.name)
        .unwrap()
        .unwrap();
    let pid = d.pid() as u32;
    let (uids, gids, groups) = ids(pid);
    assert!(uids.iter().all(|&u| u != 0), "SMTP process uids {uids:?}");
    assert!(gids.iter().all(|&g| g != 0), "SMTP process gids {gids:?}");
    assert!(!groups.contains(&0), "supplementary groups {groups:?}");
    assert_eq!(uids, vec![pw.uid.as_raw(); 4]);
    assert_eq!(gids, vec![pw.gid.as_raw(); 4]);
    // It is the process that answers SMTP.
    let (mut c, greeting) = support::smtp::Raw::connect(d.port);
    assert_eq!(greeting.code, 220);
    assert_eq!(c.cmd("QUIT").code, 221);

    let helpers = children(pid, postrelay::privsep::HELPER_ARG);
    assert_eq!(helpers.len(), 1, "one local delivery helper: {helpers:?}");
    assert_ne!(helpers[0], pid);
    let (helper_uids, _, _) = ids(helpers[0]);
    assert_eq!(helper_uids, vec![0; 4], "the helper keeps root");
    // The spool is the daemon user's.
    let spool = std::fs::metadata(d.spool()).unwrap();
    assert_eq!(spool.uid(), pw.uid.as_raw());
}

#[test]
fn local_mail_is_written_by_its_recipient() {
    if !(ready() && require("swaks")) {
        return;
    }
    let account = SystemUser::create("prdaemon");
    let rcpt = SystemUser::create("prrcpt");
    let d = daemon_as(&account);
    swaks(d.port, &format!("{}@localhost", rcpt.name), "privsep");
    // Delivered (or bounced) and gone from the queue.
    d.wait_queue_len(0);
    let file = std::fs::read_dir(rcpt.maildir_new())
        .expect("a Maildir was made")
        .flatten()
        .next()
        .expect("the message is in the Maildir")
        .path();
    let owner = nix::unistd::User::from_name(&rcpt.name).unwrap().unwrap();
    let m = std::fs::metadata(&file).unwrap();
    assert_eq!((m.uid(), m.gid()), (owner.uid.as_raw(), owner.gid.as_raw()));
    let dir = std::fs::metadata(rcpt.maildir_new()).unwrap();
    assert_eq!(dir.uid(), owner.uid.as_raw(), "Maildir made by the user");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("Subject: privsep")
    );
    d.wait_queue_len(0);
}

/// Starts the daemon on `text` (written into `dir`), expects it to refuse
/// the start, and returns what it said.
fn refused_start(dir: &std::path::Path, text: &str) -> String {
    let config = dir.join("postrelay.toml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(bin())
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the start was not refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_missing_daemon_user_refuses_the_start_with_the_command_that_fixes_it() {
    if !ready() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let name = format!("prnobody{}", std::process::id());
    let opts = Options {
        daemon_user: None,
        ..Options::default()
    };
    let text = Daemon::config_text(dir.path(), support::daemon::free_port(), &opts)
        .replace("user = \"root\"", &format!("user = \"{name}\""));
    let err = refused_start(dir.path(), &text);
    assert!(err.contains(&format!("the user \"{name}\"")), "{err}");
    assert!(err.contains("useradd --system"), "{err}");
    assert!(!dir.path().join("spool").exists(), "nothing was started");
}

/// A spool under a directory the daemon user may not enter is refused
/// before the switch, naming that directory and the fix (not a bare
/// "Permission denied" from the spool after it).
#[test]
fn a_spool_the_daemon_user_cannot_reach_is_named_with_the_blocking_directory() {
    if !ready() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let opts = Options {
        daemon_user: Some("nobody".into()),
        ..Options::default()
    };
    let spool = dir.path().join("spool").display().to_string();
    let text = Daemon::config_text(dir.path(), support::daemon::free_port(), &opts).replace(
        &format!("spool = \"{spool}\""),
        &format!("spool = \"{}\"", locked.join("spool").display()),
    );
    assert!(text.contains("locked/spool"), "{text}");
    // The temporary directory itself lets nobody in; only `locked` does not.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let err = refused_start(dir.path(), &text);
    let want = format!("may not enter {} (mode 700, owner uid 0)", locked.display());
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("set spool to a directory"), "{err}");
}

fn request(helper: &Helper, user: &str) -> Request {
    Request {
        queue_id: helper.queue(b"Subject: x\r\n\r\nbody\r\n"),
        user: user.to_owned(),
        sender: "a@relay.test".to_owned(),
        recipient: format!("{user}@localhost"),
        original_recipient: None,
        catch_all: None,
    }
}

fn deferred_text(outcome: Outcome) -> String {
    match outcome {
        Outcome::Deferred(r) => r.to_string(),
        other => panic!("expected Deferred, got {other:?}"),
    }
}

#[test]
fn the_helper_refuses_a_queue_id_that_is_not_one() {
    if !ready() {
        return;
    }
    let rcpt = SystemUser::create("prrcpt");
    let helper = Helper::start(&LocalSettings::default());
    for bad in ["../../../etc/shadow", "", "01ARZ3NDEKTSV4RRFFQ69G5FA/"] {
        let mut req = request(&helper, &rcpt.name);
        req.queue_id = bad.to_owned();
        let text = deferred_text(helper.helper.deliver(&req));
        assert!(text.contains("local delivery helper refused"), "{text}");
    }
    assert!(rcpt.mail().is_empty());
    // The helper is still there for good requests.
    let out = helper.helper.deliver(&request(&helper, &rcpt.name));
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert_eq!(rcpt.mail().len(), 1);
}

#[test]
fn the_helper_refuses_an_unknown_user() {
    if !ready() {
        return;
    }
    let helper = Helper::start(&LocalSettings::default());
    let name = format!("prnouser{}", std::process::id());
    match helper.helper.deliver(&request(&helper, &name)) {
        Outcome::Failed(r) => assert_eq!(r.status(), "5.1.1", "{r}"),
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn the_helper_refuses_a_mailbox_that_is_a_symbolic_link() {
    if !ready() {
        return;
    }
    let rcpt = SystemUser::create("prrcpt");
    // Debian's /var/mail: root:mail 2775.
    let spool = TempDir::new().unwrap();
    let mail = nix::unistd::Group::from_name("mail")
        .unwrap()
        .map(|g| g.gid);
    nix::unistd::chown(spool.path(), Some(nix::unistd::Uid::from_raw(0)), mail).unwrap();
    std::fs::set_permissions(
        spool.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o2775),
    )
    .unwrap();
    let victim = spool.path().join("victim");
    std::fs::write(&victim, b"root's file\n").unwrap();
    std::os::unix::fs::symlink(&victim, spool.path().join(&rcpt.name)).unwrap();
    let helper = Helper::start(&LocalSettings {
        kind: MailboxKind::Mbox,
        mbox_dir: spool.path().to_path_buf(),
        ..LocalSettings::default()
    });
    let text = deferred_text(helper.helper.deliver(&request(&helper, &rcpt.name)));
    assert!(text.contains("symbolic link"), "{text}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"root's file\n");
}

#[test]
fn a_dead_helper_defers_local_mail() {
    if !ready() {
        return;
    }
    let rcpt = SystemUser::create("prrcpt");
    let helper = Helper::start(&LocalSettings::default());
    let pid = nix::unistd::Pid::from_raw(helper.helper.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    for _ in 0..2 {
        let text = deferred_text(helper.helper.deliver(&request(&helper, &rcpt.name)));
        assert!(
            text.contains("local delivery helper is not running"),
            "{text}"
        );
        assert!(text.contains("stays queued"), "{text}");
    }
}

/// Secret files must belong to the user the daemon runs as, not to root
/// who starts it: the drop happens after the first read, and a reload
/// (SIGHUP) reads them again as that user.
#[test]
fn secrets_belong_to_the_daemon_user_and_a_reload_rereads_them() {
    if !ready() {
        return;
    }
    let account = SystemUser::create("prdaemon");
    let pw = nix::unistd::User::from_name(&account.name)
        .unwrap()
        .unwrap();
    let secrets = TempDir::new().unwrap();
    std::fs::set_permissions(
        secrets.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let password = secrets.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    std::fs::set_permissions(
        &password,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let tail = format!(
        "[[relay]]\nname = \"provider\"\nhost = \"127.0.0.1\"\nport = 2\nusername = \"u\"\n\
         password_file = \"{}\"\n",
        password.display()
    );
    let opts = Options {
        daemon_user: Some(account.name.clone()),
        tail,
        ..Options::default()
    };
    // Root's file: refused, naming the daemon user and the fix.
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("postrelay.toml");
    std::fs::write(&config, Daemon::config_text(dir.path(), 2, &opts)).unwrap();
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a root-owned secret was accepted");
    assert!(
        err.contains(&format!("chown {} ", account.name)),
        "the fix names the daemon user: {err}"
    );

    nix::unistd::chown(&password, Some(pw.uid), None).unwrap();
    let d = Daemon::start_with(opts);
    assert_ne!(ids(d.pid() as u32).0[0], 0);
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let log = d.wait_stderr("configuration reloaded");
    assert!(!log.contains("configuration reload failed"), "{log}");
}

/// systemd's stop (and Ctrl-C in a terminal) signals the whole group; the
/// helper stays for the deliveries of the daemon's graceful stop and ends
/// when the daemon closes the pipe.
#[test]
fn the_helper_outlives_a_stop_signal() {
    if !ready() {
        return;
    }
    let rcpt = SystemUser::create("prrcpt");
    let helper = Helper::start(&LocalSettings::default());
    let pid = nix::unistd::Pid::from_raw(helper.helper.pid() as i32);
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        nix::sys::signal::kill(pid, sig).unwrap();
        let out = helper.helper.deliver(&request(&helper, &rcpt.name));
        assert!(matches!(out, Outcome::Delivered(_)), "after {sig}: {out:?}");
    }
    assert_eq!(rcpt.mail().len(), 3);
}

/// A mail spool directory as Debian's `/var/mail` (root:mail 2775).
fn mail_spool() -> TempDir {
    let dir = TempDir::new().unwrap();
    let mail = nix::unistd::Group::from_name("mail")
        .unwrap()
        .map(|g| g.gid);
    nix::unistd::chown(dir.path(), Some(nix::unistd::Uid::from_raw(0)), mail).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o2775),
    )
    .unwrap();
    dir
}

/// A delivery that outlives `[local] delivery_timeout` is killed, and the
/// helper goes on: here another program holds the mbox's dotlock, which
/// mbox delivery waits up to 10 s for, longer than the 1 s limit.
#[test]
fn a_delivery_past_its_time_limit_is_killed_and_deferred() {
    if !ready() {
        return;
    }
    let rcpt = SystemUser::create("prrcpt");
    let spool = mail_spool();
    let lock = spool.path().join(format!("{}.lock", rcpt.name));
    std::fs::write(&lock, b"4242\n").unwrap();
    let helper = Helper::start(&LocalSettings {
        kind: MailboxKind::Mbox,
        mbox_dir: spool.path().to_path_buf(),
        delivery_timeout: std::time::Duration::from_secs(1),
        ..LocalSettings::default()
    });
    let text = deferred_text(helper.helper.deliver(&request(&helper, &rcpt.name)));
    assert!(
        text.contains("did not finish within 1s ([local] delivery_timeout) and was killed"),
        "{text}"
    );
    assert!(text.contains(&format!("{}.lock", rcpt.name)), "{text}");
    assert!(text.contains("stays queued"), "{text}");
    // The whole delivery process is gone (killed and reaped).
    let left = children(helper.helper.pid(), postrelay::privsep::CHILD_ARG);
    assert!(left.is_empty(), "delivery processes left: {left:?}");
    // The helper serves the next request once the lock is gone.
    std::fs::remove_file(&lock).unwrap();
    let out = helper.helper.deliver(&request(&helper, &rcpt.name));
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    let mbox = std::fs::read_to_string(spool.path().join(&rcpt.name)).unwrap();
    assert_eq!(
        mbox.matches("\nFrom ").count() + 1,
        mbox.matches("From ").count()
    );
    assert_eq!(mbox.matches("Subject: x").count(), 1, "{mbox}");
}

/// The helper's death is reported when it happens, not at the next local
/// delivery: the error log names the fix and the gauge drops to 0.
#[test]
fn a_dead_helper_is_reported_at_once_in_the_log_and_the_metrics() {
    if !ready() {
        return;
    }
    let account = SystemUser::create("prdaemon");
    let metrics_port = support::daemon::free_port();
    let d = Daemon::start_with(Options {
        daemon_user: Some(account.name.clone()),
        delivery: true,
        tail: format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"),
        ..Options::default()
    });
    let up = "postrelay_local_helper_up";
    let (_, page) = support::http::get(metrics_port, "/metrics");
    assert_eq!(support::http::value(&page, up), 1.0, "{page}");
    let helpers = children(d.pid() as u32, postrelay::privsep::HELPER_ARG);
    assert_eq!(helpers.len(), 1, "{helpers:?}");
    let pid = nix::unistd::Pid::from_raw(helpers[0] as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let log = d.wait_stderr("the local delivery helper is gone");
    assert!(log.contains("restart postrelay"), "{log}");
    assert!(log.contains("signal: 9"), "{log}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, page) = support::http::get(metrics_port, "/metrics");
        if support::http::value(&page, up) == 0.0 && page.contains(&format!("{up} 0")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{up} stays:\n{page}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Mail for an alias of root goes to root's mailbox, written as root:
/// the per-delivery child keeps uid 0 for
/// uid 0 only, and its check that root cannot be regained does not apply.
#[test]
fn an_alias_of_root_is_delivered_as_root() {
    if !(ready() && require("swaks")) {
        return;
    }
    let account = SystemUser::create("prdaemon");
    let spool = mail_spool();
    let aliases = spool.path().join("aliases");
    std::fs::write(&aliases, "postmaster: root\n").unwrap();
    let d = Daemon::start_with(Options {
        daemon_user: Some(account.name.clone()),
        delivery: true,
        tail: format!(
            "[routing]\naliases = \"{}\"\n[local]\nmailbox = \"mbox\"\nmbox_dir = \"{}\"\n",
            aliases.display(),
            spool.path().display()
        ),
        ..Options::default()
    });
    swaks(d.port, "postmaster@localhost", "for root");
    d.wait_queue_len(0);
    let mbox = spool.path().join("root");
    let m = std::fs::metadata(&mbox).expect("root's mbox was written");
    assert_eq!(m.uid(), 0, "root's mbox belongs to root");
    let text = std::fs::read_to_string(&mbox).unwrap();
    assert!(
        text.contains("X-Original-To: postmaster@localhost"),
        "{text}"
    );
    assert!(text.contains("Subject: for root"), "{text}");
}

/// A `[daemon] user` that is root in disguise (here: primary group 0) is
/// refused at the start, with what to write instead.
#[test]
fn a_daemon_user_with_group_0_is_refused() {
    if !(ready() && require("usermod")) {
        return;
    }
    let account = SystemUser::create("prgid0");
    let own_group = account.name.clone();
    let out = Command::new("usermod")
        .args(["-g", "0", &account.name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = TempDir::new().unwrap();
    let opts = Options {
        daemon_user: Some(account.name.clone()),
        ..Options::default()
    };
    let config = dir.path().join("postrelay.toml");
    let text = Daemon::config_text(dir.path(), support::daemon::free_port(), &opts);
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("postrelay started as a user of group 0");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = Command::new("groupdel").arg(&own_group).output();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("has uid or gid 0"), "{err}");
    assert!(err.contains(&account.name), "{err}");
    assert!(!dir.path().join("spool").exists(), "nothing was started");
}
