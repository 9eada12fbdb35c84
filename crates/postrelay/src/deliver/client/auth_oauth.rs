//! SMTP AUTH with an OAuth2 access token: OAUTHBEARER (RFC 7628) when the
//! relay offers it, else XOAUTH2 (Google's and Microsoft's mechanism). The
//! caller (`auth`) has already applied the TLS rules of every login.
//!
//! A rejected token (535, or the 334 error challenge both mechanisms use)
//! is replaced once, through [`TokenSource::after_rejection`], and tried
//! again in the same session; a second rejection defers the mail with a
//! reason naming `postrelay auth login`. Lines carrying the token are
//! recorded as `<redacted>`; errors never contain it.
//!
//! Not for: getting or keeping tokens (`crate::oauth`).

use postrelay_smtp::{Capabilities, Command, Reply, sasl};

use super::Target;
use super::wire::Wire;
use crate::config::Secret;
use crate::deliver::outcome::{Phase, Reason};
use crate::oauth::TokenSource;

/// The SASL mechanisms that carry a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mechanism {
    OAuthBearer,
    XOAuth2,
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Mechanism::OAuthBearer => "OAUTHBEARER",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }
}

/// How one AUTH exchange ended.
enum Answer {
    Accepted,
    /// The relay refused the token (its final reply).
    Rejected(Reply),
}

/// Logs in as the source's user; returns how (`XOAUTH2 as user U`).
pub(super) async fn login(
    target: &Target,
    wire: &mut Wire,
    caps: &Capabilities,
    source: &TokenSource,
) -> Result<Option<String>, Reason> {
    let user = source.username();
    let mechanism = if caps.supports_auth("OAUTHBEARER") {
        Mechanism::OAuthBearer
    } else if caps.supports_auth("XOAUTH2") {
        Mechanism::XOAuth2
    } else {
        return Err(Reason::Auth(format!(
            "relay {} offers no OAuth2 mechanism (offered: {}; postrelay logs in with a token through OAUTHBEARER or XOAUTH2)",
            target.name,
            caps.auth.join(" ")
        )));
    };
    let token = source.access_token().await.map_err(oauth_reason)?;
    let done = || Ok(Some(format!("{} as user {user}", mechanism.name())));
    match exchange(target, wire, mechanism, user, &token).await? {
        Answer::Accepted => return done(),
        Answer::Rejected(reply) => {
            wire.tr.note(&format!(
                "the relay refused the access token ({}); getting a new one",
                reply.code
            ));
        }
    }
    let fresh = source.after_rejection(&token).await.map_err(oauth_reason)?;
    match exchange(target, wire, mechanism, user, &fresh).await? {
        Answer::Accepted => done(),
        Answer::Rejected(reply) => Err(Reason::Auth(format!(
            "relay {} refused a freshly refreshed OAuth2 token of user {user} ({} {reply}); \
             check that the token's account may send by SMTP AUTH and has the SMTP scope, \
             then run postrelay auth login --relay {}",
            target.name,
            mechanism.name(),
            target.name
        ))),
    }
}

fn oauth_reason(e: crate::oauth::OAuthError) -> Reason {
    Reason::Auth(e.to_string())
}

/// One AUTH exchange with `token`.
async fn exchange(
    target: &Target,
    wire: &mut Wire,
    mechanism: Mechanism,
    user: &str,
    token: &Secret,
) -> Result<Answer, Reason> {
    let timeout = target.timeouts.auth;
    let initial = match mechanism {
        Mechanism::OAuthBearer => {
            sasl::oauthbearer(user, &target.host, target.port, token.expose())
        }
        Mechanism::XOAuth2 => sasl::xoauth2(user, token.expose()),
    };
    let cmd = Command::Auth {
        mechanism: mechanism.name().into(),
        initial: Some(initial),
    };
    wire.secret_line(
        &cmd.encode(),
        &format!("AUTH {} <redacted>", mechanism.name()),
    );
    let mut reply = wire.reply(Phase::Auth, timeout).await?;
    if reply.code == 334 {
        // The error challenge (a JSON status): answer it so the relay
        // sends its final reply (RFC 7628 §3.2.3; XOAUTH2: an empty line).
        let abort: &[u8] = match mechanism {
            Mechanism::OAuthBearer => b"AQ==\r\n",
            Mechanism::XOAuth2 => b"\r\n",
        };
        wire.secret_line(abort, "<end of error challenge>");
        reply = wire.reply(Phase::Auth, timeout).await?;
        if reply.is_positive_completion() {
            return Err(Reason::Auth(format!(
                "AUTH {} as user {user}: the relay accepted after its error challenge ({reply}); refusing a session in an unknown state",
                mechanism.name()
            )));
        }
        return Ok(Answer::Rejected(reply));
    }
    if reply.is_positive_completion() {
        return Ok(Answer::Accepted);
    }
    if reply.code == 535 {
        return Ok(Answer::Rejected(reply));
    }
    Err(Reason::Auth(format!(
        "AUTH {} as user {user} failed: {reply}",
        mechanism.name()
    )))
}
