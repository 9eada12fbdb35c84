//! DATA framing (RFC 5321 §4.1.1.4, §4.5.2): the streaming receiver that
//! finds the `CRLF.CRLF` terminator and removes dot-stuffing, and the
//! streaming stuffer a client uses. Memory use is constant apart from the
//! output the caller supplies; nothing here parses the message itself.

/// Default longest text line in octets excluding CRLF (RFC 5321 §4.5.3.1.6).
pub const DEFAULT_MAX_LINE: usize = 998;

/// Result of one [`DataReceiver::ingest`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataProgress {
    /// Bytes of the input used. Less than the input length only when `done`:
    /// the rest belongs to whatever the client pipelined after the data.
    pub consumed: usize,
    /// The terminating `CRLF.CRLF` has been seen.
    pub done: bool,
}

/// A framing problem found in the message data. The receiver keeps reading to
/// the real terminator so that the session stays in sync; the server then
/// rejects the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataViolation {
    /// An LF not preceded by CR.
    BareLf,
    /// A CR not followed by LF.
    BareCr,
    /// A line longer than the configured maximum.
    LineTooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RxState {
    /// At the start of a line: after CRLF, or at the very beginning.
    LineStart,
    /// Saw `.` at the start of a line (not emitted: stuffing or terminator).
    Dot,
    /// Saw `.` CR at the start of a line (nothing emitted yet).
    DotCr,
    /// Inside a line.
    Middle,
    /// Saw CR inside a line (CR not emitted yet).
    Cr,
    /// The terminator has been consumed.
    Done,
}

/// Streaming DATA receiver (server side).
///
/// Feed it whatever arrived after the `354` reply; it appends the body to the
/// caller's buffer: the bytes as sent, minus one leading dot on each line
/// that has one, minus the final `.CRLF`. Only `CRLF.CRLF` ends the data (the
/// start of the data counts as following a CRLF, so `.CRLF` alone is an empty
/// body); `LF.LF`, `CR.CR`, `LF.CRLF`, `CRLF.LF` and the like are body bytes
/// and record a [`DataViolation`].
#[derive(Debug, Clone)]
pub struct DataReceiver {
    state: RxState,
    max_line: usize,
    line_len: usize,
    body_len: u64,
    violation: Option<DataViolation>,
    /// Lines that started with a dot, the terminator's included.
    line_dots: u64,
}

impl Default for DataReceiver {
    fn default() -> Self {
        DataReceiver::new()
    }
}

impl DataReceiver {
    /// A receiver with the RFC 5321 line limit ([`DEFAULT_MAX_LINE`]).
    pub fn new() -> DataReceiver {
        DataReceiver::with_max_line(DEFAULT_MAX_LINE)
    }

    /// A receiver flagging lines longer than `max_line` octets (excluding
    /// CRLF and excluding a stuffing dot); 0 means no limit.
    pub fn with_max_line(max_line: usize) -> DataReceiver {
        DataReceiver {
            state: RxState::LineStart,
            max_line,
            line_len: 0,
            body_len: 0,
            violation: None,
            line_dots: 0,
        }
    }

    /// The first violation seen, if any.
    pub fn violation(&self) -> Option<DataViolation> {
        self.violation
    }

    /// Whether a line's leading dot was removed (once the terminator has
    /// been seen): the body may then have a line that starts with a dot
    /// (and need stuffing to be sent again).
    /// Without it, and without a [`DataViolation`], the body as received
    /// is its own stuffed form: CRLF line ends only, no line that starts
    /// with a dot, ending with CRLF unless empty.
    pub fn removed_dot(&self) -> bool {
        // Every line that starts with a dot loses it, but the terminator.
        self.line_dots > u64::from(self.is_done())
    }

    /// Whether the terminator has been seen.
    pub fn is_done(&self) -> bool {
        self.state == RxState::Done
    }

    /// Body octets appended to output buffers so far (for size limits).
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    fn violate(&mut self, v: DataViolation) {
        self.violation.get_or_insert(v);
    }

    fn count_octet(&mut self) {
        self.line_len += 1;
        if self.max_line != 0 && self.line_len > self.max_line {
            self.violate(DataViolation::LineTooLong);
        }
    }

    /// Accounts for the lines of a [`plain_run`] just copied.
    fn count_run(&mut self, run: &Run) {
        if run.at_line_start {
            self.state = RxState::LineStart;
        }
        if self.max_line == 0 {
            return;
        }
        let first = self.line_len.saturating_add(run.first);
        self.line_len = if run.ended_lines { run.last } else { first };
        if first.max(run.longest).max(self.line_len) > self.max_line {
            self.violate(DataViolation::LineTooLong);
        }
    }

    /// Processes `input`, appending body bytes to `out`. Once `done`, later
    /// calls consume nothing. A CR at the end of `input` is held back until
    /// the next call shows whether an LF follows, so `out` may lag by one byte.
    pub fn ingest(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataProgress {
        let start_len = out.len();
        let mut i = 0;
        while i < input.len() {
            if self.state == RxState::Done {
                break;
            }
            if self.state == RxState::Middle {
                // Fast path: whole lines that need no care go in one copy.
                let rest = input.get(i..).unwrap_or_default();
                let run = plain_run(rest);
                out.extend_from_slice(rest.get(..run.len).unwrap_or_default());
                self.count_run(&run);
                i += run.len;
                if i >= input.len() {
                    break;
                }
            }
            let b = input[i];
            i += 1;
            self.step(b, out);
        }
        self.body_len += (out.len() - start_len) as u64;
        DataProgress {
            consumed: i,
            done: self.state == RxState::Done,
        }
    }

    /// Advances the state machine by one byte.
    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        match (self.state, b) {
            (RxState::Done, _) => {}
            (RxState::LineStart, b'.') => {
                // Not counted: RFC 5321 4.5.3.1.6 excludes the dot added
                // for transparency from the line length.
                self.line_dots += 1;
                self.state = RxState::Dot;
            }
            (RxState::Dot, b'\r') => self.state = RxState::DotCr,
            (RxState::DotCr, b'\n') => self.state = RxState::Done,
            (RxState::DotCr, _) => {
                // `.` CR x: the dot was stuffing, the CR is bare.
                self.violate(DataViolation::BareCr);
                out.push(b'\r');
                self.count_octet();
                self.state = RxState::Middle;
                self.step(b, out);
            }
            (RxState::Cr, b'\n') => {
                out.extend_from_slice(b"\r\n");
                self.line_len = 0;
                self.state = RxState::LineStart;
            }
            (RxState::Cr, _) => {
                self.violate(DataViolation::BareCr);
                out.push(b'\r');
                self.count_octet();
                self.state = RxState::Middle;
                self.step(b, out);
            }
            (_, b'\r') => self.state = RxState::Cr,
            (_, b'\n') => {
                self.violate(DataViolation::BareLf);
                out.push(b'\n');
                self.state = RxState::Middle;
            }
            (_, _) => {
                out.push(b);
                self.count_octet();
                self.state = RxState::Middle;
            }
        }
    }
}

/// Streaming dot-stuffer (client side).
///
/// Doubles a `.` at the start of every line and normalises line ends: a bare
/// LF or a bare CR is sent as CRLF, so that this client never emits the
/// ambiguous sequences that SMTP smuggling relies on, whatever the message
/// file contains. [`DotStuffer::finish`] adds the terminator.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    at_line_start: bool,
    pending_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer::new()
    }
}

impl DotStuffer {
    /// A stuffer at the start of the body.
    pub fn new() -> DotStuffer {
        DotStuffer {
            at_line_start: true,
            pending_cr: false,
        }
    }

    /// Appends the stuffed form of `input` to `out`. A CR at the end of
    /// `input` is held back until the next call or [`DotStuffer::finish`].
    pub fn stuff(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 64);
        let mut rest = input;
        while let Some((&b, after)) = rest.split_first() {
            if self.pending_cr {
                self.pending_cr = false;
                self.end_line(out);
                if b == b'\n' {
                    rest = after;
                    continue;
                }
            }
            match b {
                b'\r' => {
                    self.pending_cr = true;
                    rest = after;
                }
                b'\n' => {
                    self.end_line(out);
                    rest = after;
                }
                _ => {
                    if self.at_line_start && b == b'.' {
                        out.push(b'.');
                    }
                    // The rest of the line, and the whole lines after it
                    // that need no care, go out in one copy.
                    let run = plain_run(rest);
                    let (text, tail) = rest.split_at(run.len.max(1));
                    out.extend_from_slice(text);
                    self.at_line_start = run.at_line_start;
                    rest = tail;
                }
            }
        }
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n");
        self.at_line_start = true;
    }

    /// Ends the body: completes an unterminated last line with CRLF, then
    /// appends `.CRLF`. The stuffer is then ready for a new body.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr || !self.at_line_start {
            self.end_line(out);
        }
        out.extend_from_slice(b".\r\n");
        *self = DotStuffer::new();
    }
}

/// A prefix of a body that is the same on the wire and in the file: a
/// [`plain_run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    /// Its length in bytes.
    len: usize,
    /// Bytes before its first CRLF (all of it when it has none).
    first: usize,
    /// Longest line between its first and last CRLF, CRLF excluded.
    longest: usize,
    /// Bytes after its last CRLF.
    last: usize,
    /// It contains a CRLF.
    ended_lines: bool,
    /// It ends right after a CRLF.
    at_line_start: bool,
}

/// The longest prefix of `s` that the receiver copies and the stuffer sends
/// as it is: bytes other than CR and LF, and CRLFs each followed (within
/// `s`) by a byte other than `.`. It stops before the first CR or LF that
/// needs the byte-by-byte path: a bare one, one at the end of `s`, or a
/// CRLF before a dot (stuffing, or the terminator). The search is memchr's
/// (vectorised), so a body of ordinary lines costs about a copy.
fn plain_run(s: &[u8]) -> Run {
    let mut run = Run {
        len: s.len(),
        first: 0,
        longest: 0,
        last: 0,
        ended_lines: false,
        at_line_start: false,
    };
    let mut line_start = 0;
    let mut pos = 0;
    while let Some(off) = s.get(pos..).and_then(|t| memchr::memchr2(b'\r', b'\n', t)) {
        let at = pos + off;
        let crlf = s.get(at) == Some(&b'\r') && s.get(at + 1) == Some(&b'\n');
        if !crlf || s.get(at + 2).is_none_or(|&c| c == b'.') {
            run.len = at;
            break;
        }
        let line = at - line_start;
        if run.ended_lines {
            run.longest = run.longest.max(line);
        } else {
            run.first = line;
            run.ended_lines = true;
        }
        line_start = at + 2;
        pos = line_start;
    }
    if run.ended_lines {
        run.last = run.len - line_start;
        run.at_line_start = run.last == 0;
    } else {
        run.first = run.len;
    }
    run
}

#[cfg(test)]
mod tests;
