//! Streaming a spool body into a mailbox: CRLF becomes LF, and for mbox
//! every line matching `^>*From ` gets one more `>` (mboxrd quoting).
//!
//! Memory is bounded by the read buffer whatever the line lengths: a CR at
//! the end of one chunk and the LF at the start of the next still make one
//! line end, and the `>*From ` prefix is tracked as a count of `>` and a
//! position in `From `, not buffered.

use std::io::{self, Read, Write};

/// Size of the reads from the spool file.
pub(super) const CHUNK: usize = 64 * 1024;

const FROM: &[u8] = b"From ";

/// Line-ending conversion (and optional mboxrd quoting) as a push
/// transformer: feed it chunks, then [`Converter::finish`].
pub(super) struct Converter {
    /// Quote `^>*From ` lines (mbox) or not (Maildir).
    quote: bool,
    /// The previous byte was a CR not yet written: a LF next makes a line end.
    cr_pending: bool,
    /// At the start of a line, reading a possible `>*From ` prefix.
    scanning: bool,
    /// `>` characters seen in the prefix so far.
    gt: u64,
    /// Bytes of `From ` matched after the `>`s.
    matched: usize,
    /// Bytes have been written since the last line end.
    line_open: bool,
}

impl Converter {
    pub(super) fn new(quote: bool) -> Converter {
        Converter {
            quote,
            cr_pending: false,
            scanning: quote,
            gt: 0,
            matched: 0,
            line_open: false,
        }
    }

    /// Converts one chunk.
    pub(super) fn push(&mut self, buf: &[u8], out: &mut impl Write) -> io::Result<()> {
        let mut i = 0;
        while i < buf.len() {
            if self.cr_pending {
                self.cr_pending = false;
                if buf[i] == b'\n' {
                    self.end_line(out)?;
                    i += 1;
                } else {
                    // A bare CR is line content (the spool has none, but a
                    // body is copied faithfully, not judged here).
                    out.write_all(b"\r")?;
                    self.line_open = true;
                }
                continue;
            }
            if self.scanning {
                let b = buf[i];
                if b == b'>' && self.matched == 0 {
                    self.gt += 1;
                    i += 1;
                } else if b == FROM[self.matched] {
                    self.matched += 1;
                    i += 1;
                    if self.matched == FROM.len() {
                        write_gt(out, self.gt + 1)?;
                        out.write_all(FROM)?;
                        self.scanning = false;
                        self.line_open = true;
                    }
                } else {
                    // Not a From line: write the prefix as it was and go on
                    // with this byte as ordinary content.
                    self.flush_prefix(out)?;
                }
                continue;
            }
            let rest = &buf[i..];
            match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
                None => {
                    out.write_all(rest)?;
                    self.line_open = true;
                    i = buf.len();
                }
                Some(p) => {
                    if p > 0 {
                        out.write_all(&rest[..p])?;
                        self.line_open = true;
                    }
                    if rest[p] == b'\r' {
                        self.cr_pending = true;
                    } else {
                        // A bare LF ends a line too.
                        self.end_line(out)?;
                    }
                    i += p + 1;
                }
            }
        }
        Ok(())
    }

    /// Writes what is still held back. Returns whether the output ends in
    /// the middle of a line (the input did not end with a line end).
    pub(super) fn finish(mut self, out: &mut impl Write) -> io::Result<bool> {
        if self.cr_pending {
            out.write_all(b"\r")?;
            self.line_open = true;
        }
        if self.scanning {
            self.flush_prefix(out)?;
        }
        Ok(self.line_open)
    }

    fn end_line(&mut self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(b"\n")?;
        self.line_open = false;
        if self.quote {
            self.scanning = true;
            self.gt = 0;
            self.matched = 0;
        }
        Ok(())
    }

    fn flush_prefix(&mut self, out: &mut impl Write) -> io::Result<()> {
        write_gt(out, self.gt)?;
        out.write_all(&FROM[..self.matched])?;
        if self.gt > 0 || self.matched > 0 {
            self.line_open = true;
        }
        self.scanning = false;
        Ok(())
    }
}

fn write_gt(out: &mut impl Write, mut n: u64) -> io::Result<()> {
    const GTS: [u8; 64] = [b'>'; 64];
    while n > 0 {
        let k = n.min(GTS.len() as u64);
        out.write_all(&GTS[..k as usize])?;
        n -= k;
    }
    Ok(())
}

/// Why a copy stopped: reading the spool file or writing the mailbox.
#[derive(Debug)]
pub(super) enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Streams all of `input` through a [`Converter`] into `out`. Returns
/// whether the output ends in the middle of a line.
pub(super) fn copy_body(
    input: &mut (impl Read + ?Sized),
    out: &mut impl Write,
    quote: bool,
) -> Result<bool, CopyError> {
    let mut conv = Converter::new(quote);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        conv.push(&buf[..n], out).map_err(CopyError::Write)?;
    }
    conv.finish(out).map_err(CopyError::Write)
}
