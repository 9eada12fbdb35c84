//! The relay setup guides describe, copied as an administrator would: a
//! transport map `* smtp:[provider]:587`, a Postfix `sasl_passwd` line for
//! that next hop, an aliases file in Postfix syntax, and no `[[relay]]`.
//! Against the real Postfix provider (STARTTLS, AUTH required) the mail
//! must authenticate over verified TLS, and `check-config` must say so.
//!
//! The provider's CA is made the system's trust store for the daemon with
//! `SSL_CERT_FILE` (what installing it into /etc/ssl would do), since an
//! `smtp:` next hop verifies against the system's CAs.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::daemon::{Daemon, Options};
use support::peers::require;
use support::provider::Provider;
use support::smtp::send_one as send;

/// The guide's files: transport map, sasl_passwd (0600) and aliases.
struct GuideFiles {
    dir: tempfile::TempDir,
}

impl GuideFiles {
    fn new(p: &Provider, next_hop: &str) -> GuideFiles {
        let dir = tempfile::tempdir().unwrap();
        let port = p.starttls_port;
        std::fs::write(
            dir.path().join("transport"),
            format!("# /etc/postfix/transport\n*    smtp:[{next_hop}]:{port}\n"),
        )
        .unwrap();
        let sasl = dir.path().join("sasl_passwd");
        std::fs::write(
            &sasl,
            format!("[{next_hop}]:{port}    {}:{}\n", p.user, p.password),
        )
        .unwrap();
        std::fs::set_permissions(&sasl, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            dir.path().join("aliases"),
            "# /etc/aliases\npostmaster:    root\nroot:          ops@dest.example\n",
        )
        .unwrap();
        GuideFiles { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The daemon options: the tables, sasl_passwd, and `ca` as the
    /// system's trust store.
    fn options(&self, ca: &Path) -> Options {
        Options {
            delivery: true,
            delivery_extra: format!("sasl_passwd = \"{}\"\n", self.path("sasl_passwd").display()),
            tail: format!(
                "[routing]\ntransport = \"{}\"\naliases = \"{}\"\n",
                self.path("transport").display(),
                self.path("aliases").display()
            ),
            env: vec![("SSL_CERT_FILE".into(), ca.display().to_string())],
            ..Options::default()
        }
    }
}

fn guide_delivers_authenticated_over_verified_tls(next_hop: &str) {
    if !(require("postfix") && require("saslpasswd2")) {
        return;
    }
    let p = Provider::start();
    let files = GuideFiles::new(&p, next_hop);
    let d = Daemon::start_with(files.options(&p.ca_file()));

    // check-config says what the route does, before anything is sent.
    let out = d.cli(&["check-config"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = format!(
        " *: smtp:[{next_hop}]:{port} (tls auto, TLS required, certificate verified (security verify), AUTH as \"{user}\" (from {sasl}))",
        port = p.starttls_port,
        user = p.user,
        sasl = files.path("sasl_passwd").display()
    );
    assert!(
        text.lines().any(|l| l.ends_with(&line)),
        "check-config must describe the route:\n{text}"
    );

    send(d.port, "rcpt@dest.example", "to the outside");
    // A bounce-worthy local recipient through the Postfix-syntax aliases.
    send(d.port, "postmaster@relay.test", "to the postmaster");
    let got = p.wait_delivered(2, Duration::from_secs(60));
    let texts: Vec<String> = got
        .iter()
        .map(|(_, m)| String::from_utf8_lossy(m).into_owned())
        .collect();
    for (subject, rcpt) in [
        ("to the outside", "rcpt@dest.example"),
        ("to the postmaster", "ops@dest.example"),
    ] {
        let m = texts
            .iter()
            .find(|t| t.contains(&format!("Subject: {subject}")))
            .unwrap_or_else(|| panic!("{subject} not delivered: {texts:#?}"));
        assert!(m.contains(&format!("X-Original-To: {rcpt}")), "{m}");
        // Postfix notes TLS and the authenticated sender in its Received:.
        assert!(m.contains("using TLS"), "not over TLS: {m}");
    }
    p.assert_auth_plain();
}

#[test]
fn the_guides_transport_line_authenticates_over_verified_tls() {
    guide_delivers_authenticated_over_verified_tls("127.0.0.1");
}

#[test]
fn the_guides_transport_line_with_the_providers_name() {
    guide_delivers_authenticated_over_verified_tls("localhost");
}

/// The next hop verifies the certificate: against a trust store without
/// the provider's CA, nothing is sent and the mail waits with a reason
/// about the certificate.
#[test]
fn the_next_hop_verifies_the_certificate() {
    if !(require("postfix") && require("saslpasswd2")) {
        return;
    }
    let p = Provider::start();
    let other = Provider::start();
    let files = GuideFiles::new(&p, "127.0.0.1");
    // The other instance's CA signed a different certificate.
    let d = Daemon::start_with(files.options(&other.ca_file()));
    send(d.port, "rcpt@dest.example", "must not leave");
    let deadline = Instant::now() + Duration::from_secs(60);
    let q = loop {
        let q = String::from_utf8(d.cli(&["queue", "list"]).stdout).unwrap();
        if q.contains("certificate") || !p.delivered().is_empty() {
            break q;
        }
        assert!(
            Instant::now() < deadline,
            "no certificate failure:\n{q}\n{}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(p.delivered().is_empty(), "{q}");
}
