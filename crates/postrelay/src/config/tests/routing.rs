//! `[routing]`: reading the tables at load, locating their errors, render.

use std::path::PathBuf;

use super::super::*;
use super::relay::Files;
use super::{err, ok};
use crate::route::{Route, Router};

const RELAY: &str = "[[relay]]\nname = \"ses\"\nhost = \"smtp.example.com\"\n";

/// Readable table files for the example file's paths, as `(path in the
/// example, file)`.
pub(super) fn example_tables(files: &Files) -> Vec<(&'static str, PathBuf)> {
    vec![
        (
            "/etc/postrelay/transport",
            files.file("transport", "example.com local:\n* relay:ses\n", 0o644),
        ),
        (
            "/etc/aliases",
            files.file(
                "aliases",
                "postmaster: root\nroot: admin@example.com\n",
                0o644,
            ),
        ),
        (
            "/etc/postrelay/sender_relay",
            files.file("sender_relay", "@example.org relay:ses\n", 0o644),
        ),
        (
            "/etc/postrelay/generic",
            files.file("generic", "@localhost alerts@example.com\n", 0o644),
        ),
    ]
}

/// A `[routing]` section with every key, for the full configuration of
/// `relay_tests` (whose relays are "ses", "backup" and "lan").
/// Its tables name no relay, so that it also loads with the relays cut off.
pub(super) fn full_section(files: &Files) -> String {
    let table = |name: &str, content: &str| files.file(name, content, 0o644).display().to_string();
    format!(
        "[routing]\ntransport = \"{}\"\naliases = \"{}\"\nsender_relay = \"{}\"\ngeneric = \"{}\"\nrewrite_senders = \"alerts@example.org\"\n",
        table(
            "transport",
            "example.net local:\n.lan.example smtp:[10.0.0.25]\n"
        ),
        table("aliases", "postmaster: root\n"),
        table("sender_relay", "# no entries yet\n"),
        table("generic", "@localhost alerts@example.org\n"),
    )
}

fn routing_config(files: &Files, tables: &[(&str, &str)], extra: &str) -> String {
    let mut text = String::from("hostname = \"mx.example.org\"\n[routing]\n");
    for (key, content) in tables {
        let path = files.file(key, content, 0o644);
        text.push_str(&format!("{key} = \"{}\"\n", path.display()));
    }
    text.push_str(extra);
    text.push_str(RELAY);
    text
}

#[test]
fn routing_defaults() {
    let c = ok("");
    assert_eq!(c.routing, RoutingSettings::default());
    assert!(c.render().contains("\n[routing]\n# transport: not set\n"));
}

#[test]
fn tables_are_read_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let text = routing_config(
        &files,
        &[
            ("transport", "# t\nexample.net local:\n* relay:ses\n"),
            ("aliases", "postmaster: root\nroot: admin@example.com\n"),
            ("sender_relay", "@example.org relay:ses\n"),
            ("generic", "@localhost alerts@example.com\n"),
        ],
        "rewrite_senders = \"Alerts@Example.COM\"\n",
    );
    let c = ok(&text);
    let r = &c.routing;
    assert_eq!(r.transport.as_ref().unwrap().len(), 2);
    assert_eq!(r.aliases.as_ref().unwrap().len(), 2);
    // As written: local parts are case-sensitive, and so is what the
    // provider verified.
    assert_eq!(r.rewrite_senders.as_deref(), Some("Alerts@Example.COM"));
    assert_eq!(r.relay_names_used(), ["ses", "ses"]);
    let rendered = c.render();
    assert_eq!(ok(&rendered), c, "render:\n{rendered}");
    assert!(rendered.contains(&format!(
        "transport = \"{}\"",
        dir.path().join("transport").display()
    )));

    // The router built from it.
    let names: Vec<String> = c.relays.iter().map(|r| r.name.clone()).collect();
    let router = Router::new(&c.routing, &c.intake.local_domains, &c.hostname, &names);
    let got = router.route("postmaster@localhost");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].address, "admin@example.com");
    assert_eq!(
        got[0].route,
        Route::Relay {
            name: Some("ses".into())
        }
    );
    assert_eq!(router.relay_for_sender("x@example.org"), Some("ses"));
    assert_eq!(
        router.rewrite_sender("root").as_deref(),
        Some("Alerts@Example.COM")
    );

    // A reload re-reads the tables: an edited table gives a different
    // configuration.
    files.file("aliases", "postmaster: root\n", 0o644);
    let reloaded = ok(&text);
    assert_ne!(reloaded, c);
    assert_eq!(reloaded.routing.aliases.as_ref().unwrap().len(), 1);
}

#[test]
fn table_errors_name_the_table_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let d = dir.path().display().to_string();
    let cases: &[(&str, &str, usize, &[&str])] = &[
        (
            "transport",
            "# comment\nexample.com relay:sess\n",
            2,
            &[
                "routing.transport: example.com:",
                "no [[relay]] named \"sess\"",
                "the relays are \"ses\"",
            ],
        ),
        (
            "transport",
            "example.com :[gw.example.com]\n",
            1,
            &["smtp:[gw.example.com]"],
        ),
        (
            "aliases",
            "postmaster: root\n\nbackup: |/usr/local/bin/archive\n",
            3,
            &[
                "routing.aliases: alias \"backup\"",
                "not supported: postrelay does not run programs or write files for aliases",
            ],
        ),
        (
            "sender_relay",
            "@example.org [smtp.example.org]:587\n",
            1,
            &["routing.sender_relay: @example.org:", "relay:ses"],
        ),
        (
            "generic",
            "root alerts@example.com\n",
            1,
            &["routing.generic:", "root@localhost"],
        ),
        (
            "aliases",
            "# caf\u{e9} latin-1 comment is fine\nroot: admin@example.com\nbad: \u{FFFD}\n",
            3,
            &["not UTF-8"],
        ),
    ];
    for (key, content, line, words) in cases {
        let text = routing_config(&files, &[(key, content)], "");
        let want_origin = format!("{d}/{key}");
        match err(&text) {
            ConfigError::Invalid {
                origin,
                key: k,
                line: l,
                message,
            } => {
                assert_eq!(origin, want_origin, "{content:?}: {message}");
                assert_eq!(k, format!("routing.{key}"), "{content:?}");
                assert_eq!(l, Some(*line), "{content:?}: {message}");
                for w in *words {
                    assert!(message.contains(w), "{content:?}: {message:?} lacks {w:?}");
                }
            }
            other => panic!("{content:?}: expected Invalid, got {other:?}"),
        }
    }
    // Displayed as file:line: so editors jump to the table's line.
    let text = routing_config(&files, &[("transport", "\n\nexample.com bogus:\n")], "");
    let shown = err(&text).to_string();
    assert!(
        shown.starts_with(&format!(
            "{d}/transport:3: routing.transport: example.com: "
        )),
        "{shown}"
    );
}

#[test]
fn latin1_comments_are_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let path = dir.path().join("aliases");
    std::fs::write(&path, b"# Fran\xe7ais\npostmaster: root\n").unwrap();
    let text = format!("[routing]\naliases = \"{}\"\n", path.display());
    assert_eq!(ok(&text).routing.aliases.unwrap().len(), 1);
    std::fs::write(&path, b"postmaster: r\xe9mi\n").unwrap();
    let e = err(&text).to_string();
    assert!(e.contains("aliases:1: routing.aliases:"), "{e}");
    assert!(e.contains("not UTF-8"), "{e}");
    let _ = files;
}

#[test]
fn unusable_table_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let cases: Vec<(String, &str, &[&str])> = vec![
        (
            "[routing]\n\ntransport = \"/nonexistent/transport\"\n".into(),
            "routing.transport",
            &[
                "routing.transport /nonexistent/transport does not exist; create it, or remove the setting",
            ],
        ),
        (
            format!("[routing]\n\naliases = \"{d}\"\n"),
            "routing.aliases",
            &["is not a regular file"],
        ),
        (
            "[routing]\n\ngeneric = \"\"\n".into(),
            "routing.generic",
            &["cannot be empty"],
        ),
        (
            "[routing]\n\nrewrite_senders = \"root\"\n".into(),
            "routing.rewrite_senders",
            &["rewrite_senders = \"root\"", "alerts@example.com"],
        ),
        (
            "[routing]\n\nrewrite_senders = \"<alerts@example.com>\"\n".into(),
            "routing.rewrite_senders",
            &["angle brackets"],
        ),
        (
            "[routing]\n\nrewrite_senders = \"\"\n".into(),
            "routing.rewrite_senders",
            &["remove the setting"],
        ),
        (
            "[routing]\n\nalias = \"/etc/aliases\"\n".into(),
            "routing.alias",
            &["did you mean `aliases`?"],
        ),
    ];
    for (text, want_key, words) in cases {
        match err(&text) {
            ConfigError::Invalid {
                origin,
                key,
                line,
                message,
            } => {
                assert_eq!(origin, "t.toml", "{text:?}: {message}");
                assert_eq!(key, want_key, "{text:?}: {message}");
                assert_eq!(line, Some(3), "{text:?}: {message}");
                for w in words {
                    assert!(message.contains(w), "{text:?}: {message:?} lacks {w:?}");
                }
            }
            other => panic!("{text:?}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn unreadable_table_file() {
    // Root reads everything: as root, this runs again as nobody.
    if !crate::test_root::run_unprivileged("config::tests::routing::unreadable_table_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let path = files.file("transport", "* relay:ses\n", 0o000);
    let text = format!("[routing]\ntransport = \"{}\"\n{RELAY}", path.display());
    let e = err(&text).to_string();
    assert!(e.starts_with("t.toml:2: routing.transport "), "{e}");
    assert!(e.contains("permission denied; make it readable"), "{e}");
}

/// `\name` is queued as name@hostname and routed again at delivery: a
/// configuration where that address would leave the host is refused.
#[test]
fn mailbox_aliases_must_stay_local() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let aliases = [(
        "aliases",
        "postmaster: root\nroot: \\root, admin@example.com\n",
    )];
    // By default the host name is a local domain: fine.
    parse(&routing_config(&files, &aliases, ""), "t").unwrap();
    let text = routing_config(
        &files,
        &aliases,
        "[intake]\nlocal_domains = [\"example.net\"]\n",
    );
    let e = parse(&text, "t").unwrap_err().to_string();
    for want in [
        "aliases:2:",
        "\\root delivers to the local mailbox root",
        "root@mx.example.org is not delivered locally",
        "add \"$hostname\" to intake.local_domains",
    ] {
        assert!(e.contains(want), "{e:?} lacks {want:?}");
    }
    // The transport map sending the host's mail away is the same mistake.
    let tables = [aliases[0], ("transport", "mx.example.org relay:ses\n")];
    let e = parse(&routing_config(&files, &tables, ""), "t").unwrap_err();
    assert!(e.to_string().contains("is not delivered locally"), "{e}");
}
