//! When credentials may be sent, by security level, permission and TLS
//! state. No relay is needed: every refusal comes before a byte is sent,
//! and a wire without a connection still records what it would send.
//! The exchanges themselves (PLAIN, LOGIN, a refused password) are tested
//! against real and scripted relays in `tests/relay_client.rs`.

use std::sync::Arc;

use super::*;
use crate::deliver::client::tests::target;
use crate::deliver::client::transcript::Transcript;
use crate::deliver::client::{ModeMemory, Secret};

/// What `authenticate` did with the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// An error naming the plaintext risk; nothing sent.
    Refused,
    /// No AUTH, no error, and a note saying so.
    Withheld,
    /// `AUTH PLAIN` went out.
    Sent,
}

async fn decide(security: Security, allow_plaintext_auth: bool, tls_up: bool) -> Decision {
    let mut t = target(25, Arc::new(ModeMemory::new()));
    t.security = security;
    t.allow_plaintext_auth = allow_plaintext_auth;
    t.credentials = Some(("user".into(), Secret::new("pw")));
    let caps = Capabilities {
        auth: vec!["PLAIN".into()],
        ..Capabilities::default()
    };
    let mut wire = Wire::new(Transcript::new("test", false));
    let result = authenticate(&t, &mut wire, &caps, tls_up).await;
    let transcript = wire.tr.take().join("\n");
    let sent = transcript.contains("C: AUTH PLAIN <redacted>");
    match result {
        Err(Reason::Auth(text)) if !sent && text.contains("refusing to send them in plaintext") => {
            Decision::Refused
        }
        Ok(None) if !sent && transcript.contains("credentials withheld") => Decision::Withheld,
        // The wire has no connection: the relay's answer never comes.
        Err(Reason::Protocol(_)) if sent => Decision::Sent,
        other => panic!("{other:?}\n{transcript}"),
    }
}

#[tokio::test]
async fn credentials_go_out_in_clear_only_with_none_and_permission() {
    use Decision::{Refused, Sent, Withheld};
    use Security as S;
    for (security, allow, tls_up, want) in [
        (S::Verify, false, true, Sent),
        (S::Encrypt, false, true, Sent),
        (S::May, false, true, Sent),
        (S::None, false, true, Sent),
        (S::Verify, false, false, Refused),
        (S::Encrypt, false, false, Refused),
        (S::May, false, false, Withheld),
        (S::None, false, false, Refused),
        (S::None, true, false, Sent),
        // The permission counts with "none" only (the configuration
        // refuses it with the others; this is the second lock).
        (S::May, true, false, Withheld),
        (S::Encrypt, true, false, Refused),
        (S::Verify, true, false, Refused),
    ] {
        assert_eq!(
            decide(security, allow, tls_up).await,
            want,
            "security {security:?}, allow_plaintext_auth {allow}, TLS up {tls_up}"
        );
    }
}

#[test]
fn the_relays_answer_decides_and_the_error_names_the_user() {
    // How it logged in, for send-test's report; never the password.
    assert_eq!(
        finish(Reply::new(235, "2.7.0", "ok"), "u", "PLAIN"),
        Ok(Some("PLAIN as user u".into()))
    );
    let refused = finish(Reply::new(535, "5.7.8", "bad"), "u", "PLAIN").unwrap_err();
    assert_eq!(
        refused,
        Reason::Auth("relay refused the credentials of user u: 535 5.7.8 bad".into())
    );
    let failed = finish(Reply::new(454, "4.7.0", "later"), "u", "LOGIN").unwrap_err();
    assert_eq!(
        failed,
        Reason::Auth("AUTH LOGIN as user u failed: 454 4.7.0 later".into())
    );
}
