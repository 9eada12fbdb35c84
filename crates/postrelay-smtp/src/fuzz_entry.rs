//! Entry points shared by the cargo-fuzz targets in `fuzz/` and the corpus
//! test: each takes arbitrary bytes, runs the parsers and asserts the crate's
//! invariants, panicking when one breaks. Not a supported API.

use crate::address::{ForwardPath, MAX_PATH, Mailbox, ReversePath};
use crate::command::Command;
use crate::data::{DataProgress, DataReceiver, DotStuffer};
use crate::line::{Line, next_line, skip_to_line_end};
use crate::reply::{Reply, parse_reply};

/// Command parsing: a parsed command encodes to one line that parses back
/// equal; an error yields a single well-formed 5xx reply. Also walks the
/// bytes with the line framer, checking every `consumed` is in range.
pub fn command(bytes: &[u8]) {
    match Command::parse(bytes) {
        Ok(cmd) => {
            let wire = cmd.encode();
            let line = wire.strip_suffix(b"\r\n").expect("encode ends with CRLF");
            assert!(!line.iter().any(|&b| b == b'\r' || b == b'\n'));
            let again = Command::parse(line);
            assert_eq!(
                again.as_ref(),
                Ok(&cmd),
                "wire {:?}",
                String::from_utf8_lossy(line)
            );
            let _ = format!("{cmd:?}");
        }
        Err(e) => {
            let reply = e.reply();
            assert!(reply.is_permanent(), "{reply}");
            let _ = e.to_string();
            let wire = reply.encode();
            let parsed = parse_reply(&wire, 1000).expect("own reply parses");
            let (parsed, used) = parsed.expect("own reply is complete");
            assert_eq!(used, wire.len());
            assert_eq!(parsed, reply);
        }
    }
    walk_lines(bytes, 64);
}

fn walk_lines(bytes: &[u8], max: usize) {
    let mut rest = bytes;
    loop {
        let step = match next_line(rest, max) {
            Line::Incomplete => break,
            Line::Complete { line, consumed } => {
                assert_eq!(consumed, line.len() + 2);
                assert!(line.len() <= max);
                consumed
            }
            Line::TooLong { consumed_so_far } => {
                assert!(consumed_so_far > max && consumed_so_far <= rest.len());
                let after = rest.get(consumed_so_far..).unwrap_or_default();
                match skip_to_line_end(after) {
                    Some(n) => consumed_so_far + n,
                    None => break,
                }
            }
            Line::BareLf { consumed } | Line::BareCr { consumed } => consumed,
        };
        assert!(step > 0 && step <= rest.len());
        rest = &rest[step..];
    }
}

/// Reply parsing: any prefix shorter than the reply asks for more bytes (or
/// reports the same error), and a parsed reply re-encodes to a fixed point.
pub fn reply(bytes: &[u8]) {
    const MAX: usize = 512;
    let full = parse_reply(bytes, MAX);
    let limit = match &full {
        Ok(Some((_, n))) => *n,
        _ => bytes.len(),
    };
    let stride = (limit / 64).max(1);
    for cut in (0..limit).step_by(stride) {
        let partial = parse_reply(&bytes[..cut], MAX);
        match (&partial, &full) {
            (Ok(None), _) => {}
            (Err(a), Err(b)) if a == b => {}
            _ => panic!("prefix {cut} gave {partial:?}, whole input {full:?}"),
        }
    }
    if let Ok(Some((r, n))) = full {
        assert!(n <= bytes.len() && n >= 4);
        assert!(!r.lines.is_empty());
        assert!((100..600).contains(&r.code));
        let _ = r.to_string();
        let r2 = reencode(&r);
        assert_eq!(reencode(&r2), r2);
    }
}

fn reencode(r: &Reply) -> Reply {
    let wire = r.encode();
    // Lossy UTF-8 decoding can triple a line (one bad byte becomes U+FFFD)
    // and the enhanced code adds up to 12 octets.
    match parse_reply(&wire, 3 * 512 + 16) {
        Ok(Some((again, used))) => {
            assert_eq!(used, wire.len());
            again
        }
        other => panic!("re-encoded reply {wire:?} gave {other:?}"),
    }
}

/// DATA framing: the outcome does not depend on how the input is split, and
/// the stuffer's output is received back as the (normalised) body.
pub fn data(bytes: &[u8]) {
    let (max_line, split, input) = match bytes {
        [a, b, rest @ ..] => (usize::from(*a % 16), usize::from(*b), rest),
        _ => (0, 0, bytes),
    };
    let mut one = DataReceiver::with_max_line(max_line);
    let mut out_one = Vec::new();
    let p_one = one.ingest(input, &mut out_one);
    assert!(p_one.consumed <= input.len());
    if !p_one.done {
        assert_eq!(p_one.consumed, input.len());
    } else {
        let framed = &input[..p_one.consumed];
        assert!(framed == b".\r\n" || framed.ends_with(b"\r\n.\r\n"));
    }
    assert_eq!(one.body_len(), out_one.len() as u64);

    // Two pieces, then one byte at a time.
    let cut = split * input.len() / 255;
    let (out_two, p_two, rx_two) = feed(max_line, [&input[..cut], &input[cut..]]);
    assert_eq!((&out_two, p_two), (&out_one, p_one));
    assert_eq!(rx_two.violation(), one.violation());
    if input.len() <= 4096 {
        let (out_bytes, p_bytes, rx_bytes) = feed(max_line, input.chunks(1));
        assert_eq!((&out_bytes, p_bytes), (&out_one, p_one));
        assert_eq!(rx_bytes.violation(), one.violation());
    }

    // A clean body re-stuffed and received again is unchanged.
    if p_one.done && one.violation().is_none() {
        let (wire, body) = stuff_and_receive(&out_one);
        assert_eq!(body, out_one, "wire {wire:?}");
    }

    // Any bytes, stuffed: received cleanly as the normalised body.
    let (wire, body) = stuff_and_receive(input);
    assert_eq!(body, normalise(input), "wire {wire:?}");
}

fn feed<'a>(
    max_line: usize,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<u8>, DataProgress, DataReceiver) {
    let mut rx = DataReceiver::with_max_line(max_line);
    let mut out = Vec::new();
    let mut total = DataProgress {
        consumed: 0,
        done: false,
    };
    for piece in pieces {
        if total.done {
            break;
        }
        let p = rx.ingest(piece, &mut out);
        total.consumed += p.consumed;
        total.done = p.done;
    }
    (out, total, rx)
}

fn stuff_and_receive(body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut stuffer = DotStuffer::new();
    let mut wire = Vec::new();
    let mid = body.len() / 2;
    stuffer.stuff(&body[..mid], &mut wire);
    stuffer.stuff(&body[mid..], &mut wire);
    stuffer.finish(&mut wire);
    let mut rx = DataReceiver::with_max_line(0);
    let mut out = Vec::new();
    let p = rx.ingest(&wire, &mut out);
    assert!(p.done && p.consumed == wire.len(), "wire {wire:?}");
    assert_eq!(rx.violation(), None, "wire {wire:?}");
    (wire, out)
}

/// Reference for the stuffer's line-end normalisation: CRLF, bare CR and
/// bare LF all become CRLF, and a last line without one gets CRLF.
fn normalise(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'\r' if input.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Address parsing: canonical forms parse back equal and never grow.
pub fn address(bytes: &[u8]) {
    let Ok(s) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(m) = Mailbox::parse(s) {
        let shown = m.to_string();
        assert!(shown.len() <= s.len() && shown.len() + 2 <= MAX_PATH);
        assert_eq!(Mailbox::parse(&shown).as_ref(), Ok(&m), "{shown}");
        assert_eq!(
            Mailbox::from_parts(m.local_part(), m.domain()).as_ref(),
            Ok(&m)
        );
        assert_eq!(m.is_ascii(), shown.is_ascii());
        let _ = m.domain_lowercase();
    }
    if let Ok(p) = ReversePath::parse(s) {
        let shown = p.to_string();
        assert!(shown.len() <= s.len());
        assert_eq!(ReversePath::parse(&shown).as_ref(), Ok(&p), "{shown}");
    }
    if let Ok(p) = ForwardPath::parse(s) {
        let shown = p.to_string();
        assert!(shown.len() <= s.len());
        assert_eq!(ForwardPath::parse(&shown).as_ref(), Ok(&p), "{shown}");
    }
    command(format!("RCPT TO:{s} NOTIFY=NEVER").as_bytes());
    command(format!("MAIL FROM:{s}").as_bytes());
}
