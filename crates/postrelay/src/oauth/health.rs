//! How a relay's OAuth2 login stands, read from its token file: for
//! `postrelay auth status` and `postrelay doctor`. The daemon records in
//! the file when the refresh token was issued, when it last worked and
//! whether the provider refused it; this module turns that into a verdict
//! with the fix.
//!
//! Not for: asking the provider (the daemon does, when it needs a token).

use std::time::Duration;

use super::store::{self, StoreError};
use crate::config::{OAuthConfig, OAuthFlow};

/// Warn when less than this part of the known lifetime is left.
const WARN_PART: u32 = 6;

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Works.
    Ok,
    /// Works, but will stop: act soon.
    Warn,
    /// Mail to the relay waits until someone acts.
    Fail,
}

/// A relay's token state, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The verdict.
    pub level: Level,
    /// What was found (never the token).
    pub summary: String,
    /// What to do, when something is to be done.
    pub fix: Option<String>,
}

/// The state of relay `relay`'s login at `now` (Unix seconds); the token
/// file must belong to `owner`.
pub fn check(relay: &str, c: &OAuthConfig, owner: u32, now: i64) -> Health {
    let login = format!("run postrelay auth login --relay {relay}");
    if c.flow == OAuthFlow::ClientCredentials {
        return Health {
            level: Level::Ok,
            summary: format!(
                "client credentials of application {}: no refresh token; the daemon asks for access tokens itself",
                c.client_id
            ),
            fix: None,
        };
    }
    let file = c.token_file.display();
    let t = match store::load(&c.token_file, owner) {
        Ok(t) => t,
        Err(StoreError::Missing) => {
            return Health {
                level: Level::Fail,
                summary: format!(
                    "no refresh token: {file} does not exist (never logged in); mail to this relay waits"
                ),
                fix: Some(login),
            };
        }
        Err(e) => {
            return Health {
                level: Level::Fail,
                summary: format!("the token file {file} {e}"),
                fix: Some(login),
            };
        }
    };
    if let Some((at, code)) = &t.refused {
        return Health {
            level: Level::Fail,
            summary: format!(
                "the provider refused the refresh token {} ago ({code}): it was revoked or expired; mail to this relay waits",
                ago(now - at)
            ),
            fix: Some(login),
        };
    }
    let last = t.refreshed_at.map_or("not used yet".to_owned(), |r| {
        format!("last refreshed {} ago", ago(now - r))
    });
    let mut summary = format!(
        "refresh token issued {} ago, {last}; in {file}",
        ago(now - t.obtained_at)
    );
    let Some(life) = c.refresh_token_lifetime else {
        return Health {
            level: Level::Ok,
            summary,
            fix: None,
        };
    };
    let left = super::state::lifetime_left(t.obtained_at, life, now);
    let warn_at = i64::try_from((life / WARN_PART).as_secs()).unwrap_or(i64::MAX);
    if left <= 0 {
        summary.push_str(&format!(
            "; past its lifetime ({}) by {}: the provider may refuse it at any time",
            ago(i64::try_from(life.as_secs()).unwrap_or(i64::MAX)),
            ago(-left)
        ));
    } else if left < warn_at {
        summary.push_str(&format!("; {} left of its lifetime", ago(left)));
    } else {
        return Health {
            level: Level::Ok,
            summary: format!("{summary}; {} left of its lifetime", ago(left)),
            fix: None,
        };
    }
    Health {
        level: Level::Warn,
        summary,
        fix: Some(format!(
            "{login} before it runs out (refresh_token_lifetime = \"{}\")",
            ago(i64::try_from(life.as_secs()).unwrap_or(i64::MAX))
        )),
    }
}

/// `3d 4h`, `5m`, `12s`: a rough span for people.
fn ago(secs: i64) -> String {
    let d = Duration::from_secs(secs.max(0).unsigned_abs());
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OAuthProvider, Secret};
    use crate::oauth::store::TokenFile;

    fn config(dir: &std::path::Path, life: Option<Duration>) -> OAuthConfig {
        OAuthConfig {
            username: "u@example.com".into(),
            provider: OAuthProvider::Microsoft,
            tenant: None,
            flow: OAuthFlow::Device,
            client_id: "c".into(),
            client_secret: None,
            client_secret_file: None,
            token_url: "https://t.example/token".into(),
            device_url: None,
            auth_url: None,
            scopes: Vec::new(),
            token_file: dir.join("r.token"),
            refresh_token_lifetime: life,
        }
    }

    #[test]
    fn verdicts_from_the_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let day = 86400;
        let c = config(dir.path(), Some(Duration::from_secs(90 * day as u64)));
        let h = check("m", &c, me, 0);
        assert_eq!(h.level, Level::Fail, "{h:?}");
        assert_eq!(h.fix.as_deref(), Some("run postrelay auth login --relay m"));

        let mut t = TokenFile {
            refresh_token: Secret::new("MARKER-rt"),
            obtained_at: 0,
            refreshed_at: Some(day),
            refused: None,
        };
        store::save(&c.token_file, &t, None).unwrap();
        let h = check("m", &c, me, 10 * day);
        assert_eq!(h.level, Level::Ok, "{h:?}");
        assert!(h.summary.contains("80d 0h left"), "{h:?}");
        // Within the last sixth of its lifetime: a warning with the fix.
        let h = check("m", &c, me, 80 * day);
        assert_eq!(h.level, Level::Warn, "{h:?}");
        assert!(h.summary.contains("10d 0h left"), "{h:?}");
        let h = check("m", &c, me, 91 * day);
        assert_eq!(h.level, Level::Warn, "{h:?}");
        assert!(h.summary.contains("past its lifetime"), "{h:?}");
        // Without a known lifetime, age alone is no warning.
        let h = check("m", &config(dir.path(), None), me, 400 * day);
        assert_eq!(h.level, Level::Ok, "{h:?}");

        t.refused = Some((day * 2, "invalid_grant".into()));
        store::save(&c.token_file, &t, None).unwrap();
        let h = check("m", &c, me, day * 3);
        assert_eq!(h.level, Level::Fail, "{h:?}");
        assert!(h.summary.contains("invalid_grant"), "{h:?}");
        assert!(!format!("{h:?}").contains("MARKER"));
    }
}
