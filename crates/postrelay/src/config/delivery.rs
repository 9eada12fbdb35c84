//! Defaults and checks of `[delivery]` and `[bounce]`: the worker count,
//! the `sasl_passwd` file, and the addresses notices come from and go to.

use postrelay_smtp::Mailbox;

use super::file::{BounceFile, DeliveryFile};
use super::resolve::non_empty_path;
use super::sasl_passwd::{self, SaslPasswd};
use super::secrets;
use super::units::format_duration;
use super::validate::Locator;
use super::{BounceSettings, ConfigError, DeliverySettings, QueueSettings};
use std::time::Duration;

const MAX_WORKERS: usize = 20;
const POSTMASTER: &str = "postmaster";

/// The delivery settings, and the parsed `sasl_passwd` when one is set.
pub(super) fn delivery(
    file: DeliveryFile,
    loc: &Locator<'_>,
) -> Result<(DeliverySettings, Option<SaslPasswd>), ConfigError> {
    let max_workers = file.max_workers.unwrap_or(MAX_WORKERS);
    if max_workers == 0 {
        return Err(loc.value_error(
            "delivery.max_workers",
            "must be at least 1, or no mail would ever be delivered",
        ));
    }
    let key = "delivery.sasl_passwd";
    let (sasl_passwd, table) = match file.sasl_passwd {
        None => (None, None),
        Some(p) => {
            let path = non_empty_path(loc, key, p)?;
            let text = secrets::read_protected(&path).map_err(|why| {
                loc.invalid(
                    key,
                    loc.line_of(key),
                    format!("{key} {} {why}", path.display()),
                )
            })?;
            let table = sasl_passwd::parse(&text).map_err(|e| {
                let origin = path.display().to_string();
                loc.invalid_in(&origin, key, Some(e.line), format!("{key}: {}", e.message))
            })?;
            (Some(path), Some(table))
        }
    };
    Ok((
        DeliverySettings {
            enabled: file.enabled.unwrap_or(true),
            sasl_passwd,
            max_workers,
        },
        table,
    ))
}

pub(super) fn bounce(
    file: BounceFile,
    hostname: &str,
    queue: &QueueSettings,
    loc: &Locator<'_>,
) -> Result<BounceSettings, ConfigError> {
    let key = "bounce.sender";
    let sender = match file.sender {
        None => String::new(),
        Some(s) if s.is_empty() => s,
        Some(s) => {
            if s == "<>" {
                return Err(loc.value_error(key, r#"write "" for the null sender <>"#));
            }
            address(&s).map_err(|why| {
                let why =
                    format!(r#"{why}; e.g. "bounces@example.com", or "" for the null sender <>"#);
                loc.value_error(key, &why)
            })?
        }
    };
    let key = "bounce.postmaster";
    let postmaster = match file.postmaster.as_deref().unwrap_or(POSTMASTER) {
        "" => {
            return Err(loc.value_error(
                key,
                r#"double bounces need somewhere to go; write a local part such as "postmaster" or an address"#,
            ));
        }
        p if p.contains('@') => address(p).map_err(|why| loc.value_error(key, &why))?,
        local => address(&format!("{local}@{hostname}")).map_err(|why| {
            let why = format!("not a local part (completed as {local}@{hostname}): {why}");
            loc.value_error(key, &why)
        })?,
    };
    let key = "bounce.delay_warning";
    let delay_warning = match file.delay_warning.and_then(|d| d.0) {
        None => None,
        Some(d) if d < Duration::from_secs(1) => {
            return Err(loc.value_error(key, r#"must be at least 1 second, or "off""#));
        }
        Some(d) if d >= queue.max_lifetime => {
            let line = loc.first_line(&[key, "queue.max_lifetime"]);
            let message = format!(
                r#"{} is not shorter than {}, after which the message is bounced, so the warning would never be sent; make it shorter, or write "off""#,
                loc.describe(key, &format_duration(d)),
                loc.describe("queue.max_lifetime", &format_duration(queue.max_lifetime)),
            );
            return Err(loc.invalid(key, line, message));
        }
        Some(d) => Some(d),
    };
    Ok(BounceSettings {
        sender,
        postmaster,
        delay_warning,
    })
}

/// Checks an address (no angle brackets) and returns it in its normal
/// form. Non-ASCII addresses are refused: a relay might not offer
/// SMTPUTF8, and bounces must always be deliverable.
pub(super) fn address(text: &str) -> Result<String, String> {
    if text.starts_with('<') || text.ends_with('>') {
        return Err("write the address without angle brackets".to_owned());
    }
    let mailbox = Mailbox::parse(text).map_err(|e| format!("not an address: {e}"))?;
    if !mailbox.is_ascii() {
        return Err(
            "write the address in ASCII (a relay need not support SMTPUTF8); for a domain use its xn-- form"
                .to_owned(),
        );
    }
    if mailbox.is_address_literal() {
        return Err("use a domain name, not an address literal".to_owned());
    }
    Ok(mailbox.to_string())
}
