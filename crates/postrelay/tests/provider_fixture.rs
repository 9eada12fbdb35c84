//! Self-test of the provider fixture (`support/provider.rs`,
//! `scripts/provider`): a real Postfix smart host with STARTTLS and
//! implicit-TLS submission, SASL AUTH and a catch-all Maildir, exercised
//! with swaks and openssl.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::peers::require as require_peer;
use support::provider::Provider;

fn peers_present() -> bool {
    require_peer("postfix") && require_peer("swaks") && require_peer("openssl")
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("spawn")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// swaks against the provider; `tls` is "--tls", "--tls-on-connect" or "".
fn swaks(port: u16, tls: &str, user: &str, password: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &format!("127.0.0.1:{port}"), "--timeout", "20"]);
    if !tls.is_empty() {
        cmd.arg(tls);
    }
    if !user.is_empty() {
        cmd.args([
            "--auth",
            "PLAIN",
            "--auth-user",
            user,
            "--auth-password",
            password,
        ]);
    }
    cmd.args(extra);
    run(&mut cmd)
}

/// The part after the first empty line, CRLF normalised to LF.
fn body(raw: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let idx = s.find("\n\n").expect("header/body separator") + 2;
    s.as_bytes()[idx..].to_vec()
}

fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    raw.lines()
        .take_while(|l| !l.is_empty())
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l[name.len() + 1..].trim())
}

#[test]
fn delivers_through_both_ports_byte_identical() {
    if !peers_present() {
        return;
    }
    let started = std::time::Instant::now();
    let p = Provider::start();
    eprintln!("Provider::start() took {:?}", started.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let message = |tag: &str| {
        format!(
            "From: Sender <sender@origin.example>\r\n\
             To: rcpt@dest.example\r\n\
             Subject: fixture {tag}\r\n\
             Message-ID: <{tag}@origin.example>\r\n\
             \r\n\
             line one\r\n\
             \tline two with a tab and trailing space \r\n\
             \r\n\
             caf\u{e9} 8bit line\r\n\
             last line\r\n"
        )
    };
    for (tag, port, tls) in [
        ("starttls", p.starttls_port, "--tls"),
        ("implicit", p.implicit_port, "--tls-on-connect"),
    ] {
        let file = dir.path().join(format!("{tag}.eml"));
        // swaks sends the file, then "\r\n.\r\n": leave off the final CRLF.
        let m = message(tag);
        std::fs::write(&file, m.strip_suffix("\r\n").unwrap()).unwrap();
        let out = swaks(
            port,
            tls,
            &p.user,
            &p.password,
            &[
                "--from",
                "bounce@origin.example",
                "--to",
                &format!("{tag}@dest.example"),
                "--data",
                &format!("@{}", file.display()),
            ],
        );
        assert!(
            out.status.success(),
            "swaks via {tag} failed:\n{}",
            text(&out)
        );
        assert!(
            text(&out).contains("250 2.0.0 Ok: queued"),
            "{}",
            text(&out)
        );
    }

    let got = p.wait_delivered(2, Duration::from_secs(20));
    assert_eq!(got.len(), 2, "{got:?}");
    let mut by_tag = std::collections::HashMap::new();
    for (name, raw) in &got {
        let s = String::from_utf8_lossy(raw).into_owned();
        let to =
            header(&s, "X-Original-To").unwrap_or_else(|| panic!("{name}: no X-Original-To\n{s}"));
        assert_eq!(
            header(&s, "Return-Path"),
            Some("<bounce@origin.example>"),
            "{s}"
        );
        let tag = to.split('@').next().unwrap().to_string();
        by_tag.insert(tag, raw.clone());
    }
    let a = &by_tag["starttls"];
    let b = &by_tag["implicit"];
    assert_eq!(body(a), body(b), "bodies differ");
    assert_eq!(
        body(a),
        body(message("x").as_bytes()),
        "body altered in transit"
    );
    let a_text = String::from_utf8_lossy(a);
    assert!(
        a_text.contains("with ESMTPSA"),
        "not authenticated+TLS: {a_text}"
    );
    assert!(p.maillog().contains("status=sent (delivered to maildir)"));
}

#[test]
fn refuses_auth_without_tls_bad_password_and_anonymous_mail() {
    if !peers_present() {
        return;
    }
    let p = Provider::start();
    let env = ["--from", "a@origin.example", "--to", "b@dest.example"];

    // AUTH over plaintext on the STARTTLS port: not even advertised.
    let out = swaks(p.starttls_port, "", &p.user, &p.password, &env);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("did not advertise authentication"),
        "{}",
        text(&out)
    );

    // Plaintext MAIL without STARTTLS.
    let out = swaks(p.starttls_port, "", "", "", &env);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("530 5.7.0 Must issue a STARTTLS command first"),
        "{}",
        text(&out)
    );

    // Wrong password, both ports.
    let out = swaks(p.starttls_port, "--tls", &p.user, "wrong", &env);
    assert!(!out.status.success());
    assert!(text(&out).contains("535 5.7.8"), "{}", text(&out));
    let out = swaks(p.implicit_port, "--tls-on-connect", &p.user, "wrong", &env);
    assert!(!out.status.success());
    assert!(text(&out).contains("535 5.7.8"), "{}", text(&out));

    // TLS but no AUTH: MAIL is refused as by SES or Gmail.
    let out = swaks(p.implicit_port, "--tls-on-connect", "", "", &env);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("530 5.7.0") && text(&out).contains("Authentication required"),
        "{}",
        text(&out)
    );

    // Simulated refusals.
    let out = swaks(
        p.implicit_port,
        "--tls-on-connect",
        &p.user,
        &p.password,
        &["--from", "a@origin.example", "--to", "fail550@dest.example"],
    );
    assert!(text(&out).contains("550 5.7.1"), "{}", text(&out));
    let out = swaks(
        p.implicit_port,
        "--tls-on-connect",
        &p.user,
        &p.password,
        &["--from", "a@origin.example", "--to", "fail451@dest.example"],
    );
    assert!(text(&out).contains("451 4.7.0"), "{}", text(&out));

    // None of that was accepted: after a message that is (the provider
    // has delivered something since), it holds that one only.
    let out = swaks(
        p.implicit_port,
        "--tls-on-connect",
        &p.user,
        &p.password,
        &[
            "--from",
            "a@origin.example",
            "--to",
            "b@dest.example",
            "--header",
            "Subject: after the refusals",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let got = p.wait_delivered(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "something else was delivered: {got:?}");
    assert!(
        String::from_utf8_lossy(&got[0].1).contains("Subject: after the refusals"),
        "{got:?}"
    );
}

#[test]
fn certificate_verifies_as_localhost_with_the_ca_file() {
    if !peers_present() {
        return;
    }
    let p = Provider::start();
    let ca = p.ca_file();
    let ca = ca.to_str().unwrap();
    let implicit = run(Command::new("openssl").args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{}", p.implicit_port),
        "-CAfile",
        ca,
        "-verify_return_error",
        "-verify_hostname",
        "localhost",
        "-brief",
    ]));
    assert!(implicit.status.success(), "{}", text(&implicit));
    assert!(
        text(&implicit).contains("Verification: OK"),
        "{}",
        text(&implicit)
    );

    let starttls = run(Command::new("openssl").args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{}", p.starttls_port),
        "-starttls",
        "smtp",
        "-CAfile",
        ca,
        "-verify_return_error",
        "-verify_ip",
        "127.0.0.1",
        "-brief",
    ]));
    assert!(starttls.status.success(), "{}", text(&starttls));

    // A name the certificate does not carry must fail.
    let wrong = run(Command::new("openssl").args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{}", p.implicit_port),
        "-CAfile",
        ca,
        "-verify_return_error",
        "-verify_hostname",
        "smtp.example.com",
        "-brief",
    ]));
    assert!(!wrong.status.success(), "{}", text(&wrong));
}

#[test]
fn stop_and_restart_keeps_working() {
    if !peers_present() {
        return;
    }
    let p = Provider::start();
    p.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", p.implicit_port)).is_err());
    p.restart();
    let out = swaks(
        p.implicit_port,
        "--tls-on-connect",
        &p.user,
        &p.password,
        &[
            "--from",
            "a@origin.example",
            "--to",
            "after-restart@dest.example",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    p.wait_delivered(1, Duration::from_secs(20));
}
