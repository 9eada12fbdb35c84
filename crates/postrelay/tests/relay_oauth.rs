//! OAuth2 relays end to end: `postrelay auth login` against a real OAuth2
//! server (`tests/py/oauth_server.py`: device code and refresh grants,
//! access tokens living 3 seconds, rotating refresh tokens), and a relay
//! that checks the exact XOAUTH2 / OAUTHBEARER string and the token with
//! that server (the in-process fake SMTP server, inside STARTTLS with a
//! verified certificate). What must hold:
//! - after one login, mail keeps flowing across several access-token
//!   expiries, each token refreshed before it expires (no rejection);
//! - a token the relay rejects is replaced once, in the same session;
//! - a revoked refresh token defers the mail (never bounces it) with a
//!   reason naming `postrelay auth login`; after the login the queue
//!   drains;
//! - no token (all contain MARKER) appears in the mail log, the debug
//!   log with the relay's transcript, `queue` output, `auth status` or
//!   the metrics.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use support::daemon::{Daemon, Options, free_port};
use support::fakeserver::{FakeServer, Script, TestPki};
use support::oauth::OAuthServer;
use support::peers::require;
use support::smtp::send_one;

/// Polls `f` every 50 ms until it holds; panics after `limit`.
fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Setup {
    _rt: tokio::runtime::Runtime,
    oauth: OAuthServer,
    smtp: FakeServer,
    d: Daemon,
    metrics: u16,
    _files: tempfile::TempDir,
}

/// The OAuth server, a relay offering `mechanisms`, and a daemon that
/// sends one message per connection through it (so each message logs in).
fn setup(access_lifetime: u32, mechanisms: Vec<&'static str>) -> Setup {
    setup_with(access_lifetime, mechanisms, "")
}

/// [`setup`] with more `[relay.oauth]` lines.
fn setup_with(access_lifetime: u32, mechanisms: Vec<&'static str>, oauth_extra: &str) -> Setup {
    setup_relay(
        "name = \"m365\"\n",
        access_lifetime,
        mechanisms,
        oauth_extra,
    )
}

/// [`setup_with`] for a relay whose first lines (its name, its preset)
/// are `head`.
fn setup_relay(
    head: &str,
    access_lifetime: u32,
    mechanisms: Vec<&'static str>,
    oauth_extra: &str,
) -> Setup {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let oauth = OAuthServer::start(access_lifetime, true);
    let pki = TestPki::new();
    let smtp = rt.block_on(FakeServer::start(Script {
        starttls: true,
        tls: Some(pki.server_config.clone()),
        auth: mechanisms,
        bearer: Some(oauth.bearer_check()),
        ..Script::default()
    }));
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path();
    let ca = files.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let metrics = free_port();
    let tail = format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n[[relay]]\n{head}host = \"localhost\"\nport = {}\n\
         tls = \"starttls\"\nca_file = \"{}\"\nusername = \"relay@example.com\"\nverbose = true\n\
         max_messages_per_connection = 1\n{}{}",
        smtp.port(),
        ca.display(),
        oauth.relay_oauth(&files.join("relay.token")),
        oauth_extra.replace("{dir}", &files.display().to_string()),
    );
    let secret = files.join("client-secret");
    std::fs::write(&secret, "client-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let d = Daemon::start_with(Options {
        delivery: true,
        tail,
        ..Options::default()
    });
    Setup {
        _rt: rt,
        oauth,
        smtp,
        d,
        metrics,
        _files: dir,
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `postrelay auth login --relay m365`, which must succeed.
fn login(d: &Daemon) -> String {
    let out = d.cli(&["auth", "login", "--relay", "m365"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    shown
}

/// What betrays a token in `text`: `MARKER` itself, or the base64 of a
/// token's start at any of the three alignments (AUTH lines carry tokens
/// in base64).
fn token_in(text: &str) -> bool {
    use postrelay_smtp::sasl::login_user as base64;
    text.contains("MARKER")
        || ["MARKERACCESS", "MARKERREFRESH"].iter().any(|s| {
            (0..3).any(|k| {
                let encoded = base64(&format!("{}{s}", "\0".repeat(k)));
                let stable = &encoded[if k == 0 { 0 } else { 4 }..4 * ((k + s.len()) / 3)];
                text.contains(stable)
            })
        })
}

#[test]
fn the_token_detector_sees_base64() {
    use postrelay_smtp::sasl::{oauthbearer, xoauth2};
    assert!(token_in(&xoauth2("relay@example.com", "MARKERACCESS-x")));
    assert!(token_in(&oauthbearer(
        "u",
        "localhost",
        25,
        "MARKERREFRESH-y"
    )));
    // The token at offsets 2 and 1 (mod 3) of the message.
    assert!(token_in(&xoauth2("a", "MARKERACCESS-x")));
    assert!(token_in(&xoauth2("abc", "MARKERACCESS-x")));
    assert!(!token_in(&xoauth2("relay@example.com", "harmless")));
}

/// Everything a person could read: no token may be in it.
fn assert_no_token(s: &Setup, extra: &[String]) {
    let queue = text(&s.d.cli(&["queue", "list"]));
    let status = text(&s.d.cli(&["auth", "status"]));
    let (_, metrics) = support::http::get(s.metrics, "/metrics");
    for (what, t) in [
        ("mail log", s.d.maillog()),
        ("debug log and transcripts", s.d.stderr()),
        ("queue list", queue),
        ("auth status", status),
        ("metrics", metrics),
    ]
    .into_iter()
    .chain(extra.iter().map(|e| ("command output", e.clone())))
    {
        assert!(!token_in(&t), "a token in the {what}:\n{t}");
    }
}

/// The doctor's `relay.oauth` finding (its DNS checks pointed at a dead
/// port, so that they fail at once).
fn doctor_oauth(d: &Daemon) -> serde_json::Value {
    doctor_finding(d, "relay.oauth")
}

/// The doctor's first finding of `check`.
fn doctor_finding(d: &Daemon, check: &str) -> serde_json::Value {
    let dead = free_port().to_string();
    let dns = format!("127.0.0.1:{dead}");
    let out = d.cli(&["doctor", "--json", "--timeout", "2s", "--dns-server", &dns]);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding: {report}"))
        .clone()
}

fn token_file(d: &Daemon) -> String {
    let cfg = std::fs::read_to_string(&d.config).unwrap();
    let line = cfg.lines().find(|l| l.starts_with("token_file")).unwrap();
    let path = line.split('"').nth(1).unwrap().to_owned();
    std::fs::read_to_string(Path::new(&path)).unwrap()
}

#[test]
fn mail_keeps_flowing_across_access_token_expiries() {
    if !require("python3") {
        return;
    }
    let s = setup(3, vec!["PLAIN", "LOGIN", "XOAUTH2"]);
    let before = s.d.cli(&["auth", "status"]);
    assert!(!before.status.success());
    assert!(text(&before).contains("LOGIN NEEDED"), "{}", text(&before));

    let shown = login(&s.d);
    assert!(
        shown.contains("http://127.0.0.1/activate") && shown.contains("WDJB-MJHT"),
        "{shown}"
    );
    assert!(shown.contains("waiting for the approval ."), "{shown}");
    let first = token_file(&s.d);

    for n in 1..=4 {
        send_one(s.d.port, "user@dest.example", &format!("message {n}"));
        until(
            &format!("message {n} at the relay"),
            Duration::from_secs(60),
            || s.smtp.bodies().len() == n,
        );
        // Let the access token the daemon holds run out.
        until("no live access token", Duration::from_secs(30), || {
            s.oauth.stat("live_access") == 0
        });
    }
    let sent = s.smtp.received_text();
    // One AUTH per message: every token was fresh when used.
    assert_eq!(sent.matches("AUTH XOAUTH2 ").count(), 4, "{sent}");
    assert_eq!(s.oauth.stat("refreshes"), 4);
    assert!(
        !s.d.maillog().contains("status=deferred"),
        "{}",
        s.d.maillog()
    );
    // The provider rotated the refresh token: the daemon kept the new one.
    assert_ne!(token_file(&s.d), first);
    let status = s.d.cli(&["auth", "status"]);
    assert!(status.status.success(), "{}", text(&status));
    let finding = doctor_oauth(&s.d);
    assert_eq!(finding["verdict"], "ok", "{finding}");
    let auth = doctor_finding(&s.d, "relay.auth");
    assert_eq!(auth["verdict"], "ok", "{auth}");
    assert!(
        auth["evidence"].as_str().unwrap().contains("with XOAUTH2"),
        "{auth}"
    );
    let test = s.d.cli(&["send-test", "--to", "user@dest.example"]);
    assert!(test.status.success(), "{}", text(&test));
    assert!(
        text(&test).contains("XOAUTH2 as user relay@example.com"),
        "{}",
        text(&test)
    );
    assert_no_token(&s, &[shown, finding.to_string(), text(&test)]);
}

#[test]
fn a_rejected_token_is_replaced_and_a_revoked_login_defers_until_login() {
    if !require("python3") {
        return;
    }
    // Gmail-like: OAUTHBEARER offered beside XOAUTH2; tokens live long.
    let s = setup(300, vec!["XOAUTH2", "OAUTHBEARER"]);
    let shown = login(&s.d);
    send_one(s.d.port, "user@dest.example", "first");
    until("the first message", Duration::from_secs(60), || {
        s.smtp.bodies().len() == 1
    });

    // The provider drops the access token the daemon still holds: the
    // relay refuses it, and a new one goes out in the same session.
    s.oauth.call("POST", "/admin/expire");
    send_one(s.d.port, "user@dest.example", "second");
    until("the second message", Duration::from_secs(60), || {
        s.smtp.bodies().len() == 2
    });
    assert_eq!(s.smtp.connections(), 2);
    let sent = s.smtp.received_text();
    assert_eq!(sent.matches("AUTH OAUTHBEARER ").count(), 3, "{sent}");
    assert!(
        sent.contains("\r\nAQ==\r\n"),
        "the error challenge was answered: {sent}"
    );

    // Revoked: deferred with the fix, never bounced.
    s.oauth.call("POST", "/admin/revoke");
    s.oauth.call("POST", "/admin/expire");
    send_one(s.d.port, "user@dest.example", "third");
    let mut reason = String::new();
    until("the deferral", Duration::from_secs(60), || {
        let q = s.d.queue();
        reason = q
            .first()
            .and_then(|m| m["reason"].as_str())
            .unwrap_or_default()
            .to_owned();
        reason.contains("auth login")
    });
    assert!(
        reason.contains("postrelay auth login --relay m365"),
        "{reason}"
    );
    assert!(reason.contains("invalid_grant"), "{reason}");
    let log = s.d.wait_maillog(&["status=deferred"], 1);
    assert!(!log.contains("status=bounced"), "{log}");
    let status = s.d.cli(&["auth", "status"]);
    assert!(!status.status.success());
    assert!(text(&status).contains("invalid_grant"), "{}", text(&status));
    let (_, metrics) = support::http::get(s.metrics, "/metrics");
    assert_eq!(
        support::http::value(&metrics, "postrelay_oauth_token_usable{relay=\"m365\"}"),
        0.0,
        "{metrics}"
    );
    let finding = doctor_oauth(&s.d);
    assert_eq!(finding["verdict"], "problem", "{finding}");
    assert!(
        finding["evidence"]
            .as_str()
            .unwrap()
            .contains("invalid_grant"),
        "{finding}"
    );
    assert!(
        finding["fix"]
            .as_str()
            .unwrap()
            .contains("postrelay auth login --relay m365"),
        "{finding}"
    );

    // A new login, and the waiting mail goes.
    let again = login(&s.d);
    let flush = s.d.cli(&["queue", "flush"]);
    assert!(flush.status.success(), "{}", text(&flush));
    until("the queue to drain", Duration::from_secs(60), || {
        s.smtp.bodies().len() == 3 && s.d.queue().is_empty()
    });
    let (_, metrics) = support::http::get(s.metrics, "/metrics");
    assert_eq!(
        support::http::value(&metrics, "postrelay_oauth_token_usable{relay=\"m365\"}"),
        1.0,
        "{metrics}"
    );
    assert_no_token(&s, &[shown, again]);
}

#[test]
fn client_credentials_need_no_login() {
    if !require("python3") {
        return;
    }
    // The secret file is written by setup before the daemon loads it.
    let s = setup_with(
        300,
        vec!["XOAUTH2"],
        "flow = \"client_credentials\"\nclient_secret_file = \"{dir}/client-secret\"\n",
    );
    let shown = login(&s.d);
    assert!(shown.contains("nothing to keep"), "{shown}");
    send_one(s.d.port, "user@dest.example", "app-only");
    until("the message", Duration::from_secs(60), || {
        s.smtp.bodies().len() == 1
    });
    assert_eq!(
        s.oauth.stat("client_credentials"),
        2,
        "one for auth login, one for the daemon"
    );
    let status = s.d.cli(&["auth", "status"]);
    assert!(status.status.success(), "{}", text(&status));
    assert_no_token(&s, &[shown]);
}

/// A Gmail-preset relay (authorization code flow by default) against the
/// test server.
fn setup_gmail() -> Setup {
    setup_relay(
        "name = \"gmail\"\nprovider = \"gmail\"\n",
        300,
        vec!["XOAUTH2"],
        "",
    )
}

/// `postrelay auth login --relay gmail` under way: the process, and the
/// authorization URL it printed (stdin piped: the paste).
fn start_code_login(d: &Daemon) -> (std::process::Child, String, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(support::daemon::bin())
        .arg("--config")
        .arg(&d.config)
        .args(["auth", "login", "--relay", "gmail"])
        .env_remove("POSTRELAY_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut shown = String::new();
    let url = loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "no URL in: {shown}");
        shown.push_str(&line);
        if let Some(u) = line.trim().strip_prefix("http://127.0.0.1:")
            && u.contains("/authorize?")
        {
            break format!("http://127.0.0.1:{u}");
        }
    };
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (child, url, shown)
}

/// The login's end: (success, stderr).
fn finish_code_login(child: std::process::Child) -> (bool, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The provider's redirect for the authorization `url`, as the browser
/// gets it.
fn provider_redirect(url: &str) -> String {
    let (status, location, body) = support::oauth::browse(url);
    assert!(status.contains(" 302 "), "{status} {body}");
    location
}

#[test]
fn gmail_login_through_the_loopback_redirect_then_mail_flows() {
    if !require("python3") {
        return;
    }
    let s = setup_gmail();
    let (child, url, shown) = start_code_login(&s.d);
    for part in [
        "code_challenge_method=S256",
        "state=",
        "access_type=offline",
    ] {
        assert!(url.contains(part), "{url}");
    }
    let location = provider_redirect(&url);
    assert!(location.starts_with("http://127.0.0.1:"), "{location}");
    let (status, _, page) = support::oauth::browse(&location);
    assert!(status.contains(" 200 "), "{status}");
    assert!(page.contains("login received"), "{page}");
    let (ok, err) = finish_code_login(child);
    assert!(ok, "{err}");
    assert_eq!(s.oauth.stat("code_grants"), 1);
    assert!(token_file(&s.d).contains("MARKERREFRESH"));

    send_one(s.d.port, "user@dest.example", "via gmail");
    until("the message at the relay", Duration::from_secs(60), || {
        s.smtp.bodies().len() == 1
    });
    let status = s.d.cli(&["auth", "status"]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        text(&status).contains("authorization_code flow"),
        "{}",
        text(&status)
    );
    assert_no_token(&s, &[shown, err]);
}

#[test]
fn gmail_login_takes_the_redirect_address_pasted_on_stdin() {
    if !require("python3") {
        return;
    }
    let s = setup_gmail();
    let (mut child, url, _) = start_code_login(&s.d);
    // The browser is elsewhere: its redirect to 127.0.0.1 goes nowhere,
    // and the user pastes the address (after a stray empty line).
    let location = provider_redirect(&url);
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, format!("\n  {location}\n").as_bytes()).unwrap();
    let (ok, err) = finish_code_login(child);
    assert!(ok, "{err}");
    assert_eq!(s.oauth.stat("code_grants"), 1);
    assert_eq!(s.oauth.stat("bad_verifiers"), 0);
    let status = s.d.cli(&["auth", "status"]);
    assert!(status.status.success(), "{}", text(&status));
}

#[test]
fn gmail_login_refuses_a_forged_state_and_reports_a_denial() {
    if !require("python3") {
        return;
    }
    let s = setup_gmail();
    // A redirect with another state, to the listener: refused there.
    let (child, url, _) = start_code_login(&s.d);
    let (head, tail) = url.split_once("state=").unwrap();
    let rest = tail.split_once('&').map_or("", |(_, r)| r);
    let forged = format!("{head}state=forged&{rest}");
    let (_, _, page) = support::oauth::browse(&provider_redirect(&forged));
    assert!(page.contains("login failed"), "{page}");
    let (ok, err) = finish_code_login(child);
    assert!(!ok);
    assert!(err.contains("state does not match"), "{err}");
    assert_eq!(s.oauth.stat("code_grants"), 0);
    let status = s.d.cli(&["auth", "status"]);
    assert!(!status.status.success(), "{}", text(&status));

    // The user declined: the provider's error, pasted with the right state.
    let (mut child, url, _) = start_code_login(&s.d);
    let state = url
        .split_once("state=")
        .unwrap()
        .1
        .split('&')
        .next()
        .unwrap();
    let denial = format!(
        "http://127.0.0.1:9/?error=access_denied&error_description=no+thanks&state={state}\n"
    );
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, denial.as_bytes()).unwrap();
    let (ok, err) = finish_code_login(child);
    assert!(!ok);
    assert!(
        err.contains("the provider refused the login: access_denied: no thanks"),
        "{err}"
    );
}
