//! Tests of `[cluster]`: its defaults and mistakes in a build with cluster
//! mode, and its refusal in a build without.

use super::super::*;
use super::err;

/// The error's key, line and message.
fn invalid(text: &str) -> (String, Option<usize>, String) {
    match err(text) {
        ConfigError::Invalid {
            key, line, message, ..
        } => (key, line, message),
        other => panic!("{text:?}: expected Invalid, got {other:?}"),
    }
}

#[cfg(not(feature = "cluster"))]
#[test]
fn a_build_without_cluster_mode_refuses_the_table_and_says_why() {
    let (key, line, message) = invalid(
        "hostname = \"a.example\"\n\n[cluster]\nurl = \"redis://127.0.0.1\"\nlocal_share = 0.5\n",
    );
    assert_eq!((key.as_str(), line), ("cluster", Some(3)));
    assert!(message.contains("built without cluster mode"), "{message}");
    assert!(message.contains("--features cluster"), "{message}");
}

#[cfg(feature = "cluster")]
mod with_the_feature {
    use std::time::Duration;

    use super::super::relay::{Files, PASSWORD};
    use super::super::{ok, secs};
    use super::*;

    const MINIMAL: &str = "[cluster]\nurl = \"redis://127.0.0.1:6379/0\"\nlocal_share = 0.5\n";

    #[test]
    fn defaults_and_round_trip() {
        let c = ok(MINIMAL);
        let cl = c.cluster.as_ref().unwrap();
        assert_eq!(cl.url, "redis://127.0.0.1:6379/0");
        assert_eq!(cl.namespace, "default");
        assert_eq!(cl.local_share.get(), 0.5);
        assert_eq!(cl.timeout, Duration::from_millis(250));
        assert_eq!(cl.retry, secs(5));
        assert_eq!((&cl.username, &cl.password), (&None, &None));
        assert_eq!(ok(&c.render()), c);
        assert!(ok("").cluster.is_none());
    }

    #[test]
    fn the_password_comes_from_its_file_and_never_shows() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path());
        let path = files.secret("redis", &format!("{PASSWORD}\n"));
        let text = format!(
            "{MINIMAL}username = \"relay\"\npassword_file = \"{}\"\nnamespace = \"eu-1\"\ntimeout = \"1s\"\nretry = \"30s\"\n",
            path.display()
        );
        let c = ok(&text);
        let cl = c.cluster.as_ref().unwrap();
        assert_eq!(cl.password.as_ref().unwrap().expose(), PASSWORD);
        assert_eq!(cl.username.as_deref(), Some("relay"));
        assert_eq!(
            (cl.namespace.as_str(), cl.timeout, cl.retry),
            ("eu-1", secs(1), secs(30))
        );
        let shown = format!("{} {c:?}", c.render());
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert_eq!(ok(&c.render()), c);
        // A file others may read is refused, like every secret file.
        let loose = files.file("loose", "pw\n", 0o644);
        let text = format!("{MINIMAL}password_file = \"{}\"\n", loose.display());
        let (key, line, message) = invalid(&text);
        assert_eq!((key.as_str(), line), ("cluster.password_file", Some(4)));
        assert!(message.contains("chmod 600"), "{message}");
    }

    #[test]
    fn mistakes_are_named_with_their_fix() {
        let url = |u: &str| format!("[cluster]\nurl = \"{u}\"\nlocal_share = 0.5\n");
        let share = |s: &str| format!("[cluster]\nurl = \"redis://h\"\nlocal_share = {s}\n");
        let cases: Vec<(String, &str, usize, &[&str])> = vec![
            (
                "[cluster]\nlocal_share = 0.5\n".into(),
                "cluster.url",
                1,
                &["is required", "redis://"],
            ),
            (
                url("redis://:hunter2@127.0.0.1:6379"),
                "cluster.url",
                2,
                &["holds a password", "password_file"],
            ),
            (
                url("redis://user:hunter2@127.0.0.1"),
                "cluster.url",
                2,
                &["holds a password"],
            ),
            (
                url("redis://127.0.0.1/?password=hunter2"),
                "cluster.url",
                2,
                &["holds a password"],
            ),
            (
                url("rediss://127.0.0.1"),
                "cluster.url",
                2,
                &["TLS", "not supported"],
            ),
            (url("http://127.0.0.1"), "cluster.url", 2, &["redis://"]),
            (url("127.0.0.1:6379"), "cluster.url", 2, &["must be a URL"]),
            (
                url("redis://127.0.0.1:notaport"),
                "cluster.url",
                2,
                &["not a Redis URL"],
            ),
            (
                "[cluster]\nurl = \"redis://h\"\n".into(),
                "cluster.local_share",
                1,
                &["is required", "1/N"],
            ),
            (share("0"), "cluster.local_share", 3, &["above 0"]),
            (share("1.5"), "cluster.local_share", 3, &["at most 1"]),
            (share("nan"), "cluster.local_share", 3, &["fraction"]),
            (
                format!("{MINIMAL}namespace = \"a:b\"\n"),
                "cluster.namespace",
                4,
                &["letters, digits"],
            ),
            (
                format!("{MINIMAL}namespace = \"\"\n"),
                "cluster.namespace",
                4,
                &["1 to 64"],
            ),
            (
                format!("{MINIMAL}username = \"a b\"\n"),
                "cluster.username",
                4,
                &["no spaces"],
            ),
            (
                format!("{MINIMAL}timeout = \"0s\"\n"),
                "cluster.timeout",
                4,
                &["above 0"],
            ),
            (
                format!("{MINIMAL}timeout = \"1m\"\n"),
                "cluster.timeout",
                4,
                &["at most 10s"],
            ),
            (
                format!("{MINIMAL}retry = \"10ms\"\n"),
                "cluster.retry",
                4,
                &["between 100ms and 1h"],
            ),
            (
                format!("{MINIMAL}password = \"x\"\n"),
                "cluster.password",
                4,
                &["unknown"],
            ),
        ];
        for (text, want_key, want_line, words) in &cases {
            let (key, line, message) = invalid(text);
            assert_eq!(&key, want_key, "{text:?}: {message}");
            assert_eq!(line, Some(*want_line), "{text:?}: {message}");
            for w in *words {
                assert!(message.contains(w), "{text:?}: {message:?} lacks {w:?}");
            }
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn a_change_of_cluster_needs_a_restart() {
        let a = ok(MINIMAL);
        let b = ok(&MINIMAL.replace("0.5", "0.25"));
        assert_eq!(a.restart_required(&b), ["cluster"]);
        assert!(a.restart_required(&a).is_empty());
    }
}
