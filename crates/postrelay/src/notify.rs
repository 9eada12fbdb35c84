//! Tells the service manager (systemd) how the daemon is doing, with the
//! `sd_notify` protocol: one datagram of `KEY=value` lines to the socket
//! named by `$NOTIFY_SOCKET`.
//!
//! The daemon sends `READY=1` once its listeners are bound and the spool is
//! recovered (so `Type=notify` units that start after it can hand it mail at
//! once), `RELOADING=1` then `READY=1` around a SIGHUP reload, `STOPPING=1`
//! when it starts to stop, and `WATCHDOG=1` keep-alives when the unit sets
//! `WatchdogSec=`.
//!
//! Not a systemd library: only these messages. Without `$NOTIFY_SOCKET`
//! (started by hand, by another supervisor, or in tests) every call does
//! nothing. Written here rather than taken from a crate because the whole
//! protocol is one `sendto` of a short text; see `sd_notify(3)`.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go; a no-op when the daemon was not started by a
/// service manager that listens.
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<SocketAddr>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` as
    /// systemd sets them. A watchdog meant for another process (its pid in
    /// `$WATCHDOG_PID`) is ignored.
    pub fn from_env() -> Notifier {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Notifier::from_env`] with the variables from `get`.
    fn from_vars(get: impl Fn(&str) -> Option<String>) -> Notifier {
        let var = |name| get(name).filter(|v| !v.is_empty());
        let target = var("NOTIFY_SOCKET").and_then(|path| match socket_addr(&path) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(%path, error = %e, "NOTIFY_SOCKET is not a usable socket address; systemd will not hear from postrelay");
                None
            }
        });
        let for_us = var("WATCHDOG_PID")
            .map(|p| p.parse::<u32>().ok() == Some(std::process::id()))
            .unwrap_or(true);
        let watchdog = var("WATCHDOG_USEC")
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us)
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    /// Whether a service manager listens.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// The interval the unit's `WatchdogSec=` asks for, if any.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.target.as_ref().and(self.watchdog)
    }

    /// The daemon serves: listeners bound, spool recovered.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A reload (SIGHUP) begins; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
            .unwrap_or(0);
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={now}"));
    }

    /// The daemon is stopping.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: finishing sessions and deliveries");
    }

    /// A watchdog keep-alive.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    fn send(&self, message: &str) {
        let Some(target) = &self.target else { return };
        let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(message.as_bytes(), target));
        if let Err(e) = sent {
            tracing::warn!(error = %e, "cannot notify systemd ({message:?})");
        }
    }
}

/// `$NOTIFY_SOCKET`: a path, or `@name` for Linux's abstract namespace.
fn socket_addr(value: &str) -> io::Result<SocketAddr> {
    match value.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None if value.starts_with('/') => SocketAddr::from_pathname(value),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor @abstract",
        )),
    }
}

/// A `STATUS=` value must not contain a newline (it would start a new key).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (tempfile::TempDir, UnixDatagram, Notifier) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some(socket_addr(path.to_str().unwrap()).unwrap()),
            watchdog: Some(Duration::from_secs(1)),
        };
        (dir, sock, n)
    }

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn messages_reach_the_socket() {
        let (_dir, sock, n) = listener();
        n.ready("ready: 2 queued\nREADY=0");
        assert_eq!(recv(&sock), "READY=1\nSTATUS=ready: 2 queued READY=0");
        n.reloading();
        let r = recv(&sock);
        let usec: u64 = r
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(usec > 0);
        n.watchdog();
        assert_eq!(recv(&sock), "WATCHDOG=1");
        n.stopping();
        assert!(recv(&sock).starts_with("STOPPING=1\n"));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn watchdog_settings_from_the_environment() {
        let me = std::process::id().to_string();
        let vars = |pid: Option<&str>| {
            let pid = pid.map(str::to_string);
            move |name: &str| match name {
                "NOTIFY_SOCKET" => Some("/run/systemd/notify".to_string()),
                "WATCHDOG_USEC" => Some("30000000".to_string()),
                "WATCHDOG_PID" => pid.clone(),
                _ => None,
            }
        };
        let every = Some(Duration::from_secs(30));
        assert_eq!(Notifier::from_vars(vars(None)).watchdog_interval(), every);
        assert_eq!(
            Notifier::from_vars(vars(Some(&me))).watchdog_interval(),
            every
        );
        // Another process's watchdog, or no socket: no pings.
        assert_eq!(
            Notifier::from_vars(vars(Some("1"))).watchdog_interval(),
            None
        );
        let no_socket = |n: &str| (n == "WATCHDOG_USEC").then(|| "30000000".to_string());
        assert_eq!(Notifier::from_vars(no_socket).watchdog_interval(), None);
        assert!(!Notifier::from_vars(no_socket).is_active());
    }

    #[test]
    fn abstract_and_bad_addresses() {
        let name = format!("postrelay-test-{}", std::process::id());
        let sock = {
            use std::os::linux::net::SocketAddrExt;
            let a = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            UnixDatagram::bind_addr(&a).unwrap()
        };
        let n = Notifier {
            target: Some(socket_addr(&format!("@{name}")).unwrap()),
            watchdog: None,
        };
        n.watchdog();
        assert_eq!(recv(&sock), "WATCHDOG=1");
        assert!(socket_addr("relative/path").is_err());
        // No socket: nothing is sent, nothing fails.
        Notifier::default().ready("x");
        assert_eq!(Notifier::default().watchdog_interval(), None);
    }
}
