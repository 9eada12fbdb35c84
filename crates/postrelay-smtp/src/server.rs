//! The server-side command-order state machine (RFC 5321 §4.1.4): which
//! commands are allowed in which phase of the session, and the `503` replies
//! for those that are not. Policy (relay rules, limits, whether AUTH or
//! STARTTLS is offered) belongs to the daemon, not here.

use crate::command::Command;
use crate::reply::Reply;

/// Where the session is in the command sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Connected (or just switched to TLS); no EHLO/HELO yet.
    NotGreeted,
    /// Greeted, no mail transaction.
    Ready,
    /// MAIL accepted, no RCPT accepted yet.
    Mail,
    /// At least one RCPT accepted.
    Rcpt,
}

/// Command-order state of one SMTP server session.
///
/// Call [`ServerState::check`] before acting on a parsed command; if it
/// returns `Ok`, act, then report the outcome with the transition methods
/// (`greeted`, `mail_accepted`, `rcpt_accepted`, `rcpt_rejected`, `reset`,
/// `auth_succeeded`, `tls_started`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    phase: Phase,
    esmtp: bool,
    authenticated: bool,
    rcpt_rejected: bool,
}

impl Default for ServerState {
    fn default() -> Self {
        ServerState::new()
    }
}

fn bad_sequence(text: &str) -> Reply {
    Reply::new(503, "5.5.1", text)
}

impl ServerState {
    /// State right after the connection greeting.
    pub fn new() -> ServerState {
        ServerState {
            phase: Phase::NotGreeted,
            esmtp: false,
            authenticated: false,
            rcpt_rejected: false,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the client greeted with EHLO (as opposed to HELO or not yet).
    pub fn esmtp(&self) -> bool {
        self.esmtp
    }

    /// Whether AUTH succeeded in this session (cleared by STARTTLS).
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// Whether a mail transaction is open (MAIL accepted, not yet ended).
    pub fn in_transaction(&self) -> bool {
        matches!(self.phase, Phase::Mail | Phase::Rcpt)
    }

    /// Checks that `cmd` is allowed now; `Err` carries the reply to send.
    ///
    /// DATA with no accepted recipient answers `554 5.5.1 Error: no valid
    /// recipients` when at least one RCPT was tried and rejected in this
    /// transaction (see [`ServerState::rcpt_rejected`]), and `503 5.5.1
    /// Error: need RCPT command` otherwise.
    pub fn check(&self, cmd: &Command) -> Result<(), Reply> {
        match cmd {
            Command::Mail { .. } => match self.phase {
                Phase::NotGreeted => Err(bad_sequence("Error: send HELO/EHLO first")),
                Phase::Ready => Ok(()),
                Phase::Mail | Phase::Rcpt => Err(bad_sequence("Error: nested MAIL command")),
            },
            Command::Rcpt { .. } => match self.phase {
                Phase::NotGreeted | Phase::Ready => Err(bad_sequence("Error: need MAIL command")),
                Phase::Mail | Phase::Rcpt => Ok(()),
            },
            Command::Data => match self.phase {
                Phase::Rcpt => Ok(()),
                Phase::Mail if self.rcpt_rejected => {
                    Err(Reply::new(554, "5.5.1", "Error: no valid recipients"))
                }
                Phase::NotGreeted | Phase::Ready | Phase::Mail => {
                    Err(bad_sequence("Error: need RCPT command"))
                }
            },
            Command::StartTls | Command::Auth { .. } => {
                if !self.esmtp {
                    Err(bad_sequence("Error: send EHLO first"))
                } else if self.in_transaction() {
                    Err(bad_sequence("Error: MAIL transaction in progress"))
                } else if matches!(cmd, Command::Auth { .. }) && self.authenticated {
                    Err(bad_sequence("Error: already authenticated"))
                } else {
                    Ok(())
                }
            }
            Command::Ehlo(_)
            | Command::Helo(_)
            | Command::Rset
            | Command::Noop(_)
            | Command::Quit
            | Command::Vrfy(_)
            | Command::Expn(_)
            | Command::Help(_) => Ok(()),
        }
    }

    /// EHLO (`esmtp = true`) or HELO was accepted: any transaction is
    /// discarded (RFC 5321 §4.1.4).
    pub fn greeted(&mut self, esmtp: bool) {
        self.phase = Phase::Ready;
        self.esmtp = esmtp;
        self.rcpt_rejected = false;
    }

    /// MAIL was accepted.
    pub fn mail_accepted(&mut self) {
        if self.phase == Phase::Ready {
            self.phase = Phase::Mail;
            self.rcpt_rejected = false;
        }
    }

    /// A RCPT was accepted.
    pub fn rcpt_accepted(&mut self) {
        if self.in_transaction() {
            self.phase = Phase::Rcpt;
        }
    }

    /// A RCPT was refused (by policy or syntax): remembered so that DATA
    /// without any accepted recipient gets `554` instead of `503`.
    pub fn rcpt_rejected(&mut self) {
        if self.in_transaction() {
            self.rcpt_rejected = true;
        }
    }

    /// RSET, or the end of DATA (accepted or not): back to Ready, or stay
    /// NotGreeted if the client never greeted.
    pub fn reset(&mut self) {
        if self.phase != Phase::NotGreeted {
            self.phase = Phase::Ready;
        }
        self.rcpt_rejected = false;
    }

    /// AUTH succeeded.
    pub fn auth_succeeded(&mut self) {
        self.authenticated = true;
    }

    /// The TLS handshake after STARTTLS completed: all knowledge from before
    /// is discarded and the client must greet again (RFC 3207 §4.2).
    pub fn tls_started(&mut self) {
        *self = ServerState::new();
    }
}

#[cfg(test)]
mod tests;
