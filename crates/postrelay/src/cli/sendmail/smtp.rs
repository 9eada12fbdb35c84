//! `sendmail -bs`: SMTP on standard input and output, relayed to the
//! daemon's first SMTP listener (so such mail arrives over SMTP from
//! loopback, not as a local submission).
//!
//! Not for: local submission (the parent module).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;

use super::{EX_CONFIG, EX_TEMPFAIL, Fail};
use crate::config::Config;

/// `-bs`: relays SMTP between stdin/stdout and the daemon's first listener.
pub(super) fn relay(config: &Config) -> Result<ExitCode, Fail> {
    let Some(&listen) = config.intake.listen.first() else {
        return Err(Fail(
            EX_CONFIG,
            "no intake.listen address to connect to".into(),
        ));
    };
    let target = SocketAddr::new(
        match listen.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
            ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        },
        listen.port(),
    );
    let stream = match TcpStream::connect_timeout(&target, std::time::Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) => {
            print!(
                "421 4.3.2 {} Service not available: cannot reach the postrelay daemon on {target} ({e})\r\n",
                config.hostname
            );
            let _ = io::stdout().flush();
            return Ok(ExitCode::from(EX_TEMPFAIL));
        }
    };
    let mut upstream = stream
        .try_clone()
        .map_err(|e| Fail(EX_TEMPFAIL, e.to_string()))?;
    std::thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut upstream);
        let _ = upstream.shutdown(std::net::Shutdown::Write);
    });
    let mut down = stream;
    let mut stdout = io::stdout().lock();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match down.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if stdout
                    .write_all(&buf[..n])
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    Ok(ExitCode::SUCCESS)
}
