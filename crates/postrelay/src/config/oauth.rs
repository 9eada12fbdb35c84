//! `[relay.oauth]`: logging in to a relay with an OAuth2 access token
//! (SASL XOAUTH2 or OAUTHBEARER) instead of a password. This module checks
//! the keys and fills the provider's endpoints (Google, Microsoft) from
//! the relay's `provider` preset or the table's own `provider`.
//!
//! Secrets here: the client secret (read at load time, like a password
//! file, with the same owner and mode rules). The refresh token is not
//! read here: it changes while the daemon runs, and `crate::oauth` owns
//! its file. Not for: talking to the token endpoint (`crate::oauth`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::resolve::non_empty_path;
use super::secrets::{self, Secret};
use super::units::HumanDuration;
use super::validate::Locator;
use super::{ConfigError, Preset};

/// `[relay.oauth]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OAuthFile {
    pub provider: Option<String>,
    pub tenant: Option<String>,
    pub flow: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<String>,
    pub token_url: Option<String>,
    pub device_url: Option<String>,
    pub auth_url: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub token_file: Option<String>,
    pub refresh_token_lifetime: Option<HumanDuration>,
}

/// Whose OAuth2 service issues the tokens: fills the endpoints, scopes
/// and the refresh token's known lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OAuthProvider {
    /// Google (Gmail, Google Workspace).
    Google,
    /// Microsoft Entra ID (Microsoft 365, Exchange Online).
    Microsoft,
    /// Any other: `token_url` (and `device_url`) written out.
    Custom,
}

impl OAuthProvider {
    /// The spelling used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthProvider::Google => "google",
            OAuthProvider::Microsoft => "microsoft",
            OAuthProvider::Custom => "custom",
        }
    }
}

/// How postrelay gets its tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OAuthFlow {
    /// `postrelay auth login` runs the device authorization grant (RFC
    /// 8628) once; the daemon keeps the refresh token and refreshes.
    Device,
    /// The client credentials grant (an application's own identity, no
    /// user and no refresh token): Microsoft's app-only SMTP access.
    ClientCredentials,
    /// `postrelay auth login` runs the authorization code grant with PKCE
    /// and a loopback redirect (RFC 8252: an installed application) once;
    /// the daemon keeps the refresh token. Google's device flow does not
    /// grant the Gmail scope, so this is Google's default.
    AuthorizationCode,
}

impl OAuthFlow {
    /// The spelling used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthFlow::Device => "device",
            OAuthFlow::ClientCredentials => "client_credentials",
            OAuthFlow::AuthorizationCode => "authorization_code",
        }
    }
}

/// A relay's OAuth2 settings (`[relay.oauth]`), checked and completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthConfig {
    /// The mailbox the token logs in as: the relay's `username`.
    pub username: String,
    /// Whose service this is. Default: from the relay's `provider`
    /// (`gmail`, `google-workspace`: google; `m365`: microsoft), else
    /// `custom`.
    pub provider: OAuthProvider,
    /// Microsoft's tenant (id or domain) in its endpoints. Default:
    /// `organizations` with provider Microsoft; none otherwise.
    pub tenant: Option<String>,
    /// How tokens are obtained. Default: `AuthorizationCode` with provider
    /// Google, `Device` otherwise.
    pub flow: OAuthFlow,
    /// The application's client id, as registered with the provider.
    /// Default: none, required.
    pub client_id: String,
    /// The client secret, read from `client_secret_file` at load time
    /// (owner and mode checked like a password file). Required for
    /// `client_credentials`; Google requires one for devices too.
    pub client_secret: Option<Secret>,
    /// The file the client secret came from.
    pub client_secret_file: Option<PathBuf>,
    /// The token endpoint. Default: the provider's. HTTPS, except on a
    /// loopback address (a test server).
    pub token_url: String,
    /// The device authorization endpoint. Default: the provider's.
    pub device_url: Option<String>,
    /// The authorization endpoint (the page the user's browser opens in
    /// the authorization code flow). Default: the provider's.
    pub auth_url: Option<String>,
    /// The scopes asked for. Default: the provider's SMTP scopes.
    pub scopes: Vec<String>,
    /// Where the refresh token is kept (mode 0600, owned by the daemon's
    /// user, rewritten atomically). Default: `<spool>/oauth/<relay>.token`.
    pub token_file: PathBuf,
    /// How long the provider lets a refresh token live: `auth status`,
    /// `doctor`, the log and the metrics warn before it runs out. Default:
    /// 90 days for Microsoft (its inactivity limit; each refresh renews
    /// it), none for Google and others.
    pub refresh_token_lifetime: Option<Duration>,
}

const GOOGLE_TOKEN: &str = "https://oauth2.googleapis.com/token";
const GOOGLE_DEVICE: &str = "https://oauth2.googleapis.com/device/code";
const GOOGLE_AUTH: &str = "https://accounts.google.com/o/oauth2/v2/auth";
const GOOGLE_SCOPE: &str = "https://mail.google.com/";
const MS_BASE: &str = "https://login.microsoftonline.com";
const MS_DELEGATED: &[&str] = &["https://outlook.office.com/SMTP.Send", "offline_access"];
const MS_APP: &str = "https://outlook.office365.com/.default";
const MS_REFRESH_LIFETIME: Duration = Duration::from_secs(90 * 86400);

/// Checks `[relay.oauth]` of relay `i`; `preset` is the relay's provider.
pub(super) fn oauth(
    i: usize,
    relay: &str,
    username: String,
    file: OAuthFile,
    preset: Option<&Preset>,
    spool: &Path,
    loc: &Locator<'_>,
) -> Result<OAuthConfig, ConfigError> {
    let key = |k: &str| format!("relay[{i}].oauth.{k}");
    let (provider, flow) = provider_and_flow(&file, preset, loc, &key)?;
    let client_id = match file.client_id {
        Some(c) if !c.trim().is_empty() => c,
        _ => {
            return Err(loc.missing_error(
                &key("client_id"),
                "oauth.client_id is required: the application (client) id registered with the provider",
            ));
        }
    };
    let (client_secret, client_secret_file) = client_secret(file.client_secret_file, loc, &key)?;
    if flow == OAuthFlow::ClientCredentials && client_secret.is_none() {
        let why =
            "the client_credentials flow needs the application's secret: set client_secret_file";
        return Err(loc.value_error(&key("flow"), why));
    }
    let tenant = tenant(file.tenant, provider, flow, loc, &key)?;
    let (endpoints, scopes_default) = defaults(provider, flow, &tenant);
    let [token_default, device_default, auth_default] = endpoints;
    let token_url = endpoint(loc, &key("token_url"), file.token_url.or(token_default))?
        .ok_or_else(|| {
            loc.missing_error(
                &key("token_url"),
                "oauth.token_url is required without a known provider (provider = \"google\" or \"microsoft\")",
            )
        })?;
    let device_url = endpoint(loc, &key("device_url"), file.device_url.or(device_default))?;
    if flow == OAuthFlow::Device && device_url.is_none() {
        let why = "the device flow needs the provider's device authorization endpoint: set oauth.device_url";
        return Err(loc.missing_error(&key("device_url"), why));
    }
    let auth_url = endpoint(loc, &key("auth_url"), file.auth_url.or(auth_default))?;
    if flow == OAuthFlow::AuthorizationCode && auth_url.is_none() {
        let why = "the authorization_code flow needs the provider's authorization endpoint: set oauth.auth_url";
        return Err(loc.missing_error(&key("auth_url"), why));
    }
    let scopes = file
        .scopes
        .unwrap_or_else(|| scopes_default.iter().map(|s| (*s).to_owned()).collect());
    let token_file = match file.token_file {
        Some(p) => non_empty_path(loc, &key("token_file"), p)?,
        None => spool.join("oauth").join(format!("{relay}.token")),
    };
    let refresh_token_lifetime = match file.refresh_token_lifetime {
        Some(d) => Some(d.0),
        None if provider == OAuthProvider::Microsoft => Some(MS_REFRESH_LIFETIME),
        None => None,
    };
    Ok(OAuthConfig {
        username,
        provider,
        tenant: (provider == OAuthProvider::Microsoft).then_some(tenant),
        flow,
        client_id,
        client_secret,
        client_secret_file,
        token_url,
        device_url,
        auth_url,
        scopes,
        token_file,
        refresh_token_lifetime,
    })
}

/// The user an OAuth token logs in as: `username` is required (the
/// mailbox), and a password does not go with a token.
pub(super) fn oauth_user(
    loc: &Locator<'_>,
    i: usize,
    username: Option<String>,
    password_file: bool,
    plaintext: bool,
) -> Result<String, ConfigError> {
    let key = |field: &str| format!("relay[{i}].{field}");
    if plaintext {
        let why = r#"an OAuth token is a credential: use TLS (security = "verify"), or, only on a trusted path, allow_plaintext_auth = true"#;
        return Err(loc.value_error(&key("security"), why));
    }
    if password_file {
        let why = "a relay logs in with either a password or an OAuth token: remove password_file, or the [relay.oauth] table";
        return Err(loc.value_error(&key("password_file"), why));
    }
    match username {
        Some(u) if !u.is_empty() && !u.contains(['\0', '\r', '\n', '\x01']) => Ok(u),
        Some(_) => Err(loc.value_error(
            &key("username"),
            "must be the mailbox the token is for, without control characters",
        )),
        None => Err(loc.missing_error(
            &key("username"),
            r#"[relay.oauth] needs username = "…", the mailbox the token logs in as (e.g. "relay@example.com")"#,
        )),
    }
}

/// `provider` (or the one the relay's preset implies) and `flow`.
fn provider_and_flow(
    file: &OAuthFile,
    preset: Option<&Preset>,
    loc: &Locator<'_>,
    key: &dyn Fn(&str) -> String,
) -> Result<(OAuthProvider, OAuthFlow), ConfigError> {
    let provider = match file.provider.as_deref() {
        Some("google") => OAuthProvider::Google,
        Some("microsoft") => OAuthProvider::Microsoft,
        Some("custom") => OAuthProvider::Custom,
        Some(_) => {
            let why = r#"must be "google", "microsoft" or "custom" (then set token_url)"#;
            return Err(loc.value_error(&key("provider"), why));
        }
        None => match preset.map(|p| p.id.as_str()) {
            Some("gmail" | "google-workspace") => OAuthProvider::Google,
            Some("m365") => OAuthProvider::Microsoft,
            _ => OAuthProvider::Custom,
        },
    };
    let flow = match file.flow.as_deref() {
        None if provider == OAuthProvider::Google => OAuthFlow::AuthorizationCode,
        None | Some("device") => OAuthFlow::Device,
        Some("authorization_code") => OAuthFlow::AuthorizationCode,
        Some("client_credentials") => OAuthFlow::ClientCredentials,
        Some(_) => {
            let why = r#"must be "authorization_code" (postrelay auth login: a browser, loopback redirect), "device" (postrelay auth login: a code to enter) or "client_credentials" (an application's own secret)"#;
            return Err(loc.value_error(&key("flow"), why));
        }
    };
    Ok((provider, flow))
}

/// The client secret and its file, read now (owner and mode checked).
fn client_secret(
    written: Option<String>,
    loc: &Locator<'_>,
    key: &dyn Fn(&str) -> String,
) -> Result<(Option<Secret>, Option<PathBuf>), ConfigError> {
    let Some(p) = written else {
        return Ok((None, None));
    };
    let path = non_empty_path(loc, &key("client_secret_file"), p)?;
    let secret = read_client_secret(&path).map_err(|why| {
        let msg = format!("client_secret_file {} {why}", path.display());
        loc.value_error(&key("client_secret_file"), &msg)
    })?;
    Ok((Some(secret), Some(path)))
}

/// Microsoft's tenant: a real one for client credentials.
fn tenant(
    written: Option<String>,
    provider: OAuthProvider,
    flow: OAuthFlow,
    loc: &Locator<'_>,
    key: &dyn Fn(&str) -> String,
) -> Result<String, ConfigError> {
    let tenant = written.unwrap_or_else(|| "organizations".to_owned());
    if tenant.is_empty()
        || !tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        let why = "must be a tenant id or domain (letters, digits, '-' and '.')";
        return Err(loc.value_error(&key("tenant"), why));
    }
    if provider == OAuthProvider::Microsoft
        && flow == OAuthFlow::ClientCredentials
        && matches!(tenant.as_str(), "organizations" | "common" | "consumers")
    {
        let why = "the client_credentials flow needs your tenant: set oauth.tenant to its id or domain (e.g. \"contoso.onmicrosoft.com\")";
        return Err(loc.value_error(&key("tenant"), why));
    }
    Ok(tenant)
}

/// The provider's token, device and authorization endpoints, and scopes.
fn defaults(
    provider: OAuthProvider,
    flow: OAuthFlow,
    tenant: &str,
) -> ([Option<String>; 3], Vec<&'static str>) {
    match provider {
        OAuthProvider::Google => (
            [
                Some(GOOGLE_TOKEN.into()),
                Some(GOOGLE_DEVICE.into()),
                Some(GOOGLE_AUTH.into()),
            ],
            vec![GOOGLE_SCOPE],
        ),
        OAuthProvider::Microsoft => (
            ["token", "devicecode", "authorize"]
                .map(|e| Some(format!("{MS_BASE}/{tenant}/oauth2/v2.0/{e}"))),
            match flow {
                OAuthFlow::Device | OAuthFlow::AuthorizationCode => MS_DELEGATED.to_vec(),
                OAuthFlow::ClientCredentials => vec![MS_APP],
            },
        ),
        OAuthProvider::Custom => ([None, None, None], Vec::new()),
    }
}

/// An endpoint URL: `https://`, or `http://` to a loopback address only
/// (a token endpoint receives the client secret and the refresh token).
fn endpoint(
    loc: &Locator<'_>,
    key: &str,
    written: Option<String>,
) -> Result<Option<String>, ConfigError> {
    let Some(url) = written else {
        return Ok(None);
    };
    check_endpoint(&url).map_err(|why| loc.value_error(key, why))?;
    Ok(Some(url))
}

/// Whether `url` may carry secrets: HTTPS, or plain HTTP to a loopback
/// address (127.0.0.0/8, ::1, `localhost`).
pub fn check_endpoint(url: &str) -> Result<(), &'static str> {
    if let Some(rest) = url.strip_prefix("https://") {
        return if rest.is_empty() || rest.starts_with('/') {
            Err("has no host name")
        } else {
            Ok(())
        };
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err("must be an https:// URL");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|a| a.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(
            "must be an https:// URL (plain http:// is accepted only for a loopback address, for tests)",
        )
    }
}

/// The client secret: the file's text, one trailing line break removed.
fn read_client_secret(path: &Path) -> Result<Secret, String> {
    let text = secrets::read_protected(path)?;
    let s = text.trim_end_matches(['\r', '\n']);
    if s.is_empty() || s.contains(['\r', '\n', '\0']) {
        return Err("must hold the client secret alone, on one line".to_owned());
    }
    Ok(Secret::new(s))
}
