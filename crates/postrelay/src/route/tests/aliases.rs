//! Table tests of the aliases file: syntax, errors, expansion.

use super::*;

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

/// The router of [`alias_expansion`] and [`alias_loops_end_with_a_warning`].
fn alias_router() -> Router {
    router(Tables {
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
    })
}

#[test]
fn alias_expansion() {
    let r = alias_router();
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
}

/// Loops end in the local user, with a warning; never recursion.
#[test]
fn alias_loops_end_with_a_warning() {
    let r = alias_router();
    let h = |u: &str| format!("{u}@{HOST}");
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
