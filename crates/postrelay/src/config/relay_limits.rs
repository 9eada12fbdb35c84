//! A relay's sending limits: the provider preset's published numbers,
//! overridden key by key by the relay's own `[relay.limits]` table, and
//! how a throttle reply is recognised and waited out.
//!
//! Not for: counting (that is `quota`) or deciding what a reply means
//! (that is `deliver::outcome`, which takes the patterns from here).

use std::time::Duration;

use serde::Deserialize;

use super::units::HumanDuration;
use super::validate::Locator;
use super::{ConfigError, RelayLimits};
use crate::quota::{Counted, Limits, Rate, Span, Window};

/// How long a relay rests after a throttle reply, by default.
pub(super) const COOL_DOWN: Duration = Duration::from_secs(15 * 60);

/// Longest cool-down: a day, the longest window providers count in.
const MAX_COOL_DOWN: Duration = Duration::from_secs(86_400);

/// `[relay.limits]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RelayLimitsFile {
    pub account: Option<String>,
    pub rate: Option<String>,
    pub burst: Option<u32>,
    pub messages_per_hour: Option<u32>,
    pub messages_per_day: Option<u32>,
    pub recipients_per_hour: Option<u32>,
    pub recipients_per_day: Option<u32>,
    pub recipients_per_transaction: Option<u32>,
    pub spill_to: Option<String>,
    pub throttle_replies: Option<Vec<String>>,
    pub cool_down: Option<HumanDuration>,
}

/// The numbers a provider publishes, as preset defaults (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PresetLimits {
    /// `(count, per seconds, burst)`.
    pub rate: Option<(u32, u64, u32)>,
    /// Recipients per rolling day.
    pub recipients_per_day: u32,
    /// Messages per rolling day.
    pub messages_per_day: u32,
    /// Recipients per transaction.
    pub recipients_per_transaction: u32,
}

/// Where the limits apply and what the relay is called in messages.
pub(super) struct Owner<'a> {
    pub key: &'a str,
    pub name: &'a str,
    /// `user@host` of the relay's credentials, if any.
    pub login: Option<String>,
}

/// The relay's limits: the preset's, then its own keys (0 or "off" turns
/// a preset's limit off).
pub(super) fn relay_limits(
    loc: &Locator<'_>,
    owner: &Owner<'_>,
    preset: PresetLimits,
    file: RelayLimitsFile,
) -> Result<RelayLimits, ConfigError> {
    let key = |f: &str| format!("{}.limits.{f}", owner.key);
    let rate = match file.rate.as_deref() {
        Some(w) => parse_rate(w).map_err(|why| loc.value_error(&key("rate"), &why))?,
        None => preset.rate.map(|(count, per, burst)| Rate {
            count,
            per: Duration::from_secs(per),
            burst,
        }),
    };
    let rate = match (rate, file.burst) {
        (_, Some(0)) => {
            return Err(loc.value_error(&key("burst"), "must be at least 1 (1: no burst)"));
        }
        (Some(r), Some(b)) => Some(Rate { burst: b, ..r }),
        // Without a rate there is no bucket: burst is ignored (the
        // example file shows both defaults).
        (None, Some(_)) => None,
        (r, None) => r,
    };
    let mut windows = Vec::new();
    let written = [
        (Span::Hour, Counted::Messages, file.messages_per_hour, 0),
        (
            Span::Day,
            Counted::Messages,
            file.messages_per_day,
            preset.messages_per_day,
        ),
        (Span::Hour, Counted::Recipients, file.recipients_per_hour, 0),
        (
            Span::Day,
            Counted::Recipients,
            file.recipients_per_day,
            preset.recipients_per_day,
        ),
    ];
    for (span, counts, own, preset) in written {
        let max = own.unwrap_or(preset);
        if max > 0 {
            windows.push(Window { span, counts, max });
        }
    }
    let per_tx = file
        .recipients_per_transaction
        .unwrap_or(preset.recipients_per_transaction);
    let account = match file.account {
        Some(a) if a.trim().is_empty() => {
            let why = "must name the provider account these counts belong to, e.g. account = \"ses-main\"";
            return Err(loc.value_error(&key("account"), why));
        }
        Some(a) => a,
        None => owner.login.clone().unwrap_or_else(|| owner.name.to_owned()),
    };
    let cool_down = file.cool_down.map_or(COOL_DOWN, |d| d.0);
    if cool_down < Duration::from_secs(1) || cool_down > MAX_COOL_DOWN {
        let why = r#"must be between 1 second and 1 day; write e.g. "15m""#;
        return Err(loc.value_error(&key("cool_down"), why));
    }
    let throttle_replies = file.throttle_replies.unwrap_or_default();
    if throttle_replies.iter().any(|p| p.trim().is_empty()) {
        let why = "an empty pattern would match every reply; write part of the provider's reply, e.g. \"4.7.0 rate limited\"";
        return Err(loc.value_error(&key("throttle_replies"), why));
    }
    Ok(RelayLimits {
        quota: Limits {
            account,
            rate,
            windows,
            recipients_per_transaction: (per_tx > 0).then_some(per_tx),
        },
        spill_to: file.spill_to,
        throttle_replies: throttle_replies
            .iter()
            .map(|p| p.trim().to_ascii_lowercase())
            .collect(),
        cool_down,
    })
}

/// `"14/s"`, `"30/min"`, `"100/h"` (burst: the count per second, else 1);
/// `"off"`: none.
pub(crate) fn parse_rate(written: &str) -> Result<Option<Rate>, String> {
    const HINT: &str =
        r#"write messages per unit of time, e.g. "14/s", "30/min" or "100/h" (or "off")"#;
    let w = written.trim();
    if w.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let (count, unit) = w.split_once('/').ok_or_else(|| HINT.to_owned())?;
    let count: u32 = count
        .trim()
        .parse()
        .ok()
        .filter(|c| *c > 0)
        .ok_or_else(|| format!("the count must be a whole number from 1 up; {HINT}"))?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "min" | "minute" => 60,
        "h" | "hour" => 3600,
        _ => return Err(format!("unknown unit of time; {HINT}")),
    };
    let burst = if per == 1 { count } else { 1 };
    Ok(Some(Rate {
        count,
        per: Duration::from_secs(per),
        burst,
    }))
}

/// `spill_to` names another relay.
pub(super) fn check_spill(
    loc: &Locator<'_>,
    key: &str,
    own: &str,
    spill: Option<&str>,
    names: &[Option<String>],
) -> Result<(), ConfigError> {
    let Some(s) = spill else { return Ok(()) };
    let why = if s == own {
        format!(
            "\"{s}\" is this relay itself; name the relay that takes mail over when this one's limits are reached"
        )
    } else if !names.iter().any(|n| n.as_deref() == Some(s)) {
        let known: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
        format!(
            "\"{s}\" is not a [[relay]] name (the relays are: {})",
            known.join(", ")
        )
    } else {
        return Ok(());
    };
    Err(loc.value_error(key, &why))
}
