//! The relay policy seen from a real non-loopback client: a network
//! namespace joined to the root namespace by a veth pair. The daemon runs
//! in the root namespace and also listens on the veth address; swaks runs
//! inside the namespace, so the daemon sees a peer outside `mynetworks`.
//!
//! Namespaces need root. Under `CI=true` a missing `ip`/`swaks` or not being
//! root is a failure; elsewhere the tests are skipped with a message.

mod support;

use std::process::Command;

use support::daemon::Daemon;
use support::netns::{NetNs, can_run, daemon_for};
use support::peers;

fn queued(out: &str) -> Option<String> {
    let at = out.find("Ok: queued as ")?;
    out[at + 14..].split_whitespace().next().map(str::to_string)
}

fn rcpts(m: &serde_json::Value) -> Vec<&str> {
    m["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect()
}

/// Not an open relay: a client outside mynetworks gets 554 5.7.1 for an
/// outside domain and nothing is queued; local domains (localhost and the
/// host name) are accepted from anyone. The same daemon relays for loopback.
#[test]
fn outsider_may_only_send_to_local_domains() {
    if !can_run() {
        return;
    }
    let ns = NetNs::create();
    let d = daemon_for(&ns, Vec::new());
    outside_domain_refused(&ns, &d);
    local_domains_accepted_from_anyone(&ns, &d);
    mixed_recipients_keep_only_the_local(&ns, &d);
    loopback_relays(&d);
}

/// 554 5.7.1 at RCPT for an outside domain, no DATA, nothing queued.
fn outside_domain_refused(ns: &NetNs, d: &Daemon) {
    let (rc, out) = ns.swaks(d.port, "sender@example.com", "victim@example.com");
    assert_ne!(
        rc, 0,
        "swaks must fail when the recipient is refused:\n{out}"
    );
    // swaks marks unexpected replies with `<**`; the one to RCPT follows it.
    let after_rcpt: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != " -> RCPT TO:<victim@example.com>")
        .collect();
    let refusal = after_rcpt.get(1).copied().unwrap_or_default();
    assert!(
        refusal.starts_with("<** 554 5.7.1 ") && refusal.contains("Relay access denied"),
        "RCPT must get 554 5.7.1 Relay access denied:\n{out}"
    );
    assert!(
        !out.contains("<-  354"),
        "no DATA phase after the only recipient was refused:\n{out}"
    );
    assert_eq!(
        d.queue().len(),
        0,
        "nothing may be queued for a refused relay attempt"
    );
}

/// Local domains (localhost and the host name, any case) are accepted
/// from the namespace, which the envelope and `Received:` name.
fn local_domains_accepted_from_anyone(ns: &NetNs, d: &Daemon) {
    for local in ["root@localhost", "postmaster@relay.test", "Root@RELAY.TEST"] {
        let (rc, out) = ns.swaks(d.port, "sender@example.com", local);
        assert_eq!(
            rc, 0,
            "a local domain must be accepted from anyone ({local}):\n{out}"
        );
        let id = queued(&out).unwrap_or_else(|| panic!("{out}"));
        let m = d
            .queue()
            .into_iter()
            .find(|m| m["id"] == id.as_str())
            .unwrap();
        assert_eq!(rcpts(&m), [local]);
        assert_eq!(
            m["origin"]["peer"].as_str().unwrap().split(':').next(),
            Some(ns.ns_ip.to_string().as_str()),
            "the peer is the namespace's address"
        );
        let body = String::from_utf8_lossy(&d.body(&id)).into_owned();
        assert!(
            body.starts_with(&format!(
                "Received: from client.example ([{}])\r\n",
                ns.ns_ip
            )),
            "{body}"
        );
    }
    assert_eq!(d.queue().len(), 3);
}

/// Mixed: the outside recipient is refused, the message goes to the
/// local one only.
fn mixed_recipients_keep_only_the_local(ns: &NetNs, d: &Daemon) {
    let (_, out) = ns.swaks(
        d.port,
        "sender@example.com",
        "victim@example.com,root@localhost",
    );
    assert!(out.contains("<** 554 5.7.1"), "{out}");
    let id = queued(&out)
        .unwrap_or_else(|| panic!("the local recipient must still get the message:\n{out}"));
    let m = d
        .queue()
        .into_iter()
        .find(|m| m["id"] == id.as_str())
        .unwrap();
    assert_eq!(
        rcpts(&m),
        ["root@localhost"],
        "only the accepted recipient is in the envelope"
    );
    assert_eq!(d.queue().len(), 4);
}

/// Loopback is in mynetworks: the same daemon relays for a local client.
fn loopback_relays(d: &Daemon) {
    if peers::require("swaks") {
        let out = Command::new("swaks")
            .args([
                "--server",
                &format!("127.0.0.1:{}", d.port),
                "--from",
                "s@example.com",
                "--to",
                "victim@example.com",
                "--timeout",
                "20",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(d.queue().len(), 5);
    }
}

/// With the namespace's network in mynetworks the same client may relay.
#[test]
fn mynetworks_lets_the_namespace_relay() {
    if !can_run() {
        return;
    }
    let ns = NetNs::create();
    let d = daemon_for(&ns, vec![ns.net.clone()]);
    let (rc, out) = ns.swaks(d.port, "sender@example.com", "victim@example.com");
    assert_eq!(rc, 0, "a client in mynetworks may relay:\n{out}");
    let id = queued(&out).unwrap_or_else(|| panic!("{out}"));
    let q = d.queue();
    assert_eq!(q.len(), 1, "{q:#?}");
    assert_eq!(q[0]["id"], id.as_str());
    assert_eq!(rcpts(&q[0]), ["victim@example.com"]);
    assert_eq!(q[0]["sender"], "sender@example.com");
}
