//! What a cron job on a server sees: `echo … | sendmail root` lands in
//! the mailbox of the human root is aliased to and never reaches the
//! provider, while mail to an outside address is relayed, with the sender
//! the provider accepts (`rewrite_senders`) in the envelope and `From:`.
//! Real parts: the sendmail command with a setgid postdrop, a real system
//! user, and a real Postfix as the provider.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use support::daemon::{Daemon, Options};
use support::install::Install;
use support::peers::require;
use support::provider::Provider;
use support::user::SystemUser as User;

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited 60 s for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn root_mail_stays_local_and_outside_mail_leaves_with_the_provider_sender() {
    if !(require("postfix") && require("useradd") && require("saslpasswd2")) {
        return;
    }
    let Some(inst) = Install::new() else { return };
    let p = Provider::start();
    let user = User::create("prroute");
    let secrets = tempfile::tempdir().unwrap();
    let d = aliasing_daemon(&p, &user, secrets.path());
    send_cron_report_and_alert(&inst, &d);
    assert_root_mail_in_the_maildir(&user);
    assert_alert_relayed_with_the_provider_sender(&p);
    assert_root_mail_never_relayed(&d, &p);
}

/// A daemon that relays to the provider `p`, with root aliased to `user`
/// and senders rewritten to alerts@example.com; its password and aliases
/// files are written in `secrets`.
fn aliasing_daemon(p: &Provider, user: &User, secrets: &std::path::Path) -> Daemon {
    let pw = secrets.join("password");
    std::fs::write(&pw, format!("{}\n", p.password)).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let aliases = secrets.join("aliases");
    std::fs::write(
        &aliases,
        format!(
            "# as in /etc/aliases\npostmaster: root\nroot: {}\n",
            user.name
        ),
    )
    .unwrap();
    let tail = format!(
        "[routing]\naliases = \"{aliases}\"\nrewrite_senders = \"alerts@example.com\"\n\
         [[relay]]\nname = \"provider\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"starttls\"\n\
         ca_file = \"{ca}\"\nusername = \"{u}\"\npassword_file = \"{pw}\"\n",
        aliases = aliases.display(),
        port = p.starttls_port,
        ca = p.ca_file().display(),
        u = p.user,
        pw = pw.display(),
    );
    Daemon::start_with(Options {
        tail,
        delivery: true,
        ..Options::default()
    })
}

/// Cron's report to root, and an alert to an outside address.
fn send_cron_report_and_alert(inst: &Install, d: &Daemon) {
    let out = inst.sendmail_run(d, &["root"], b"Subject: cron report\n\nall is well\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = inst.sendmail_run(
        d,
        &["ops@dest.example"],
        b"Subject: disk alert\n\n/ is 91% full\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Root's mail is in the aliased user's Maildir, owned by that user.
fn assert_root_mail_in_the_maildir(user: &User) {
    let local = wait_for("root's mail in the Maildir", || {
        let entry = std::fs::read_dir(user.maildir_new())
            .ok()?
            .flatten()
            .next()?;
        Some((
            std::fs::read_to_string(entry.path()).unwrap(),
            entry.metadata().unwrap(),
        ))
    });
    assert!(local.0.contains("Subject: cron report"), "{}", local.0);
    assert!(
        local
            .0
            .contains(&format!("Delivered-To: {}@relay.test", user.name)),
        "{}",
        local.0
    );
    assert!(
        local.0.contains("X-Original-To: root@relay.test"),
        "{}",
        local.0
    );
    assert!(
        local.0.contains("From: root <root@relay.test>"),
        "local mail keeps its sender: {}",
        local.0
    );
    let uid = nix::unistd::User::from_name(&user.name)
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&local.1), uid);
}

/// The alert reached the provider, with the sender it accepts.
fn assert_alert_relayed_with_the_provider_sender(p: &Provider) {
    let got = p.wait_delivered(1, Duration::from_secs(60));
    let alert = String::from_utf8_lossy(&got[0].1).into_owned();
    assert!(alert.contains("Subject: disk alert"), "{alert}");
    assert!(
        alert.starts_with("Return-Path: <alerts@example.com>"),
        "envelope sender: {alert}"
    );
    assert!(
        alert.contains("From: root <alerts@example.com>"),
        "From: rewritten, display name kept: {alert}"
    );
    assert!(
        alert.contains("X-Original-From: root <root@relay.test>"),
        "original kept: {alert}"
    );
}

/// And root's report never went to the provider. Once the queue is
/// empty, every delivery the daemon made is in its mail log: one local,
/// and only the alert relayed.
fn assert_root_mail_never_relayed(d: &Daemon, p: &Provider) {
    d.wait_queue_len(0);
    let log = d.wait_maillog_settled();
    let sent: Vec<&str> = log.lines().filter(|l| l.contains("status=sent")).collect();
    assert_eq!(sent.len(), 2, "{log}");
    let relayed: Vec<&&str> = sent.iter().filter(|l| !l.contains("relay=local")).collect();
    assert!(
        relayed.len() == 1 && relayed[0].contains("to=<ops@dest.example>"),
        "{log}"
    );
    let all = p.delivered();
    assert_eq!(all.len(), 1, "only the alert may reach the provider");
    assert!(!String::from_utf8_lossy(&all[0].1).contains("cron report"));
}

/// Per-sender relays (Postfix's sender_dependent_relayhost_maps; each
/// relay has its own credentials) and transport-map refusals, end to end.
#[test]
fn sender_relay_and_transport_entries_decide_where_mail_goes() {
    if !(require("postfix") && require("saslpasswd2")) {
        return;
    }
    let p = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("password");
    std::fs::write(&pw, format!("{}\n", p.password)).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sender_relay = dir.path().join("sender_relay");
    std::fs::write(&sender_relay, "@special.example relay:special\n").unwrap();
    let transport = dir.path().join("transport");
    std::fs::write(&transport, "refused.example error:5.7.1 mail to this domain is not allowed\ndiscard.example discard:\n").unwrap();
    let relay = |name: &str, port: u16, tls: &str| {
        format!(
            "[[relay]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\n\
             ca_file = \"{}\"\nusername = \"{}\"\npassword_file = \"{}\"\n",
            p.ca_file().display(),
            p.user,
            pw.display()
        )
    };
    let tail = format!(
        "[routing]\nsender_relay = \"{}\"\ntransport = \"{}\"\n{}{}",
        sender_relay.display(),
        transport.display(),
        relay("main", p.starttls_port, "starttls"),
        relay("special", p.implicit_port, "implicit"),
    );
    let d = Daemon::start_with(Options {
        tail,
        delivery: true,
        ..Options::default()
    });
    let send = |from: &str, to: &str| {
        let (mut c, _) = support::smtp::Raw::connect(d.port);
        c.cmd("EHLO client.example");
        assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).code, 250);
        assert_eq!(c.cmd(&format!("RCPT TO:<{to}>")).code, 250);
        c.cmd("DATA");
        assert_eq!(
            c.cmd(&format!("Subject: {from} to {to}\r\n\r\nbody\r\n."))
                .code,
            250
        );
        c.cmd("QUIT");
    };
    send("a@special.example", "x@dest.example");
    send("b@plain.example", "y@dest.example");
    send("c@plain.example", "z@refused.example");
    send("d@plain.example", "w@discard.example");
    p.wait_delivered(2, Duration::from_secs(60));
    let log = wait_for("four recipients decided", || {
        let log = d.maillog();
        // One line per recipient of ours (the bounce's own line does not count).
        let all = [
            "x@dest.example",
            "y@dest.example",
            "z@refused.example",
            "w@discard.example",
        ]
        .iter()
        .all(|r| log.contains(&format!("to=<{r}>")));
        all.then_some(log)
    });
    let line = |rcpt: &str| {
        log.lines()
            .find(|l| l.contains(&format!("to=<{rcpt}>")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("x@dest.example").contains(&format!(":{}, ", p.implicit_port)),
        "special sender, special relay: {log}"
    );
    assert!(
        line("y@dest.example").contains(&format!(":{}, ", p.starttls_port)),
        "others, the main relay: {log}"
    );
    let refused = line("z@refused.example");
    assert!(
        refused.contains("status=bounced")
            && refused.contains("refused by the transport map: 5.7.1"),
        "{log}"
    );
    assert!(
        line("w@discard.example").contains("status=sent"),
        "discard counts as done: {log}"
    );
    assert_eq!(
        p.delivered()
            .iter()
            .filter(|(_, m)| String::from_utf8_lossy(m).contains("discard.example"))
            .count(),
        0
    );
}
