//! The two forms in which a body leaves for a relay
//! (`deliver::client::body`): as it is, when the intake found that it
//! needs no dot-stuffing (`sends_as_is` in its envelope; over plain TCP and
//! 64 KiB or more, straight from the file with `sendfile`), or through the
//! dot-stuffer. Either way the relay gets the stuffed form of the message,
//! byte for byte.

mod support;

use std::time::Duration;

use support::daemon::{Daemon, Options};
use support::fakeserver::{FakeServer, Script};
use support::spool::{queued_id, session, transaction};

/// A message (CRLF lines, not stuffed) with `lines` body lines of text;
/// the body lines at the indexes in `dotted` start with a dot.
fn message(tag: &str, lines: usize, dotted: &[usize]) -> String {
    let mut m = format!(
        "From: a@example.com\r\nTo: rcpt@example.com\r\nSubject: {tag}\r\n\
         Date: Tue, 8 Dec 2026 02:00:00 +0000\r\nMessage-ID: <{tag}@client.test>\r\n\r\n"
    );
    for i in 0..lines {
        if dotted.contains(&i) {
            m.push('.');
        }
        m.push_str(&format!("{tag} line {i:06} {}\r\n", "x".repeat(60)));
    }
    m
}

/// What a client sends for `m`: a dot before every line that has one.
fn stuff(m: &str) -> String {
    m.split_inclusive('\n')
        .map(|l| {
            if l.starts_with('.') {
                format!(".{l}")
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// Hands `m` to the daemon in one transaction; its queue id.
fn send(port: u16, m: &str) -> String {
    let mut c = session(port);
    let (step, r) = transaction(&mut c, &stuff(m));
    queued_id(&r).unwrap_or_else(|| panic!("{step:?}: {r:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_body_reaches_the_relay_stuffed_byte_for_byte() {
    let server = FakeServer::start(Script::default()).await;
    let d = Daemon::start_with(Options {
        tail: format!(
            "[[relay]]\nname = \"fake\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n",
            server.port()
        ),
        delivery: true,
        ..Options::default()
    });
    // Big (sent from the file, or stuffed in 64 KiB reads) and small
    // (one read), each without and with lines that start with a dot:
    // the first and last body lines, and lines around the 64 KiB reads.
    let messages = [
        message("big-plain", 3000, &[]),
        message("big-dotted", 3000, &[0, 760, 761, 1520, 2999]),
        message("small-plain", 10, &[]),
        message("small-dotted", 10, &[0, 9]),
    ];
    let port = d.port;
    let sent = messages.clone();
    tokio::task::spawn_blocking(move || {
        for m in &sent {
            send(port, m);
        }
    })
    .await
    .unwrap();
    let Some(bodies) = server
        .wait_bodies(messages.len(), Duration::from_secs(60))
        .await
    else {
        panic!(
            "{} of {} bodies in 60 s:\n{}",
            server.bodies().len(),
            messages.len(),
            d.stderr()
        );
    };
    for m in &messages {
        let tag = m.lines().nth(2).unwrap();
        let got = bodies
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .find(|b| b.contains(tag))
            .unwrap_or_else(|| panic!("no body with {tag}"));
        // Our Received: header, then the message as the client sent it.
        assert!(got.starts_with("Received: from "), "{tag}: {got:.200}");
        let want = stuff(m);
        assert!(
            got.ends_with(&want),
            "{tag}: the relay got {} bytes, not the stuffed message ({} bytes) after our header",
            got.len(),
            want.len()
        );
    }
}

/// Reads the `sends_as_is` field of a queued message's envelope.
fn sends_as_is(d: &Daemon, id: &str) -> bool {
    let path = d.spool().join("queue").join(format!("{id}.env"));
    let env: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    env["sends_as_is"].as_bool().unwrap_or(false)
}

#[test]
fn the_envelope_says_whether_the_body_needs_stuffing() {
    let d = Daemon::start();
    let plain = send(d.port, &message("plain", 10, &[]));
    let dotted = send(d.port, &message("dotted", 10, &[4]));
    let first = send(d.port, &message("first", 10, &[0]));
    assert!(sends_as_is(&d, &plain), "a body without dotted lines");
    assert!(!sends_as_is(&d, &dotted), "a body with a dotted line");
    assert!(
        !sends_as_is(&d, &first),
        "a body whose first line is dotted"
    );
}
