use super::*;

/// Feeds `input` in one call; returns (body, consumed, done, violation).
fn receive(input: &[u8], max_line: usize) -> (Vec<u8>, usize, bool, Option<DataViolation>) {
    let mut rx = DataReceiver::with_max_line(max_line);
    let mut out = Vec::new();
    let p = rx.ingest(input, &mut out);
    (out, p.consumed, p.done, rx.violation())
}

#[test]
fn receiver_table() {
    use DataViolation::*;
    type Case<'a> = (&'a [u8], &'a [u8], usize, bool, Option<DataViolation>);
    let cases: &[Case<'_>] = &[
        // (input, body, consumed, done, violation)
        (b".\r\n", b"", 3, true, None),
        (b"hello\r\n.\r\n", b"hello\r\n", 10, true, None),
        (
            b"a\r\nb\r\n.\r\nMAIL FROM:<>\r\n",
            b"a\r\nb\r\n",
            9,
            true,
            None,
        ),
        (b"..x\r\n.\r\n", b".x\r\n", 8, true, None),
        (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n", 10, true, None),
        (b"a\r\n...\r\n.\r\n", b"a\r\n..\r\n", 11, true, None),
        (b".x\r\n.\r\n", b"x\r\n", 7, true, None),
        (b"\r\n.\r\n", b"\r\n", 5, true, None),
        (b"a.\r\n.\r\n", b"a.\r\n", 7, true, None),
        (b"a\r\n.", b"a\r\n", 4, false, None),
        (b"a\r\n.\r", b"a\r\n", 5, false, None),
        (b"a\r", b"a", 2, false, None),
        (b"", b"", 0, false, None),
        // Smuggling payloads: never the end, always a violation.
        (b"a\n.\nb", b"a\n.\nb", 5, false, Some(BareLf)),
        (b"a\r.\rb", b"a\r.\rb", 5, false, Some(BareCr)),
        (b"a\n.\r\nb", b"a\n.\r\nb", 6, false, Some(BareLf)),
        (b"a\r\n.\nb", b"a\r\n\nb", 6, false, Some(BareLf)),
        (b"a\r.\r\nb", b"a\r.\r\nb", 6, false, Some(BareCr)),
        (b"\n.\n", b"\n.\n", 3, false, Some(BareLf)),
        (b".\n", b"\n", 2, false, Some(BareLf)),
        (b".\r.\r\n.\r\n", b"\r.\r\n", 8, true, Some(BareCr)),
        (
            b"a\r\n.\rx\r\n.\r\n",
            b"a\r\n\rx\r\n",
            11,
            true,
            Some(BareCr),
        ),
        (b"a\n.\r\n.\r\n", b"a\n.\r\n", 8, true, Some(BareLf)),
        (b"a\r\r\n.\r\n", b"a\r\r\n", 7, true, Some(BareCr)),
        // First violation wins.
        (b"a\rb\nc\r\n.\r\n", b"a\rb\nc\r\n", 10, true, Some(BareCr)),
        (b"a\nb\rc\r\n.\r\n", b"a\nb\rc\r\n", 10, true, Some(BareLf)),
    ];
    for &(input, body, consumed, done, violation) in cases {
        let got = receive(input, 998);
        assert_eq!(
            got,
            (body.to_vec(), consumed, done, violation),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn line_length() {
    let ok_line = [b"x".repeat(998), b"\r\n.\r\n".to_vec()].concat();
    assert_eq!(receive(&ok_line, 998).3, None);
    let long_line = [b"x".repeat(999), b"\r\n.\r\n".to_vec()].concat();
    let (body, _, done, violation) = receive(&long_line, 998);
    assert!(done);
    assert_eq!(violation, Some(DataViolation::LineTooLong));
    assert_eq!(body.len(), 1001);
    assert_eq!(receive(&long_line, 0).3, None);
    // The stuffing dot does not count (RFC 5321 4.5.3.1.6): a 998-octet
    // line starting with '.' is 999 octets on the wire and still fits.
    let stuffed = [b"..".to_vec(), b"x".repeat(997), b"\r\n.\r\n".to_vec()].concat();
    assert_eq!(receive(&stuffed, 998).3, None);
    let too_long = [b"..".to_vec(), b"x".repeat(998), b"\r\n.\r\n".to_vec()].concat();
    assert_eq!(receive(&too_long, 998).3, Some(DataViolation::LineTooLong));
    assert_eq!(
        receive(b"abc\r\nabcd\r\n.\r\n", 3).3,
        Some(DataViolation::LineTooLong)
    );
    assert_eq!(receive(b"abc\r\nabc\r\n.\r\n", 3).3, None);
    // A bare LF before the long line is reported first.
    assert_eq!(
        receive(b"a\nbcdef\r\n.\r\n", 3).3,
        Some(DataViolation::BareLf)
    );
}

#[test]
fn after_done_nothing_is_consumed() {
    let mut rx = DataReceiver::new();
    let mut out = Vec::new();
    let p = rx.ingest(b"x\r\n.\r\nQUIT\r\n", &mut out);
    assert_eq!(
        p,
        DataProgress {
            consumed: 6,
            done: true
        }
    );
    assert!(rx.is_done());
    assert_eq!(rx.body_len(), 3);
    let p = rx.ingest(b"more", &mut out);
    assert_eq!(
        p,
        DataProgress {
            consumed: 0,
            done: true
        }
    );
    assert_eq!(out, b"x\r\n");
}

#[test]
fn every_split_point() {
    let inputs: &[&[u8]] = &[
        b"Subject: x\r\n\r\n..dots\r\n.\r\nQUIT\r\n",
        b"a\n.\nb\r.\r\n.\r\n",
        b".\r\n",
        b"..\r\n.\r.\r\n.\r\n",
    ];
    for input in inputs {
        let whole = receive(input, 5);
        for cut in 0..=input.len() {
            let mut rx = DataReceiver::with_max_line(5);
            let mut out = Vec::new();
            let a = rx.ingest(&input[..cut], &mut out);
            let mut consumed = a.consumed;
            let mut done = a.done;
            if !done {
                let b = rx.ingest(&input[cut..], &mut out);
                consumed += b.consumed;
                done = b.done;
            }
            assert_eq!(
                (out, consumed, done, rx.violation()),
                whole,
                "cut {cut} of {input:?}"
            );
        }
    }
}

fn stuff_all(pieces: &[&[u8]]) -> Vec<u8> {
    let mut s = DotStuffer::new();
    let mut out = Vec::new();
    for p in pieces {
        s.stuff(p, &mut out);
    }
    s.finish(&mut out);
    out
}

#[test]
fn stuffer_table() {
    let cases: &[(&[&[u8]], &[u8])] = &[
        (&[b""], b".\r\n"),
        (&[b"a\r\n"], b"a\r\n.\r\n"),
        (&[b"a"], b"a\r\n.\r\n"),
        (&[b".\r\n"], b"..\r\n.\r\n"),
        (&[b"a\r\n.b\r\n"], b"a\r\n..b\r\n.\r\n"),
        (&[b"a\r\n", b".", b"b\r\n"], b"a\r\n..b\r\n.\r\n"),
        (&[b"a\r", b"\n.b"], b"a\r\n..b\r\n.\r\n"),
        (&[b"a.b\r\n"], b"a.b\r\n.\r\n"),
        // A dot that starts a piece but not a line is sent as it is.
        (&[b"a\r\nb", b".c\r\n"], b"a\r\nb.c\r\n.\r\n"),
        // Bare line ends are normalised to CRLF.
        (&[b"a\n.\nb"], b"a\r\n..\r\nb\r\n.\r\n"),
        (&[b"a\r.\rb\r"], b"a\r\n..\r\nb\r\n.\r\n"),
        (&[b"a\r\r\n"], b"a\r\n\r\n.\r\n"),
        (&[b"a\r"], b"a\r\n.\r\n"),
        (&[b"\r\n"], b"\r\n.\r\n"),
    ];
    for (pieces, wire) in cases {
        assert_eq!(stuff_all(pieces), wire.to_vec(), "{pieces:?}");
    }
    // The stuffer is reusable after finish.
    let mut s = DotStuffer::default();
    let mut out = Vec::new();
    s.stuff(b"x", &mut out);
    s.finish(&mut out);
    s.stuff(b".y\r\n", &mut out);
    s.finish(&mut out);
    assert_eq!(out, b"x\r\n.\r\n..y\r\n.\r\n");
}

/// Bodies made of the bytes that matter to the framing: text, dots, CR,
/// LF, and runs of text long enough to cross a line limit; half of them
/// well-formed CRLF lines (where only a line's length can be wrong).
fn framing_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let lines =
        proptest::collection::vec("[a-z.]{0,15}", 0..30).prop_map(|v| v.join("\r\n").into_bytes());
    let any = proptest::collection::vec(
        prop_oneof![
            Just(b"a".to_vec()),
            Just(b".".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r\n.".to_vec()),
            "[a-z]{1,12}".prop_map(String::into_bytes),
        ],
        0..80,
    )
    .prop_map(|v| v.concat());
    prop_oneof![lines, any]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
    /// The bulk paths (whole lines in one copy) give what one byte at a
    /// time gives: the same body, terminator, violation, and line counts.
    #[test]
    fn receiver_bulk_equals_byte_by_byte(
        body in framing_bytes(),
        max_line in 0usize..12,
        cut in 0usize..200,
    ) {
        let mut input = body;
        input.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
        let cut = cut.min(input.len());
        let mut one = DataReceiver::with_max_line(max_line);
        let mut want = Vec::new();
        let mut used = 0;
        for b in &input {
            used += one.ingest(std::slice::from_ref(b), &mut want).consumed;
        }
        let mut bulk = DataReceiver::with_max_line(max_line);
        let mut got = Vec::new();
        let mut consumed = bulk.ingest(&input[..cut], &mut got).consumed;
        if !bulk.is_done() {
            consumed += bulk.ingest(&input[cut..], &mut got).consumed;
        }
        proptest::prop_assert_eq!(&got, &want);
        proptest::prop_assert_eq!(consumed, used);
        proptest::prop_assert_eq!(bulk.violation(), one.violation());
        proptest::prop_assert_eq!(bulk.body_len(), one.body_len());
        proptest::prop_assert!(bulk.is_done());
    }

    /// The same for the stuffer, across a cut.
    #[test]
    fn stuffer_bulk_equals_byte_by_byte(body in framing_bytes(), cut in 0usize..200) {
        let cut = cut.min(body.len());
        let bytes: Vec<&[u8]> = body.iter().map(std::slice::from_ref).collect();
        let want = stuff_all(&bytes);
        proptest::prop_assert_eq!(stuff_all(&[&body[..cut], &body[cut..]]), want);
    }
}

#[test]
fn removed_dots_are_reported() {
    let cases: &[(&[u8], bool)] = &[
        (b".\r\n", false),
        (b"a.b\r\n.\r\n", false),
        (b"..x\r\n.\r\n", true),
        (b"a\r\n..\r\n.\r\n", true),
        (b"a\r\n.\nb\r\n.\r\n", true),
        (b"a\r\n.\rb\r\n.\r\n", true),
    ];
    for &(input, removed) in cases {
        let mut rx = DataReceiver::new();
        rx.ingest(input, &mut Vec::new());
        assert_eq!(rx.removed_dot(), removed, "{input:?}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
    /// A body received without a violation and without a removed dot is
    /// its own stuffed form: delivery may send it as it is. (A removed dot
    /// does not always mean the opposite: `.a` is `a` stuffed needlessly.)
    #[test]
    fn a_body_without_removed_dots_sends_as_is(body in framing_bytes(), cut in 0usize..200) {
        let mut input = body;
        input.extend_from_slice(b"\r\n.\r\n");
        let cut = cut.min(input.len());
        let mut rx = DataReceiver::new();
        let mut got = Vec::new();
        rx.ingest(&input[..cut], &mut got);
        rx.ingest(&input[cut..], &mut got);
        proptest::prop_assume!(rx.violation().is_none());
        let mut as_is = got.clone();
        as_is.extend_from_slice(b".\r\n");
        if !rx.removed_dot() {
            proptest::prop_assert_eq!(stuff_all(&[&got]), as_is);
        }
    }
}
