//! The engine's relay failover rules, against two scripted in-process
//! servers (`support/fakeserver.rs`): the primary is tried first; a relay
//! that refuses the session (connection, greeting, TLS, AUTH) hands the
//! message to the next one in the same attempt; once a relay has the
//! transaction its replies decide, and the next relay is never contacted.
//!
//! Failover against a real Postfix through the daemon is in
//! `relay_e2e.rs`; the client's own behaviour is in `relay_client.rs`.

mod support;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use postrelay::deliver::{Attempt, Deliverer, Outcome, Phase, Reason};
use postrelay::net::resolve::Resolver;
use support::client::spool;
use support::deadport::DeadPort;
use support::fakeserver::{FakeServer, Script, TestPki};

/// One `[[relay]]` section: name, port, and extra lines.
struct RelaySpec<'a> {
    name: &'a str,
    port: u16,
    extra: String,
}

fn relay(name: &str, port: u16) -> RelaySpec<'_> {
    RelaySpec {
        name,
        port,
        extra: "tls = \"starttls\"\nsecurity = \"none\"\n".into(),
    }
}

/// A password file (mode 0600, as the configuration requires) in `dir`.
fn password_file(dir: &Path, name: &str, password: &str) -> String {
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    writeln!(f, "{password}").unwrap();
    path.display().to_string()
}

/// Runs one attempt for one message to `rcpt@dest.example` through the
/// relays, in the order given.
async fn attempt(relays: &[RelaySpec<'_>]) -> Attempt {
    let mut text = "hostname = \"client.postrelay.test\"\n".to_owned();
    for r in relays {
        text.push_str(&format!(
            "[[relay]]\nname = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\n{}\n[relay.timeouts]\n\
             connect = \"5s\"\ngreeting = \"5s\"\ntls = \"5s\"\n",
            r.name, r.port, r.extra
        ));
    }
    let config = postrelay::config::parse(&text, "test").unwrap_or_else(|e| panic!("{e}\n{text}"));
    let engine = Deliverer::new(&config, None, Arc::new(Resolver::system())).unwrap();
    let sp = spool(b"Subject: failover\r\n\r\nbody\r\n");
    let env = support::client::envelope(&sp);
    let attempt = engine.attempt(&env, &sp.path, &[0]).await;
    engine.close_idle();
    attempt
}

fn delivered(a: &Attempt) -> bool {
    matches!(&a.outcomes[..], [(0, Outcome::Delivered(_))])
}

/// The secondary carried the message after the primary was contacted
/// first (its connection accepted earlier), and the primary got no body.
async fn assert_failed_over(primary: &FakeServer, secondary: &FakeServer, a: &Attempt) {
    assert!(delivered(a), "{:?} {:?}", a.outcomes, a.transcript);
    assert!(
        a.relay.contains(&format!(":{}", secondary.port())),
        "carried by {}, not the secondary",
        a.relay
    );
    assert_eq!(secondary.bodies().len(), 1);
    assert!(primary.bodies().is_empty());
    let (p, s) = (primary.accept_times(), secondary.accept_times());
    assert_eq!((p.len(), s.len()), (1, 1), "primary {p:?}, secondary {s:?}");
    assert!(
        p[0] < s[0],
        "the secondary was contacted before the primary"
    );
}

/// The primary kept the message (whatever its outcome) and the secondary
/// was never contacted.
fn assert_stayed(secondary: &FakeServer, a: &Attempt) {
    assert_eq!(
        secondary.connections(),
        0,
        "the secondary was contacted: {:?} {:?}",
        a.outcomes,
        a.transcript
    );
}

#[tokio::test]
async fn the_primary_is_tried_first_and_carries_the_message() {
    let primary = FakeServer::start(Script::default()).await;
    let secondary = FakeServer::start(Script::default()).await;
    let a = attempt(&[
        relay("primary", primary.port()),
        relay("secondary", secondary.port()),
    ])
    .await;
    assert!(delivered(&a), "{:?}", a.outcomes);
    assert_eq!(primary.bodies().len(), 1);
    assert_stayed(&secondary, &a);
    // And the other way round: the order is the configuration's.
    let a = attempt(&[
        relay("secondary", secondary.port()),
        relay("primary", primary.port()),
    ])
    .await;
    assert!(delivered(&a), "{:?}", a.outcomes);
    assert_eq!(secondary.bodies().len(), 1);
    assert_eq!(primary.connections(), 1, "the first attempt's only");
}

#[tokio::test]
async fn a_refused_connection_moves_to_the_next_relay() {
    let dead = DeadPort::new();
    let secondary = FakeServer::start(Script::default()).await;
    let a = attempt(&[
        relay("primary", dead.port()),
        relay("secondary", secondary.port()),
    ])
    .await;
    assert!(delivered(&a), "{:?} {:?}", a.outcomes, a.transcript);
    assert_eq!(secondary.bodies().len(), 1);
}

#[tokio::test]
async fn a_refusing_greeting_moves_to_the_next_relay() {
    let primary = FakeServer::start(Script {
        greeting: "554 5.3.2 fake.test no service for you".into(),
        ..Script::default()
    })
    .await;
    let secondary = FakeServer::start(Script::default()).await;
    let a = attempt(&[
        relay("primary", primary.port()),
        relay("secondary", secondary.port()),
    ])
    .await;
    assert_failed_over(&primary, &secondary, &a).await;
    assert!(
        !primary.received_text().contains("MAIL FROM"),
        "{}",
        primary.received_text()
    );
}

#[tokio::test]
async fn a_failed_tls_handshake_moves_to_the_next_relay() {
    // Both relays trust only the second CA; the primary presents a
    // certificate from the first.
    let (untrusted, trusted) = (TestPki::new(), TestPki::new());
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &trusted.ca_pem).unwrap();
    let tls_script = |pki: &TestPki| Script {
        starttls: true,
        tls: Some(pki.server_config.clone()),
        ..Script::default()
    };
    let primary = FakeServer::start(tls_script(&untrusted)).await;
    let secondary = FakeServer::start(tls_script(&trusted)).await;
    let verify = |name, port| RelaySpec {
        name,
        port,
        extra: format!(
            "tls = \"starttls\"\nsecurity = \"verify\"\nca_file = \"{}\"\n",
            ca.display()
        ),
    };
    let a = attempt(&[
        verify("primary", primary.port()),
        verify("secondary", secondary.port()),
    ])
    .await;
    assert_failed_over(&primary, &secondary, &a).await;
}

#[tokio::test]
async fn a_refused_auth_moves_to_the_next_relay() {
    let dir = tempfile::tempdir().unwrap();
    let auth_script = || Script {
        auth: vec!["PLAIN"],
        credentials: ("user".into(), "right password".into()),
        ..Script::default()
    };
    let primary = FakeServer::start(auth_script()).await;
    let secondary = FakeServer::start(auth_script()).await;
    let with_password = |name, port, password| RelaySpec {
        name,
        port,
        extra: format!(
            "tls = \"starttls\"\nsecurity = \"none\"\nallow_plaintext_auth = true\n\
             username = \"user\"\npassword_file = \"{}\"\n",
            password_file(dir.path(), name, password)
        ),
    };
    let a = attempt(&[
        with_password("primary", primary.port(), "wrong password"),
        with_password("secondary", secondary.port(), "right password"),
    ])
    .await;
    assert_failed_over(&primary, &secondary, &a).await;
    assert!(!primary.received_text().contains("MAIL FROM"));
}

#[tokio::test]
async fn a_refused_recipient_stays_with_the_relay() {
    for refusal in ["550 5.1.1 no such user", "450 4.2.1 try later"] {
        let primary = FakeServer::start(Script {
            rcpt_replies: vec![refusal.into()],
            ..Script::default()
        })
        .await;
        let secondary = FakeServer::start(Script::default()).await;
        let a = attempt(&[
            relay("primary", primary.port()),
            relay("secondary", secondary.port()),
        ])
        .await;
        let code: u16 = refusal[..3].parse().unwrap();
        let refused = |r: &Reason| matches!(r, Reason::Reply { phase: Phase::Rcpt, reply } if reply.code == code);
        assert!(
            matches!(&a.outcomes[..],
                [(0, Outcome::Failed(r) | Outcome::Deferred(r))] if refused(r)),
            "{refusal}: {:?}",
            a.outcomes
        );
        assert_stayed(&secondary, &a);
    }
}

#[tokio::test]
async fn a_transaction_that_started_stays_with_the_relay() {
    // A refused MAIL, and a connection lost in the middle of the body.
    let scripts = [
        Script {
            mail_reply: "451 4.3.0 fake.test local problem".into(),
            ..Script::default()
        },
        Script {
            close_mid_data: true,
            ..Script::default()
        },
    ];
    for script in scripts {
        let primary = FakeServer::start(script).await;
        let secondary = FakeServer::start(Script::default()).await;
        let a = attempt(&[
            relay("primary", primary.port()),
            relay("secondary", secondary.port()),
        ])
        .await;
        assert!(
            matches!(&a.outcomes[..], [(0, o)] if !matches!(o, Outcome::Delivered(_))),
            "{:?}",
            a.outcomes
        );
        assert_eq!(primary.connections(), 1);
        assert_stayed(&secondary, &a);
        primary.wait_closed(1, Duration::from_secs(10)).await;
    }
}
