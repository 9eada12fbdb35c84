//! The "cleanup" step of intake: find where the header section of an
//! incoming message ends, and build the header lines postrelay adds
//! (`Received:` always; `Date:` and `Message-ID:` when missing).
//!
//! It works on bytes as they arrive and never rewrites the message itself:
//! apart from the added lines, what is queued is what the client sent.
//! It is not a MIME parser; it only needs to recognise header lines.

use std::fmt::Write as _;

/// Tracks the header section of a message fed to it line by line.
#[derive(Debug, Default)]
pub struct HeaderScan {
    /// Bytes of the header section seen so far.
    bytes: u64,
    /// The section has ended (blank line, or a line that is not a header).
    done: bool,
    /// It ended with a line that is not a header, so the body starts with
    /// no separating blank line; one must be inserted after added headers.
    needs_separator: bool,
    has_date: bool,
    has_message_id: bool,
    has_from: bool,
    /// `Received:` fields seen: the hop count of a mail loop.
    received: usize,
}

/// Where a line fed to [`HeaderScan::line`] belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// A header field line or a folded continuation.
    Header,
    /// The empty line that ends the header section (it belongs to neither).
    Separator,
    /// The first line of the body.
    BodyStart,
}

impl HeaderScan {
    /// Classifies the next complete line (including its CRLF).
    /// Must not be called after it has returned `Separator` or `BodyStart`.
    pub fn line(&mut self, line: &[u8]) -> LineKind {
        debug_assert!(!self.done);
        let content = line.strip_suffix(b"\r\n").unwrap_or(line);
        if content.is_empty() {
            self.done = true;
            return LineKind::Separator;
        }
        let is_continuation = matches!(content[0], b' ' | b'\t') && self.bytes > 0;
        if is_continuation {
            self.bytes += line.len() as u64;
            return LineKind::Header;
        }
        match field_name(content) {
            Some(name) => {
                self.bytes += line.len() as u64;
                if name.eq_ignore_ascii_case(b"date") {
                    self.has_date = true;
                } else if name.eq_ignore_ascii_case(b"message-id") {
                    self.has_message_id = true;
                } else if name.eq_ignore_ascii_case(b"from") {
                    self.has_from = true;
                } else if name.eq_ignore_ascii_case(b"received") {
                    self.received += 1;
                }
                LineKind::Header
            }
            None => {
                self.done = true;
                self.needs_separator = true;
                LineKind::BodyStart
            }
        }
    }

    /// `Received:` fields seen so far (hops the message has made).
    pub fn hops(&self) -> usize {
        self.received
    }

    /// Octets of header fields seen (what `header_size_limit` counts).
    pub fn header_bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the header section has ended.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the message has a `From:` field (reported, not added: the
    /// author is not ours to invent on an SMTP relay).
    pub fn has_from(&self) -> bool {
        self.has_from
    }

    /// The header lines to append at the end of the header section, and
    /// whether a blank line must follow them (the body began without one).
    pub fn missing(&self, date: &str, message_id: &str) -> (String, bool) {
        let mut out = String::new();
        if !self.has_date {
            let _ = write!(out, "Date: {date}\r\n");
        }
        if !self.has_message_id {
            let _ = write!(out, "Message-ID: <{message_id}>\r\n");
        }
        (out, self.needs_separator)
    }
}

/// The field name of a header line (`Name:` with printable US-ASCII except
/// the colon, RFC 5322 §2.2), or `None` when the line is not a header.
fn field_name(content: &[u8]) -> Option<&[u8]> {
    let colon = content.iter().position(|&b| b == b':')?;
    let name = &content[..colon];
    let valid = !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b));
    valid.then_some(name)
}

/// What the `Received:` header says about the session.
pub struct ReceivedInfo<'a> {
    /// The client's EHLO/HELO argument.
    pub helo: &'a str,
    /// The client's address.
    pub peer_ip: std::net::IpAddr,
    /// Our host name.
    pub hostname: &'a str,
    /// The protocol keyword (RFC 3848 / RFC 6531): SMTP, ESMTP, UTF8SMTP.
    pub protocol: &'a str,
    /// The queue id.
    pub id: &'a str,
    /// The single recipient, when there is exactly one.
    pub single_recipient: Option<&'a str>,
    /// RFC 5322 date of reception.
    pub date: &'a str,
}

/// Formats the trace header (RFC 5321 §4.4), folded over three lines.
/// Client-supplied text (the HELO name) was validated as a domain or
/// address literal by the parser, so it cannot break the header.
pub fn received(info: &ReceivedInfo<'_>) -> String {
    let mut s = format!(
        "Received: from {} ([{}])\r\n\tby {} (postrelay) with {} id {}",
        info.helo, info.peer_ip, info.hostname, info.protocol, info.id
    );
    if let Some(rcpt) = info.single_recipient {
        let _ = write!(s, "\r\n\tfor <{rcpt}>");
    }
    let _ = write!(s, "; {}\r\n", info.date);
    s
}

/// Now, in RFC 5322 date-time format, in the system's time zone.
pub fn rfc5322_now() -> String {
    let now = jiff::ZonedDateTime::now();
    jiff::fmt::rfc2822::to_string(&now).unwrap_or_else(|_| {
        // Only fails for years beyond 9999; fall back to UTC.
        jiff::fmt::rfc2822::to_string(&now.with_time_zone(jiff::tz::TimeZone::UTC))
            .unwrap_or_default()
    })
}

/// The `Received:` field with the authenticated user added on a line of
/// its own before `by`, as Postfix writes it. `received` comes from
/// [`super::headers::received`]; `user` was checked against the users file
/// (a restricted character set), so it cannot break the comment.
pub fn with_authenticated_sender(received: &str, user: &str) -> String {
    match received.find("\r\n\tby ") {
        Some(at) => format!(
            "{}\r\n\t(Authenticated sender: {user}){}",
            &received[..at],
            &received[at..]
        ),
        None => received.to_owned(),
    }
}

/// The protocol keyword of a `Received:` field (RFC 3848, RFC 6531):
/// `base` (`SMTP`, `ESMTP` or `UTF8SMTP`) with `S` for TLS and `A` for
/// AUTH. Plain `SMTP` has no such forms and stays as it is.
pub fn protocol(base: &'static str, tls: bool, authenticated: bool) -> &'static str {
    match (base, tls, authenticated) {
        ("ESMTP", true, true) => "ESMTPSA",
        ("ESMTP", true, false) => "ESMTPS",
        ("ESMTP", false, true) => "ESMTPA",
        ("UTF8SMTP", true, true) => "UTF8SMTPSA",
        ("UTF8SMTP", true, false) => "UTF8SMTPS",
        ("UTF8SMTP", false, true) => "UTF8SMTPA",
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(lines: &[&str]) -> (HeaderScan, Vec<LineKind>) {
        let mut s = HeaderScan::default();
        let mut kinds = Vec::new();
        for l in lines {
            let k = s.line(l.as_bytes());
            kinds.push(k);
            if k != LineKind::Header {
                break;
            }
        }
        (s, kinds)
    }

    #[test]
    fn classifies_header_lines() {
        use LineKind::*;
        let cases: &[(&[&str], &[LineKind])] = &[
            (&["Subject: x\r\n", "\r\n"], &[Header, Separator]),
            (
                &["Subject: x\r\n", " folded\r\n", "\r\n"],
                &[Header, Header, Separator],
            ),
            (&["hello world\r\n"], &[BodyStart]),
            (
                &["Subject: x\r\n", "no colon here\r\n"],
                &[Header, BodyStart],
            ),
            (&[": empty name\r\n"], &[BodyStart]),
            (&["Bad Name: x\r\n"], &[BodyStart]),
            (&[" leading space first\r\n"], &[BodyStart]),
            (&["\r\n"], &[Separator]),
        ];
        for (input, want) in cases {
            assert_eq!(scan(input).1, *want, "input {input:?}");
        }
    }

    #[test]
    fn reports_missing_date_and_message_id() {
        let (s, _) = scan(&["From: a@b\r\n", "date: now\r\n", "\r\n"]);
        assert!(s.has_from());
        let (add, sep) = s.missing("D", "id@h");
        assert_eq!(add, "Message-ID: <id@h>\r\n");
        assert!(!sep);

        let (s, _) = scan(&["Message-Id: <x@y>\r\n", "Date: d\r\n", "\r\n"]);
        assert_eq!(s.missing("D", "id@h").0, "");

        let (s, _) = scan(&["just a body\r\n"]);
        let (add, sep) = s.missing("D", "id@h");
        assert_eq!(add, "Date: D\r\nMessage-ID: <id@h>\r\n");
        assert!(
            sep,
            "a body without headers needs a blank line after the added ones"
        );
    }

    #[test]
    fn counts_received_fields() {
        let (s, _) = scan(&[
            "Received: a\r\n",
            " b\r\n",
            "received: c\r\n",
            "X-Received: d\r\n",
            "\r\n",
        ]);
        assert_eq!(s.hops(), 2);
    }

    #[test]
    fn counts_header_octets() {
        let (s, _) = scan(&["A: 1\r\n", " 2\r\n", "\r\n"]);
        assert_eq!(s.header_bytes(), 6 + 4);
    }

    #[test]
    fn received_header_shape() {
        let r = received(&ReceivedInfo {
            helo: "client.example",
            peer_ip: "127.0.0.1".parse().unwrap(),
            hostname: "relay.example",
            protocol: "ESMTP",
            id: "01ABC",
            single_recipient: Some("a@b.example"),
            date: "Sun, 29 Nov 2026 17:00:00 +0000",
        });
        assert_eq!(
            r,
            "Received: from client.example ([127.0.0.1])\r\n\tby relay.example (postrelay) \
             with ESMTP id 01ABC\r\n\tfor <a@b.example>; Sun, 29 Nov 2026 17:00:00 +0000\r\n"
        );
    }

    #[test]
    fn date_is_rfc5322() {
        let d = rfc5322_now();
        assert!(jiff::fmt::rfc2822::parse(&d).is_ok(), "{d}");
    }

    #[test]
    fn received_gets_the_user() {
        let r = "Received: from a.example ([10.0.0.5])\r\n\tby relay.example (postrelay) with ESMTPSA id X\r\n\tfor <b@c>; DATE\r\n";
        assert_eq!(
            with_authenticated_sender(r, "app1"),
            "Received: from a.example ([10.0.0.5])\r\n\t(Authenticated sender: app1)\r\n\tby relay.example (postrelay) with ESMTPSA id X\r\n\tfor <b@c>; DATE\r\n"
        );
    }

    #[test]
    fn protocol_keywords() {
        assert_eq!(protocol("ESMTP", false, false), "ESMTP");
        assert_eq!(protocol("ESMTP", true, true), "ESMTPSA");
        assert_eq!(protocol("UTF8SMTP", true, true), "UTF8SMTPSA");
        assert_eq!(protocol("SMTP", true, true), "SMTP");
    }
}
