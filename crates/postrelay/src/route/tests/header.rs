//! Table tests of the header rewriter (`From:` and friends).

use super::*;

const NEW: &str = "alerts@example.com";

#[test]
fn from_header_rewriting() {
    let cases: &[(&str, &str)] = &[
        (
            "From: \"Root\" <root@myhost>\r\nTo: x@example.com\r\n\r\n",
            "X-Original-From: \"Root\" <root@myhost>\r\nFrom: \"Root\" <alerts@example.com>\r\nTo: x@example.com\r\n\r\n",
        ),
        (
            "from: root@myhost\r\n",
            "X-Original-From: root@myhost\r\nfrom: alerts@example.com\r\n",
        ),
        (
            "From: root@myhost (Cron Daemon)\r\n",
            "X-Original-From: root@myhost (Cron Daemon)\r\nFrom: alerts@example.com (Cron Daemon)\r\n",
        ),
        // Bare LF in, CRLF out; a name without domain.
        (
            "From: root\nSubject: x\n",
            "X-Original-From: root\r\nFrom: alerts@example.com\r\nSubject: x\r\n",
        ),
        // Folded: the folding is kept in both fields.
        (
            "From: \"A very long display name\"\r\n <root@myhost>\r\n",
            "X-Original-From: \"A very long display name\"\r\n <root@myhost>\r\nFrom: \"A very long display name\"\r\n <alerts@example.com>\r\n",
        ),
        // Quoted name with <, >, comma and escaped quote.
        (
            "From: \"x <y@z>, \\\"q\\\"\" <root@myhost>\r\n",
            "X-Original-From: \"x <y@z>, \\\"q\\\"\" <root@myhost>\r\nFrom: \"x <y@z>, \\\"q\\\"\" <alerts@example.com>\r\n",
        ),
        // Comment containing an address.
        (
            "From: (ex <a@b>) <root@myhost>\r\n",
            "X-Original-From: (ex <a@b>) <root@myhost>\r\nFrom: (ex <a@b>) <alerts@example.com>\r\n",
        ),
        // Several mailboxes: the first one only.
        (
            "From: root@myhost, Bob <bob@example.com>\r\nSender: root@myhost\r\n",
            "X-Original-From: root@myhost, Bob <bob@example.com>\r\nFrom: alerts@example.com, Bob <bob@example.com>\r\nX-Original-Sender: root@myhost\r\nSender: alerts@example.com\r\n",
        ),
        // Obsolete space before the colon; a group.
        (
            "FROM : Team: root@myhost, b@c;\r\n",
            "X-Original-From: Team: root@myhost, b@c;\r\nFROM : Team: alerts@example.com, b@c;\r\n",
        ),
        // The body after the header section is untouched.
        (
            "From: <root@myhost>\r\n\r\nbody\nline\r\n",
            "X-Original-From: <root@myhost>\r\nFrom: <alerts@example.com>\r\n\r\nbody\nline\r\n",
        ),
    ];
    for (input, want) in cases {
        let got = rewrite_from_header(input.as_bytes(), NEW);
        assert_eq!(String::from_utf8_lossy(&got), *want, "{input:?}");
        assert_valid_header(&got);
    }
}

#[test]
fn from_header_left_alone() {
    let cases: &[(&str, &str)] = &[
        ("To: x@example.com\r\nSubject: hi\r\n", "no From: field"),
        ("From: \"Root <root@myhost>\r\n", "without its closing"),
        ("From: Root <root@myhost\r\n", "'<' without its '>'"),
        ("From: (Root <root@myhost>\r\n", "'(' without its ')'"),
        ("From: root@myhost>\r\n", "'>' without its '<'"),
        ("From: <a@b> <c@d>\r\n", "two <…>"),
        ("From: \r\n", "holds no address"),
    ];
    for (input, why) in cases {
        let r = rewrite_from_header_report(input.as_bytes(), NEW);
        assert_eq!(r.header, input.as_bytes(), "{input:?}");
        assert!(r.changes.is_empty(), "{input:?}");
        assert!(
            r.warnings.iter().any(|w| w.contains(why)),
            "{input:?}: {:?} lacks {why:?}",
            r.warnings
        );
    }
    // A new address that is not one is refused, never written.
    for bad in ["x@y\r\nBcc: victim@example.com", "", "a b@c", "<a@b>"] {
        let r = rewrite_from_header_report(b"From: root@myhost\r\n", bad);
        assert_eq!(r.header, b"From: root@myhost\r\n", "{bad:?}");
    }
}

#[test]
fn header_injection_is_neutralised() {
    // A bare CR or NUL inside the field cannot start a new field.
    let input = b"From: \"x\rBcc: victim@example.com\" <root@myhost>\r\nTo: a@b\r\n";
    let got = rewrite_from_header(input, NEW);
    assert_valid_header(&got);
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains("\r\nBcc"), "{text:?}");
    assert!(
        text.contains("From: \"x Bcc: victim@example.com\" <alerts@example.com>\r\n"),
        "{text:?}"
    );
    let got = rewrite_from_header(b"From: a\0b <root@myhost>\r\n", NEW);
    assert_valid_header(&got);
    assert!(!got.contains(&0));
}

#[test]
fn long_lines_stay_within_the_limit() {
    // A first line of 990 octets: "X-Original-From:" is 12 octets longer
    // than "From:", so the copy starts on a continuation line.
    let name = "n".repeat(990 - "From: \"\" <root@myhost>".len());
    let input = format!("From: \"{name}\" <root@myhost>\r\n");
    assert_eq!(input.len(), 992);
    let got = rewrite_from_header(input.as_bytes(), NEW);
    assert_valid_header(&got);
    let text = String::from_utf8(got).unwrap();
    assert!(text.starts_with("X-Original-From:\r\n \"nnn"), "{text}");
}

#[test]
fn router_rewrites_each_matching_address() {
    let r = router(Tables {
        generic: Some("bob@myhost.example bob@example.com\n"),
        rewrite_senders: Some(NEW),
        ..Tables::default()
    });
    let input = b"From: Root <root@localhost>, bob, Jane <jane@example.org>\r\nSender: nobody@example.org\r\n\r\n";
    let got = r.rewrite_headers(input);
    assert_eq!(
        String::from_utf8_lossy(&got.header),
        "X-Original-From: Root <root@localhost>, bob, Jane <jane@example.org>\r\nFrom: Root <alerts@example.com>, bob@example.com, Jane <jane@example.org>\r\nSender: nobody@example.org\r\n\r\n"
    );
    let changes: Vec<_> = got
        .changes
        .iter()
        .map(|c| (c.field, c.old.as_str(), c.new.as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            ("From", "root@localhost", NEW),
            ("From", "bob", "bob@example.com")
        ]
    );
    // A From that is not local is not touched, even if the envelope
    // sender was rewritten.
    let input = b"From: noreply@example.com\r\n";
    assert_eq!(r.rewrite_headers(input).header, input);
}

/// Every line ends in CRLF, no bare CR or LF, no NUL, each line at most
/// 998 octets, and every line is a field or a continuation (or the
/// separator and what follows it).
fn assert_valid_header(h: &[u8]) {
    let text = String::from_utf8_lossy(h);
    let mut in_header = true;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if !in_header {
            continue;
        }
        assert!(line.ends_with("\r\n"), "line {i} {line:?} of {text:?}");
        let content = &line[..line.len() - 2];
        if content.is_empty() {
            in_header = false;
            continue;
        }
        assert!(!content.contains(['\r', '\n', '\0']), "{line:?}");
        assert!(content.len() <= 998, "line {i} is {} octets", content.len());
        let continuation = content.starts_with([' ', '\t']);
        assert!(
            continuation || content.contains(':'),
            "line {i} {content:?} is neither a field nor a continuation"
        );
        assert!(i > 0 || !continuation, "starts with a continuation");
    }
}

proptest::proptest! {
    /// Whatever the input, the rewriter does not panic, writes only
    /// CRLF-terminated lines without CR, LF or NUL inside, and keeps an
    /// unparseable field as it was.
    #[test]
    fn header_rewriting_never_breaks_a_header(
        tokens in proptest::collection::vec(
            proptest::sample::select(vec![
                "From:", "Sender:", "To:", " ", "\t", "\"", "<", ">", "(", ")", ",", ";",
                ":", "\\", "\r\n", "\n", "\r", "\r\n ", "root@myhost", "a", "\0", "@", "\u{e9}",
            ]),
            0..60,
        )
    ) {
        let input: String = tokens.concat();
        for got in [
            rewrite_from_header(input.as_bytes(), NEW),
            rewrite_addresses(input.as_bytes(), |a| (a == "root@myhost").then(|| NEW.to_owned())).header,
        ] {
            // The header section: up to the first empty line.
            let text = String::from_utf8_lossy(&got).into_owned();
            let header_end = text.find("\r\n\r\n").map_or(text.len(), |i| i + 2);
            let header = if text.starts_with("\r\n") { "" } else { &text[..header_end] };
            for line in header.split_inclusive('\n') {
                proptest::prop_assert!(line.ends_with("\r\n"), "{line:?} in {text:?}");
                let content = &line[..line.len() - 2];
                proptest::prop_assert!(!content.contains(['\r', '\n', '\0']), "{line:?}");
            }
        }
    }
}
