//! `/metrics` counts what the mail log says: after a load that is sent,
//! deferred and bounced through the real provider, every counter equals
//! what the real `pflogsumm` (run without options: `log.syslog_name =
//! "postfix"`) reports from the same log. Also `/healthz`, the queue
//! gauges, and that nothing listens without `[metrics]`.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use support::daemon::{Daemon, Options, free_port};
use support::http::{get, value};
use support::install::Install;
use support::peers;
use support::pflogsumm::grand_totals;
use support::provider::Provider;
use support::smtp::Raw;

fn send(port: u16, to: &str) {
    let (mut c, greeting) = Raw::connect(port);
    assert_eq!(greeting.code, 220);
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{to}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(format!("Subject: load\r\nTo: <{to}>\r\n\r\nbody\r\n").as_bytes());
    assert_eq!(c.cmd(".").code, 250);
    assert_eq!(c.cmd("QUIT").code, 221);
}

/// A delivering daemon relaying to the provider with `password`, with
/// metrics on a free port and `log` added to `[log]`.
fn relaying_daemon(
    provider: &Provider,
    password: &str,
    log: &str,
) -> (Daemon, u16, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let pw = secrets.path().join("pw");
    std::fs::write(&pw, password).unwrap();
    std::fs::set_permissions(&pw, PermissionsExt::from_mode(0o600)).unwrap();
    let metrics_port = free_port();
    let d = Daemon::start_with(Options {
        delivery: true,
        log: log.into(),
        tail: format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n\
             [[relay]]\nname = \"provider\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"starttls\"\nca_file = \"{}\"\nusername = \"{}\"\npassword_file = \"{}\"\n",
            provider.starttls_port,
            provider.ca_file().display(),
            provider.user,
            pw.display()
        ),
        ..Options::default()
    });
    (d, metrics_port, secrets)
}

#[test]
fn metrics_equal_what_pflogsumm_reads_in_the_mail_log() {
    if !peers::require("postfix") || !peers::require("pflogsumm") {
        return;
    }
    let Some(install) = Install::new() else {
        return;
    };
    let provider = Provider::start();
    let (d, metrics_port, _secrets) =
        relaying_daemon(&provider, &provider.password, "syslog_name = \"postfix\"\n");
    send_the_load(&d, &install);
    let text = settled_metrics(&d, metrics_port);
    assert_metrics_equal_pflogsumm(&d, &text);
    assert_metrics_are_the_load_s(&d, &text);

    let (status, body) = get(metrics_port, "/healthz");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );
    let (status, _) = get(metrics_port, "/nothing");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

/// The load: delivered, deferred (the provider answers 451), bounced
/// (550; the bounce to alice is delivered too), and one local submission
/// through sendmail (pickup).
fn send_the_load(d: &Daemon, install: &Install) {
    for i in 0..5 {
        send(d.port, &format!("ok{i}@example.com"));
    }
    send(d.port, "fail451a@example.com");
    send(d.port, "fail451b@example.com");
    send(d.port, "fail550@example.com");
    let out = install.sendmail_run(d, &["-i", "local-sub@example.com"], b"Subject: s\n\nx\n");
    assert!(out.status.success(), "{out:?}");
}

/// `/metrics` once the load settled: 5 + 1 sent, the bounce notice sent,
/// 2 deferred waiting.
fn settled_metrics(d: &Daemon, metrics_port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, text) = get(metrics_port, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        let sent = value(
            &text,
            "postrelay_deliveries_total{relay=\"127.0.0.1\",status=\"sent\"}",
        );
        let deferred = value(
            &text,
            "postrelay_deliveries_total{relay=\"127.0.0.1\",status=\"deferred\"}",
        );
        if sent >= 7.0 && deferred >= 2.0 {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the load did not settle:\n{text}\n{}",
            d.maillog()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The sum of `postrelay_deliveries_total` with `status` over all relays.
fn deliveries(text: &str, status: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with("postrelay_deliveries_total{")
                && l.contains(&format!("status=\"{status}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// The sum of `postrelay_messages_accepted_total` over the sources.
fn accepted(text: &str) -> f64 {
    ["smtp", "submission", "pickup"]
        .iter()
        .map(|s| {
            value(
                text,
                &format!("postrelay_messages_accepted_total{{source=\"{s}\"}}"),
            )
        })
        .sum()
}

/// Received, delivered, bounced and deferrals: `/metrics` (`text`) says
/// what pflogsumm reads in the daemon's mail log.
fn assert_metrics_equal_pflogsumm(d: &Daemon, text: &str) {
    // A delivery is counted as its line goes to the log's own thread,
    // which writes it a moment later: wait for the counted lines.
    for status in ["sent", "deferred", "bounced"] {
        let status_is = format!("status={status}");
        d.wait_maillog(&[&status_is], deliveries(text, status) as usize);
    }
    let log = d.dir.path().join("mail.log");
    let report = Command::new("pflogsumm").arg(&log).output().unwrap();
    assert!(report.status.success());
    let report = String::from_utf8(report.stdout).unwrap();
    let totals = grand_totals(&report);
    let deferrals: f64 = report
        .split_once(" deferrals)")
        .and_then(|(before, _)| before.rsplit('(').next())
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(0.0);
    let checks = [
        ("received", accepted(text), totals.get("received").copied()),
        (
            "delivered",
            deliveries(text, "sent"),
            totals.get("delivered").copied(),
        ),
        (
            "bounced",
            deliveries(text, "bounced"),
            totals.get("bounced").copied(),
        ),
        (
            "deferrals",
            deliveries(text, "deferred"),
            Some(deferrals as u64),
        ),
    ];
    for (what, metric, pflogsumm) in checks {
        assert_eq!(
            Some(metric as u64),
            pflogsumm,
            "{what}: /metrics says {metric}, pflogsumm {pflogsumm:?}\n{text}\n{report}"
        );
    }
}

/// And the numbers are the load's: accepted, sent, bounced, deferred,
/// the queue gauges, the delay histogram and the connections.
fn assert_metrics_are_the_load_s(d: &Daemon, text: &str) {
    assert_eq!(accepted(text), 9.0);
    assert_eq!(
        value(text, "postrelay_messages_accepted_total{source=\"pickup\"}"),
        1.0
    );
    assert_eq!(deliveries(text, "sent"), 7.0);
    assert_eq!(deliveries(text, "bounced"), 1.0);
    assert_eq!(deliveries(text, "deferred"), 2.0);
    assert_eq!(
        value(text, "postrelay_queue_messages{state=\"waiting\"}"),
        2.0
    );
    assert!(value(text, "postrelay_queue_oldest_message_age_seconds") > 0.0);
    assert!(
        value(
            text,
            "postrelay_delivery_delay_seconds_count{relay=\"127.0.0.1\"}"
        ) == 7.0
    );
    assert!(
        value(
            text,
            &format!(
                "postrelay_connections_total{{listener=\"127.0.0.1:{}\"}}",
                d.port
            )
        ) >= 8.0
    );
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn no_metrics_listener_unless_configured() {
    let d = Daemon::start();
    let text = d.cli(&["check-config"]);
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(out.contains("[metrics]\n# listen: not set"), "{out}");
    // Its listening TCP sockets: the SMTP port, and nothing else.
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut listening = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{}/net/{table}", d.pid())).unwrap();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f[3] == "0A" && inodes.contains(&f[9].to_string()) {
                listening.push(f[1].to_string());
            }
        }
    }
    assert_eq!(listening, [format!("0100007F:{:04X}", d.port)]);
}

#[test]
fn a_refused_relay_login_is_counted_as_an_auth_failure() {
    if !peers::require("postfix") {
        return;
    }
    let provider = Provider::start();
    let (d, metrics_port, _secrets) = relaying_daemon(&provider, "not-the-password", "");
    send(d.port, "someone@example.com");
    let series = "postrelay_auth_failures_total{side=\"relay\",reason=\"deferred\"}";
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let (_, text) = get(metrics_port, "/metrics");
        if value(&text, series) >= 1.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no AUTH failure counted:\n{text}\n{}",
            d.maillog()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // One count per logged deferral. The line is handed to the log's own
    // thread just before the count and written a moment later, and the
    // daemon may retry meanwhile: every counted line gets written, and
    // no line is written without its count.
    let line = "status=deferred (authentication: ";
    let counted = value(&text, series) as usize;
    let log = d.wait_maillog(&[line], counted);
    let logged = log.lines().filter(|l| l.contains(line)).count();
    let (_, later) = get(metrics_port, "/metrics");
    assert!(value(&later, series) >= logged as f64, "{later}\n{log}");
    assert_eq!(
        value(
            &text,
            "postrelay_tls_failures_total{side=\"relay\",reason=\"deferred\"}"
        ),
        0.0
    );
}
