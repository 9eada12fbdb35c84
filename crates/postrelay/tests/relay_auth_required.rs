//! A provider that wants AUTH, reached by a relay configured without
//! credentials, answers MAIL FROM with "530 5.7.0 Authentication
//! required" (as SES and Gmail do). That is the operator's mistake, not
//! the sender's: the mail waits with the fix in its reason and is never
//! bounced; once the credentials are added (SIGHUP) it goes out.
//! Real peer: the Postfix provider of the relay tests.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::daemon::{Daemon, Options};
use support::peers::require;
use support::provider::Provider;
use support::smtp::Raw;

/// Polls `f` every 100 ms until it gives a value; panics after `limit`.
fn until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited {limit:?} for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn relay(p: &Provider, credentials: &str) -> String {
    format!(
        "[[relay]]\nname = \"provider\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\n\
         ca_file = \"{}\"\n{credentials}",
        p.starttls_port,
        p.ca_file().display(),
    )
}

#[test]
fn authentication_required_waits_for_the_operator_then_delivers() {
    if !(require("postfix") && require("saslpasswd2")) {
        return;
    }
    let p = Provider::start();
    let opts = Options {
        tail: relay(&p, ""),
        delivery: true,
        ..Options::default()
    };
    let d = Daemon::start_with(opts.clone());

    let (mut c, _) = Raw::connect(d.port);
    c.cmd("EHLO app.example");
    assert_eq!(c.cmd("MAIL FROM:<app@example.net>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<user@dest.example>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let reply = c.cmd("Subject: needs auth\r\n\r\nbody\r\n.");
    assert_eq!(reply.code, 250);
    c.cmd("QUIT");
    let id = reply.text().rsplit(' ').next().unwrap().to_string();

    // The attempt is refused with 530: deferred, with the fix named.
    let q = until("the 530 deferral", Duration::from_secs(60), || {
        let q = d.queue();
        let reason = q.first()?["reason"].as_str()?.to_owned();
        reason.contains("530").then_some((q, reason))
    });
    let (q, reason) = q;
    assert_eq!(q.len(), 1, "no bounce was queued: {q:#?}");
    assert_eq!(q[0]["id"], id.as_str());
    assert!(
        reason.contains("password_file"),
        "the reason names the fix: {reason}"
    );
    let log = d.wait_maillog(&["status=deferred"], 1);
    assert!(!log.contains("status=bounced"), "{log}");

    // The operator adds the credentials and reloads; the mail goes out.
    let pw = d.dir.path().join("password");
    std::fs::write(&pw, format!("{}\n", p.password)).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let creds = format!(
        "username = \"{}\"\npassword_file = \"{}\"\n",
        p.user,
        pw.display()
    );
    d.rewrite_config(&Options {
        tail: relay(&p, &creds),
        ..opts
    });
    d.signal(nix::sys::signal::Signal::SIGHUP);
    until("the reload", Duration::from_secs(20), || {
        d.stderr().contains("configuration reloaded").then_some(())
    });
    assert!(d.cli(&["queue", "flush"]).status.success());
    let got = p.wait_delivered(1, Duration::from_secs(60));
    assert!(String::from_utf8_lossy(&got[0].1).contains("Subject: needs auth"));
    d.wait_queue_len(0);
}
