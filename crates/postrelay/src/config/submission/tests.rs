//! Unit tests of `[intake.submission]`: defaults, checks and their messages.

use super::fixtures::HASH;
use super::*;
use crate::config::tests::relay::Files;
use crate::config::tests::{err, ok};

#[test]
fn a_complete_table_loads() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let c = ok(&fixtures::table(&files));
    let s = c.intake.submission.expect("configured");
    assert_eq!(s.listen, vec!["10.0.0.1:587".parse().unwrap()]);
    assert_eq!(s.implicit, vec!["10.0.0.1:465".parse().unwrap()]);
    assert_eq!(s.max_auth_failures, 3);
    assert_eq!(s.auth_lockout, Duration::from_secs(600));
    assert_eq!(s.auth_delay, Duration::from_millis(250));
    assert_eq!(s.users.len(), 1);
    assert!(!format!("{s:?}").contains("PRIVATE KEY"), "{s:?}");
    assert!(!format!("{s:?}").contains("3yqVH"), "{s:?}");
    assert_eq!(ok("").intake.submission, None);
}

#[test]
fn defaults_of_the_optional_keys() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let (cert, key, users) = fixtures::files(&files);
    let text = format!(
        "[intake.submission]\nimplicit = [\"127.0.0.1:465\"]\ncert = \"{}\"\nkey = \"{}\"\nusers = \"{}\"\n",
        cert.display(),
        key.display(),
        users.display()
    );
    let s = ok(&text).intake.submission.unwrap();
    assert!(s.listen.is_empty());
    assert_eq!(s.max_auth_failures, 5);
    assert_eq!(s.auth_lockout, Duration::from_secs(900));
    assert_eq!(s.auth_delay, Duration::from_secs(1));
    assert_eq!((s.max_connections, s.max_connections_per_client), (100, 10));
}

#[test]
fn mistakes_are_located_and_explained() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let (cert, key, users) = fixtures::files(&files);
    let open_key = files.file(
        "open-key.pem",
        &std::fs::read_to_string(&key).unwrap(),
        0o644,
    );
    let (_, other_key) = crate::net::tls_server::tests::self_signed();
    let other_key = files.secret("other-key.pem", &other_key);
    let bad_users = files.secret("bad-users", &format!("# x\nbob:{HASH}\nbob:{HASH}\n"));
    let empty_users = files.secret("empty-users", "# nobody\n");
    let table = |extra: &str, k: &std::path::Path, u: &std::path::Path| {
        format!(
            "[intake]\nlisten = [\"127.0.0.1:25\"]\n[intake.submission]\ncert = \"{}\"\nkey = \"{}\"\nusers = \"{}\"\n{extra}",
            cert.display(),
            k.display(),
            u.display()
        )
    };
    let cases: Vec<(String, &str, Option<usize>, &str)> = vec![
        (
            table("", &key, &users),
            "intake.submission",
            Some(3),
            "has no address",
        ),
        (
            table("listen = [\"127.0.0.1:25\"]", &key, &users),
            "intake.submission.listen",
            Some(7),
            "overlaps \"127.0.0.1:25\" of intake.listen",
        ),
        (
            table(
                "listen = [\"0.0.0.0:587\"]\nimplicit = [\"10.0.0.1:587\"]",
                &key,
                &users,
            ),
            "intake.submission.implicit",
            Some(8),
            "overlaps",
        ),
        (
            table(
                "listen = [\"10.0.0.1:587\"]\nmax_auth_failures = 0",
                &key,
                &users,
            ),
            "intake.submission.max_auth_failures",
            Some(8),
            "at least 1",
        ),
        (
            table(
                "listen = [\"10.0.0.1:587\"]\nmax_connections_per_client = 0",
                &key,
                &users,
            ),
            "intake.submission.max_connections_per_client",
            Some(8),
            "at least 1",
        ),
        (
            table(
                "listen = [\"10.0.0.1:587\"]\nauth_delay = \"1m\"",
                &key,
                &users,
            ),
            "intake.submission.auth_delay",
            Some(8),
            "at most 10s",
        ),
        (
            table("listen = [\"10.0.0.1:587\"]", &open_key, &users),
            "intake.submission.key",
            Some(5),
            "chmod 600",
        ),
        (
            table("listen = [\"10.0.0.1:587\"]", &other_key, &users),
            "intake.submission.cert",
            Some(4),
            "does not belong",
        ),
        (
            table("listen = [\"10.0.0.1:587\"]", &key, &bad_users),
            "intake.submission.users",
            Some(3),
            "listed again",
        ),
        (
            table("listen = [\"10.0.0.1:587\"]", &key, &empty_users),
            "intake.submission.users",
            Some(6),
            "lists no user",
        ),
        (
            "[intake.submission]\nlisten = [\"10.0.0.1:587\"]\n".to_owned(),
            "intake.submission.cert",
            Some(1),
            "cert is required",
        ),
        (
            "[intake.submission]\nlisten = [\"10.0.0.1:587\"]\npassword = \"x\"\n".to_owned(),
            "intake.submission.password",
            Some(3),
            "unknown key",
        ),
    ];
    for (text, key, line, want) in cases {
        match err(&text) {
            ConfigError::Invalid {
                key: k,
                line: l,
                message,
                ..
            } => {
                assert_eq!((k.as_str(), l), (key, line), "{text}\n{message}");
                assert!(message.contains(want), "{text}\n{message}");
                assert!(!message.contains("PRIVATE"), "{message}");
                assert!(!message.contains("3yqVH"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn render_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let c = ok(&fixtures::table(&files));
    let text = c.render();
    assert!(text.contains("[intake.submission]"), "{text}");
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("argon2"),
        "{text}"
    );
    assert_eq!(ok(&text), c, "{text}");
    let none = ok("").render();
    assert!(none.contains("# [intake.submission]: not set"), "{none}");
}

#[test]
fn a_changed_address_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let table = fixtures::table(&files);
    let a = ok(&table);
    let b = ok(&table.replace("10.0.0.1:587", "10.0.0.2:587"));
    assert_eq!(a.restart_required(&b), ["intake.submission.listen"]);
    assert_eq!(
        ok("").restart_required(&a),
        ["intake.submission.listen", "intake.submission.implicit"]
    );
}

#[test]
fn users_file_lines() {
    let text = format!("# users\n\nalice:{HASH}\r\n  bob@example.com:{HASH}  \n");
    let users = parse_users(&text).unwrap();
    let names: Vec<_> = users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob@example.com"]);
    assert_eq!(users[0].hash.expose(), HASH);

    let bad: &[(String, usize, &str)] = &[
        ("alice".to_owned(), 1, "expected \"name:HASH\""),
        (format!(":{HASH}"), 1, "empty user name"),
        (format!("al ice:{HASH}"), 1, "may only hold"),
        (format!("a(b):{HASH}"), 1, "may only hold"),
        ("alice:secret".to_owned(), 1, "not an argon2id"),
        ("alice:$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$abc".to_owned(), 1, "not an argon2id"),
        ("alice:$argon2id$garbage".to_owned(), 1, "malformed"),
        (
            "alice:$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3yqVH/7nVb2oM2b8DI3OiNKOpKTbWvnkmsONnTWJdaw".to_owned(),
            1,
            "exceed",
        ),
        (format!("a:{HASH}\n#\na:{HASH}"), 3, "listed again (first on line 1)"),
    ];
    for (text, line, want) in bad {
        let (got_line, why) = parse_users(text).unwrap_err();
        assert_eq!(got_line, *line, "{text:?}: {why}");
        assert!(why.contains(want), "{text:?}: {why}");
        assert!(!why.contains("3yqVH"), "a hash is shown: {why}");
    }
}
