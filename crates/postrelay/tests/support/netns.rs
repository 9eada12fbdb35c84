//! A network namespace joined to the root namespace by a veth pair, and a
//! daemon listening on its veth address too: a client run inside the
//! namespace is a real non-loopback peer, outside `mynetworks`.
//!
//! Namespaces need root. Under `CI=true` a missing `ip`/`swaks` or not being
//! root is a failure; elsewhere [`can_run`] says no and the test skips.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::daemon::{Daemon, Options};
use super::peers;

/// Whether this process may create namespaces; panics under CI if not.
pub fn can_run() -> bool {
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
pub struct NetNs {
    pub name: String,
    veth_host: String,
    /// The root namespace's end (the daemon listens here).
    pub host_ip: Ipv4Addr,
    /// The namespace's end (the client's address).
    pub ns_ip: Ipv4Addr,
    /// The /30 holding both.
    pub net: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl NetNs {
    pub fn create() -> NetNs {
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
    pub fn swaks(&self, port: u16, from: &str, to: &str) -> (i32, String) {
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
pub fn daemon_for(ns: &NetNs, mynetworks: Vec<String>) -> Daemon {
    daemon_with(
        ns,
        Options {
            mynetworks,
            ..Options::default()
        },
    )
}

/// [`daemon_for`] with any options.
pub fn daemon_with(ns: &NetNs, options: Options) -> Daemon {
    // The harness listens on one address and checks readiness on
    // 127.0.0.1, so start there, add the veth address, and restart.
    let mut d = Daemon::start_with(options);
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
