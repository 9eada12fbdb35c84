//! The `smtp:` next hops of the transport map: which settings each gets,
//! the refusal of one that would miss its credentials, and what
//! `check-config` prints per route.

use super::super::*;
use super::relay::Files;
use super::{err, ok};

/// A configuration with `transport` as the transport map, `sasl` as the
/// sasl_passwd file (if any), and `extra` appended.
fn config_text(files: &Files, transport: &str, sasl: Option<&str>, extra: &str) -> String {
    let t = files.file("transport", transport, 0o644);
    let delivery = match sasl {
        Some(s) => format!(
            "[delivery]\nsasl_passwd = \"{}\"\n",
            files.secret("sasl_passwd", s).display()
        ),
        None => String::new(),
    };
    format!(
        "hostname = \"mx.example.org\"\n{delivery}[routing]\ntransport = \"{}\"\n{extra}",
        t.display()
    )
}

#[test]
fn an_smtp_next_hop_verifies_and_authenticates_with_its_sasl_passwd_entry() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let c = ok(&config_text(
        &files,
        "*  smtp:[Email-SMTP.example.com]:587\n.lan.example smtp:[10.0.0.25]\n",
        Some("[email-smtp.example.com]:587 AKIAEXAMPLE:s3cret\n"),
        "",
    ));
    assert_eq!(c.next_hops.len(), 2, "{:?}", c.next_hops);
    let ses = c
        .next_hops
        .iter()
        .find(|h| h.is_at("email-smtp.example.com", 587))
        .unwrap();
    assert_eq!(ses.security, Security::Verify);
    assert_eq!(ses.tls, TlsMode::Auto);
    assert_eq!(ses.credentials.as_ref().unwrap().username, "AKIAEXAMPLE");
    let lan = c
        .next_hops
        .iter()
        .find(|h| h.is_at("10.0.0.25", 25))
        .unwrap();
    assert_eq!(lan.security, Security::Verify, "the secure default");
    assert_eq!(lan.credentials, None, "no entry, no AUTH");

    let routes = c.describe_routes();
    assert!(
        routes.contains(
            "*: smtp:[email-smtp.example.com]:587 (tls auto, TLS required, certificate verified (security verify), AUTH as \"AKIAEXAMPLE\""
        ),
        "{routes}"
    );
    assert!(
        routes.contains(".lan.example: smtp:[10.0.0.25]:25 (tls auto, TLS required, certificate verified (security verify), no AUTH)"),
        "{routes}"
    );
    assert!(!routes.contains("s3cret"), "{routes}");
}

#[test]
fn a_next_hop_at_a_relays_host_and_port_is_that_relay() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let relay = "[[relay]]\nname = \"lan\"\nhost = \"10.0.0.25\"\nport = 25\ntls = \"starttls\"\nsecurity = \"may\"\n";
    let c = ok(&config_text(
        &files,
        "*  smtp:[10.0.0.25]:25\n",
        None,
        relay,
    ));
    assert!(c.next_hops.is_empty(), "{:?}", c.next_hops);
    let routes = c.describe_routes();
    assert!(
        routes.contains(
            "*: smtp:[10.0.0.25]:25 = relay \"lan\" (tls starttls, TLS if offered (security may), no AUTH)"
        ),
        "{routes}"
    );
}

/// The classic slip: the sasl_passwd entry is for port 587, the transport
/// line names the host without a port (25). The mail would go out without
/// AUTH: refused at load, naming both lines.
#[test]
fn a_next_hop_whose_credentials_are_for_another_port_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let e = err(&config_text(
        &files,
        "# guide\n*  smtp:[email-smtp.example.com]\n",
        Some("[email-smtp.example.com]:587 AKIAEXAMPLE:s3cret\n"),
        "",
    ))
    .to_string();
    assert!(e.contains("transport:2"), "{e}");
    assert!(
        e.contains("would send without AUTH")
            && e.contains("\"[email-smtp.example.com]:587\" (line 1)"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");
}

#[test]
fn a_named_relay_is_described_with_its_fallbacks() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let relays = "[[relay]]\nname = \"a\"\nhost = \"a.example\"\nfallbacks = [\"b\"]\n\
                  [[relay]]\nname = \"b\"\nhost = \"b.example\"\nsecurity = \"encrypt\"\n";
    let c = ok(&config_text(&files, "*  relay:a\n", None, relays));
    assert_eq!(c.relays[0].fallbacks, ["b"]);
    let routes = c.describe_routes();
    assert!(
        routes.contains(
            "*: relay \"a\" (tls auto, TLS required, certificate verified (security verify), no AUTH); then relay \"b\" (tls auto, TLS required, certificate not checked (security encrypt), no AUTH)"
        ),
        "{routes}"
    );
}
