//! `sendmail`: the command cron, PHP, monitoring tools and mail(1) run to
//! send mail (`postrelay sendmail ARGS…`, or `postrelay` called as
//! `sendmail`).
//!
//! It runs as the calling user with no privilege. It reads the message,
//! normalises it (see `input`), adds a `From:` when there is none, and
//! hands it over (see `to_daemon`): straight to the running daemon over
//! its submit socket when it may connect (root, the daemon's user, members
//! of `postdrop`), else, or when the daemon is stopped or busy, to
//! `postrelay-postdrop`, the small setgid program that writes it into the
//! spool's maildrop/, from where the daemon's pickup queues it. Exit 0
//! means the daemon or postdrop reported the message durable. `Date:`,
//! `Message-ID:` and `Received: … from userid N` are added by the daemon.
//!
//! `/usr/sbin/sendmail` is `postrelay-sendmail` (see `fast`), a small
//! program that runs this module's submission itself when the daemon
//! takes the connection, and `postrelay sendmail` for everything else.
//!
//! Options: see `args`. Differences from Postfix worth knowing:
//! - with `-t`, recipients on the command line are *added* to those of
//!   To/Cc/Bcc (as Postfix does; Sendmail 8 removes them); Resent-* fields
//!   are not read;
//! - a line over `intake.line_length_limit` is refused (EX_DATAERR) rather
//!   than folded;
//! - `-bs` relays SMTP to the daemon's first listener, so such mail is
//!   received over SMTP from 127.0.0.1, not as a local submission.
//!
//! Exit codes are sysexits(3): 64 usage, 65 bad input, 75 try again later,
//! 77 permission, 78 configuration.

mod addrlist;
pub mod args;
pub mod fast;
mod input;
mod smtp;
mod to_daemon;

use std::ffi::OsString;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};

use nix::unistd::{User, getuid};
use postrelay_smtp::address::Mailbox;

use self::args::{Mode, Options};
use self::input::{After, DataWriter, InputError, Limits, LineReader};
use self::to_daemon::{Sink, Verdict, connect};
use crate::config::{self, Config, SubmitSettings};
use crate::maildrop::{self, Body, Submission};

const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_TEMPFAIL: u8 = 75;
const EX_CONFIG: u8 = 78;

/// Where postdrop is when it is not next to this program.
pub const POSTDROP_PATH: &str = "/usr/sbin/postrelay-postdrop";

/// A failure: exit status and the line for stderr.
struct Fail(u8, String);

/// Runs `sendmail ARGS` (arguments after argv\[0\]). `config` is the file
/// named by `--config` or `POSTRELAY_CONFIG`, if any.
pub fn main(args: Vec<OsString>, config: Option<PathBuf>) -> ExitCode {
    match run(args, config.as_deref()) {
        Ok(code) => code,
        Err(Fail(code, why)) => {
            eprintln!("sendmail: {why}");
            ExitCode::from(code)
        }
    }
}

fn run(args: Vec<OsString>, config_path: Option<&Path>) -> Result<ExitCode, Fail> {
    let opts = args::parse(args).map_err(|e| Fail(EX_USAGE, e.0))?;
    let config = load_without_secrets(config_path).map_err(|e| Fail(EX_CONFIG, e))?;
    match opts.mode {
        Mode::Nothing => Ok(ExitCode::SUCCESS),
        Mode::ListQueue => Ok(super::queue::run(
            &config,
            super::queue::QueueCommand::List { json: false },
        )),
        Mode::Flush => Ok(super::queue::run(
            &config,
            super::queue::QueueCommand::Flush,
        )),
        Mode::Smtp => smtp::relay(&config),
        Mode::Submit => submit(&SubmitSettings::of(&config), &opts).map(|()| ExitCode::SUCCESS),
    }
}

/// Loads the configuration like the other commands, but without the
/// settings that name files only the daemon may read (relay credentials
/// and CA files, `delivery.sasl_passwd`, the submission listener's key
/// and users): sendmail runs as any user, and the queue commands as root
/// beside a daemon that owns its secrets; neither needs them. The relays
/// themselves stay, because routing tables may name them. Errors are
/// reported from the whole file, so that their line numbers are right.
pub(crate) fn load_without_secrets(explicit: Option<&Path>) -> Result<Config, String> {
    let path = match super::config_path(explicit).map_err(|e| e.to_string())? {
        Some(p) => p,
        None => return Ok(config::builtin_default()),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: cannot read the configuration: {e}", path.display()))?;
    let origin = path.display().to_string();
    let mut table: toml::Table = match toml::from_str(&text) {
        Ok(t) => t,
        Err(_) => {
            return Err(config::parse(&text, &origin)
                .err()
                .map_or_else(String::new, |e| e.to_string()));
        }
    };
    // The relays stay (routing tables may name them); only the files they
    // name go.
    if let Some(toml::Value::Array(relays)) = table.get_mut("relay") {
        for relay in relays.iter_mut() {
            if let toml::Value::Table(t) = relay {
                for key in ["username", "password_file", "ca_file", "oauth"] {
                    t.remove(key);
                }
            }
        }
    }
    for (section, key) in [("delivery", "sasl_passwd"), ("intake", "submission")] {
        if let Some(toml::Value::Table(t)) = table.get_mut(section) {
            t.remove(key);
        }
    }
    let stripped = toml::to_string(&table).unwrap_or_default();
    config::parse(&stripped, &origin).map_err(|stripped_err| match config::parse(&text, &origin) {
        Err(e) => e.to_string(),
        Ok(_) => stripped_err.to_string(),
    })
}

/// The calling user: uid, login name (or the uid), full name from GECOS.
struct Caller {
    name: String,
    gecos: Option<String>,
}

fn caller() -> Caller {
    let uid = getuid();
    match User::from_uid(uid).ok().flatten() {
        Some(u) => {
            let gecos = u
                .gecos
                .to_str()
                .ok()
                .and_then(|g| g.split(',').next())
                .map(str::trim)
                .filter(|g| !g.is_empty() && !g.chars().any(char::is_control))
                .map(str::to_string);
            let name = if maildrop::check_user(&u.name).is_ok() {
                u.name
            } else {
                uid.to_string()
            };
            Caller { name, gecos }
        }
        None => Caller {
            name: uid.to_string(),
            gecos: None,
        },
    }
}

/// Reads the message on stdin and hands it over as [`hand_over`] finds
/// best: to the daemon, else to postdrop.
fn submit(settings: &SubmitSettings, opts: &Options) -> Result<(), Fail> {
    let me = caller();
    let host = &settings.hostname;
    let own = Mailbox::from_parts(&me.name, host)
        .map_err(|e| {
            Fail(
                EX_DATAERR,
                format!("cannot make an address of user {:?}: {e}", me.name),
            )
        })?
        .to_string();
    let sender = envelope_sender(opts, host, &own)?;
    let mut recipients = Vec::new();
    for word in &opts.recipients {
        recipients.extend(addrlist::addresses(word, host).map_err(|e| Fail(EX_USAGE, e))?);
    }
    if recipients.is_empty() && !opts.from_headers {
        return Err(Fail(
            EX_USAGE,
            "no recipients (name them, or use -t to read To/Cc/Bcc)".into(),
        ));
    }

    let limits = Limits {
        size: settings.message_size_limit.min(maildrop::HARD_SIZE_CAP),
        header: settings.header_size_limit,
        line: settings.line_length_limit,
    };
    let stdin = io::stdin();
    let mut reader = LineReader::new(
        BufReader::with_capacity(64 * 1024, stdin.lock()),
        limits.line,
    );
    let header = input::read_header(&mut reader, opts.ignore_dots, &limits).map_err(input_fail)?;
    if opts.from_headers {
        recipients.extend(header_recipients(&header, host)?);
    }
    let mut seen = std::collections::HashSet::new();
    recipients.retain(|r| seen.insert(r.clone()));
    let from_line = (!header.has_from).then(|| {
        let address = if sender.is_empty() { &own } else { &sender };
        match opts.full_name.as_deref().or(me.gecos.as_deref()) {
            Some(name) => format!("From: {} <{address}>", display_name(name)),
            None => format!("From: {address}"),
        }
    });
    check_header(&header, from_line.as_deref(), &limits)?;
    let submission = Submission {
        version: maildrop::VERSION,
        sender,
        recipients,
        body: if opts.eight_bit {
            Body::EightBitMime
        } else {
            Body::SevenBit
        },
        notify: opts.notify.clone(),
        size_limit: limits.size,
    };

    let message = Message {
        submission: &submission,
        header: &header,
        from_line: from_line.as_deref(),
    };
    hand_over(&settings.spool, &message, &mut reader, opts, &limits)
}

/// Streams the message to the daemon, or to postdrop (see `to_daemon`),
/// and turns the verdict into success or the failure to report.
fn hand_over<R: std::io::BufRead>(
    spool: &Path,
    message: &Message<'_>,
    reader: &mut LineReader<R>,
    opts: &Options,
    limits: &Limits,
) -> Result<(), Fail> {
    let connected = connect(&maildrop::submit_socket(spool));
    let mut sink = Sink::with(connected, || spawn_postdrop(spool)).map_err(|e| {
        Fail(
            EX_TEMPFAIL,
            format!("cannot run {}: {e}", postdrop_path().display()),
        )
    })?;
    let streamed = stream(
        DataWriter::new(&mut sink, limits.size),
        message,
        reader,
        opts.ignore_dots,
    );
    // Without the end marker (on error) postdrop discards what it has,
    // and the daemon refuses it.
    let verdict = sink
        .finish(streamed.is_ok())
        .map_err(|e| Fail(EX_TEMPFAIL, format!("postrelay-postdrop: {e}")))?;
    let (size, queued) = match verdict {
        Verdict::Postdrop(output) => {
            let size = postdrop_verdict(&output, streamed)?;
            let name = String::from_utf8_lossy(&output.stdout).trim().to_string();
            let dir = maildrop::dir(spool);
            (
                size,
                format!(
                    "dropped as {}/{name}; the postrelay daemon queues it (postrelay queue list)",
                    dir.display()
                ),
            )
        }
        Verdict::Queued(answer) => (
            streamed.map_err(input_fail)?,
            format!("queued by the daemon: {}", answer.line),
        ),
        Verdict::Refused(answer) => {
            return Err(Fail(
                EX_DATAERR,
                format!("refused by the postrelay daemon: {}", answer.line),
            ));
        }
        // The daemon failed past the copy: its story, not our write error.
        Verdict::Lost(why) if !why.is_empty() => return Err(Fail(EX_TEMPFAIL, why)),
        Verdict::Lost(_) => {
            streamed.map_err(input_fail)?;
            return Err(Fail(EX_TEMPFAIL, "the message was not queued".into()));
        }
    };
    if opts.verbose {
        eprintln!(
            "sendmail: {size} octets for {} recipient(s) from <{}> {queued}",
            message.submission.recipients.len(),
            message.submission.sender,
        );
    }
    Ok(())
}

/// The envelope sender: `-f`'s one address (`""` for `-f ""` or `-f <>`),
/// or the caller's own address `own`.
fn envelope_sender(opts: &Options, host: &str, own: &str) -> Result<String, Fail> {
    match opts.sender.as_deref().map(str::trim) {
        None => Ok(own.to_string()),
        Some("" | "<>") => Ok(String::new()),
        Some(s) => {
            let mut found =
                addrlist::addresses(s, host).map_err(|e| Fail(EX_USAGE, format!("-f: {e}")))?;
            match (found.pop(), found.is_empty()) {
                (Some(a), true) => Ok(a),
                _ => Err(Fail(EX_USAGE, format!("-f {s:?}: expected one address"))),
            }
        }
    }
}

/// Refuses here, with an exit code, what pickup would refuse later when
/// nobody is left to tell: the `From:` line added counts against the
/// header limit, and a mail loop is a loop.
fn check_header(
    header: &input::Header,
    from_line: Option<&str>,
    limits: &Limits,
) -> Result<(), Fail> {
    let added = from_line.map_or(0, |f| f.len() as u64 + 2);
    if header.bytes + added > limits.header {
        return Err(input_fail(InputError::HeaderTooBig(limits.header)));
    }
    if header.hops > crate::header::HOP_LIMIT {
        return Err(input_fail(InputError::TooManyHops(
            crate::header::HOP_LIMIT,
        )));
    }
    Ok(())
}

/// The recipients in To/Cc/Bcc (`-t`); at least one.
fn header_recipients(header: &input::Header, host: &str) -> Result<Vec<String>, Fail> {
    let mut recipients = Vec::new();
    for value in &header.recipient_fields {
        recipients.extend(
            addrlist::addresses(value, host)
                .map_err(|e| Fail(EX_DATAERR, format!("in To/Cc/Bcc: {e}")))?,
        );
    }
    if recipients.is_empty() {
        return Err(Fail(
            EX_USAGE,
            "no recipients (none in To, Cc or Bcc, none named)".into(),
        ));
    }
    Ok(recipients)
}

/// What goes to postdrop ahead of the rest of standard input.
struct Message<'a> {
    submission: &'a Submission,
    header: &'a input::Header,
    /// The `From:` line added, if any.
    from_line: Option<&'a str>,
}

/// Writes the message to postdrop: the submission line, the header (with
/// the added `From:`), then the rest of `reader` up to the end (or a lone
/// "." unless `ignore_dots`). Returns the size written.
fn stream<W: Write, R: std::io::BufRead>(
    mut out: DataWriter<W>,
    message: &Message<'_>,
    reader: &mut LineReader<R>,
    ignore_dots: bool,
) -> Result<u64, InputError> {
    let mut line = message.submission.to_line();
    line.push(b'\n');
    out.raw(&line)?;
    for l in &message.header.lines {
        out.line(l)?;
    }
    if let Some(f) = message.from_line {
        out.line(f.as_bytes())?;
    }
    let ended = match &message.header.after {
        After::End => true,
        After::Separator => {
            out.line(b"")?;
            false
        }
        After::Body(l) => {
            out.line(l)?;
            false
        }
    };
    let mut l = Vec::new();
    while !ended && reader.next_line(&mut l)? {
        if !ignore_dots && l == b"." {
            break;
        }
        out.line(&l)?;
    }
    out.finish()
}

/// What postdrop's exit and our writing say together: the size dropped,
/// or the failure to report (postdrop's own words when it has any).
fn postdrop_verdict(
    output: &std::process::Output,
    streamed: Result<u64, InputError>,
) -> Result<u64, Fail> {
    let size = match streamed {
        Ok(size) => size,
        // postdrop went away while we wrote: its own message says why.
        Err(InputError::Io(e))
            if e.kind() == io::ErrorKind::BrokenPipe && !output.status.success() =>
        {
            0
        }
        Err(e) => return Err(input_fail(e)),
    };
    if !output.status.success() {
        let code = output
            .status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .filter(|c| (64..=78).contains(c));
        let postdrop_said = String::from_utf8_lossy(&output.stderr).trim().to_string();
        let why = if postdrop_said.is_empty() {
            format!("postrelay-postdrop failed ({})", output.status)
        } else {
            postdrop_said
        };
        return Err(Fail(code.unwrap_or(EX_TEMPFAIL), why));
    }
    Ok(size)
}

fn input_fail(e: InputError) -> Fail {
    match e {
        InputError::Io(e) => Fail(EX_TEMPFAIL, format!("cannot read the message: {e}")),
        other => Fail(EX_DATAERR, other.to_string()),
    }
}

/// `POSTRELAY_POSTDROP`, else `postrelay-postdrop` next to this program,
/// else [`POSTDROP_PATH`].
fn postdrop_path() -> PathBuf {
    if let Some(p) = std::env::var_os("POSTRELAY_POSTDROP") {
        return p.into();
    }
    beside_me("postrelay-postdrop", POSTDROP_PATH)
}

/// The program `name` in this program's directory, else `installed`.
fn beside_me(name: &str, installed: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| installed.into())
}

fn spawn_postdrop(spool: &Path) -> io::Result<Child> {
    Command::new(postdrop_path())
        .arg(spool)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

/// A display name for `From:`: as is when it is atoms and spaces, else a
/// quoted string, or RFC 2047 encoded words when it is not ASCII.
fn display_name(name: &str) -> String {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~ ".contains(c);
    if name.chars().all(atext) {
        return name.to_string();
    }
    if name.is_ascii() {
        let escaped: String = name
            .chars()
            .flat_map(|c| {
                if c == '"' || c == '\\' {
                    vec!['\\', c]
                } else {
                    vec![c]
                }
            })
            .collect();
        return format!("\"{escaped}\"");
    }
    // Q encoding (RFC 2047 §4.2), words of at most 75 characters, split
    // between characters.
    let mut words = Vec::new();
    let mut word = String::new();
    for c in name.chars() {
        let mut enc = String::new();
        let mut buf = [0u8; 4];
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            match b {
                b' ' => enc.push('_'),
                b if b.is_ascii_alphanumeric() || b"!*+-/".contains(&b) => enc.push(b as char),
                b => enc.push_str(&format!("={b:02X}")),
            }
        }
        if word.len() + enc.len() > 75 - "=?UTF-8?Q??=".len() {
            words.push(std::mem::take(&mut word));
        }
        word.push_str(&enc);
    }
    words.push(word);
    words
        .iter()
        .map(|w| format!("=?UTF-8?Q?{w}?="))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names() {
        assert_eq!(display_name("Cron Daemon"), "Cron Daemon");
        assert_eq!(display_name("Doe, J. \"Jo\""), "\"Doe, J. \\\"Jo\\\"\"");
        assert_eq!(display_name("Zoë"), "=?UTF-8?Q?Zo=C3=AB?=");
        let long = display_name(&"é".repeat(40));
        assert!(long.split(' ').all(|w| w.len() <= 75), "{long}");
    }
}
