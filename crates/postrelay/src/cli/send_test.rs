//! `postrelay send-test --to ADDR`: sends a tracked test message through
//! the running daemon and reports each step as it becomes known: queued,
//! connected, TLS (with the certificate's names), AUTH, accepted (with the
//! provider's reply and its queue id), or the step that failed and why.
//!
//! The message enters like any other, over SMTP to the daemon's own
//! listener (`[intake] listen`), whose 250 reply names the queue id; the
//! daemon's control socket then answers `track` requests for that id
//! (`queue::track`), polled every 100 ms up to `--timeout`.
//!
//! Not for: diagnosing a configuration without sending (`postrelay
//! doctor`), nor delivering anything itself: the daemon does that.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use crate::config::Config;
use crate::control::{self, Request};
use crate::queue::track::{TrackState, Tracked};

/// `postrelay send-test` arguments.
#[derive(Debug, Args)]
pub struct SendTestArgs {
    /// The recipient of the test message.
    #[arg(long)]
    pub to: String,
    /// The envelope sender and From: (default postmaster@ the configured
    /// hostname; sender rewriting applies as to any message).
    #[arg(long)]
    pub from: Option<String>,
    /// How long to wait for the result (`60s`, `2m`).
    #[arg(long, default_value = "60s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    crate::config::units::parse_duration(text)
}

/// Why the test could not be run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SendTestError {
    /// No daemon answers on the control socket.
    #[error(
        "the postrelay daemon is not running (nothing answers on {0}); start it \
         (postrelay run, or systemctl start postrelay) and try again"
    )]
    NotRunning(String),
    /// The control socket could not be used.
    #[error("cannot talk to the daemon on {socket}: {error}")]
    Control { socket: String, error: String },
    /// The daemon refused to answer (this user may not use its socket).
    #[error("the daemon refused: {0}")]
    Refused(String),
    /// The daemon has no SMTP listener to submit to.
    #[error("send-test submits over SMTP, but [intake] listen is empty; add a listener")]
    NoListener,
    /// Submitting the message failed.
    #[error("submitting the test message to {addr} failed: {detail}")]
    Submit { addr: SocketAddr, detail: String },
}

/// Runs `postrelay send-test`.
pub fn run(config: &Config, args: &SendTestArgs) -> ExitCode {
    match send_and_follow(config, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("postrelay send-test: {e}");
            ExitCode::from(match e {
                SendTestError::NotRunning(_) | SendTestError::NoListener => 69, // EX_UNAVAILABLE
                SendTestError::Refused(_) => 77,                                // EX_NOPERM
                SendTestError::Control { .. } | SendTestError::Submit { .. } => 75, // EX_TEMPFAIL
            })
        }
    }
}

fn send_and_follow(config: &Config, args: &SendTestArgs) -> Result<ExitCode, SendTestError> {
    let status = ask(config, &Request::Status)?.ok_or_else(|| not_running(config))?;
    if !status.ok {
        // Permission denied: root or the daemon's user may ask.
        return Err(SendTestError::Refused(status.message));
    }
    let addr = intake_addr(config)?;
    let from = args
        .from
        .clone()
        .unwrap_or_else(|| format!("postmaster@{}", config.hostname));
    let id = submit(addr, &config.hostname, &from, &args.to)?;
    println!("queued as {id} (from <{from}> to <{}>)", args.to);
    let deadline = Instant::now() + args.timeout;
    let mut shown = Shown::default();
    loop {
        let tracked = track(config, &id)?.ok_or_else(|| not_running(config))?;
        if let Some(code) = shown.report(&tracked) {
            return Ok(code);
        }
        if Instant::now() >= deadline {
            println!(
                "no result within {} s: the message is {:?} (see postrelay queue show {id})",
                args.timeout.as_secs(),
                tracked.state
            );
            return Ok(ExitCode::from(75));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn not_running(config: &Config) -> SendTestError {
    SendTestError::NotRunning(config.control_socket.display().to_string())
}

/// The daemon's answer to `request`; `None` when no daemon listens.
fn ask(config: &Config, req: &Request) -> Result<Option<control::Response>, SendTestError> {
    control::request(&config.control_socket, req).map_err(|e| SendTestError::Control {
        socket: config.control_socket.display().to_string(),
        error: e.to_string(),
    })
}

/// Where message `id` stands; `None` when no daemon listens.
fn track(config: &Config, id: &str) -> Result<Option<Tracked>, SendTestError> {
    let answer = ask(config, &Request::Track { id: id.to_owned() })?;
    Ok(answer.map(|r| {
        r.track.unwrap_or_else(|| {
            // A refused request (or a daemon too old to track): say why.
            let mut t = Tracked::bare(TrackState::Unknown);
            t.reason = Some(r.message);
            t
        })
    }))
}

/// Which steps were printed already.
#[derive(Default)]
struct Shown {
    session: bool,
}

impl Shown {
    /// Prints what is new in `t`; the exit status once the result is final.
    fn report(&mut self, t: &Tracked) -> Option<ExitCode> {
        if let (false, Some(s)) = (self.session, &t.session) {
            self.session = true;
            let reused = if s.reused { ", reused connection" } else { "" };
            println!("connected to {} (relay {}{reused})", s.peer, s.relay);
            match &s.tls {
                Some(tls) if s.cert_names.is_empty() => println!("TLS: {tls}"),
                Some(tls) => println!("TLS: {tls}, certificate for {}", s.cert_names.join(", ")),
                None => println!("no TLS"),
            }
            match &s.auth {
                Some(a) => println!("AUTH: {a}"),
                None => println!("no AUTH"),
            }
        }
        let why = || {
            format!(
                "failed at {}: {}",
                t.step.as_deref().unwrap_or("delivery"),
                t.reason.as_deref().unwrap_or("no reason given")
            )
        };
        match t.state {
            TrackState::Queued | TrackState::InFlight => None,
            TrackState::Delivered => {
                let reply = t.reply.as_deref().unwrap_or("(no reply recorded)");
                println!("accepted: {reply}");
                Some(ExitCode::SUCCESS)
            }
            TrackState::Deferred => {
                println!("{}; the message stays queued and will be retried", why());
                Some(ExitCode::FAILURE)
            }
            TrackState::Bounced => {
                println!("{}; refused for good, a bounce goes to the sender", why());
                Some(ExitCode::FAILURE)
            }
            TrackState::Unknown => {
                let more = t
                    .reason
                    .as_deref()
                    .unwrap_or("it left the queue unrecorded");
                println!("the daemon no longer knows the message: {more}");
                Some(ExitCode::FAILURE)
            }
        }
    }
}

/// Where to submit: the first `[intake] listen` address (a wildcard one
/// reached on loopback).
fn intake_addr(config: &Config) -> Result<SocketAddr, SendTestError> {
    let mut addr = *config
        .intake
        .listen
        .first()
        .ok_or(SendTestError::NoListener)?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(addr)
}

/// Submits the test message; the queue id from the final 250 reply.
fn submit(addr: SocketAddr, host: &str, from: &str, to: &str) -> Result<String, SendTestError> {
    let fail = |detail: String| SendTestError::Submit { addr, detail };
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| fail(e.to_string()))?;
    let io = |e: std::io::Error| fail(e.to_string());
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    let mut w = stream.try_clone().map_err(io)?;
    let mut r = BufReader::new(stream);
    let subject = format!("postrelay send-test {}", crate::spool::now_ms());
    let data = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\n\
         A test message sent by postrelay send-test.\r\n."
    );
    let dialog = [
        (None, 220),
        (Some(format!("EHLO {host}")), 250),
        (Some(format!("MAIL FROM:<{from}>")), 250),
        (Some(format!("RCPT TO:<{to}>")), 250),
        (Some("DATA".to_owned()), 354),
        (Some(data), 250),
    ];
    let mut last = String::new();
    for (line, want) in dialog {
        if let Some(line) = &line {
            w.write_all(format!("{line}\r\n").as_bytes()).map_err(io)?;
        }
        let (code, text) = reply(&mut r).map_err(io)?;
        if code != want {
            let cmd = line.map_or("the greeting".to_owned(), |l| {
                l.lines().next().unwrap_or("").to_owned()
            });
            return Err(fail(format!("{cmd} answered {code} {text}")));
        }
        last = text;
    }
    let _ = w.write_all(b"QUIT\r\n");
    last.rsplit("queued as ")
        .next()
        .filter(|_| last.contains("queued as "))
        .map(|id| id.trim().to_owned())
        .ok_or_else(|| fail(format!("the reply names no queue id: 250 {last}")))
}

/// One (possibly multi-line) reply: its code and the text of its last line.
fn reply(r: &mut impl BufRead) -> std::io::Result<(u16, String)> {
    // A reply is a few lines; 100 bounds a confused listener.
    for _ in 0..100 {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        let code = line.get(..3).and_then(|c| c.parse().ok());
        match (code, line.as_bytes().get(3)) {
            (Some(code), Some(b' ') | None) => {
                return Ok((code, line.get(4..).unwrap_or("").to_owned()));
            }
            (Some(_), Some(b'-')) => {}
            _ => break,
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the listener closed the connection or did not speak SMTP",
    ))
}
