//! `postrelay doctor` against real peers: the private provider
//! (`scripts/provider`: Postfix with a STARTTLS + AUTH port and an
//! implicit TLS + AUTH port, its own CA), a private DNS server (dnsmasq)
//! serving the sending domain's SPF, DKIM and DMARC, and a running daemon.
//!
//! Each broken setup must be named, with its fix, in both output forms
//! (the JSON object and the text for people), and make the exit status 1.
//! The healthy run's time is printed (measured, never asserted).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use support::daemon::{self, Daemon, Options};
use support::deadport::DeadPort;
use support::doctor::*;
use support::fakeserver::{Script, TestPki};

#[test]
fn a_healthy_setup_is_all_ok() {
    let Some(dns) = peers_and_zone(GOOD_SPF) else {
        return;
    };
    let p = provider();
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path(), "pw", &p.password);
    let tail = format!(
        "{}{}{ROUTING}",
        relay("submission", p.starttls_port, "starttls", &pw, ""),
        relay("wrapped", p.implicit_port, "implicit", &pw, "")
    );
    let d = Daemon::start_with(Options {
        tail,
        ..Options::default()
    });
    let r = reports(&d.config, &dns);
    eprintln!(
        "healthy setup diagnosed in {} ms (JSON run)\n{}",
        r.json["elapsed_ms"], r.text
    );
    r.expect(
        "relay.tls_mode",
        "relay submission",
        "ok",
        "speaks STARTTLS",
        "",
    );
    r.expect(
        "relay.tls_mode",
        "relay wrapped",
        "ok",
        "speaks implicit TLS",
        "",
    );
    for name in ["relay submission", "relay wrapped"] {
        r.expect("relay.ehlo", name, "ok", "AUTH PLAIN LOGIN", "");
        r.expect(
            "relay.auth",
            name,
            "ok",
            "AUTH PLAIN as relayuser@example.net accepted",
            "",
        );
        r.expect(
            "relay.certificate",
            name,
            "ok",
            "verified for 127.0.0.1",
            "",
        );
    }
    r.expect("config", "postrelay.toml", "ok", "2 relays", "");
    r.expect("secrets", "pw.secret", "ok", "mode 0600", "");
    r.expect(
        "daemon",
        "control socket",
        "ok",
        env!("CARGO_PKG_VERSION"),
        "",
    );
    r.expect("spool", "spool", "ok", "writable", "");
    r.expect(
        "dns.spf",
        "example.test",
        "ok",
        "include:spf.provider.test",
        "",
    );
    r.expect(
        "dns.dkim",
        "example.test",
        "ok",
        "sel1._domainkey.example.test",
        "",
    );
    r.expect("dns.dmarc", "example.test", "ok", "alignment can pass", "");
    assert_eq!(r.json["verdict"], "ok", "{}", r.text);
    assert_eq!((r.json_status, r.text_status), (Some(0), Some(0)));
}

#[test]
fn a_wrong_password_is_named_with_its_file() {
    let Some(dns) = peers_and_zone(GOOD_SPF) else {
        return;
    };
    let s = Setup::new(|dir| {
        let pw = password_file(dir, "wrong", "not-the-password");
        relay("submission", provider().starttls_port, "starttls", &pw, "")
    });
    let r = reports(&s.config, &dns);
    r.expect(
        "relay.auth",
        "relay submission",
        "problem",
        "relay refused the credentials of user relayuser@example.net",
        "wrong.secret",
    );
    r.expect(
        "daemon",
        "control socket",
        "problem",
        "no daemon answers",
        "systemctl start postrelay",
    );
    r.failed();
}

#[test]
fn swapped_tls_modes_are_found_by_probing() {
    let Some(dns) = peers_and_zone(GOOD_SPF) else {
        return;
    };
    let p = provider();
    let s = Setup::new(|dir| {
        let pw = password_file(dir, "pw", &p.password);
        format!(
            "{}{}",
            relay("says-starttls", p.implicit_port, "starttls", &pw, ""),
            relay("says-implicit", p.starttls_port, "implicit", &pw, "")
        )
    });
    let r = reports(&s.config, &dns);
    r.expect(
        "relay.tls_mode",
        "relay says-starttls",
        "problem",
        "speaks implicit TLS",
        "set tls = \"implicit\"",
    );
    r.expect(
        "relay.tls_mode",
        "relay says-implicit",
        "problem",
        "speaks STARTTLS",
        "set tls = \"starttls\"",
    );
    // The rest is still diagnosed in the mode the port really speaks.
    r.expect("relay.auth", "relay says-starttls", "ok", "accepted", "");
    r.failed();
}

#[test]
fn a_world_readable_secret_file_is_named_with_chmod() {
    let Some(dns) = peers_and_zone(GOOD_SPF) else {
        return;
    };
    let mut path = PathBuf::new();
    let s = Setup::new(|dir| {
        let pw = password_file(dir, "loose", &provider().password);
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        path = pw.clone();
        relay("submission", provider().starttls_port, "starttls", &pw, "")
    });
    let r = reports(&s.config, &dns);
    let chmod = format!("chmod 600 {}", path.display());
    r.expect(
        "secrets",
        "loose.secret",
        "problem",
        "readable by group or others (mode 0644)",
        &chmod,
    );
    r.expect(
        "config",
        "postrelay.toml",
        "problem",
        "does not load",
        "check-config",
    );
    r.expect(
        "relay.auth",
        "relay submission",
        "warning",
        "credentials not tried",
        "secrets",
    );
    // Loaded without its secrets, the relay also lacks its ca_file: not
    // a reason to blame its certificate.
    r.expect(
        "relay.certificate",
        "relay submission",
        "warning",
        "not verified",
        "secrets",
    );
    r.failed();
}

#[test]
fn an_unreachable_port_is_named() {
    let Some(dns) = peers_and_zone(GOOD_SPF) else {
        return;
    };
    let dead = DeadPort::new();
    let s = provider_relay("gone", dead.port(), "starttls", "");
    let r = reports(&s.config, &dns);
    r.expect(
        "relay.connect",
        "relay gone",
        "problem",
        "Connection refused",
        "check host and port",
    );
    let port = format!("{} (a relay's port) refused", dead.port());
    r.expect(
        "reach",
        "outbound to 127.0.0.1",
        "problem",
        &port,
        "cannot be reached",
    );
    r.failed();
}

#[test]
fn a_certificate_for_another_name_is_named_with_tls_name() {
    let Some(dns) = peers_and_zone(GOOD_SPF) else {
        return;
    };
    let extra = "tls_name = \"mail.elsewhere.test\"";
    let s = provider_relay("misnamed", provider().starttls_port, "starttls", extra);
    let r = reports(&s.config, &dns);
    r.expect(
        "relay.certificate",
        "relay misnamed",
        "problem",
        "not valid for the name \"mail.elsewhere.test\"",
        "set tls_name = \"localhost\"",
    );
    r.expect(
        "relay.auth",
        "relay misnamed",
        "warning",
        "credentials not tried",
        "certificate",
    );
    r.failed();
}

#[test]
fn spf_without_the_providers_include_is_named_with_the_record_to_publish() {
    let Some(dns) = peers_and_zone("v=spf1 mx -all") else {
        return;
    };
    let s = provider_relay("submission", provider().starttls_port, "starttls", "");
    let r = reports(&s.config, &dns);
    r.expect(
        "dns.spf",
        "example.test",
        "problem",
        "does not include your provider",
        "\"v=spf1 mx include:spf.provider.test -all\"",
    );
    // DKIM still aligns, so DMARC can pass.
    r.expect("dns.dmarc", "example.test", "ok", "through DKIM", "");
    r.failed();
    drop(s.dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_certificate_is_named_with_its_date() {
    if !peers_present() {
        return;
    }
    let pki = TestPki::expired();
    let script = Script {
        starttls: true,
        tls: Some(pki.server_config.clone()),
        auth: vec!["PLAIN", "LOGIN"],
        ..Script::default()
    };
    let r = fake_relay_reports(script, &pki).await;
    r.expect(
        "relay.certificate",
        "relay fake",
        "problem",
        "expires 2021-01-01",
        "expired on 2021-01-01: the provider must renew it",
    );
    r.expect(
        "relay.auth",
        "relay fake",
        "warning",
        "credentials not tried",
        "certificate",
    );
    r.failed();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_never_greets_costs_bounded_time() {
    if !peers_present() {
        return;
    }
    let pki = TestPki::new();
    let script = Script {
        greet: false,
        ..Script::default()
    };
    let r = fake_relay_reports(script, &pki).await;
    eprintln!("silent relay: elapsed_ms {}", r.json["elapsed_ms"]);
    r.expect(
        "relay.connect",
        "relay fake",
        "problem",
        "timed out after 3 s waiting for the SMTP greeting",
        "check host and port",
    );
    r.failed();
}

#[test]
fn deferred_mail_is_counted_with_its_reason() {
    let Some(dns) = peers_and_zone(GOOD_SPF) else {
        return;
    };
    let dead = DeadPort::new();
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path(), "pw", "unused");
    let d = Daemon::start_with(Options {
        delivery: true,
        tail: format!(
            "{}{ROUTING}",
            relay("gone", dead.port(), "starttls", &pw, "")
        ),
        ..Options::default()
    });
    let (mut c, greeting) = support::smtp::Raw::connect(d.port);
    assert_eq!(greeting.code, 220);
    for (line, code) in [
        ("EHLO client.example", 250),
        ("MAIL FROM:<cron@relay.test>", 250),
        ("RCPT TO:<someone@dest.example>", 250),
        ("DATA", 354),
        ("Subject: waits\r\n\r\nbody\r\n.", 250),
    ] {
        assert_eq!(c.cmd(line).code, code, "{line}");
    }
    // Bounded wait for the first (failed) attempt to be recorded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let id = loop {
        let q = d.queue();
        if let Some(m) = q.first().filter(|m| m["attempts"].as_u64() >= Some(1)) {
            break m["id"].as_str().unwrap().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no attempt after 20 s: {q:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let r = reports(&d.config, &dns);
    r.expect(
        "queue",
        "spool",
        "warning",
        "1 message(s) queued, 1 deferred, 0 on hold",
        &format!("postrelay queue show {id}"),
    );
    let evidence = r.finding("queue", "spool")["evidence"].as_str().unwrap();
    assert!(evidence.contains("most common reasons: 1× ("), "{evidence}");
    assert!(evidence.contains("refused"), "{evidence}");
}

#[test]
fn a_certificate_from_another_ca_is_named_with_ca_file() {
    let Some(dns) = peers_and_zone(GOOD_SPF) else {
        return;
    };
    let s = Setup::new(|dir| {
        let other_ca = dir.join("other-ca.pem");
        std::fs::write(&other_ca, TestPki::new().ca_pem).unwrap();
        let pw = password_file(dir, "pw", &provider().password);
        let auth = (other_ca.as_path(), provider().user.as_str(), pw.as_path());
        relay_at("strange", provider().starttls_port, "starttls", auth, "")
    });
    let r = reports(&s.config, &dns);
    r.expect(
        "relay.certificate",
        "relay strange",
        "problem",
        "not signed by a trusted CA (unknown issuer; self-signed?)",
        "set ca_file to that CA's certificate",
    );
    r.failed();
}

#[test]
fn a_probe_host_has_its_smtp_ports_probed() {
    // No relay, no DNS, no daemon: only loopback's ports 25, 465 and 587.
    let s = Setup::new(|_| String::new());
    let out = Command::new(daemon::bin())
        .arg("doctor")
        .arg("--config")
        .arg(&s.config)
        .args(["--probe-host", "127.0.0.1", "--json", "--timeout", "2s"])
        .env_remove("POSTRELAY_CONFIG")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reach: Vec<&Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "reach")
        .collect();
    assert_eq!(reach.len(), 1, "{v:#}");
    assert_eq!(reach[0]["subject"], "outbound to 127.0.0.1");
    let evidence = reach[0]["evidence"].as_str().unwrap();
    for port in ["25 ", "465 ", "587 "] {
        assert!(evidence.contains(port), "{evidence}");
    }
    // No relay uses them: information, not a problem.
    assert_eq!(reach[0]["verdict"], "ok", "{v:#}");
}

#[test]
fn a_secret_file_not_owned_by_the_daemon_user_is_named_with_chown() {
    let Some(dns) = peers_and_zone(GOOD_SPF) else {
        return;
    };
    let mut path = PathBuf::new();
    // The daemon would drop to nobody: a file of root's is not its own.
    let s = Setup::as_user(Some("nobody"), |dir| {
        let pw = password_file(dir, "roots", &provider().password);
        path = pw.clone();
        relay("submission", provider().starttls_port, "starttls", &pw, "")
    });
    let r = reports(&s.config, &dns);
    let chown = format!("chown nobody {}", path.display());
    r.expect(
        "secrets",
        "roots.secret",
        "problem",
        "is owned by root (uid 0), but postrelay runs as nobody",
        &chown,
    );
    r.expect(
        "config",
        "postrelay.toml",
        "problem",
        "does not load",
        "check-config",
    );
    r.failed();
}
