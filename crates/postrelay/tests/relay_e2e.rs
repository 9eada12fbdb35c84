//! Relay delivery end to end: clients hand mail to the real `postrelay`
//! daemon, which relays it to a real Postfix configured like a provider
//! (STARTTLS + AUTH on one port, implicit TLS + AUTH on another, its own
//! CA). What a user would meet: byte-exact delivery through both modes,
//! the wrong-TLS-mode hint, a wrong password fixed by SIGHUP, an outage,
//! temporary and permanent refusals with a bounce, failover, and
//! connection reuse.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::daemon::{Daemon, Options};
use support::deadport::DeadPort;
use support::peers::require;
use support::provider::Provider;
use support::smtp::Raw;

fn peers() -> bool {
    require("postfix") && require("saslpasswd2")
}

/// A directory for secrets (0700) with the password in a 0600 file.
fn password_file(password: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay-password");
    std::fs::write(&path, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir, path)
}

/// A `[[relay]]` table for the provider.
fn relay(
    name: &str,
    port: u16,
    tls: &str,
    p: &Provider,
    password_file: &std::path::Path,
    extra: &str,
) -> String {
    format!(
        "[[relay]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\n\
         ca_file = \"{ca}\"\nusername = \"{user}\"\npassword_file = \"{pw}\"\n{extra}\n",
        ca = p.ca_file().display(),
        user = p.user,
        pw = password_file.display(),
    )
}

/// Sends one message with a raw client; returns its queue id.
fn send(port: u16, from: &str, to: &[&str], message: &[u8]) -> String {
    let (mut c, greeting) = Raw::connect(port);
    assert_eq!(greeting.code, 220);
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    let eight_bit = if message.is_ascii() {
        ""
    } else {
        " BODY=8BITMIME"
    };
    assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>{eight_bit}")).code, 250);
    for r in to {
        assert_eq!(c.cmd(&format!("RCPT TO:<{r}>")).code, 250);
    }
    assert_eq!(c.cmd("DATA").code, 354);
    // Dot-stuffing, as every SMTP client must (RFC 5321 4.5.2).
    let mut stuffed = Vec::with_capacity(message.len() + 16);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    c.send(&stuffed);
    let reply = c.cmd(".");
    assert_eq!(reply.code, 250, "{reply:?}");
    let id = reply.text().rsplit(' ').next().unwrap().to_string();
    c.cmd("QUIT");
    id
}

/// A message with its own Date and Message-ID (so postrelay adds only its
/// Received header), 8-bit text and a line that needs dot-stuffing.
fn message(tag: &str) -> Vec<u8> {
    let mut m = format!(
        "From: Sender <sender@example.org>\r\nTo: rcpt@dest.example\r\nSubject: {tag}\r\n\
         Date: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{tag}@client.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice("Grüße aus Köln, ½ € — ".as_bytes());
    m.extend_from_slice(tag.as_bytes());
    m.extend_from_slice(b"\r\n.leading dot line\r\n\r\nlast line\r\n");
    m
}

/// Asserts the provider received `original` unchanged (after the headers
/// Postfix and postrelay put in front), with the envelope intact.
fn assert_delivered_exactly(delivered: &[u8], original: &[u8], sender: &str, rcpt: &str) {
    let crlf = String::from_utf8_lossy(delivered)
        .replace('\n', "\r\n")
        .into_bytes();
    // Postfix stores LF; every CRLF of ours became LF, so mapping back is exact.
    assert!(
        crlf.ends_with(original),
        "the body or headers changed on the way:\n{}",
        String::from_utf8_lossy(delivered)
    );
    let text = String::from_utf8_lossy(delivered);
    assert!(
        text.starts_with(&format!("Return-Path: <{sender}>")),
        "envelope sender: {text}"
    );
    assert!(
        text.contains(&format!("X-Original-To: {rcpt}")),
        "envelope recipient: {text}"
    );
    assert!(
        text.contains("by relay.test (postrelay)"),
        "our Received header: {text}"
    );
}

fn queue_text(d: &Daemon) -> String {
    String::from_utf8(d.cli(&["queue", "list"]).stdout).unwrap()
}

/// Waits (bounded) until `f(queue list text)` holds.
fn wait_queue(d: &Daemon, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let q = queue_text(d);
        if f(&q) {
            return q;
        }
        assert!(
            Instant::now() < deadline,
            "waited 60 s for {what}; queue:\n{q}\nstderr:\n{}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn delivers_byte_exact_through_starttls_and_implicit_tls() {
    if !peers() {
        return;
    }
    let p = Provider::start();
    let (_s, pw) = password_file(&p.password);
    for (i, (port, tls)) in [(p.starttls_port, "starttls"), (p.implicit_port, "implicit")]
        .into_iter()
        .enumerate()
    {
        let d = Daemon::start_with(Options {
            tail: relay("provider", port, tls, &p, &pw, ""),
            delivery: true,
            ..Options::default()
        });
        let original = message(&format!("mode-{tls}"));
        send(
            d.port,
            "sender@example.org",
            &["rcpt@dest.example"],
            &original,
        );
        let got = p.wait_delivered(i + 1, Duration::from_secs(60));
        let mine = got
            .iter()
            .find(|(_, m)| String::from_utf8_lossy(m).contains(&format!("mode-{tls}")))
            .unwrap();
        assert_delivered_exactly(
            &mine.1,
            &original,
            "sender@example.org",
            "rcpt@dest.example",
        );
        d.wait_queue_len(0);
        let log = d.wait_maillog_settled();
        assert!(
            log.contains("to=<rcpt@dest.example>, relay=127.0.0.1[127.0.0.1]:"),
            "{log}"
        );
        assert!(log.contains("status=sent (250 "), "{log}");
    }
}

#[test]
fn auto_finds_the_mode_of_each_port() {
    if !peers() {
        return;
    }
    let p = Provider::start();
    let (_s, pw) = password_file(&p.password);
    for (i, port) in [p.starttls_port, p.implicit_port].into_iter().enumerate() {
        let d = Daemon::start_with(Options {
            tail: relay("provider", port, "auto", &p, &pw, ""),
            delivery: true,
            ..Options::default()
        });
        send(
            d.port,
            "sender@example.org",
            &["rcpt@dest.example"],
            &message(&format!("auto-{port}")),
        );
        p.wait_delivered(i + 1, Duration::from_secs(60));
        d.wait_queue_len(0);
    }
}

#[test]
fn a_wrong_tls_mode_defers_with_the_fix() {
    if !peers() {
        return;
    }
    let p = Provider::start();
    let (_s, pw) = password_file(&p.password);
    let short = "[relay.timeouts]\ngreeting = \"3s\"\ntls = \"3s\"\n";
    for (port, tls, hint) in [
        (p.implicit_port, "starttls", "tls = \"implicit\""),
        (p.starttls_port, "implicit", "tls = \"starttls\""),
    ] {
        let mut d = Daemon::start_with(Options {
            tail: relay("provider", port, tls, &p, &pw, short),
            delivery: true,
            ..Options::default()
        });
        let id = send(
            d.port,
            "sender@example.org",
            &["rcpt@dest.example"],
            &message("wrong-mode"),
        );
        let q = wait_queue(&d, "the deferral", |q| q.contains(hint));
        assert!(q.contains(&id), "{q}");
        assert!(d.is_running(), "a wrong TLS mode must not stop the daemon");
    }
    assert!(
        p.delivered().is_empty(),
        "nothing may be delivered in the wrong mode"
    );
}

#[test]
fn a_wrong_password_waits_until_fixed_and_reloaded() {
    if !peers() {
        return;
    }
    let p = Provider::start();
    let (_s, pw) = password_file("not-the-password");
    let d = Daemon::start_with(Options {
        tail: relay(
            "provider",
            p.starttls_port,
            "starttls",
            &p,
            &pw,
            "verbose = true",
        ),
        delivery: true,
        ..Options::default()
    });
    send(
        d.port,
        "sender@example.org",
        &["rcpt@dest.example"],
        &message("password"),
    );
    let q = wait_queue(&d, "the AUTH failure", |q| q.contains("535"));
    let show = d.queue()[0]["transcript"].to_string();
    assert!(show.contains("<redacted>"), "{show}");
    // The daemon logs at debug level, and the relay is verbose (its
    // whole conversation logged as it happens).
    assert!(
        d.stderr().contains("AUTH PLAIN <redacted>"),
        "{}",
        d.stderr()
    );
    let secret = "not-the-password";
    use support::secrets::assert_absent;
    assert_absent("the queue listing", &q, &p.user, secret);
    assert_absent("the transcript", &show, &p.user, secret);
    assert_absent("the mail log", &d.maillog(), &p.user, secret);
    assert_absent("the debug log", &d.stderr(), &p.user, secret);
    std::fs::write(&pw, format!("{}\n", p.password)).unwrap();
    d.signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.stderr().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "no reload: {}", d.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.cli(&["queue", "flush"]).status.success());
    p.wait_delivered(1, Duration::from_secs(60));
    d.wait_queue_len(0);
}

#[test]
fn an_outage_defers_and_a_flush_delivers_after_recovery() {
    if !peers() {
        return;
    }
    let p = Provider::start();
    let (_s, pw) = password_file(&p.password);
    let d = Daemon::start_with(Options {
        tail: relay("provider", p.starttls_port, "starttls", &p, &pw, ""),
        delivery: true,
        ..Options::default()
    });
    p.stop();
    send(
        d.port,
        "sender@example.org",
        &["rcpt@dest.example"],
        &message("outage"),
    );
    wait_queue(&d, "the deferral", |q| q.contains("cannot connect"));
    p.restart();
    assert!(d.cli(&["queue", "flush"]).status.success());
    p.wait_delivered(1, Duration::from_secs(60));
    d.wait_queue_len(0);
    let log = d.wait_maillog_settled();
    assert!(
        log.contains("status=deferred") && log.contains("status=sent"),
        "{log}"
    );
}

#[test]
fn a_temporary_refusal_waits_and_a_permanent_one_bounces_to_the_sender() {
    if !peers() {
        return;
    }
    let p = Provider::start();
    let (_s, pw) = password_file(&p.password);
    let d = Daemon::start_with(Options {
        tail: relay("provider", p.starttls_port, "starttls", &p, &pw, ""),
        delivery: true,
        ..Options::default()
    });
    send(
        d.port,
        "sender@example.org",
        &[
            "ok@dest.example",
            "fail451@dest.example",
            "fail550@dest.example",
        ],
        &message("refusals"),
    );
    // ok@ is delivered; the bounce for fail550@ goes back to the sender
    // through the same relay; fail451@ waits.
    let got = p.wait_delivered(2, Duration::from_secs(60));
    let dsn = got
        .iter()
        .map(|(_, m)| String::from_utf8_lossy(m).into_owned())
        .find(|m| m.contains("multipart/report"))
        .expect("a DSN reached the sender");
    assert!(dsn.contains("X-Original-To: sender@example.org"), "{dsn}");
    assert!(
        dsn.contains("Final-Recipient: rfc822; fail550@dest.example"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Action: failed") && dsn.contains("550"),
        "the provider's reply is quoted: {dsn}"
    );
    // The bounce may be delivered before the original's envelope is
    // rewritten: wait for the rewritten state, where only fail451@ waits.
    wait_queue(&d, "only the deferred recipient", |q| {
        q.contains("fail451@dest.example")
            && !q.contains("ok@dest.example")
            && !q.contains("fail550@dest.example")
    });
    // The log's own thread writes a moment after the queue changes.
    d.wait_maillog(&["to=<fail451@dest.example>", "status=deferred"], 1);
    d.wait_maillog(&["to=<fail550@dest.example>", "status=bounced"], 1);
    d.wait_maillog(&["sender non-delivery notification"], 1);
    // The real pflogsumm reads our log the way operators will. The
    // provider stores a message before it answers 250, so wait for our own
    // "sent" lines (the recipient's and the bounce's) first.
    d.wait_maillog(&["status=sent"], 2);
    if require("pflogsumm") {
        let totals = support::pflogsumm::grand_totals(&support::pflogsumm::run_pflogsumm(
            &d.dir.path().join("mail.log"),
        ));
        let n = |k: &str| totals.get(k).copied().unwrap_or(0);
        assert_eq!(n("received"), 1, "{totals:?}");
        assert_eq!(
            n("delivered"),
            2,
            "ok@ and the bounce to the sender: {totals:?}"
        );
        assert_eq!(n("bounced"), 1, "{totals:?}");
        assert!(n("deferred") >= 1, "{totals:?}");
    }
}

#[test]
fn the_secondary_relay_takes_over_when_the_primary_is_down() {
    if !peers() {
        return;
    }
    let p = Provider::start();
    let (_s, pw) = password_file(&p.password);
    let dead = DeadPort::new();
    let tail = format!(
        "{}{}",
        relay("primary", dead.port(), "starttls", &p, &pw, ""),
        relay("secondary", p.implicit_port, "implicit", &p, &pw, "")
    );
    let d = Daemon::start_with(Options {
        tail,
        delivery: true,
        ..Options::default()
    });
    send(
        d.port,
        "sender@example.org",
        &["rcpt@dest.example"],
        &message("failover"),
    );
    p.wait_delivered(1, Duration::from_secs(60));
    d.wait_queue_len(0);
    let log = d.wait_maillog_settled();
    assert!(
        log.contains(&format!("relay=127.0.0.1[127.0.0.1]:{}", p.implicit_port)),
        "{log}"
    );
}

#[test]
fn many_messages_share_few_connections() {
    if !peers() || !require("smtp-source") {
        return;
    }
    let p = Provider::start();
    let (_s, pw) = password_file(&p.password);
    let d = Daemon::start_with(Options {
        tail: relay(
            "provider",
            p.starttls_port,
            "starttls",
            &p,
            &pw,
            "max_connections = 4",
        ),
        delivery: true,
        ..Options::default()
    });
    let n = 1000;
    let status = std::process::Command::new("smtp-source")
        .args([
            "-s",
            "10",
            "-m",
            &n.to_string(),
            "-l",
            "512",
            "-f",
            "sender@example.org",
            "-t",
            "rcpt@dest.example",
        ])
        .arg(format!("127.0.0.1:{}", d.port))
        .status()
        .unwrap();
    assert!(status.success());
    let got = p.wait_delivered(n, Duration::from_secs(240));
    assert_eq!(got.len(), n);
    d.wait_queue_len(0);
    let connects = p
        .maillog()
        .lines()
        .filter(|l| l.contains("smtpd") && l.contains(": connect from"))
        .count();
    assert!(
        connects > 0,
        "the provider log shows no connections:\n{}",
        p.maillog()
    );
    assert!(
        connects * 10 <= n,
        "{connects} connections for {n} messages: connections are not reused"
    );
}

/// A relay reached by an address its certificate does not name (here the
/// IPv4-mapped IPv6 form of 127.0.0.1; the certificate is for localhost
/// and 127.0.0.1): without tls_name the mail waits with a reason that
/// points at tls_name; with tls_name = "localhost" it is delivered over
/// verified TLS.
#[test]
fn tls_name_verifies_a_relay_reached_by_another_name() {
    if !peers() {
        return;
    }
    let p = Provider::start();
    let (_s, pw) = password_file(&p.password);
    let mapped = |extra: &str| {
        relay("provider", p.starttls_port, "starttls", &p, &pw, extra)
            .replace("host = \"127.0.0.1\"", "host = \"::ffff:127.0.0.1\"")
    };
    let d = Daemon::start_with(Options {
        tail: mapped(""),
        delivery: true,
        ..Options::default()
    });
    send(
        d.port,
        "s@example.org",
        &["rcpt@dest.example"],
        &message("no-name"),
    );
    let q = wait_queue(&d, "a certificate name failure", |q| q.contains("tls_name"));
    assert!(
        q.contains("not valid for the name \"::ffff:127.0.0.1\""),
        "{q}"
    );
    assert!(
        !q.contains("encrypt"),
        "never advise lowering security: {q}"
    );
    assert!(p.delivered().is_empty());
    drop(d);

    let d = Daemon::start_with(Options {
        tail: mapped("tls_name = \"localhost\""),
        delivery: true,
        ..Options::default()
    });
    send(
        d.port,
        "s@example.org",
        &["rcpt@dest.example"],
        &message("tls-name"),
    );
    let got = p.wait_delivered(1, Duration::from_secs(60));
    assert!(String::from_utf8_lossy(&got[0].1).contains("tls-name"));
}

/// A relay named by the transport map (`relay:NAME`) fails over to its
/// own `fallbacks`, as the default list does: the named relay refuses
/// connections, the fallback (the real provider) delivers.
#[test]
fn a_named_relay_fails_over_to_its_fallbacks() {
    if !peers() {
        return;
    }
    let p = Provider::start();
    let (s, pw) = password_file(&p.password);
    let transport = s.path().join("transport");
    std::fs::write(&transport, "*    relay:dead\n").unwrap();
    // Nothing listens on `closed`: connections are refused at once.
    let dead = DeadPort::new();
    let closed = dead.port();
    let tail = format!(
        "[routing]\ntransport = \"{}\"\n{}{}",
        transport.display(),
        relay(
            "dead",
            closed,
            "starttls",
            &p,
            &pw,
            "fallbacks = [\"provider\"]"
        ),
        relay("provider", p.starttls_port, "starttls", &p, &pw, ""),
    );
    let d = Daemon::start_with(Options {
        tail,
        delivery: true,
        ..Options::default()
    });
    send(
        d.port,
        "s@example.org",
        &["rcpt@dest.example"],
        &message("fallback"),
    );
    let got = p.wait_delivered(1, Duration::from_secs(60));
    assert!(String::from_utf8_lossy(&got[0].1).contains("fallback"));
    d.wait_queue_len(0);
}
