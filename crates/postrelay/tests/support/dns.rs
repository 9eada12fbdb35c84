//! A private DNS server for tests: Debian's `dnsmasq` on a loopback port,
//! serving only the TXT records a test gives it (no upstream, no hosts
//! file), stopped on drop. Guard tests with `peers::require("dnsmasq")`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running dnsmasq; killed on drop.
pub struct Dns {
    child: Child,
    pub port: u16,
}

impl Dns {
    /// Serves `records` (name, TXT text) of `zone` on 127.0.0.1 and a free
    /// port (UDP and TCP), answering NXDOMAIN for other names of the zone;
    /// returns once it accepts TCP connections.
    pub fn start(zone: &str, records: &[(&str, &str)]) -> Dns {
        for _ in 0..3 {
            let port = super::daemon::free_port();
            let mut cmd = Command::new("dnsmasq");
            cmd.args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--pid-file=",
                "--log-facility=-",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--local=/{zone}/"));
            for (name, text) in records {
                cmd.arg(format!("--txt-record={name},{text}"));
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start dnsmasq");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Dns { child, port };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut e, &mut err);
                    }
                    eprintln!("dnsmasq exited ({status}): {err}; retrying on another port");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "dnsmasq did not listen within 10 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("dnsmasq could not be started");
    }

    /// `127.0.0.1:PORT`, for `postrelay doctor --dns-server`.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
