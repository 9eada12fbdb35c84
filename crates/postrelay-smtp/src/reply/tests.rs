use super::*;

type Parsed = Result<Option<(Reply, usize)>, ReplyError>;

fn ok(r: Reply, consumed: usize) -> Parsed {
    Ok(Some((r, consumed)))
}

fn r(code: u16, enhanced: &str, lines: &[&str]) -> Reply {
    Reply::multi(code, enhanced, lines.iter().copied())
}

#[test]
fn enhanced_code_table() {
    let cases = [
        ("2.0.0", Some(EnhancedCode::new(2, 0, 0))),
        ("5.1.1", Some(EnhancedCode::new(5, 1, 1))),
        ("4.7.999", Some(EnhancedCode::new(4, 7, 999))),
        ("5.001.10", Some(EnhancedCode::new(5, 1, 10))),
        ("3.0.0", None),
        ("5.1", None),
        ("5.1.1.1", None),
        ("5.1.1000", None),
        ("5..1", None),
        ("5.a.1", None),
        (" 5.1.1", None),
        ("5.+1.1", None),
        ("", None),
    ];
    for (input, expected) in cases {
        assert_eq!(EnhancedCode::parse(input), expected, "{input:?}");
    }
    assert_eq!(EnhancedCode::new(5, 7, 26).to_string(), "5.7.26");
}

#[test]
fn parse_table() {
    let cases: Vec<(&[u8], Parsed)> = vec![
        (b"", Ok(None)),
        (b"2", Ok(None)),
        (b"250", Ok(None)),
        (b"250 OK", Ok(None)),
        (b"250 OK\r", Ok(None)),
        (b"250 OK\r\n", ok(r(250, "", &["OK"]), 8)),
        (b"250 OK\r\n250 next", ok(r(250, "", &["OK"]), 8)),
        (b"250\r\n", ok(r(250, "", &[""]), 5)),
        (b"250 \r\n", ok(r(250, "", &[""]), 6)),
        (b"250 2.1.0 Ok\r\n", ok(r(250, "2.1.0", &["Ok"]), 14)),
        (b"250 2.1.0\r\n", ok(r(250, "2.1.0", &[""]), 11)),
        (b"250 2.1.0  two spaces\r\n", ok(r(250, "2.1.0", &[" two spaces"]), 23)),
        // Class must match the reply code's first digit.
        (b"550 2.1.0 odd\r\n", ok(r(550, "", &["2.1.0 odd"]), 15)),
        (b"250 2.1.0x Ok\r\n", ok(r(250, "", &["2.1.0x Ok"]), 15)),
        (
            b"250-mx.example.com\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
            ok(r(250, "", &["mx.example.com", "PIPELINING", "SIZE 1000"]), 51),
        ),
        (
            b"550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 See https://support.example/answer\r\n",
            ok(
                r(550, "5.1.1", &["The email account that you tried to reach does not exist.", "See https://support.example/answer"]),
                115,
            ),
        ),
        // Enhanced code only on the first line: the others keep their text.
        (b"451-4.3.0 first\r\n451 second\r\n", ok(r(451, "4.3.0", &["first", "second"]), 29)),
        // LF-only line ends are tolerated.
        (b"220 mx ESMTP\n", ok(r(220, "", &["mx ESMTP"]), 13)),
        (b"250-a\n250 b\r\n", ok(r(250, "", &["a", "b"]), 13)),
        (b"250-a\r\n", Ok(None)),
        (b"250-a\r\n25", Ok(None)),
        (b"250 caf\xc3\xa9 \xff\r\n", ok(r(250, "", &["café \u{fffd}"]), 13)),
        (b"354 End data with <CR><LF>.<CR><LF>\r\n", ok(r(354, "", &["End data with <CR><LF>.<CR><LF>"]), 37)),
        // Errors, including those detectable before the line ends.
        (b"abc\r\n", Err(ReplyError::BadCode)),
        (b"x", Err(ReplyError::BadCode)),
        (b"25x", Err(ReplyError::BadCode)),
        (b"650 no\r\n", Err(ReplyError::BadCode)),
        (b"25\r\n", Err(ReplyError::BadCode)),
        (b"250:OK\r\n", Err(ReplyError::BadSeparator)),
        (b"250x", Err(ReplyError::BadSeparator)),
        (b"250-a\r\n251 b\r\n", Err(ReplyError::MismatchedCode { expected: 250, found: 251 })),
        (b"250-a\r\n251 ", Err(ReplyError::MismatchedCode { expected: 250, found: 251 })),
        (b"250-a\r\nxyz", Err(ReplyError::BadCode)),
    ];
    for (input, expected) in cases {
        assert_eq!(
            parse_reply(input, 100),
            expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn limits() {
    let line = format!("250 {}\r\n", "x".repeat(96));
    assert!(parse_reply(line.as_bytes(), 100).unwrap().is_some());
    let line = format!("250 {}\r\n", "x".repeat(97));
    assert_eq!(
        parse_reply(line.as_bytes(), 100),
        Err(ReplyError::LineTooLong)
    );
    // An endless line is refused before its end arrives.
    let partial = format!("250 {}", "x".repeat(200));
    assert_eq!(
        parse_reply(partial.as_bytes(), 100),
        Err(ReplyError::LineTooLong)
    );
    let many = "250-x\r\n".repeat(MAX_REPLY_LINES) + "250 x\r\n";
    assert_eq!(
        parse_reply(many.as_bytes(), 100),
        Err(ReplyError::TooManyLines)
    );
    let enough = "250-x\r\n".repeat(MAX_REPLY_LINES - 1) + "250 x\r\n";
    assert!(parse_reply(enough.as_bytes(), 100).unwrap().is_some());
}

#[test]
fn encode_table() {
    let cases: Vec<(Reply, &str)> = vec![
        (Reply::new(250, "2.0.0", "Ok"), "250 2.0.0 Ok\r\n"),
        (Reply::new(221, "", "Bye"), "221 Bye\r\n"),
        (
            Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"),
            "354 End data with <CR><LF>.<CR><LF>\r\n",
        ),
        (
            Reply::multi(250, "", ["mx.example", "PIPELINING", "8BITMIME"]),
            "250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
        ),
        (
            Reply::multi(550, "5.7.1", ["Rejected", "see policy"]),
            "550-5.7.1 Rejected\r\n550 5.7.1 see policy\r\n",
        ),
        (Reply::new(500, "5.5.2", "a\r\nb"), "500 5.5.2 a  b\r\n"),
        (Reply::new(451, "4.7.999", "x"), "451 4.7.999 x\r\n"),
        (Reply::new(554, "5.10.0", ""), "554 5.10.0 \r\n"),
        (Reply::new(101, "", "start"), "101 start\r\n"),
        (
            Reply {
                code: 250,
                enhanced: None,
                lines: vec![],
            },
            "250 \r\n",
        ),
    ];
    for (reply, wire) in cases {
        assert_eq!(String::from_utf8(reply.encode()).unwrap(), wire);
        // encode_into appends, leaving what the buffer held.
        let mut buf = b"queued\r\n".to_vec();
        reply.encode_into(&mut buf);
        assert_eq!(buf, [b"queued\r\n", wire.as_bytes()].concat());
        // encode_parts writes the same from the parts alone.
        let mut parts = b"queued\r\n".to_vec();
        let enhanced = reply.enhanced.map(|e| e.to_string()).unwrap_or_default();
        Reply::encode_parts(&mut parts, reply.code, &enhanced, &reply.lines);
        assert_eq!(parts, buf);
    }
}

#[test]
fn display_and_classes() {
    let reply = Reply::multi(550, "5.1.1", ["No such user", "bye\r\x1b[2J"]);
    assert_eq!(
        reply.to_string(),
        "550 5.1.1 No such user / bye\\r\\u{1b}[2J"
    );
    assert!(reply.is_permanent() && !reply.is_transient() && !reply.is_positive_completion());
    assert_eq!(Reply::new(221, "", "Bye").to_string(), "221 Bye");
    assert!(Reply::new(451, "4.3.0", "later").is_transient());
    assert!(Reply::new(250, "", "ok").is_positive_completion());
    assert!(Reply::new(354, "", "go").is_positive_intermediate());
    assert_eq!(reply.text(), "No such user bye\r\x1b[2J");
}
