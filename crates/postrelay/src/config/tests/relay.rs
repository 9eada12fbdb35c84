//! Tests of `[[relay]]`, `[delivery]` and `[bounce]`; secret files,
//! credentials and `sasl_passwd` are in `secrets.rs`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::super::*;
use super::{err, ok, secs};

/// Writes files into a test's temporary directory.
pub(in crate::config) struct Files(pub(super) PathBuf);

impl Files {
    pub fn new(dir: &Path) -> Files {
        Files(dir.to_path_buf())
    }

    /// A file with `mode`, owned by the user running the tests.
    pub fn file(&self, name: &str, content: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// A properly protected secret file (mode 0600).
    pub fn secret(&self, name: &str, content: &str) -> PathBuf {
        self.file(name, content, 0o600)
    }

    /// A file that passes the `ca_file` check (the TLS code parses it).
    pub fn ca(&self, name: &str) -> PathBuf {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        self.file(name, pem, 0o644)
    }
}

pub(super) const PASSWORD: &str = "hunter2-SECRET";

/// A relay table with the given extra lines, after name and host.
pub(super) fn relay(extra: &str) -> String {
    format!("[[relay]]\nname = \"ses\"\nhost = \"email-smtp.us-east-1.amazonaws.com\"\n{extra}")
}

#[test]
fn relay_defaults() {
    let c = ok(&relay(""));
    let r = &c.relays[0];
    assert_eq!(r.name, "ses");
    assert_eq!(r.host, "email-smtp.us-east-1.amazonaws.com");
    assert_eq!(r.port, 587);
    assert_eq!(r.tls, TlsMode::Auto);
    assert_eq!(r.security, Security::Verify);
    assert_eq!(r.ca_file, None);
    assert_eq!(r.credentials, None);
    assert!(!r.allow_plaintext_auth && !r.verbose);
    assert_eq!(r.max_connections, 10);
    assert_eq!(r.max_messages_per_connection, 100);
    assert_eq!(r.idle_timeout, secs(10));
    let t = &r.timeouts;
    let got = [
        t.connect, t.greeting, t.ehlo, t.tls, t.auth, t.mail, t.rcpt, t.data, t.data_end, t.rset,
        t.quit,
    ];
    let want = [30, 30, 300, 30, 60, 300, 300, 180, 600, 20, 10].map(secs);
    assert_eq!(got, want);
}

#[test]
fn delivery_and_bounce_defaults() {
    let c = ok("hostname = \"mx.example.org\"");
    assert!(c.relays.is_empty());
    assert_eq!(
        c.delivery,
        DeliverySettings {
            enabled: true,
            sasl_passwd: None,
            max_workers: 20
        }
    );
    assert_eq!(
        c.bounce,
        BounceSettings {
            sender: String::new(),
            postmaster: "postmaster@mx.example.org".to_owned(),
            delay_warning: None,
        }
    );
    assert_eq!(builtin_default().relays, vec![]);
}

#[test]
fn ports_hosts_and_modes() {
    // (extra lines, host, port, tls, security)
    let cases = [
        (
            "",
            "email-smtp.us-east-1.amazonaws.com",
            587,
            TlsMode::Auto,
            Security::Verify,
        ),
        (
            "tls = \"implicit\"",
            "email-smtp.us-east-1.amazonaws.com",
            465,
            TlsMode::Implicit,
            Security::Verify,
        ),
        (
            "tls = \"implicit\"\nport = 2465",
            "email-smtp.us-east-1.amazonaws.com",
            2465,
            TlsMode::Implicit,
            Security::Verify,
        ),
        (
            "tls = \"starttls\"\nsecurity = \"may\"",
            "email-smtp.us-east-1.amazonaws.com",
            587,
            TlsMode::StartTls,
            Security::May,
        ),
        (
            "tls = \"starttls\"\nsecurity = \"none\"\nport = 25",
            "email-smtp.us-east-1.amazonaws.com",
            25,
            TlsMode::StartTls,
            Security::None,
        ),
        (
            "security = \"encrypt\"",
            "email-smtp.us-east-1.amazonaws.com",
            587,
            TlsMode::Auto,
            Security::Encrypt,
        ),
    ];
    for (extra, host, port, tls, security) in cases {
        let r = ok(&relay(extra)).relays.remove(0);
        assert_eq!(
            (r.host.as_str(), r.port, r.tls, r.security),
            (host, port, tls, security),
            "{extra}"
        );
    }
    // Brackets (Postfix's "no MX lookup") are stripped; names lower-cased,
    // IPv6 addresses canonical.
    let hosts = [
        ("[smtp.example.com]", "smtp.example.com"),
        ("SMTP.Example.COM", "smtp.example.com"),
        ("[192.0.2.25]", "192.0.2.25"),
        ("192.0.2.25", "192.0.2.25"),
        ("[2001:DB8::0:1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("[ipv6:2001:db8::1]", "2001:db8::1"),
        ("localhost", "localhost"),
    ];
    for (written, want) in hosts {
        let text = format!("[[relay]]\nname = \"a\"\nhost = \"{written}\"");
        assert_eq!(ok(&text).relays[0].host, want, "{written}");
    }
}

#[test]
fn relays_keep_their_order() {
    let text = "[[relay]]\nname = \"primary\"\nhost = \"a.example\"\n[relay.timeouts]\nconnect = \"5s\"\n\n[[relay]]\nname = \"fallback-2\"\nhost = \"b.example\"\nport = 2525\n";
    let c = ok(text);
    let names: Vec<_> = c.relays.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["primary", "fallback-2"]);
    assert_eq!(c.relays[0].timeouts.connect, secs(5));
    assert_eq!(c.relays[1].timeouts.connect, secs(30));
    assert_eq!(c.relays[1].port, 2525);
}

#[test]
fn bounce_settings() {
    let c = ok(
        "hostname = \"mx.example.org\"\n[bounce]\nsender = \"bounces@example.org\"\npostmaster = \"root\"\ndelay_warning = \"4h\"",
    );
    assert_eq!(c.bounce.sender, "bounces@example.org");
    assert_eq!(c.bounce.postmaster, "root@mx.example.org");
    assert_eq!(c.bounce.delay_warning, Some(secs(4 * 3600)));
    let c = ok("[bounce]\npostmaster = \"admin@example.net\"\ndelay_warning = \"off\"");
    assert_eq!(c.bounce.postmaster, "admin@example.net");
    assert_eq!(c.bounce.delay_warning, None);
}

/// (file text, dotted key, line, words the message must contain)
#[rustfmt::skip]
const INVALID: &[(&str, &str, usize, &[&str])] = &[
    // Table shapes and unknown keys.
    ("relay = 5", "relay", 1, &["`relay` must be an array of tables", "[[relay]]"]),
    ("relay = [5]", "relay[0]", 1, &["each `relay` must be a table"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\npassword = \"pw\"", "relay[0].password", 4, &["passwords are never written in this file", "password_file"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nprot = 25", "relay[0].prot", 4, &["did you mean `port`", "allowed keys in [[relay]]: name, provider, host, port"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nconnect = \"5s\"", "relay[0].connect", 4, &["`connect` belongs in [relay.timeouts]"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\n[relay.timeouts]\nport = 25", "relay[0].timeouts.port", 5, &["`port` belongs in [[relay]]: write it above the [relay.timeouts] header"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\n[relay.timeouts]\nconect = \"5s\"", "relay[0].timeouts.conect", 5, &["did you mean `connect`", "allowed keys in [relay.timeouts]: connect, greeting"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\ntimeouts = 5", "relay[0].timeouts", 4, &["`relay.timeouts` must be a table"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\n[delivery]\nmax_workers = 5\n[[relay]]\nmax_workers = 1", "relay[1].max_workers", 7, &["`max_workers` belongs in [delivery]"]),
    ("relayhost = \"[smtp.example.com]:587\"", "relayhost", 1, &["Postfix's relayhost is a [[relay]] table", "and the tables [daemon], [intake], [queue], [delivery], [bounce], [routing], [local], [log], [metrics], [cluster], [[relay]]"]),
    ("[delivery]\nsmtp_sasl_password_maps = \"hash:/etc/postfix/sasl_passwd\"", "delivery.smtp_sasl_password_maps", 2, &["delivery.sasl_passwd"]),
    // Names and hosts.
    ("[[relay]]\nhost = \"h.example\"", "relay[0].name", 1, &["relay #1: name is required"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\n\n[[relay]]\nhost = \"i.example\"", "relay[1].name", 5, &["relay #2: name is required"]),
    ("[[relay]]\nname = \"Primary\"\nhost = \"h.example\"", "relay[0].name", 2, &["relay \"Primary\": name = \"Primary\": use only lower-case letters, digits"]),
    ("[[relay]]\nname = \"\"\nhost = \"h.example\"", "relay[0].name", 2, &["relay #1: name = \"\": use only lower-case"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\n[[relay]]\nname = \"a\"\nhost = \"i.example\"", "relay[1].name", 5, &["relay \"a\": name = \"a\": is also the name of relay #1 (line 1); relay names must be unique"]),
    ("[[relay]]\nname = \"a\"", "relay[0].host", 1, &["relay \"a\": host is required"]),
    ("[[relay]]\nname = \"a\"\nhost = \"[smtp.example.com]:587\"", "relay[0].host", 3, &["write the port separately: host = \"smtp.example.com\" and port = 587"]),
    ("[[relay]]\nname = \"a\"\nhost = \"smtp.example.com:465\"", "relay[0].host", 3, &["host = \"smtp.example.com\" and port = 465"]),
    ("[[relay]]\nname = \"a\"\nhost = \"smtp_relay.example.com\"", "relay[0].host", 3, &["not a host name or IP address", "underscores"]),
    ("[[relay]]\nname = \"a\"\nhost = \"smtp example\"", "relay[0].host", 3, &["not a host name or IP address"]),
    ("[[relay]]\nname = \"a\"\nhost = \"\"", "relay[0].host", 3, &["cannot be empty"]),
    ("[[relay]]\nname = \"a\"\nhost = 5", "relay[0].host", 3, &["relay \"a\": host = 5", "expected a string"]),
    // Ports, modes, security.
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nport = 0", "relay[0].port", 4, &["relay \"a\": port = 0: must be a port number from 1 to 65535"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nport = 70000", "relay[0].port", 4, &["port = 70000", "port number from 1 to 65535"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nport = \"587\"", "relay[0].port", 4, &["port number from 1 to 65535"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\ntls = \"ssl\"", "relay[0].tls", 4, &["unknown TLS mode", "write \"implicit\""]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\ntls = \"STARTTLS\"", "relay[0].tls", 4, &["\"auto\", \"starttls\" or \"implicit\""]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nsecurity = \"secure\"", "relay[0].security", 4, &["unknown security level", "\"verify\" checks the certificate's chain and name, as Postfix's \"secure\""]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nsecurity = \"dane\"", "relay[0].security", 4, &["not supported"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\ntls = \"implicit\"\nsecurity = \"none\"", "relay[0].security", 5, &["relay \"a\": tls = \"implicit\" starts every session with TLS, but security = \"none\" means no TLS"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nsecurity = \"may\"\nca_file = \"/etc/ssl/ca.pem\"", "relay[0].ca_file", 5, &["ca_file is only used to verify", "security = \"may\" does not do"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nca_file = \"/nonexistent/ca.pem\"", "relay[0].ca_file", 4, &["relay \"a\": ca_file /nonexistent/ca.pem does not exist"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nca_file = \"\"", "relay[0].ca_file", 4, &["cannot be empty"]),
    ("[[relay]]\nname = \"a\"\nhost = \"192.0.2.1\"\nsecurity = \"encrypt\"\ntls_name = \"smtp.example.com\"", "relay[0].tls_name", 5, &["tls_name is the name the certificate is verified against", "security = \"encrypt\" does not do"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nfallbacks = [\"a\"]", "relay[0].fallbacks", 4, &["relay \"a\": fallbacks", "\"a\" is this relay itself"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nfallbacks = [\"b\"]\n[[relay]]\nname = \"c\"\nhost = \"c.example\"", "relay[0].fallbacks", 4, &["\"b\" is not a [[relay]] name (the relays are: a, c)"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nfallbacks = [\"c\", \"c\"]\n[[relay]]\nname = \"c\"\nhost = \"c.example\"", "relay[0].fallbacks", 4, &["\"c\" is listed twice"]),
    ("[[relay]]\nname = \"a\"\nhost = \"192.0.2.1\"\ntls_name = \"smtp example\"", "relay[0].tls_name", 4, &["relay \"a\": tls_name = \"smtp example\"", "the DNS name (or IP address) the relay's certificate is issued for"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nallow_plaintext_auth = true", "relay[0].allow_plaintext_auth", 4, &["allow_plaintext_auth = true with security (default \"verify\")", "no effect", "only accepted with security = \"none\""]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nsecurity = \"may\"\nallow_plaintext_auth = true", "relay[0].allow_plaintext_auth", 5, &["credentials would cross the network in clear text", "use TLS"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nallow_plaintext_auth = \"yes\"", "relay[0].allow_plaintext_auth", 4, &["expected true or false"]),
    // Limits and timeouts.
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nmax_connections = 0", "relay[0].max_connections", 4, &["at least 1"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nmax_messages_per_connection = 0", "relay[0].max_messages_per_connection", 4, &["at least 1"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nmax_messages_per_connection = -1", "relay[0].max_messages_per_connection", 4, &["expected a whole number"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nidle_timeout = \"500ms\"", "relay[0].idle_timeout", 4, &["relay \"a\": idle_timeout = \"500ms\": must be at least 1 second"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\n[relay.timeouts]\ndata_end = \"2h\"", "relay[0].timeouts.data_end", 5, &["relay \"a\": timeouts.data_end = \"2h\": must be at most 1h"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\n[relay.timeouts]\nconnect = 30", "relay[0].timeouts.connect", 5, &["no unit", "\"30s\""]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\n[relay.timeouts]\nquit = \"0s\"", "relay[0].timeouts.quit", 5, &["at least 1 second"]),
    // Credentials that fail before any file is read.
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\npassword_file = \"/etc/postrelay/secrets/a\"", "relay[0].password_file", 4, &["relay \"a\": password_file is set without username"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nusername = \"bob\"", "relay[0].username", 4, &["relay \"a\": username is set but there is no password", "password_file = \"/etc/postrelay/secrets/a\"", "\"[h.example]:587 bob:PASSWORD\""]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nusername = \"\"", "relay[0].username", 4, &["cannot be empty"]),
    ("[[relay]]\nname = \"a\"\nhost = \"h.example\"\nusername = \"u\"\npassword_file = \"/nonexistent/pw\"", "relay[0].password_file", 5, &["relay \"a\": password_file /nonexistent/pw does not exist"]),
    // [delivery]
    ("[delivery]\nmax_workers = 0", "delivery.max_workers", 2, &["at least 1"]),
    ("[delivery]\nsasl_passwd = \"\"", "delivery.sasl_passwd", 2, &["cannot be empty"]),
    ("[delivery]\nsasl_passwd = \"/nonexistent/sasl_passwd\"", "delivery.sasl_passwd", 2, &["delivery.sasl_passwd /nonexistent/sasl_passwd does not exist"]),
    // [bounce]
    ("[bounce]\nsender = \"<>\"", "bounce.sender", 2, &["write \"\" for the null sender <>"]),
    ("[bounce]\nsender = \"<bounces@example.org>\"", "bounce.sender", 2, &["without angle brackets"]),
    ("[bounce]\nsender = \"bounces\"", "bounce.sender", 2, &["bounce.sender = \"bounces\": not an address: missing @domain; e.g. \"bounces@example.com\", or \"\" for the null sender <>"]),
    ("[bounce]\nsender = \"bounces@bücher.example\"", "bounce.sender", 2, &["ASCII"]),
    ("[bounce]\nsender = \"bounces@[192.0.2.1]\"", "bounce.sender", 2, &["not an address literal"]),
    ("[bounce]\npostmaster = \"\"", "bounce.postmaster", 2, &["double bounces need somewhere to go"]),
    ("hostname = \"mx.example.org\"\n[bounce]\npostmaster = \"post master\"", "bounce.postmaster", 3, &["not a local part (completed as post master@mx.example.org)"]),
    ("[bounce]\npostmaster = \"a@b@c\"", "bounce.postmaster", 2, &["not an address"]),
    ("[bounce]\ndelay_warning = \"5d\"", "bounce.delay_warning", 2, &["delay_warning = \"5d\" is not shorter than queue.max_lifetime (default 5d), after which the message is bounced", "\"off\""]),
    ("[queue]\nmax_lifetime = \"1d\"\n[bounce]\ndelay_warning = \"2d\"", "bounce.delay_warning", 4, &["queue.max_lifetime = \"1d\""]),
    ("[bounce]\ndelay_warning = 4", "bounce.delay_warning", 2, &["no unit", "\"off\""]),
    ("[bounce]\ndelay_warning = false", "bounce.delay_warning", 2, &["write \"off\""]),
    ("[bounce]\ndelay_warning = \"never\"", "bounce.delay_warning", 2, &["not a duration", "or \"off\""]),
];

#[test]
fn invalid_relay_files() {
    for (text, want_key, want_line, words) in INVALID {
        check_invalid("t.toml", &err(text), want_key, *want_line, words, text);
    }
}

pub(super) fn check_invalid(
    want_origin: &str,
    e: &ConfigError,
    want_key: &str,
    want_line: usize,
    words: &[&str],
    text: &str,
) {
    match e {
        ConfigError::Invalid {
            origin,
            key,
            line,
            message,
        } => {
            assert_eq!(origin, want_origin, "{text:?}: {message}");
            assert_eq!(key, want_key, "{text:?}: {message}");
            assert_eq!(*line, Some(want_line), "{text:?}: {message}");
            for w in words {
                assert!(message.contains(w), "{text:?}: {message:?} lacks {w:?}");
            }
        }
        other => panic!("{text:?}: expected Invalid, got {other:?}"),
    }
}

#[test]
fn error_display_names_the_relay() {
    let e = err("# relays\n[[relay]]\nname = \"ses\"\nhost = \"h.example\"\nport = 0\n");
    assert_eq!(
        e.to_string(),
        "t.toml:5: relay \"ses\": port = 0: must be a port number from 1 to 65535"
    );
}
