//! Defaults and checks of a relay's timeouts: `relay.timeouts` and
//! `relay.idle_timeout`. Not for: applying them (the delivery engine
//! does).

use std::time::Duration;

use super::ConfigError;
use super::RelayTimeouts;
use super::file::RelayTimeoutsFile;
use super::units::HumanDuration;
use super::validate::Locator;

/// `relay.timeouts` defaults; the reasons are on [`RelayTimeouts`].
pub(super) const TIMEOUTS: RelayTimeouts = RelayTimeouts {
    connect: Duration::from_secs(30),
    greeting: Duration::from_secs(30),
    ehlo: Duration::from_secs(300),
    tls: Duration::from_secs(30),
    auth: Duration::from_secs(60),
    mail: Duration::from_secs(300),
    rcpt: Duration::from_secs(300),
    data: Duration::from_secs(180),
    data_end: Duration::from_secs(600),
    rset: Duration::from_secs(20),
    quit: Duration::from_secs(10),
};

/// Longest relay timeout: a relay that needs more than an hour to answer
/// is broken, and meanwhile the message waits instead of being retried.
const MAX_RELAY_TIMEOUT: Duration = Duration::from_secs(3600);

pub(super) fn timeouts(
    loc: &Locator<'_>,
    i: usize,
    file: RelayTimeoutsFile,
) -> Result<RelayTimeouts, ConfigError> {
    let d = TIMEOUTS;
    let one = |field: &str, written: Option<HumanDuration>, default: Duration| {
        relay_duration(
            loc,
            &format!("relay[{i}].timeouts.{field}"),
            written,
            default,
        )
    };
    Ok(RelayTimeouts {
        connect: one("connect", file.connect, d.connect)?,
        greeting: one("greeting", file.greeting, d.greeting)?,
        ehlo: one("ehlo", file.ehlo, d.ehlo)?,
        tls: one("tls", file.tls, d.tls)?,
        auth: one("auth", file.auth, d.auth)?,
        mail: one("mail", file.mail, d.mail)?,
        rcpt: one("rcpt", file.rcpt, d.rcpt)?,
        data: one("data", file.data, d.data)?,
        data_end: one("data_end", file.data_end, d.data_end)?,
        rset: one("rset", file.rset, d.rset)?,
        quit: one("quit", file.quit, d.quit)?,
    })
}

/// A relay duration: between 1 second and [`MAX_RELAY_TIMEOUT`].
pub(super) fn relay_duration(
    loc: &Locator<'_>,
    key: &str,
    written: Option<HumanDuration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = written.map_or(default, |d| d.0);
    if d < Duration::from_secs(1) {
        return Err(loc.value_error(key, r#"must be at least 1 second; write e.g. "30s""#));
    }
    if d > MAX_RELAY_TIMEOUT {
        let why = "must be at most 1h: a relay that takes longer is broken, and the message should be retried instead";
        return Err(loc.value_error(key, why));
    }
    Ok(d)
}
