//! The mail log is read correctly by the real `pflogsumm`: a day of
//! traffic written through `MailLog` (intake, deliveries, a deferral, a
//! bounce and its notice, an expiry, a warning) must come out of
//! `pflogsumm --syslog-name=postrelay` with the right Grand Totals and
//! details. If pflogsumm cannot count a line, the format is wrong, not
//! this test.

mod support;

use support::pflogsumm::{grand_totals, run_pflogsumm};

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use postrelay::config::LogFormat;
use postrelay::maillog::{Delays, Delivery, DeliveryStatus, MailLog, SaslLogin, relay_name};
use postrelay::spool::{Envelope, Origin, QueueId, Recipient};

const RELAY_HOST: &str = "smtp.example.com";

fn relay() -> String {
    relay_name(RELAY_HOST, Some(SocketAddr::from(([192, 0, 2, 25], 587))))
}

fn message(sender: &str, rcpts: &[&str], size: u64) -> Envelope {
    let mut env = Envelope::new(
        QueueId::generate(),
        Origin::Smtp {
            peer: "192.0.2.10:50432".into(),
            helo: "app1.example.net".into(),
        },
        sender.to_string(),
        rcpts.iter().map(|r| Recipient::new(*r)).collect(),
    );
    env.size = size;
    env
}

fn delays() -> Delays {
    Delays {
        before_active: Duration::from_millis(12),
        queue_mgr: Duration::from_micros(300),
        conn_setup: Duration::from_millis(420),
        transmission: Duration::from_millis(180),
    }
}

fn sent<'a>(rcpt: &'a str, relay: &'a str, detail: &'a str) -> Delivery<'a> {
    Delivery {
        rcpt,
        orig_rcpt: None,
        relay,
        conn_use: 1,
        delay: Duration::from_millis(612),
        delays: delays(),
        dsn: "2.0.0",
        status: DeliveryStatus::Sent,
        detail,
    }
}

/// Writes the day's log; returns the bytes received by intake.
fn write_day(log: &MailLog) -> u64 {
    let client: IpAddr = "192.0.2.10".parse().unwrap();
    let relay = relay();
    let mut received = delivered_at_first_attempt(log, client, &relay);
    received += deferred_then_delivered(log, client, &relay);
    received += bounced_with_its_notice(log, client, &relay);
    received += expired_and_returned(log, client);
    received
}

/// Three messages delivered at the first attempt (one over a reused
/// connection, which Postfix logs with conn_use=); returns their size.
fn delivered_at_first_attempt(log: &MailLog, client: IpAddr, relay: &str) -> u64 {
    let mut received = 0;
    for (i, rcpt) in ["alice@example.org", "bob@example.org", "carol@example.com"]
        .iter()
        .enumerate()
    {
        let env = message("app@example.net", &[rcpt], 1000 + i as u64);
        received += env.size;
        let id = env.id.to_string();
        // The last came through the submission listener, authenticated.
        let login = (i == 2).then_some(SaslLogin {
            method: "PLAIN",
            username: "alice",
        });
        log.client(&id, "app1.example.net", client, login);
        log.queued(&env);
        log.delivery(
            &id,
            &Delivery {
                conn_use: i as u32 + 1,
                ..sent(rcpt, relay, "250 2.0.0 Ok: queued as 4XyZ1")
            },
        );
        log.removed(&id);
    }
    received
}

/// One deferred (greylisted), then delivered; returns its size.
fn deferred_then_delivered(log: &MailLog, client: IpAddr, relay: &str) -> u64 {
    let env = message("app@example.net", &["dave@example.org"], 2000);
    let received = env.size;
    let id = env.id.to_string();
    log.client(&id, "app1.example.net", client, None);
    log.queued(&env);
    log.delivery(
        &id,
        &Delivery {
            status: DeliveryStatus::Deferred,
            dsn: "4.7.1",
            detail: "host smtp.example.com[192.0.2.25] said: 451 4.7.1 Greylisted, try again later (in reply to RCPT TO)",
            ..sent("dave@example.org", relay, "")
        },
    );
    log.delivery(
        &id,
        &Delivery {
            delay: Duration::from_secs(312),
            delays: Delays {
                before_active: Duration::from_secs(311),
                ..delays()
            },
            ..sent("dave@example.org", relay, "250 2.0.0 Ok: queued as 4XyZ2")
        },
    );
    log.removed(&id);
    received
}

/// One bounced; its notice is queued with the null sender and delivered.
/// Returns the bounced message's size (the notice is not received).
fn bounced_with_its_notice(log: &MailLog, client: IpAddr, relay: &str) -> u64 {
    let env = message("app@example.net", &["nobody@example.org"], 3000);
    let received = env.size;
    let id = env.id.to_string();
    log.client(&id, "app1.example.net", client, None);
    log.queued(&env);
    log.delivery(
        &id,
        &Delivery {
            orig_rcpt: Some("Nobody@example.org"),
            status: DeliveryStatus::Bounced,
            dsn: "5.1.1",
            detail: "host smtp.example.com[192.0.2.25] said: 550 5.1.1 <nobody@example.org>: Recipient address rejected (in reply to RCPT TO)",
            ..sent("nobody@example.org", relay, "")
        },
    );
    let notice = QueueId::generate().to_string();
    log.bounce_created(&id, &notice);
    log.removed(&id);
    let mut dsn = message("", &["app@example.net"], 2500);
    dsn.origin = Origin::Bounce {
        of: Some(id.clone()),
    };
    // A notice is not received from a client: only the qmgr line, as Postfix.
    log.line(
        "qmgr",
        &notice,
        &format!("from=<>, size={}, nrcpt=1 (queue active)", dsn.size),
    );
    log.delivery(
        &notice,
        &sent("app@example.net", relay, "250 2.0.0 Ok: queued as 4XyZ3"),
    );
    log.removed(&notice);
    received
}

/// One that never gets through: deferred (no connection), a warning,
/// then expired and returned. Returns its size.
fn expired_and_returned(log: &MailLog, client: IpAddr) -> u64 {
    let env = message("batch@example.net", &["erin@example.org"], 4000);
    let received = env.size;
    let id = env.id.to_string();
    log.client(&id, "app1.example.net", client, None);
    log.queued(&env);
    log.delivery(
        &id,
        &Delivery {
            status: DeliveryStatus::Deferred,
            dsn: "4.4.1",
            delays: Delays {
                conn_setup: Duration::from_secs(30),
                transmission: Duration::ZERO,
                ..delays()
            },
            detail: "connect to smtp.example.com[192.0.2.25]:587: Connection timed out",
            ..sent("erin@example.org", "none", "")
        },
    );
    log.warning(&id, "TLS certificate of smtp.example.com has expired");
    log.expired(&id, "batch@example.net");
    log.bounce_created(&id, &QueueId::generate().to_string());
    log.removed(&id);
    received
}

/// The lines of a report section, up to the next blank-line-separated
/// section title.
fn section<'r>(report: &'r str, title: &str) -> &'r str {
    let start = report
        .find(title)
        .unwrap_or_else(|| panic!("no {title:?} section in:\n{report}"));
    let rest = &report[start..];
    let end = rest[title.len()..]
        .find("\n\n\n")
        .map_or(rest.len(), |e| e + title.len());
    &rest[..end]
}

#[test]
fn pflogsumm_counts_our_mail_log() {
    if !support::peers::require("pflogsumm") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maillog");
    let file = std::fs::File::create(&path).unwrap();
    let log = MailLog::with_writer(Box::new(file), "relay.example.net", LogFormat::Postfix);
    let bytes = write_day(&log);
    drop(log);

    let report = run_pflogsumm(&path);
    let report = format!(
        "{report}\n--- mail log ---\n{}",
        std::fs::read_to_string(&path).unwrap()
    );
    let totals = grand_totals(&report);
    let want = [
        // Every message that came from a client; not the bounce notice.
        ("received", 6),
        // 3 first-time + 1 after its deferral + the bounce notice.
        ("delivered", 5),
        ("forwarded", 0),
        // Two messages, one deferral each.
        ("deferred", 2),
        ("bounced", 1),
        ("rejected", 0),
        ("bytes received", bytes),
        // 1000 + 1001 + 1002 + 2000 + the 2500-byte notice.
        ("bytes delivered", 7503),
        ("senders", 2),
        ("recipients", 5),
        ("recipient hosts/domains", 3),
    ];
    for (label, n) in want {
        assert_eq!(
            totals.get(label),
            Some(&n),
            "{label}: totals {totals:?}\n{report}"
        );
    }
    assert!(report.contains("(2  deferrals)"), "{report}");

    let bounces = section(&report, "message bounce detail (by relay)");
    assert!(
        bounces.contains("smtp.example.com[192.0.2.25]:587"),
        "{bounces}"
    );
    assert!(bounces.contains("Recipient address rejected"), "{bounces}");
    let deferrals = section(&report, "message deferral detail");
    assert!(deferrals.contains("smtp (total: 2)"), "{deferrals}");
    assert!(deferrals.contains("Greylisted"), "{deferrals}");
    // pflogsumm cuts warnings to 66 characters; the queue id leads.
    let warnings = section(&report, "Warnings");
    assert!(warnings.contains("smtp (total: 1)"), "{warnings}");
    assert!(
        warnings.contains(": TLS certificate of smtp.example.com"),
        "{warnings}"
    );
}
