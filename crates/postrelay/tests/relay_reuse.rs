//! Reusing a session for the next message: the RSET that starts the next
//! transaction rides in the same write as its MAIL when the relay offers
//! PIPELINING (a round trip of its own otherwise), and a session the relay
//! closed while it sat idle costs a fresh connection, never a deferral.
//!
//! Against the scripted server (`support/fakeserver.rs`): a real server
//! cannot be told to answer RSET with 421. The real Postfix provider
//! carries reused sessions in `relay_client.rs` and `relay_e2e.rs`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use postrelay::deliver::client::{Security, Session, Target, TlsMode};
use postrelay::deliver::{Deliverer, Outcome, Phase, Reason};
use postrelay::net::resolve::Resolver;
use support::client::{message, rcpts, spool, target};
use support::fakeserver::{FakeServer, Script};

const IDLE_TIMEOUT_REPLY: &str = "421 4.4.2 fake.test Error: timeout exceeded";

fn fake_target(server: &FakeServer) -> Target {
    target(server.port(), TlsMode::StartTls, Security::None, None)
}

async fn open(server: &FakeServer) -> Session {
    Session::open(&fake_target(server))
        .await
        .unwrap_or_else(|f| panic!("open: {f} {:?}", f.transcript))
}

/// Sends one small message on `s`; the outcome of its one recipient.
async fn send_one(
    s: &mut Session,
    n: usize,
) -> Result<Outcome, postrelay::deliver::client::Failure> {
    let sp = spool(format!("Subject: {n}\r\n\r\nbody {n}\r\n").as_bytes());
    let to = rcpts(&["rcpt@dest.example"]);
    let mut out = s.send(&message(&sp, "s@origin.example", &to)).await?;
    assert_eq!(out.len(), 1);
    Ok(out.remove(0))
}

#[tokio::test]
async fn the_next_transaction_resets_the_session_first() {
    for pipelining in [true, false] {
        let server = FakeServer::start(Script {
            pipelining,
            ..Script::default()
        })
        .await;
        let mut s = open(&server).await;
        for n in 0..3 {
            let out = send_one(&mut s, n).await.unwrap();
            assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
        }
        assert_eq!(s.messages_sent(), 3);
        s.quit().await;
        server.wait_closed(1, Duration::from_secs(5)).await;
        assert_eq!(server.bodies().len(), 3);
        assert_eq!(server.connections(), 1);
        let got = server.received_text();
        assert_eq!(got.matches("RSET\r\nMAIL FROM:").count(), 2, "{got}");
        // With PIPELINING the RSET came with MAIL behind it (one write);
        // without, the client waited for its reply.
        let rsets = server.pipelined().iter().filter(|v| *v == "RSET").count();
        assert_eq!(
            rsets,
            if pipelining { 2 } else { 0 },
            "pipelining {pipelining}"
        );
    }
}

/// A server that closed the session while it was idle: RSET gets 421.
async fn idle_timeout_server(pipelining: bool) -> FakeServer {
    FakeServer::start(Script {
        pipelining,
        rset_reply: IDLE_TIMEOUT_REPLY.into(),
        ..Script::default()
    })
    .await
}

#[tokio::test]
async fn a_refused_rset_makes_the_failure_stale_and_sends_no_body() {
    for pipelining in [true, false] {
        let server = idle_timeout_server(pipelining).await;
        let mut s = open(&server).await;
        assert!(matches!(
            send_one(&mut s, 1).await,
            Ok(Outcome::Delivered(_))
        ));
        let f = send_one(&mut s, 2).await.unwrap_err();
        assert!(f.stale, "pipelining {pipelining}: {f}");
        assert!(!f.session_refused);
        assert!(
            matches!(&f.reason, Reason::Reply { phase: Phase::Rset, reply } if reply.code == 421),
            "{f}"
        );
        assert!(!s.is_reusable());
        server.wait_closed(1, Duration::from_secs(5)).await;
        assert_eq!(server.bodies().len(), 1, "pipelining {pipelining}");
    }
}

/// The configuration of a daemon whose one relay is `server`.
fn config(server: &FakeServer) -> postrelay::config::Config {
    let text = format!(
        "hostname = \"client.postrelay.test\"\n\
         [[relay]]\nname = \"fake\"\nhost = \"127.0.0.1\"\nport = {}\n\
         tls = \"starttls\"\nsecurity = \"none\"\n",
        server.port()
    );
    postrelay::config::parse(&text, "test").unwrap()
}

/// Two messages one after the other through the engine: `conn_use` of
/// each attempt, after checking that both were delivered.
async fn two_attempts(server: &FakeServer) -> [u32; 2] {
    let engine = Deliverer::new(&config(server), None, Arc::new(Resolver::system())).unwrap();
    let mut uses = [0; 2];
    for (n, slot) in uses.iter_mut().enumerate() {
        let sp = spool(format!("Subject: {n}\r\n\r\nbody\r\n").as_bytes());
        let env = support::client::envelope(&sp);
        let attempt = engine.attempt(&env, &sp.path, &[0]).await;
        assert!(
            matches!(&attempt.outcomes[..], [(0, Outcome::Delivered(_))]),
            "message {n}: {:?} {:?}",
            attempt.outcomes,
            attempt.transcript
        );
        *slot = attempt.conn_use;
    }
    engine.close_idle();
    uses
}

#[tokio::test]
async fn the_engine_reuses_a_session() {
    let server = FakeServer::start(Script {
        pipelining: true,
        ..Script::default()
    })
    .await;
    assert_eq!(two_attempts(&server).await, [1, 2]);
    assert_eq!(server.connections(), 1);
    assert_eq!(server.bodies().len(), 2);
}

#[tokio::test]
async fn the_engine_replaces_a_stale_session_without_deferring() {
    for pipelining in [true, false] {
        let server = idle_timeout_server(pipelining).await;
        // The second message found the idle session closed and went on a
        // new connection, as the first message on it.
        assert_eq!(
            two_attempts(&server).await,
            [1, 1],
            "pipelining {pipelining}"
        );
        assert_eq!(server.connections(), 2);
        assert_eq!(server.bodies().len(), 2);
    }
}

/// The transcript of a reused session holds the attempt's own lines only:
/// a delivered transaction leaves none (nobody reads it), and the next
/// message's deferral shows its own MAIL, not the one before.
#[tokio::test]
async fn a_transcript_holds_nothing_of_the_message_before() {
    let server = FakeServer::start(Script {
        pipelining: true,
        first_mail_replies: vec!["250 2.1.0 ok".into(), "451 4.3.0 later".into()],
        ..Script::default()
    })
    .await;
    let engine = Deliverer::new(&config(&server), None, Arc::new(Resolver::system())).unwrap();
    let mut attempts = Vec::new();
    for n in 0..2 {
        let sp = spool(format!("Subject: {n}\r\n\r\nbody\r\n").as_bytes());
        let env = support::client::envelope(&sp);
        attempts.push(engine.attempt(&env, &sp.path, &[0]).await);
    }
    engine.close_idle();
    let (first, second) = (&attempts[0], &attempts[1]);
    assert!(matches!(&first.outcomes[..], [(0, Outcome::Delivered(_))]));
    assert!(first.transcript.is_empty(), "{:?}", first.transcript);
    assert!(matches!(&second.outcomes[..], [(0, Outcome::Deferred(_))]));
    assert_eq!(second.conn_use, 2, "{:?}", second.transcript);
    let sent = |prefix: &str| {
        second
            .transcript
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    };
    // It starts with the RSET that opened this transaction; the first
    // message's MAIL and its reply are gone.
    assert_eq!(
        (
            second.transcript.first().map(String::as_str),
            sent("C: MAIL FROM:"),
            sent("S: 250 2.1.0 ok"),
        ),
        (Some("C: RSET"), 1, 0),
        "{:?}",
        second.transcript
    );
}
