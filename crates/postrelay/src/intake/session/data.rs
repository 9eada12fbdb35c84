//! The DATA phase of a session: a new queue file, the trace header on top,
//! the client's bytes through the [`Assembler`] up to the end of data, and
//! the finished message handed to the queue ([`Queue::accept`]), which
//! decides the reply.
//!
//! Not for: the envelope commands before it (the session) or the message
//! rules themselves (`intake::message`).
//!
//! [`Queue::accept`]: crate::queue::Queue::accept

use postrelay_smtp::command::Body;
use postrelay_smtp::reply::Reply;

use super::{Flow, Session, Transaction};
use crate::intake::headers::{self, ReceivedInfo};
use crate::intake::message::{Assembler, Limits};
use crate::maillog::SaslLogin;
use crate::net::ConnError;
use crate::net::tls_server::ServerTransport;
use crate::spool::{BodyType, BodyWriter, Envelope, Health, Origin, RcptState, Recipient};

/// Room for the first read of the message's bytes, as for commands.
const FIRST_DATA_READ: usize = 16 * 1024;

/// Room for each later read, once one read has filled its room: a 100 KB
/// message in three or four reads rather than seven. A small message
/// never asks for it (a new connection's buffer is not grown for it).
const DATA_READ: usize = 64 * 1024;

impl<S: ServerTransport> Session<S> {
    /// DATA: receives the message and answers with the queue's verdict.
    pub(super) async fn data(&mut self) -> Result<Flow, ConnError> {
        let Some(writer) = self.open_body() else {
            return Ok(Flow::Continue);
        };
        let id = writer.id().to_string();
        let tx = self.tx.take().unwrap_or_default();
        let date = headers::rfc5322_now();
        let prefix = self.trace_header(&tx, &id, &date);
        let intake = &self.config.intake;
        let limits = Limits {
            message_size: intake.message_size_limit,
            header_size: intake.header_size_limit,
            line_length: intake.line_length_limit,
        };
        let message_id = format!("{id}@{}", self.config.hostname);
        let mut asm = Assembler::new(writer, limits, prefix, date, message_id);
        self.reply_text(354, "", "End data with <CR><LF>.<CR><LF>");
        if let Some(flow) = self.receive(&mut asm).await? {
            asm.abort();
            return Ok(flow);
        }
        self.state.reset();
        let sends_as_is = asm.sends_as_is();
        let writer = match asm.finish() {
            Ok(w) => w,
            Err(refusal) => {
                let reply = refusal.reply();
                tracing::info!(peer = %self.peer, %id, reply = %reply, "message refused");
                self.reply(&reply);
                return Ok(Flow::Continue);
            }
        };
        let reply = self.commit(&id, writer, tx, sends_as_is).await;
        self.reply(&reply);
        Ok(Flow::Continue)
    }

    /// A new queue file for DATA's message, or `None` with the client
    /// told to try again later (the spool is low, or the file cannot be
    /// created).
    fn open_body(&mut self) -> Option<BodyWriter> {
        if let Health::Low { reason } = self.shared.queue.health() {
            tracing::warn!(%reason, "refusing DATA: spool low");
            self.reply(&Reply::new(
                452,
                "4.3.1",
                "Insufficient system storage, try again later",
            ));
            return None;
        }
        match self.shared.queue.new_body() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(error = %e, "cannot create queue file");
                let reply = if e.is_no_space() {
                    Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
                } else {
                    Reply::new(
                        451,
                        "4.3.0",
                        "Local error creating the queue file, try again later",
                    )
                };
                self.reply(&reply);
                None
            }
        }
    }

    /// The trace header this server puts on top of the message: a
    /// `Received:` line, with the authenticated sender on submission.
    fn trace_header(&self, tx: &Transaction, id: &str, date: &str) -> String {
        let mut protocol = match (tx.params.smtputf8, self.state.esmtp()) {
            (true, _) => "UTF8SMTP",
            (false, true) => "ESMTP",
            (false, false) => "SMTP",
        };
        if self.submission {
            let tls = self.conn.stream().is_tls();
            protocol = headers::protocol(protocol, tls, self.login.is_some());
        }
        let single = (tx.recipients.len() == 1).then(|| tx.recipients[0].as_str());
        let prefix = headers::received(&ReceivedInfo {
            helo: &self.helo,
            peer_ip: self.peer.ip(),
            hostname: &self.config.hostname,
            protocol,
            id,
            single_recipient: single,
            date,
        });
        match &self.login {
            Some(login) => headers::with_authenticated_sender(&prefix, &login.user),
            None => prefix,
        }
    }

    /// Feeds the client's bytes to `asm` up to the end of data. `Some`:
    /// the client timed out (and was told); the caller aborts the message.
    ///
    /// Shutdown does not interrupt this loop: a message being received is
    /// finished (bounded by the data timeout) so the client gets a
    /// definite answer.
    ///
    /// Each line of data must arrive within `intake.line_timeout` of the
    /// previous line's end (the first one, of the 354), however steadily
    /// its bytes trickle in.
    async fn receive(&mut self, asm: &mut Assembler) -> Result<Option<Flow>, ConnError> {
        self.line_started = Some(std::time::Instant::now());
        let mut room = FIRST_DATA_READ;
        loop {
            let fed = asm.feed(self.conn.buffered());
            let line_ended = self.conn.buffered()[..fed.consumed].contains(&b'\n');
            self.conn.consume(fed.consumed);
            if fed.done {
                self.line_started = None;
                return Ok(None);
            }
            if line_ended {
                self.line_started = Some(std::time::Instant::now());
            }
            let timeout = self.line_read_timeout(self.config.intake.data_timeout);
            match self.conn.fill_up_to(room, timeout).await {
                Ok(n) if n >= room => room = DATA_READ,
                Ok(_) => {}
                Err(ConnError::Timeout(_)) => {
                    self.timeout_reply();
                    return Ok(Some(Flow::Close));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Logs the client and hands the received message to the queue; the
    /// reply says whether it is now the queue's.
    async fn commit(
        &mut self,
        id: &str,
        writer: BodyWriter,
        tx: Transaction,
        sends_as_is: bool,
    ) -> Reply {
        let envelope = self.envelope(*writer.id(), tx, writer.len(), sends_as_is);
        let login = self.login.as_ref().map(|l| SaslLogin {
            method: l.method,
            username: &l.user,
        });
        self.shared
            .maillog
            .client(id, &self.helo, self.peer.ip(), login);
        match self.shared.queue.accept(writer, envelope).await {
            Ok(_) => {
                if let Some(login) = &self.login {
                    tracing::info!(%id, peer = %self.peer, user = %login.user, "accepted from an authenticated client");
                }
                Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))
            }
            Err(e) => {
                tracing::error!(%id, error = %e, "commit failed; message not accepted");
                crate::intake::not_queued(&e)
            }
        }
    }

    /// The new message's envelope; `sends_as_is` as the receiver found.
    fn envelope(
        &self,
        id: crate::spool::QueueId,
        tx: Transaction,
        size: u64,
        sends_as_is: bool,
    ) -> Envelope {
        let now = crate::queue::now_ms();
        Envelope {
            version: crate::spool::ENVELOPE_VERSION,
            id,
            created_ms: now,
            size,
            body_crc32: None,
            origin: Origin::Smtp {
                peer: self.peer.to_string(),
                helo: self.helo.clone(),
            },
            sender: tx.sender,
            body: match tx.params.body {
                Some(Body::EightBitMime) | Some(Body::BinaryMime) => BodyType::EightBitMime,
                _ => BodyType::SevenBit,
            },
            smtputf8: tx.params.smtputf8,
            recipients: tx
                .recipients
                .into_iter()
                .map(|address| Recipient {
                    address,
                    original: None,
                    state: RcptState::Pending,
                    last_reply: None,
                    notify: None,
                })
                .collect(),
            next_attempt_ms: now,
            attempts: 0,
            reason: Some("waiting for the first delivery attempt".into()),
            transcript: None,
            delay_warned: false,
            sends_as_is,
        }
    }
}
