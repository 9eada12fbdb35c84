//! Table tests of the transport map.

use super::*;

const TRANSPORT: &str = "\
# lookup order
alice@example.com      local:
example.com            relay:backup
.example.com           smtp:[sub.gw.example]:2525
.com                   relay:billing
*                      relay:ses
";

#[test]
fn transport_lookup_order() {
    let t = transport(TRANSPORT);
    let cases = [
        ("alice@example.com", Some(2)),
        ("ALICE@Example.COM", Some(2)),
        ("bob@example.com", Some(3)),
        ("bob@a.example.com", Some(4)),
        ("bob@b.a.example.com", Some(4)),
        ("bob@other.com", Some(5)),
        ("bob@example.org", Some(6)),
    ];
    for (address, line) in cases {
        assert_eq!(t.lookup(address, true).map(|e| e.line), line, "{address}");
    }
    // Without wildcards (local domains): address and domain only.
    assert_eq!(t.lookup("bob@example.org", false), None);
    assert_eq!(t.lookup("bob@a.example.com", false), None);
    assert_eq!(t.lookup("bob@example.com", false).map(|e| e.line), Some(3));
    // `.domain` does not match the domain itself.
    let t = transport(".example.com relay:ses\n");
    assert_eq!(t.lookup("x@example.com", true), None);
    assert!(t.lookup("x@www.example.com", true).is_some());
}

#[test]
fn transport_targets() {
    let cases: &[(&str, Target)] = &[
        ("local:", Target::Local),
        ("LOCAL:", Target::Local),
        ("relay:ses", Target::Relay("ses".into())),
        ("discard:", Target::Discard),
        (
            "smtp:[mail.example.net]:587",
            Target::Smtp {
                host: "mail.example.net".into(),
                port: 587,
            },
        ),
        (
            "smtp:Mail.Example.NET:2525",
            Target::Smtp {
                host: "mail.example.net".into(),
                port: 2525,
            },
        ),
        (
            "smtp:[mail.example.net]",
            Target::Smtp {
                host: "mail.example.net".into(),
                port: 25,
            },
        ),
        (
            "smtp:mail.example.net",
            Target::Smtp {
                host: "mail.example.net".into(),
                port: 25,
            },
        ),
        (
            "smtp:[192.0.2.7]:26",
            Target::Smtp {
                host: "192.0.2.7".into(),
                port: 26,
            },
        ),
        (
            "smtp:[IPv6:2001:DB8::1]:25",
            Target::Smtp {
                host: "2001:db8::1".into(),
                port: 25,
            },
        ),
        (
            "smtp:[2001:db8::1]",
            Target::Smtp {
                host: "2001:db8::1".into(),
                port: 25,
            },
        ),
        (
            "error:5.1.1 no such user here",
            Target::Error {
                status: "5.1.1".into(),
                text: "no such user here".into(),
            },
        ),
        (
            "error:4.3.0 try later",
            Target::Error {
                status: "4.3.0".into(),
                text: "try later".into(),
            },
        ),
        (
            "error:this domain is gone",
            Target::Error {
                status: "5.0.0".into(),
                text: "this domain is gone".into(),
            },
        ),
        (
            "error:5.7.1",
            Target::Error {
                status: "5.7.1".into(),
                text: "mail to this address is not accepted".into(),
            },
        ),
    ];
    for (value, want) in cases {
        let t = transport(&format!("example.com {value}\n"));
        let got = &t.lookup("x@example.com", true).unwrap().target;
        assert_eq!(got, want, "{value}");
    }
    // Continuation lines join the value.
    let t = transport("example.com error:5.1.2\n   this domain\n\tis gone\n");
    assert_eq!(
        t.lookup("x@example.com", true).unwrap().target,
        Target::Error {
            status: "5.1.2".into(),
            text: "this domain is gone".into()
        }
    );
}

#[test]
fn transport_errors_name_the_line() {
    let cases: &[(&str, usize, &[&str])] = &[
        (
            "a.example relay:nope",
            1,
            &[
                "no [[relay]] named \"nope\"",
                "\"ses\", \"backup\", \"billing\"",
            ],
        ),
        (
            "# c\n\na.example relay:",
            3,
            &["needs the name of a [[relay]]"],
        ),
        (
            "a.example relay:[smtp.example.net]:587",
            1,
            &["smtp:[smtp.example.net]:587"],
        ),
        (
            "a.example :[gw.example]",
            1,
            &["default transport", "smtp:[gw.example]"],
        ),
        ("a.example :", 1, &["not supported"]),
        ("a.example smtp:", 1, &["MX", "never"]),
        ("a.example smtp:[a.example]:0", 1, &["port number"]),
        ("a.example smtp:[a.example]:x", 1, &["port number"]),
        ("a.example smtp:[a.example", 1, &["without its ']'"]),
        (
            "a.example smtp:2001:db8::1",
            1,
            &["IPv6 address in brackets"],
        ),
        (
            "a.example smtp:[a.example]:25,[b.example]:25",
            1,
            &["one next hop"],
        ),
        ("a.example smtp:bad_host.example", 1, &["not a host name"]),
        ("a.example local:somewhere", 1, &["takes no next hop"]),
        ("a.example local", 1, &["write \"local:\""]),
        ("a.example discard:why", 1, &["discard:"]),
        (
            "a.example lmtp:unix:/run/lmtp",
            1,
            &["\"lmtp\" is not available"],
        ),
        ("a.example retry:4.3.0 x", 1, &["error:4.x.y"]),
        ("a.example error:2.0.0 ok", 1, &["only 4 (defer) or 5"]),
        ("a.example error:5.1 x", 1, &["not an enhanced status code"]),
        (
            "a.example error:550 5.1.1 x",
            1,
            &["not an enhanced status code"],
        ),
        ("a.example error:5.1.1 caf\u{e9}", 1, &["printable ASCII"]),
        ("a.example", 1, &["has no target"]),
        ("@a.example relay:ses", 1, &["\"a.example\" for the domain"]),
        ("a..example relay:ses", 1, &["not a domain name"]),
        (
            "a.example relay:ses\nA.EXAMPLE relay:backup",
            2,
            &["listed again (first on line 1)"],
        ),
        ("  a.example relay:ses", 1, &["continues the entry above"]),
    ];
    for (text, line, words) in cases {
        let e = TransportMap::parse(text, Path::new("/t"), &relays()).unwrap_err();
        assert_eq!(e.line, *line, "{text:?}: {}", e.message);
        for w in *words {
            assert!(
                e.message.contains(w),
                "{text:?}: {:?} lacks {w:?}",
                e.message
            );
        }
    }
    let e = TransportMap::parse("* relay:ses", Path::new("/t"), &[]).unwrap_err();
    assert!(
        e.message.contains("no [[relay]] is configured"),
        "{}",
        e.message
    );
}
