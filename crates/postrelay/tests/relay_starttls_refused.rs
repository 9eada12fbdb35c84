//! A relay that offers STARTTLS and then refuses it (a non-220 reply),
//! against the scripted server (`support/fakeserver.rs`): with
//! `security = "verify"` or `"encrypt"` the session ends there (the
//! message is deferred, nothing more is said in plain text); with `"may"`
//! it goes on in plain text, and the transcript says so.
//!
//! The other STARTTLS cases (not offered, injected data, certificate
//! checks) are in `relay_client.rs`.

mod support;

use std::time::Duration;

use postrelay::deliver::client::{Secret, Security, Session, TlsMode};
use postrelay::deliver::{Outcome, Reason};
use support::client::{message, rcpts, spool, target};
use support::fakeserver::{FakeServer, Script};

const REFUSAL: &str = "454 4.7.0 TLS not available due to local problem";

async fn refusing_server() -> FakeServer {
    FakeServer::start(Script {
        starttls: true,
        starttls_reply: REFUSAL.into(),
        auth: vec!["PLAIN", "LOGIN"],
        ..Script::default()
    })
    .await
}

#[tokio::test]
async fn verify_and_encrypt_defer_and_say_nothing_more_in_plain_text() {
    // With credentials (and plaintext AUTH allowed, so that only the TLS
    // rule stands in the way) and without (nothing but MAIL to stop).
    let cases = [Security::Verify, Security::Encrypt]
        .into_iter()
        .flat_map(|s| [(s, false), (s, true)]);
    for (security, with_credentials) in cases {
        let server = refusing_server().await;
        let mut t = target(server.port(), TlsMode::StartTls, security, None);
        if with_credentials {
            t.credentials = Some(("user".into(), Secret::new("secret")));
            t.allow_plaintext_auth = true;
        }
        let f = match Session::open(&t).await {
            Ok(mut s) => panic!(
                "{security:?}: the session went on without TLS:\n{}",
                s.take_transcript().join("\n")
            ),
            Err(f) => f,
        };
        assert_eq!(
            f.reason,
            Reason::Tls(format!(
                "relay {} refused STARTTLS ({REFUSAL}) and TLS is required (security = \"{}\")",
                t.name,
                security.as_str()
            ))
        );
        assert!(f.session_refused, "{security:?}: the next relay may try");
        assert!(
            matches!(Outcome::from_reason(f.reason.clone()), Outcome::Deferred(_)),
            "{security:?}: a refused STARTTLS defers"
        );
        server.wait_closed(1, Duration::from_secs(5)).await;
        let got = server.received_text();
        assert_eq!(
            got.replace("QUIT\r\n", ""),
            "EHLO client.postrelay.test\r\nSTARTTLS\r\n",
            "{security:?}: nothing but QUIT after the refusal"
        );
    }
}

#[tokio::test]
async fn may_goes_on_in_plain_text_with_a_note() {
    let server = refusing_server().await;
    let t = target(server.port(), TlsMode::StartTls, Security::May, None);
    let mut s = Session::open(&t)
        .await
        .unwrap_or_else(|f| panic!("{f}\n{}", f.transcript.join("\n")));
    assert_eq!(s.tls(), None);
    let sp = spool(b"Subject: plain\r\n\r\nbody\r\n");
    let to = rcpts(&["rcpt@dest.example"]);
    let out = s
        .send(&message(&sp, "s@origin.example", &to))
        .await
        .unwrap();
    assert!(matches!(&out[..], [Outcome::Delivered(_)]), "{out:?}");
    let transcript = s.take_transcript().join("\n");
    assert!(
        transcript
            .contains("the relay refused STARTTLS; continuing without TLS (security = \"may\")"),
        "{transcript}"
    );
    s.quit().await;
    server.wait_closed(1, Duration::from_secs(5)).await;
    assert_eq!(server.bodies().len(), 1);
    let got = server.received_text();
    assert!(
        got.starts_with("EHLO client.postrelay.test\r\nSTARTTLS\r\nMAIL FROM:<s@origin.example>"),
        "{got}"
    );
}
