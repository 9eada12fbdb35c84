//! The record of one delivery attempt: an outcome per attempted recipient,
//! where each went, the transcript and the timings the mail log reports.
//!
//! Also the [`Progress`] seam through which the engine hands recipients
//! delivered in the middle of an attempt to whoever records them.
//!
//! Not for: making the attempt (that is `engine`) or applying the outcomes
//! to the queue (that is the queue's worker).

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use super::client::{Failure, Session};
use super::{Outcome, Reason};

/// The result of one attempt.
#[derive(Debug, Default)]
pub struct Attempt {
    /// `(index into envelope.recipients, outcome)` for each attempted recipient.
    pub outcomes: Vec<(usize, Outcome)>,
    /// The relay that carried the transaction, `host[ip]:port`, or `none`.
    pub relay: String,
    /// The SMTP transcript, when anything went wrong (secrets redacted).
    pub transcript: Vec<String>,
    /// DNS, connect, greeting, TLS and AUTH time (zero when reused).
    pub conn_setup: Duration,
    /// MAIL through the reply to the final dot.
    pub transmission: Duration,
    /// Why relays were skipped (one line each), for `queue list`.
    pub notes: Vec<String>,
    /// Which message this is on its connection (1 for a new one), as
    /// Postfix's `conn_use=` in the log.
    pub conn_use: u32,
    /// Where each recipient went (`host[ip]:port`, `local`, `none`), for
    /// the mail log; recipients not in it went through `relay`.
    pub relays: HashMap<usize, String>,
    /// The recipients [`Attempt::record`] noted as carried by `relay`,
    /// which need no entry in `relays` (a string and a hash each) unless
    /// a later transaction goes through another relay.
    pub(crate) carried: Vec<usize>,
    /// When the earliest delivered outcome not yet recorded in the queue
    /// arrived (the final reply, or the local mailbox's): from then until
    /// the queue records it, a crash delivers that recipient again.
    pub delivered_at: Option<Instant>,
    /// The connection that carried the (last) transaction, for
    /// `postrelay send-test`; `None` when no relay session was had.
    pub session: Option<SessionFacts>,
}

/// What the connection that carried a transaction was: the facts
/// `postrelay send-test` reports. TLS and AUTH happen once per pooled
/// connection, so these come from the session, not from the transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionFacts {
    /// The relay's name in the configuration.
    pub relay: String,
    /// Where it went, `host[ip]:port`.
    pub peer: String,
    /// TLS version and cipher suite; `None`: no TLS.
    pub tls: Option<String>,
    /// The names the relay's certificate is for (subjectAltName, else the
    /// subject's common name); empty without TLS.
    pub cert_names: Vec<String>,
    /// How the session logged in (`PLAIN as user U`); `None`: no AUTH.
    pub auth: Option<String>,
    /// Whether the connection was reused from the pool.
    pub reused: bool,
}

impl SessionFacts {
    /// The facts of `session` of relay `relay`, which reached `peer`.
    pub(super) fn of(relay: &str, peer: &str, session: &Session, reused: bool) -> SessionFacts {
        SessionFacts {
            relay: relay.to_owned(),
            peer: peer.to_owned(),
            tls: session.tls().map(str::to_owned),
            cert_names: session.cert_names().to_vec(),
            auth: session.auth().map(str::to_owned),
            reused,
        }
    }
}

impl Attempt {
    /// Notes which relay carried `indices`, and keeps the transcript.
    pub(super) fn record(
        &mut self,
        indices: &[usize],
        via: &str,
        transcript: Result<Vec<String>, &Failure>,
    ) {
        if self.relay != via {
            // Those the relay before carried keep it in entries of their own.
            let before = std::mem::replace(&mut self.relay, via.to_owned());
            for i in self.carried.drain(..) {
                self.relays.insert(i, before.clone());
            }
        }
        if !self.relays.is_empty() {
            for i in indices {
                self.relays.remove(i);
            }
        }
        self.carried.extend_from_slice(indices);
        if let Ok(t) = transcript {
            self.transcript = t;
        }
    }

    /// The relay recipient `index` went through, for the mail log.
    pub fn relay_of(&self, index: usize) -> &str {
        self.relays.get(&index).map_or(&self.relay, String::as_str)
    }

    /// Notes that outcomes just arrived: if any of `outcomes` is a
    /// delivery, the window in which a crash repeats it is open.
    pub(super) fn arrived(&mut self, outcomes: &[Outcome]) {
        if self.delivered_at.is_none()
            && outcomes.iter().any(|o| matches!(o, Outcome::Delivered(_)))
        {
            self.delivered_at = Some(Instant::now());
        }
    }

    /// An attempt with nothing to do.
    pub fn nothing() -> Attempt {
        Attempt {
            relay: "none".into(),
            ..Attempt::default()
        }
    }

    /// Why the message still waits, in one line for `queue list`.
    pub fn summary(&self) -> String {
        if !self.notes.is_empty() {
            return self.notes.join("; ");
        }
        self.outcomes
            .iter()
            .find_map(|(_, o)| match o {
                Outcome::Deferred(r) => Some(r.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| "delivery deferred".into())
    }

    /// Every recipient of `indices` gets `reason`, classified by the one
    /// classifier ([`Outcome::from_reason`]): a session that could not be
    /// had, or broke, leaves them waiting; nothing here decides that itself.
    pub(super) fn settle_all(&mut self, indices: &[usize], reason: &Reason) {
        self.outcomes.extend(
            indices
                .iter()
                .map(|&i| (i, Outcome::from_reason(reason.clone()))),
        );
    }
}

/// Told by the engine, in the middle of an attempt, about recipients just
/// delivered while more of the attempt remains (another local mailbox,
/// another destination): the queue's worker records them durably
/// (`queue::progress`), so that a crash during the rest of the attempt
/// does not deliver them again. The engine waits for the record before it
/// goes on; it does not call this for the attempt's last step, whose
/// outcomes the worker records at the end anyway.
pub trait Progress: Sync {
    /// `attempt.outcomes[from..]` arrived just now, at least one of them a
    /// delivery; whether those deliveries are now recorded.
    fn delivered(&self, attempt: &Attempt, from: usize) -> impl Future<Output = bool> + Send;
}

/// Records nothing mid-attempt (tools and tests of the engine alone).
pub struct NoProgress;

impl Progress for NoProgress {
    fn delivered(&self, _: &Attempt, _: usize) -> impl Future<Output = bool> + Send {
        std::future::ready(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_recipient_is_logged_with_the_relay_that_carried_it() {
        let mut a = Attempt::nothing();
        a.relays.insert(0, "local".into());
        a.record(&[1, 2], "a.example[192.0.2.1]:25", Ok(Vec::new()));
        a.record(&[3], "a.example[192.0.2.1]:25", Ok(Vec::new()));
        a.record(&[4, 5], "b.example[192.0.2.2]:25", Ok(Vec::new()));
        // Recorded again (a later transaction): the last relay counts.
        a.record(&[0, 2], "b.example[192.0.2.2]:25", Ok(Vec::new()));
        let got: Vec<&str> = (0..7).map(|i| a.relay_of(i)).collect();
        assert_eq!(
            got,
            [
                "b.example[192.0.2.2]:25",
                "a.example[192.0.2.1]:25",
                "b.example[192.0.2.2]:25",
                "a.example[192.0.2.1]:25",
                "b.example[192.0.2.2]:25",
                "b.example[192.0.2.2]:25",
                // Never recorded: the attempt's relay.
                "b.example[192.0.2.2]:25",
            ]
        );
        assert_eq!(a.relay, "b.example[192.0.2.2]:25");
    }
}
