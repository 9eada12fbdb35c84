//! `postrelay auth login --relay NAME` and `postrelay auth status`: the
//! one interactive step of an OAuth2 relay, and its state.
//!
//! `login` runs the relay's flow: the authorization code grant with a
//! loopback redirect (`cli::auth_code`), or the device authorization
//! grant (it prints where to go and the code to type, and waits, a dot
//! per poll on stderr, until the user has approved). Either way it writes
//! the refresh token to the relay's token file (mode 0600; owned by the
//! daemon's user when run as root), here and only here. The daemon reads
//! it at its next token refresh: no reload needed. With `flow =
//! "client_credentials"` it only checks that the provider issues a token.
//! `status` prints each OAuth relay's verdict (`oauth::health`).
//!
//! Tokens are never printed. Not for: the daemon's refreshes
//! (`crate::oauth`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use nix::unistd::User;

use super::auth_code;
use crate::config::{Config, OAuthConfig, OAuthFlow};
use crate::oauth::health::{self, Level};
use crate::oauth::provider;
use crate::oauth::store::{self, TokenFile};

/// `postrelay auth …`.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Log in to a relay's OAuth2 provider once (authorization code:
    /// prints a URL to open, then takes the browser's redirect or the
    /// address pasted here; device code: prints a URL and a code to enter
    /// there), and keep the refresh token for the daemon.
    Login {
        /// The [[relay]] name.
        #[arg(long)]
        relay: String,
    },
    /// Show each OAuth2 relay's token state (exit status 1 when one
    /// needs a new login).
    Status,
}

/// Runs the subcommand.
pub fn run(config: &Config, cmd: AuthCommand) -> ExitCode {
    match cmd {
        AuthCommand::Login { relay } => login(config, &relay),
        AuthCommand::Status => status(config),
    }
}

/// The daemon's user (uid, gid) when it is not the one running this: the
/// token file must be theirs.
pub(crate) fn daemon_owner(config: &Config) -> Result<(u32, u32), String> {
    let me = nix::unistd::geteuid();
    if !me.is_root() || config.daemon.user == "root" {
        return Ok((me.as_raw(), nix::unistd::getegid().as_raw()));
    }
    match User::from_name(&config.daemon.user) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        _ => Err(format!(
            "the daemon's user {:?} ([daemon] user) does not exist",
            config.daemon.user
        )),
    }
}

fn oauth_relays(config: &Config) -> impl Iterator<Item = (&str, &OAuthConfig)> {
    config
        .relays
        .iter()
        .filter_map(|r| r.oauth.as_ref().map(|o| (r.name.as_str(), o)))
}

fn login(config: &Config, relay: &str) -> ExitCode {
    let Some((_, oauth)) = oauth_relays(config).find(|(n, _)| *n == relay) else {
        let names: Vec<&str> = oauth_relays(config).map(|(n, _)| n).collect();
        eprintln!(
            "postrelay: relay {relay:?} has no [relay.oauth] table (OAuth2 relays: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
        return ExitCode::from(64);
    };
    let owner = match daemon_owner(config) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("postrelay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("postrelay: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(login_flow(relay, oauth, owner)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postrelay: relay {relay}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn login_flow(relay: &str, c: &OAuthConfig, owner: (u32, u32)) -> Result<(), String> {
    let http = provider::http_client().map_err(|e| e.to_string())?;
    if c.flow == OAuthFlow::ClientCredentials {
        let g = provider::client_credentials(c, &http)
            .await
            .map_err(|e| format!("client credentials: {e}"))?;
        println!(
            "relay {relay}: the provider issued an access token (valid {} s) for application {}; \
             nothing to keep: the daemon asks for its own",
            g.expires_in.as_secs(),
            c.client_id
        );
        return Ok(());
    }
    let grant = if c.flow == OAuthFlow::AuthorizationCode {
        auth_code::login(relay, c, &http)
            .await
            .map_err(|e| format!("login not completed: {e}"))?
    } else {
        device_login(relay, c, &http).await?
    };
    keep(c, owner, grant).await
}

/// The device authorization grant, with its prompt and progress.
async fn device_login(
    relay: &str,
    c: &OAuthConfig,
    http: &reqwest::Client,
) -> Result<provider::Grant, String> {
    let device = provider::start_device(c, http)
        .await
        .map_err(|e| format!("device authorization: {e}"))?;
    println!(
        "To let postrelay send as {} through relay {relay}, open\n\n    {}\n\nand enter the code {} (valid {} min).",
        c.username,
        device.verification_uri,
        device.user_code,
        device.expires_in.as_secs().div_ceil(60)
    );
    eprint!("waiting for the approval ");
    let _ = std::io::stderr().flush();
    let progress = |d: Duration| {
        eprint!(".");
        let _ = std::io::stderr().flush();
        tokio::time::sleep(d)
    };
    let grant = provider::finish_device(c, http, &device, progress).await;
    eprintln!();
    grant.map_err(|e| format!("login not completed: {e}"))
}

/// Writes the login's refresh token to the token file.
async fn keep(c: &OAuthConfig, owner: (u32, u32), grant: provider::Grant) -> Result<(), String> {
    let Some(refresh_token) = grant.refresh_token else {
        return Err(
            "the provider issued no refresh token: add the scope that grants one \
                    (Microsoft: offline_access) to oauth.scopes"
                .into(),
        );
    };
    let token = TokenFile {
        refresh_token,
        obtained_at: jiff::Timestamp::now().as_second(),
        refreshed_at: None,
        refused: None,
    };
    let me = nix::unistd::geteuid().as_raw();
    let chown = (owner.0 != me).then_some(owner);
    let path = c.token_file.clone();
    tokio::task::spawn_blocking(move || store::save(&path, &token, chown))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("the token file {} {e}", c.token_file.display()))?;
    println!(
        "Logged in. The refresh token is in {} (mode 0600); the daemon uses it from its next \
         delivery attempt (postrelay queue flush sends waiting mail now).",
        c.token_file.display()
    );
    Ok(())
}

fn status(config: &Config) -> ExitCode {
    let owner = match daemon_owner(config) {
        Ok(o) => o.0,
        Err(e) => {
            eprintln!("postrelay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = jiff::Timestamp::now().as_second();
    let mut failed = false;
    let mut any = false;
    for (name, c) in oauth_relays(config) {
        any = true;
        let h = health::check(name, c, owner, now);
        let word = match h.level {
            Level::Ok => "ok",
            Level::Warn => "WARNING",
            Level::Fail => "LOGIN NEEDED",
        };
        failed |= h.level == Level::Fail;
        println!(
            "relay {name} ({}, {} flow, user {}): {word}\n    {}",
            c.provider.as_str(),
            c.flow.as_str(),
            c.username,
            h.summary
        );
        if let Some(fix) = h.fix {
            println!("    fix: {fix}");
        }
    }
    if !any {
        println!("no relay logs in with OAuth2 (no [relay.oauth] table)");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
