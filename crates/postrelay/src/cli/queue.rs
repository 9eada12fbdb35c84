//! `postrelay queue …` and `mailq`: list, show, hold, release, delete and
//! flush queued mail.
//!
//! Listing reads the spool directly, so it works whether or not the daemon
//! runs (like `postqueue -p`). Changes go through the daemon's control
//! socket when it runs, so the queue keeps one writer; when it does not,
//! the command takes the spool lock itself and changes the files directly.

use std::io::Write;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;

use crate::config::Config;
use crate::control::{self, Request, Response};
use crate::maillog::MailLog;
use crate::queue::Queue;
use crate::spool::{
    Envelope, Listed, Location, QueueId, RcptState, Spool, SpoolError, SpoolReader,
};

/// `postrelay queue` subcommands.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queued messages (also `mailq`).
    List {
        /// Print JSON (one array of envelopes) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Show one message's envelope, state and last delivery transcript.
    Show {
        /// Queue ID.
        id: String,
        /// Print the envelope as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete messages.
    Delete {
        /// Queue IDs.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Delete every queued message.
        #[arg(long)]
        all: bool,
    },
    /// Hold messages: they stay queued but are not delivered.
    Hold {
        /// Queue IDs.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Release held messages.
    Release {
        /// Queue IDs.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Attempt delivery of every queued message now.
    Flush,
}

/// Runs one queue command.
pub fn run(config: &Config, cmd: QueueCommand) -> ExitCode {
    let result = match cmd {
        QueueCommand::List { json } => list(config, json),
        QueueCommand::Show { id, json } => show(config, &id, json),
        QueueCommand::Delete { ids, all } => {
            if all {
                change(config, vec![Request::DeleteAll])
            } else {
                change(
                    config,
                    ids.into_iter().map(|id| Request::Delete { id }).collect(),
                )
            }
        }
        QueueCommand::Hold { ids } => change(
            config,
            ids.into_iter().map(|id| Request::Hold { id }).collect(),
        ),
        QueueCommand::Release { ids } => change(
            config,
            ids.into_iter().map(|id| Request::Release { id }).collect(),
        ),
        QueueCommand::Flush => change(config, vec![Request::Flush]),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("postrelay: {message}");
            ExitCode::FAILURE
        }
    }
}

fn spool_hint(config: &Config, e: SpoolError) -> String {
    let text = e.to_string();
    if text.contains("ermission denied") {
        format!(
            "{text}\n  the spool {} is private: run this as root or as the postrelay user",
            config.spool.display()
        )
    } else {
        text
    }
}

fn list(config: &Config, json: bool) -> Result<ExitCode, String> {
    if json {
        return list_json(config);
    }
    let reader = Spool::open_readonly(&config.spool).map_err(|e| spool_hint(config, e))?;
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let mut table = Table::new();
    let mut failed = None;
    reader
        .visit_listed(|env, loc| match table.entry(&mut out, env, loc) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        })
        .map_err(|e| spool_hint(config, e))?;
    let written = match failed {
        Some(e) => Err(e),
        None => table.finish(&mut out).and_then(|()| out.flush()),
    };
    match written {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // `mailq | head`: the reader has seen enough.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(format!("cannot write the list: {e}")),
    }
}

fn list_json(config: &Config) -> Result<ExitCode, String> {
    let reader = Spool::open_readonly(&config.spool).map_err(|e| spool_hint(config, e))?;
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let written = match write_json(&reader, &mut out) {
        Ok(written) => written,
        Err(e) => return Err(spool_hint(config, e)),
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(format!("cannot write the list: {e}")),
    }
}

/// `queue list --json`, one message at a time: the bytes of one pretty
/// array of envelopes (each with its `location`), and a newline, without
/// holding the array. Each element is printed pretty on its own and
/// indented a level (JSON strings hold no raw newline, so indenting its
/// lines is exact). The outer `Err` is the spool's (before anything is
/// written); the inner one, the writer's.
fn write_json(
    reader: &SpoolReader,
    out: &mut impl Write,
) -> Result<std::io::Result<()>, SpoolError> {
    let mut buf = Vec::with_capacity(4096);
    let mut first = true;
    let mut failed = None;
    reader.visit(|env, loc| {
        let mut item = serde_json::to_value(&env).unwrap_or_default();
        item["location"] = serde_json::json!(if loc == Location::Hold {
            "hold"
        } else {
            "queue"
        });
        buf.clear();
        // Serializing a `Value` into memory cannot fail.
        let _ = serde_json::to_writer_pretty(&mut buf, &item);
        let mut result = out.write_all(if first { b"[\n  " } else { b",\n  " });
        first = false;
        for (i, line) in buf.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                result = result.and_then(|()| out.write_all(b"\n  "));
            }
            result = result.and_then(|()| out.write_all(line));
        }
        match result {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    Ok(match failed {
        Some(e) => Err(e),
        None if first => out.write_all(b"[]\n"),
        None => out.write_all(b"\n]\n"),
    })
}

/// The `mailq` table of `all`, as [`Table`] writes it.
pub fn render_list(all: &[(Envelope, Location)]) -> String {
    let mut out = Vec::new();
    let mut table = Table::new();
    for (env, loc) in all {
        let _ = table.entry(&mut out, &Listed::of(env), *loc);
    }
    let _ = table.finish(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The `mailq` table, written one message at a time: Postfix's layout,
/// with postrelay's longer IDs. A `!` after the ID marks a held message.
/// The reason a message waits is shown in parentheses under its sender, as
/// Postfix does for deferred mail.
struct Table {
    messages: usize,
    bytes: u64,
    tz: jiff::tz::TimeZone,
}

/// Indent of the lines under a message's first.
const PAD: &str = "                                                           ";

impl Table {
    fn new() -> Table {
        Table {
            messages: 0,
            bytes: 0,
            tz: jiff::tz::TimeZone::system(),
        }
    }

    fn entry(
        &mut self,
        out: &mut impl Write,
        env: &Listed<'_>,
        loc: Location,
    ) -> std::io::Result<()> {
        if self.messages == 0 {
            writeln!(
                out,
                "{:<27} {:>8} {:<20}  -Sender/Recipient-------",
                "-Queue ID-", "--Size--", "----Arrival Time----"
            )?;
        }
        self.messages += 1;
        self.bytes += env.size;
        let mark = if loc == Location::Hold { "!" } else { " " };
        let sender: &str = if env.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &env.sender
        };
        let arrival = arrival_in(env.created_ms, &self.tz);
        writeln!(
            out,
            "{}{mark} {:>8} {arrival:<20}  {sender}",
            env.id, env.size
        )?;
        if loc == Location::Hold {
            writeln!(out, "{PAD}(held by the administrator)")?;
        } else if let Some(reason) = &env.reason {
            writeln!(out, "{PAD}({})", crate::maillog::clean(reason))?;
        }
        for r in env
            .recipients
            .iter()
            .filter(|r| r.state == RcptState::Pending)
        {
            writeln!(out, "{PAD}{}", r.address)?;
        }
        writeln!(out)
    }

    fn finish(&self, out: &mut impl Write) -> std::io::Result<()> {
        let n = self.messages;
        if n == 0 {
            return writeln!(out, "Mail queue is empty");
        }
        writeln!(
            out,
            "-- {} Kbytes in {n} Request{}.",
            self.bytes.div_ceil(1024),
            if n == 1 { "" } else { "s" }
        )
    }
}

fn arrival(ms: u64) -> String {
    arrival_in(ms, &jiff::tz::TimeZone::system())
}

fn arrival_in(ms: u64, tz: &jiff::tz::TimeZone) -> String {
    let ts = jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_default();
    ts.to_zoned_datetime(tz.clone())
        .strftime("%a %b %e %H:%M:%S")
        .to_string()
}

fn show(config: &Config, id: &str, json: bool) -> Result<ExitCode, String> {
    let qid: QueueId = id.parse().map_err(|e| format!("queue show: {e}"))?;
    let reader = Spool::open_readonly(&config.spool).map_err(|e| spool_hint(config, e))?;
    let (env, loc) = reader.read(&qid).map_err(|e| match e {
        SpoolError::NotFound { .. } => {
            format!("queue show: no message {qid} in the queue (see postrelay queue list)")
        }
        other => spool_hint(config, other),
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&env).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    println!("id:        {}", env.id);
    println!(
        "location:  {}",
        if loc == Location::Hold {
            "hold (not delivered until released)"
        } else {
            "queue"
        }
    );
    println!("arrival:   {}", arrival(env.created_ms));
    println!("size:      {} octets", env.size);
    println!("sender:    <{}>", env.sender);
    println!(
        "origin:    {}",
        serde_json::to_string(&env.origin).unwrap_or_default()
    );
    println!("attempts:  {}", env.attempts);
    println!("next:      {}", arrival(env.next_attempt_ms));
    if let Some(r) = &env.reason {
        println!("waiting:   {}", crate::maillog::clean(r));
    }
    for r in &env.recipients {
        let state = match r.state {
            RcptState::Pending => "pending",
            RcptState::Delivered => "delivered",
            RcptState::Failed => "failed",
        };
        let last = r
            .last_reply
            .as_deref()
            .map(|s| format!(" ({})", crate::maillog::clean(s)))
            .unwrap_or_default();
        println!("recipient: <{}> {state}{last}", r.address);
    }
    if let Some(t) = &env.transcript {
        println!("last attempt transcript:");
        for line in t {
            println!("  {}", crate::maillog::clean(line));
        }
    }
    println!("body:      {}", reader.body_path(&qid).display());
    Ok(ExitCode::SUCCESS)
}

/// Sends changes to the daemon, or applies them directly when none runs.
fn change(config: &Config, requests: Vec<Request>) -> Result<ExitCode, String> {
    let mut failed = false;
    let mut direct: Option<Queue> = None;
    for req in requests {
        let response = match control::request(&config.control_socket, &req) {
            Ok(Some(r)) => r,
            Ok(None) => {
                if direct.is_none() {
                    direct = Some(open_direct(config)?);
                }
                direct
                    .as_ref()
                    .map(|q| control::execute(q, &req))
                    .unwrap_or_else(|| Response::failed("unreachable".into()))
            }
            Err(e) => {
                return Err(format!(
                    "cannot talk to the daemon on {}: {e}",
                    config.control_socket.display()
                ));
            }
        };
        if response.ok {
            println!("{}", response.message);
        } else {
            eprintln!("postrelay: {}", response.message);
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn open_direct(config: &Config) -> Result<Queue, String> {
    let spool = match Spool::open(&config.spool) {
        Ok(s) => s,
        Err(SpoolError::Locked { path }) => {
            return Err(format!(
                "the daemon holds {} but does not answer on {}; is it starting or stopping?",
                path.display(),
                config.control_socket.display()
            ));
        }
        Err(e) => return Err(spool_hint(config, e)),
    };
    let log = MailLog::open(&config.log, &config.hostname)
        .map_err(|e| format!("cannot open the mail log: {e}"))?;
    Queue::load(spool, Arc::new(log), Arc::new(config.router())).map_err(|e| spool_hint(config, e))
}

#[cfg(test)]
mod tests;
