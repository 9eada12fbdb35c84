//! Unit tests of the configuration: loading, defaults, mistakes and their
//! messages, rendering. By subject: `relay` ([delivery], [bounce],
//! [[relay]] and secrets), `routing` ([routing] and its tables), `units`
//! (sizes, durations, addresses and networks as written in the file).

mod cluster;
mod hops;
mod limits;
mod oauth;
mod presets;
pub(super) mod relay;
mod routing;
mod secrets;
mod units;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::file::Schema;
use super::*;

pub(super) const EXAMPLE: &str = include_str!("../../../../postrelay.example.toml");
pub(super) const MIB: u64 = 1 << 20;

pub(super) fn ok(text: &str) -> Config {
    parse(text, "t.toml").unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

pub(super) fn err(text: &str) -> ConfigError {
    match parse(text, "t.toml") {
        Ok(c) => panic!("{text:?} should be refused, got {c:?}"),
        Err(e) => e,
    }
}

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(super) fn nets(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// `(section, key)` for every `key = …` line, commented out or not; the
/// section of `[[relay]]` is `relay`.
pub(super) fn keys_in(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start_matches('#').trim();
        if line.starts_with('[') && line.ends_with(']') {
            section = line.trim_matches(['[', ']']).to_owned();
        } else if let Some((key, _)) = line.split_once(" = ")
            && !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            out.push((section.clone(), key.to_owned()));
        }
    }
    out
}

/// `(table, key)` of every key holding a value (not a sub-table), in the
/// order of the file structs.
pub(super) fn schema_keys() -> Vec<(String, String)> {
    let schema = Schema::get();
    let mut out: Vec<_> = schema
        .top_values()
        .map(|k| (String::new(), k.to_owned()))
        .collect();
    for table in &schema.tables {
        let values = table
            .keys
            .iter()
            .filter(|k| schema.table(&format!("{}.{k}", table.name)).is_none());
        out.extend(values.map(|k| (table.name.to_owned(), (*k).to_owned())));
    }
    out
}

#[test]
fn file_defaults() {
    let c = ok("");
    let host = c.hostname.clone();
    assert!(!host.is_empty() && host == host.to_ascii_lowercase());
    assert_eq!(c.spool, PathBuf::from("/var/spool/postrelay"));
    assert_eq!(
        c.control_socket,
        PathBuf::from("/var/spool/postrelay/control.sock")
    );
    let i = &c.intake;
    assert_eq!(i.listen, vec![addr("127.0.0.1:25")]);
    assert_eq!(i.mynetworks, nets(&["127.0.0.0/8", "::1/128"]));
    let mut domains = vec!["localhost".to_owned()];
    if host != "localhost" {
        domains.push(host);
    }
    assert_eq!(i.local_domains, domains);
    assert_eq!(i.message_size_limit, 25 * MIB);
    assert_eq!(i.header_size_limit, 102_400);
    assert_eq!(i.line_length_limit, 998);
    assert_eq!(i.command_length_limit, 2048);
    assert_eq!(
        (i.max_recipients, i.max_connections, i.max_errors),
        (1000, 100, 20)
    );
    assert_eq!(i.command_timeout, secs(300));
    assert_eq!(i.data_timeout, secs(300));
    assert_eq!(i.session_timeout, secs(3600));
    assert_eq!(
        (i.max_connections_per_client, i.line_timeout),
        (10, secs(60))
    );
    let q = &c.queue;
    assert_eq!(q.min_backoff, secs(300));
    assert_eq!(q.max_backoff, secs(4000));
    assert_eq!(q.max_lifetime, secs(5 * 86_400));
    assert_eq!(q.min_free_space, 100 * MIB);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Postfix);
    assert_eq!(c.log.file, None);
}

#[test]
fn builtin_default_values() {
    let b = builtin_default();
    let f = ok("");
    assert_eq!(b.spool, PathBuf::from("./postrelay-spool"));
    assert_eq!(
        b.control_socket,
        PathBuf::from("./postrelay-spool/control.sock")
    );
    assert_eq!(b.intake.listen, vec![addr("127.0.0.1:2525")]);
    // Everything else is as with an empty file.
    let same = Config {
        spool: f.spool.clone(),
        control_socket: f.control_socket.clone(),
        intake: Intake {
            listen: f.intake.listen.clone(),
            ..b.intake.clone()
        },
        ..b
    };
    assert_eq!(same, f);
}

#[test]
fn hostname_expansion() {
    let cases: &[(&str, &[&str])] = &[
        (
            "hostname = \"Mail.Example.COM\"",
            &["localhost", "mail.example.com"],
        ),
        ("hostname = \"localhost\"", &["localhost"]),
        (
            "hostname = \"mx.example.org\"\n[intake]\nlocal_domains = [\"$hostname\", \"example.org\"]",
            &["mx.example.org", "example.org"],
        ),
        (
            "hostname = \"mx.example.org\"\n[intake]\nlocal_domains = [\"Example.NET\"]",
            &["example.net"],
        ),
        ("[intake]\nlocal_domains = []", &[]),
    ];
    for (text, want) in cases {
        assert_eq!(ok(text).intake.local_domains, *want, "{text:?}");
    }
    assert_eq!(
        ok("hostname = \"Mail.Example.COM\"").hostname,
        "mail.example.com"
    );
}

/// (file text, dotted key, line, words the message must contain)
#[rustfmt::skip]
const INVALID: &[(&str, &str, usize, &[&str])] = &[
    // Unknown keys, at top level and nested, with hints.
    ("foo = 1", "foo", 1, &["unknown key `foo`", "allowed top-level keys: hostname, spool, control_socket", "[intake]"]),
    ("[intake]\nlisten = [\"127.0.0.1:25\"]\nlissen = 1", "intake.lissen", 3, &["unknown key `intake.lissen`", "did you mean `listen`", "allowed keys in [intake]: listen, mynetworks,"]),
    ("[queue]\nmax_tries = 3", "queue.max_tries", 2, &["allowed keys in [queue]: min_backoff"]),
    ("[intake.extra]\nx = 1", "intake.extra", 1, &["unknown key `intake.extra`"]),
    ("[relay]\nname = \"a\"", "relay", 1, &["`relay` is a list", "[[relay]]"]),
    ("listen = [\"127.0.0.1:25\"]", "listen", 1, &["`listen` belongs in [intake]"]),
    ("[log]\nlevel = \"info\"\nspool = \"/x\"", "log.spool", 3, &["top-level key", "above the first [table] header"]),
    ("intake = 5", "intake", 1, &["must be a table", "[intake]"]),
    // Wrong types.
    ("hostname = 5", "hostname", 1, &["hostname = 5", "expected a string"]),
    ("[intake]\nmax_recipients = \"many\"", "intake.max_recipients", 2, &["expected a whole number"]),
    ("[intake]\nmax_errors = -1", "intake.max_errors", 2, &["expected a whole number"]),
    ("[intake]\nlisten = \"127.0.0.1:25\"", "intake.listen", 2, &["expected an array"]),
    ("[log]\nformat = \"text\"", "log.format", 2, &["`postfix` or `json`"]),
    // Sizes.
    ("[intake]\nmessage_size_limit = \"25 MB?\"", "intake.message_size_limit", 2, &["intake.message_size_limit = \"25 MB?\": not a size; write e.g. \"25 MiB\" or 26214400"]),
    ("[intake]\nmessage_size_limit = \"25M\"", "intake.message_size_limit", 2, &["ambiguous", "\"25 MiB\"", "\"25 MB\""]),
    ("[intake]\nmessage_size_limit = 0", "intake.message_size_limit", 2, &["0 would refuse every message"]),
    ("[intake]\nheader_size_limit = -1", "intake.header_size_limit", 2, &["cannot be negative"]),
    ("[intake]\nmessage_size_limit = 1.5", "intake.message_size_limit", 2, &["expected a size"]),
    ("[intake]\nline_length_limit = 200", "intake.line_length_limit", 2, &["at least 998"]),
    ("[intake]\ncommand_length_limit = 100", "intake.command_length_limit", 2, &["at least 512"]),
    ("[intake]\nmax_recipients = 10", "intake.max_recipients", 2, &["at least 100", "§4.5.3.1.8"]),
    ("[intake]\nmax_connections = 0", "intake.max_connections", 2, &["at least 1"]),
    ("[intake]\nmax_connections_per_client = 0", "intake.max_connections_per_client", 2, &["at least 1", "equal to max_connections"]),
    ("[intake]\nmessage_size_limit = \"200 MiB\"", "queue.min_free_space", 2, &["queue.min_free_space (default 100 MiB) is smaller than intake.message_size_limit = \"200 MiB\""]),
    // Durations.
    ("[intake]\ncommand_timeout = 300", "intake.command_timeout", 2, &["no unit", "\"300s\""]),
    ("[intake]\ncommand_timeout = \"5 minuts\"", "intake.command_timeout", 2, &["not a duration", "\"minuts\""]),
    ("[intake]\ndata_timeout = \"5M\"", "intake.data_timeout", 2, &["months"]),
    ("[intake]\ndata_timeout = \"0s\"", "intake.data_timeout", 2, &["at least 1 second"]),
    ("[intake]\nline_timeout = \"0s\"", "intake.line_timeout", 2, &["at least 1 second"]),
    ("[queue]\nmax_lifetime = \"2y\"", "queue.max_lifetime", 2, &["at most 365 days"]),
    ("[intake]\nsession_timeout = \"1m\"", "intake.session_timeout", 2, &["shorter than intake.command_timeout (default 5m)"]),
    ("[queue]\nmax_backoff = \"1m\"", "queue.max_backoff", 2, &["queue.max_backoff = \"1m\" is shorter than queue.min_backoff (default 5m)"]),
    // Networks.
    ("[intake]\nmynetworks = [\"10.0.0.0/33\"]", "intake.mynetworks", 2, &["prefix length must be a number from 0 to 32"]),
    ("[intake]\nmynetworks = [\"10.0.0.0/8x\"]", "intake.mynetworks", 2, &["prefix length"]),
    ("[intake]\nmynetworks = [\"example.com\"]", "intake.mynetworks", 2, &["not an IP network"]),
    ("[intake]\nmynetworks = [\"10.0.0.1/8\"]", "intake.mynetworks", 2, &["host bits are set", "\"10.0.0.0/8\"", "\"10.0.0.1/32\""]),
    ("[intake]\nmynetworks = [\"fd00::1/8\"]", "intake.mynetworks", 2, &["\"fd00::/8\""]),
    ("[intake]\nmynetworks = [\"0.0.0.0/0\"]", "intake.mynetworks", 2, &["open relay"]),
    ("[intake]\nmynetworks = [\"::/0\"]", "intake.mynetworks", 2, &["open relay"]),
    ("[intake]\nmynetworks = [\"::ffff:0.0.0.0/96\"]", "intake.mynetworks", 2, &["open relay"]),
    ("[intake]\nmynetworks = [\"0.0.0.0/1\", \"128.0.0.0/1\"]", "intake.mynetworks", 2, &["every IPv4 address", "open relay"]),
    ("[intake]\nmynetworks = [\"10.0.0.0/8\", \"10.0.0.0/8\"]", "intake.mynetworks", 2, &["listed twice"]),
    // Listen addresses.
    ("[intake]\nlisten = []", "intake.listen", 2, &["at least one address"]),
    ("[intake]\nlisten = [\"127.0.0.1:25\", \"127.0.0.1:25\"]", "intake.listen", 2, &["\"127.0.0.1:25\": listed twice"]),
    ("[intake]\nlisten = [\"0.0.0.0:25\", \"127.0.0.1:25\"]", "intake.listen", 2, &["overlaps \"0.0.0.0:25\""]),
    ("[intake]\nlisten = [\"localhost:25\"]", "intake.listen", 2, &["host names are not accepted"]),
    ("[intake]\nlisten = [\"127.0.0.1\"]", "intake.listen", 2, &["port is missing"]),
    ("[intake]\nlisten = [\"::1:25\"]", "intake.listen", 2, &["port is missing", "brackets"]),
    ("[intake]\nlisten = [\"127.0.0.1:0\"]", "intake.listen", 2, &["port 0"]),
    // Domains.
    ("hostname = \"bad_name.example.com\"", "hostname", 1, &["underscores"]),
    ("hostname = \"example.com.\"", "hostname", 1, &["trailing dot"]),
    ("hostname = \"192.0.2.1\"", "hostname", 1, &["IP address"]),
    ("hostname = \"bücher.example\"", "hostname", 1, &["xn--"]),
    ("[intake]\nlocal_domains = [\"*.example.com\"]", "intake.local_domains", 2, &["patterns are not supported"]),
    ("[intake]\nlocal_domains = [\"$HOST\"]", "intake.local_domains", 2, &["only \"$hostname\""]),
    ("hostname = \"a.example\"\n[intake]\nlocal_domains = [\"a.example\", \"$hostname\"]", "intake.local_domains", 3, &["\"$hostname\" is \"a.example\", which is already listed"]),
    // Paths and logging.
    ("spool = \"\"", "spool", 1, &["cannot be empty"]),
    ("control_socket = \"/run/postrelay/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\"", "control_socket", 1, &["Unix socket path must be shorter"]),
    ("[log]\nlevel = \"verbose\"", "log.level", 2, &["error, warn, info, debug, trace"]),
    ("[log]\nfile = \"\"", "log.file", 2, &["cannot be empty"]),
];

#[test]
fn invalid_files() {
    for (text, want_key, want_line, words) in INVALID {
        match err(text) {
            ConfigError::Invalid {
                origin,
                key,
                line,
                message,
            } => {
                assert_eq!(origin, "t.toml");
                assert_eq!(&key, want_key, "{text:?}: {message}");
                assert_eq!(line, Some(*want_line), "{text:?}: {message}");
                for w in *words {
                    assert!(message.contains(w), "{text:?}: {message:?} lacks {w:?}");
                }
            }
            other => panic!("{text:?}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let cases = [
        ("[intake\nlisten = 1", 1, 8),
        ("# comment\n\nhostname = \"a\"\nhostname = \"b\"", 4, 1),
        ("hostname = \"unterminated\n", 1, 25),
        ("[intake]\nlisten = [\"a\",", 2, 15),
    ];
    for (text, want_line, want_column) in cases {
        match err(text) {
            ConfigError::Parse { line, column, .. } => {
                assert_eq!((line, column), (want_line, want_column), "{text:?}");
            }
            other => panic!("{text:?}: expected Parse, got {other:?}"),
        }
    }
}

#[test]
fn lines_point_at_the_offending_entry() {
    let text = "# postrelay\n\nhostname = \"mx.example.org\"\n\n[intake]\n# trusted\nmynetworks = [\n  \"127.0.0.0/8\",\n  \"192.0.2.0/24\",\n  \"198.51.100.7/24\",\n]\n";
    let e = err(text);
    assert!(
        matches!(&e, ConfigError::Invalid { line: Some(10), key, .. } if key == "intake.mynetworks"),
        "{e:?}"
    );
    assert!(
        e.to_string().starts_with(
            "t.toml:10: intake.mynetworks entry \"198.51.100.7/24\": host bits are set"
        ),
        "{e}"
    );
    // Dotted keys and inline tables are located too.
    let e = err("intake.max_errors = 0");
    assert!(
        matches!(e, ConfigError::Invalid { line: Some(1), .. }),
        "{e:?}"
    );
    let e = err("\n\nqueue = { min_backoff = \"1s\", max_backoff = \"x\" }");
    assert!(
        matches!(e, ConfigError::Invalid { line: Some(3), ref key, .. } if key == "queue.max_backoff"),
        "{e:?}"
    );
}

#[test]
fn error_display() {
    let e = err("[intake]\nmessage_size_limit = \"25 MB?\"");
    assert_eq!(
        e.to_string(),
        "t.toml:2: intake.message_size_limit = \"25 MB?\": not a size; write e.g. \"25 MiB\" or 26214400"
    );
    let e = err("[intake\n");
    assert!(e.to_string().starts_with("t.toml:1:8: "), "{e}");
    let e = load(std::path::Path::new("/nonexistent/postrelay.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/postrelay.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn load_reads_a_file() {
    let dir = std::env::temp_dir().join(format!("postrelay-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("postrelay.toml");
    std::fs::write(
        &path,
        "hostname = \"mx.example.org\"\n[intake]\nmax_errors = 0\n",
    )
    .unwrap();
    let e = load(&path).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:3: ", path.display())),
        "{e}"
    );
    std::fs::write(&path, "hostname = \"mx.example.org\"\n").unwrap();
    assert_eq!(load(&path).unwrap().hostname, "mx.example.org");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn render_round_trips() {
    let custom = r#"
hostname = "mx.example.org"
spool = "/srv/spool with \"quotes\""
control_socket = "/run/postrelay.sock"
[intake]
listen = ["0.0.0.0:25", "[::]:587", "[2001:db8::1]:2525"]
mynetworks = ["10.0.0.0/8", "192.0.2.1", "fd00::/8", "::ffff:172.16.0.0/108"]
local_domains = ["example.org", "$hostname"]
message_size_limit = "1.5 GiB"
header_size_limit = 12345
line_length_limit = 10000
command_length_limit = 4096
max_recipients = 100
max_connections = 1
max_errors = 1
command_timeout = "1h 30m"
data_timeout = "1500ms"
session_timeout = "2 days"
[queue]
min_backoff = "1s"
max_backoff = "1w"
max_lifetime = "365d"
min_free_space = 0
[log]
level = "TRACE"
format = "json"
file = "/var/log/postrelay.log"
"#;
    for c in [ok(""), builtin_default(), ok(custom)] {
        let text = c.render();
        assert_eq!(ok(&text), c, "render:\n{text}");
    }
    let c = ok(custom);
    assert_eq!(c.intake.mynetworks[3], "172.16.0.0/12".parse().unwrap());
    assert_eq!(c.log.level, "trace");
    // tests::relay::render_round_trips_with_secrets checks that a fully
    // populated config renders every key the file accepts.
}

#[test]
fn example_file_is_the_defaults() {
    assert_eq!(parse(EXAMPLE, "postrelay.example.toml").unwrap(), ok(""));
}

#[test]
fn example_file_documents_every_key() {
    let documented = keys_in(EXAMPLE);
    for key in schema_keys().into_iter().chain(keys_in(&ok("").render())) {
        assert!(
            documented.contains(&key),
            "{key:?} is missing from postrelay.example.toml"
        );
    }
    // ... in the order of the file structs, and nothing else.
    assert_eq!(documented, schema_keys());
    // Every key's paragraph states its default.
    let paragraphs = EXAMPLE.split("\n\n").filter(|p| !keys_in(p).is_empty());
    for p in paragraphs {
        assert!(p.contains("Default:"), "no `Default:` in\n{p}");
    }
}

#[test]
fn uncommented_example_values_parse() {
    // The example's relay names files that exist only on a real system:
    // point them at protected files in a temporary directory.
    let dir = tempfile::tempdir().unwrap();
    let files = relay::Files::new(dir.path());
    let (submission_cert, submission_key, submission_users) =
        super::submission::fixtures::files(&files);
    let substitutions = [
        ("/etc/postrelay/secrets/ses", files.secret("ses", "pw\n")),
        (
            "/etc/postrelay/sasl_passwd",
            files.secret("sasl_passwd", ""),
        ),
        ("/etc/postrelay/relay-ca.pem", files.ca("relay-ca.pem")),
        ("/etc/postrelay/tls/cert.pem", submission_cert),
        ("/etc/postrelay/tls/key.pem", submission_key),
        ("/etc/postrelay/users", submission_users),
    ];
    // [cluster] only parses in a build with cluster mode; without it,
    // its lines are left out (tests::cluster checks the refusal).
    let cluster = cfg!(feature = "cluster");
    let redis = cluster.then(|| {
        (
            "/etc/postrelay/secrets/redis",
            files.secret("redis", "pw\n"),
        )
    });
    let substitutions = substitutions
        .into_iter()
        .chain(redis)
        .chain(routing::example_tables(&files));
    // The [relay.oauth] block goes on a relay of its own (a relay logs in
    // with a password or a token, not both): see `oauth`.
    let (example, _) = EXAMPLE.split_once("\n# [relay.oauth]\n").unwrap();
    let mut in_cluster = false;
    let mut uncommented: String = example
        .lines()
        .filter(|l| {
            if l.starts_with("# [") || l.starts_with('[') {
                in_cluster = *l == "# [cluster]";
            }
            cluster || !in_cluster
        })
        .map(|l| match l.strip_prefix("# ") {
            // spill_to names a second relay, which the example has not.
            Some(rest) if !keys_in(rest).is_empty() && !rest.starts_with("spill_to") => rest,
            Some(
                header @ ("[[relay]]"
                | "[relay.timeouts]"
                | "[relay.limits]"
                | "[intake.submission]"
                | "[cluster]"),
            ) => header,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    for (from, to) in substitutions {
        assert!(
            uncommented.contains(from),
            "the example no longer uses {from}"
        );
        uncommented = uncommented.replace(from, &to.display().to_string());
    }
    let c = ok(&uncommented);
    assert_eq!(c.relays.len(), 1, "{uncommented}");
    assert!(c.relays[0].credentials.is_some());
    assert!(c.intake.submission.is_some());
    assert!(c.routing.transport.is_some() && c.routing.rewrite_senders.is_some());
    assert_eq!(c.cluster.is_some(), cluster);
}

#[test]
fn restart_required_lists_changed_fixed_settings() {
    let a = ok("hostname = \"a.example\"");
    let b = ok(
        "hostname = \"b.example\"\nspool = \"/srv/spool\"\n[intake]\nlisten = [\"127.0.0.1:2525\"]\nmax_errors = 5\n[log]\nlevel = \"debug\"",
    );
    assert_eq!(a.restart_required(&a.clone()), Vec::<&str>::new());
    assert_eq!(
        a.restart_required(&b),
        vec!["spool", "control_socket", "intake.listen", "log.level"]
    );
}
