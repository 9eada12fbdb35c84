//! Turns the bytes of a DATA phase into a spooled body: un-stuffing (via
//! `postrelay_smtp::data`), the header step (`headers`), the size, header
//! and line limits, and streaming to the spool file.
//!
//! Memory stays bounded whatever the message size: only the header section
//! is held (up to `header_size_limit`), the body goes straight to the
//! spool's buffered writer. A limit that is exceeded does not stop reading:
//! the session must still find the real end of data to stay in step with
//! the client, and then rejects the whole message.

use std::io::Write;

use postrelay_smtp::data::{DataProgress, DataReceiver, DataViolation};
use postrelay_smtp::reply::Reply;

use super::headers::{HeaderScan, LineKind};
use crate::spool::BodyWriter;

/// Limits applied while the message arrives.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Maximum message octets as received (after un-stuffing).
    pub message_size: u64,
    /// Maximum octets of the header section.
    pub header_size: u64,
    /// Maximum octets per line, excluding CRLF (0: unlimited).
    pub line_length: u64,
}

/// Why a message is refused after its end of data.
#[derive(Debug)]
pub enum Refusal {
    /// Bigger than `message_size_limit`.
    TooBig { limit: u64 },
    /// Header section bigger than `header_size_limit`.
    HeaderTooBig { limit: u64 },
    /// A line longer than `line_length_limit`.
    LineTooLong { limit: u64 },
    /// More `Received:` fields than the hop limit: a mail loop.
    TooManyHops { limit: usize },
    /// A CR or LF not part of a CRLF pair (SMTP smuggling class).
    BareNewline(DataViolation),
    /// Writing the spool file failed.
    Io(std::io::Error),
}

impl Refusal {
    /// The reply that tells the client what happened and what to fix.
    pub fn reply(&self) -> Reply {
        match self {
            Refusal::TooBig { limit } => Reply::new(
                552,
                "5.3.4",
                format!("Message size exceeds fixed limit of {limit} octets"),
            ),
            Refusal::HeaderTooBig { limit } => Reply::new(
                552,
                "5.3.4",
                format!("Message header exceeds header_size_limit of {limit} octets"),
            ),
            Refusal::LineTooLong { limit } => Reply::new(
                550,
                "5.6.0",
                format!("Message has a line longer than {limit} octets (RFC 5322 2.1.1)"),
            ),
            Refusal::TooManyHops { limit } => Reply::new(
                554,
                "5.4.6",
                format!(
                    "Message refused: more than {limit} Received headers (mail forwarding loop)"
                ),
            ),
            Refusal::BareNewline(v) => {
                let what = match v {
                    DataViolation::BareCr => "bare <CR>",
                    _ => "bare <LF>",
                };
                Reply::new(
                    550,
                    "5.5.2",
                    format!(
                        "Message refused: {what} in message data; lines must end with <CR><LF>"
                    ),
                )
            }
            Refusal::Io(e) if is_no_space(e) => {
                Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
            }
            Refusal::Io(_) => Reply::new(
                451,
                "4.3.0",
                "Local error writing the queue file, try again later",
            ),
        }
    }
}

fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT)
        || e.kind() == std::io::ErrorKind::StorageFull
}

enum Phase {
    /// Collecting the header section into `headers`.
    Headers,
    /// Streaming the body to the writer.
    Body,
}

/// Receives one message.
pub struct Assembler {
    receiver: DataReceiver,
    writer: BodyWriter,
    limits: Limits,
    phase: Phase,
    /// Un-stuffed output of the current `feed` call (reused).
    scratch: Vec<u8>,
    /// The header section so far, and an incomplete trailing line.
    headers: Vec<u8>,
    scan: HeaderScan,
    /// Lines postrelay puts first (`Received:`).
    prefix: String,
    /// Date and message-id used when those headers are missing.
    date: String,
    message_id: String,
    size: u64,
    refusal: Option<Refusal>,
}

/// Progress of one [`Assembler::feed`] call.
pub struct Fed {
    /// Input bytes used; the rest (pipelined commands) stays with the caller.
    pub consumed: usize,
    /// The end-of-data line was seen.
    pub done: bool,
}

impl Assembler {
    /// Starts a message whose body goes to `writer`; `prefix` is written
    /// before the client's headers.
    pub fn new(
        writer: BodyWriter,
        limits: Limits,
        prefix: String,
        date: String,
        message_id: String,
    ) -> Self {
        let line = usize::try_from(limits.line_length).unwrap_or(usize::MAX);
        Assembler {
            receiver: DataReceiver::with_max_line(line),
            writer,
            limits,
            phase: Phase::Headers,
            scratch: Vec::new(),
            headers: Vec::new(),
            scan: HeaderScan::default(),
            prefix,
            date,
            message_id,
            size: 0,
            refusal: None,
        }
    }

    /// Takes bytes from the connection.
    pub fn feed(&mut self, input: &[u8]) -> Fed {
        let progress = if matches!(self.phase, Phase::Body) && self.refusal.is_none() {
            self.feed_body(input)
        } else {
            self.scratch.clear();
            let progress = self.receiver.ingest(input, &mut self.scratch);
            let chunk = std::mem::take(&mut self.scratch);
            self.absorb(&chunk);
            self.scratch = chunk;
            progress
        };
        if progress.done {
            self.end_of_headers_if_open();
        }
        Fed {
            consumed: progress.consumed,
            done: progress.done,
        }
    }

    /// In the body: the receiver un-stuffs straight into the spool file's
    /// write buffer (one copy of the bytes, not two). Its output is never
    /// longer than its input plus a CR held back from the call before.
    fn feed_body(&mut self, input: &[u8]) -> DataProgress {
        if let Err(e) = self.writer.make_room(input.len() + 1) {
            self.refuse(Refusal::Io(e));
            self.scratch.clear();
            return self.receiver.ingest(input, &mut self.scratch);
        }
        let receiver = &mut self.receiver;
        let (progress, added) = self.writer.append_with(|buf| {
            let start = buf.len();
            let progress = receiver.ingest(input, buf);
            (progress, buf.len() - start)
        });
        self.size += added as u64;
        if self.size > self.limits.message_size {
            self.refuse(Refusal::TooBig {
                limit: self.limits.message_size,
            });
        }
        progress
    }

    fn absorb(&mut self, chunk: &[u8]) {
        if chunk.is_empty() || self.refusal.is_some() {
            return;
        }
        self.size += chunk.len() as u64;
        if self.size > self.limits.message_size {
            self.refuse(Refusal::TooBig {
                limit: self.limits.message_size,
            });
            return;
        }
        let mut rest = chunk;
        while matches!(self.phase, Phase::Headers) && !rest.is_empty() {
            rest = self.header_bytes(rest);
            if self.refusal.is_some() {
                return;
            }
        }
        if !rest.is_empty() {
            self.write(rest);
        }
    }

    /// Adds header-phase bytes; returns what belongs to the body.
    fn header_bytes<'a>(&mut self, input: &'a [u8]) -> &'a [u8] {
        let line_start = self.headers.len();
        let (take, complete) = match memchr_lf(input) {
            Some(i) => (i + 1, true),
            None => (input.len(), false),
        };
        self.headers.extend_from_slice(&input[..take]);
        if self.headers.len() as u64 > self.limits.header_size.saturating_add(2) {
            self.refuse(Refusal::HeaderTooBig {
                limit: self.limits.header_size,
            });
            return &[];
        }
        // Find the start of the current (possibly partial) line.
        let start = self.headers[..line_start]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if complete {
            match self.scan.line(&self.headers[start..]) {
                LineKind::Header => {
                    if self.scan.hops() > crate::header::HOP_LIMIT {
                        self.refuse(Refusal::TooManyHops {
                            limit: crate::header::HOP_LIMIT,
                        });
                        return &[];
                    }
                    if self.scan.header_bytes() > self.limits.header_size {
                        self.refuse(Refusal::HeaderTooBig {
                            limit: self.limits.header_size,
                        });
                        return &[];
                    }
                }
                LineKind::Separator | LineKind::BodyStart => {
                    // Once per message: the line that ends the header
                    // section goes after the headers we may add.
                    let line = self.headers.split_off(start);
                    self.flush_headers();
                    self.write(&line);
                }
            }
        }
        &input[take..]
    }

    /// The data ended inside the header section (a message of headers only,
    /// or an empty one): write what there is.
    fn end_of_headers_if_open(&mut self) {
        if matches!(self.phase, Phase::Headers) && self.refusal.is_none() {
            self.flush_headers();
        }
    }

    fn flush_headers(&mut self) {
        self.phase = Phase::Body;
        let (missing, separator) = self.scan.missing(&self.date, &self.message_id);
        let headers = std::mem::take(&mut self.headers);
        let prefix = std::mem::take(&mut self.prefix);
        self.write(prefix.as_bytes());
        self.write(&headers);
        self.write(missing.as_bytes());
        if separator {
            self.write(b"\r\n");
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.refusal.is_none()
            && let Err(e) = self.writer.write_all(bytes)
        {
            self.refuse(Refusal::Io(e));
        }
    }

    fn refuse(&mut self, r: Refusal) {
        if self.refusal.is_none() {
            self.refusal = Some(r);
        }
        self.headers = Vec::new();
    }

    /// Octets received so far (after un-stuffing).
    pub fn received_size(&self) -> u64 {
        self.size
    }

    /// After `done`: whether the spooled body is its own SMTP form (no
    /// line starts with a dot, CRLF line ends only), so that delivery may
    /// send it without stuffing (`Envelope::sends_as_is`). The lines this
    /// server adds (`Received:`, `Date:`, `Message-ID:`) never start with
    /// a dot; every other line came through the receiver.
    pub fn sends_as_is(&self) -> bool {
        self.receiver.is_done()
            && !self.receiver.removed_dot()
            && self.receiver.violation().is_none()
    }

    /// Whether a `From:` header was present.
    pub fn has_from(&self) -> bool {
        self.scan.has_from()
    }

    /// After `done`: the writer of an acceptable message, or why it is
    /// refused (the partial spool file is then removed).
    pub fn finish(mut self) -> Result<BodyWriter, Refusal> {
        let violation = self.receiver.violation();
        let refusal = match (violation, self.refusal.take()) {
            // Smuggling attempts take precedence: they say most about the client.
            (Some(v @ (DataViolation::BareLf | DataViolation::BareCr)), _) => {
                Some(Refusal::BareNewline(v))
            }
            (_, Some(r)) => Some(r),
            (Some(DataViolation::LineTooLong), None) => Some(Refusal::LineTooLong {
                limit: self.limits.line_length,
            }),
            (None, None) => None,
        };
        match refusal {
            Some(r) => {
                self.writer.abort();
                Err(r)
            }
            None => Ok(self.writer),
        }
    }

    /// Abandons the message (connection lost, shutdown).
    pub fn abort(self) {
        self.writer.abort();
    }
}

fn memchr_lf(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}
