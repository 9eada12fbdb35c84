//! The relay policy seen from a real non-loopback client: a network
//! namespace joined to the root namespace by a veth pair. The daemon runs
//! in the root namespace and also listens on the veth address; swaks runs
//! inside the namespace, so the daemon sees a peer outside `mynetworks`.
//!
//! Namespaces need root. Under `CI=true` a missing `ip`/`swaks` or not being
//! root is a failure; elsewhere the tests are skipped with a message.

mod support;

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use support::daemon::{Daemon, Options};
use support::peers;

/// Whether this process may create namespaces; panics under CI if not.
fn can_run() -> bool {
    peers::require_root("creating network namespaces")
        && peers::require("ip")
        && peers::require("swaks")
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A namespace with a veth pair to the root namespace, removed on drop
/// (also when the test panics). Names and the /30 are unique per process
/// and per namespace, so concurrent test runs do not collide.
struct NetNs {
    name: String,
    veth_host: String,
    /// The root namespace's end (the daemon listens here).
    host_ip: Ipv4Addr,
    /// The namespace's end (the client's address).
    ns_ip: Ipv4Addr,
    /// The /30 holding both.
    net: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl NetNs {
    fn create() -> NetNs {
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut ns = NetNs {
            name: format!("postrelay-test-{pid}-{n}"),
            veth_host: format!("prh{}x{n}", pid % 1_000_000),
            host_ip: Ipv4Addr::UNSPECIFIED,
            ns_ip: Ipv4Addr::UNSPECIFIED,
            net: String::new(),
        };
        let veth_ns = format!("prn{}x{n}", pid % 1_000_000);
        // From here on, Drop cleans up whatever part of this exists.
        ip(&["netns", "add", &ns.name]).unwrap();
        ip(&[
            "link",
            "add",
            &ns.veth_host,
            "type",
            "veth",
            "peer",
            "name",
            &veth_ns,
        ])
        .unwrap();
        ip(&["link", "set", &veth_ns, "netns", &ns.name]).unwrap();
        // A /30 in 10.231.0.0/16 derived from pid and counter; the next one
        // if some other run already uses it.
        let mut slot = (pid.wrapping_mul(8).wrapping_add(n)) % (256 * 64);
        let mut tries = 0;
        loop {
            let (a, b) = ((slot / 64) as u8, ((slot % 64) * 4) as u8);
            let (host, client) = (
                Ipv4Addr::new(10, 231, a, b + 1),
                Ipv4Addr::new(10, 231, a, b + 2),
            );
            let in_use = ip(&["-4", "-o", "addr", "show"])
                .unwrap()
                .contains(&format!("inet 10.231.{a}.{b}"));
            if !in_use && ip(&["addr", "add", &format!("{host}/30"), "dev", &ns.veth_host]).is_ok()
            {
                ns.host_ip = host;
                ns.ns_ip = client;
                ns.net = format!("10.231.{a}.{b}/30");
                break;
            }
            tries += 1;
            assert!(tries < 64, "no free /30 in 10.231.0.0/16");
            slot = (slot + 1) % (256 * 64);
        }
        ip(&["link", "set", &ns.veth_host, "up"]).unwrap();
        ns.exec_ip(&["addr", "add", &format!("{}/30", ns.ns_ip), "dev", &veth_ns]);
        ns.exec_ip(&["link", "set", &veth_ns, "up"]);
        ns.exec_ip(&["link", "set", "lo", "up"]);
        // Bounded wait for the link to come up (carrier on both ends).
        let deadline = Instant::now() + Duration::from_secs(10);
        let state = format!("/sys/class/net/{}/operstate", ns.veth_host);
        while std::fs::read_to_string(&state).unwrap_or_default().trim() != "up" {
            assert!(
                Instant::now() < deadline,
                "veth {} did not come up",
                ns.veth_host
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ns
    }

    fn exec_ip(&self, args: &[&str]) {
        let mut full = vec!["netns", "exec", &self.name, "ip"];
        full.extend_from_slice(args);
        ip(&full).unwrap();
    }

    /// Runs swaks inside the namespace against `server:port`; returns the
    /// exit code and the transcript.
    fn swaks(&self, port: u16, from: &str, to: &str) -> (i32, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "swaks"])
            .args([
                "--server",
                &format!("{}:{port}", self.host_ip),
                "--helo",
                "client.example",
                "--timeout",
                "20",
            ])
            .args(["--from", from, "--to", to, "--body", "relay policy test"])
            .output()
            .expect("ip netns exec swaks");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both; deleting the
        // namespace would too. Errors are ignored: parts may not exist.
        let _ = ip(&["link", "del", &self.veth_host]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Starts a daemon listening on loopback (for the harness and the CLI) and
/// on the veth address of `ns`, same port.
fn daemon_for(ns: &NetNs, mynetworks: Vec<String>) -> Daemon {
    // The harness listens on one address and checks readiness on
    // 127.0.0.1, so start there, add the veth address, and restart.
    let mut d = Daemon::start_with(Options {
        mynetworks,
        ..Options::default()
    });
    let text = std::fs::read_to_string(&d.config).unwrap();
    let one = format!("listen = [\"127.0.0.1:{}\"]", d.port);
    assert!(text.contains(&one), "unexpected harness config:\n{text}");
    let both = format!(
        "listen = [\"127.0.0.1:{0}\", \"{1}:{0}\"]",
        d.port, ns.host_ip
    );
    std::fs::write(&d.config, text.replace(&one, &both)).unwrap();
    assert!(d.stop().success());
    d.restart();
    d
}

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

    for local in [
        "root@localhost",
        "postmaster@relay.test",
        "Someone@RELAY.TEST",
    ] {
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

    // Mixed: the outside recipient is refused, the message goes to the local one only.
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

    // Loopback is in mynetworks: the same daemon relays for a local client.
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
