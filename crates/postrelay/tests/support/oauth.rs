//! The OAuth2 authorization server of the relay OAuth tests
//! (`tests/py/oauth_server.py`, a real HTTP server in Python's standard
//! library), and the token check a fake SMTP provider makes with it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::fakeserver::BearerCheck;

/// A running server; killed on drop.
pub struct OAuthServer {
    pub port: u16,
    child: Child,
}

impl OAuthServer {
    /// Starts the server with access tokens living `access_lifetime`
    /// seconds; `rotate`: each refresh issues a new refresh token.
    pub fn start(access_lifetime: u32, rotate: bool) -> OAuthServer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/oauth_server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg("--access-lifetime")
            .arg(access_lifetime.to_string())
            .arg("--lifetime")
            .arg("600");
        if rotate {
            cmd.arg("--rotate");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the OAuth server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the server prints its port");
        OAuthServer { port, child }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `[relay.oauth]` lines for this server (every endpoint; the flow is
    /// the relay's default).
    pub fn relay_oauth(&self, token_file: &std::path::Path) -> String {
        format!(
            "[relay.oauth]\nclient_id = \"postrelay-test\"\ntoken_url = \"{u}/token\"\n\
             device_url = \"{u}/device\"\nauth_url = \"{u}/authorize\"\nscopes = [\"smtp\"]\ntoken_file = \"{}\"\n",
            token_file.display(),
            u = self.url()
        )
    }

    /// A JSON answer to `METHOD path`.
    pub fn call(&self, method: &str, path: &str) -> serde_json::Value {
        request(self.port, method, path)
    }

    /// The server's counters (`refreshes`, `refused_refreshes`…).
    pub fn stat(&self, name: &str) -> u64 {
        self.call("GET", "/stats")[name].as_u64().unwrap()
    }

    /// A check for a fake SMTP provider: the token must be one this
    /// server issued, unexpired, for that user.
    pub fn bearer_check(&self) -> BearerCheck {
        let port = self.port;
        Arc::new(move |user: &str, token: &str| {
            let answer = request(port, "GET", &format!("/introspect?token={token}"));
            answer["active"] == true && answer["user"] == user
        })
    }
}

/// What a browser does with `url` (`http://127.0.0.1:PORT/…`, a single
/// GET, redirects not followed): (status line, `Location` or empty, body).
pub fn browse(url: &str) -> (String, String, String) {
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .expect("a loopback URL");
    let (port, path) = rest.split_at(rest.find('/').expect("a path"));
    let (head, body) = exchange(port.parse().unwrap(), "GET", path);
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .unwrap_or_default();
    let status = head.lines().next().unwrap_or_default();
    (status.to_owned(), location.to_owned(), body)
}

fn request(port: u16, method: &str, path: &str) -> serde_json::Value {
    serde_json::from_str(&exchange(port, method, path).1).unwrap()
}

/// One HTTP/1.0 request without a body: (response head, body).
fn exchange(port: u16, method: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    (head.to_owned(), body.to_owned())
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
