//! The load generator: `messages` messages over `sessions` concurrent SMTP
//! sessions, all on one thread, with a new connection per message or
//! connections reused, commands pipelined when the server offers
//! PIPELINING. It measures the client's view (time to the `250` after the
//! data, per message and for the run) and, given the sink's arrival log,
//! the end-to-end view (last arrival, accept-to-hand-off delay).
//!
//! Not a correctness client: any failure drops the session and is counted.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use crate::conn::Conn;
use crate::error::LoadError;
use crate::stats::{Arrivals, Percentiles, delays_ms, percentiles};

mod message;
pub use message::Template;

/// What to send, and where.
#[derive(clap::Args, Debug, Clone)]
pub struct SendArgs {
    /// The relay's SMTP address.
    #[arg(long, default_value = "127.0.0.1:25")]
    pub server: SocketAddr,
    /// Messages to send in all.
    #[arg(long, short = 'm', default_value_t = 100)]
    pub messages: usize,
    /// Concurrent sessions.
    #[arg(long, short = 's', default_value_t = 1)]
    pub sessions: usize,
    /// Message size in bytes (headers included).
    #[arg(long, short = 'l', default_value_t = 1024)]
    pub size: usize,
    /// Recipients per message.
    #[arg(long, short = 'r', default_value_t = 1)]
    pub recipients: usize,
    /// Keep each session's connection for its next message (default: a new
    /// connection per message).
    #[arg(long)]
    pub reuse: bool,
    /// Send one command at a time even when the server offers PIPELINING.
    #[arg(long)]
    pub no_pipelining: bool,
    /// Pause before each message (per session), e.g. to probe an idle relay.
    #[arg(long, default_value_t = 0)]
    pub gap_ms: u64,
    /// The sink's arrival log: wait for every accepted message to arrive
    /// there and report end-to-end throughput and delay.
    #[arg(long)]
    pub sink_log: Option<PathBuf>,
    /// Longest wait for the arrivals, in seconds.
    #[arg(long, default_value_t = 300)]
    pub drain_timeout: u64,
    /// Domain of the sender and recipient addresses.
    #[arg(long, default_value = "load.test")]
    pub domain: String,
    /// Stop the run after this many failed messages.
    #[arg(long, default_value_t = 100)]
    pub max_errors: usize,
}

/// The result of a run (one JSON object).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendReport {
    /// Messages attempted.
    pub messages: usize,
    /// Messages the server accepted (250 after the data).
    pub accepted: usize,
    /// Messages that failed (refused or broken session).
    pub errors: usize,
    /// The first failure, as text.
    pub first_error: Option<String>,
    /// Concurrent sessions.
    pub sessions: usize,
    /// Message size in bytes.
    pub size: usize,
    /// Recipients per message.
    pub recipients: usize,
    /// Connections were reused.
    pub reuse: bool,
    /// Connections opened.
    pub connections: usize,
    /// Seconds from the start to the last 250.
    pub intake_s: f64,
    /// Accepted messages per second of `intake_s`.
    pub intake_per_s: f64,
    /// Per-message time to the 250 after the data, in ms (from the connect
    /// when the message opened its connection).
    pub latency_ms: Option<Percentiles>,
    /// Seconds from the start to the last arrival at the sink.
    pub e2e_s: Option<f64>,
    /// Arrived messages per second of `e2e_s`.
    pub e2e_per_s: Option<f64>,
    /// Accept-to-hand-off delay in ms: the sink's time of arrival minus the
    /// time the relay's 250 reached the generator.
    pub delay_ms: Option<Percentiles>,
    /// Accepted messages that never arrived (within the drain timeout).
    pub missing: usize,
}

/// The state the sessions share (one thread: no locks).
#[derive(Default)]
struct Shared {
    next: usize,
    accepted_ns: Vec<Option<u128>>,
    latencies_ms: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
    connections: usize,
}

struct Ctx {
    args: SendArgs,
    template: Template,
    shared: RefCell<Shared>,
}

impl Ctx {
    fn next(&self) -> Option<usize> {
        let mut s = self.shared.borrow_mut();
        if s.next >= self.args.messages || s.errors >= self.args.max_errors {
            return None;
        }
        s.next += 1;
        Some(s.next - 1)
    }

    fn failed(&self, e: &LoadError) {
        let mut s = self.shared.borrow_mut();
        s.errors += 1;
        s.first_error.get_or_insert_with(|| e.to_string());
    }
}

/// Nanoseconds since the Unix epoch (the sink's clock is the same).
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Runs the load on a single-threaded runtime.
pub fn run(args: SendArgs) -> Result<SendReport, LoadError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    rt.block_on(local.run_until(run_local(args)))
}

async fn run_local(args: SendArgs) -> Result<SendReport, LoadError> {
    let tag = format!("{:x}", now_ns() % (1 << 48));
    let ctx = Rc::new(Ctx {
        template: Template::new(&tag, &args.domain, args.size, args.recipients),
        shared: RefCell::new(Shared {
            accepted_ns: vec![None; args.messages],
            latencies_ms: Vec::with_capacity(args.messages),
            ..Shared::default()
        }),
        args,
    });
    let start_ns = now_ns();
    let start = Instant::now();
    let tasks: Vec<_> = (0..ctx.args.sessions.max(1))
        .map(|_| tokio::task::spawn_local(session(ctx.clone())))
        .collect();
    for t in tasks {
        // A session never panics on input; a panic here is a bug to show.
        t.await
            .map_err(|e| LoadError::Io(std::io::Error::other(e)))?;
    }
    let intake_s = start.elapsed().as_secs_f64();
    let mut s = ctx.shared.take();
    let accepted = s.accepted_ns.iter().flatten().count();
    let args = &ctx.args;
    let mut report = SendReport {
        messages: args.messages,
        accepted,
        errors: s.errors,
        first_error: s.first_error.take(),
        sessions: args.sessions,
        size: ctx.template.size(),
        recipients: args.recipients,
        reuse: args.reuse,
        connections: s.connections,
        intake_s,
        intake_per_s: accepted as f64 / intake_s,
        latency_ms: percentiles(&mut s.latencies_ms),
        e2e_s: None,
        e2e_per_s: None,
        delay_ms: None,
        missing: 0,
    };
    if let Some(log) = &args.sink_log {
        let expected: Vec<bool> = s.accepted_ns.iter().map(Option::is_some).collect();
        let mut arrivals = Arrivals::new(&tag, &expected, args.recipients as u32);
        let limit = Duration::from_secs(args.drain_timeout);
        follow(log, &mut arrivals, limit).await?;
        let done = arrivals.done_at();
        report.missing = arrivals.pending();
        if let Some(last) = done.iter().flatten().max() {
            let e2e = last.saturating_sub(start_ns) as f64 / 1e9;
            report.e2e_s = Some(e2e);
            report.e2e_per_s = Some((accepted - report.missing) as f64 / e2e);
        }
        report.delay_ms = percentiles(&mut delays_ms(&s.accepted_ns, done));
    }
    Ok(report)
}

/// Reads the sink's log as it grows until every message has arrived or
/// `limit` has passed (then the rest count as missing).
async fn follow(
    log: &std::path::Path,
    arrivals: &mut Arrivals,
    limit: Duration,
) -> Result<(), LoadError> {
    use std::io::Read;
    let deadline = Instant::now() + limit;
    // Blocking reads of a local file: the sessions are over, nothing waits.
    let mut file = std::fs::File::open(log)?;
    let mut buf = Vec::new();
    while arrivals.pending() > 0 && Instant::now() < deadline {
        buf.clear();
        file.read_to_end(&mut buf)?;
        arrivals.feed(&String::from_utf8_lossy(&buf));
        if arrivals.pending() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(())
}

async fn session(ctx: Rc<Ctx>) {
    let mut conn: Option<(Conn, bool)> = None;
    while let Some(seq) = ctx.next() {
        if ctx.args.gap_ms > 0 {
            tokio::time::sleep(Duration::from_millis(ctx.args.gap_ms)).await;
        }
        let t0 = Instant::now();
        match one_message(&ctx, &mut conn, seq).await {
            Ok(()) => {
                let at = now_ns();
                let mut s = ctx.shared.borrow_mut();
                if let Some(slot) = s.accepted_ns.get_mut(seq) {
                    *slot = Some(at);
                }
                s.latencies_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            Err(e) => {
                ctx.failed(&e);
                conn = None;
            }
        }
        if !ctx.args.reuse
            && let Some((c, _)) = conn.take()
        {
            quit(c).await;
        }
    }
    if let Some((c, _)) = conn {
        quit(c).await;
    }
}

async fn one_message(
    ctx: &Ctx,
    conn: &mut Option<(Conn, bool)>,
    seq: usize,
) -> Result<(), LoadError> {
    let (c, pipelining) = match conn {
        Some(open) => open,
        None => {
            let opened = open(ctx).await?;
            ctx.shared.borrow_mut().connections += 1;
            conn.insert(opened)
        }
    };
    transaction(c, *pipelining, &ctx.template, seq).await
}

/// Connects, reads the greeting and says EHLO; whether to pipeline.
async fn open(ctx: &Ctx) -> Result<(Conn, bool), LoadError> {
    let mut c = Conn::new(TcpStream::connect(ctx.args.server).await?);
    c.expect("greeting", 2).await?;
    c.send(format!("EHLO client.{}\r\n", ctx.args.domain).as_bytes())
        .await?;
    let ehlo = c.expect("EHLO", 2).await?;
    let offered = ehlo
        .lines
        .iter()
        .any(|l| l.eq_ignore_ascii_case("PIPELINING"));
    Ok((c, offered && !ctx.args.no_pipelining))
}

/// One transaction: MAIL, RCPTs and DATA (in one write when pipelining),
/// then the message.
async fn transaction(
    c: &mut Conn,
    pipelining: bool,
    t: &Template,
    seq: usize,
) -> Result<(), LoadError> {
    let commands = t.commands();
    if pipelining {
        for (cmd, _, _) in &commands {
            c.queue(cmd);
        }
        c.flush().await?;
        for (_, name, class) in &commands {
            c.expect(name, *class).await?;
        }
    } else {
        for (cmd, name, class) in &commands {
            c.send(cmd).await?;
            c.expect(name, *class).await?;
        }
    }
    t.write_message(c, seq);
    c.flush().await?;
    c.expect("end of data", 2).await?;
    Ok(())
}

async fn quit(mut c: Conn) {
    if c.send(b"QUIT\r\n").await.is_ok() {
        let _ = c.reply().await;
    }
    c.shutdown().await;
}
