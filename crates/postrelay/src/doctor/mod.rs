//! `postrelay doctor`: independent checks of a setup, each ending in a
//! [`Finding`] with a verdict (ok, warning, problem), the evidence and,
//! unless all is well, the exact fix; printed for people, or as JSON
//! (`--json`) for machines. The exit status is 1 when any finding is a
//! problem, else 0.
//!
//! The checks, one file each: `config` (the file loads, secret files'
//! owner and mode), `spool` (writable, free space, what waits and why),
//! `daemon` (running, its version, its control socket), `relay` (per
//! `[[relay]]`: the real TLS mode of its port, certificate, EHLO, AUTH
//! mechanisms, the credentials tried with AUTH only), `oauth` (each
//! OAuth2 relay's refresh token: missing, refused, near its known
//! lifetime), `reach` (outbound
//! TCP to ports 25, 465 and 587), `dns` (SPF, DKIM and DMARC of each
//! sending domain).
//!
//! Time is bounded: every network step waits at most `--timeout`, every
//! check runs at the same time as the others (relays concurrently too), and
//! a check that is not done after the overall limit is reported as such.
//!
//! Not for: changing anything. The doctor never sends mail, never writes
//! to the spool and never changes the configuration; it says what to do.

mod config;
mod daemon;
mod dns;
mod oauth;
mod reach;
mod relay;
mod render;
mod spool;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;

/// `postrelay doctor` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// Print one JSON object instead of the report for people.
    #[arg(long)]
    pub json: bool,
    /// How long each network step (connect, greeting, TLS, EHLO, AUTH, a
    /// DNS query) may take.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The DNS server for the SPF, DKIM and DMARC checks, as IP or IP:PORT.
    /// Default: the system's resolver (/etc/resolv.conf).
    #[arg(long, value_name = "IP[:PORT]")]
    pub dns_server: Option<String>,
    /// Another host whose ports 25, 465 and 587 are probed for outbound
    /// reachability, besides the relays' hosts (e.g. smtp.gmail.com).
    #[arg(long, value_name = "HOST")]
    pub probe_host: Vec<String>,
    /// The SPF include your provider asks for (`include:DOMAIN`), when the
    /// doctor does not know the provider from the relay's host name.
    #[arg(long, value_name = "DOMAIN")]
    pub spf_include: Vec<String>,
    /// A DKIM selector your provider signs with, when the doctor does not
    /// know the provider's selectors.
    #[arg(long, value_name = "SELECTOR")]
    pub dkim_selector: Vec<String>,
}

/// How a finding turned out; ordered from good to bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// As it should be.
    Ok,
    /// Works, but worth a look (mail may be delayed or marked as spam).
    Warning,
    /// Mail will not go out (or not as intended) until this is fixed.
    Problem,
}

impl Verdict {
    /// The word printed and written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warning => "warning",
            Verdict::Problem => "problem",
        }
    }
}

/// One result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which check: `config`, `secrets`, `spool`, `queue`, `daemon`,
    /// `reach`, `relay.tls_mode`, `relay.certificate`, `relay.ehlo`,
    /// `relay.auth`, `relay.oauth`, `dns.spf`, `dns.dkim`, `dns.dmarc`, …
    pub check: &'static str,
    /// What was looked at: a file, a relay, a domain, a port.
    pub subject: String,
    /// The verdict.
    pub verdict: Verdict,
    /// What was seen.
    pub evidence: String,
    /// What to do; `None` when nothing needs doing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    /// An `ok` finding.
    pub fn ok(
        check: &'static str,
        subject: impl Into<String>,
        evidence: impl Into<String>,
    ) -> Self {
        Finding {
            check,
            subject: subject.into(),
            verdict: Verdict::Ok,
            evidence: evidence.into(),
            fix: None,
        }
    }

    /// A warning or problem with its fix.
    pub fn bad(
        check: &'static str,
        verdict: Verdict,
        subject: impl Into<String>,
        evidence: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            check,
            subject: subject.into(),
            verdict,
            evidence: evidence.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Everything one run found.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The worst verdict of all findings.
    pub verdict: Verdict,
    /// The findings, in the order of the checks.
    pub findings: Vec<Finding>,
    /// How long the run took, in milliseconds.
    pub elapsed_ms: u64,
}

impl Report {
    fn new(findings: Vec<Finding>, elapsed: Duration) -> Report {
        let verdict = findings
            .iter()
            .map(|f| f.verdict)
            .max()
            .unwrap_or(Verdict::Ok);
        Report {
            verdict,
            findings,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// Runs every check and prints the report; exit status 1 on a problem.
pub fn main(explicit: Option<&Path>, args: &DoctorArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("postrelay: doctor: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(run(explicit, args));
    if args.json {
        println!("{}", render::json(&report));
    } else {
        print!("{}", render::human(&report));
    }
    if report.verdict == Verdict::Problem {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs every check: the configuration first (the others need it), then
/// the rest at the same time, each within the overall limit.
pub async fn run(explicit: Option<&Path>, args: &DoctorArgs) -> Report {
    let started = Instant::now();
    let loaded = config::check(explicit);
    let mut findings = loaded.findings;
    let Some(cfg) = loaded.config else {
        return Report::new(findings, started.elapsed());
    };
    let cfg = std::sync::Arc::new(cfg);
    // Every network step is bounded by `timeout`; a relay probe makes a
    // handful of them one after the other, so the whole run gets a few.
    let limit = args.timeout.saturating_mul(6);
    let local = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || {
            let mut f = spool::check(&cfg);
            f.push(daemon::check(&cfg));
            f.extend(oauth::check(&cfg));
            f
        })
    };
    let (relays, reach, dns) = tokio::join!(
        bounded("relay", limit, relay::check(&cfg, args, loaded.complete)),
        bounded("reach", limit, reach::check(&cfg, args)),
        bounded("dns", limit, dns::check(&cfg, args)),
    );
    match local.await {
        Ok(f) => findings.extend(f),
        Err(e) => findings.push(Finding::bad(
            "spool",
            Verdict::Problem,
            cfg.spool.display().to_string(),
            format!("the spool check failed: {e}"),
            "run postrelay doctor again; report a bug if it repeats",
        )),
    }
    findings.extend(relays);
    findings.extend(reach);
    findings.extend(dns);
    Report::new(findings, started.elapsed())
}

/// `check`'s findings, or one saying it did not finish within `limit`.
async fn bounded(
    check: &'static str,
    limit: Duration,
    fut: impl std::future::Future<Output = Vec<Finding>>,
) -> Vec<Finding> {
    match tokio::time::timeout(limit, fut).await {
        Ok(f) => f,
        Err(_) => vec![Finding::bad(
            check,
            Verdict::Warning,
            check,
            format!("not finished after {} s", limit.as_secs()),
            "a peer answers very slowly; run postrelay doctor again, with a longer --timeout",
        )],
    }
}
