//! Runs SMTP dialog files (in the spirit of chasquid's `.cmy` files)
//! against a real daemon. Each file is one client session, written as the
//! transcript an MTA engineer would read.
//!
//! # Format
//!
//! One item per line; blank lines are ignored.
//!
//! | line | meaning |
//! |---|---|
//! | `# text` | a comment |
//! | `# config: intake.KEY = VALUE` | a setting for this dialog's daemon (see below) |
//! | `C: text` | send `text` followed by CRLF |
//! | `C\| text` | send `text` exactly, after unescaping `\r` `\n` `\t` `\\` `\xHH`; no CRLF is added |
//! | `S: 250` | read one whole (possibly multi-line) reply; its code must be 250 |
//! | `S: 250 2.1.0` | … its first line, as `CODE text`, must start with `250 2.1.0` |
//! | `S: <eof>` | the server must close the connection (bounded wait) |
//! | `S+ text` | some line of the last reply read contains `text` |
//! | `S- text` | no line of the last reply read contains `text` |
//! | `Q: N` | the queue holds exactly `N` messages now (checked via `queue list --json`) |
//! | `Q: N from=<s> to=<r1>,<r2>` | … and one of them has sender `s` and exactly the recipients `r1`, `r2` (in order) |
//! | `*N line` | `line` (a `C:`, `C\|` or `S:` line) `N` times; `{i}` in it counts 1..=N |
//!
//! In `C:` and `C|` text, `{N*text}` stands for `text` repeated `N` times
//! (for long lines). Only a single space after the `:`/`|` is part of the
//! syntax; further spaces belong to the text.
//!
//! A reply line is `CODE text` with the `-`/space separator normalised to a
//! space, so `S: 250 relay.test` matches the first line `250-relay.test` of
//! an EHLO reply.
//!
//! # Per-dialog configuration
//!
//! `# config:` lines must come before the first `C`/`S`/`Q` line. The key is
//! `TABLE.KEY` with `TABLE` one of `intake` or `queue`, and the value is TOML,
//! exactly as in `postrelay.toml`:
//!
//! ```text
//! # config: intake.max_errors = 3
//! # config: intake.command_timeout = "1s"
//! ```
//!
//! Every dialog gets its own daemon (spool, port, config), so a dialog
//! never sees another's messages or settings.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use super::daemon::{Daemon, Options};

/// How long a single reply (or the server's close) may take.
const REPLY_WAIT: Duration = Duration::from_secs(20);

/// One step of a dialog, with its line number for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Bytes to send.
    Send(Vec<u8>),
    /// Read one reply; the code, or the `CODE text` first line, must start
    /// with this prefix.
    Expect(String),
    /// The server must close the connection.
    ExpectEof,
    /// Some line of the last reply contains this text.
    LastHas(String),
    /// No line of the last reply contains this text.
    LastLacks(String),
    /// The queue state.
    Queue {
        count: usize,
        from: Option<String>,
        to: Option<Vec<String>>,
    },
}

/// A parsed dialog file.
#[derive(Clone, Default)]
pub struct Dialog {
    /// Daemon options built from the `# config:` lines.
    pub options: Options,
    /// The steps, each with its 1-based source line.
    pub steps: Vec<(usize, Step)>,
}

/// Parses a dialog file's text.
pub fn parse(text: &str) -> Result<Dialog, String> {
    let mut d = Dialog::default();
    for (n, raw) in text.lines().enumerate() {
        let lineno = n + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            if let Some(setting) = rest.trim_start().strip_prefix("config:") {
                if !d.steps.is_empty() {
                    return Err(format!(
                        "line {lineno}: `# config:` must come before the first C/S/Q line"
                    ));
                }
                config(&mut d.options, setting.trim())
                    .map_err(|e| format!("line {lineno}: {e}"))?;
            }
            continue;
        }
        let (times, item) = match line.strip_prefix('*') {
            Some(rest) => {
                let (n, item) = rest
                    .split_once(' ')
                    .ok_or_else(|| format!("line {lineno}: `*N` needs a line after it"))?;
                let n: usize = n
                    .parse()
                    .map_err(|_| format!("line {lineno}: bad repeat count {n:?}"))?;
                (Some(n), item)
            }
            None => (None, line),
        };
        for i in 1..=times.unwrap_or(1) {
            let item = if times.is_some() {
                item.replace("{i}", &i.to_string())
            } else {
                item.to_string()
            };
            let step = step(&item).map_err(|e| format!("line {lineno}: {e}"))?;
            if times.is_some() && matches!(step, Step::Queue { .. } | Step::ExpectEof) {
                return Err(format!("line {lineno}: only C and S lines can be repeated"));
            }
            d.steps.push((lineno, step));
        }
    }
    Ok(d)
}

fn config(opts: &mut Options, setting: &str) -> Result<(), String> {
    let (key, value) = setting
        .split_once('=')
        .ok_or("`# config:` needs `TABLE.KEY = VALUE`")?;
    let (table, key) = key
        .trim()
        .split_once('.')
        .ok_or("the key must be `intake.KEY` or `queue.KEY`")?;
    let line = format!("{key} = {}\n", value.trim());
    match table {
        "intake" => opts.intake.push_str(&line),
        "queue" => opts.queue.push_str(&line),
        other => return Err(format!("unknown table {other:?}: use intake or queue")),
    }
    Ok(())
}

fn step(item: &str) -> Result<Step, String> {
    let (tag, text) = item.split_at(item.len().min(2));
    let text = text.strip_prefix(' ').unwrap_or(text);
    Ok(match tag {
        "C:" => {
            let mut b = expand(text)?.into_bytes();
            b.extend_from_slice(b"\r\n");
            Step::Send(b)
        }
        "C|" => Step::Send(unescape(&expand(text)?)?),
        "S:" if text == "<eof>" => Step::ExpectEof,
        "S:" if text.is_empty() => return Err("`S:` needs a reply code".into()),
        "S:" => Step::Expect(text.to_string()),
        "S+" => Step::LastHas(text.to_string()),
        "S-" => Step::LastLacks(text.to_string()),
        "Q:" => queue_step(text)?,
        _ => {
            return Err(format!(
                "unknown line {item:?} (expected C:, C|, S:, S+, S-, Q:, *N or #)"
            ));
        }
    })
}

fn queue_step(text: &str) -> Result<Step, String> {
    let mut words = text.split_whitespace();
    let count = words
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("`Q:` needs a message count, got {text:?}"))?;
    let (mut from, mut to) = (None, None);
    for w in words {
        if let Some(s) = w.strip_prefix("from=") {
            from = Some(angle(s)?);
        } else if let Some(list) = w.strip_prefix("to=") {
            to = Some(list.split(',').map(angle).collect::<Result<Vec<_>, _>>()?);
        } else {
            return Err(format!("unknown `Q:` field {w:?} (from=<…> or to=<…>,<…>)"));
        }
    }
    Ok(Step::Queue { count, from, to })
}

fn angle(s: &str) -> Result<String, String> {
    s.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .map(str::to_string)
        .ok_or_else(|| format!("{s:?}: write addresses in angle brackets"))
}

/// Expands `{N*text}` repetitions.
fn expand(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let repeat = after.find('}').and_then(|close| {
            let (n, t) = after[..close].split_once('*')?;
            Some((n.parse::<usize>().ok()?, t, close))
        });
        match repeat {
            Some((n, t, close)) => {
                out.push_str(&t.repeat(n));
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Unescapes `\r \n \t \\ \xHH`.
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let s = std::str::from_utf8(&hex).map_err(|_| "bad \\x escape")?;
                out.push(u8::from_str_radix(s, 16).map_err(|_| format!("bad \\x escape \\x{s}"))?);
            }
            other => {
                return Err(format!(
                    "unknown escape \\{}",
                    other.map(char::from).unwrap_or(' ')
                ));
            }
        }
    }
    Ok(out)
}

/// A reply as read: code and lines (text after `CODE-`/`CODE `).
#[derive(Debug, Clone)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn first(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.first().map(String::as_str).unwrap_or("")
        )
    }
    fn show(&self) -> String {
        let n = self.lines.len();
        self.lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{}{}{l}", self.code, if i + 1 < n { '-' } else { ' ' }))
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

enum Read1 {
    Reply(Reply),
    Eof,
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn read_line(&mut self) -> Result<Option<String>, String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(Some(line));
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return if self.buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(format!(
                            "connection closed after a partial line {:?}",
                            String::from_utf8_lossy(&self.buf)
                        ))
                    };
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(format!("no reply within {REPLY_WAIT:?}: {e}")),
            }
        }
    }

    fn read(&mut self) -> Result<Read1, String> {
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let Some(line) = self.read_line()? else {
                return if lines.is_empty() {
                    Ok(Read1::Eof)
                } else {
                    Err("connection closed inside a multi-line reply".into())
                };
            };
            let c: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("malformed reply line {line:?}"))?;
            if *code.get_or_insert(c) != c {
                return Err(format!(
                    "reply code changed inside a multi-line reply: {line:?}"
                ));
            }
            let sep = line.as_bytes().get(3).copied();
            if !matches!(sep, None | Some(b' ') | Some(b'-')) {
                return Err(format!("malformed reply line {line:?}"));
            }
            lines.push(line.get(4..).unwrap_or("").to_string());
            if sep != Some(b'-') {
                return Ok(Read1::Reply(Reply { code: c, lines }));
            }
        }
    }
}

/// Runs a parsed dialog against `daemon`. The session starts by reading the
/// greeting, which must be 220.
pub fn run(dialog: &Dialog, daemon: &Daemon) -> Result<(), String> {
    let stream =
        TcpStream::connect(("127.0.0.1", daemon.port)).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(REPLY_WAIT)).unwrap();
    let mut c = Client {
        stream,
        buf: Vec::new(),
    };
    let mut last = match c.read()? {
        Read1::Reply(r) if r.code == 220 => r,
        Read1::Reply(r) => return Err(format!("greeting: expected 220, got {}", r.show())),
        Read1::Eof => return Err("greeting: connection closed".into()),
    };
    for (lineno, step) in &dialog.steps {
        let at = |msg: String| format!("line {lineno}: {msg}");
        match step {
            Step::Send(bytes) => {
                // A server that closed early shows up at the next S: line
                // with a clearer message than a write error.
                let _ = c.stream.write_all(bytes);
            }
            Step::Expect(want) => match c.read().map_err(at)? {
                Read1::Reply(r) => {
                    let ok = if want.len() == 3 {
                        r.code.to_string() == *want
                    } else {
                        r.first().starts_with(want.as_str())
                    };
                    if !ok {
                        return Err(at(format!("expected `{want}`, got `{}`", r.show())));
                    }
                    last = r;
                }
                Read1::Eof => {
                    return Err(at(format!(
                        "expected `{want}`, but the server closed the connection"
                    )));
                }
            },
            Step::ExpectEof => match c.read().map_err(at)? {
                Read1::Eof => {}
                Read1::Reply(r) => {
                    return Err(at(format!(
                        "expected the server to close, got `{}`",
                        r.show()
                    )));
                }
            },
            Step::LastHas(text) => {
                if !last.lines.iter().any(|l| l.contains(text.as_str())) {
                    return Err(at(format!(
                        "no line of `{}` contains {text:?}",
                        last.show()
                    )));
                }
            }
            Step::LastLacks(text) => {
                if let Some(l) = last.lines.iter().find(|l| l.contains(text.as_str())) {
                    return Err(at(format!(
                        "`{}` has a line {l:?} containing {text:?}",
                        last.show()
                    )));
                }
            }
            Step::Queue { count, from, to } => {
                check_queue(daemon, *count, from.as_deref(), to.as_deref()).map_err(at)?
            }
        }
    }
    Ok(())
}

fn check_queue(
    daemon: &Daemon,
    count: usize,
    from: Option<&str>,
    to: Option<&[String]>,
) -> Result<(), String> {
    let q = daemon.queue();
    let summary = || {
        q.iter()
            .map(|m| {
                let rcpts: Vec<&str> = m["recipients"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["address"].as_str())
                    .collect();
                format!(
                    "{} from=<{}> to={:?}",
                    m["id"].as_str().unwrap_or("?"),
                    m["sender"].as_str().unwrap_or("?"),
                    rcpts
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    if q.len() != count {
        return Err(format!(
            "expected {count} queued message(s), found {}: [{}]",
            q.len(),
            summary()
        ));
    }
    if from.is_none() && to.is_none() {
        return Ok(());
    }
    let matches = q.iter().any(|m| {
        let sender_ok = from.is_none_or(|f| m["sender"].as_str() == Some(f));
        let rcpts: Vec<&str> = m["recipients"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["address"].as_str())
            .collect();
        let rcpts_ok = to.is_none_or(|t| rcpts.iter().copied().eq(t.iter().map(String::as_str)));
        sender_ok && rcpts_ok
    });
    if !matches {
        return Err(format!(
            "no queued message has from=<{}> to={:?}: [{}]",
            from.unwrap_or("*"),
            to.unwrap_or(&[]),
            summary()
        ));
    }
    Ok(())
}

/// Parses and runs one dialog file against its own fresh daemon.
pub fn run_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read: {e}"))?;
    let dialog = parse(&text)?;
    if dialog.steps.is_empty() {
        return Err("the dialog has no steps".into());
    }
    let daemon = Daemon::start_with(dialog.options.clone());
    run(&dialog, &daemon).map_err(|e| {
        let log = daemon.stderr();
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!(
            "{e}\n    daemon log (last lines):\n      {}",
            tail.join("\n      ")
        )
    })
}
