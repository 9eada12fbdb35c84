//! Delivery status notifications (RFC 3464): the "bounce" and "delayed
//! mail" messages sent back to a sender.
//!
//! [`build`] turns an envelope, the recipients to report and the original
//! header section into a complete `multipart/report` message (RFC 6522)
//! with three parts: a plain-language explanation, the machine-readable
//! `message/delivery-status` report, and the original headers
//! (`text/rfc822-headers`; the body is never returned). Everything that
//! came from outside — addresses, relay replies, header bytes — is made
//! safe first (see `text.rs`): nothing can add a header field, end a MIME
//! part early, or exceed the 998-octet line limit.
//!
//! Who gets a notification is decided by [`should_bounce`] (never a
//! notification about a notification, so two MTAs cannot bounce at each
//! other forever) and [`wants_notice`] (the recipient's DSN `NOTIFY`).
//!
//! This module builds bytes and makes decisions; it does not queue, send
//! or log anything, and reads no clock or random source (the caller
//! passes the date, the Message-ID and a random boundary seed, which keeps
//! the output reproducible for the golden tests).

mod text;

#[cfg(test)]
mod tests;

use jiff::ZonedDateTime;
use jiff::tz::TimeZone;

use crate::deliver::outcome::Reason;
use crate::header::header_section;
use crate::spool::{Envelope, Origin, Recipient};

use text::{TEXT_WIDTH, field, one_line, wrap};

/// What happened to a reported recipient (the DSN `Action:` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Delivery failed for good; the recipient will not be tried again.
    Failed,
    /// Delivery has not succeeded yet and is still being retried.
    Delayed,
}

impl Action {
    /// The `Action:` field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
        }
    }
}

/// One recipient to report on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecipient<'a> {
    /// The address delivery went to (`Final-Recipient:`).
    pub address: &'a str,
    /// The address the client gave (`ORCPT`), as stored in the envelope:
    /// `type;address` or a bare address (`Original-Recipient:`).
    pub original: Option<&'a str>,
    /// The enhanced status code, `5.1.1` (`Status:`). A malformed value is
    /// reported as `5.0.0` (failed) or `4.0.0` (delayed).
    pub status: String,
    /// The relay's reply, e.g. `550 5.1.1 <x@y>: Recipient address
    /// rejected` (`Diagnostic-Code: smtp; …`).
    pub diagnostic: Option<String>,
    /// Our own words: the whole explanation when there is no reply
    /// (`Diagnostic-Code: X-Postrelay; …`), or context for the reply
    /// (`in reply to RCPT TO`), shown in the text part.
    pub reason: Option<String>,
    /// The relay's host name (`Remote-MTA: dns; …`).
    pub remote_mta: Option<String>,
    /// Failed or delayed.
    pub action: Action,
}

impl<'a> FailedRecipient<'a> {
    /// The report for `rcpt` given why its delivery failed or waits: a
    /// relay reply becomes the diagnostic, anything else our reason.
    pub fn from_reason(
        rcpt: &'a Recipient,
        reason: &Reason,
        remote_mta: Option<&str>,
        action: Action,
    ) -> FailedRecipient<'a> {
        let (diagnostic, why) = match reason {
            Reason::Reply { phase, reply } => (
                Some(reply.to_string()),
                Some(format!("in reply to {phase}")),
            ),
            other => (None, Some(other.to_string())),
        };
        FailedRecipient {
            address: &rcpt.address,
            original: rcpt.original.as_deref(),
            status: reason.status(),
            diagnostic,
            reason: why,
            remote_mta: remote_mta.map(str::to_string),
            action,
        }
    }
}

/// Everything a notification is made of.
#[derive(Debug, Clone)]
pub struct DsnInput<'a> {
    /// The message being reported on.
    pub envelope: &'a Envelope,
    /// The recipients to report, failed and/or delayed.
    pub recipients: Vec<FailedRecipient<'a>>,
    /// The header section of the queued message (see [`header_section`]);
    /// anything after its first empty line is ignored.
    pub original_headers: &'a [u8],
    /// Our host name (`Reporting-MTA:`, and the text part).
    pub reporting_mta: &'a str,
    /// The `From:` address, `MAILER-DAEMON@hostname`.
    pub from: &'a str,
    /// Who the notification goes to (`To:`): the original sender, or the
    /// postmaster for [`BounceDecision::Postmaster`].
    pub to: &'a str,
    /// The `Date:`; its time zone is used for every date in the message.
    pub now: ZonedDateTime,
    /// For delayed recipients: until when delivery is retried (Unix ms),
    /// shown in the text and as `Will-Retry-Until:`.
    pub retry_until_ms: Option<u64>,
    /// The `Message-ID:` without angle brackets, `<unique>@<hostname>`.
    pub message_id: String,
    /// Random text the MIME boundary is made from (see `text::boundary`);
    /// a fresh queue id or 16 random characters will do.
    pub boundary_seed: String,
}

/// Where a notification about a message goes, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceDecision<'a> {
    /// To the envelope sender.
    Sender(&'a str),
    /// The message had the null sender (it was itself a notification) or
    /// was one of our own notifications: never answer it, to avoid loops,
    /// but tell the postmaster (a "double bounce"; log it).
    Postmaster,
    /// It was our own notification to the postmaster: nobody is left to
    /// tell. Log it and drop it.
    Discard,
}

/// Where to send the notification about `env`. `postmaster` is the
/// configured postmaster address (`bounce.postmaster`).
///
/// Our own notifications (origin [`Origin::Bounce`]) never go back to
/// their sender, even when `bounce.sender` is set to a real address for a
/// provider that refuses `MAIL FROM:<>`: two relays bouncing at each other
/// would otherwise loop. RFC 3834's `Auto-Submitted` does not stop DSNs:
/// a message marked auto-generated still gets a bounce to a non-null
/// sender (RFC 3834 §2 is about replies; the null sender is the guard).
pub fn should_bounce<'e>(env: &'e Envelope, postmaster: &str) -> BounceDecision<'e> {
    match env.origin {
        Origin::Bounce { .. } => {
            let to_postmaster = !env.recipients.is_empty()
                && env
                    .recipients
                    .iter()
                    .all(|r| r.address.eq_ignore_ascii_case(postmaster));
            if to_postmaster {
                BounceDecision::Discard
            } else {
                BounceDecision::Postmaster
            }
        }
        _ if env.sender.is_empty() => BounceDecision::Postmaster,
        _ => BounceDecision::Sender(&env.sender),
    }
}

/// Whether the recipient's DSN `NOTIFY` asks for a notice of this kind.
/// Without `NOTIFY`, failures are reported and delays too (the caller
/// still decides whether delay notices are enabled at all); `NEVER`
/// silences both.
pub fn wants_notice(rcpt: &Recipient, action: Action) -> bool {
    let Some(notify) = &rcpt.notify else {
        return true;
    };
    let word = match action {
        Action::Failed => "FAILURE",
        Action::Delayed => "DELAY",
    };
    notify.iter().any(|n| n.eq_ignore_ascii_case(word))
}

/// Builds the complete notification: CRLF line ends, no line over 998
/// octets.
///
/// The result is 7-bit unless an address, a reply or the original headers
/// hold non-ASCII bytes; then `Content-Transfer-Encoding: 8bit` is
/// declared and the caller must queue it with `BODY=8BITMIME` (and with
/// `SMTPUTF8` when an address is UTF-8: the report then uses
/// `message/global-delivery-status`, RFC 6533).
pub fn build(input: &DsnInput<'_>) -> Vec<u8> {
    let explanation = explanation(input);
    let report = delivery_status(input);
    let headers = text::quote_header_section(header_section(input.original_headers));
    let boundary = text::boundary(
        &input.boundary_seed,
        input.reporting_mta,
        &[explanation.as_bytes(), report.as_bytes(), &headers],
    );

    // Non-ASCII in the report can only come from UTF-8 addresses or
    // replies: RFC 6533's global type carries them as they are.
    let global = !report.is_ascii();
    let report_type = if global {
        "global-delivery-status"
    } else {
        "delivery-status"
    };
    let headers_type = if !headers.is_ascii() && input.envelope.smtputf8 {
        "message/global-headers"
    } else {
        "text/rfc822-headers"
    };
    let eight_bit = !explanation.is_ascii() || global || !headers.is_ascii();
    let any_failed = input.recipients.iter().any(|r| r.action == Action::Failed);

    let mut m = String::with_capacity(4096);
    m += &field("From", &format!("Mail Delivery System <{}>", input.from));
    m += &field("To", &format!("<{}>", input.to));
    m += &field(
        "Subject",
        if any_failed {
            "Undelivered Mail Returned to Sender"
        } else {
            "Delayed Mail (still being retried)"
        },
    );
    m += &field("Date", &rfc5322_date(&input.now));
    m += &field(
        "Message-ID",
        &format!("<{}>", message_id(&input.message_id)),
    );
    m += "Auto-Submitted: auto-replied\r\n";
    m += "MIME-Version: 1.0\r\n";
    m += &format!(
        "Content-Type: multipart/report; report-type={report_type};\r\n\tboundary=\"{boundary}\"\r\n"
    );
    if eight_bit {
        m += "Content-Transfer-Encoding: 8bit\r\n";
    }
    m += "\r\n";
    m += "This is a MIME-encapsulated message.\r\n";

    m += &format!("\r\n--{boundary}\r\n");
    m += "Content-Description: Notification\r\n";
    if explanation.is_ascii() {
        m += "Content-Type: text/plain; charset=us-ascii\r\n";
    } else {
        m += "Content-Type: text/plain; charset=utf-8\r\n";
        m += "Content-Transfer-Encoding: 8bit\r\n";
    }
    m += "\r\n";
    m += &explanation;

    m += &format!("\r\n--{boundary}\r\n");
    m += "Content-Description: Delivery report\r\n";
    m += &format!("Content-Type: message/{report_type}\r\n");
    if global {
        m += "Content-Transfer-Encoding: 8bit\r\n";
    }
    m += "\r\n";
    m += &report;

    m += &format!("\r\n--{boundary}\r\n");
    m += &format!(
        "Content-Description: {}\r\n",
        if any_failed {
            "Undelivered Message Headers"
        } else {
            "Delayed Message Headers"
        }
    );
    m += &format!("Content-Type: {headers_type}\r\n");
    if !headers.is_ascii() {
        m += "Content-Transfer-Encoding: 8bit\r\n";
    }
    m += "\r\n";

    let mut out = m.into_bytes();
    out.extend_from_slice(&headers);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The human-readable part.
fn explanation(input: &DsnInput<'_>) -> String {
    let host = one_line(input.reporting_mta);
    let mut t = String::new();
    t += &wrap(
        &format!("This is the mail system at host {host}."),
        TEXT_WIDTH,
        "",
    );
    t += "\r\n";
    if input.envelope.sender.is_empty() || matches!(input.envelope.origin, Origin::Bounce { .. }) {
        t += &wrap(
            "This is a copy for the postmaster: the message below was itself a \
             delivery notification, so it is not returned to its sender.",
            TEXT_WIDTH,
            "",
        );
        t += "\r\n";
    }
    let failed: Vec<_> = input
        .recipients
        .iter()
        .filter(|r| r.action == Action::Failed)
        .collect();
    let delayed: Vec<_> = input
        .recipients
        .iter()
        .filter(|r| r.action == Action::Delayed)
        .collect();
    if !failed.is_empty() {
        t += &wrap(
            "Your message could not be delivered to one or more recipients, and \
             will not be retried for them. The reasons are below; the headers of \
             your message are attached. If you need help, forward this notice to \
             your postmaster.",
            TEXT_WIDTH,
            "",
        );
        t += "\r\n";
        for r in &failed {
            t += &recipient_line(r);
            t += "\r\n";
        }
    }
    if !delayed.is_empty() {
        let until = match input.retry_until_ms {
            Some(ms) => format!(" until {}", date_at(ms, input.now.time_zone())),
            None => String::new(),
        };
        t += &wrap(
            &format!(
                "Your message has not been delivered yet to the recipients below. \
                 No action is required on your part: delivery will be retried{until}, \
                 and you will get another notice if it fails for good."
            ),
            TEXT_WIDTH,
            "",
        );
        t += "\r\n";
        for r in &delayed {
            t += &recipient_line(r);
            t += "\r\n";
        }
    }
    t += &wrap("The mail system", TEXT_WIDTH, "");
    t
}

/// `<address>: host H said: REPLY (reason)`, wrapped, as in Postfix's
/// notices.
fn recipient_line(r: &FailedRecipient<'_>) -> String {
    let mut s = format!("<{}>:", one_line(r.address));
    match (&r.diagnostic, &r.remote_mta) {
        (Some(d), Some(host)) => s += &format!(" host {} said: {}", one_line(host), one_line(d)),
        (Some(d), None) => s += &format!(" the relay said: {}", one_line(d)),
        (None, _) => {}
    }
    match (&r.reason, &r.diagnostic) {
        (Some(why), Some(_)) => s += &format!(" ({})", one_line(why)),
        (Some(why), None) => s += &format!(" {}", one_line(why)),
        (None, Some(_)) => {}
        (None, None) => s += &format!(" {} (status {})", r.action.as_str(), status(r)),
    }
    wrap(&s, TEXT_WIDTH, "    ")
}

/// The `message/delivery-status` body (RFC 3464 §2.1).
fn delivery_status(input: &DsnInput<'_>) -> String {
    let env = input.envelope;
    let tz = input.now.time_zone();
    let mut s = String::new();
    s += &field("Reporting-MTA", &format!("dns; {}", input.reporting_mta));
    s += &field("X-Postrelay-Queue-ID", &env.id.to_string());
    if !env.sender.is_empty() {
        s += &field(
            "X-Postrelay-Sender",
            &format!("{}; {}", addr_type(&env.sender), env.sender),
        );
    }
    s += &field("Arrival-Date", &date_at(env.created_ms, tz));
    for r in &input.recipients {
        s += "\r\n";
        s += &field(
            "Final-Recipient",
            &format!("{}; {}", addr_type(r.address), r.address),
        );
        if let Some(orig) = r.original {
            s += &field("Original-Recipient", &original_recipient(orig));
        }
        s += &field("Action", r.action.as_str());
        s += &field("Status", &status(r));
        if let Some(host) = &r.remote_mta {
            s += &field("Remote-MTA", &format!("dns; {host}"));
        }
        match (&r.diagnostic, &r.reason) {
            (Some(d), _) => s += &field("Diagnostic-Code", &format!("smtp; {d}")),
            (None, Some(why)) => s += &field("Diagnostic-Code", &format!("X-Postrelay; {why}")),
            (None, None) => {}
        }
        if let (Action::Delayed, Some(ms)) = (r.action, input.retry_until_ms) {
            s += &field("Will-Retry-Until", &date_at(ms, tz));
        }
    }
    s
}

/// `rfc822` for an ASCII address, `utf-8` (RFC 6533 §3) otherwise.
fn addr_type(address: &str) -> &'static str {
    if address.is_ascii() {
        "rfc822"
    } else {
        "utf-8"
    }
}

/// The stored ORCPT as `type; address`.
fn original_recipient(orig: &str) -> String {
    match orig.split_once(';') {
        Some((kind, addr)) if !kind.trim().is_empty() => {
            format!("{}; {}", kind.trim(), addr.trim())
        }
        _ => format!("{}; {}", addr_type(orig), orig.trim()),
    }
}

/// The recipient's status code if it is one (`[245].d.d`), else the
/// generic code of its action.
fn status(r: &FailedRecipient<'_>) -> String {
    let valid = {
        let mut parts = r.status.split('.');
        let class_ok = matches!(parts.next(), Some("2" | "4" | "5"));
        let rest: Vec<&str> = parts.collect();
        class_ok
            && rest.len() == 2
            && rest
                .iter()
                .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    };
    match (valid, r.action) {
        (true, _) => r.status.clone(),
        (false, Action::Failed) => "5.0.0".into(),
        (false, Action::Delayed) => "4.0.0".into(),
    }
}

/// A Message-ID without brackets, spaces or anything that could close it.
fn message_id(id: &str) -> String {
    one_line(id)
        .chars()
        .filter(|c| !matches!(c, '<' | '>' | ' ' | '"' | '\\'))
        .collect()
}

/// An RFC 5322 date, `Thu, 28 Nov 2024 17:06:40 +0000`.
fn rfc5322_date(t: &ZonedDateTime) -> String {
    jiff::fmt::rfc2822::to_string(t).unwrap_or_else(|_| t.timestamp().to_string())
}

/// A Unix-ms time as an RFC 5322 date in `tz`.
fn date_at(ms: u64, tz: &TimeZone) -> String {
    let ts = i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .unwrap_or(jiff::Timestamp::MAX);
    rfc5322_date(&ts.to_zoned_datetime(tz.clone()))
}
