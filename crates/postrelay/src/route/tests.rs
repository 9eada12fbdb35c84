//! Table tests of the router's decisions and the documented examples; the
//! tables and the header rewriter have their own files under `tests/`.

mod aliases;
mod header;
mod local;
mod transport;

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
    // A relayed address (no alias can apply) comes back as one
    // destination, as a local one does: domain lower-cased, local part
    // as given.
    assert_eq!(
        routes(&r, "Bob@Example.COM"),
        [("Bob@example.com".into(), relay(None))]
    );
    assert_eq!(
        routes(&r, "Root@LocalHost"),
        [("Root@localhost".into(), local("root"))]
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
