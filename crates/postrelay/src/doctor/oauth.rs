//! The doctor's OAuth2 check: for each relay with `[relay.oauth]`, the
//! state of its login as its token file records it (`oauth::health`):
//! missing, refused by the provider, near or past the provider's known
//! refresh-token lifetime. A refused or missing token is a problem (mail
//! to the relay waits); one near its end is a warning, before it breaks.
//!
//! Not for: asking the provider for a token (that would rotate the
//! refresh token behind the daemon's back).

use super::{Finding, Verdict};
use crate::config::Config;
use crate::oauth::health::{self, Level};

/// One finding per OAuth2 relay.
pub(super) fn check(cfg: &Config) -> Vec<Finding> {
    let owner = match crate::cli::auth::daemon_owner(cfg) {
        Ok((uid, _)) => uid,
        Err(e) => {
            return vec![Finding::bad(
                "relay.oauth",
                Verdict::Problem,
                "[daemon] user",
                e,
                "create the user, or set [daemon] user",
            )];
        }
    };
    let now = jiff::Timestamp::now().as_second();
    cfg.relays
        .iter()
        .filter_map(|r| r.oauth.as_ref().map(|o| (r.name.as_str(), o)))
        .map(|(name, o)| {
            let h = health::check(name, o, owner, now);
            let subject = format!("relay {name} (OAuth2, user {})", o.username);
            let verdict = match h.level {
                Level::Ok => return Finding::ok("relay.oauth", subject, h.summary),
                Level::Warn => Verdict::Warning,
                Level::Fail => Verdict::Problem,
            };
            let fix = h.fix.unwrap_or_default();
            Finding::bad("relay.oauth", verdict, subject, h.summary, fix)
        })
        .collect()
}
