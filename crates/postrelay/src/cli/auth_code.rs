//! The authorization code login of `postrelay auth login` (`flow =
//! "authorization_code"`, Google's default): an installed application's
//! login with PKCE and a loopback redirect (RFC 8252).
//!
//! It listens on 127.0.0.1 on an ephemeral port, prints the URL to open,
//! and takes the first of: the browser's redirect to that listener, or
//! the redirected address pasted on standard input (the browser is
//! usually on another machine, where 127.0.0.1 is not this one: the page
//! fails to load, and the user copies its address back). The redirect's
//! `state` must be this login's; an `error=` redirect is reported as the
//! provider's refusal. The wait is bounded ([`WAIT`]).
//!
//! Not for: the HTTP exchange with the provider (`oauth::provider`),
//! keeping the refresh token (`cli::auth`, through `oauth::store`).

use std::time::Duration;

use oauth2::url::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::config::OAuthConfig;
use crate::oauth::provider::{self, Grant, ProviderError, clean};

/// How long the login waits for the redirect.
const WAIT: Duration = Duration::from_secs(300);
/// How long one connection to the listener may take to send its request.
const REQUEST_WAIT: Duration = Duration::from_secs(10);
/// The largest request head read from the browser.
const HEAD_MAX: usize = 16 * 1024;

/// Why the login did not produce a code.
#[derive(Debug, thiserror::Error)]
pub enum CodeLoginError {
    /// 127.0.0.1 could not be listened on.
    #[error("cannot listen on 127.0.0.1 for the browser's redirect: {0}")]
    Listen(std::io::Error),
    /// The redirect carries another login's `state` (or none).
    #[error(
        "the redirect's state does not match this login (an address from an older login attempt, or an altered one): nothing was kept; run postrelay auth login again and open the URL it prints"
    )]
    StateMismatch,
    /// The provider redirected with `error=`.
    #[error("the provider refused the login: {code}{description}")]
    Denied {
        /// The OAuth error code (`access_denied`…).
        code: String,
        /// `: description`, cleaned, or empty.
        description: String,
    },
    /// The pasted text is not a redirect with a code.
    #[error(
        "{0}: paste the whole address from the browser's address bar (it starts with the redirect URL and carries code= and state=)"
    )]
    NotARedirect(String),
    /// Nothing came in time.
    #[error(
        "no redirect within {} minutes: run postrelay auth login again, open the URL and approve, then paste the address the browser ends on",
        WAIT.as_secs() / 60
    )]
    Timeout,
    /// The provider or the configuration.
    #[error("{0}")]
    Provider(#[from] ProviderError),
}

/// Runs the login for `relay` and redeems its code.
pub async fn login(
    relay: &str,
    c: &OAuthConfig,
    http: &reqwest::Client,
) -> Result<Grant, CodeLoginError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(CodeLoginError::Listen)?;
    let port = listener
        .local_addr()
        .map_err(CodeLoginError::Listen)?
        .port();
    let redirect = format!("http://127.0.0.1:{port}/");
    let started = provider::start_code(c, &redirect)?;
    println!(
        "To let postrelay send as {} through relay {relay}, open this URL in a browser and approve:\n\n    {}\n\n\
         If the browser runs on another machine, the page it ends on ({redirect}…) will not load: \
         copy that whole address from its address bar, paste it here and press Enter.",
        c.username, started.url
    );
    let lines = stdin_lines();
    let code = wait_for_code(&listener, &redirect, &started.state, lines).await?;
    Ok(provider::finish_code(c, http, started, code).await?)
}

/// Standard input's lines, read by a thread of their own (a blocking
/// read the process may leave behind when it exits).
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The code from whichever comes first: a redirect to `listener` or a
/// pasted address; at most [`WAIT`].
async fn wait_for_code(
    listener: &TcpListener,
    redirect: &str,
    state: &str,
    mut lines: mpsc::Receiver<String>,
) -> Result<String, CodeLoginError> {
    let base = Url::parse(redirect).map_err(|e| CodeLoginError::NotARedirect(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut stdin_open = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return Err(CodeLoginError::Timeout),
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                if let Some(outcome) = answer_browser(stream, &base, state).await {
                    return outcome;
                }
            }
            line = lines.recv(), if stdin_open => match line {
                None => stdin_open = false,
                Some(l) if l.trim().is_empty() => {}
                Some(l) => {
                    let url = base
                        .join(l.trim())
                        .map_err(|e| CodeLoginError::NotARedirect(format!("not an address: {e}")))?;
                    return code_from(&url, state);
                }
            },
        }
    }
}

/// Reads one request from the browser and answers it; `None` when it is
/// not the redirect (another path, a broken request): keep waiting.
async fn answer_browser(
    mut stream: TcpStream,
    base: &Url,
    state: &str,
) -> Option<Result<String, CodeLoginError>> {
    let target = tokio::time::timeout(REQUEST_WAIT, request_target(&mut stream))
        .await
        .ok()
        .flatten()?;
    let url = base.join(&target).ok()?;
    if !target.starts_with('/') || url.path() != "/" {
        reply(&mut stream, "404 Not Found", "not found").await;
        return None;
    }
    let outcome = code_from(&url, state);
    let text = match &outcome {
        Ok(_) => "postrelay: login received; you can close this page.".to_owned(),
        Err(e) => format!("postrelay: login failed: {e}"),
    };
    reply(&mut stream, "200 OK", &text).await;
    Some(outcome)
}

/// The request line's target (`/?code=…`), from a head of at most
/// [`HEAD_MAX`] bytes.
async fn request_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > HEAD_MAX {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split(' ');
    (words.next()? == "GET").then_some(())?;
    words.next().map(str::to_owned)
}

async fn reply(stream: &mut TcpStream, status: &str, text: &str) {
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{text}\n",
        text.len() + 1
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The code in a redirect to this login: its `state` checked first.
fn code_from(url: &Url, state: &str) -> Result<String, CodeLoginError> {
    let get = |k: &str| {
        url.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    let got = get("state");
    if let Some(code) = get("error")
        && got.as_deref().is_none_or(|s| s == state)
    {
        return Err(CodeLoginError::Denied {
            code: clean(&code),
            description: get("error_description")
                .map_or(String::new(), |d| format!(": {}", clean(&d))),
        });
    }
    if got.as_deref() != Some(state) {
        return Err(CodeLoginError::StateMismatch);
    }
    match get("code") {
        Some(c) if !c.is_empty() => Ok(c),
        _ => Err(CodeLoginError::NotARedirect(
            "the address has no code".into(),
        )),
    }
}
