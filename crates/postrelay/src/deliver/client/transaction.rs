//! One mail transaction on an open session: MAIL, RCPT, DATA and the body,
//! ending in one [`Outcome`] per recipient.
//!
//! With PIPELINING (RFC 2920) MAIL, the RCPTs and DATA go out in one write
//! (in groups of [`PIPELINE_GROUP`] commands for very long recipient lists,
//! so that neither side can block writing while the other is not reading)
//! and the replies are matched to the commands by order. Without it, one
//! command at a time. The body is never sent before a 354.
//!
//! When nothing can be delivered (MAIL refused, or every RCPT refused) and
//! the relay still answers a pipelined DATA with 354, the connection is
//! dropped without another byte: anything we sent, even a lone ".", would
//! be message data, and dropping is the one way to be sure that no
//! (empty) message is delivered. The outcomes stand; the session is dead
//! and [`Session::reset`] reports that.
//!
//! Not for: the permanence of a reason ([`Reason::is_permanent`] decides),
//! or opening the session.

use postrelay_smtp::{
    Body, Command, ForwardPath, MailParams, Mailbox, RcptParams, Reply, ReversePath,
};

use super::body::BodyError;
use super::session::State;
use super::{Failure, Message, Session};
use crate::deliver::outcome::{Outcome, Phase, Reason};

/// Commands per pipelined write.
const PIPELINE_GROUP: usize = 100;

/// A command of the envelope, for matching replies.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// RSET ahead of MAIL on a reused session.
    Rset,
    Mail,
    /// RCPT for the recipient at this index of the message.
    Rcpt(usize),
    Data,
}

/// What the relay answered to the envelope.
struct EnvelopeReplies {
    /// MAIL's refusal; the RCPT replies after it mean nothing.
    mail_refused: Option<Reason>,
    /// Indexes of the recipients the relay accepted.
    accepted: Vec<usize>,
    /// The reply to DATA, when DATA was sent.
    data: Option<Reply>,
}

impl EnvelopeReplies {
    /// Takes note of the reply to `step`; a refused recipient gets its
    /// outcome in `outcomes`.
    fn record(&mut self, step: Step, phase: Phase, reply: Reply, outcomes: &mut [Option<Outcome>]) {
        let ok = reply.is_positive_completion();
        match step {
            Step::Mail if !ok => self.mail_refused = Some(Reason::Reply { phase, reply }),
            Step::Mail => {}
            // After a refused MAIL the RCPT replies mean nothing.
            Step::Rcpt(_) if self.mail_refused.is_some() => {}
            Step::Rcpt(i) if ok => self.accepted.push(i),
            Step::Rcpt(i) => {
                if let Some(slot) = outcomes.get_mut(i) {
                    *slot = Some(Outcome::from_reason(Reason::Reply { phase, reply }));
                }
            }
            Step::Data => self.data = Some(reply),
            Step::Rset => {}
        }
    }
}

/// How the envelope's exchange ended.
enum Exchanged {
    /// Every reply that was due came.
    Replies(EnvelopeReplies),
    /// The relay closed the session (421): every undecided recipient gets
    /// this reason.
    Closed(Reason),
}

impl Session {
    /// Sends one message; returns one outcome per recipient, in order.
    ///
    /// `Err`: the session broke (timeout, connection lost, a spool read
    /// error mid-body); the caller defers every recipient and drops the
    /// session. A relay's 421 is not an `Err`: the undecided recipients
    /// get it as their (deferring) reason and the session is dead.
    pub async fn send(&mut self, msg: &Message<'_>) -> Result<Vec<Outcome>, Failure> {
        let reset_first = self.prepare_reuse().await?;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; msg.recipients.len()];
        let (commands, file) = match self.envelope(msg, reset_first, &mut outcomes) {
            Ok(ready) => ready,
            Err(reason) => return Ok(settle(outcomes, &reason)),
        };
        self.state = State::NeedsReset;
        let replies = match self.exchange(&commands, &mut outcomes).await? {
            Exchanged::Replies(replies) => replies,
            Exchanged::Closed(reason) => return Ok(settle(outcomes, &reason)),
        };
        let EnvelopeReplies {
            mail_refused,
            accepted,
            data,
        } = replies;
        let go_ahead = data.as_ref().is_some_and(|r| r.code == 354);
        if let Some(reason) = mail_refused {
            self.drop_if_in_data(go_ahead);
            return Ok(settle(outcomes, &reason));
        }
        if accepted.is_empty() {
            self.drop_if_in_data(go_ahead);
            return Ok(settle(
                outcomes,
                &Reason::Local("no recipient accepted".into()),
            ));
        }
        let Some(reply) = data else {
            return Err(self.broke(Reason::Protocol("DATA was not sent".into())));
        };
        if !go_ahead {
            let reason = Reason::Reply {
                phase: Phase::Data,
                reply,
            };
            return Ok(settle_accepted(outcomes, &accepted, Err(reason)));
        }
        let reply = self.transfer(file, msg).await?;
        let verdict = if reply.is_positive_completion() {
            Ok(reply)
        } else {
            Err(Reason::Reply {
                phase: Phase::DataEnd,
                reply,
            })
        };
        Ok(settle_accepted(outcomes, &accepted, verdict))
    }

    /// Readies a reused session: `Ok(true)` when the RSET is to lead the
    /// envelope's write (PIPELINING); otherwise the RSET, if one is due,
    /// has been a round trip of its own. Either way a failed RSET makes
    /// the failure `stale`.
    async fn prepare_reuse(&mut self) -> Result<bool, Failure> {
        match self.state {
            State::Dead => Err(self.stale(Reason::Protocol(
                "the session was closed; it cannot be reused".into(),
            ))),
            State::NeedsReset if self.caps.pipelining => Ok(true),
            State::NeedsReset => match self.reset().await {
                Ok(()) => Ok(false),
                Err(f) => Err(Failure { stale: true, ..f }),
            },
            State::Ready => Ok(false),
        }
    }

    /// The envelope's commands and the opened spool file; recipients whose
    /// address cannot be sent get their outcome in `outcomes`. `Err`: the
    /// reason every undecided recipient gets, nothing having been sent.
    fn envelope(
        &self,
        msg: &Message<'_>,
        reset_first: bool,
        outcomes: &mut [Option<Outcome>],
    ) -> Result<(Vec<(Step, Command)>, std::fs::File), Reason> {
        let from = reverse_path(msg.sender).map_err(|detail| Reason::Unsendable {
            status: "5.1.7",
            detail,
        })?;
        let mut rcpts = Vec::with_capacity(msg.recipients.len());
        for (i, r) in msg.recipients.iter().enumerate() {
            match forward_path(r) {
                Ok(path) => rcpts.push((i, path)),
                Err(detail) => {
                    if let Some(slot) = outcomes.get_mut(i) {
                        *slot = Some(Outcome::from_reason(Reason::Unsendable {
                            status: "5.1.3",
                            detail,
                        }));
                    }
                }
            }
        }
        if let Some(reason) = self.unsendable(msg) {
            return Err(reason);
        }
        if rcpts.is_empty() {
            return Err(Reason::Local("no valid recipient".into()));
        }
        // Plain std reads: the body sits in the page cache (written moments
        // ago, or read once after a restart), so a read costs microseconds;
        // tokio::fs would send every read to the blocking pool and back.
        let file = std::fs::File::open(msg.body).map_err(|e| {
            Reason::Local(format!(
                "cannot open the queue file {}: {e}",
                msg.body.display()
            ))
        })?;

        let params = MailParams {
            size: self.caps.size.map(|_| msg.size),
            body: (msg.eight_bit && self.caps.eight_bit_mime).then_some(Body::EightBitMime),
            smtputf8: msg.smtputf8,
            ..MailParams::default()
        };
        let mut commands = Vec::with_capacity(rcpts.len() + 3);
        if reset_first {
            commands.push((Step::Rset, Command::Rset));
        }
        commands.push((Step::Mail, Command::Mail { from, params }));
        for (i, to) in rcpts {
            let params = RcptParams::default();
            commands.push((Step::Rcpt(i), Command::Rcpt { to, params }));
        }
        commands.push((Step::Data, Command::Data));
        Ok((commands, file))
    }

    /// Sends the envelope's commands (in pipelined groups, or one at a
    /// time) and matches the replies to them; refused recipients get their
    /// outcome in `outcomes`. Stops before DATA when nothing can be
    /// delivered.
    async fn exchange(
        &mut self,
        commands: &[(Step, Command)],
        outcomes: &mut [Option<Outcome>],
    ) -> Result<Exchanged, Failure> {
        let group = if self.caps.pipelining {
            PIPELINE_GROUP
        } else {
            1
        };
        let mut got = EnvelopeReplies {
            mail_refused: None,
            accepted: Vec::new(),
            data: None,
        };
        let mut next = 0;
        while next < commands.len() {
            let rest = commands.get(next..).unwrap_or_default();
            if got.mail_refused.is_some() {
                break;
            }
            // DATA at the head of a group: every RCPT reply is known.
            if matches!(rest.first(), Some((Step::Data, _))) && got.accepted.is_empty() {
                break;
            }
            let batch = rest.get(..group.min(rest.len())).unwrap_or_default();
            for (_, cmd) in batch {
                self.wire.command(cmd);
            }
            for &(step, _) in batch {
                let (phase, timeout) = match step {
                    Step::Rset => (Phase::Rset, self.timeouts.rset),
                    Step::Mail => (Phase::Mail, self.timeouts.mail),
                    Step::Rcpt(_) => (Phase::Rcpt, self.timeouts.rcpt),
                    Step::Data => (Phase::Data, self.timeouts.data),
                };
                let reply = match self.wire.reply(phase, timeout).await {
                    Ok(r) if matches!(step, Step::Rset) && !r.is_positive_completion() => {
                        return Err(self.stale(Reason::Reply { phase, reply: r }));
                    }
                    Ok(_) if matches!(step, Step::Rset) => continue,
                    Ok(r) => r,
                    Err(reason) if matches!(step, Step::Rset) => return Err(self.stale(reason)),
                    Err(reason) => return Err(self.broke(reason)),
                };
                if reply.code == 421 {
                    // The relay is closing the session: no more replies.
                    self.state = State::Dead;
                    self.wire.abandon();
                    return Ok(Exchanged::Closed(Reason::Reply { phase, reply }));
                }
                got.record(step, phase, reply, outcomes);
            }
            next += batch.len();
        }
        Ok(Exchanged::Replies(got))
    }

    /// Sends the body after a 354 and awaits the final reply.
    async fn transfer(&mut self, file: std::fs::File, msg: &Message<'_>) -> Result<Reply, Failure> {
        match self.body(file, msg).await {
            Ok(()) => {}
            Err(BodyError::Read(e)) => {
                // The end-of-data dot must not follow a partial body.
                return Err(self.broke(Reason::Local(format!(
                    "reading the queue file {}: {e}; connection dropped before the end of data",
                    msg.body.display()
                ))));
            }
            Err(BodyError::Net(reason)) => return Err(self.broke(reason)),
        }
        let reply = match self
            .wire
            .reply(Phase::DataEnd, self.timeouts.data_end)
            .await
        {
            Ok(r) => r,
            Err(reason) => return Err(self.broke(reason)),
        };
        self.messages_sent += 1;
        if reply.code == 421 {
            self.state = State::Dead;
            self.wire.abandon();
        }
        Ok(reply)
    }

    /// A reason why this message cannot go to this relay at all.
    fn unsendable(&self, msg: &Message<'_>) -> Option<Reason> {
        if msg.smtputf8 && !self.caps.smtputf8 {
            return Some(Reason::Unsendable {
                status: "5.6.7",
                detail: format!(
                    "the message needs SMTPUTF8 (internationalized addresses), \
                     which relay {} does not offer",
                    self.name
                ),
            });
        }
        match self.caps.size {
            Some(limit) if limit > 0 && msg.size > limit => Some(Reason::Unsendable {
                status: "5.3.4",
                detail: format!(
                    "message size {} bytes exceeds the limit of relay {} ({limit} bytes)",
                    msg.size, self.name
                ),
            }),
            _ => None,
        }
    }

    /// After a 354 with nothing to deliver: drop the connection (see the
    /// module documentation).
    fn drop_if_in_data(&mut self, in_data: bool) {
        if in_data {
            self.wire.tr.note(
                "the relay accepted DATA although no recipient was accepted; \
                 closing the connection instead of sending a message",
            );
            self.state = State::Dead;
            self.wire.abandon();
        }
    }

    /// The session broke: it is dead, the connection closed.
    fn broke(&mut self, reason: Reason) -> Failure {
        self.state = State::Dead;
        self.wire.abandon();
        self.failure(reason)
    }
}

/// Every recipient without an outcome gets `reason`.
fn settle(outcomes: Vec<Option<Outcome>>, reason: &Reason) -> Vec<Outcome> {
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::from_reason(reason.clone())))
        .collect()
}

/// The accepted recipients get `verdict`: delivered with the final 2xx
/// reply, or the reason they were not.
fn settle_accepted(
    mut outcomes: Vec<Option<Outcome>>,
    accepted: &[usize],
    verdict: Result<Reply, Reason>,
) -> Vec<Outcome> {
    let mut verdict = Some(verdict);
    for (n, &i) in accepted.iter().enumerate() {
        if let Some(slot) = outcomes.get_mut(i) {
            // The last recipient takes the verdict, the others a copy.
            let v = if n + 1 == accepted.len() {
                verdict.take()
            } else {
                verdict.clone()
            };
            *slot = v.map(|v| v.map_or_else(Outcome::from_reason, Outcome::Delivered));
        }
    }
    let missing = Reason::Protocol("no reply for this recipient".into());
    settle(outcomes, &missing)
}

/// `""` is `<>`; otherwise a mailbox (angle brackets optional).
fn reverse_path(sender: &str) -> Result<ReversePath, String> {
    let parsed = if sender.is_empty() {
        Ok(ReversePath::Null)
    } else if sender.starts_with('<') {
        ReversePath::parse(sender)
    } else {
        Mailbox::parse(sender).map(ReversePath::Mailbox)
    };
    parsed.map_err(|e| format!("invalid sender address <{sender}>: {e}"))
}

/// A recipient mailbox (angle brackets optional), or `Postmaster`.
fn forward_path(rcpt: &str) -> Result<ForwardPath, String> {
    let parsed = if rcpt.starts_with('<') {
        ForwardPath::parse(rcpt)
    } else if rcpt.eq_ignore_ascii_case("postmaster") {
        Ok(ForwardPath::Postmaster)
    } else {
        Mailbox::parse(rcpt).map(ForwardPath::Mailbox)
    };
    parsed.map_err(|e| format!("invalid recipient address <{rcpt}>: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(reverse_path("").unwrap(), ReversePath::Null);
        assert_eq!(
            reverse_path("a@b.example").unwrap().to_string(),
            "<a@b.example>"
        );
        assert_eq!(
            reverse_path("<a@b.example>").unwrap().to_string(),
            "<a@b.example>"
        );
        assert!(reverse_path("a b@c").is_err());
        assert_eq!(forward_path("Postmaster").unwrap(), ForwardPath::Postmaster);
        assert_eq!(
            forward_path("x@y.example").unwrap().to_string(),
            "<x@y.example>"
        );
        assert!(forward_path("").is_err());
    }

    #[test]
    fn settling_keeps_decided_outcomes() {
        let refused = Outcome::Failed(Reason::Unsendable {
            status: "5.1.3",
            detail: "bad".into(),
        });
        let out = settle(
            vec![Some(refused.clone()), None],
            &Reason::Local("later".into()),
        );
        assert_eq!(out[0], refused);
        assert_eq!(out[1], Outcome::Deferred(Reason::Local("later".into())));
        let ok = Reply::new(250, "2.0.0", "queued");
        let out = settle_accepted(vec![None, None], &[1], Ok(ok.clone()));
        assert_eq!(out[1], Outcome::Delivered(ok.clone()));
        assert!(matches!(out[0], Outcome::Deferred(Reason::Protocol(_))));
        let out = settle_accepted(vec![None, None, None], &[0, 2], Ok(ok.clone()));
        assert_eq!(out[0], Outcome::Delivered(ok.clone()));
        assert_eq!(out[2], Outcome::Delivered(ok));
        assert!(matches!(out[1], Outcome::Deferred(Reason::Protocol(_))));
        let later = Reason::Local("later".into());
        let out = settle_accepted(vec![None, None], &[0, 1], Err(later.clone()));
        assert_eq!(
            out,
            [Outcome::Deferred(later.clone()), Outcome::Deferred(later)]
        );
    }
}
