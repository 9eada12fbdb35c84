//! Each `[[relay]]` probed with the delivery client itself, all relays at
//! once, every step bounded by `--timeout`:
//!
//! 1. a session in `tls = "auto"` (first guess: the configured mode),
//!    encrypted but not verified and without AUTH: the port's real TLS
//!    mode (the client's own detection: a plaintext greeting is STARTTLS,
//!    silence answered by a TLS handshake is implicit TLS), the
//!    certificate chain as presented, the EHLO capabilities after TLS;
//! 2. a session exactly as the daemon opens it (configured security, CA
//!    and credentials, the mode found in 1): the certificate verdict from
//!    rustls and the credentials tried with AUTH; then QUIT. No mail is
//!    ever sent.
//!
//! Not for: reachability of other ports (`reach`), DNS of the sending
//! domains (`dns`).

use std::sync::Arc;
use std::time::Duration;

use super::{DoctorArgs, Finding, Verdict};
use crate::config::{Config, RelayConfig, RelayTimeouts, Security, TlsMode};
use crate::deliver::Reason;
use crate::deliver::client::{Detected, ModeMemory, Session, Target};
use crate::net::cert::{self, CertInfo};
use crate::net::resolve::Resolver;
use crate::net::tls;

/// Longest wait for a greeting: a submission port greets at once, and a
/// silent one is an implicit-TLS port to be found quickly.
const GREETING: Duration = Duration::from_secs(3);

/// Probes every relay concurrently; findings in the configuration's order.
pub(super) async fn check(config: &Config, args: &DoctorArgs, complete: bool) -> Vec<Finding> {
    let resolver = Arc::new(Resolver::system());
    let mut tasks = tokio::task::JoinSet::new();
    for (i, rc) in config.relays.iter().enumerate() {
        let probe = Probe {
            rc: rc.clone(),
            helo: config.hostname.clone(),
            timeouts: timeouts(args.timeout),
            complete,
        };
        let resolver = resolver.clone();
        tasks.spawn(async move { (i, probe.run(&resolver).await) });
    }
    let mut results: Vec<(usize, Vec<Finding>)> = tasks.join_all().await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().flat_map(|(_, f)| f).collect()
}

/// Every phase bounded by `step` (the greeting by [`GREETING`] at most).
fn timeouts(step: Duration) -> RelayTimeouts {
    RelayTimeouts {
        connect: step,
        greeting: step.min(GREETING),
        ehlo: step,
        tls: step,
        auth: step,
        mail: step,
        rcpt: step,
        data: step,
        data_end: step,
        rset: step,
        quit: step.min(Duration::from_secs(2)),
    }
}

/// One relay's probe.
struct Probe {
    rc: RelayConfig,
    helo: String,
    timeouts: RelayTimeouts,
    /// The configuration loaded with its credentials.
    complete: bool,
}

/// What the first (unverified) session learned.
struct Seen {
    mode: Detected,
    caps: postrelay_smtp::Capabilities,
    tls: Option<String>,
    leaf: Option<Result<CertInfo, String>>,
    /// How many certificates the relay presented (leaf and intermediates).
    chain: usize,
}

impl Probe {
    fn subject(&self) -> String {
        format!("relay {} ({}:{})", self.rc.name, self.rc.host, self.rc.port)
    }

    async fn run(&self, resolver: &Resolver) -> Vec<Finding> {
        let subject = self.subject();
        let addrs = match tokio::time::timeout(
            self.timeouts.connect,
            resolver.resolve(&self.rc.host, self.rc.port),
        )
        .await
        {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(e)) => return vec![unresolved(subject, &self.rc.host, e)],
            Err(_) => return vec![unresolved(subject, &self.rc.host, "timed out".into())],
        };
        let seen = match self.discover(&addrs).await {
            Ok(seen) => seen,
            Err(reason) => return vec![self.unreachable(reason)],
        };
        let mut findings = vec![self.mode_finding(seen.mode)];
        let verified = self.verified_session(&addrs, seen.mode).await;
        findings.push(self.certificate_finding(&seen, &verified));
        findings.push(self.ehlo_finding(&seen));
        findings.push(self.auth_finding(&seen, &verified));
        findings
    }

    /// The target as the daemon builds it, with the doctor's timeouts.
    fn target(&self, addrs: &[std::net::SocketAddr]) -> Target {
        Target {
            name: self.rc.name.clone(),
            host: self.rc.host.clone(),
            tls_name: self.rc.tls_name.clone(),
            port: self.rc.port,
            addrs: addrs.to_vec(),
            tls: self.rc.tls,
            security: self.rc.security,
            tls_config_verify: tls::client_config_no_verify(),
            credentials: None,
            oauth: None,
            allow_plaintext_auth: self.rc.allow_plaintext_auth,
            helo_name: self.helo.clone(),
            timeouts: self.timeouts,
            verbose: false,
            mode_memory: Arc::new(ModeMemory::new()),
        }
    }

    /// Session 1: the real mode, capabilities and certificate chain.
    async fn discover(&self, addrs: &[std::net::SocketAddr]) -> Result<Seen, Reason> {
        let mut target = self.target(addrs);
        target.tls = TlsMode::Auto;
        match self.rc.tls {
            TlsMode::Implicit => target.mode_memory.set(Detected::Implicit),
            TlsMode::StartTls => target.mode_memory.set(Detected::StartTls),
            TlsMode::Auto => {}
        }
        if self.rc.security.requires_tls() {
            target.security = Security::Encrypt;
        }
        let session = Session::open(&target).await.map_err(|f| f.reason)?;
        let chain = session.peer_certificates();
        let seen = Seen {
            mode: target.mode_memory.get().unwrap_or(Detected::StartTls),
            caps: session.capabilities().clone(),
            tls: session.tls().map(str::to_owned),
            leaf: chain.first().map(|d| cert::parse(d)),
            chain: chain.len(),
        };
        session.quit().await;
        Ok(seen)
    }

    /// Session 2, as the daemon opens it: `None` when it would add nothing
    /// (no verification and no credentials to try).
    async fn verified_session(
        &self,
        addrs: &[std::net::SocketAddr],
        mode: Detected,
    ) -> Option<Result<(), Reason>> {
        let credentials = self.rc.credentials.as_ref();
        // Without its secrets the configuration also lacks ca_file: a
        // verification now would blame the relay for what is unread here.
        if !self.complete || (self.rc.security != Security::Verify && credentials.is_none()) {
            return None;
        }
        let mut target = self.target(addrs);
        target.tls = match mode {
            Detected::Implicit => TlsMode::Implicit,
            Detected::StartTls => TlsMode::StartTls,
        };
        target.credentials = credentials.map(|c| (c.username.clone(), c.password.clone()));
        if self.rc.security == Security::Verify {
            match tls::client_config(self.rc.ca_file.as_deref()) {
                Ok(c) => target.tls_config_verify = c,
                Err(e) => return Some(Err(Reason::Tls(e.to_string()))),
            }
        }
        Some(match Session::open(&target).await {
            Ok(session) => {
                session.quit().await;
                Ok(())
            }
            Err(f) => Err(f.reason),
        })
    }

    fn unreachable(&self, reason: Reason) -> Finding {
        let fix = match &reason {
            Reason::Connect(_) | Reason::Timeout { .. } => format!(
                "check host and port of relay {} (the provider's documentation names them); \
                 if the host blocks outbound SMTP ports (see the reach findings), use the \
                 provider's other port (587 or 465) or ask the hosting company to open it",
                self.rc.name
            ),
            _ => format!(
                "the relay refused the session before AUTH; check host, port and tls of relay {}",
                self.rc.name
            ),
        };
        Finding::bad(
            "relay.connect",
            Verdict::Problem,
            self.subject(),
            reason.to_string(),
            fix,
        )
    }

    fn mode_finding(&self, mode: Detected) -> Finding {
        let (found, word) = match mode {
            Detected::Implicit => ("implicit TLS (TLS from the first byte)", "implicit"),
            Detected::StartTls => ("STARTTLS (a plaintext greeting first)", "starttls"),
        };
        let evidence = format!("port {} speaks {found}", self.rc.port);
        match self.rc.tls {
            TlsMode::Auto => Finding::ok(
                "relay.tls_mode",
                self.subject(),
                format!("{evidence}; tls = \"auto\" finds it"),
            ),
            configured if configured.as_str() == word => {
                Finding::ok("relay.tls_mode", self.subject(), evidence)
            }
            configured => Finding::bad(
                "relay.tls_mode",
                Verdict::Problem,
                self.subject(),
                format!(
                    "{evidence}, but the configuration says tls = \"{}\": every delivery \
                     waits for a timeout, then fails",
                    configured.as_str()
                ),
                format!(
                    "set tls = \"{word}\" (or \"auto\") in the [[relay]] named {}",
                    self.rc.name
                ),
            ),
        }
    }
}

fn unresolved(subject: String, host: &str, why: String) -> Finding {
    Finding::bad(
        "relay.connect",
        Verdict::Problem,
        subject,
        format!("cannot resolve {host}: {why}"),
        format!(
            "check the spelling of host = \"{host}\" and this machine's DNS (/etc/resolv.conf)"
        ),
    )
}

mod verdicts;
