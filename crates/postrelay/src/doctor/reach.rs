//! Outbound reachability: can this host open TCP connections to ports 25,
//! 465 and 587 (and each relay's own port) of the relays' hosts and of the
//! `--probe-host`s? Hosting companies often block outbound port 25, and
//! some block all SMTP ports; a port that gets no answer within
//! `--timeout` looks blocked, a refused one is closed there (or rejected by
//! a firewall). All connections are made at once and closed at once.
//!
//! A port a relay uses that cannot be reached is a problem; the others are
//! reported for information (a blocked port 25 matters only to whoever
//! would relay through it).
//!
//! Not for: SMTP or TLS on those ports (`relay` does that).

use std::collections::BTreeSet;
use std::time::Duration;

use super::{DoctorArgs, Finding, Verdict};
use crate::config::Config;
use crate::net::resolve::Resolver;
use crate::net::stream;

/// The ports a mail relay is offered on: SMTP, submissions, submission.
const SMTP_PORTS: [u16; 3] = [25, 465, 587];

/// How one port answered.
enum Port {
    Open,
    Refused(String),
    Silent,
}

/// One finding per host: each port's state.
pub(super) async fn check(config: &Config, args: &DoctorArgs) -> Vec<Finding> {
    let mut hosts: Vec<(String, BTreeSet<u16>)> = Vec::new();
    let relays = config.relays.iter().map(|r| (r.host.clone(), Some(r.port)));
    let extra = args.probe_host.iter().map(|h| (h.clone(), None));
    for (host, port) in relays.chain(extra) {
        let ports = match hosts.iter_mut().find(|(h, _)| *h == host) {
            Some((_, ports)) => ports,
            None => {
                hosts.push((host, SMTP_PORTS.into_iter().collect()));
                &mut hosts.last_mut().expect("just pushed").1
            }
        };
        ports.extend(port);
    }
    if hosts.is_empty() {
        return vec![Finding::ok(
            "reach",
            "outbound SMTP ports",
            "not probed: no relay is configured (name a host with --probe-host)",
        )];
    }
    let resolver = std::sync::Arc::new(Resolver::system());
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (host, ports)) in hosts.into_iter().enumerate() {
        let used: BTreeSet<u16> = config
            .relays
            .iter()
            .filter(|r| r.host == host)
            .map(|r| r.port)
            .collect();
        let resolver = resolver.clone();
        let step = args.timeout;
        tasks.spawn(async move { (i, probe_host(&resolver, host, ports, used, step).await) });
    }
    let mut found = tasks.join_all().await;
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, f)| f).collect()
}

/// Every port of `host` at once; a problem when a port in `used` fails.
async fn probe_host(
    resolver: &Resolver,
    host: String,
    ports: BTreeSet<u16>,
    used: BTreeSet<u16>,
    step: Duration,
) -> Finding {
    let subject = format!("outbound to {host}");
    let addrs = match tokio::time::timeout(step, resolver.resolve(&host, 0)).await {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(e)) => return unresolved(subject, e),
        Err(_) => return unresolved(subject, format!("no answer within {} s", step.as_secs())),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for port in ports {
        let addrs: Vec<_> = addrs
            .iter()
            .map(|a| std::net::SocketAddr::new(a.ip(), port))
            .collect();
        tasks.spawn(async move {
            let state = match stream::connect(&addrs, step).await {
                Ok(_) => Port::Open,
                Err(e) if e.all_timed_out => Port::Silent,
                Err(e) if e.attempts.iter().all(|(_, why)| why.contains("refused")) => {
                    Port::Refused("connection refused".into())
                }
                Err(e) => Port::Refused(e.to_string()),
            };
            (port, state)
        });
    }
    let mut states = tasks.join_all().await;
    states.sort_by_key(|(p, _)| *p);
    let mut parts = Vec::new();
    let mut broken = Vec::new();
    for (port, state) in &states {
        let role = if used.contains(port) {
            " (a relay's port)"
        } else {
            ""
        };
        parts.push(match state {
            Port::Open => format!("{port} open{role}"),
            Port::Silent => format!(
                "{port}{role} no answer within {} s (blocked on the way?)",
                step.as_secs()
            ),
            Port::Refused(why) => format!("{port}{role} refused ({why})"),
        });
        if used.contains(port) && !matches!(state, Port::Open) {
            broken.push(*port);
        }
    }
    let evidence = parts.join("; ");
    if broken.is_empty() {
        return Finding::ok("reach", subject, evidence);
    }
    let list: Vec<String> = broken.iter().map(u16::to_string).collect();
    Finding::bad(
        "reach",
        Verdict::Problem,
        subject,
        evidence,
        format!(
            "port {} of {host} cannot be reached from here: check the relay's host and port \
             with the provider, the local firewall (nft list ruleset), and whether the hosting \
             company blocks outbound SMTP; a provider usually offers both 587 and 465",
            list.join(", ")
        ),
    )
}

fn unresolved(subject: String, why: String) -> Finding {
    Finding::bad(
        "reach",
        Verdict::Problem,
        subject,
        format!("cannot resolve the host: {why}"),
        "check the host name and this machine's DNS (/etc/resolv.conf)",
    )
}
