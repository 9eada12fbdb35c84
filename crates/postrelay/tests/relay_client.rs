//! The outbound SMTP client (`deliver::client`) against a real Postfix
//! smart host (`support::provider`: STARTTLS and implicit TLS, AUTH, its
//! own CA). What a real server cannot do (stalls, injected replies,
//! dropped connections) is in `relay_client_scripted.rs`.

mod support;

use std::time::Duration;

use postrelay::deliver::client::{Detected, Secret, Security, Target, TlsMode};
use postrelay::deliver::{Outcome, Phase, Reason};
use postrelay::net::tls;
use support::client::{message, open_err, open_ok, rcpts, reason_text, spool, target};
use support::peers::require as require_peer;
use support::provider::Provider;

fn provider_target(p: &Provider, port: u16, tls: TlsMode, security: Security) -> Target {
    let ca = p.ca_file();
    let mut t = target(port, tls, security, Some(&ca));
    t.credentials = Some((p.user.clone(), Secret::new(p.password.clone())));
    t
}

/// A message whose first line is a unique marker (to find it in the
/// Maildir file after the headers Postfix prepends), with the lines that
/// dot-stuffing and 8-bit transport must preserve.
fn tricky_body(marker: &str) -> Vec<u8> {
    format!(
        "X-Marker: {marker}\r\n\
         From: Sender <sender@origin.example>\r\n\
         To: rcpt@dest.example\r\n\
         Subject: client test\r\n\
         Date: Mon, 2 Mar 2026 10:00:00 +0000\r\n\
         Message-ID: <{marker}@origin.example>\r\n\
         \r\n\
         .leading dot\r\n\
         ..two dots\r\n\
         .\r\n\
         \tline with a tab and trailing space \r\n\
         caf\u{e9} 8-bit line\r\n\
         \r\n\
         last line\r\n"
    )
    .into_bytes()
}

/// The delivered message from the marker line on, LF line ends (Postfix's
/// Maildir delivery turns CRLF into LF).
fn delivered_from_marker(p: &Provider, marker: &str, n: usize) -> Vec<u8> {
    let got = p.wait_delivered(n, Duration::from_secs(20));
    let needle = format!("X-Marker: {marker}\n");
    for (_, raw) in &got {
        if let Some(i) = raw
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
        {
            return raw[i..].to_vec();
        }
    }
    panic!("no delivered message has marker {marker}");
}

fn lf(bytes: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(bytes)
        .replace("\r\n", "\n")
        .into_bytes()
}

// ---------------------------------------------------------------------
// Against the real Postfix provider.
// ---------------------------------------------------------------------

async fn deliver_one(p: &Provider, t: &Target, marker: &str) {
    let body = tricky_body(marker);
    let sp = spool(&body);
    let to = rcpts(&[&format!("{marker}@dest.example")]);
    let mut s = open_ok(t).await;
    assert!(
        s.tls().is_some_and(|d| d.starts_with("TLSv1.")),
        "{:?}",
        s.tls()
    );
    let out = s
        .send(&message(&sp, "bounce@origin.example", &to))
        .await
        .unwrap();
    assert!(
        matches!(&out[..], [Outcome::Delivered(r)] if r.code == 250),
        "{out:?}"
    );
    s.quit().await;
    let got = delivered_from_marker(p, marker, 1);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&lf(&body)),
        "body altered in transit"
    );
}

#[tokio::test]
async fn starttls_verify_with_ca_file_delivers_the_exact_body() {
    if !require_peer("postfix") {
        return;
    }
    let p = Provider::start();
    let t = provider_target(&p, p.starttls_port, TlsMode::StartTls, Security::Verify);
    deliver_one(&p, &t, "starttls").await;
    let all = p.delivered();
    let text = String::from_utf8_lossy(&all[0].1);
    assert!(text.contains("with ESMTPSA"), "not TLS+AUTH: {text}");
}

#[tokio::test]
async fn implicit_tls_verify_delivers() {
    if !require_peer("postfix") {
        return;
    }
    let p = Provider::start();
    let t = provider_target(&p, p.implicit_port, TlsMode::Implicit, Security::Verify);
    deliver_one(&p, &t, "implicit").await;
}

#[tokio::test]
async fn encrypt_without_ca_file_delivers() {
    if !require_peer("postfix") {
        return;
    }
    let p = Provider::start();
    let mut t = provider_target(&p, p.starttls_port, TlsMode::StartTls, Security::Encrypt);
    t.tls_config_verify = tls::client_config(None).unwrap();
    deliver_one(&p, &t, "encrypt").await;
}

#[tokio::test]
async fn auto_detects_both_ports_and_remembers() {
    if !require_peer("postfix") {
        return;
    }
    let p = Provider::start();
    for (port, expected) in [
        (p.starttls_port, Detected::StartTls),
        (p.implicit_port, Detected::Implicit),
    ] {
        let t = provider_target(&p, port, TlsMode::Auto, Security::Verify);
        let mut s = open_ok(&t).await;
        assert_eq!(t.mode_memory.get(), Some(expected), "port {port}");
        assert!(s.tls().is_some());
        s.take_transcript();
        s.quit().await;
        // The second session uses the remembered mode straight away.
        let mut s = open_ok(&t).await;
        let transcript = s.take_transcript().join("\n");
        assert!(!transcript.contains("reconnecting"), "{transcript}");
        s.quit().await;
    }
}

#[tokio::test]
async fn starttls_mode_against_the_implicit_port_gives_a_hint() {
    if !require_peer("postfix") {
        return;
    }
    let p = Provider::start();
    let t = provider_target(&p, p.implicit_port, TlsMode::StartTls, Security::Verify);
    let f = open_err(&t).await;
    let expected = format!(
        "port {} sent no SMTP greeting within 3 s; it looks like an implicit-TLS (wrapper mode) \
         port: set tls = \"implicit\" (or \"auto\")",
        p.implicit_port
    );
    assert_eq!(f.reason, Reason::Local(expected), "{}", reason_text(&f));
    assert!(f.session_refused);
    assert!(!f.reason.is_permanent());
}

#[tokio::test]
async fn implicit_mode_against_the_starttls_port_gives_a_hint() {
    if !require_peer("postfix") {
        return;
    }
    let p = Provider::start();
    let t = provider_target(&p, p.starttls_port, TlsMode::Implicit, Security::Verify);
    let f = open_err(&t).await;
    let Reason::Local(text) = &f.reason else {
        panic!("{}", reason_text(&f));
    };
    let start = format!("port {} answered in plaintext (\"220 ", p.starttls_port);
    assert!(text.starts_with(&start), "{text}");
    assert!(
        text.ends_with("); it speaks STARTTLS: set tls = \"starttls\" (or \"auto\")"),
        "{text}"
    );
    assert!(f.session_refused);
}

#[tokio::test]
async fn verify_without_the_ca_file_fails_and_sends_nothing() {
    if !require_peer("postfix") {
        return;
    }
    let p = Provider::start();
    for (port, mode) in [
        (p.starttls_port, TlsMode::StartTls),
        (p.implicit_port, TlsMode::Implicit),
    ] {
        let mut t = provider_target(&p, port, mode, Security::Verify);
        t.tls_config_verify = tls::client_config(None).unwrap();
        let f = open_err(&t).await;
        let Reason::Tls(text) = &f.reason else {
            panic!("{}", reason_text(&f));
        };
        assert!(text.contains("certificate verification failed"), "{text}");
        assert!(
            text.contains("ca_file") && text.contains("encrypt"),
            "{text}"
        );
        assert!(f.session_refused);
        let transcript = f.transcript.join("\n");
        assert!(
            !transcript.contains("AUTH") && !transcript.contains("MAIL"),
            "{transcript}"
        );
    }
    // The provider saw no message and no login from those sessions: after
    // one that does deliver (with the right CA), it holds that one only.
    let t = provider_target(&p, p.implicit_port, TlsMode::Implicit, Security::Verify);
    deliver_one(&p, &t, "after-the-failures").await;
    assert_eq!(p.delivered().len(), 1);
    assert_eq!(
        p.maillog().matches("sasl_username").count(),
        1,
        "{}",
        p.maillog()
    );
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_failure_and_stays_secret() {
    if !require_peer("postfix") {
        return;
    }
    let p = Provider::start();
    let mut t = provider_target(&p, p.implicit_port, TlsMode::Implicit, Security::Verify);
    let wrong = "wrong-Passw0rd-xyz";
    t.credentials = Some((p.user.clone(), Secret::new(wrong)));
    let f = open_err(&t).await;
    let Reason::Auth(text) = &f.reason else {
        panic!("{}", reason_text(&f));
    };
    assert!(
        text.starts_with(&format!(
            "relay refused the credentials of user {}: 535 5.7.8",
            p.user
        )),
        "{text}"
    );
    assert!(f.session_refused);
    assert!(!f.reason.is_permanent());
    let transcript = f.transcript.join("\n");
    assert!(
        transcript.contains("C: AUTH PLAIN <redacted>"),
        "{transcript}"
    );
    support::secrets::assert_absent("the transcript", &transcript, &p.user, wrong);
    support::secrets::assert_absent("the error", &f.reason.to_string(), &p.user, wrong);
}

#[tokio::test]
async fn two_messages_on_one_session() {
    if !require_peer("postfix") {
        return;
    }
    let p = Provider::start();
    let t = provider_target(&p, p.starttls_port, TlsMode::StartTls, Security::Verify);
    let mut s = open_ok(&t).await;
    for marker in ["first", "second"] {
        let sp = spool(&tricky_body(marker));
        let to = rcpts(&[&format!("{marker}@dest.example")]);
        let out = s.send(&message(&sp, "", &to)).await.unwrap();
        assert!(matches!(&out[..], [Outcome::Delivered(_)]), "{out:?}");
    }
    // The second transaction began with RSET, pipelined with its MAIL.
    let transcript = s.take_transcript().join("\n");
    assert!(
        transcript.contains("C: RSET\nC: MAIL FROM:"),
        "{transcript}"
    );
    assert_eq!(s.messages_sent(), 2);
    s.quit().await;
    delivered_from_marker(&p, "first", 2);
    delivered_from_marker(&p, "second", 2);
}

#[tokio::test]
async fn pipelined_recipients_get_one_outcome_each() {
    if !require_peer("postfix") {
        return;
    }
    let p = Provider::start();
    let t = provider_target(&p, p.implicit_port, TlsMode::Implicit, Security::Verify);
    let mut s = open_ok(&t).await;
    let sp = spool(&tricky_body("pipelined"));
    let to = rcpts(&[
        "one@dest.example",
        "fail550@dest.example",
        "fail451@dest.example",
        "two@dest.example",
    ]);
    let out = s
        .send(&message(&sp, "a@origin.example", &to))
        .await
        .unwrap();
    let transcript = s.take_transcript().join("\n");
    s.quit().await;
    assert_eq!(out.len(), 4, "{out:?}");
    assert!(
        matches!(out[0], Outcome::Delivered(_)),
        "{out:?}\n{transcript}"
    );
    assert!(
        matches!(&out[1], Outcome::Failed(Reason::Reply { phase: Phase::Rcpt, reply }) if reply.code == 550),
        "{out:?}"
    );
    assert!(
        matches!(&out[2], Outcome::Deferred(Reason::Reply { phase: Phase::Rcpt, reply }) if reply.code == 451),
        "{out:?}"
    );
    assert!(matches!(out[3], Outcome::Delivered(_)), "{out:?}");
    // All envelope commands left before the first reply was read.
    let lines: Vec<&str> = transcript.lines().collect();
    let mail = lines
        .iter()
        .position(|l| l.starts_with("C: MAIL FROM:"))
        .unwrap();
    assert!(
        lines[mail + 1..mail + 6]
            .iter()
            .all(|l| l.starts_with("C: ")),
        "{transcript}"
    );
    delivered_from_marker(&p, "pipelined", 1);
}
