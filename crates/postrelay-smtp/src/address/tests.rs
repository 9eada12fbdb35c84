use super::*;

fn mb(local: &str, domain: &str) -> Mailbox {
    Mailbox {
        local: local.to_owned(),
        domain: domain.to_owned(),
    }
}

#[test]
fn mailbox_table() {
    let long_local = "a".repeat(65);
    let max_local = "a".repeat(64);
    let long_label = format!("{}.com", "b".repeat(64));
    let max_label = format!("{}.com", "b".repeat(63));
    let long_domain = [
        "c".repeat(63),
        "c".repeat(63),
        "c".repeat(63),
        "c".repeat(63),
        "c".repeat(3),
    ]
    .join(".");
    let max_domain = [
        "c".repeat(63),
        "c".repeat(63),
        "c".repeat(63),
        "c".repeat(63),
    ]
    .join(".");
    let long_path = format!(
        "{}@{}",
        "a".repeat(60),
        "d".repeat(50) + "." + &"d".repeat(60) + "." + &"d".repeat(60) + "." + &"d".repeat(30)
    );
    let cases: Vec<(&str, Result<Mailbox, AddressError>)> = vec![
        ("user@example.com", Ok(mb("user", "example.com"))),
        (
            "User.Name+tag@Example.COM",
            Ok(mb("User.Name+tag", "Example.COM")),
        ),
        ("!#$%&'*+-/=?^_`{|}~@x", Ok(mb("!#$%&'*+-/=?^_`{|}~", "x"))),
        (
            "\"john doe\"@example.com",
            Ok(mb("john doe", "example.com")),
        ),
        ("\"john\"@example.com", Ok(mb("john", "example.com"))),
        (
            "\"a\\\"b\\\\c\"@example.com",
            Ok(mb("a\"b\\c", "example.com")),
        ),
        ("\"a@b\"@example.com", Ok(mb("a@b", "example.com"))),
        ("\"\"@example.com", Ok(mb("", "example.com"))),
        ("\".dot\"@example.com", Ok(mb(".dot", "example.com"))),
        ("user@[192.0.2.1]", Ok(mb("user", "[192.0.2.1]"))),
        (
            "user@[IPv6:2001:db8::1]",
            Ok(mb("user", "[IPv6:2001:db8::1]")),
        ),
        ("user@[ipv6:::1]", Ok(mb("user", "[ipv6:::1]"))),
        ("用户@例子.广告", Ok(mb("用户", "例子.广告"))),
        ("jöhn@bücher.de", Ok(mb("jöhn", "bücher.de"))),
        ("user@localhost", Ok(mb("user", "localhost"))),
        ("user@a-b.c0", Ok(mb("user", "a-b.c0"))),
        (max_local.as_str(), Err(AddressError::MissingDomain)),
        ("", Err(AddressError::Empty)),
        ("user", Err(AddressError::MissingDomain)),
        ("user@", Err(AddressError::DomainEmpty)),
        ("@example.com", Err(AddressError::LocalPartEmpty)),
        (".user@x", Err(AddressError::LocalPartDots)),
        ("user.@x", Err(AddressError::LocalPartDots)),
        ("us..er@x", Err(AddressError::LocalPartDots)),
        ("us er@x", Err(AddressError::LocalPartInvalidChar(' '))),
        ("us\"er@x", Err(AddressError::LocalPartInvalidChar('"'))),
        ("a(b)@x", Err(AddressError::LocalPartInvalidChar('('))),
        ("\"abc@x", Err(AddressError::UnterminatedQuote)),
        ("\"abc\\", Err(AddressError::UnterminatedQuote)),
        ("\"a\tb\"@x", Err(AddressError::LocalPartInvalidChar('\t'))),
        (
            "\"a\\\tb\"@x",
            Err(AddressError::LocalPartInvalidChar('\t')),
        ),
        ("\"a\"b@x", Err(AddressError::LocalPartInvalidChar('b'))),
        (
            "a\u{0}b@x",
            Err(AddressError::LocalPartInvalidChar('\u{0}')),
        ),
        ("a@b@c", Err(AddressError::DomainInvalidChar('@'))),
        (
            "user@exa_mple.com",
            Err(AddressError::DomainInvalidChar('_')),
        ),
        ("user@example.com.", Err(AddressError::DomainLabelEmpty)),
        ("user@.example.com", Err(AddressError::DomainLabelEmpty)),
        ("user@exa..mple", Err(AddressError::DomainLabelEmpty)),
        ("user@-example.com", Err(AddressError::DomainLabelHyphen)),
        ("user@example-.com", Err(AddressError::DomainLabelHyphen)),
        ("user@[192.0.2.256]", Err(AddressError::BadAddressLiteral)),
        ("user@[192.0.2.1", Err(AddressError::BadAddressLiteral)),
        (
            "user@[IPv6:192.0.2.1]",
            Err(AddressError::BadAddressLiteral),
        ),
        ("user@[2001:db8::1]", Err(AddressError::BadAddressLiteral)),
        ("user@[x-tag:foo]", Err(AddressError::BadAddressLiteral)),
        ("user@[]", Err(AddressError::BadAddressLiteral)),
    ];
    for (input, expected) in cases {
        assert_eq!(Mailbox::parse(input), expected, "{input:?}");
    }
    let sized: Vec<(String, Result<(), AddressError>)> = vec![
        (format!("{max_local}@x"), Ok(())),
        (
            format!("{long_local}@x"),
            Err(AddressError::LocalPartTooLong),
        ),
        (
            format!("\"{}\"@x", "a".repeat(63)),
            Err(AddressError::LocalPartTooLong),
        ),
        (format!("u@{max_label}"), Ok(())),
        (
            format!("u@{long_label}"),
            Err(AddressError::DomainLabelTooLong),
        ),
        (format!("u@{long_domain}"), Err(AddressError::DomainTooLong)),
        // A 255-octet domain is fine on its own but leaves no room in a path.
        (format!("u@{max_domain}"), Err(AddressError::PathTooLong)),
        (long_path.clone(), Err(AddressError::PathTooLong)),
    ];
    for (input, expected) in sized {
        assert_eq!(Mailbox::parse(&input).map(|_| ()), expected, "{input:?}");
    }
    // 254 octets of mailbox fit a 256-octet path exactly.
    let fits = format!(
        "{}@{}.{}.{}.{}",
        "a".repeat(64),
        "d".repeat(63),
        "d".repeat(63),
        "d".repeat(58),
        "dd"
    );
    assert_eq!(fits.len(), 254);
    assert!(Mailbox::parse(&fits).is_ok());
    assert_eq!(
        Mailbox::parse(&format!("{fits}d")),
        Err(AddressError::PathTooLong)
    );
}

#[test]
fn display_quotes_when_needed() {
    let cases = [
        ("user@example.com", "user@example.com"),
        ("\"user\"@example.com", "user@example.com"),
        ("\"john doe\"@example.com", "\"john doe\"@example.com"),
        ("\"a\\\"b\"@x", "\"a\\\"b\"@x"),
        ("\"a\\b\"@x", "ab@x"),
        ("\"a..b\"@x", "\"a..b\"@x"),
        ("\"\"@x", "\"\"@x"),
        ("user@[IPv6:::1]", "user@[IPv6:::1]"),
    ];
    for (input, shown) in cases {
        let m = Mailbox::parse(input).unwrap();
        assert_eq!(m.to_string(), shown, "{input:?}");
        let address = m.to_address();
        assert_eq!(address, shown, "{input:?}");
        assert_eq!(
            address.capacity(),
            address.len(),
            "{input:?}: allocated once"
        );
        assert_eq!(Mailbox::parse(shown), Ok(m));
    }
}

#[test]
fn accessors() {
    let m = Mailbox::parse("Joe@Example.COM").unwrap();
    assert_eq!(m.local_part(), "Joe");
    assert_eq!(m.domain(), "Example.COM");
    assert_eq!(m.domain_lowercase(), "example.com");
    assert!(m.is_ascii());
    assert!(!m.is_address_literal());
    let u = Mailbox::parse("jöhn@BÜCHER.de").unwrap();
    assert!(!u.is_ascii());
    assert_eq!(u.domain_lowercase(), "bücher.de");
    assert!(!Mailbox::parse("x@例子.广告").unwrap().is_ascii());
    assert!(
        Mailbox::parse("x@[192.0.2.1]")
            .unwrap()
            .is_address_literal()
    );
}

#[test]
fn from_parts() {
    assert_eq!(
        Mailbox::from_parts("john doe", "x.org"),
        Ok(mb("john doe", "x.org"))
    );
    assert_eq!(
        Mailbox::from_parts("a\rb", "x.org"),
        Err(AddressError::LocalPartInvalidChar('\r'))
    );
    assert_eq!(
        Mailbox::from_parts("a", "x..org"),
        Err(AddressError::DomainLabelEmpty)
    );
    assert_eq!(
        Mailbox::from_parts(&"a".repeat(63), "x"),
        Ok(mb(&"a".repeat(63), "x"))
    );
    // Needs quoting: 63 characters become 65 octets on the wire.
    assert_eq!(
        Mailbox::from_parts(&format!("{} ", "a".repeat(62)), "x"),
        Err(AddressError::LocalPartTooLong)
    );
}

#[test]
fn reverse_path_table() {
    let cases: Vec<(&str, Result<ReversePath, AddressError>)> = vec![
        ("<>", Ok(ReversePath::Null)),
        ("<a@b>", Ok(ReversePath::Mailbox(mb("a", "b")))),
        (
            "<@relay.example:a@b>",
            Ok(ReversePath::Mailbox(mb("a", "b"))),
        ),
        (
            "<@r1,@r2.example,@[192.0.2.1]:a@b>",
            Ok(ReversePath::Mailbox(mb("a", "b"))),
        ),
        ("<@[IPv6:::1]:a@b>", Ok(ReversePath::Mailbox(mb("a", "b")))),
        ("<\"x y\"@b>", Ok(ReversePath::Mailbox(mb("x y", "b")))),
        ("", Err(AddressError::Empty)),
        ("a@b", Err(AddressError::MissingAngleBrackets)),
        ("<a@b", Err(AddressError::MissingAngleBrackets)),
        ("a@b>", Err(AddressError::MissingAngleBrackets)),
        ("<", Err(AddressError::MissingAngleBrackets)),
        ("< a@b>", Err(AddressError::LocalPartInvalidChar(' '))),
        ("<a@b >", Err(AddressError::DomainInvalidChar(' '))),
        ("<<a@b>>", Err(AddressError::LocalPartInvalidChar('<'))),
        ("<@relay:>", Err(AddressError::BadSourceRoute)),
        ("<@relay a@b>", Err(AddressError::BadSourceRoute)),
        ("<@:a@b>", Err(AddressError::BadSourceRoute)),
        ("<@r1,r2:a@b>", Err(AddressError::BadSourceRoute)),
        ("<@bad_domain:a@b>", Err(AddressError::BadSourceRoute)),
        ("<@[1.2.3]:a@b>", Err(AddressError::BadSourceRoute)),
        ("<postmaster>", Err(AddressError::MissingDomain)),
    ];
    for (input, expected) in cases {
        assert_eq!(ReversePath::parse(input), expected, "{input:?}");
    }
    let long = format!(
        "<@{}:a@b>",
        [
            "r".repeat(60),
            "r".repeat(60),
            "r".repeat(60),
            "r".repeat(60),
            "r".repeat(6)
        ]
        .join(".")
    );
    assert_eq!(long.len(), 257);
    assert_eq!(ReversePath::parse(&long), Err(AddressError::PathTooLong));
}

#[test]
fn forward_path_table() {
    let cases: Vec<(&str, Result<ForwardPath, AddressError>)> = vec![
        ("<Postmaster>", Ok(ForwardPath::Postmaster)),
        ("<postmaster>", Ok(ForwardPath::Postmaster)),
        ("<POSTMASTER>", Ok(ForwardPath::Postmaster)),
        ("<@relay:Postmaster>", Ok(ForwardPath::Postmaster)),
        (
            "<postmaster@example.com>",
            Ok(ForwardPath::Mailbox(mb("postmaster", "example.com"))),
        ),
        ("<a@b>", Ok(ForwardPath::Mailbox(mb("a", "b")))),
        ("<>", Err(AddressError::NullNotAllowed)),
        (
            "<postmaster >",
            Err(AddressError::LocalPartInvalidChar(' ')),
        ),
        ("<\"Postmaster\">", Err(AddressError::MissingDomain)),
    ];
    for (input, expected) in cases {
        assert_eq!(ForwardPath::parse(input), expected, "{input:?}");
    }
}

#[test]
fn path_display() {
    assert_eq!(ReversePath::Null.to_string(), "<>");
    assert_eq!(ForwardPath::Postmaster.to_string(), "<Postmaster>");
    assert_eq!(
        ReversePath::parse("<@r:\"a b\"@c>").unwrap().to_string(),
        "<\"a b\"@c>"
    );
    assert_eq!(ReversePath::Null.mailbox(), None);
    assert_eq!(
        ForwardPath::parse("<a@b>").unwrap().mailbox(),
        Some(&mb("a", "b"))
    );
}

#[test]
fn path_len_table() {
    let cases: &[(&str, Option<usize>)] = &[
        ("<a@b> SIZE=1", Some(5)),
        ("<> x", Some(2)),
        ("<\"a>b\"@c> x", Some(9)),
        ("<\"a\\\">\"@c>", Some(10)),
        ("<\"a>", None),
        ("<a@b", None),
        ("a@b>", None),
        ("", None),
    ];
    for (input, expected) in cases {
        assert_eq!(path_len(input), *expected, "{input:?}");
    }
}

#[test]
fn error_messages_say_what_is_wrong() {
    assert_eq!(
        AddressError::LocalPartTooLong.to_string(),
        "local part longer than 64 octets"
    );
    assert_eq!(
        AddressError::LocalPartInvalidChar('\r').to_string(),
        "invalid character '\\r' in local part"
    );
    assert_eq!(
        AddressError::PathTooLong.to_string(),
        "path longer than 256 octets"
    );
}
