//! The provider's OAuth2 endpoints, through the `oauth2` crate over
//! `reqwest` (rustls with ring, no redirects followed: a token endpoint
//! that redirects is refused, so that the client secret and the refresh
//! token go nowhere else). Four grants: the device authorization grant
//! (RFC 8628) and the authorization code grant with PKCE (RFC 7636, S256)
//! for `auth login`, the refresh token grant for the daemon, and the
//! client credentials grant.
//!
//! Errors carry the provider's OAuth error code and a bounded, cleaned
//! description, never a token, a response body or the client secret.
//! Not for: keeping tokens (`oauth::store`, `oauth::TokenSource`).

use std::future::Future;
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, ErrorResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RefreshToken, RequestTokenError, Scope, StandardDeviceAuthorizationResponse, TokenResponse,
    TokenUrl,
};

use crate::config::{OAuthConfig, OAuthProvider, Secret};

/// How long one request to the provider may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Tokens the provider issued.
pub struct Grant {
    /// The access token.
    pub access_token: Secret,
    /// How long it is valid, as the provider says (1 hour when it does
    /// not say).
    pub expires_in: Duration,
    /// A (new) refresh token, when the provider issued one.
    pub refresh_token: Option<Secret>,
}

/// What the user must do to finish a device login.
pub struct DeviceLogin {
    /// Where to go.
    pub verification_uri: String,
    /// The code to type there.
    pub user_code: String,
    /// How long the code is valid.
    pub expires_in: Duration,
    details: StandardDeviceAuthorizationResponse,
}

/// An authorization code login under way: the URL the browser opens, and
/// what checks and redeems its answer.
pub struct CodeLogin {
    /// The authorization URL (it carries the state and the PKCE
    /// challenge, no secret).
    pub url: String,
    /// The `state` the redirect must carry back.
    pub state: String,
    verifier: PkceCodeVerifier,
    redirect: RedirectUrl,
}

/// Why the provider gave no token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the grant (`invalid_grant`: the refresh token
    /// was revoked or expired; `invalid_client`, `unauthorized_client`…).
    #[error("the provider refused it: {code}{description}")]
    Refused {
        /// The OAuth error code.
        code: String,
        /// `: description` from the provider, cleaned, or empty.
        description: String,
    },
    /// The endpoint could not be reached or answered nonsense.
    #[error("the token endpoint could not be used: {0}")]
    Unreachable(String),
    /// The configuration cannot work (bad URL).
    #[error("{0}")]
    Config(String),
}

impl ProviderError {
    /// The provider said the refresh token (or the device code) is no
    /// longer good: only a new login helps.
    pub fn needs_login(&self) -> bool {
        matches!(self, ProviderError::Refused { code, .. } if code == "invalid_grant" || code == "expired_token" || code == "access_denied")
    }
}

/// The HTTP client for token requests: rustls (ring), no redirects.
pub fn http_client() -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| ProviderError::Config(format!("cannot build the HTTP client: {e}")))
}

type Client = BasicClient<
    oauth2::EndpointNotSet,
    oauth2::EndpointMaybeSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn client(c: &OAuthConfig) -> Result<Client, ProviderError> {
    let bad = |what: &str| ProviderError::Config(format!("oauth.{what} is not a valid URL"));
    let token = TokenUrl::new(c.token_url.clone()).map_err(|_| bad("token_url"))?;
    let device = c
        .device_url
        .clone()
        .map(DeviceAuthorizationUrl::new)
        .transpose()
        .map_err(|_| bad("device_url"))?;
    let mut client = BasicClient::new(ClientId::new(c.client_id.clone()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(token)
        .set_device_authorization_url_option(device);
    if let Some(s) = &c.client_secret {
        client = client.set_client_secret(ClientSecret::new(s.expose().to_owned()));
    }
    Ok(client)
}

fn scopes(c: &OAuthConfig) -> Vec<Scope> {
    c.scopes.iter().cloned().map(Scope::new).collect()
}

/// Step 1 of a device login: asks for a user code.
pub async fn start_device(
    c: &OAuthConfig,
    http: &reqwest::Client,
) -> Result<DeviceLogin, ProviderError> {
    let details: StandardDeviceAuthorizationResponse = client(c)?
        .exchange_device_code()
        .map_err(|e| ProviderError::Config(e.to_string()))?
        .add_scopes(scopes(c))
        .request_async(http)
        .await
        .map_err(classify)?;
    Ok(DeviceLogin {
        verification_uri: details.verification_uri().to_string(),
        user_code: details.user_code().secret().clone(),
        expires_in: details.expires_in(),
        details,
    })
}

/// Step 2: polls until the user has approved (or the code expired);
/// `sleep` waits between polls (and may show progress).
pub async fn finish_device<S, F>(
    c: &OAuthConfig,
    http: &reqwest::Client,
    login: &DeviceLogin,
    sleep: S,
) -> Result<Grant, ProviderError>
where
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let client = client(c)?;
    let token = client
        .exchange_device_access_token(&login.details)
        .request_async(http, sleep, None)
        .await
        .map_err(classify)?;
    Ok(grant(&token))
}

/// Step 1 of an authorization code login: the URL to open, with a fresh
/// state and PKCE (S256) challenge; the browser comes back to
/// `redirect_uri`. Google issues a refresh token only when asked for
/// offline access.
pub fn start_code(c: &OAuthConfig, redirect_uri: &str) -> Result<CodeLogin, ProviderError> {
    let auth = c
        .auth_url
        .clone()
        .ok_or_else(|| ProviderError::Config("oauth.auth_url is not set".into()))?;
    let auth = AuthUrl::new(auth)
        .map_err(|_| ProviderError::Config("oauth.auth_url is not a valid URL".into()))?;
    let redirect = RedirectUrl::new(redirect_uri.to_owned())
        .map_err(|e| ProviderError::Config(format!("bad redirect URL: {e}")))?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let client = client(c)?
        .set_auth_uri(auth)
        .set_redirect_uri(redirect.clone());
    let mut request = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(scopes(c))
        .set_pkce_challenge(challenge);
    if c.provider == OAuthProvider::Google {
        request = request
            .add_extra_param("access_type", "offline")
            .add_extra_param("prompt", "consent");
    }
    let (url, state) = request.url();
    Ok(CodeLogin {
        url: url.to_string(),
        state: state.secret().clone(),
        verifier,
        redirect,
    })
}

/// Step 2: redeems the code the redirect carried, with the PKCE verifier.
pub async fn finish_code(
    c: &OAuthConfig,
    http: &reqwest::Client,
    login: CodeLogin,
    code: String,
) -> Result<Grant, ProviderError> {
    let token = client(c)?
        .set_redirect_uri(login.redirect)
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(login.verifier)
        .request_async(http)
        .await
        .map_err(classify)?;
    Ok(grant(&token))
}

/// The refresh token grant.
pub async fn refresh(
    c: &OAuthConfig,
    http: &reqwest::Client,
    refresh_token: &Secret,
) -> Result<Grant, ProviderError> {
    let rt = RefreshToken::new(refresh_token.expose().to_owned());
    let token = client(c)?
        .exchange_refresh_token(&rt)
        .add_scopes(scopes(c))
        .request_async(http)
        .await
        .map_err(classify)?;
    Ok(grant(&token))
}

/// The client credentials grant.
pub async fn client_credentials(
    c: &OAuthConfig,
    http: &reqwest::Client,
) -> Result<Grant, ProviderError> {
    let token = client(c)?
        .exchange_client_credentials()
        .add_scopes(scopes(c))
        .request_async(http)
        .await
        .map_err(classify)?;
    Ok(grant(&token))
}

fn grant(t: &impl TokenResponse) -> Grant {
    Grant {
        access_token: Secret::new(t.access_token().secret().clone()),
        expires_in: t.expires_in().unwrap_or(Duration::from_secs(3600)),
        refresh_token: t.refresh_token().map(|r| Secret::new(r.secret().clone())),
    }
}

/// The library's error, without anything secret: the error code and a
/// cleaned description for a refusal; the transport error's kind else
/// (never the response body, which a `Parse` error carries).
fn classify<RE, T>(e: RequestTokenError<RE, T>) -> ProviderError
where
    RE: std::error::Error + 'static,
    T: ErrorResponse + OAuthErrorCode,
{
    match e {
        RequestTokenError::ServerResponse(r) => ProviderError::Refused {
            code: r.code(),
            description: r
                .description()
                .map_or(String::new(), |d| format!(": {}", clean(&d))),
        },
        RequestTokenError::Request(e) => ProviderError::Unreachable(transport(&e)),
        RequestTokenError::Parse(_, _) => ProviderError::Unreachable(
            "its answer is not an OAuth2 token response (is token_url right?)".into(),
        ),
        RequestTokenError::Other(_) => {
            ProviderError::Unreachable("unexpected answer from the token endpoint".into())
        }
    }
}

/// The transport error and its causes (reqwest's texts name the URL and
/// the failure, e.g. "connection refused"; no request body).
fn transport(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    clean(&text)
}

/// Printable ASCII only, at most 200 characters.
pub(crate) fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect()
}

/// The error code and description of an OAuth error response.
pub trait OAuthErrorCode {
    /// `invalid_grant`, `authorization_pending`…
    fn code(&self) -> String;
    /// The provider's `error_description`.
    fn description(&self) -> Option<String>;
}

impl OAuthErrorCode for BasicErrorResponse {
    fn code(&self) -> String {
        self.error().as_ref().to_owned()
    }
    fn description(&self) -> Option<String> {
        self.error_description().cloned()
    }
}

impl OAuthErrorCode for oauth2::DeviceCodeErrorResponse {
    fn code(&self) -> String {
        self.error().as_ref().to_owned()
    }
    fn description(&self) -> Option<String> {
        self.error_description().cloned()
    }
}
