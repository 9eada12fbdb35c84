//! SMTP AUTH (RFC 4954) with the relay: PLAIN when offered, else LOGIN;
//! with an OAuth2 token source, OAUTHBEARER or XOAUTH2 (`auth_oauth`),
//! under the same rules.
//!
//! Credentials are sent only over TLS, unless the operator chose
//! `security = "none"` together with `allow_plaintext_auth`. With
//! `security = "may"` and no TLS they are withheld and the session goes on
//! without AUTH (a relay that needs it then refuses MAIL with 530, which
//! defers the mail with the fix). A relay that announces no AUTH at all is
//! used without it, with a warning: that is its choice, and sending
//! nothing reveals nothing. Lines carrying credentials are recorded as
//! `<redacted>`; error texts show the relay's reply and the user name,
//! never the password.
//!
//! Not for: deciding whether the session needs TLS (`session`).

use postrelay_smtp::{Capabilities, Command, Reply, sasl};

use super::wire::Wire;
use super::{Security, Target};
use crate::deliver::outcome::{Phase, Reason};

/// Logs in when credentials are configured; without credentials there is
/// nothing to do (a relay that needs AUTH will refuse MAIL or RCPT).
/// Returns how it logged in (`PLAIN as user U`; never the password), or
/// `None` when it did not.
pub(super) async fn authenticate(
    target: &Target,
    wire: &mut Wire,
    caps: &Capabilities,
    tls_up: bool,
) -> Result<Option<String>, Reason> {
    let user = match (&target.credentials, &target.oauth) {
        (Some((user, _)), _) => user.as_str(),
        (None, Some(source)) => source.username(),
        (None, None) => return Ok(None),
    };
    let plaintext_allowed = target.security == Security::None && target.allow_plaintext_auth;
    if !tls_up && !plaintext_allowed {
        if target.security == Security::May {
            let why = format!(
                "no TLS with relay {}: credentials withheld (never sent in clear); \
                 continuing without AUTH (security = \"may\")",
                target.name
            );
            tracing::warn!(relay = %target.name, "{why}");
            wire.tr.note(&why);
            return Ok(None);
        }
        return Err(Reason::Auth(format!(
            "credentials are configured for {} but the connection is not encrypted \
             (security = \"{}\"); refusing to send them in plaintext",
            target.name,
            target.security.as_str()
        )));
    }
    if caps.auth.is_empty() {
        let why = format!(
            "relay {} announces no AUTH in its EHLO reply{}; continuing without logging in as {user}",
            target.name,
            if tls_up { " after TLS" } else { "" }
        );
        tracing::warn!(relay = %target.name, "{why}");
        wire.tr.note(&why);
        return Ok(None);
    }
    let Some((_, secret)) = &target.credentials else {
        return match &target.oauth {
            Some(source) => super::auth_oauth::login(target, wire, caps, source).await,
            None => Ok(None),
        };
    };
    let timeout = target.timeouts.auth;
    let pass = secret.expose();
    if caps.supports_auth("PLAIN") {
        let cmd = Command::Auth {
            mechanism: "PLAIN".into(),
            initial: Some(sasl::plain("", user, pass)),
        };
        wire.secret_line(&cmd.encode(), "AUTH PLAIN <redacted>");
        let reply = wire.reply(Phase::Auth, timeout).await?;
        if reply.code == 334 {
            // We sent the initial response; a further challenge makes no
            // sense for PLAIN. Cancel (RFC 4954 §4) and give up.
            wire.secret_line(b"*\r\n", "*");
            let _ = wire.reply(Phase::Auth, timeout).await?;
            return Err(Reason::Auth(format!(
                "AUTH PLAIN as user {user}: unexpected challenge ({reply}); cancelled"
            )));
        }
        return finish(reply, user, "PLAIN");
    }
    if caps.supports_auth("LOGIN") {
        wire.command(&Command::Auth {
            mechanism: "LOGIN".into(),
            initial: None,
        });
        for step in [sasl::login_user(user), sasl::login_pass(pass)] {
            let reply = wire.reply(Phase::Auth, timeout).await?;
            if reply.code != 334 {
                return finish(reply, user, "LOGIN");
            }
            let mut line = step.into_bytes();
            line.extend_from_slice(b"\r\n");
            wire.secret_line(&line, "<redacted>");
        }
        let reply = wire.reply(Phase::Auth, timeout).await?;
        return finish(reply, user, "LOGIN");
    }
    Err(Reason::Auth(format!(
        "relay offers no AUTH mechanism postrelay supports (offered: {}; supported: PLAIN, LOGIN)",
        caps.auth.join(" ")
    )))
}

/// 235 is success; anything else refuses the session.
fn finish(reply: Reply, user: &str, mechanism: &str) -> Result<Option<String>, Reason> {
    if reply.is_positive_completion() {
        return Ok(Some(format!("{mechanism} as user {user}")));
    }
    Err(Reason::Auth(if reply.code == 535 {
        format!("relay refused the credentials of user {user}: {reply}")
    } else {
        format!("AUTH {mechanism} as user {user} failed: {reply}")
    }))
}

#[cfg(test)]
mod tests;
