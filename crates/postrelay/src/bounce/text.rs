//! The byte-level safety of a notification: text from outside (addresses,
//! relay replies, the original header section) becomes single header
//! fields and text lines that cannot start a new header, end a MIME part
//! or exceed the 998-octet line limit of RFC 5322 §2.1.1; and the MIME
//! boundary is chosen so that it occurs nowhere in the content.

/// The longest line allowed in a message, without its CRLF.
pub(super) const MAX_LINE: usize = 998;

/// Where header fields are folded when their words allow (RFC 5322 §2.1.1
/// "SHOULD be no more than 78 characters").
pub(super) const FOLD_AT: usize = 78;

/// Where the lines of the human-readable part are wrapped.
pub(super) const TEXT_WIDTH: usize = 72;

/// Longest MIME boundary (RFC 2046 §5.1.1).
const MAX_BOUNDARY: usize = 70;

/// Makes untrusted text safe for one header field or one text paragraph:
/// line breaks and tabs become spaces, other control characters `?`, runs
/// of spaces collapse to one, and the ends are trimmed. A CR or LF can
/// never survive, so the result can never start a header field or a MIME
/// boundary line by itself.
pub(super) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.chars() {
        let c = match c {
            '\r' | '\n' | '\t' | '\u{2028}' | '\u{2029}' => ' ',
            c if c.is_control() => '?',
            c => c,
        };
        if c == ' ' {
            pending_space = true;
            continue;
        }
        if pending_space && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

/// A header field `Name: value`, the value made [`one_line`], folded at
/// spaces into lines of at most [`FOLD_AT`] octets where the words allow
/// (never more than [`MAX_LINE`]). Ends with CRLF.
pub(super) fn field(name: &str, value: &str) -> String {
    wrap(&format!("{name}: {}", one_line(value)), FOLD_AT, " ")
}

/// Wraps `text` (single spaces, no control characters: [`one_line`]
/// output or fixed text) at spaces: lines of at most `width` octets where
/// the words allow, continuation lines starting with `indent`. A word too
/// long even for [`MAX_LINE`] is cut at a character boundary. Every line
/// ends with CRLF; an empty `text` gives one empty line.
///
/// With `indent` = `" "` this is header folding: unfolding gives the
/// original text back (except inside a cut word).
pub(super) fn wrap(text: &str, width: usize, indent: &str) -> String {
    debug_assert!(indent.len() < 8 && width <= MAX_LINE);
    let mut out = String::with_capacity(text.len() + 16);
    let mut line = String::new();
    // Whether `line` holds a word (not just the indentation).
    let mut has_word = false;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let sep = usize::from(has_word);
        if has_word && line.len() + sep + word.len() > width {
            out.push_str(&line);
            out.push_str("\r\n");
            line.clear();
            line.push_str(indent);
            has_word = false;
        }
        let mut rest = word;
        loop {
            let sep = if has_word { " " } else { "" };
            let room = MAX_LINE - line.len() - sep.len();
            if rest.len() <= room {
                line.push_str(sep);
                line.push_str(rest);
                has_word = true;
                break;
            }
            let cut = floor_char_boundary(rest, room);
            line.push_str(sep);
            line.push_str(&rest[..cut]);
            rest = &rest[cut..];
            out.push_str(&line);
            out.push_str("\r\n");
            line.clear();
            line.push_str(indent);
            has_word = false;
        }
    }
    out.push_str(&line);
    out.push_str("\r\n");
    out
}

/// The largest index ≤ `at` that is a character boundary of `s`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Re-emits a header section for inclusion in a notification: every line
/// ends with CRLF (a bare CR or LF counts as a line end), NUL bytes are
/// dropped, a line longer than [`MAX_LINE`] is folded (a space starts each
/// continuation), and an empty line ends the section. Bytes are kept as
/// they are otherwise (8-bit headers stay 8-bit).
pub(super) fn quote_header_section(section: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(section.len() + 16);
    for raw in split_lines(section) {
        let line: Vec<u8> = raw.iter().copied().filter(|&b| b != 0).collect();
        if line.is_empty() {
            break;
        }
        let mut rest = &line[..];
        let mut first = true;
        loop {
            let room = if first { MAX_LINE } else { MAX_LINE - 1 };
            if !first {
                out.push(b' ');
            }
            if rest.len() <= room {
                out.extend_from_slice(rest);
                out.extend_from_slice(b"\r\n");
                break;
            }
            // Do not cut a UTF-8 sequence when the bytes are UTF-8.
            let mut cut = room;
            while cut > room - 3 && (rest[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            out.extend_from_slice(&rest[..cut]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[cut..];
            first = false;
        }
    }
    out
}

/// Splits bytes into lines at CRLF, lone CR or lone LF; a last line
/// without a line end is included, an empty remainder is not.
fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                lines.push(&bytes[start..i]);
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            b'\n' => {
                lines.push(&bytes[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < bytes.len() {
        lines.push(&bytes[start..]);
    }
    lines
}

/// A MIME boundary made of `seed` and `host` that occurs in none of
/// `parts`, compared without regard to ASCII case (some parsers match
/// boundaries that way).
///
/// The first candidate is `seed/host`; if content contains it, `seed.1/host`,
/// `seed.2/host`, … At any position of the content at most one candidate
/// can start (the digits after the `.` run up to the `/`), so a content of
/// n bytes rules out at most n candidates and the search ends.
pub(super) fn boundary(seed: &str, host: &str, parts: &[&[u8]]) -> String {
    let mut seed = bchars(seed, 40);
    if seed.is_empty() {
        seed.push_str("postrelay");
    }
    (0u64..)
        .map(|k| {
            let stem = if k == 0 {
                seed.clone()
            } else {
                format!("{seed}.{k}")
            };
            let room = MAX_BOUNDARY - stem.len() - 1;
            format!("{stem}/{}", bchars(host, room))
        })
        .find(|candidate| {
            !parts
                .iter()
                .any(|p| contains_ignore_case(p, candidate.as_bytes()))
        })
        .expect("content of finite length rules out finitely many boundaries")
}

/// Keeps the characters that are safe in a quoted boundary and in a host
/// name (letters, digits, `-`, `.`, `_`), replacing others with `_`, at
/// most `max` of them.
fn bchars(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

/// Whether `needle` occurs in `haystack`, ASCII case-insensitively.
pub(super) fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_line_removes_every_line_break() {
        assert_eq!(
            one_line("  a\r\nBcc: x\n\r\tb\u{2028}c\u{0}d\u{85}e  "),
            "a Bcc: x b c?d?e"
        );
        assert_eq!(one_line(""), "");
        assert_eq!(one_line("\r\n"), "");
    }

    #[test]
    fn fields_fold_at_spaces() {
        let value = "smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected: \
                     User unknown in virtual mailbox table";
        let f = field("Diagnostic-Code", value);
        assert_eq!(
            f,
            "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.org>: Recipient address\r\n \
             rejected: User unknown in virtual mailbox table\r\n"
        );
        // Unfolding gives the value back.
        assert_eq!(
            f.replace("\r\n ", " ").trim_end(),
            format!("Diagnostic-Code: {value}")
        );
    }

    #[test]
    fn a_giant_word_is_cut_below_the_line_limit() {
        let word = "é".repeat(1500);
        let f = field("X", &word);
        let lines: Vec<&str> = f.split_terminator("\r\n").collect();
        assert!(lines.len() >= 4, "{}", lines.len());
        for l in &lines {
            assert!(l.len() <= MAX_LINE, "{}", l.len());
        }
        for l in &lines[1..] {
            assert!(l.starts_with(' '));
        }
        // The fold after `X:` was at a space, the others cut the word.
        assert_eq!(f.replace("\r\n ", ""), format!("X:{word}\r\n"));
    }

    #[test]
    fn header_quoting_normalizes_lines() {
        let q = quote_header_section(b"A: 1\nB: 2\rC: 3\r\nD:\0 4");
        assert_eq!(q, b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n");
        assert_eq!(quote_header_section(b"A: 1\r\n\r\nbody\r\n"), b"A: 1\r\n");
        let long = [b"X: ".as_slice(), &[b'a'; 2500]].concat();
        let q = quote_header_section(&long);
        for l in q.split(|&b| b == b'\n') {
            assert!(l.len() <= MAX_LINE + 1);
        }
        let unfolded: Vec<u8> = String::from_utf8(q)
            .unwrap()
            .replace("\r\n ", "")
            .trim_end()
            .bytes()
            .collect();
        assert_eq!(unfolded, long);
    }

    #[test]
    fn boundary_avoids_the_content() {
        let b = boundary("SEED", "relay.example.net", &[b"hello"]);
        assert_eq!(b, "SEED/relay.example.net");
        let content = b"x --seed/RELAY.example.net y seed.1/relay.example.net";
        let b = boundary("SEED", "relay.example.net", &[b"a", content]);
        assert_eq!(b, "SEED.2/relay.example.net");
        let b = boundary("a\"b c", "h\r\nx", &[]);
        assert_eq!(b, "a_b_c/h__x");
        assert!(boundary(&"s".repeat(100), &"h".repeat(100), &[]).len() <= MAX_BOUNDARY);
    }

    proptest! {
        #[test]
        fn wrapped_lines_are_bounded_and_lossless(text in "[a-zé ]{0,3000}", width in 20usize..100) {
            let clean = one_line(&text);
            let w = wrap(&clean, width, " ");
            prop_assert!(w.ends_with("\r\n"));
            for line in w.split_terminator("\r\n") {
                prop_assert!(line.len() <= MAX_LINE);
                prop_assert!(!line.contains('\r') && !line.contains('\n'));
            }
            // Words survive in order (cut words are rejoined).
            let words: String = clean.split(' ').collect();
            let got: String = w.split_whitespace().collect();
            prop_assert_eq!(got, words);
        }
    }
}
