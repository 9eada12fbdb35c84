//! Table tests of the routing tables, the router and the header rewriter.

mod local;

use std::path::Path;

use super::*;

const HOST: &str = "myhost.example";
const LOCAL: [&str; 2] = ["localhost", HOST];
const RELAYS: [&str; 3] = ["ses", "backup", "billing"];

fn relays() -> Vec<String> {
    RELAYS.map(String::from).to_vec()
}

fn transport(text: &str) -> TransportMap {
    TransportMap::parse(text, Path::new("/t/transport"), &relays())
        .unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
}

fn aliases(text: &str) -> Aliases {
    Aliases::parse(text, Path::new("/t/aliases")).unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
}

#[derive(Default)]
struct Tables<'a> {
    transport: Option<&'a str>,
    aliases: Option<&'a str>,
    sender_relay: Option<&'a str>,
    generic: Option<&'a str>,
    rewrite_senders: Option<&'a str>,
}

fn router(t: Tables<'_>) -> Router {
    let settings = RoutingSettings {
        transport: t.transport.map(transport),
        aliases: t.aliases.map(aliases),
        sender_relay: t
            .sender_relay
            .map(|s| SenderRelayMap::parse(s, Path::new("/t/sender_relay"), &relays()).unwrap()),
        generic: t
            .generic
            .map(|s| GenericMap::parse(s, Path::new("/t/generic")).unwrap()),
        rewrite_senders: t.rewrite_senders.map(String::from),
    };
    Router::new(&settings, &LOCAL.map(String::from), HOST, &relays())
}

fn local(user: &str) -> Route {
    Route::Local { user: user.into() }
}

fn relay(name: Option<&str>) -> Route {
    Route::Relay {
        name: name.map(String::from),
    }
}

/// `(address, route)` of each destination.
fn routes(r: &Router, recipient: &str) -> Vec<(String, Route)> {
    r.route(recipient)
        .into_iter()
        .map(|d| {
            assert_eq!(d.original, recipient);
            (d.address, d.route)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Transport map

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

// ---------------------------------------------------------------------------
// Aliases

/// Debian's /etc/aliases as shipped (older releases had the longer list).
const DEBIAN_ALIASES: &str = "\
# See man 5 aliases for format
postmaster:    root
";

const DEBIAN_OLD_ALIASES: &str = "\
# /etc/aliases
mailer-daemon: postmaster
postmaster: root
nobody: root
hostmaster: root
usenet: root
news: root
webmaster: root
www: root
ftp: root
abuse: root
noc: root
security: root
";

#[test]
fn debian_aliases_load() {
    let a = aliases(DEBIAN_ALIASES);
    assert_eq!(a.len(), 1);
    assert_eq!(
        a.get("PostMaster").unwrap().targets,
        [AliasTarget::Name("root".into())]
    );
    let a = aliases(DEBIAN_OLD_ALIASES);
    assert_eq!(a.len(), 12);
    let r = router(Tables {
        aliases: Some(DEBIAN_OLD_ALIASES),
        ..Tables::default()
    });
    assert_eq!(
        routes(&r, "MAILER-DAEMON@localhost"),
        [(format!("root@{HOST}"), local("root"))]
    );
}

#[test]
fn alias_syntax() {
    let a = aliases(
        "team: Alice, bob@Example.COM,\n  \\carol , \"dave\"\nquoted: \"x, y\"@example.com\n\"Ops\": root\n",
    );
    assert_eq!(
        a.get("team").unwrap().targets,
        [
            AliasTarget::Name("alice".into()),
            AliasTarget::Address("bob@example.com".into()),
            AliasTarget::Mailbox("carol".into()),
            AliasTarget::Name("dave".into()),
        ]
    );
    assert_eq!(
        a.get("quoted").unwrap().targets,
        [AliasTarget::Address("\"x, y\"@example.com".into())]
    );
    assert_eq!(a.get("ops").unwrap().line, 4);
    // A trailing comma is harmless; duplicates within a line are merged.
    let a = aliases("a: b, b,\n");
    assert_eq!(a.get("a").unwrap().targets, [AliasTarget::Name("b".into())]);
}

#[test]
fn alias_errors_name_the_line() {
    let unsupported = "not supported: postrelay does not run programs or write files for aliases";
    let cases: &[(&str, usize, &[&str])] = &[
        (
            "postmaster: root\nlogs: |/usr/bin/logger",
            2,
            &[unsupported, "runs a program"],
        ),
        ("a: root, \"|/usr/bin/procmail -f-\"", 1, &[unsupported]),
        (
            "a: root\n\nb: /var/log/mail.archive",
            3,
            &[unsupported, "appends to a file"],
        ),
        (
            "list: :include:/etc/mail/list",
            1,
            &[unsupported, "reads a list"],
        ),
        ("list: :INCLUDE:/etc/mail/list", 1, &[unsupported]),
        ("a: b\n  , |cmd", 1, &[unsupported]),
        ("root admin", 1, &["no ':'"]),
        (": root", 1, &["no alias name"]),
        ("root@example.com: admin", 1, &["local parts", "\"root:\""]),
        ("a:", 1, &["has no target"]),
        ("a: b,,c", 1, &["empty target"]),
        ("a: \"b", 1, &["closing"]),
        ("a: b c", 1, &["not a local name"]),
        ("a: b@", 1, &["not an address"]),
        ("a: b\nA: c", 2, &["defined again (first on line 1)"]),
    ];
    for (text, line, words) in cases {
        let e = Aliases::parse(text, Path::new("/t")).unwrap_err();
        assert_eq!(e.line, *line, "{text:?}: {}", e.message);
        for w in *words {
            assert!(
                e.message.contains(w),
                "{text:?}: {:?} lacks {w:?}",
                e.message
            );
        }
    }
}

#[test]
fn alias_expansion() {
    let r = router(Tables {
        aliases: Some(
            "\
root: admin@example.com, alice
postmaster: root
abuse: postmaster, root, ALICE
keep: \\keep, keep@example.org
loop1: loop2
loop2: loop3, bob
loop3: loop1
self: self, x@example.org
remote: root@localhost, carol@myhost.example
",
        ),
        ..Tables::default()
    });
    let h = |u: &str| format!("{u}@{HOST}");
    let cases: Vec<(&str, Vec<(String, Route)>)> = vec![
        (
            "root@localhost",
            vec![
                ("admin@example.com".into(), relay(None)),
                (h("alice"), local("alice")),
            ],
        ),
        (
            "Root@MyHost.Example",
            vec![
                ("admin@example.com".into(), relay(None)),
                (h("alice"), local("alice")),
            ],
        ),
        (
            "root",
            vec![
                ("admin@example.com".into(), relay(None)),
                (h("alice"), local("alice")),
            ],
        ),
        // Chains, with duplicates removed (alice thrice, root twice).
        (
            "abuse@localhost",
            vec![
                ("admin@example.com".into(), relay(None)),
                (h("alice"), local("alice")),
            ],
        ),
        (
            "keep@localhost",
            vec![
                (h("keep"), local("keep")),
                ("keep@example.org".into(), relay(None)),
            ],
        ),
        // Not a local domain: no alias.
        (
            "root@example.com",
            vec![("root@example.com".into(), relay(None))],
        ),
        // An address target in a local domain is expanded again.
        (
            "remote@localhost",
            vec![
                ("admin@example.com".into(), relay(None)),
                (h("alice"), local("alice")),
                (h("carol"), local("carol")),
            ],
        ),
        // No alias: the local user, lower-cased.
        (
            "Nobody@localhost",
            vec![("Nobody@localhost".into(), local("nobody"))],
        ),
    ];
    for (recipient, want) in cases {
        assert_eq!(routes(&r, recipient), want, "{recipient}");
    }

    // Loops end in the local user, with a warning; never recursion.
    let got = r.route("loop1@localhost");
    let summary: Vec<_> = got
        .iter()
        .map(|d| (d.address.as_str(), &d.route, d.warning.is_some()))
        .collect();
    assert_eq!(
        summary,
        [
            (h("loop1").as_str(), &local("loop1"), true),
            (h("bob").as_str(), &local("bob"), false),
        ]
    );
    let warning = got[0].warning.as_deref().unwrap();
    assert!(
        warning.contains("alias loop loop1 → loop2 → loop3 → loop1"),
        "{warning}"
    );
    assert_eq!(got[0].rule.as_deref(), Some("/t/aliases:7"));
    let got = r.route("self@localhost");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].route, local("self"));
    assert!(got[0].warning.as_deref().unwrap().contains("\\self"));
    assert_eq!(got[1].route, relay(None));
    assert_eq!(got[1].rule.as_deref(), Some("/t/aliases:8"));
}

#[test]
fn alias_depth_is_bounded() {
    // a0 → a1 → … → a30: the chain stops at MAX_ALIAS_DEPTH.
    let text: String = (0..30).map(|i| format!("a{i}: a{}\n", i + 1)).collect();
    let r = router(Tables {
        aliases: Some(&text),
        ..Tables::default()
    });
    let got = r.route("a0");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].route, local(&format!("a{MAX_ALIAS_DEPTH}")));
    assert!(
        got[0]
            .warning
            .as_deref()
            .unwrap()
            .contains("deeper than 20")
    );

    // A wide, deep diamond expands each alias once (linear, not 2^20).
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(&format!("d{i}: d{}, e{i}\ne{i}: d{}\n", i + 1, i + 1));
    }
    let r = router(Tables {
        aliases: Some(&text),
        ..Tables::default()
    });
    let got = r.route("d0@localhost");
    assert!(got.len() <= 2, "{got:?}");
}

// ---------------------------------------------------------------------------
// Router decisions

#[test]
fn router_decisions() {
    let r = router(Tables {
        transport: Some(
            "\
gone.example          error:5.1.2 this domain is gone
later.example         error:4.4.1 down for maintenance
noreply.example       discard:
lan.example           smtp:[10.0.0.25]:25
billing.example       relay:billing
example.net           local:
root@localhost        relay:backup
*                     relay:ses
",
        ),
        aliases: Some("root: admin@example.com\npostmaster: root\nstaff: bob@example.net\n"),
        ..Tables::default()
    });
    let cases: Vec<(&str, Vec<(&str, Route)>)> = vec![
        // An explicit address entry beats the alias (Postfix order).
        (
            "root@localhost",
            vec![("root@localhost", relay(Some("backup")))],
        ),
        // The alias, then the `*` entry for the result.
        (
            "root@myhost.example",
            vec![("admin@example.com", relay(Some("ses")))],
        ),
        (
            "postmaster",
            vec![("admin@example.com", relay(Some("ses")))],
        ),
        // `*` never captures local domains.
        (
            "alice@myhost.example",
            vec![("alice@myhost.example", local("alice"))],
        ),
        (
            "bob@example.com",
            vec![("bob@example.com", relay(Some("ses")))],
        ),
        (
            "x@gone.example",
            vec![(
                "x@gone.example",
                Route::Error {
                    status: "5.1.2".into(),
                    text: "this domain is gone".into(),
                },
            )],
        ),
        (
            "x@later.example",
            vec![(
                "x@later.example",
                Route::Error {
                    status: "4.4.1".into(),
                    text: "down for maintenance".into(),
                },
            )],
        ),
        (
            "x@noreply.example",
            vec![("x@noreply.example", Route::Discard)],
        ),
        (
            "x@lan.example",
            vec![(
                "x@lan.example",
                Route::Smtp {
                    host: "10.0.0.25".into(),
                    port: 25,
                },
            )],
        ),
        (
            "x@billing.example",
            vec![("x@billing.example", relay(Some("billing")))],
        ),
        // `local:` for a remote domain: local delivery, with aliases.
        (
            "Carol@Example.NET",
            vec![("Carol@example.net", local("carol"))],
        ),
        ("staff@example.net", vec![("bob@example.net", local("bob"))]),
    ];
    for (recipient, want) in cases {
        let want: Vec<(String, Route)> = want.into_iter().map(|(a, r)| (a.into(), r)).collect();
        assert_eq!(routes(&r, recipient), want, "{recipient}");
    }
    let d = &r.route("x@noreply.example")[0];
    assert_eq!(d.rule.as_deref(), Some("/t/transport:3"));
    let d = &r.route("alice@localhost")[0];
    assert_eq!(d.rule, None);
}

#[test]
fn router_without_tables() {
    let r = router(Tables::default());
    assert_eq!(
        routes(&r, "root@localhost"),
        [("root@localhost".into(), local("root"))]
    );
    assert_eq!(
        routes(&r, "root"),
        [(format!("root@{HOST}"), local("root"))]
    );
    assert_eq!(
        routes(&r, "bob@example.com"),
        [("bob@example.com".into(), relay(None))]
    );
    assert_eq!(r.relay_for_sender("root@localhost"), None);
    assert_eq!(r.rewrite_sender("root@localhost"), None);
    assert!(!r.rewrites_senders());
}

#[test]
fn sender_relay() {
    let r = router(Tables {
        sender_relay: Some("billing@example.com relay:billing\n@example.com relay:backup\n"),
        ..Tables::default()
    });
    let cases = [
        ("billing@example.com", Some("billing")),
        ("Billing@EXAMPLE.com", Some("billing")),
        ("other@example.com", Some("backup")),
        ("x@sub.example.com", None),
        ("x@example.org", None),
        ("", None),
        ("root", None),
    ];
    for (sender, want) in cases {
        assert_eq!(r.relay_for_sender(sender), want, "{sender:?}");
    }
    let errors: &[(&str, &[&str])] = &[
        (
            "a@example.com [smtp.example.com]:587",
            &["names a [[relay]] table", "relay:ses"],
        ),
        ("a@example.com relay:nope", &["no [[relay]] named \"nope\""]),
        ("example.com relay:ses", &["\"@example.com\" for a domain"]),
        ("* relay:ses", &["not a key"]),
        ("@example.com", &["has no value"]),
    ];
    for (text, words) in errors {
        let e = SenderRelayMap::parse(text, Path::new("/t"), &relays()).unwrap_err();
        assert_eq!(e.line, 1);
        for w in *words {
            assert!(
                e.message.contains(w),
                "{text:?}: {:?} lacks {w:?}",
                e.message
            );
        }
    }
}

#[test]
fn sender_rewriting() {
    let r = router(Tables {
        generic: Some(
            "\
root@myhost.example     ops@example.com
@localhost              localhost-mail@example.com
@old.example            @new.example
",
        ),
        rewrite_senders: Some("alerts@example.com"),
        ..Tables::default()
    });
    let cases = [
        // generic entries win over rewrite_senders
        ("root@myhost.example", Some("ops@example.com")),
        ("root", Some("ops@example.com")),
        ("ROOT@MYHOST.EXAMPLE", Some("ops@example.com")),
        ("www-data@localhost", Some("localhost-mail@example.com")),
        ("Jane.Doe@old.example", Some("Jane.Doe@new.example")),
        // rewrite_senders: every other local sender
        ("cron@myhost.example", Some("alerts@example.com")),
        ("daemon", Some("alerts@example.com")),
        // not local: kept
        ("someone@example.org", None),
        ("alerts@example.com", None),
        // the null sender is never rewritten
        ("", None),
    ];
    for (sender, want) in cases {
        assert_eq!(r.rewrite_sender(sender).as_deref(), want, "{sender:?}");
    }
    assert!(r.rewrites_senders());

    // Only the generic map: local senders without an entry are kept.
    let r = router(Tables {
        generic: Some("root@myhost.example ops@example.com\n"),
        ..Tables::default()
    });
    assert_eq!(r.rewrite_sender("cron"), None);

    let errors: &[(&str, &[&str])] = &[
        ("root ops@example.com", &["root@localhost"]),
        ("@localhost alerts", &["complete address"]),
        ("@localhost <alerts@example.com>", &["angle brackets"]),
        ("@localhost @bad..example", &["not a domain name"]),
        ("x@y", &["has no value"]),
    ];
    for (text, words) in errors {
        let e = GenericMap::parse(text, Path::new("/t")).unwrap_err();
        for w in *words {
            assert!(
                e.message.contains(w),
                "{text:?}: {:?} lacks {w:?}",
                e.message
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Header rewriting

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

/// The table examples of docs/config.md parse.
#[test]
fn documented_examples_parse() {
    const DOCS: &str = include_str!("../../../../docs/config.md");
    let relays: Vec<String> = ["ses", "backup", "billing", "org"]
        .map(String::from)
        .to_vec();
    let mut seen = 0;
    for block in DOCS.split("```").skip(1).step_by(2) {
        let block = block.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
        let Some(first) = block.trim_start().lines().next() else {
            continue;
        };
        let path = Path::new("/docs");
        let parsed = if first.starts_with("# /etc/postrelay/transport") {
            TransportMap::parse(block, path, &relays).map(|_| ())
        } else if first.starts_with("# /etc/aliases") {
            Aliases::parse(block, path).map(|_| ())
        } else if first.starts_with("# /etc/postrelay/sender_relay") {
            SenderRelayMap::parse(block, path, &relays).map(|_| ())
        } else if first.starts_with("# /etc/postrelay/generic") {
            GenericMap::parse(block, path).map(|_| ())
        } else {
            continue;
        };
        parsed.unwrap_or_else(|e| panic!("{block}\n{e:?}"));
        seen += 1;
    }
    assert_eq!(seen, 4);
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
