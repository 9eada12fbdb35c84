//! Intake's header fixes with a raw client: `Date:` and `Message-ID:`
//! added once when the client sent none, kept when it did, a header
//! section made for a message without one; several recipients make one
//! queue entry. Checked byte by byte in the spool (see `intake_clients.rs`
//! for real clients).

mod support;

use support::daemon::Daemon;
use support::intake::{assert_client_bytes, queued_id, recipients, split_received};
use support::smtp::Raw;

/// Sends one message over a raw connection; returns its queue id.
fn send_raw(d: &Daemon, rcpts: &[&str], data: &[u8]) -> String {
    let (mut raw, _) = Raw::connect(d.port);
    assert_eq!(raw.cmd("EHLO client.example").code, 250);
    assert_eq!(raw.cmd("MAIL FROM:<sender@example.com>").code, 250);
    for r in rcpts {
        assert_eq!(raw.cmd(&format!("RCPT TO:<{r}>")).code, 250);
    }
    assert_eq!(raw.cmd("DATA").code, 354);
    raw.send(data);
    let r = raw.cmd(".");
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(raw.cmd("QUIT").code, 221);
    queued_id(&r.text())
}

/// Sends `msg` to rcpt@example.com over a raw connection; returns its
/// queue id, the spooled body, and what follows our `Received:` field.
fn send_one(d: &Daemon, msg: &[u8]) -> (String, Vec<u8>, Vec<u8>) {
    let id = send_raw(d, &["rcpt@example.com"], msg);
    let spooled = d.body(&id);
    let (_, rest) = split_received(
        &spooled,
        "client.example",
        "ESMTP",
        &id,
        Some("rcpt@example.com"),
    );
    (id, spooled, rest)
}

#[test]
fn missing_date_and_message_id_are_added_once() {
    let d = Daemon::start();
    let msg =
        b"From: a@example.com\r\nSubject: no date, no id\r\nX-Folded: one\r\n two\r\n\r\nbody\r\n";
    let (_, spooled, rest) = send_one(&d, msg);
    let added = assert_client_bytes(&rest, msg, true, true).unwrap();
    let text = String::from_utf8_lossy(&spooled);
    assert_eq!(text.matches("\r\nDate: ").count(), 1, "{text}");
    assert_eq!(text.matches("\r\nMessage-ID: ").count(), 1, "{text}");

    // A second message gets a different Message-ID.
    let (_, _, rest2) = send_one(&d, msg);
    let added2 = assert_client_bytes(&rest2, msg, true, true).unwrap();
    assert_ne!(added, added2, "Message-IDs must be unique");
}

#[test]
fn present_date_and_message_id_are_kept_and_nothing_added() {
    let d = Daemon::start();
    // Any case, in any position, folded: RFC 5322 field names are case-insensitive.
    let msg = b"message-id:\r\n <x.1@client.example>\r\nFrom: a@example.com\r\nDATE: Sun, 29 Nov 2026 17:00:00 +0000\r\nSubject: has both\r\n\r\nbody\r\n";
    let (_, _, rest) = send_one(&d, msg);
    assert_client_bytes(&rest, msg, false, false);
    assert_eq!(&rest[..], &msg[..]);

    // Only one of them present: only the other is added.
    let msg = b"From: a@example.com\r\nDate: Sun, 29 Nov 2026 17:00:00 +0000\r\n\r\nbody\r\n";
    let (_, _, rest) = send_one(&d, msg);
    assert_client_bytes(&rest, msg, false, true);
    let msg = b"Message-ID: <x.2@client.example>\r\n\r\nbody\r\n";
    let (_, _, rest) = send_one(&d, msg);
    assert_client_bytes(&rest, msg, true, false);
}

/// Text with no header section at all (e.g. `echo hi | some-mailer`): the
/// added fields form the header section and a blank line separates them
/// from the text, which is kept as sent.
#[test]
fn message_without_headers_gets_a_header_section() {
    let d = Daemon::start();
    let msg = b"just a line of text without a colon\r\nsecond line\r\n";
    let (_, _, rest) = send_one(&d, msg);
    let text = String::from_utf8_lossy(&rest).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header/body separator: {text:?}"));
    assert_eq!(body.as_bytes(), msg, "{text:?}");
    let fields: Vec<&str> = head
        .split("\r\n")
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(fields, ["Date", "Message-ID"], "{text:?}");
}

/// Several recipients in one transaction: one queue entry, one body file,
/// every recipient in order, and a Received: field without `for`.
#[test]
fn multi_recipient_message_is_one_queue_entry() {
    let d = Daemon::start();
    let rcpts = [
        "one@example.com",
        "two@example.net",
        "root@relay.test",
        "postmaster@localhost",
    ];
    let id = send_raw(&d, &rcpts, b"Subject: many\r\n\r\nbody\r\n");
    let q = d.queue();
    assert_eq!(q.len(), 1, "{q:#?}");
    assert_eq!(q[0]["id"], id.as_str());
    assert_eq!(recipients(&q[0]), rcpts);
    let bodies = std::fs::read_dir(d.spool().join("queue"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "msg")
        })
        .count();
    assert_eq!(bodies, 1, "one body file for all recipients");
    split_received(&d.body(&id), "client.example", "ESMTP", &id, None);
}
