//! Unit tests of the header-section facts.

use super::*;

#[test]
fn header_section_cuts_at_the_first_empty_line() {
    assert_eq!(
        header_section(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\n"),
        b"A: 1\r\nB: 2\r\n"
    );
    assert_eq!(header_section(b"\r\nbody"), b"");
    assert_eq!(header_section(b"A: 1\nB: 2\n\nbody"), b"A: 1\nB: 2\n");
    assert_eq!(header_section(b"A: 1\r\nB: 2\r\n"), b"A: 1\r\nB: 2\r\n");
    assert_eq!(header_section(b"A: 1\r\nB: partial"), b"A: 1\r\n");
    // Bounded: a huge header section is cut at a line end within the bound.
    let many = b"X-Filler: 0123456789012345678901234567890123456789\r\n".repeat(5000);
    let cut = header_section(&many);
    assert!(cut.len() <= MAX_HEADER_SECTION && cut.len() > MAX_HEADER_SECTION - 100);
    assert!(cut.ends_with(b"\r\n"));
    // One giant line: the bound itself.
    assert_eq!(
        header_section(&[b'a'; MAX_HEADER_SECTION * 2]).len(),
        MAX_HEADER_SECTION
    );
}

#[test]
fn received_fields_are_counted_for_the_loop_check() {
    let headers = b"Received: from a by b; Fri, 29 Nov 2024 17:06:40 +0000\r\n\
RECEIVED: from c\r\n\
\x20Received: this is a continuation line\r\n\
Received : obsolete form\r\n\
X-Received: not this\r\n\
Subject: Received: not this either\r\n\
\r\n\
Received: in the body, not counted\r\n";
    assert_eq!(count_received(headers), 3);
    let looping = b"Received: from x\r\n".repeat(HOP_LIMIT + 1);
    assert!(count_received(&looping) > HOP_LIMIT);
}
