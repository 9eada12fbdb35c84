//! STARTTLS and AUTH: what a submission listener adds to the SMTP
//! session ([`Session`]), and the loop that drives it.
//!
//! STARTTLS is offered before TLS, AUTH (PLAIN, LOGIN) only after it,
//! checked against the users file under the brute-force limiter. Input
//! pipelined after STARTTLS drops the connection (CVE-2011-0411).
//!
//! Not for: the rest of the dialog (MAIL, RCPT, DATA, limits, policy),
//! which is the session's, shared with the loopback listener.

use std::sync::Arc;

use postrelay_smtp::command::Command;
use postrelay_smtp::line::{Line, next_line};
use postrelay_smtp::reply::Reply;
use postrelay_smtp::sasl::{self, SaslError};

use super::super::auth::{Admission, Failure, Policy};
use super::super::session::{Flow, Login, Session};
use super::{Service, decode_login, locked_out_reply, sasl_error_reply};
use crate::net::tls_server::{ServerStream, ServerTransport};
use crate::net::{Conn, ConnError};

/// Runs a submission session to its end: the session's own commands,
/// plus STARTTLS and AUTH. Errors are logged, never propagated.
pub(super) async fn run(mut session: Session<ServerStream>, service: Arc<Service>) {
    session.greet();
    loop {
        let step = match session.step().await {
            Ok(Flow::Extension(Command::StartTls)) => match session.starttls_command() {
                Tls::Start => match session.start_tls().await {
                    Some(upgraded) => {
                        session = upgraded;
                        continue;
                    }
                    None => return,
                },
                Tls::Refused(flow) => Ok(flow),
            },
            Ok(Flow::Extension(Command::Auth { mechanism, initial })) => {
                session.auth(&service, mechanism, initial).await
            }
            other => other,
        };
        match step {
            Ok(Flow::Continue | Flow::Extension(_)) => {}
            Ok(Flow::Close) => break,
            Err(e) => {
                session.ended(&e);
                return;
            }
        }
    }
    session.close().await;
}

/// What a STARTTLS command leads to.
enum Tls {
    /// `220 Ready to start TLS` is queued: run the handshake.
    Start,
    /// Refused (already on, or not configured any more).
    Refused(Flow),
}

impl Session<ServerStream> {
    /// STARTTLS on a submission listener. The upgrade itself happens in
    /// `start_tls`, after this reply is sent.
    fn starttls_command(&mut self) -> Tls {
        if self.conn.stream().is_tls() {
            self.reply(&Reply::new(503, "5.5.1", "Error: TLS already active"));
            return Tls::Refused(self.count_error());
        }
        if self.config.intake.submission.is_none() {
            self.reply(&Reply::new(
                454,
                "4.7.0",
                "TLS not available due to temporary reason",
            ));
            return Tls::Refused(Flow::Continue);
        }
        self.reply(&Reply::new(220, "2.0.0", "Ready to start TLS"));
        Tls::Start
    }

    /// Sends the queued `220`, then runs the TLS handshake and forgets
    /// everything said before it (RFC 3207 §4.2): the client must greet
    /// again. Input already buffered was sent before the handshake and
    /// could have been injected by anyone on the path (CVE-2011-0411): the
    /// connection is dropped rather than let it be taken as protected.
    /// `None` when the session is over.
    async fn start_tls(mut self) -> Option<Self> {
        let timeout = self.read_timeout(self.config.intake.command_timeout);
        if self.conn.flush(timeout).await.is_err() {
            return None;
        }
        let tls = self.config.intake.submission.as_ref()?.tls.config();
        let peer = self.peer;
        let plain = match self.conn.into_stream() {
            Ok(s) => s,
            Err((_, n)) => {
                tracing::warn!(%peer, bytes = n, "input pipelined after STARTTLS; dropping the connection");
                return None;
            }
        };
        match plain.start_tls(tls, timeout).await {
            Ok(stream) => {
                tracing::debug!(%peer, tls = ?stream.tls_description(), "TLS started");
                self.conn = Conn::new(stream);
            }
            Err(e) => {
                tracing::info!(%peer, error = %e, "STARTTLS handshake failed");
                let metrics = self.shared.maillog.metrics();
                metrics.tls_failure("submission", "starttls_handshake");
                return None;
            }
        }
        self.state.tls_started();
        self.helo.clear();
        self.reset();
        self.login = None;
        self.trusted = false;
        Some(self)
    }

    /// AUTH on a submission listener: PLAIN or LOGIN, over TLS only,
    /// checked against the users file, under the brute-force limiter.
    async fn auth(
        &mut self,
        service: &Service,
        mechanism: String,
        initial: Option<String>,
    ) -> Result<Flow, ConnError> {
        let config = self.config.clone();
        let Some(settings) = config.intake.submission.as_ref() else {
            self.reply(&Reply::new(
                454,
                "4.7.0",
                "Temporary authentication failure",
            ));
            return Ok(Flow::Continue);
        };
        if !self.conn.stream().is_tls() {
            self.reply(&Reply::new(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            ));
            return Ok(self.count_error());
        }
        if mechanism != "PLAIN" && mechanism != "LOGIN" {
            self.reply(&Reply::new(
                504,
                "5.5.4",
                "Unrecognized authentication type",
            ));
            return Ok(self.count_error());
        }
        let ip = self.peer.ip();
        if service.limiter.is_locked(ip) {
            self.shared.maillog.metrics().refused("auth_lockout");
            self.reply(&locked_out_reply());
            return Ok(Flow::Close);
        }
        let exchange = if mechanism == "PLAIN" {
            self.sasl_plain(initial).await
        } else {
            self.sasl_login(initial).await
        };
        let (authzid, user, password) = match exchange {
            Ok(Ok(credentials)) => credentials,
            Ok(Err(e)) => {
                self.reply(&sasl_error_reply(&e));
                return Ok(self.count_error());
            }
            Err(ConnError::Timeout(_)) => {
                self.timeout_reply();
                return Ok(Flow::Close);
            }
            Err(e) => return Err(e),
        };
        let policy = Policy::of(settings);
        let ticket = match service.limiter.admit(ip, policy) {
            Admission::Allowed(t) => t,
            Admission::LockedOut => {
                self.shared.maillog.metrics().refused("auth_lockout");
                self.reply(&locked_out_reply());
                return Ok(Flow::Close);
            }
            Admission::Busy => {
                self.reply(&Reply::new(
                    454,
                    "4.7.0",
                    "Temporary authentication failure, try again later",
                ));
                return Ok(self.count_error());
            }
        };
        // A client may only act as itself (no proxy authorization).
        let verified = service
            .verifier
            .verify(&settings.users, &user, password)
            .await;
        if verified && (authzid.is_empty() || authzid == user) {
            ticket.succeeded(policy);
            self.authenticated(user, &mechanism);
            return Ok(Flow::Continue);
        }
        self.auth_failed(&user, &mechanism, ticket.failed(policy))
            .await;
        Ok(Flow::Continue)
    }

    /// AUTH succeeded: the session is trusted and knows its login.
    fn authenticated(&mut self, user: String, mechanism: &str) {
        tracing::info!(peer = %self.peer, %user, %mechanism, "authenticated");
        self.state.auth_succeeded();
        self.trusted = true;
        let method = if mechanism == "PLAIN" {
            "PLAIN"
        } else {
            "LOGIN"
        };
        self.login = Some(Login { user, method });
        self.reply(&Reply::new(235, "2.7.0", "Authentication successful"));
    }

    /// AUTH failed: counted, logged, answered after the delay `failure`
    /// asks for.
    async fn auth_failed(&mut self, user: &str, mechanism: &str, failure: Failure) {
        let why = if failure.locked {
            "locked_out"
        } else {
            "bad_credentials"
        };
        self.shared
            .maillog
            .metrics()
            .auth_failure("submission", why);
        // The name as the client sent it, escaped by Debug: it is not
        // known to be a user, and must not forge log lines.
        tracing::warn!(
            peer = %self.peer,
            user = ?user,
            %mechanism,
            locked_out = failure.locked,
            "authentication failed"
        );
        // Slows guessing down without holding anyone else up; shutdown
        // cuts the wait short.
        let shutdown = self.shared.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(failure.delay) => {}
            _ = shutdown.cancelled() => {}
        }
        self.reply(&Reply::new(
            535,
            "5.7.8",
            "Authentication credentials invalid",
        ));
    }

    /// AUTH PLAIN: the initial response, or one `334` round.
    async fn sasl_plain(
        &mut self,
        initial: Option<String>,
    ) -> Result<Result<(String, String, String), SaslError>, ConnError> {
        let response = match initial {
            Some(r) => r,
            None => {
                self.reply(&Reply::new(334, "", ""));
                match self.sasl_response().await? {
                    Ok(r) => r,
                    Err(e) => return Ok(Err(e)),
                }
            }
        };
        Ok(sasl::decode_plain(&response))
    }

    /// AUTH LOGIN: user name (possibly as the initial response), then
    /// password, each base64 in answer to a `334` challenge.
    async fn sasl_login(
        &mut self,
        initial: Option<String>,
    ) -> Result<Result<(String, String, String), SaslError>, ConnError> {
        let user = match initial {
            Some(r) => r,
            None => {
                // "Username:"
                self.reply(&Reply::new(334, "", "VXNlcm5hbWU6"));
                match self.sasl_response().await? {
                    Ok(r) => r,
                    Err(e) => return Ok(Err(e)),
                }
            }
        };
        let user = match decode_login(&user) {
            Ok(u) => u,
            Err(e) => return Ok(Err(e)),
        };
        // "Password:"
        self.reply(&Reply::new(334, "", "UGFzc3dvcmQ6"));
        let password = match self.sasl_response().await? {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        Ok(decode_login(&password).map(|p| (String::new(), user, p)))
    }

    /// Reads one line of a SASL exchange (limited like a command line).
    async fn sasl_response(&mut self) -> Result<Result<String, SaslError>, ConnError> {
        let limit = self.config.intake.command_length_limit;
        let max = usize::try_from(limit.saturating_sub(2)).unwrap_or(usize::MAX);
        loop {
            match next_line(self.conn.buffered(), max) {
                Line::Complete { line, consumed } => {
                    let text = std::str::from_utf8(line).map(str::to_owned);
                    self.conn.consume(consumed);
                    self.line_started = None;
                    return Ok(text.map_err(|_| SaslError::Malformed("not ASCII")));
                }
                Line::Incomplete => {
                    let timeout = self.line_read_timeout(self.config.intake.command_timeout);
                    self.conn.fill(timeout).await?;
                }
                Line::TooLong { .. } => {
                    self.discard_rest_of_line().await?;
                    return Ok(Err(SaslError::Malformed("response too long")));
                }
                Line::BareLf { consumed } | Line::BareCr { consumed } => {
                    let bare_cr = self.conn.buffered().get(consumed - 1) == Some(&b'\r');
                    self.conn.consume(consumed);
                    self.line_started = None;
                    if bare_cr {
                        self.discard_rest_of_line().await?;
                    }
                    return Ok(Err(SaslError::Malformed("bare CR or LF")));
                }
            }
        }
    }
}
