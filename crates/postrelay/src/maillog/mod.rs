//! The operator's mail log: one stable line per event, in the shape of
//! Postfix's log (`QUEUEID: from=<…>, size=…, nrcpt=…`) so that grep habits
//! and tools such as `pflogsumm --syslog-name=postrelay` keep working.
//!
//! It is not the debugging log (that is `tracing`). Lines are written whole
//! to the configured file (opened for append) or stderr: one `write` each,
//! or in the daemon many at a time by a thread of their own (`writer.rs`:
//! why no task waits for the log, and what a crash can lose).
//! Client-supplied text is escaped so a line can never be split or faked.
//!
//! The delivery lines follow Postfix's field order and number formats
//! exactly (`to=<…>, relay=…, delay=0.12, delays=0/0/0.05/0.07, dsn=2.0.0,
//! status=sent (…)`), because `pflogsumm` and many home-grown scripts match
//! them with regular expressions; `tests/pflogsumm.rs` runs the real
//! `pflogsumm` over lines written here.

mod escape;
mod sink;
mod writer;

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use self::escape::{address, cleaned, field, write_delay};
pub use self::escape::{clean, format_delay};
use self::sink::{Record, Sink};
use self::writer::Writer;
use crate::config::{LogFormat, LogSettings, LogTarget};
use crate::metrics::Metrics;
use crate::spool::Envelope;

/// Where mail log lines go, and the counters that follow them.
pub struct MailLog {
    out: Arc<Writer>,
    hostname: String,
    format: LogFormat,
    /// `NAME` of `NAME/smtp[pid]`.
    syslog_name: String,
    pid: u32,
    /// The local time of the line being written, as syslog writes it.
    stamp: writer::Stamp,
    /// Bumped where the matching line is written, so that the metrics and
    /// the log (and pflogsumm) agree.
    metrics: Arc<Metrics>,
}

/// What became of one recipient in one delivery attempt (Postfix's
/// `status=` word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Accepted by the relay: `status=sent`.
    Sent,
    /// Not delivered, will be retried: `status=deferred`.
    Deferred,
    /// Not delivered, returned to the sender: `status=bounced`.
    Bounced,
}

impl DeliveryStatus {
    /// The word in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Deferred => "deferred",
            DeliveryStatus::Bounced => "bounced",
        }
    }
}

/// Where the time of a delivery went, as Postfix's `delays=a/b/c/d`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delays {
    /// a: from arrival to the start of this attempt, earlier attempts
    /// and the waits between them included (as Postfix counts it).
    pub before_active: Duration,
    /// b: in the scheduler, from being picked to being handed to a
    /// delivery worker (about zero).
    pub queue_mgr: Duration,
    /// c: connection setup: DNS, TCP connect, greeting, EHLO, TLS, AUTH
    /// (zero on a reused connection).
    pub conn_setup: Duration,
    /// d: message transmission, MAIL FROM to the reply to the final dot.
    pub transmission: Duration,
}

/// One recipient's result, for [`MailLog::delivery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'a> {
    /// The recipient (`to=<…>`).
    pub rcpt: &'a str,
    /// The original recipient (`orig_to=<…>`), logged when it differs.
    pub orig_rcpt: Option<&'a str>,
    /// `host[ip]:port` of the relay, or `none` when no connection was
    /// made; see [`relay_name`].
    pub relay: &'a str,
    /// How many messages this connection carried, this one included;
    /// logged (`conn_use=N`) only when above 1, as Postfix does.
    pub conn_use: u32,
    /// From arrival to the end of this attempt (`delay=`).
    pub delay: Duration,
    /// The breakdown (`delays=a/b/c/d`).
    pub delays: Delays,
    /// The enhanced status code (`dsn=2.0.0`).
    pub dsn: &'a str,
    /// `status=`.
    pub status: DeliveryStatus,
    /// The text in parentheses after the status: the relay's reply, or our
    /// reason. Empty: no parentheses.
    pub detail: &'a str,
}

/// The `relay=` value: `host[ip]:port`, or `none` without a connection.
pub fn relay_name(host: &str, peer: Option<SocketAddr>) -> String {
    match peer {
        Some(addr) => format!("{}[{}]:{}", field(host), addr.ip(), addr.port()),
        None => "none".to_string(),
    }
}

/// A moment as people read it in a log or `queue list`, in UTC to the
/// second: `2026-12-07 15:04:05 UTC`.
pub fn utc(t: std::time::SystemTime) -> String {
    jiff::Timestamp::try_from(t).map_or_else(
        |_| "an unknown time".into(),
        |ts| ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// Whether a line is an ordinary event or a warning.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Info,
    Warning,
}

impl MailLog {
    /// Opens the configured destination.
    pub fn open(settings: &LogSettings, hostname: &str) -> io::Result<MailLog> {
        let file = |path: &std::path::Path| -> io::Result<Sink> {
            let f = OpenOptions::new().create(true).append(true).open(path)?;
            Ok(Sink::Stream(Box::new(f)))
        };
        let syslog = || Sink::Syslog(settings.syslog_socket.clone());
        let out = match (settings.to, &settings.file) {
            (LogTarget::File | LogTarget::Auto, Some(path)) => file(path)?,
            (LogTarget::Journal, _) => Sink::Journal(sink::JOURNAL_SOCKET.into()),
            (LogTarget::Syslog, _) => syslog(),
            (LogTarget::Auto, None) if sink::stderr_is_journal() => {
                Sink::Journal(sink::JOURNAL_SOCKET.into())
            }
            (LogTarget::Auto, None) if sink::is_socket(&settings.syslog_socket) => syslog(),
            _ => Sink::Stream(Box::new(io::stderr())),
        };
        let mut log = Self::with_writer(Box::new(io::sink()), hostname, settings.format);
        log.out = Writer::new(out, log.metrics.maillog_dropped());
        log.syslog_name = settings.syslog_name.clone();
        Ok(log)
    }

    /// A log writing to any sink (tests).
    pub fn with_writer(out: Box<dyn Write + Send>, hostname: &str, format: LogFormat) -> MailLog {
        let metrics = Arc::new(Metrics::new());
        MailLog {
            out: Writer::new(Sink::Stream(out), metrics.maillog_dropped()),
            hostname: hostname.to_string(),
            format,
            syslog_name: "postrelay".to_string(),
            pid: std::process::id(),
            stamp: writer::Stamp::default(),
            metrics,
        }
    }

    /// From now on records are gathered and written several at a time
    /// by a thread of their own, woken by a task on the current tokio
    /// runtime (the daemon's), so that no task waits for the log's
    /// destination; [`MailLog::stop_batching`] or dropping the log writes
    /// the rest. See `writer.rs` for what a crash can lose.
    pub fn start_batching(&self) {
        self.out.start_batching();
    }

    /// Writes every buffered line and writes later ones at once.
    pub fn stop_batching(&self) {
        self.out.stop_batching();
    }

    /// The counters that follow this log.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The client a message `id` comes from (`login` when it
    /// authenticated, on submission), logged as Postfix's smtpd does, before
    /// the message is queued; the queue then logs [`MailLog::queued`].
    pub fn client(&self, id: &str, helo: &str, ip: IpAddr, login: Option<SaslLogin<'_>>) {
        let mut text = format!("client={}[{ip}]", cleaned(helo));
        if let Some(l) = login {
            text.push_str(&format!(
                ", sasl_method={}, sasl_username={}",
                field(l.method),
                field(l.username)
            ));
        }
        self.line("smtpd", id, &text);
        let source = if login.is_some() {
            "submission"
        } else {
            "smtp"
        };
        self.metrics.accepted(source);
    }

    /// A local submission (sendmail, through maildrop/) `id` by user `uid`:
    /// `ID: uid=N from=<sender>`, as Postfix's pickup logs it, before the
    /// message is queued.
    pub fn picked_up(&self, id: &str, sender: &str, uid: u32) {
        self.line(
            "pickup",
            id,
            &format!("uid={uid} from=<{}>", cleaned(sender)),
        );
        self.metrics.accepted("pickup");
    }

    /// A message entered the active queue. Alone (without a `client=`
    /// line) for notifications postrelay generated, which pflogsumm must
    /// not count as received.
    pub fn queued(&self, env: &Envelope) {
        let id = env.id.to_string();
        self.line(
            "qmgr",
            &id,
            &format!(
                "from=<{}>, size={}, nrcpt={} (queue active)",
                cleaned(&env.sender),
                env.size,
                env.recipients.len()
            ),
        );
    }

    /// A message left the queue (delivered, bounced, or deleted).
    pub fn removed(&self, id: &str) {
        self.line("qmgr", id, "removed");
    }

    /// One recipient's result of a delivery attempt (program `smtp`):
    ///
    /// `ID: to=<rcpt>, [orig_to=<…>, ]relay=host[ip]:port, [conn_use=N, ]delay=1.2,
    /// delays=0.01/0/0.5/0.7, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as X)`
    pub fn delivery(&self, id: &str, d: &Delivery<'_>) {
        // Structured fields only where they go somewhere.
        let fields = (self.format == LogFormat::Json || self.out.wants_fields()).then(|| {
            serde_json::json!({
                "to": d.rcpt,
                "orig_to": d.orig_rcpt,
                "relay": d.relay,
                "delay": d.delay.as_secs_f64(),
                "dsn": d.dsn,
                "status": d.status.as_str(),
            })
        });
        self.emit_with(
            "smtp",
            id,
            Level::Info,
            |text| delivery_text(text, d),
            fields,
        );
        self.metrics.delivery(d.relay, d.status.as_str(), d.delay);
        // The relay refused TLS or our login: the reason's words, as
        // the worker writes them (deliver::outcome::Reason's Display).
        if d.status != DeliveryStatus::Sent {
            if d.detail.starts_with("TLS: ") {
                self.metrics.tls_failure("relay", d.status.as_str());
            } else if d.detail.starts_with("authentication: ") {
                self.metrics.auth_failure("relay", d.status.as_str());
            }
        }
    }

    /// A non-delivery notification (bounce) `dsn_id` was queued for the
    /// sender of `id`.
    pub fn bounce_created(&self, id: &str, dsn_id: &str) {
        self.line(
            "bounce",
            id,
            &format!("sender non-delivery notification: {dsn_id}"),
        );
    }

    /// A delay notification `dsn_id` was queued for the sender of `id`.
    pub fn delay_notice_created(&self, id: &str, dsn_id: &str) {
        self.line(
            "bounce",
            id,
            &format!("sender delay notification: {dsn_id}"),
        );
    }

    /// `id` had the null sender (it was itself a notification), so its
    /// failure was reported to the postmaster as `dsn_id` instead.
    pub fn postmaster_notice_created(&self, id: &str, dsn_id: &str) {
        self.line(
            "bounce",
            id,
            &format!("postmaster non-delivery notification: {dsn_id}"),
        );
    }

    /// The message stayed queued for `max_lifetime` and is returned.
    pub fn expired(&self, id: &str, sender: &str) {
        let text = format!(
            "from=<{}>, status=expired, returned to sender",
            address(sender)
        );
        self.line("qmgr", id, &text);
    }

    /// A problem with message `id` that is worth the operator's attention
    /// but is not a delivery result, in Postfix's warning shape
    /// (`postrelay/smtp[pid]: warning: ID: text`), which pflogsumm lists
    /// under "Warnings".
    pub fn warning(&self, id: &str, text: &str) {
        self.emit("smtp", id, Level::Warning, &cleaned(text));
    }

    /// Writes one event line.
    pub fn line(&self, program: &str, id: &str, text: &str) {
        self.emit(program, id, Level::Info, text);
    }

    /// Formats and writes one line.
    fn emit(&self, program: &str, id: &str, level: Level, text: &str) {
        if self.takes_lines() {
            self.emit_line(program, id, level, |line| line.push_str(text));
        } else {
            self.emit_record(program, id, level, text, None);
        }
    }

    /// [`MailLog::emit`] of the text `make` appends to the string it is
    /// given: to a file or stderr it is made in the line itself, without a
    /// string of its own. `fields` adds structured members to the JSON
    /// form and the journal's (the Postfix form has them in the text).
    fn emit_with(
        &self,
        program: &str,
        id: &str,
        level: Level,
        make: impl FnOnce(&mut String),
        fields: Option<serde_json::Value>,
    ) {
        if self.takes_lines() {
            self.emit_line(program, id, level, make);
        } else {
            let mut text = String::new();
            make(&mut text);
            self.emit_record(program, id, level, &text, fields);
        }
    }

    /// Whether a line in Postfix's form is all there is to make (a file or
    /// stderr): then it is made in the writer's buffer ([`MailLog::emit_line`]).
    fn takes_lines(&self) -> bool {
        self.format == LogFormat::Postfix && self.out.takes_lines()
    }

    /// The line of [`MailLog::emit_with`], made in the writer's buffer.
    fn emit_line(&self, program: &str, id: &str, level: Level, make: impl FnOnce(&mut String)) {
        let warning = warning_prefix(level);
        self.out.send_line_with(|line| {
            self.stamp.write(line);
            let _ = write!(
                line,
                " {} {}/{program}[{}]: {warning}{id}: ",
                self.hostname, self.syslog_name, self.pid
            );
            make(line);
            line.push('\n');
        });
    }

    /// A record for syslog or the journal, or a JSON line.
    fn emit_record(
        &self,
        program: &str,
        id: &str,
        level: Level,
        text: &str,
        fields: Option<serde_json::Value>,
    ) {
        let warning = warning_prefix(level);
        let tag = format!("{}/{program}", self.syslog_name);
        let journal_fields = if self.out.wants_fields() {
            journal_fields(id, fields.as_ref())
        } else {
            Vec::new()
        };
        let message = match self.format {
            LogFormat::Postfix => format!("{warning}{id}: {text}"),
            LogFormat::Json => {
                let mut v = serde_json::json!({
                    "time": jiff::Timestamp::now().to_string(),
                    "host": self.hostname,
                    "program": program,
                    "queue_id": id,
                    "text": text,
                });
                if level == Level::Warning {
                    v["level"] = "warning".into();
                }
                if let (Some(serde_json::Value::Object(extra)), Some(obj)) =
                    (fields, v.as_object_mut())
                {
                    obj.extend(extra);
                }
                v.to_string()
            }
        };
        let line = match self.format {
            LogFormat::Postfix => {
                let mut line = String::new();
                self.stamp.write(&mut line);
                let _ = writeln!(line, " {} {tag}[{}]: {message}", self.hostname, self.pid);
                line
            }
            LogFormat::Json => format!("{message}\n"),
        };
        let record = Record {
            tag: &tag,
            warning: level == Level::Warning,
            message: &message,
            fields: &journal_fields,
        };
        self.out.send(&record, &line);
    }
}

/// What a warning's text starts with.
fn warning_prefix(level: Level) -> &'static str {
    if level == Level::Warning {
        "warning: "
    } else {
        ""
    }
}

/// The text of a delivery line (after `ID: `), appended to `text`.
fn delivery_text(text: &mut String, d: &Delivery<'_>) {
    let _ = write!(text, "to=<{}>, ", address(d.rcpt));
    if let Some(orig) = d.orig_rcpt.filter(|o| *o != d.rcpt) {
        let _ = write!(text, "orig_to=<{}>, ", address(orig));
    }
    let _ = write!(text, "relay={}, ", field(d.relay));
    if d.conn_use > 1 {
        let _ = write!(text, "conn_use={}, ", d.conn_use);
    }
    text.push_str("delay=");
    write_delay(text, d.delay);
    let parts = [
        d.delays.before_active,
        d.delays.queue_mgr,
        d.delays.conn_setup,
        d.delays.transmission,
    ];
    for (i, part) in parts.into_iter().enumerate() {
        text.push_str(if i == 0 { ", delays=" } else { "/" });
        write_delay(text, part);
    }
    let _ = write!(text, ", dsn={}, status={}", field(d.dsn), d.status.as_str());
    if !d.detail.is_empty() {
        let _ = write!(text, " ({})", cleaned(d.detail));
    }
}

impl Drop for MailLog {
    fn drop(&mut self) {
        self.out.stop_batching();
    }
}

/// The journal fields of a record: the queue ID and the structured
/// members (`to`, `relay`, `status`…) as `POSTRELAY_TO` and so on.
fn journal_fields(id: &str, fields: Option<&serde_json::Value>) -> Vec<(&'static str, String)> {
    let mut out = vec![("POSTRELAY_QUEUE_ID", id.to_string())];
    if let Some(serde_json::Value::Object(map)) = fields {
        for (key, name) in [
            ("to", "POSTRELAY_TO"),
            ("orig_to", "POSTRELAY_ORIG_TO"),
            ("relay", "POSTRELAY_RELAY"),
            ("delay", "POSTRELAY_DELAY"),
            ("dsn", "POSTRELAY_DSN"),
            ("status", "POSTRELAY_STATUS"),
        ] {
            match map.get(key) {
                Some(serde_json::Value::String(s)) => out.push((name, clean(s))),
                Some(serde_json::Value::Null) | None => {}
                Some(v) => out.push((name, v.to_string())),
            }
        }
    }
    out
}

/// Who a submission client authenticated as, for the `client=` line.
#[derive(Debug, Clone, Copy)]
pub struct SaslLogin<'a> {
    /// The SASL mechanism (`PLAIN`, `LOGIN`).
    pub method: &'a str,
    /// The user name AUTH succeeded for.
    pub username: &'a str,
}

#[cfg(test)]
pub(crate) mod tests;
