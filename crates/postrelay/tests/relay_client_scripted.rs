//! The outbound SMTP client (`deliver::client`) against a scripted
//! in-process server (`support/fakeserver.rs`), for what a real server
//! cannot do: stalls, injected replies, dropped connections, odd reply
//! orders. The same client against a real Postfix is `relay_client.rs`.

mod support;

use std::path::Path;
use std::time::Duration;

use postrelay::deliver::client::{Detected, Secret, Security, Target, TlsMode};
use postrelay::deliver::{Outcome, Phase, Reason};
use postrelay::net::tls;
use support::client::{message, open_err, open_ok, rcpts, reason_text, spool, target};
use support::fakeserver::{FakeServer, Script, TestPki};

// ---------------------------------------------------------------------
// Against the scripted fake server.
// ---------------------------------------------------------------------

fn fake_target(server: &FakeServer, tls: TlsMode, security: Security) -> Target {
    let mut t = target(server.port(), tls, security, None);
    t.timeouts.greeting = Duration::from_secs(1);
    t.timeouts.tls = Duration::from_secs(2);
    t
}

/// A verifying target trusting the fake server's CA.
fn fake_verify_target(server: &FakeServer, pki: &TestPki, dir: &Path) -> Target {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let mut t = fake_target(server, TlsMode::StartTls, Security::Verify);
    t.tls_config_verify = tls::client_config(Some(&ca)).unwrap();
    t
}

#[tokio::test]
async fn no_starttls_with_verify_sends_neither_auth_nor_mail() {
    let server = FakeServer::start(Script {
        auth: vec!["PLAIN", "LOGIN"],
        ..Script::default()
    })
    .await;
    let mut t = fake_target(&server, TlsMode::StartTls, Security::Verify);
    t.credentials = Some(("user".into(), Secret::new("secret")));
    let f = open_err(&t).await;
    assert_eq!(
        f.reason,
        Reason::Tls(format!(
            "relay {} does not offer STARTTLS and TLS is required (security = \"verify\")",
            t.name
        ))
    );
    assert!(f.session_refused);
    server.wait_closed(1, Duration::from_secs(5)).await;
    let got = server.received_text();
    assert!(got.starts_with("EHLO client.postrelay.test\r\n"), "{got}");
    assert!(!got.contains("AUTH") && !got.contains("MAIL"), "{got}");
}

#[tokio::test]
async fn data_injected_after_the_starttls_reply_ends_the_session() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start(Script {
        starttls: true,
        inject_after_starttls: true,
        tls: Some(pki.server_config.clone()),
        auth: vec!["PLAIN"],
        ..Script::default()
    })
    .await;
    let mut t = fake_verify_target(&server, &pki, dir.path());
    t.credentials = Some(("user".into(), Secret::new("secret")));
    let f = open_err(&t).await;
    assert_eq!(
        f.reason,
        Reason::Tls(
            "the relay sent data after its STARTTLS reply (response injection); refusing to continue"
                .into()
        )
    );
    server.wait_closed(1, Duration::from_secs(5)).await;
    let got = server.received_text();
    assert!(
        got.ends_with("STARTTLS\r\n"),
        "sent after STARTTLS: {got:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_greets_times_out() {
    let server = FakeServer::start(Script {
        greet: false,
        ..Script::default()
    })
    .await;
    let t = fake_target(&server, TlsMode::StartTls, Security::May);
    let f = open_err(&t).await;
    assert_eq!(
        f.reason,
        Reason::Timeout {
            phase: Phase::Greeting,
            after: Duration::from_secs(1)
        },
        "{}",
        reason_text(&f)
    );
    assert!(f.session_refused);
}

#[tokio::test]
async fn starttls_with_verification_and_a_stuffed_body() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start(Script {
        starttls: true,
        tls: Some(pki.server_config.clone()),
        pipelining: true,
        size: Some(1_000_000),
        ..Script::default()
    })
    .await;
    let t = fake_verify_target(&server, &pki, dir.path());
    let mut s = open_ok(&t).await;
    assert!(s.tls().is_some());
    // Unterminated last line and a bare LF: the client normalises both.
    let sp = spool(b"Subject: x\r\n\r\n.one\r\n.\r\nbare\nlast");
    let to = rcpts(&["a@b.example"]);
    let out = s.send(&message(&sp, "s@b.example", &to)).await.unwrap();
    assert!(matches!(&out[..], [Outcome::Delivered(_)]), "{out:?}");
    s.quit().await;
    server.wait_closed(1, Duration::from_secs(5)).await;
    assert_eq!(
        server.bodies(),
        vec![b"Subject: x\r\n\r\n..one\r\n..\r\nbare\r\nlast\r\n".to_vec()]
    );
    let got = server.received();
    // EHLO again after TLS; the MAIL carries SIZE and BODY.
    let text = String::from_utf8_lossy(&got);
    assert_eq!(
        text.matches("EHLO client.postrelay.test").count(),
        2,
        "{text}"
    );
    let size = sp.size;
    assert!(
        text.contains(&format!(
            "MAIL FROM:<s@b.example> SIZE={size} BODY=8BITMIME\r\n"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn verification_checks_the_host_name() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start(Script {
        starttls: true,
        tls: Some(pki.server_config.clone()),
        ..Script::default()
    })
    .await;
    let mut t = fake_verify_target(&server, &pki, dir.path());
    t.host = "smtp.example.com".into();
    let f = open_err(&t).await;
    let Reason::Tls(text) = &f.reason else {
        panic!("{}", reason_text(&f));
    };
    // The fix offered is tls_name, with the names the certificate has;
    // never lowering security.
    assert!(
        text.contains(
            "the certificate is not valid for the name \"smtp.example.com\" (it is for localhost, 127.0.0.1)"
        ) && text.contains("set tls_name = \"localhost\" on relay \"test-relay-"),
        "{text}"
    );
    assert!(!text.contains("encrypt"), "{text}");
    // The same CA, the certificate's name: fine (also as an IP literal).
    t.host = "127.0.0.1".into();
    open_ok(&t).await.quit().await;
    // Reached by another name, verified against tls_name: fine; a
    // tls_name the certificate does not have still fails.
    t.host = "smtp.example.com".into();
    t.tls_name = Some("localhost".into());
    open_ok(&t).await.quit().await;
    t.tls_name = Some("other.example".into());
    let f = open_err(&t).await;
    assert!(
        reason_text(&f).contains("not valid for the name \"other.example\""),
        "{}",
        reason_text(&f)
    );
}

#[tokio::test]
async fn a_connection_closed_mid_data_is_a_deferral() {
    let server = FakeServer::start(Script {
        close_mid_data: true,
        ..Script::default()
    })
    .await;
    let t = fake_target(&server, TlsMode::StartTls, Security::None);
    let mut s = open_ok(&t).await;
    let big = "x".repeat(998) + "\r\n";
    let sp = spool(big.repeat(2000).as_bytes());
    let to = rcpts(&["a@b.example"]);
    let f = s.send(&message(&sp, "s@b.example", &to)).await.unwrap_err();
    assert!(
        matches!(f.reason, Reason::Protocol(_) | Reason::Connect(_)),
        "{}",
        reason_text(&f)
    );
    assert!(!f.reason.is_permanent());
    assert!(!f.session_refused);
    assert!(
        s.reset().await.is_err(),
        "a broken session must not be reused"
    );
}

async fn mixed_recipients(pipelining: bool) {
    let server = FakeServer::start(Script {
        pipelining,
        rcpt_replies: vec![
            "250 2.1.5 Ok".into(),
            "550 5.1.1 <b@x.example>: Recipient address rejected".into(),
            "450 4.2.0 <c@x.example>: try again later".into(),
        ],
        ..Script::default()
    })
    .await;
    let t = fake_target(&server, TlsMode::StartTls, Security::None);
    let mut s = open_ok(&t).await;
    let sp = spool(b"Subject: mixed\r\n\r\nbody\r\n");
    let to = rcpts(&["a@x.example", "b@x.example", "c@x.example"]);
    let out = s.send(&message(&sp, "s@x.example", &to)).await.unwrap();
    assert!(
        matches!(&out[0], Outcome::Delivered(r) if r.code == 250),
        "{out:?}"
    );
    assert!(
        matches!(&out[1], Outcome::Failed(Reason::Reply { phase: Phase::Rcpt, reply }) if reply.code == 550),
        "{out:?}"
    );
    assert!(
        matches!(&out[2], Outcome::Deferred(Reason::Reply { phase: Phase::Rcpt, reply }) if reply.code == 450),
        "{out:?}"
    );
    s.reset().await.unwrap();
    s.quit().await;
    server.wait_closed(1, Duration::from_secs(5)).await;
    assert_eq!(server.bodies().len(), 1, "the body must be sent once");
}

#[tokio::test]
async fn mixed_recipient_replies_pipelined() {
    mixed_recipients(true).await;
}

#[tokio::test]
async fn mixed_recipient_replies_one_at_a_time() {
    mixed_recipients(false).await;
}

#[tokio::test]
async fn a_refused_mail_from_fails_every_recipient() {
    for pipelining in [true, false] {
        let server = FakeServer::start(Script {
            pipelining,
            mail_reply: "553 5.7.1 <s@x.example>: Sender address rejected".into(),
            rcpt_replies: vec!["503 5.5.1 Error: need MAIL command".into(); 2],
            ..Script::default()
        })
        .await;
        let t = fake_target(&server, TlsMode::StartTls, Security::None);
        let mut s = open_ok(&t).await;
        let sp = spool(b"Subject: x\r\n\r\nbody\r\n");
        let to = rcpts(&["a@x.example", "b@x.example"]);
        let out = s.send(&message(&sp, "s@x.example", &to)).await.unwrap();
        for o in &out {
            assert!(
                matches!(o, Outcome::Failed(Reason::Reply { phase: Phase::Mail, reply }) if reply.code == 553),
                "{out:?}"
            );
        }
        assert_eq!(out.len(), 2);
        s.reset().await.unwrap();
        s.quit().await;
        server.wait_closed(1, Duration::from_secs(5)).await;
        assert!(server.bodies().is_empty());
        let got = server.received_text();
        assert_eq!(got.contains("RCPT TO:"), pipelining, "{got}");
    }
}

#[tokio::test]
async fn a_354_without_accepted_recipients_gets_no_body() {
    let server = FakeServer::start(Script {
        pipelining: true,
        rcpt_replies: vec!["550 5.1.1 no".into()],
        accept_data_without_rcpt: true,
        ..Script::default()
    })
    .await;
    let t = fake_target(&server, TlsMode::StartTls, Security::None);
    let mut s = open_ok(&t).await;
    let sp = spool(b"Subject: x\r\n\r\nbody\r\n");
    let to = rcpts(&["a@x.example"]);
    let out = s.send(&message(&sp, "s@x.example", &to)).await.unwrap();
    assert!(
        matches!(
            &out[..],
            [Outcome::Failed(Reason::Reply {
                phase: Phase::Rcpt,
                ..
            })]
        ),
        "{out:?}"
    );
    assert!(s.reset().await.is_err());
    server.wait_closed(1, Duration::from_secs(5)).await;
    let got = server.received_text();
    assert!(got.ends_with("DATA\r\n"), "{got:?}");
    assert!(server.bodies().is_empty());
}

#[tokio::test]
async fn a_message_over_the_relays_size_limit_is_unsendable() {
    let server = FakeServer::start(Script {
        size: Some(1000),
        ..Script::default()
    })
    .await;
    let t = fake_target(&server, TlsMode::StartTls, Security::None);
    let mut s = open_ok(&t).await;
    let sp = spool(&vec![b'x'; 5000]);
    let to = rcpts(&["a@x.example", "b@x.example"]);
    let out = s.send(&message(&sp, "s@x.example", &to)).await.unwrap();
    assert_eq!(out.len(), 2);
    for o in &out {
        assert!(
            matches!(
                o,
                Outcome::Failed(Reason::Unsendable {
                    status: "5.3.4",
                    ..
                })
            ),
            "{out:?}"
        );
    }
    s.quit().await;
    server.wait_closed(1, Duration::from_secs(5)).await;
    assert!(!server.received_text().contains("MAIL"));
}

#[tokio::test]
async fn a_message_needing_smtputf8_is_unsendable_without_it() {
    let server = FakeServer::start(Script::default()).await;
    let t = fake_target(&server, TlsMode::StartTls, Security::None);
    let mut s = open_ok(&t).await;
    let sp = spool(b"Subject: x\r\n\r\nbody\r\n");
    let to = rcpts(&["j\u{f6}rg@x.example"]);
    let mut msg = message(&sp, "s@x.example", &to);
    msg.smtputf8 = true;
    let out = s.send(&msg).await.unwrap();
    assert!(
        matches!(
            &out[..],
            [Outcome::Failed(Reason::Unsendable {
                status: "5.6.7",
                ..
            })]
        ),
        "{out:?}"
    );
    s.quit().await;
    server.wait_closed(1, Duration::from_secs(5)).await;
    assert!(!server.received_text().contains("MAIL"));
}

#[tokio::test]
async fn auth_login_is_redacted_and_plaintext_auth_needs_permission() {
    let script = Script {
        auth: vec!["LOGIN"],
        credentials: ("someone".into(), "s3cret-pw".into()),
        ..Script::default()
    };
    let server = FakeServer::start(script.clone()).await;

    // security = "may" without STARTTLS: the password is withheld, and
    // the session goes on without AUTH (the relay decides whether it
    // needs it).
    let mut t = fake_target(&server, TlsMode::StartTls, Security::May);
    t.credentials = Some(("someone".into(), Secret::new("s3cret-pw")));
    let mut s = open_ok(&t).await;
    let transcript = s.take_transcript().join("\n");
    // The mail goes out without AUTH when the relay does not require it.
    let sp = spool(b"Subject: may\r\n\r\nbody\r\n");
    let to = rcpts(&["a@x.example"]);
    let out = s.send(&message(&sp, "s@x.example", &to)).await.unwrap();
    assert!(matches!(&out[0], Outcome::Delivered(_)), "{out:?}");
    s.quit().await;
    server.wait_closed(1, Duration::from_secs(5)).await;
    assert!(!server.received_text().contains("AUTH"));
    assert!(!server.received_text().contains("s3cret-pw"));
    assert_eq!(server.bodies().len(), 1);
    assert!(transcript.contains("credentials withheld"), "{transcript}");

    // security = "none" + allow_plaintext_auth: LOGIN, redacted.
    t.security = Security::None;
    t.allow_plaintext_auth = true;
    let mut s = open_ok(&t).await;
    let transcript = s.take_transcript().join("\n");
    s.quit().await;
    assert!(transcript.contains("C: AUTH LOGIN\n"), "{transcript}");
    assert_eq!(
        transcript.matches("C: <redacted>").count(),
        2,
        "{transcript}"
    );
    assert!(transcript.contains("S: 235 "), "{transcript}");
    support::secrets::assert_absent("the transcript", &transcript, "someone", "s3cret-pw");

    // Credentials but no AUTH offered at all: used without it, noted.
    let bare = FakeServer::start(Script::default()).await;
    let mut t2 = fake_target(&bare, TlsMode::StartTls, Security::None);
    t2.allow_plaintext_auth = true;
    t2.credentials = t.credentials.clone();
    let mut s = open_ok(&t2).await;
    let transcript = s.take_transcript().join("\n");
    s.quit().await;
    assert!(transcript.contains("announces no AUTH"), "{transcript}");
    assert!(!bare.received_text().contains("AUTH"));
}

#[tokio::test]
async fn auto_mode_finds_an_implicit_tls_port_and_remembers_it() {
    // A TLS-only server: the fake's STARTTLS path run from the first byte
    // is not available, so use a tiny implicit-TLS acceptor here.
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config.clone());
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = tls.write_all(b"220 tls.fake ESMTP\r\n").await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let line = String::from_utf8_lossy(&buf[..n]).to_string();
                    let reply: &[u8] = if line.starts_with("QUIT") {
                        b"221 bye\r\n"
                    } else {
                        b"250 tls.fake\r\n"
                    };
                    let _ = tls.write_all(reply).await;
                }
            });
        }
    });
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let mut t = target(port, TlsMode::Auto, Security::Verify, Some(&ca));
    t.timeouts.greeting = Duration::from_secs(1);
    let mut s = open_ok(&t).await;
    assert_eq!(t.mode_memory.get(), Some(Detected::Implicit));
    let transcript = s.take_transcript().join("\n");
    assert!(
        transcript.contains("reconnecting with implicit TLS"),
        "{transcript}"
    );
    s.quit().await;
    server.abort();
}

#[tokio::test]
async fn long_recipient_lists_are_pipelined_in_groups() {
    let mut replies = vec!["250 2.1.5 Ok".to_string(); 250];
    replies[120] = "550 5.1.1 no such user".into();
    let server = FakeServer::start(Script {
        pipelining: true,
        rcpt_replies: replies,
        ..Script::default()
    })
    .await;
    let t = fake_target(&server, TlsMode::StartTls, Security::None);
    let mut s = open_ok(&t).await;
    let sp = spool(b"Subject: many\r\n\r\nbody\r\n");
    let to: Vec<String> = (0..250).map(|i| format!("r{i}@x.example")).collect();
    let out = s.send(&message(&sp, "s@x.example", &to)).await.unwrap();
    assert_eq!(out.len(), 250);
    for (i, o) in out.iter().enumerate() {
        match i {
            120 => assert!(matches!(o, Outcome::Failed(_)), "{i}: {o:?}"),
            _ => assert!(matches!(o, Outcome::Delivered(_)), "{i}: {o:?}"),
        }
    }
    s.quit().await;
    server.wait_closed(1, Duration::from_secs(5)).await;
    assert_eq!(server.bodies().len(), 1);
}

#[tokio::test]
async fn a_header_swap_replaces_the_start_of_the_file_on_the_wire_only() {
    let server = FakeServer::start(Script::default()).await;
    let t = fake_target(&server, TlsMode::StartTls, Security::None);
    let mut s = open_ok(&t).await;
    let original = b"From: root@host\r\nSubject: x\r\n\r\n.dot line\r\nbody\r\n";
    let sp = spool(original);
    let to = rcpts(&["a@x.example"]);
    let mut msg = message(&sp, "alerts@example.com", &to);
    let header = b"From: alerts@example.com\r\nX-Original-From: root@host\r\nSubject: x\r\n";
    let replaces = b"From: root@host\r\nSubject: x\r\n".len() as u64;
    msg.header = Some(postrelay::deliver::client::HeaderSwap {
        bytes: header,
        replaces,
    });
    let out = s.send(&msg).await.unwrap();
    assert!(matches!(&out[..], [Outcome::Delivered(_)]), "{out:?}");
    s.quit().await;
    server.wait_closed(1, Duration::from_secs(5)).await;
    let bodies = server.bodies();
    // As on the wire: the body line starting with a dot is stuffed.
    let expected = [&header[..], b"\r\n..dot line\r\nbody\r\n"].concat();
    assert_eq!(
        String::from_utf8_lossy(&bodies[0]),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(
        std::fs::read(&sp.path).unwrap(),
        original,
        "the queue file is unchanged"
    );
}

#[tokio::test]
async fn a_long_body_then_a_short_one_on_one_session_arrive_exactly() {
    let server = FakeServer::start(Script::default()).await;
    let t = fake_target(&server, TlsMode::StartTls, Security::None);
    let mut s = open_ok(&t).await;
    // Over two read chunks, with lines that need stuffing here and there:
    // the session's read buffer is full of the first body when the second
    // (shorter) one is read into it.
    let mut long = b"Subject: long\r\n\r\n".to_vec();
    for i in 0..3000 {
        long.extend_from_slice(format!(".{i:05} {}\r\n", "y".repeat(40)).as_bytes());
    }
    let short = b"Subject: short\r\n\r\nz\r\n".to_vec();
    let to = rcpts(&["a@x.example"]);
    for body in [&long, &short] {
        let sp = spool(body);
        let out = s.send(&message(&sp, "", &to)).await.unwrap();
        assert!(matches!(&out[..], [Outcome::Delivered(_)]), "{out:?}");
    }
    s.quit().await;
    server.wait_closed(1, Duration::from_secs(5)).await;
    let bodies = server.bodies();
    assert_eq!(bodies.len(), 2);
    let stuffed = String::from_utf8_lossy(&long).replace("\r\n.", "\r\n..");
    assert_eq!(String::from_utf8_lossy(&bodies[0]), stuffed);
    assert_eq!(bodies[1], short);
}

/// Delivery reads the queue file for the size its envelope records, and
/// no further (no read to see the end of the file); a file that ends
/// before that is never sent as a whole message: the session is dropped
/// before the end-of-data dot, and the recipient waits.
#[tokio::test]
async fn a_queue_file_shorter_than_its_size_is_not_sent_as_whole() {
    let server = FakeServer::start(Script::default()).await;
    let t = fake_target(&server, TlsMode::StartTls, Security::None);
    let mut s = open_ok(&t).await;
    let body = b"Subject: cut\r\n\r\nthe rest is missing\r\n";
    let sp = spool(body);
    let to = rcpts(&["a@x.example"]);
    let mut msg = message(&sp, "s@x.example", &to);
    msg.size += 10;
    let f = s.send(&msg).await.unwrap_err();
    let text = reason_text(&f);
    assert!(text.contains("ends after"), "{text}");
    assert!(!f.reason.is_permanent(), "{text}");
    server.wait_closed(1, Duration::from_secs(5)).await;
    assert!(server.bodies().is_empty(), "{:?}", server.bodies());
}
