//! Facts about a message's header section that intake, delivery and
//! bounces share: the hop limit that marks a mail loop, how much of a
//! message counts as its header section, where that section ends, and
//! reading it from the start of a queued body.
//!
//! Everything here but [`read_head`] works on bytes; [`read_head`] is the
//! one read, of a body file the caller names (the queue's worker for a
//! notice, the delivery engine for a header rewrite), so that `bounce`
//! stays free of I/O. Not for: parsing or rewriting fields (`route`'s
//! header rewriter, `intake::headers`).

#[cfg(test)]
mod tests;

/// The most `Received:` header fields a message may carry before it is
/// treated as looping (RFC 5321 §6.3; Postfix's `hopcount_limit`). A caller
/// that finds more fails the message with 5.4.6 "mail forwarding loop".
pub const HOP_LIMIT: usize = 50;

/// The most bytes of the original message examined for, and returned as,
/// its header section.
pub const MAX_HEADER_SECTION: usize = 64 * 1024;

/// The start of the queued body at `path`: the [`MAX_HEADER_SECTION`]
/// bytes [`header_section`] looks at (all of it when shorter).
pub fn read_head(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_HEADER_SECTION as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// The header section at the start of a message: up to and including the
/// line end before the first empty line. Looks at no more than
/// [`MAX_HEADER_SECTION`] bytes; without an empty line there, the complete
/// lines within the bound (or the bound itself, for one giant line).
/// Pass at least the first `MAX_HEADER_SECTION` bytes of the body (or all
/// of it when shorter).
pub fn header_section(body_prefix: &[u8]) -> &[u8] {
    let bounded = &body_prefix[..body_prefix.len().min(MAX_HEADER_SECTION)];
    let mut line_start = 0;
    for (i, &b) in bounded.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        let line = &bounded[line_start..i];
        if line.is_empty() || line == b"\r" {
            return &bounded[..line_start];
        }
        line_start = i + 1;
    }
    if line_start > 0 {
        &bounded[..line_start]
    } else {
        bounded
    }
}

/// How many `Received:` fields a header section has (for a
/// [`HOP_LIMIT`] check). Only field names at the start of a line count,
/// case-insensitively; continuation lines and the body do not.
pub fn count_received(headers: &[u8]) -> usize {
    header_section(headers)
        .split(|&b| b == b'\n')
        .filter(|line| {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return false;
            };
            let name = &line[..colon];
            // "Received :" is the obsolete but legal form (RFC 5322 §4.5).
            let name = name.trim_ascii_end();
            !line.starts_with(b" ")
                && !line.starts_with(b"\t")
                && name.eq_ignore_ascii_case(b"Received")
        })
        .count()
}
