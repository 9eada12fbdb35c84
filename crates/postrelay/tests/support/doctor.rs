//! Helpers of `tests/doctor.rs`: the shared private provider, a DNS zone
//! for the sending domain, configuration files with relays, and running
//! `postrelay doctor` in both output forms with assertions on a finding
//! in each.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use super::daemon::{self, Daemon, Options};
use super::dns::Dns;
use super::fakeserver::{FakeServer, Script, TestPki};
use super::peers;
use super::provider::Provider;

/// One provider for the whole binary (stopped by its watchdog at exit).
pub fn provider() -> &'static Provider {
    static PROVIDER: OnceLock<Provider> = OnceLock::new();
    PROVIDER.get_or_init(Provider::start)
}

pub fn peers_present() -> bool {
    peers::require_root("the private provider (Postfix) and dnsmasq")
        && peers::require("postfix")
        && peers::require("dnsmasq")
}

/// The zone when the peers are present (`None`: skipped, see
/// [`peers_present`]).
pub fn peers_and_zone(spf: &str) -> Option<Dns> {
    peers_present().then(|| zone(spf))
}

/// The sending domain's DNS: SPF (`spf`, and a nested record that
/// includes the provider's made-up include), a DKIM key, DMARC with
/// p=reject.
pub fn zone(spf: &str) -> Dns {
    Dns::start(
        "test",
        &[
            ("example.test", spf),
            ("_spf.example.test", "v=spf1 include:spf.provider.test -all"),
            ("spf.provider.test", "v=spf1 ip4:127.0.0.1 -all"),
            (
                "sel1._domainkey.example.test",
                "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0B",
            ),
            ("_dmarc.example.test", "v=DMARC1; p=reject"),
        ],
    )
}

/// Authorises the provider through a nested include, as many domains do.
pub const GOOD_SPF: &str = "v=spf1 mx include:_spf.example.test ~all";

/// A password file with `text`, mode 0600, in `dir`.
pub fn password_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.secret"));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A `[[relay]]` at the provider (127.0.0.1, verified with its CA).
pub fn relay(name: &str, port: u16, tls: &str, pw: &Path, extra: &str) -> String {
    let p = provider();
    relay_at(name, port, tls, (&p.ca_file(), &p.user, pw), extra)
}

/// A `[[relay]]` on 127.0.0.1 with its CA file, user name and password file.
pub fn relay_at(
    name: &str,
    port: u16,
    tls: &str,
    auth: (&Path, &str, &Path),
    extra: &str,
) -> String {
    let (ca, user, pw) = auth;
    format!(
        "[[relay]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\n\
         ca_file = \"{ca}\"\nusername = \"{user}\"\npassword_file = \"{pw}\"\n{extra}\n",
        ca = ca.display(),
        pw = pw.display(),
    )
}

pub const ROUTING: &str = "[routing]\nrewrite_senders = \"alerts@example.test\"\n";

/// A configuration file (no daemon) with these `[[relay]]` tables.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Setup {
    pub fn new(relays: impl FnOnce(&Path) -> String) -> Setup {
        Self::as_user(None, relays)
    }

    /// With `[daemon] user` (default: the test support's root).
    pub fn as_user(user: Option<&str>, relays: impl FnOnce(&Path) -> String) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let tail = format!("{}{ROUTING}", relays(dir.path()));
        let opts = Options {
            tail,
            daemon_user: user.map(str::to_owned),
            ..Options::default()
        };
        let config = dir.path().join("postrelay.toml");
        let text = Daemon::config_text(dir.path(), daemon::free_port(), &opts);
        std::fs::write(&config, text).unwrap();
        Setup { dir, config }
    }
}

/// Runs the doctor; `json` adds `--json`.
pub fn doctor(config: &Path, dns: &Dns, json: bool) -> Output {
    let mut cmd = Command::new(daemon::bin());
    cmd.arg("doctor")
        .arg("--config")
        .arg(config)
        .args(["--dns-server", &dns.server()])
        .args(["--spf-include", "spf.provider.test"])
        .args(["--dkim-selector", "sel1"])
        .args(["--timeout", "3s"])
        .env_remove("POSTRELAY_CONFIG");
    if json {
        cmd.arg("--json");
    }
    cmd.output().expect("run postrelay doctor")
}

/// Both forms of one run's report.
pub struct Reports {
    pub json: Value,
    pub text: String,
    pub json_status: Option<i32>,
    pub text_status: Option<i32>,
}

pub fn reports(config: &Path, dns: &Dns) -> Reports {
    let j = doctor(config, dns, true);
    let t = doctor(config, dns, false);
    let json: Value = serde_json::from_slice(&j.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&j.stdout),
            String::from_utf8_lossy(&j.stderr)
        )
    });
    Reports {
        json,
        text: String::from_utf8_lossy(&t.stdout).into_owned(),
        json_status: j.status.code(),
        text_status: t.status.code(),
    }
}

impl Reports {
    /// The JSON finding of `check` whose subject contains `subject`.
    pub fn finding(&self, check: &str, subject: &str) -> &Value {
        self.json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == check && f["subject"].as_str().unwrap().contains(subject))
            .unwrap_or_else(|| panic!("no {check} finding for {subject}:\n{}", self.json))
    }

    /// Asserts `check` on `subject` is `verdict` with `evidence` in its
    /// evidence and `fix` in its fix, in JSON and in the text.
    pub fn expect(&self, check: &str, subject: &str, verdict: &str, evidence: &str, fix: &str) {
        let f = self.finding(check, subject);
        assert_eq!(f["verdict"], verdict, "{f}\n{}", self.text);
        let ev = f["evidence"].as_str().unwrap();
        assert!(ev.contains(evidence), "evidence {ev:?} lacks {evidence:?}");
        if verdict != "ok" {
            let fx = f["fix"].as_str().unwrap_or_default();
            assert!(fx.contains(fix), "fix {fx:?} lacks {fix:?}");
        }
        // The text: the verdict, check and subject on one line, its fix on
        // the next.
        let lines: Vec<&str> = self.text.lines().collect();
        let at = lines
            .iter()
            .position(|l| {
                l.starts_with(verdict)
                    && l.split_whitespace().nth(1) == Some(check)
                    && l.contains(subject)
                    && l.contains(evidence)
            })
            .unwrap_or_else(|| {
                panic!("no {verdict} {check} line for {subject} in:\n{}", self.text)
            });
        if verdict != "ok" {
            let next = lines.get(at + 1).copied().unwrap_or_default();
            assert!(
                next.trim_start().starts_with("fix: ") && next.contains(fix),
                "fix line after {:?} is {next:?}, wanted {fix:?}",
                lines[at]
            );
        }
    }

    /// The run named a problem: exit status 1 in both forms.
    pub fn failed(&self) {
        assert_eq!(self.json["verdict"], "problem", "{}", self.json);
        assert_eq!(self.json_status, Some(1));
        assert_eq!(self.text_status, Some(1), "{}", self.text);
    }
}

/// A relay at a fake STARTTLS server presenting `pki`'s certificate (or
/// never greeting); the doctor's report of it, in both forms.
pub async fn fake_relay_reports(script: Script, pki: &TestPki) -> Reports {
    let server = FakeServer::start(script).await;
    let dns = zone(GOOD_SPF);
    let port = server.port();
    let s = Setup::new(|dir| {
        let ca = dir.join("fake-ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        let pw = password_file(dir, "pw", "secret");
        relay_at("fake", port, "starttls", (&ca, "user", &pw), "")
    });
    let config = s.config.clone();
    let started = std::time::Instant::now();
    let r = tokio::task::spawn_blocking(move || reports(&config, &dns))
        .await
        .unwrap();
    eprintln!("two doctor runs took {:?}\n{}", started.elapsed(), r.text);
    drop((s, server));
    r
}

/// A configuration with one relay at the provider, with the right password.
pub fn provider_relay(name: &str, port: u16, tls: &str, extra: &str) -> Setup {
    Setup::new(|dir| {
        let pw = password_file(dir, "pw", &provider().password);
        relay(name, port, tls, &pw, extra)
    })
}
