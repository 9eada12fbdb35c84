//! The shipped Prometheus alert rules and Grafana dashboard: the rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`: a
//! growing queue, an old message, a relay that refuses AUTH or cannot be
//! reached, an OAuth2 login that stopped working or nears its end), and
//! every series the rules and the dashboard name is one the
//! daemon exports.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use postrelay::metrics::Metrics;
use postrelay::queue::QueueStats;
use support::peers;
use support::provider::repo_root;

fn monitoring(file: &str) -> PathBuf {
    repo_root().join("monitoring").join(file)
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo_root().join("monitoring"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    if !peers::require("promtool") {
        return;
    }
    let checked = promtool(&["check", "rules", "postrelay-alerts.yml"]);
    assert!(checked.contains("SUCCESS: 9 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "postrelay-alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// Metric names (`postrelay_…`) in a text.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("postrelay_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn rules_and_dashboard_name_only_exported_series() {
    // A family appears once it has a series: give each one.
    let m = Metrics::new();
    m.accepted("smtp");
    m.delivery("relay.example", "sent", std::time::Duration::from_secs(1));
    m.tls_failure("relay", "deferred");
    m.auth_failure("relay", "deferred");
    m.connections_on(&"127.0.0.1:25".parse().unwrap()).inc();
    m.refused("max_connections");
    let now = std::time::SystemTime::now();
    let usage = postrelay::quota::Usage {
        limits: vec![postrelay::quota::LimitUse {
            limit: postrelay::quota::Limit::CoolDown {
                reason: "454 Throttling failure".into(),
            },
            used: 1,
            max: 1,
            frees_at: Some(now),
        }],
    };
    m.set_quota(&[("ses".into(), usage)], now);
    oauth_series();
    let exported = m.encode(QueueStats::default(), 0);
    let families: Vec<&str> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(families.len() >= 9, "{exported}");
    let known = |name: &str| {
        families.iter().any(|f| {
            ["", "_total", "_bucket", "_count", "_sum"]
                .iter()
                .any(|suffix| name == format!("{f}{suffix}"))
        })
    };
    let rules = std::fs::read_to_string(monitoring("postrelay-alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(monitoring("grafana-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for p in panels {
        let targets = p["targets"].as_array().expect("targets");
        assert!(
            targets
                .iter()
                .all(|t| t["expr"].as_str().is_some_and(|e| e.contains("postrelay_"))),
            "panel {} has a target without a postrelay query",
            p["title"]
        );
    }
    let mut used = names_in(&rules);
    used.extend(names_in(&dashboard));
    // Every family the daemon exports is shown on the dashboard.
    for f in &families {
        assert!(
            names_in(&dashboard).iter().any(|n| n.starts_with(f)),
            "{f} is not on the dashboard"
        );
    }
    let unknown: Vec<&String> = used.iter().filter(|n| !known(n)).collect();
    assert!(unknown.is_empty(), "not exported: {unknown:?}\n{exported}");
}

/// Gives the OAuth2 series one value each: a token source with a refresh
/// token on file (the lifetime gauge), whose token endpoint is down (a
/// request counted as an error).
fn oauth_series() {
    use postrelay::config::{OAuthConfig, OAuthFlow, OAuthProvider, Secret};
    use postrelay::oauth::TokenSource;
    use postrelay::oauth::store::{self, TokenFile};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dead = rt.block_on(async { support::deadport::DeadPort::new() });
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("r.token");
    let file = TokenFile {
        refresh_token: Secret::new("MARKER-rt"),
        obtained_at: 0,
        refreshed_at: None,
        refused: None,
    };
    store::save(&token_file, &file, None).unwrap();
    let config = OAuthConfig {
        username: "u@example.com".into(),
        provider: OAuthProvider::Custom,
        tenant: None,
        flow: OAuthFlow::Device,
        client_id: "c".into(),
        client_secret: None,
        client_secret_file: None,
        token_url: format!("http://127.0.0.1:{}/token", dead.port()),
        device_url: None,
        auth_url: None,
        scopes: Vec::new(),
        token_file,
        refresh_token_lifetime: Some(std::time::Duration::from_secs(86400)),
    };
    let source = TokenSource::new("r", config, None).unwrap();
    assert!(rt.block_on(source.access_token()).is_err());
}
