//! OAuth2 tokens for relays that log in with XOAUTH2 or OAUTHBEARER
//! (`[relay.oauth]`): the token lifecycle after `postrelay auth login`.
//!
//! One [`TokenSource`] per relay hands the SMTP client an access token:
//! the one in memory while it has more than a margin of its life left,
//! else a fresh one from the refresh token (or the client credentials). A
//! refresh is single-flight (one at a time per relay), and after the
//! relay rejected a token, [`TokenSource::after_rejection`] refreshes once
//! unless another session already did. The refresh token lives in its
//! file (`store`), re-read at every refresh, so that a new `auth login`
//! is picked up without a reload, and rewritten when the provider rotates
//! it or refuses it (so `auth status` and `doctor` can tell).
//!
//! Access tokens live only in memory. No token reaches a log line, an
//! error or a transcript: [`Secret`] prints `<redacted>`, and errors carry
//! the provider's error code only. Per-relay state for the metrics and
//! `auth status` is in `state`.
//!
//! Not for: the SASL exchange (`deliver::client`), the configuration
//! (`config::oauth`), the interactive login (`cli::auth`).

pub mod health;
pub mod provider;
pub mod state;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::config::{OAuthConfig, OAuthFlow, Secret};
use provider::ProviderError;
use store::{StoreError, TokenFile};

/// The longest margin before expiry at which a token is renewed.
const MARGIN: Duration = Duration::from_secs(120);

/// Why no access token could be had. The texts say what to do, name the
/// relay, and never contain a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    /// No refresh token: nobody logged in yet, or its file is unusable.
    #[error(
        "relay {relay}: no OAuth refresh token: the token file {file} {why}; run postrelay auth login --relay {relay}"
    )]
    NoToken {
        /// The relay.
        relay: String,
        /// The token file.
        file: String,
        /// What is wrong with it.
        why: String,
    },
    /// The provider refused the refresh token (revoked, expired, the
    /// password changed): only a new login helps.
    #[error(
        "relay {relay}: the OAuth refresh token no longer works ({why}); mail waits: run postrelay auth login --relay {relay}"
    )]
    LoginNeeded {
        /// The relay.
        relay: String,
        /// The provider's answer.
        why: String,
    },
    /// The provider could not be asked, or refused for another reason
    /// (a temporary outage, a wrong client id or secret).
    #[error("relay {relay}: cannot get an OAuth access token: {why}")]
    Provider {
        /// The relay.
        relay: String,
        /// What happened.
        why: String,
    },
}

/// The access token in memory.
struct Current {
    token: Secret,
    renew_at: Instant,
}

/// Access tokens for one relay.
pub struct TokenSource {
    relay: String,
    config: OAuthConfig,
    /// The uid the token file must belong to; `None`: the effective uid
    /// when it is read (the daemon's, after it dropped privileges).
    owner: Option<u32>,
    http: reqwest::Client,
    current: Mutex<Option<Current>>,
    /// The refresh token the provider refused, so that it is not sent
    /// again until a new login replaces it.
    refused: Mutex<Option<(Secret, String)>>,
}

impl TokenSource {
    /// A source for `relay`; nothing is fetched until asked. `owner` is
    /// the uid the token file must belong to (`None`: whoever reads it).
    pub fn new(
        relay: &str,
        config: OAuthConfig,
        owner: Option<u32>,
    ) -> Result<Arc<TokenSource>, OAuthError> {
        let http = provider::http_client().map_err(|e| OAuthError::Provider {
            relay: relay.to_owned(),
            why: e.to_string(),
        })?;
        state::register(relay, &config);
        Ok(Arc::new(TokenSource {
            relay: relay.to_owned(),
            config,
            owner,
            http,
            current: Mutex::new(None),
            refused: Mutex::new(None),
        }))
    }

    /// The settings it was made from.
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// The user the token is for.
    pub fn username(&self) -> &str {
        &self.config.username
    }

    /// A valid access token: the one in memory, or a fresh one.
    pub async fn access_token(&self) -> Result<Secret, OAuthError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        self.renew(&mut current).await
    }

    /// After the relay rejected `rejected`: a new token, unless another
    /// session has already replaced it (then that one).
    pub async fn after_rejection(&self, rejected: &Secret) -> Result<Secret, OAuthError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref()
            && c.token != *rejected
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        *current = None;
        self.renew(&mut current).await
    }

    async fn renew(&self, current: &mut Option<Current>) -> Result<Secret, OAuthError> {
        let started = Instant::now();
        let result = match self.config.flow {
            OAuthFlow::ClientCredentials => provider::client_credentials(&self.config, &self.http)
                .await
                .map_err(|e| self.provider_error(e)),
            OAuthFlow::Device | OAuthFlow::AuthorizationCode => self.refresh().await,
        };
        state::refreshed(&self.relay, &result);
        let grant = result?;
        let life = grant.expires_in;
        let margin = MARGIN.min(life / 4);
        *current = Some(Current {
            token: grant.access_token.clone(),
            renew_at: started + life.saturating_sub(margin),
        });
        Ok(grant.access_token)
    }

    /// The refresh token grant with the token from the file; the file
    /// rewritten with the outcome.
    async fn refresh(&self) -> Result<provider::Grant, OAuthError> {
        let mut file = self.load().await?;
        state::token_age(&self.relay, &self.config, file.obtained_at);
        let mut refused = self.refused.lock().await;
        if let Some((token, why)) = refused.as_ref()
            && *token == file.refresh_token
        {
            return Err(OAuthError::LoginNeeded {
                relay: self.relay.clone(),
                why: why.clone(),
            });
        }
        *refused = None;
        let now = jiff::Timestamp::now().as_second();
        match provider::refresh(&self.config, &self.http, &file.refresh_token).await {
            Ok(grant) => {
                if let Some(rotated) = &grant.refresh_token
                    && *rotated != file.refresh_token
                {
                    file.refresh_token = rotated.clone();
                    file.obtained_at = now;
                }
                file.refreshed_at = Some(now);
                file.refused = None;
                state::token_age(&self.relay, &self.config, file.obtained_at);
                self.save(file).await;
                Ok(grant)
            }
            Err(e) if e.needs_login() => {
                let why = e.to_string();
                tracing::error!(relay = %self.relay, "OAuth refresh token refused: {why}; mail to this relay waits until postrelay auth login --relay {} is run", self.relay);
                *refused = Some((file.refresh_token.clone(), why.clone()));
                if let ProviderError::Refused { code, .. } = &e {
                    file.refused = Some((now, code.clone()));
                }
                self.save(file).await;
                Err(OAuthError::LoginNeeded {
                    relay: self.relay.clone(),
                    why,
                })
            }
            Err(e) => Err(self.provider_error(e)),
        }
    }

    fn provider_error(&self, e: ProviderError) -> OAuthError {
        tracing::warn!(relay = %self.relay, "OAuth token request failed: {e}");
        OAuthError::Provider {
            relay: self.relay.clone(),
            why: e.to_string(),
        }
    }

    async fn load(&self) -> Result<TokenFile, OAuthError> {
        let path = self.config.token_file.clone();
        let owner = self
            .owner
            .unwrap_or_else(|| nix::unistd::geteuid().as_raw());
        let loaded = tokio::task::spawn_blocking(move || store::load(&path, owner)).await;
        let why = match loaded {
            Ok(Ok(file)) => return Ok(file),
            Ok(Err(StoreError::Missing)) => "does not exist (nobody has logged in yet)".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("could not be read: {e}"),
        };
        Err(OAuthError::NoToken {
            relay: self.relay.clone(),
            file: self.config.token_file.display().to_string(),
            why,
        })
    }

    /// Rewrites the token file; a failure is logged (the token in memory
    /// still works; a rotated one is lost, which the next login fixes).
    async fn save(&self, file: TokenFile) {
        let path = self.config.token_file.clone();
        let saved = tokio::task::spawn_blocking(move || store::save(&path, &file, None)).await;
        let err = match saved {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(relay = %self.relay, "the OAuth token file {} {err}", self.config.token_file.display());
    }
}
