//! The message on sendmail's stdin: lines, the header section, and the
//! SMTP DATA form written to postdrop.
//!
//! Line ends: LF, CRLF and a lone CR each end a line, and every line is
//! written with CRLF, so the result never holds a bare CR or LF (the SMTP
//! smuggling class). A lone CR becomes a line break rather than an error
//! because local programs (old Mac text, progress bars in cron output)
//! produce it innocently; turning it into CRLF is what our SMTP client's
//! stuffer does too. The input ends at end of file, or at a line holding a
//! single `.` unless `-i`. A first line `From …` (an mbox separator some
//! programs emit) is dropped.
//!
//! Memory is bounded: one line (`intake.line_length_limit`) and the header
//! section (`intake.header_size_limit`) at most.

use std::io::{self, BufRead, Write};

/// Limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Octets of the message as the daemon counts them (CRLF lines, before
    /// dot-stuffing), including an added From:.
    pub size: u64,
    /// Octets of the header section.
    pub header: u64,
    /// Octets per line without CRLF (0: none).
    pub line: u64,
}

/// Why the input is refused.
#[derive(Debug)]
pub enum InputError {
    /// Reading stdin or writing to postdrop failed.
    Io(io::Error),
    /// Over [`Limits::size`].
    TooBig(u64),
    /// Over [`Limits::header`].
    HeaderTooBig(u64),
    /// Line `.0` is over [`Limits::line`] (`.1`).
    LineTooLong(u64, u64),
    /// More `Received:` fields than [`crate::header::HOP_LIMIT`]: a loop.
    TooManyHops(usize),
}

impl From<io::Error> for InputError {
    fn from(e: io::Error) -> Self {
        InputError::Io(e)
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::Io(e) => write!(f, "{e}"),
            InputError::TooBig(l) => write!(f, "message too big (limit {l} octets)"),
            InputError::HeaderTooBig(l) => {
                write!(f, "header section too big (limit {l} octets)")
            }
            InputError::TooManyHops(n) => write!(
                f,
                "more than {n} Received: header fields: a mail loop (the daemon would refuse it)"
            ),
            InputError::LineTooLong(n, l) => write!(
                f,
                "line {n} is longer than {l} octets (RFC 5322 2.1.1); wrap it, or send the \
                 text as a quoted-printable or base64 MIME part"
            ),
        }
    }
}

/// Splits input into lines (contents without their ends).
pub struct LineReader<R> {
    inner: R,
    /// The last line ended with CR: an LF right after it belongs to it.
    skip_lf: bool,
    max: usize,
    /// Lines returned so far.
    pub number: u64,
}

impl<R: BufRead> LineReader<R> {
    /// Lines of `inner`, each at most `max` octets (0: unlimited).
    pub fn new(inner: R, max: u64) -> Self {
        LineReader {
            inner,
            skip_lf: false,
            max: usize::try_from(max).unwrap_or(usize::MAX),
            number: 0,
        }
    }

    /// The next line into `line`; `false` at end of input.
    pub fn next_line(&mut self, line: &mut Vec<u8>) -> Result<bool, InputError> {
        line.clear();
        if self.skip_lf {
            self.skip_lf = false;
            if self.inner.fill_buf()?.first() == Some(&b'\n') {
                self.inner.consume(1);
            }
        }
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                if line.is_empty() {
                    return Ok(false);
                }
                break;
            }
            let end = buf.iter().position(|&b| b == b'\r' || b == b'\n');
            let take = end.unwrap_or(buf.len());
            line.extend_from_slice(&buf[..take]);
            let ended = end.map(|i| buf[i]);
            self.inner.consume(take + usize::from(ended.is_some()));
            if self.max != 0 && line.len() > self.max {
                return Err(InputError::LineTooLong(self.number + 1, self.max as u64));
            }
            match ended {
                Some(b'\r') => {
                    self.skip_lf = true;
                    break;
                }
                Some(_) => break,
                None => {}
            }
        }
        self.number += 1;
        Ok(true)
    }
}

/// What follows the header section.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    /// The empty line that separates header and body.
    Separator,
    /// A line that is not a header field: the body starts without a
    /// separator (the daemon inserts one after the fields it adds).
    Body(Vec<u8>),
    /// The input ended.
    End,
}

/// The header section as read.
#[derive(Debug)]
pub struct Header {
    /// Lines to send, in order (Bcc fields removed).
    pub lines: Vec<Vec<u8>>,
    /// A From: field is present.
    pub has_from: bool,
    /// Unfolded values of To, Cc and Bcc fields.
    pub recipient_fields: Vec<String>,
    /// Octets of the header section read (CRLF line ends), Bcc included.
    pub bytes: u64,
    /// Number of `Received:` fields.
    pub hops: usize,
    /// What came after it.
    pub after: After,
}

/// Reads the header section. Bcc: fields are always removed (Postfix does
/// the same): they must not reach any recipient.
pub fn read_header<R: BufRead>(
    r: &mut LineReader<R>,
    ignore_dots: bool,
    limits: &Limits,
) -> Result<Header, InputError> {
    let mut h = Header {
        lines: Vec::new(),
        has_from: false,
        recipient_fields: Vec::new(),
        bytes: 0,
        hops: 0,
        after: After::End,
    };
    // The field being collected: its name and lines.
    let mut field: Option<(String, Vec<Vec<u8>>)> = None;
    let mut line = Vec::new();
    loop {
        if !r.next_line(&mut line)? || (!ignore_dots && line == b".") {
            break;
        }
        if r.number == 1 && line.starts_with(b"From ") {
            continue;
        }
        h.bytes += line.len() as u64 + 2;
        if h.bytes > limits.header {
            return Err(InputError::HeaderTooBig(limits.header));
        }
        if matches!(line.first(), Some(b' ' | b'\t'))
            && let Some((_, lines)) = field.as_mut()
        {
            lines.push(std::mem::take(&mut line));
            continue;
        }
        flush(&mut h, field.take());
        match field_name(&line) {
            Some(name) => field = Some((name, vec![std::mem::take(&mut line)])),
            None if line.is_empty() => {
                h.after = After::Separator;
                return Ok(h);
            }
            None => {
                h.after = After::Body(line);
                return Ok(h);
            }
        }
    }
    flush(&mut h, field.take());
    Ok(h)
}

fn flush(h: &mut Header, field: Option<(String, Vec<Vec<u8>>)>) {
    let Some((name, lines)) = field else { return };
    let name = name.to_ascii_lowercase();
    if matches!(name.as_str(), "to" | "cc" | "bcc") {
        let mut value = String::new();
        for (i, l) in lines.iter().enumerate() {
            let part = if i == 0 { &l[name.len() + 1..] } else { &l[..] };
            value.push_str(&String::from_utf8_lossy(part));
            value.push(' ');
        }
        h.recipient_fields.push(value);
    }
    if name == "from" {
        h.has_from = true;
    }
    if name == "received" {
        h.hops += 1;
    }
    if name != "bcc" {
        h.lines.extend(lines);
    }
}

/// `Name` of a `Name: value` line (printable US-ASCII except `:`).
fn field_name(line: &[u8]) -> Option<String> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    (!name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b)))
        .then(|| String::from_utf8_lossy(name).into_owned())
}

/// Writes lines in SMTP DATA form (CRLF, dot-stuffed), counting the
/// message's size against the limit before anything over it is written.
pub struct DataWriter<W: Write> {
    out: W,
    size: u64,
    limit: u64,
}

impl<W: Write> DataWriter<W> {
    /// A writer to `out`.
    pub fn new(out: W, limit: u64) -> Self {
        DataWriter {
            out,
            size: 0,
            limit,
        }
    }

    /// Writes raw bytes (the submission's JSON line).
    pub fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)
    }

    /// One line of the message.
    pub fn line(&mut self, content: &[u8]) -> Result<(), InputError> {
        self.size += content.len() as u64 + 2;
        if self.size > self.limit {
            return Err(InputError::TooBig(self.limit));
        }
        if content.first() == Some(&b'.') {
            self.out.write_all(b".")?;
        }
        self.out.write_all(content)?;
        self.out.write_all(b"\r\n")?;
        Ok(())
    }

    /// The end-of-data marker; returns the message size.
    pub fn finish(mut self) -> Result<u64, InputError> {
        self.out.write_all(b".\r\n")?;
        self.out.flush()?;
        Ok(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        size: 1000,
        header: 200,
        line: 50,
    };

    fn lines(input: &[u8]) -> Vec<Vec<u8>> {
        let mut r = LineReader::new(input, 0);
        let mut out = Vec::new();
        let mut l = Vec::new();
        while r.next_line(&mut l).unwrap() {
            out.push(l.clone());
        }
        out
    }

    #[test]
    fn every_line_end_is_one_break() {
        let want: Vec<Vec<u8>> = vec![
            b"a".to_vec(),
            b"b".to_vec(),
            b"c".to_vec(),
            b"".to_vec(),
            b"d".to_vec(),
        ];
        assert_eq!(lines(b"a\nb\r\nc\r\rd"), want);
        assert_eq!(lines(b"a\r\nb\nc\n\nd\n"), want);
        assert_eq!(lines(b""), Vec::<Vec<u8>>::new());
        // A CR at the end of one read and its LF at the start of the next.
        let chained = std::io::BufReader::with_capacity(2, &b"a\r\nb"[..]);
        let mut r = LineReader::new(chained, 0);
        let mut l = Vec::new();
        assert!(r.next_line(&mut l).unwrap() && l == b"a");
        assert!(r.next_line(&mut l).unwrap() && l == b"b");
        assert!(!r.next_line(&mut l).unwrap());
    }

    #[test]
    fn long_lines_are_refused() {
        let long = [b'x'; 60];
        let mut r = LineReader::new(&long[..], 50);
        assert!(matches!(
            r.next_line(&mut Vec::new()),
            Err(InputError::LineTooLong(1, 50))
        ));
    }

    fn header(input: &[u8], ignore_dots: bool) -> Header {
        read_header(&mut LineReader::new(input, 0), ignore_dots, &LIMITS).unwrap()
    }

    #[test]
    fn header_section() {
        let h = header(
            b"From x Mon\nTo: a@b,\n c@d\nBcc: e@f\nSubject: s\n\nbody\n",
            false,
        );
        assert_eq!(
            h.lines,
            [
                b"To: a@b,".to_vec(),
                b" c@d".to_vec(),
                b"Subject: s".to_vec()
            ]
        );
        assert_eq!(h.recipient_fields, [" a@b,  c@d ", " e@f "]);
        assert!(!h.has_from);
        assert_eq!(h.after, After::Separator);

        let h = header(b"from: me\nnot a header\n", false);
        assert!(h.has_from);
        assert_eq!(h.after, After::Body(b"not a header".to_vec()));

        assert_eq!(header(b"Subject: x\n.\nrest\n", false).after, After::End);
        assert_eq!(
            header(b"Subject: x\n.\nrest\n", true).after,
            After::Body(b".".to_vec())
        );
        let big = "X: y\n".repeat(50);
        assert!(matches!(
            read_header(&mut LineReader::new(big.as_bytes(), 0), false, &LIMITS),
            Err(InputError::HeaderTooBig(200))
        ));
    }

    #[test]
    fn data_form() {
        let mut out = Vec::new();
        let mut w = DataWriter::new(&mut out, 10);
        w.line(b".a").unwrap();
        w.line(b"b").unwrap();
        assert!(matches!(w.line(b"cc"), Err(InputError::TooBig(10))));
        assert_eq!(w.finish().unwrap(), 11);
        assert_eq!(out, b"..a\r\nb\r\n.\r\n");
    }
}
