//! The verdict of a report and its two printed forms.

use std::time::Duration;

use super::{Finding, Report, Verdict, render};

fn sample() -> Report {
    Report::new(
        vec![
            Finding::ok("config", "/etc/postrelay/postrelay.toml", "loads"),
            Finding::bad(
                "relay.auth",
                Verdict::Problem,
                "relay ses (smtp.example.com:587)",
                "relay refused the credentials\nof user x",
                "check the password",
            ),
            Finding::bad(
                "queue",
                Verdict::Warning,
                "/var/spool",
                "2 deferred",
                "look",
            ),
        ],
        Duration::from_millis(1234),
    )
}

#[test]
fn the_worst_verdict_is_the_reports() {
    assert!(Verdict::Ok < Verdict::Warning && Verdict::Warning < Verdict::Problem);
    assert_eq!(sample().verdict, Verdict::Problem);
    let fine = Report::new(vec![Finding::ok("daemon", "x", "answers")], Duration::ZERO);
    assert_eq!(fine.verdict, Verdict::Ok);
    assert_eq!(Report::new(Vec::new(), Duration::ZERO).verdict, Verdict::Ok);
}

#[test]
fn text_has_one_line_per_finding_its_fix_and_a_summary() {
    let text = render::human(&sample());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "ok       config             /etc/postrelay/postrelay.toml: loads"
    );
    assert_eq!(
        lines[1],
        "problem  relay.auth         relay ses (smtp.example.com:587): relay refused the credentials of user x",
        "control characters from a peer stay on one line"
    );
    assert_eq!(
        lines[2],
        "                            fix: check the password"
    );
    assert!(lines[3].starts_with("warning  queue "), "{}", lines[3]);
    assert_eq!(
        lines.last().copied(),
        Some("1 problem, 1 warning, 1 check ok (1.23 s)")
    );
}

#[test]
fn json_has_the_verdict_and_a_fix_only_where_one_is_needed() {
    let v: serde_json::Value = serde_json::from_str(&render::json(&sample())).unwrap();
    assert_eq!(v["verdict"], "problem");
    assert_eq!(v["elapsed_ms"], 1234);
    let f = v["findings"].as_array().unwrap();
    assert_eq!(f.len(), 3);
    assert_eq!(f[0]["verdict"], "ok");
    assert!(f[0].get("fix").is_none(), "{}", f[0]);
    assert_eq!(f[1]["check"], "relay.auth");
    assert_eq!(f[1]["fix"], "check the password");
    assert_eq!(f[2]["verdict"], "warning");
}
