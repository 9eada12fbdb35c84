//! Command-line framing for a server reading bytes from a client: finds the
//! next CRLF-terminated line and flags bare CR/LF and over-long lines. It does
//! not read from sockets or parse the line (see [`crate::command`]).
//!
//! A line ends only at CRLF. A bare LF or a bare CR is reported instead of
//! being taken as a line end, because disagreeing with another MTA about
//! where a line ends is what SMTP smuggling (CVE-2023-51764 and relatives)
//! exploits.

/// The outcome of looking for the next line in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A full line.
    Complete {
        /// The line without its CRLF.
        line: &'a [u8],
        /// Bytes to drop from the buffer (the line plus CRLF).
        consumed: usize,
    },
    /// No CRLF yet, and nothing wrong so far: read more bytes.
    Incomplete,
    /// More than `max_len` octets arrived without a line end. The caller
    /// drops `consumed_so_far` bytes, answers `500 5.5.2`, and discards
    /// through the next CRLF with [`skip_to_line_end`].
    TooLong {
        /// Bytes that can be dropped now.
        consumed_so_far: usize,
    },
    /// An LF not preceded by CR. `consumed` runs through that LF.
    BareLf {
        /// Bytes to drop (through the LF).
        consumed: usize,
    },
    /// A CR followed by something other than LF. `consumed` runs through that
    /// CR; the byte after it is left in the buffer.
    BareCr {
        /// Bytes to drop (through the CR).
        consumed: usize,
    },
}

/// Looks for the next command line at the start of `buf`.
///
/// `max_len` is the longest acceptable line in octets, excluding the CRLF
/// (RFC 5321 §4.5.3.1.4: 512 including CRLF, so 510; servers commonly allow
/// more for extension parameters). The first anomaly in byte order wins: a
/// bare LF within the first `max_len` octets is reported as `BareLf` even if
/// the line goes on to be too long.
///
/// Recommended server reactions: `TooLong` → `500 5.5.2 Error: line too long`
/// and resynchronise; `BareLf`/`BareCr` → a 5xx (Postfix answers
/// `521 5.5.2 Error: bare <LF> received` and disconnects, which is the safe
/// choice since the peer's idea of line ends differs from ours).
pub fn next_line(buf: &[u8], max_len: usize) -> Line<'_> {
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'\n' => return Line::BareLf { consumed: i + 1 },
            b'\r' => {
                return match buf.get(i + 1) {
                    Some(b'\n') if i <= max_len => Line::Complete {
                        line: &buf[..i],
                        consumed: i + 2,
                    },
                    // Unreachable in practice: the scan stops at max_len + 1.
                    Some(b'\n') => Line::TooLong { consumed_so_far: i },
                    Some(_) => Line::BareCr { consumed: i + 1 },
                    None => Line::Incomplete,
                };
            }
            _ if i >= max_len => {
                // i + 1 octets of content and no terminator: too long.
                return Line::TooLong {
                    consumed_so_far: i + 1,
                };
            }
            _ => {}
        }
    }
    Line::Incomplete
}

/// Finds the end of the line being discarded after [`Line::TooLong`]: returns
/// the number of bytes through the next CRLF, or `None` if `buf` holds no
/// CRLF. On `None` the caller may drop the whole buffer except a final CR,
/// which could be the first half of the CRLF it is waiting for.
pub fn skip_to_line_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n").map(|i| i + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&[u8], usize, Line<'_>)] = &[
            (b"", 10, Line::Incomplete),
            (b"NOOP", 10, Line::Incomplete),
            (b"NOOP\r", 10, Line::Incomplete),
            (
                b"NOOP\r\n",
                10,
                Line::Complete {
                    line: b"NOOP",
                    consumed: 6,
                },
            ),
            (
                b"NOOP\r\nQUIT\r\n",
                10,
                Line::Complete {
                    line: b"NOOP",
                    consumed: 6,
                },
            ),
            (
                b"\r\n",
                10,
                Line::Complete {
                    line: b"",
                    consumed: 2,
                },
            ),
            (b"NOOP\n", 10, Line::BareLf { consumed: 5 }),
            (b"\n", 10, Line::BareLf { consumed: 1 }),
            (b"NO\rOP\r\n", 10, Line::BareCr { consumed: 3 }),
            (b"NOOP\r\r\n", 10, Line::BareCr { consumed: 5 }),
            // Exactly max_len octets is fine, one more is not.
            (
                b"0123456789\r\n",
                10,
                Line::Complete {
                    line: b"0123456789",
                    consumed: 12,
                },
            ),
            (b"0123456789", 10, Line::Incomplete),
            (b"0123456789\r", 10, Line::Incomplete),
            (
                b"0123456789A",
                10,
                Line::TooLong {
                    consumed_so_far: 11,
                },
            ),
            (
                b"0123456789A\r\n",
                10,
                Line::TooLong {
                    consumed_so_far: 11,
                },
            ),
            (b"0123456789\n", 10, Line::BareLf { consumed: 11 }),
            (b"", 0, Line::Incomplete),
            (b"x", 0, Line::TooLong { consumed_so_far: 1 }),
            (
                b"\r\n",
                0,
                Line::Complete {
                    line: b"",
                    consumed: 2,
                },
            ),
        ];
        for (input, max, expected) in cases {
            assert_eq!(
                next_line(input, *max),
                *expected,
                "input {:?} max {max}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn skip() {
        let cases: &[(&[u8], Option<usize>)] = &[
            (b"", None),
            (b"xxxx", None),
            (b"xxx\r", None),
            (b"xx\nxx", None),
            (b"xx\r\nNOOP\r\n", Some(4)),
            (b"\r\n", Some(2)),
        ];
        for (input, expected) in cases {
            assert_eq!(skip_to_line_end(input), *expected, "{input:?}");
        }
    }
}
