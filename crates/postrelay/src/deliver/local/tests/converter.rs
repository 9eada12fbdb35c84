//! The body converter: CRLF to LF and mboxrd `From ` quoting, against a
//! simple reference, in any chunking.

use super::*;

/// The conversion done the simple way, on the whole input.
pub(super) fn reference(input: &[u8], quote: bool) -> Vec<u8> {
    let mut text = Vec::new();
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'\r' && input.get(i + 1) == Some(&b'\n') {
            text.push(b'\n');
            i += 2;
        } else {
            text.push(input[i]);
            i += 1;
        }
    }
    if !quote {
        return text;
    }
    let mut out = Vec::new();
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        if n > 0 {
            out.push(b'\n');
        }
        let gts = line.iter().take_while(|&&b| b == b'>').count();
        if line[gts..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    out
}

/// A reader that returns at most `step` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn convert(input: &[u8], quote: bool, step: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let open = copy_body(&mut Trickle { data: input, step }, &mut out, quote).unwrap();
    (out, open)
}

#[test]
fn converter_examples() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"a\r\nb\r\n", b"a\nb\n"),
        (b"From x\r\n", b">From x\n"),
        (b">From x\r\n", b">>From x\n"),
        (b">>>From x\r\n", b">>>>From x\n"),
        (b"From\r\n", b"From\n"),
        (b"Fromage\r\n", b"Fromage\n"),
        (b">Fro\r\n", b">Fro\n"),
        (b">>\r\n", b">>\n"),
        (b"x From y\r\n", b"x From y\n"),
        (b" From y\r\n", b" From y\n"),
        (b"from y\r\n", b"from y\n"),
        (b"a\r\nFrom b\r\n>From c\r\n", b"a\n>From b\n>>From c\n"),
        (b"bare\rcr\r\n", b"bare\rcr\n"),
        (b"end\r", b"end\r"),
        (b"no newline", b"no newline"),
        (b">", b">"),
        (b"From ", b">From "),
        (b"", b""),
    ];
    for (input, want) in cases {
        for step in [1, 2, 3, 7, 1000] {
            let (got, _) = convert(input, true, step);
            assert_eq!(
                got,
                *want,
                "input {:?} step {step}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

#[test]
fn converter_reports_an_unterminated_last_line() {
    assert!(!convert(b"a\r\n", true, 1).1);
    assert!(convert(b"a\r\nb", true, 1).1);
    assert!(convert(b"a\r\n>", true, 1).1);
    assert!(convert(b"a\r", false, 1).1);
    assert!(!convert(b"", false, 1).1);
}

#[test]
fn converter_maildir_does_not_quote() {
    let (got, _) = convert(b"From x\r\n>From y\r\n", false, 1);
    assert_eq!(got, b"From x\n>From y\n");
}

#[test]
fn converter_long_prefix_in_bounded_memory() {
    let mut input = vec![b'>'; 200_000];
    input.extend_from_slice(b"From x\r\n");
    let (got, _) = convert(&input, true, 4096);
    assert_eq!(got.len(), input.len()); // one '>' more, one CR less
    assert!(got.starts_with(b">>>"));
    assert!(got.ends_with(b">From x\n"));
}

#[test]
fn converter_crlf_split_across_chunks() {
    // CR as the last byte of one chunk, LF the first of the next.
    let mut conv = Converter::new(true);
    let mut out = Vec::new();
    conv.push(b"a\r", &mut out).unwrap();
    conv.push(b"\nFro", &mut out).unwrap();
    conv.push(b"m x\r", &mut out).unwrap();
    conv.push(b"\n", &mut out).unwrap();
    assert!(!conv.finish(&mut out).unwrap());
    assert_eq!(out, b"a\n>From x\n");
}

proptest! {
    #[test]
    fn converter_matches_reference(
        input in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'>'), Just(b'F'), Just(b'r'),
                        Just(b'o'), Just(b'm'), Just(b' '), any::<u8>()],
            0..200),
        step in 1usize..20,
        quote in any::<bool>(),
    ) {
        let (got, _) = convert(&input, quote, step);
        prop_assert_eq!(got, reference(&input, quote));
    }
}
