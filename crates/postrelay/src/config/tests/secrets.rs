//! Tests of secret files, relay credentials and `sasl_passwd`. Files with
//! secrets are written to temporary directories with the modes under test.

use super::super::sasl_passwd::{self, LineError};
use super::relay::{Files, PASSWORD, check_invalid, relay};
use super::{EXAMPLE, err, keys_in, ok, schema_keys};

/// Errors that involve files: the text may use `{dir}`, which stands for
/// a temporary directory holding the files `setup` wrote.
/// (file text, dotted key, line, words the message must contain)
#[rustfmt::skip]
const FILE_INVALID: &[(&str, &str, usize, &[&str])] = &[
    (
        "[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nusername = \"u\"\npassword_file = \"{dir}/pw0644\"",
        "relay[0].password_file", 5,
        &["relay \"ses\": password_file {dir}/pw0644 is readable by group or others (mode 0644): run chmod 600 {dir}/pw0644"],
    ),
    (
        "[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nusername = \"u\"\npassword_file = \"{dir}/pw0640\"",
        "relay[0].password_file", 5,
        &["is readable by group or others (mode 0640): run chmod 600 {dir}/pw0640"],
    ),
    (
        "[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nusername = \"u\"\npassword_file = \"{dir}/pw0620\"",
        "relay[0].password_file", 5,
        &["is writable by group or others (mode 0620)"],
    ),
    (
        "[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nusername = \"u\"\npassword_file = \"{dir}/pw0601\"",
        "relay[0].password_file", 5,
        &["is accessible by group or others (mode 0601)"],
    ),
    (
        "[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nusername = \"u\"\npassword_file = \"{dir}/link-to-pw0644\"",
        "relay[0].password_file", 5,
        &["{dir}/link-to-pw0644 is readable by group or others (mode 0644)"],
    ),
    (
        "[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nusername = \"u\"\npassword_file = \"{dir}\"",
        "relay[0].password_file", 5,
        &["is not a regular file but a directory"],
    ),
    (
        "[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nusername = \"u\"\npassword_file = \"{dir}/empty\"",
        "relay[0].password_file", 5,
        &["{dir}/empty is empty"],
    ),
    (
        "[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nusername = \"u\"\npassword_file = \"{dir}/newline\"",
        "relay[0].password_file", 5,
        &["is empty"],
    ),
    (
        "[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nusername = \"u\"\npassword_file = \"{dir}/two-lines\"",
        "relay[0].password_file", 5,
        &["has more than one line; it must hold only the password"],
    ),
    (
        "[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nsecurity = \"none\"\nusername = \"u\"\npassword_file = \"{dir}/pw\"",
        "relay[0].security", 4,
        &["relay \"ses\": security = \"none\" would send the credentials across the network in clear text", "allow_plaintext_auth = true"],
    ),
    (
        "[delivery]\nsasl_passwd = \"{dir}/sasl\"\n[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nsecurity = \"none\"",
        "relay[0].security", 6,
        &["the credentials (from delivery.sasl_passwd {dir}/sasl) across the network in clear text"],
    ),
    (
        "[delivery]\nsasl_passwd = \"{dir}/sasl\"\n[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nusername = \"alice\"",
        "relay[0].username", 6,
        &["relay \"ses\": username = \"alice\", but the delivery.sasl_passwd entry \"[h.example]:587\" (line 2) is for user \"u\""],
    ),
    (
        "[delivery]\nsasl_passwd = \"{dir}/sasl\"\n[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nusername = \"u\"\npassword_file = \"{dir}/sasl\"",
        "relay[0].password_file", 7,
        &["is the delivery.sasl_passwd file"],
    ),
    (
        "[delivery]\nsasl_passwd = \"{dir}/sasl0644\"",
        "delivery.sasl_passwd", 2,
        &["delivery.sasl_passwd {dir}/sasl0644 is readable by group or others (mode 0644): run chmod 600 {dir}/sasl0644"],
    ),
    (
        "[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nca_file = \"{dir}/not-pem\"",
        "relay[0].ca_file", 4,
        &["relay \"ses\": ca_file {dir}/not-pem holds no PEM certificate"],
    ),
    (
        "[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nca_file = \"{dir}\"",
        "relay[0].ca_file", 4,
        &["is not a regular file"],
    ),
];

fn file_setup(files: &Files) {
    for mode in [0o644, 0o640, 0o620, 0o601] {
        files.file(&format!("pw{mode:04o}"), "pw\n", mode);
    }
    std::os::unix::fs::symlink(files.0.join("pw0644"), files.0.join("link-to-pw0644")).unwrap();
    files.secret("pw", &format!("{PASSWORD}\n"));
    files.secret("empty", "");
    files.secret("newline", "\n");
    files.secret("two-lines", &format!("{PASSWORD}\nsecond\n"));
    files.secret("sasl", &format!("# test\n[h.example]:587 u:{PASSWORD}\n"));
    files.file("sasl0644", "", 0o644);
    files.file("not-pem", "MIIB\n", 0o644);
}

#[test]
fn invalid_secret_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    file_setup(&files);
    let d = dir.path().display().to_string();
    for (text, want_key, want_line, words) in FILE_INVALID {
        let text = text.replace("{dir}", &d);
        let words: Vec<String> = words.iter().map(|w| w.replace("{dir}", &d)).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let e = err(&text);
        check_invalid("t.toml", &e, want_key, *want_line, &words, &text);
        assert!(!e.to_string().contains(PASSWORD), "{e}");
    }
}

#[test]
fn secret_file_owner() {
    if !crate::test_root::require_root("changing a file's owner") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let nobody = nix::unistd::Uid::from_raw(65534);
    let user = nix::unistd::User::from_uid(nobody)
        .unwrap()
        .map_or("uid 65534".to_owned(), |u| {
            format!("{} (uid 65534)", u.name)
        });
    let d = dir.path().display();
    // (file, mode, expected message)
    let cases = [
        (
            "other",
            0o600,
            format!(
                "password_file {d}/other is owned by {user}, but postrelay runs as root (uid 0): run chown root {d}/other"
            ),
        ),
        (
            "other-0644",
            0o644,
            format!(
                "is owned by {user}, but postrelay runs as root (uid 0), and is readable by group or others (mode 0644): run chown root {d}/other-0644 && chmod 600 {d}/other-0644"
            ),
        ),
    ];
    for (name, mode, want) in cases {
        let path = files.file(name, "pw\n", mode);
        nix::unistd::chown(&path, Some(nobody), None).unwrap();
        let text = relay(&format!(
            "username = \"u\"\npassword_file = \"{}\"",
            path.display()
        ));
        let e = err(&text);
        check_invalid("t.toml", &e, "relay[0].password_file", 5, &[&want], &text);
    }
}

#[test]
fn paths_in_fix_commands_are_shell_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let path = files.file("it's here", "pw\n", 0o644);
    let text = relay(&format!(
        "username = \"u\"\npassword_file = \"{}\"",
        path.display()
    ));
    let want = format!("run chmod 600 '{}/it'\\''s here'", dir.path().display());
    assert!(err(&text).to_string().ends_with(&want), "{}", err(&text));
}

#[test]
fn credentials_from_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    // (file content, password)
    let cases = [
        ("s3cret\n", "s3cret"),
        ("s3cret\r\n", "s3cret"),
        ("s3cret", "s3cret"),
        (" spaces : and:colons ", " spaces : and:colons "),
    ];
    for (content, want) in cases {
        let path = files.secret("pw", content);
        let text = relay(&format!(
            "username = \"AKIAEXAMPLE\"\npassword_file = \"{}\"",
            path.display()
        ));
        let creds = ok(&text).relays[0].credentials.clone().unwrap();
        assert_eq!(creds.username, "AKIAEXAMPLE");
        assert_eq!(creds.password.expose(), want, "{content:?}");
        assert_eq!(creds.source, path);
    }
    // A symbolic link to a protected file is followed.
    let target = files.secret("target", "linked\n");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let text = relay(&format!(
        "username = \"u\"\npassword_file = \"{}\"",
        link.display()
    ));
    let creds = ok(&text).relays[0].credentials.clone().unwrap();
    assert_eq!((creds.password.expose(), creds.source), ("linked", link));
    // Plain-text AUTH over a trusted path, when asked for explicitly.
    let pw = files.secret("pw", "x\n");
    let text = relay(&format!(
        "security = \"none\"\nallow_plaintext_auth = true\nusername = \"u\"\npassword_file = \"{}\"",
        pw.display()
    ));
    assert!(ok(&text).relays[0].allow_plaintext_auth);
}

#[test]
fn credentials_from_sasl_passwd() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let sasl = files.secret(
        "sasl_passwd",
        "# Postfix's file\n\n[a.example]:587 user-a:pw:a\nB.EXAMPLE:2525 user-b:pw-b\n[c.example] user-c:pw-c\nd.example user-d:pw-d\n[2001:db8::1]:587 user-e:pw-e\n[e.example]:587 user-x:pw-x\n",
    );
    let head = format!("[delivery]\nsasl_passwd = \"{}\"\n", sasl.display());
    // (host and port lines, expected user and password)
    let cases = [
        ("host = \"[a.example]\"", Some(("user-a", "pw:a"))),
        (
            "host = \"b.example\"\nport = 2525",
            Some(("user-b", "pw-b")),
        ),
        (
            "host = \"c.example\"\nport = 2525",
            Some(("user-c", "pw-c")),
        ),
        (
            "host = \"d.example\"\ntls = \"implicit\"",
            Some(("user-d", "pw-d")),
        ),
        ("host = \"2001:db8::1\"", Some(("user-e", "pw-e"))),
        ("host = \"a.example\"\nport = 25", None),
        ("host = \"unlisted.example\"", None),
        // username alone takes the password from the matching entry.
        (
            "host = \"e.example\"\nusername = \"user-x\"",
            Some(("user-x", "pw-x")),
        ),
    ];
    for (lines, want) in cases {
        let text = format!("{head}[[relay]]\nname = \"r\"\n{lines}\n");
        let c = ok(&text);
        let got = c.relays[0].credentials.as_ref();
        let got = got.map(|c| (c.username.as_str(), c.password.expose()));
        assert_eq!(got, want, "{lines}");
        if let Some(creds) = &c.relays[0].credentials {
            assert_eq!(creds.source, sasl);
        }
    }
    // A password_file wins over the sasl_passwd entry.
    let pw = files.secret("pw", "own\n");
    let text = format!(
        "{head}[[relay]]\nname = \"r\"\nhost = \"a.example\"\nusername = \"me\"\npassword_file = \"{}\"\n",
        pw.display()
    );
    let creds = ok(&text).relays[0].credentials.clone().unwrap();
    assert_eq!(
        (creds.username.as_str(), creds.password.expose()),
        ("me", "own")
    );
}

#[test]
fn sasl_passwd_lines() {
    let text = "# comment\n   # indented comment\n\n\t\n[Smtp.Example.com]:587\tAKIA:pass:with:colons\r\nplain.example   user:pass word \n";
    let table = sasl_passwd::parse(text).unwrap();
    let e = table.lookup("smtp.example.com", 587).unwrap();
    assert_eq!(
        (e.username.as_str(), e.password.expose(), e.line),
        ("AKIA", "pass:with:colons", 5)
    );
    let e = table.lookup("plain.example", 25).unwrap();
    assert_eq!(
        (e.username.as_str(), e.password.expose()),
        ("user", "pass word")
    );
    assert!(table.lookup("smtp.example.com", 465).is_none());
    assert_eq!(
        sasl_passwd::lookup_keys("h.example", 587),
        [
            "[h.example]:587",
            "h.example:587",
            "[h.example]",
            "h.example"
        ]
    );
}

/// (file text, line, words the message must contain); the secret must not
/// appear in any message.
#[rustfmt::skip]
const SASL_INVALID: &[(&str, usize, &[&str])] = &[
    ("[h.example]:587", 1, &["has a single word", "\"[host]:port user:password\""]),
    // A password file given as sasl_passwd: the word is not repeated.
    ("bob:hunter2-SECRET", 1, &["has a single word"]),
    ("# ok\n[h.example]:587 hunter2-SECRET", 2, &["the value of \"[h.example]:587\" has no ':'"]),
    ("[h.example]:587 :hunter2-SECRET", 1, &["\"[h.example]:587 :<redacted>\" has no user name"]),
    ("[h.example]:587 bob:", 1, &["\"[h.example]:587 bob:\" has an empty password"]),
    ("[h.example]:587 bob:hunter2-SECRET\0", 1, &["\"[h.example]:587 bob:<redacted>\" contains a NUL"]),
    ("[h.example]:587 bob:a\n\n[H.example]:587 bob:hunter2-SECRET", 3, &["\"[h.example]:587\" is listed again (first on line 1)"]),
    ("[h.example]:587 bob:a\n  hunter2-SECRET", 2, &["starts with white space", "continues the previous line", "one line"]),
];

#[test]
fn sasl_passwd_errors() {
    for (text, want_line, words) in SASL_INVALID {
        let LineError { line, message } = sasl_passwd::parse(text).unwrap_err();
        assert_eq!(line, *want_line, "{text:?}: {message}");
        for w in *words {
            assert!(message.contains(w), "{text:?}: {message:?} lacks {w:?}");
        }
        // Case-blind: keys are lower-cased, a leaked password would be too.
        let lower = message.to_lowercase();
        assert!(!lower.contains(&PASSWORD.to_lowercase()), "{message}");
    }
    // Through the configuration: located in the sasl_passwd file itself.
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let sasl = files.secret("sasl_passwd", "# x\n[h.example]:587 hunter2-SECRET\n");
    let e = err(&format!(
        "\n[delivery]\nsasl_passwd = \"{}\"",
        sasl.display()
    ));
    let origin = sasl.display().to_string();
    let words = ["delivery.sasl_passwd: the value of \"[h.example]:587\" has no ':'"];
    check_invalid(&origin, &e, "delivery.sasl_passwd", 2, &words, "");
    assert!(e.to_string().starts_with(&format!("{origin}:2: ")), "{e}");
    assert!(!e.to_string().contains(PASSWORD), "{e}");
}

/// A configuration using every key, with a password in a file, a relay
/// whose credentials come from `sasl_passwd`, and one without.
fn full_config(files: &Files) -> String {
    let pw = files.secret("ses", &format!("{PASSWORD}\n"));
    let sasl = files.secret(
        "sasl_passwd",
        &format!("[backup.example]:2525 backup-user:{PASSWORD}-2\n"),
    );
    let ca = files.ca("ca.pem");
    let client = files.secret("m365-client", &format!("{PASSWORD}-3\n"));
    let submission = super::super::submission::fixtures::table(files);
    // Only a build with cluster mode takes [cluster].
    let cluster = if cfg!(feature = "cluster") {
        let redis = files.secret("redis", &format!("{PASSWORD}-3\n"));
        format!(
            "[cluster]\nurl = \"redis://10.0.0.9:6380/2\"\nusername = \"relay\"\npassword_file = \"{}\"\nnamespace = \"eu\"\nlocal_share = 0.25\ntimeout = \"400ms\"\nretry = \"9s\"\n",
            redis.display()
        )
    } else {
        String::new()
    };
    format!(
        r#"hostname = "mx.example.org"
{submission}[delivery]
sasl_passwd = "{sasl}"
max_workers = 7
[bounce]
sender = "bounces@example.org"
postmaster = "hostmaster"
delay_warning = "4h"
{routing}[local]
catch_all = "root"
[log]
file = "/var/log/postrelay.log"
to = "file"
syslog_name = "postfix"
[metrics]
listen = "127.0.0.1:9465"
{cluster}
[[relay]]
name = "ses"
provider = "ses:us-east-1"
host = "[email-smtp.us-east-1.amazonaws.com]"
port = 2587
tls = "starttls"
security = "verify"
ca_file = "{ca}"
tls_name = "email-smtp.us-east-1.amazonaws.com"
fallbacks = ["backup"]
username = "AKIAEXAMPLE"
password_file = "{pw}"
allow_plaintext_auth = false
verbose = true
max_connections = 3
max_messages_per_connection = 50
idle_timeout = "1m"
[relay.timeouts]
connect = "5s"
greeting = "6s"
ehlo = "7s"
tls = "8s"
auth = "9s"
mail = "10s"
rcpt = "11s"
data = "12s"
data_end = "1h"
rset = "14s"
quit = "1500ms"
[relay.limits]
rate = "14/s"
burst = 20
messages_per_hour = 1000
recipients_per_day = 50000
spill_to = "backup"
throttle_replies = ["4.7.0 slow down"]
cool_down = "5m"

[[relay]]
name = "backup"
host = "backup.example"
port = 2525
tls = "implicit"
security = "encrypt"

[[relay]]
name = "lan"
host = "10.0.0.25"
tls = "starttls"
security = "none"

[[relay]]
name = "m365"
provider = "m365"
username = "relay@contoso.example"

[relay.oauth]
provider = "microsoft"
tenant = "contoso.example"
flow = "client_credentials"
client_id = "app-1"
client_secret_file = "{client}"
token_url = "https://login.example/token"
device_url = "https://login.example/device"
scopes = ["a", "b"]
token_file = "/var/lib/postrelay/m365.token"
refresh_token_lifetime = "30d"
"#,
        client = client.display(),
        sasl = sasl.display(),
        ca = ca.display(),
        pw = pw.display(),
        routing = super::routing::full_section(files),
    )
}

#[test]
fn render_round_trips_with_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let c = ok(&full_config(&files));
    assert_eq!(c.relays.len(), 4);
    assert_eq!(c.relays[0].host, "email-smtp.us-east-1.amazonaws.com");
    assert_eq!(
        c.relays[0].timeouts.quit,
        std::time::Duration::from_millis(1500)
    );
    let backup = c.relays[1].credentials.as_ref().unwrap();
    assert_eq!(backup.username, "backup-user");
    assert_eq!(c.relays[2].credentials, None);
    assert_eq!(c.bounce.postmaster, "hostmaster@mx.example.org");

    let text = c.render();
    assert_eq!(ok(&text), c, "render:\n{text}");
    // Every key the file accepts appears (the sasl_passwd relay's
    // credentials, being in another file, appear only as a comment).
    let mut rendered: Vec<_> = keys_in(&text);
    rendered.sort();
    rendered.dedup();
    let mut expected = schema_keys();
    expected.retain(|(table, _)| cfg!(feature = "cluster") || table != "cluster");
    expected.sort();
    assert_eq!(rendered, expected, "render:\n{text}");
    assert!(
        text.contains("# credentials: user \"backup-user\" from delivery.sasl_passwd"),
        "{text}"
    );
}

#[test]
fn secrets_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let c = ok(&full_config(&files));
    let debug = format!("{c:?} {:#?}", c.relays);
    for (what, text) in [("render", c.render()), ("Debug", debug)] {
        assert!(
            !text.contains(PASSWORD),
            "{what} shows the password:\n{text}"
        );
    }
    let creds = c.relays[0].credentials.as_ref().unwrap();
    assert_eq!(creds.password.expose(), PASSWORD);
    let oauth = c.relays[3].oauth.as_ref().unwrap();
    assert_eq!(
        oauth.client_secret.as_ref().unwrap().expose(),
        format!("{PASSWORD}-3")
    );
    assert_eq!(
        format!("{} {:?}", creds.password, creds.password),
        "<redacted> <redacted>"
    );

    // Every error of a configuration whose secret files hold the password.
    file_setup(&files);
    let d = dir.path().display().to_string();
    let many = FILE_INVALID
        .iter()
        .map(|(text, ..)| text.replace("{dir}", &d));
    let sasl_lines = SASL_INVALID.iter().map(|(text, ..)| {
        let path = files.secret("broken-sasl", text);
        format!("[delivery]\nsasl_passwd = \"{}\"", path.display())
    });
    let full = full_config(&files);
    let edits = [
        full.replace("security = \"verify\"", "security = \"none\""),
        full.replace(
            "name = \"backup\"",
            "name = \"backup\"\nusername = \"nobody\"",
        ),
        full.replace(
            "tls = \"implicit\"\nsecurity = \"encrypt\"",
            "tls = \"starttls\"\nsecurity = \"none\"",
        ),
    ];
    for text in many.chain(sasl_lines).chain(edits) {
        let e = err(&text);
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
}

#[test]
fn a_changed_password_is_a_changed_config() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let text = full_config(&files);
    let before = ok(&text);
    files.secret("ses", "rotated\n");
    let after = ok(&text);
    assert_ne!(before, after);
    assert_eq!(
        after.relays[0]
            .credentials
            .as_ref()
            .unwrap()
            .password
            .expose(),
        "rotated"
    );
    // Relays and credentials are applied on reload, not after a restart.
    assert_eq!(before.restart_required(&after), Vec::<&str>::new());
    let without_relays = ok(text.split("[[relay]]").next().unwrap());
    assert!(without_relays.relays.is_empty());
    assert_eq!(before.restart_required(&without_relays), Vec::<&str>::new());
}

#[test]
fn example_documents_relays() {
    // The example's [[relay]] is commented out (no relay by default) but
    // documents every key, each paragraph with its default.
    let keys = keys_in(EXAMPLE);
    for key in [
        "name",
        "host",
        "port",
        "tls",
        "security",
        "ca_file",
        "username",
        "password_file",
    ] {
        assert!(
            keys.contains(&("relay".to_owned(), key.to_owned())),
            "{key}"
        );
    }
    assert!(EXAMPLE.contains("\n# [[relay]]\n"));
    assert!(EXAMPLE.contains("\n# [relay.timeouts]\n"));
}
