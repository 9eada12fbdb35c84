//! Building blocks for tests of the outbound client (`deliver::client`):
//! a target on loopback, a spool file with a message, short timeouts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use postrelay::deliver::client::{
    Failure, Message, ModeMemory, Security, Session, Target, Timeouts, TlsMode,
};
use postrelay::net::tls;

pub fn short_timeouts() -> Timeouts {
    let s = Duration::from_secs;
    Timeouts {
        connect: s(5),
        greeting: s(3),
        ehlo: s(10),
        tls: s(5),
        auth: s(10),
        mail: s(10),
        rcpt: s(10),
        data: s(10),
        data_end: s(20),
        rset: s(5),
        quit: s(5),
    }
}

pub fn target(port: u16, tls: TlsMode, security: Security, ca: Option<&Path>) -> Target {
    Target {
        name: format!("test-relay-{port}"),
        host: "localhost".into(),
        tls_name: None,
        port,
        addrs: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        tls,
        security,
        tls_config_verify: tls::client_config(ca).expect("TLS config"),
        credentials: None,
        oauth: None,
        allow_plaintext_auth: false,
        helo_name: "client.postrelay.test".into(),
        timeouts: short_timeouts(),
        verbose: true,
        mode_memory: Arc::new(ModeMemory::new()),
    }
}

/// A spool file holding `body`, and the message around it.
pub struct Spool {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub size: u64,
}

pub fn spool(body: &[u8]) -> Spool {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("body.msg");
    std::fs::write(&path, body).unwrap();
    Spool {
        _dir: dir,
        path,
        size: body.len() as u64,
    }
}

/// The envelope of a message in `s` from `s@origin.example` (over SMTP)
/// to `rcpt@dest.example`, for attempts of the engine alone.
pub fn envelope(s: &Spool) -> postrelay::spool::Envelope {
    use postrelay::spool::{Envelope, Origin, QueueId, Recipient};
    let origin = Origin::Smtp {
        peer: "127.0.0.1:1".into(),
        helo: "test".into(),
    };
    let mut env = Envelope::new(
        QueueId::generate(),
        origin,
        "s@origin.example".into(),
        vec![Recipient::new("rcpt@dest.example")],
    );
    env.size = s.size;
    env
}

pub fn message<'a>(s: &'a Spool, sender: &'a str, rcpts: &'a [String]) -> Message<'a> {
    Message {
        sender,
        recipients: rcpts,
        body: &s.path,
        size: s.size,
        eight_bit: true,
        smtputf8: false,
        sends_as_is: false,
        header: None,
    }
}

pub fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A session that must open; the transcript in the panic otherwise.
pub async fn open_ok(t: &Target) -> Session {
    match Session::open(t).await {
        Ok(s) => s,
        Err(f) => panic!("open failed: {}\n{}", f.reason, f.transcript.join("\n")),
    }
}

/// A session that must fail to open, and why.
pub async fn open_err(t: &Target) -> Failure {
    match Session::open(t).await {
        Ok(mut s) => panic!("open succeeded:\n{}", s.take_transcript().join("\n")),
        Err(f) => f,
    }
}

/// A failure's reason with its transcript, for assertion messages.
pub fn reason_text(f: &Failure) -> String {
    format!(
        "{}\n--- transcript ---\n{}",
        f.reason,
        f.transcript.join("\n")
    )
}
