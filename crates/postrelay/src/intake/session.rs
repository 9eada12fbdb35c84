//! One SMTP server session: reads commands from a [`Conn`], asks the
//! protocol state machine whether they are in order, applies policy and
//! limits, and hands accepted messages to the queue ([`Queue::accept`]).
//!
//! What it is not: a parser (that is `postrelay_smtp`), a policy table
//! (`policy`), or STARTTLS and AUTH: those two commands come back to the
//! listener's driver as [`Flow::Extension`]. The loopback listener's driver
//! ([`Session::run`]) refuses them with 502; the submission listener's
//! (`submission::dialog`) carries them out. The session answers every input
//! with a reply that says what to fix; it never acknowledges a message
//! before the queue has committed it. The DATA phase (queue file, trace
//! header, receiving, committing) is in `session::data`.
//!
//! [`Queue::accept`]: crate::queue::Queue::accept

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postrelay_smtp::address::ReversePath;
use postrelay_smtp::command::{Command, MailParams};
use postrelay_smtp::ehlo::Capabilities;
use postrelay_smtp::line::{Line, next_line, skip_to_line_end};
use postrelay_smtp::reply::Reply;
use postrelay_smtp::server::ServerState;

use super::Shared;
use super::policy;

mod data;
use crate::config::Config;
use crate::net::tls_server::ServerTransport;
use crate::net::{Conn, ConnError};
use crate::spool::Health;

/// What the loop does after a command.
pub(super) enum Flow {
    Continue,
    Close,
    /// STARTTLS or AUTH: the listener's driver decides (the loopback
    /// refuses them, submission carries them out).
    Extension(Command),
}

/// Who authenticated on a submission listener, and with which mechanism.
pub(super) struct Login {
    pub user: String,
    pub method: &'static str,
}

/// The mail transaction being built (MAIL, RCPT…).
#[derive(Default)]
struct Transaction {
    sender: String,
    params: MailParams,
    recipients: Vec<String>,
}

/// One client connection.
pub struct Session<S> {
    pub(super) conn: Conn<S>,
    pub(super) shared: Arc<Shared>,
    pub(super) config: Arc<Config>,
    pub(super) peer: SocketAddr,
    /// May relay to any domain (`mynetworks`, or after AUTH).
    pub(super) trusted: bool,
    pub(super) state: ServerState,
    pub(super) helo: String,
    tx: Option<Transaction>,
    errors: usize,
    deadline: Instant,
    /// When the line being read (command, SASL response or DATA line)
    /// began; `None` between lines. Bounds it by `intake.line_timeout`.
    pub(super) line_started: Option<Instant>,
    /// On a submission listener: EHLO offers STARTTLS (before TLS) and
    /// AUTH (after), and MAIL needs AUTH.
    pub(super) submission: bool,
    /// Who authenticated (for the mail log and `Received:`).
    pub(super) login: Option<Login>,
}

impl<S: ServerTransport> Session<S> {
    /// A session for a freshly accepted connection.
    pub fn new(stream: S, peer: SocketAddr, shared: Arc<Shared>) -> Self {
        let config = shared.config();
        let trusted = policy::is_trusted(&config.intake, peer.ip());
        let deadline = Instant::now() + config.intake.session_timeout;
        Session {
            conn: Conn::new(stream),
            shared,
            config,
            peer,
            trusted,
            state: ServerState::new(),
            helo: String::new(),
            tx: None,
            errors: 0,
            deadline,
            line_started: None,
            submission: false,
            login: None,
        }
    }

    /// A session on a submission listener: nobody is trusted to relay
    /// before AUTH, whatever `mynetworks` says. Its driver is
    /// `submission::dialog::run`.
    pub(super) fn for_submission(stream: S, peer: SocketAddr, shared: Arc<Shared>) -> Self {
        let mut session = Session::new(stream, peer, shared);
        session.trusted = false;
        session.submission = true;
        session
    }

    /// Sends `reply` instead of the greeting and closes.
    pub async fn refuse(mut self, reply: &Reply) {
        self.reply(reply);
        self.close().await;
    }

    /// Runs a loopback session to its end; STARTTLS and AUTH are not
    /// offered there. Errors are logged, never propagated: a broken client
    /// must not affect anyone else.
    pub async fn run(mut self) {
        self.greet();
        loop {
            match self.step().await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => break,
                Ok(Flow::Extension(cmd)) => {
                    let what = if matches!(cmd, Command::StartTls) {
                        "STARTTLS"
                    } else {
                        "AUTH"
                    };
                    self.reply(&Reply::new(
                        502,
                        "5.5.1",
                        format!("{what} is not offered on this listener"),
                    ));
                    if let Flow::Close = self.count_error() {
                        break;
                    }
                }
                Err(e) => {
                    self.ended(&e);
                    return;
                }
            }
        }
        self.close().await;
    }

    /// Queues the `220` greeting.
    pub(super) fn greet(&mut self) {
        let greeting = format!("{} ESMTP postrelay", self.config.hostname);
        self.reply_text(220, "", &greeting);
    }

    /// The connection broke or timed out: logged, nothing more to say.
    pub(super) fn ended(&self, e: &ConnError) {
        tracing::debug!(peer = %self.peer, error = %e, "session ended");
    }

    /// Sends what is queued and closes the connection (the last reply and
    /// the FIN in one segment where the transport allows).
    pub(super) async fn close(mut self) {
        let last = std::mem::take(self.conn.send_buffer());
        let finish = self.conn.stream_mut().finish(&last);
        let _ = tokio::time::timeout(Duration::from_secs(10), finish).await;
    }

    pub(super) fn reply(&mut self, reply: &Reply) {
        reply.encode_into(self.conn.send_buffer());
    }

    /// Queues a one-line reply straight into the send buffer (no [`Reply`]
    /// built for it).
    pub(super) fn reply_text(&mut self, code: u16, enhanced: &str, text: &str) {
        Reply::encode_parts(self.conn.send_buffer(), code, enhanced, &[text]);
    }

    /// The time allowed for the next read: the command timeout, cut short
    /// by the session's total time limit.
    pub(super) fn read_timeout(&self, base: Duration) -> Duration {
        base.min(self.deadline.saturating_duration_since(Instant::now()))
    }

    /// The time allowed for the next read of a line already begun: `base`
    /// (which restarts with every read), cut short by the line's deadline
    /// (`intake.line_timeout` from its first byte) and the session's. A
    /// client trickling a byte at a time cannot hold a line open longer.
    pub(super) fn line_read_timeout(&mut self, base: Duration) -> Duration {
        let started = *self.line_started.get_or_insert_with(Instant::now);
        let deadline = started + self.config.intake.line_timeout;
        let left = deadline.saturating_duration_since(Instant::now());
        self.read_timeout(base).min(left)
    }

    /// Reads more input while waiting for a command. Shutdown interrupts
    /// only this wait, never a command in progress.
    async fn wait_for_command(&mut self) -> Result<Flow, ConnError> {
        let base = self.config.intake.command_timeout;
        // Between lines only the command timeout applies (an idle client);
        // once a line has begun, its deadline applies too.
        let timeout = if self.conn.buffered().is_empty() {
            self.line_started = None;
            self.read_timeout(base)
        } else {
            self.line_read_timeout(base)
        };
        self.conn.flush(self.config.intake.command_timeout).await?;
        let shutdown = self.shared.shutdown.clone();
        // Cancel safety: `fill` only awaits `read_buf` here (output was
        // flushed above), and dropping `read_buf` loses no data.
        tokio::select! {
            r = self.conn.fill(timeout) => match r {
                Ok(_) => Ok(Flow::Continue),
                Err(ConnError::Timeout(_)) => {
                    self.timeout_reply();
                    Ok(Flow::Close)
                }
                Err(e) => Err(e),
            },
            _ = shutdown.cancelled() => {
                self.reply(&Reply::new(421, "4.3.2", format!("{} Service shutting down, try again later", self.config.hostname)));
                Ok(Flow::Close)
            }
        }
    }

    /// Tells the client it took too long, and logs who and which limit.
    pub(super) fn timeout_reply(&mut self) {
        let now = Instant::now();
        let line_over = self
            .line_started
            .is_some_and(|t| now >= t + self.config.intake.line_timeout);
        let (limit, text) = if now >= self.deadline {
            ("intake.session_timeout", "session time limit exceeded")
        } else if line_over {
            ("intake.line_timeout", "timeout exceeded")
        } else {
            ("read timeout", "timeout exceeded")
        };
        tracing::warn!(peer = %self.peer, limit, "client too slow: {text}; closing");
        let text = format!("{} Error: {text}", self.config.hostname);
        self.reply(&Reply::new(421, "4.4.2", &text));
    }

    /// Reads and carries out one command (or reads more input).
    pub(super) async fn step(&mut self) -> Result<Flow, ConnError> {
        // command_length_limit counts the CRLF; next_line's limit does not.
        let limit = self.config.intake.command_length_limit;
        let max = usize::try_from(limit.saturating_sub(2)).unwrap_or(usize::MAX);
        let line = next_line(self.conn.buffered(), max);
        if !matches!(line, Line::Incomplete) {
            // A line ended: the next one gets its own deadline.
            self.line_started = None;
        }
        let parsed = match line {
            Line::Incomplete => return self.wait_for_command().await,
            Line::Complete { line, consumed } => {
                let parsed = Command::parse(line);
                self.conn.consume(consumed);
                parsed
            }
            Line::TooLong { .. } => {
                self.reply(&Reply::new(
                    500,
                    "5.5.2",
                    format!("Error: command line longer than {limit} octets"),
                ));
                self.discard_rest_of_line().await?;
                return Ok(self.count_error());
            }
            Line::BareLf { consumed } | Line::BareCr { consumed } => {
                let bare_cr = self.conn.buffered().get(consumed - 1) == Some(&b'\r');
                self.conn.consume(consumed);
                // A client whose line ends differ from ours is not trusted
                // with the transaction it had open (README, Guarantees).
                self.reset();
                self.reply(&Reply::new(
                    500,
                    "5.5.2",
                    "Error: bare <CR> or <LF> in command; lines must end with <CR><LF>",
                ));
                if bare_cr {
                    // What follows the CR up to the CRLF belongs to the
                    // refused line: never run it as a command of its own.
                    self.discard_rest_of_line().await?;
                }
                return Ok(self.count_error());
            }
        };
        match parsed {
            Err(e) => {
                self.reply(&e.reply());
                Ok(self.count_error())
            }
            Ok(cmd) => {
                if let Err(reply) = self.state.check(&cmd) {
                    self.reply(&reply);
                    return Ok(self.count_error());
                }
                self.command(cmd).await
            }
        }
    }

    pub(super) async fn discard_rest_of_line(&mut self) -> Result<(), ConnError> {
        loop {
            if let Some(n) = skip_to_line_end(self.conn.buffered()) {
                self.conn.consume(n);
                self.line_started = None;
                return Ok(());
            }
            // Keep a final CR: it may be the first half of the CRLF.
            let buf = self.conn.buffered();
            let keep = usize::from(buf.last() == Some(&b'\r'));
            self.conn.consume(buf.len() - keep);
            let timeout = self.line_read_timeout(self.config.intake.command_timeout);
            self.conn.fill(timeout).await?;
        }
    }

    /// Counts a protocol error; too many end the session (a client in a
    /// loop, or someone probing).
    pub(super) fn count_error(&mut self) -> Flow {
        self.errors += 1;
        if self.errors >= self.config.intake.max_errors {
            self.reply(&Reply::new(
                421,
                "4.7.0",
                format!("{} Error: too many errors", self.config.hostname),
            ));
            return Flow::Close;
        }
        Flow::Continue
    }

    async fn command(&mut self, cmd: Command) -> Result<Flow, ConnError> {
        match cmd {
            Command::Ehlo(name) => self.hello(name, true),
            Command::Helo(name) => self.hello(name, false),
            Command::Mail { .. } if self.submission && self.login.is_none() => {
                self.reply_text(530, "5.7.0", "Authentication required");
                return Ok(self.count_error());
            }
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, .. } => return Ok(self.rcpt(&to).await),
            Command::Data => return self.data().await,
            Command::Rset => {
                self.reset();
                self.reply_text(250, "2.0.0", "Ok");
            }
            Command::Noop(_) => self.reply_text(250, "2.0.0", "Ok"),
            Command::Quit => {
                self.reply_text(221, "2.0.0", "Bye");
                return Ok(Flow::Close);
            }
            Command::Vrfy(_) => self.reply(&Reply::new(
                252,
                "2.5.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Command::Expn(_) => self.reply_text(502, "5.5.1", "EXPN is not available"),
            Command::Help(_) => self.reply(&Reply::new(
                214,
                "2.0.0",
                "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
            )),
            cmd @ (Command::StartTls | Command::Auth { .. }) => {
                return Ok(Flow::Extension(cmd));
            }
        }
        Ok(Flow::Continue)
    }

    /// Forgets the transaction (RSET, a new EHLO, a broken line).
    pub(super) fn reset(&mut self) {
        self.tx = None;
        self.state.reset();
    }

    fn hello(&mut self, name: String, esmtp: bool) {
        self.reset();
        self.state.greeted(esmtp);
        self.helo = name;
        let host = &self.config.hostname;
        if !esmtp {
            Reply::encode_parts(self.conn.send_buffer(), 250, "", &[host]);
            return;
        }
        let mut caps = Capabilities {
            pipelining: true,
            size: Some(self.config.intake.message_size_limit),
            eight_bit_mime: true,
            smtputf8: true,
            enhanced_status_codes: true,
            ..Capabilities::default()
        };
        if self.submission {
            // RFC 3207 §4.2 and RFC 4954 §4: no STARTTLS once TLS is on,
            // no AUTH (and so no password) before.
            let tls = self.conn.stream().is_tls();
            caps.starttls = !tls;
            if tls {
                caps.auth = vec!["PLAIN".to_owned(), "LOGIN".to_owned()];
            }
        }
        caps.encode_ehlo_reply(host, self.conn.send_buffer());
    }

    fn mail(&mut self, from: ReversePath, params: MailParams) {
        let limit = self.config.intake.message_size_limit;
        if params.size.is_some_and(|s| s > limit) {
            self.reply(&Reply::new(
                552,
                "5.3.4",
                format!("Message size exceeds fixed limit of {limit} octets"),
            ));
            return;
        }
        if let Health::Low { reason } = self.shared.queue.health() {
            tracing::warn!(%reason, "refusing mail: spool low");
            self.reply(&Reply::new(
                452,
                "4.3.1",
                "Insufficient system storage, try again later",
            ));
            return;
        }
        let sender = match &from {
            ReversePath::Null => String::new(),
            ReversePath::Mailbox(m) if !m.is_ascii() && !params.smtputf8 => {
                self.reply(&Reply::new(
                    553,
                    "5.6.7",
                    format!("<{m}>: non-ASCII address needs the SMTPUTF8 parameter"),
                ));
                return;
            }
            ReversePath::Mailbox(m) => m.to_string(),
        };
        self.state.mail_accepted();
        self.tx = Some(Transaction {
            sender,
            params,
            recipients: Vec::new(),
        });
        self.reply_text(250, "2.1.0", "Ok");
    }

    async fn rcpt(&mut self, to: &postrelay_smtp::address::ForwardPath) -> Flow {
        let Some(tx) = self.tx.as_mut() else {
            self.reply_text(503, "5.5.1", "Error: need MAIL command");
            return self.count_error();
        };
        if tx.recipients.len() >= self.config.intake.max_recipients {
            self.state.rcpt_rejected();
            self.reply_text(452, "4.5.3", "Error: too many recipients");
            // Not a protocol error: the client sends the rest in another
            // transaction (RFC 5321 §4.5.3.1.10).
            return Flow::Continue;
        }
        let decision = policy::recipient(
            &self.config.intake,
            &self.config.hostname,
            self.trusted,
            tx.params.smtputf8,
            to,
        );
        // Then the local recipient table (an unknown local user is refused
        // here, not bounced later).
        let decision = match decision {
            Ok(addr) => {
                let router = self.shared.queue.router();
                let catch_all = self.config.local.catch_all.is_some();
                super::recipients::check(&router, catch_all, &addr)
                    .await
                    .map(|()| addr)
            }
            Err(reply) => Err(reply),
        };
        match decision {
            Ok(addr) => {
                // The transaction is still there: nothing else runs on this
                // session while the lookup is awaited.
                if let Some(tx) = self.tx.as_mut().filter(|tx| !tx.recipients.contains(&addr)) {
                    tx.recipients.push(addr);
                }
                self.state.rcpt_accepted();
                self.reply_text(250, "2.1.5", "Ok");
                Flow::Continue
            }
            Err(reply) => {
                self.state.rcpt_rejected();
                tracing::info!(peer = %self.peer, reply = %reply, "recipient refused");
                self.reply(&reply);
                // Refused recipients count towards max_errors: a client
                // probing for an open relay is stopped like any other.
                self.count_error()
            }
        }
    }
}
