//! SMTP replies (RFC 5321 §4.2) with RFC 3463 enhanced status codes: building
//! and encoding them on the server side, parsing them incrementally on the
//! client side. It does not decide which reply a situation deserves.

use std::fmt;

/// Upper bound on the number of lines [`parse_reply`] accepts in one reply.
///
/// Real replies have a handful of lines (an EHLO reply about twenty); the bound
/// keeps a hostile server from making the client buffer an endless reply.
pub const MAX_REPLY_LINES: usize = 256;

/// An RFC 3463 enhanced status code such as `5.1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// Class: 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// Subject, 0–999.
    pub subject: u16,
    /// Detail, 0–999.
    pub detail: u16,
}

impl EnhancedCode {
    /// Builds a code from its three parts (not validated; see [`EnhancedCode::parse`]).
    pub const fn new(class: u8, subject: u16, detail: u16) -> EnhancedCode {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }

    /// Parses `class.subject.detail` exactly as RFC 3463 writes it: class is
    /// `2`, `4` or `5`, subject and detail are 1–3 digits. Returns `None` for
    /// anything else, including surrounding spaces.
    pub fn parse(s: &str) -> Option<EnhancedCode> {
        let mut parts = s.split('.');
        let class = parts.next()?;
        let subject = parts.next()?;
        let detail = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let class = match class {
            "2" => 2,
            "4" => 4,
            "5" => 5,
            _ => return None,
        };
        Some(EnhancedCode {
            class,
            subject: parse_1_to_3_digits(subject)?,
            detail: parse_1_to_3_digits(detail)?,
        })
    }
}

fn parse_1_to_3_digits(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One SMTP reply, possibly multi-line.
///
/// `lines` holds the text of each line without the reply code and without
/// the enhanced code, which is stored once in `enhanced` and written on every
/// line by [`Reply::encode`]. A parsed reply always has at least one line
/// (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code, e.g. 250.
    pub code: u16,
    /// The enhanced status code, if the reply carries one.
    pub enhanced: Option<EnhancedCode>,
    /// The text lines.
    pub lines: Vec<String>,
}

impl Reply {
    /// Builds a single-line reply. `enhanced` is `"2.0.0"`-style or `""` for
    /// none; an invalid string is a programming error (debug assertion) and is
    /// treated as none in release builds.
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
        Reply::multi(code, enhanced, [text.into()])
    }

    /// Builds a multi-line reply; `enhanced` as in [`Reply::new`].
    pub fn multi<I, S>(code: u16, enhanced: &str, lines: I) -> Reply
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        debug_assert!((100..600).contains(&code), "reply code {code} out of range");
        let enhanced = if enhanced.is_empty() {
            None
        } else {
            let parsed = EnhancedCode::parse(enhanced);
            debug_assert!(parsed.is_some(), "bad enhanced status code {enhanced:?}");
            parsed
        };
        let mut lines: Vec<String> = lines.into_iter().map(Into::into).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// 2xx: the requested action has been completed.
    pub fn is_positive_completion(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: the server waits for more (354 after DATA, 334 during AUTH).
    pub fn is_positive_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: transient failure, try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: permanent failure.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The text of all lines joined with a single space (for matching or logs).
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// The wire form: each line is the code, `-` (a space on the last line),
    /// the enhanced code if any, the text and CRLF. CR and LF inside the text
    /// are replaced by spaces so that text taken from elsewhere cannot break
    /// the framing.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// [`Reply::encode`] appended to `out` (a connection's send buffer),
    /// without a buffer of its own.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_lines(out, self.code, self.enhanced, &self.lines);
    }

    /// Appends to `out` what `Reply::multi(code, enhanced, lines).encode()`
    /// gives, without building the reply: for a server's fixed replies,
    /// which need no `String`s of their own.
    pub fn encode_parts<S: AsRef<str>>(out: &mut Vec<u8>, code: u16, enhanced: &str, lines: &[S]) {
        let enhanced = if enhanced.is_empty() {
            None
        } else {
            let parsed = EnhancedCode::parse(enhanced);
            debug_assert!(parsed.is_some(), "bad enhanced status code {enhanced:?}");
            parsed
        };
        encode_lines(out, code, enhanced, lines);
    }
}

/// The lines of a reply appended to `out`; no lines is one empty line.
fn encode_lines<S: AsRef<str>>(
    out: &mut Vec<u8>,
    code: u16,
    enhanced: Option<EnhancedCode>,
    lines: &[S],
) {
    let last = lines.len().saturating_sub(1);
    if lines.is_empty() {
        encode_line(out, code, enhanced, "", true);
    }
    for (i, text) in lines.iter().enumerate() {
        encode_line(out, code, enhanced, text.as_ref(), i == last);
    }
}

/// One reply line as [`Reply::encode`] writes it, appended to `out`.
fn encode_line(
    out: &mut Vec<u8>,
    code: u16,
    enhanced: Option<EnhancedCode>,
    text: &str,
    last: bool,
) {
    out.reserve(text.len() + 16);
    push_decimal(out, code, 3);
    out.push(if last { b' ' } else { b'-' });
    if let Some(e) = enhanced {
        push_decimal(out, u16::from(e.class), 1);
        out.push(b'.');
        push_decimal(out, e.subject, 1);
        out.push(b'.');
        push_decimal(out, e.detail, 1);
        out.push(b' ');
    }
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, zero-padded to at least `width` digits (at most 5).
fn push_decimal(out: &mut Vec<u8>, n: u16, width: usize) {
    let mut digits = [b'0'; 5];
    let mut rest = n;
    let mut len = 0;
    while len < digits.len() && (rest > 0 || len < width) {
        digits[digits.len() - 1 - len] = b'0' + (rest % 10) as u8;
        rest /= 10;
        len += 1;
    }
    out.extend_from_slice(&digits[digits.len() - len..]);
}

/// One-line summary for logs: `550 5.1.1 text / text2`. Control characters in
/// the text are escaped, so a remote server cannot forge log lines.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        for (i, line) in self.lines.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { " / " })?;
            // Runs of plain text in one write each; control characters escaped.
            let mut rest = line.as_str();
            while let Some((at, c)) = rest.char_indices().find(|(_, c)| c.is_control()) {
                f.write_str(&rest[..at])?;
                write!(f, "{}", c.escape_default())?;
                rest = &rest[at + c.len_utf8()..];
            }
            f.write_str(rest)?;
        }
        Ok(())
    }
}

/// Why a server's reply could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// A line does not start with a three-digit reply code (2xx–5xx, or 1xx).
    BadCode,
    /// The fourth character is neither a space, a hyphen nor the line end.
    BadSeparator,
    /// A continuation line carries a different code than the first line.
    MismatchedCode {
        /// Code of the first line.
        expected: u16,
        /// Code of the offending line.
        found: u16,
    },
    /// A line is longer than the limit given to [`parse_reply`].
    LineTooLong,
    /// The reply has more than [`MAX_REPLY_LINES`] lines.
    TooManyLines,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::BadCode => {
                f.write_str("reply line does not start with a valid 3-digit code")
            }
            ReplyError::BadSeparator => {
                f.write_str("reply code not followed by a space, a hyphen or the line end")
            }
            ReplyError::MismatchedCode { expected, found } => write!(
                f,
                "reply line has code {found} but the reply started with {expected}"
            ),
            ReplyError::LineTooLong => f.write_str("reply line too long"),
            ReplyError::TooManyLines => {
                write!(f, "reply has more than {MAX_REPLY_LINES} lines")
            }
        }
    }
}

impl std::error::Error for ReplyError {}

/// Parses one reply from the start of `buf` (client side).
///
/// Returns `Ok(None)` when `buf` does not yet hold the whole reply, and
/// `Ok(Some((reply, consumed)))` once it does; bytes after `consumed` (the
/// next pipelined reply) are left alone. `max_len` bounds each line,
/// excluding its line ending.
///
/// Lines normally end with CRLF, but a bare LF is accepted as a line end too:
/// some real servers send LF-only replies and a client gains nothing by
/// refusing them (the smuggling concern is about what a *server* accepts as
/// the end of DATA, not about reply framing). A CR elsewhere in a line is kept
/// as text. Text that is not UTF-8 is decoded lossily.
///
/// The enhanced code is taken from the first line when its first word looks
/// like `x.y.z` with `x` equal to the reply code's first digit; it is then
/// stripped from every line that starts with the same code.
pub fn parse_reply(buf: &[u8], max_len: usize) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code: Option<u16> = None;
    let mut enhanced: Option<EnhancedCode> = None;
    let mut lines: Vec<String> = Vec::new();
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            // No line end yet: fail early on what can already be judged, in
            // the same order as for a complete line.
            check_prefix(rest, code)?;
            if rest.len() > max_len.saturating_add(1) {
                return Err(ReplyError::LineTooLong);
            }
            return Ok(None);
        };
        let mut line = &rest[..lf];
        if let [head @ .., b'\r'] = line {
            line = head;
        }
        // Code and separator first, length last: the order in which a
        // partial line can reveal the problems (see check_prefix).
        let (this_code, last) = split_code(line)?;
        match code {
            None => code = Some(this_code),
            Some(expected) if expected != this_code => {
                return Err(ReplyError::MismatchedCode {
                    expected,
                    found: this_code,
                });
            }
            Some(_) => {}
        }
        if line.len() > max_len {
            return Err(ReplyError::LineTooLong);
        }
        if lines.len() == MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        let text = String::from_utf8_lossy(line.get(4..).unwrap_or_default());
        if lines.is_empty() {
            let token = text.split(' ').next().unwrap_or_default();
            enhanced = EnhancedCode::parse(token).filter(|e| u16::from(e.class) == this_code / 100);
        }
        lines.push(match enhanced {
            Some(e) => strip_enhanced(&text, e).to_owned(),
            None => text.into_owned(),
        });
        pos += lf + 1;
        if last {
            break;
        }
    }
    Ok(Some((
        Reply {
            code: code.unwrap_or_default(),
            enhanced,
            lines,
        },
        pos,
    )))
}

/// Validates the code of a complete line; returns it and whether this is the last line.
fn split_code(line: &[u8]) -> Result<(u16, bool), ReplyError> {
    let code = parse_code(line).ok_or(ReplyError::BadCode)?;
    match line.get(3) {
        None | Some(b' ') => Ok((code, true)),
        Some(b'-') => Ok((code, false)),
        Some(_) => Err(ReplyError::BadSeparator),
    }
}

/// Validates whatever prefix of an incomplete line is available, so that
/// garbage is reported without waiting for a line end that may never come.
fn check_prefix(partial: &[u8], code: Option<u16>) -> Result<(), ReplyError> {
    let digits = partial.len().min(3);
    for (i, &b) in partial.iter().take(digits).enumerate() {
        let ok = match i {
            0 => (b'1'..=b'5').contains(&b),
            _ => b.is_ascii_digit(),
        };
        if !ok {
            return Err(ReplyError::BadCode);
        }
    }
    if let Some(&sep) = partial.get(3) {
        // A CR right after the code may still be the CRLF of a text-less
        // line; anything after that CR (there is no LF in `partial`) is not.
        let sep_ok = match sep {
            b' ' | b'-' => true,
            b'\r' if partial.len() == 4 => return Ok(()),
            _ => false,
        };
        if !sep_ok {
            return Err(ReplyError::BadSeparator);
        }
        if let (Some(expected), Some(found)) = (code, parse_code(partial))
            && expected != found
        {
            return Err(ReplyError::MismatchedCode { expected, found });
        }
    }
    Ok(())
}

fn parse_code(line: &[u8]) -> Option<u16> {
    match line.get(..3)? {
        &[a @ b'1'..=b'5', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// `text` without its leading enhanced code `e` and the space after it;
/// `text` itself when it does not start with `e`.
fn strip_enhanced(text: &str, e: EnhancedCode) -> &str {
    let token = text.split(' ').next().unwrap_or_default();
    if EnhancedCode::parse(token) != Some(e) {
        return text;
    }
    let skip = (token.len() + 1).min(text.len());
    text.get(skip..).unwrap_or_default()
}

#[cfg(test)]
mod tests;
