//! SMTP commands (RFC 5321 §4.1 plus the SIZE, 8BITMIME, SMTPUTF8, DSN,
//! STARTTLS and AUTH extensions): parsing a client's line on the server side
//! and encoding it on the client side. It does not check command order (see
//! [`crate::server`]) or apply policy.

use std::fmt;

use crate::address::{AddressError, ForwardPath, ReversePath, path_len};
use crate::reply::Reply;

mod params;

pub use params::{Body, MailParams, Notify, RcptParams, Ret, xtext_decode, xtext_encode};

/// One SMTP command.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain-or-address-literal`.
    Ehlo(String),
    /// `HELO domain-or-address-literal`.
    Helo(String),
    /// `MAIL FROM:<path> [params]`.
    Mail {
        /// The reverse-path.
        from: ReversePath,
        /// ESMTP parameters.
        params: MailParams,
    },
    /// `RCPT TO:<path> [params]`.
    Rcpt {
        /// The forward-path.
        to: ForwardPath,
        /// ESMTP parameters.
        params: RcptParams,
    },
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop(Option<String>),
    /// `QUIT`.
    Quit,
    /// `VRFY string`.
    Vrfy(String),
    /// `EXPN string`.
    Expn(String),
    /// `HELP [string]`.
    Help(Option<String>),
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954). The mechanism is
    /// uppercased; the initial response is base64 or `=` (empty), kept as sent.
    Auth {
        /// SASL mechanism name, uppercase.
        mechanism: String,
        /// Initial response, as sent (a credential: never logged by `Debug`).
        initial: Option<String>,
    },
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Ehlo(d) => f.debug_tuple("Ehlo").field(d).finish(),
            Command::Helo(d) => f.debug_tuple("Helo").field(d).finish(),
            Command::Mail { from, params } => f
                .debug_struct("Mail")
                .field("from", from)
                .field("params", params)
                .finish(),
            Command::Rcpt { to, params } => f
                .debug_struct("Rcpt")
                .field("to", to)
                .field("params", params)
                .finish(),
            Command::Data => f.write_str("Data"),
            Command::Rset => f.write_str("Rset"),
            Command::Noop(s) => f.debug_tuple("Noop").field(s).finish(),
            Command::Quit => f.write_str("Quit"),
            Command::Vrfy(s) => f.debug_tuple("Vrfy").field(s).finish(),
            Command::Expn(s) => f.debug_tuple("Expn").field(s).finish(),
            Command::Help(s) => f.debug_tuple("Help").field(s).finish(),
            Command::StartTls => f.write_str("StartTls"),
            Command::Auth { mechanism, initial } => f
                .debug_struct("Auth")
                .field("mechanism", mechanism)
                .field("initial", &initial.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

/// Why a command line was refused; [`CommandError::reply`] gives the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// An empty line (or only spaces).
    Empty,
    /// A verb we do not know (truncated to 32 characters).
    UnknownCommand(String),
    /// A known verb with malformed arguments; `detail` is the reply text.
    Syntax {
        /// The verb, uppercase.
        command: &'static str,
        /// Reply text, e.g. `Syntax: MAIL FROM:<address>`.
        detail: String,
    },
    /// A syntactically placed path whose address is invalid.
    BadAddress {
        /// `MAIL` or `RCPT`.
        command: &'static str,
        /// What is wrong with the address.
        error: AddressError,
    },
    /// An ESMTP parameter we do not know (name uppercased, truncated to 32 characters).
    UnknownParameter(String),
    /// The same ESMTP parameter twice (name uppercased).
    DuplicateParameter(String),
    /// A known ESMTP parameter with a bad value.
    BadParameter {
        /// Parameter name, uppercase.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// Non-ASCII characters outside a path or VRFY/EXPN argument.
    NonAscii,
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// A control character (NUL, TAB, a stray CR...) in the line.
    ControlCharacter,
}

impl CommandError {
    /// The reply a server sends for this error.
    pub fn reply(&self) -> Reply {
        match self {
            CommandError::Empty => Reply::new(500, "5.5.2", "Error: empty command"),
            CommandError::UnknownCommand(_) => {
                Reply::new(500, "5.5.2", "Error: command not recognized")
            }
            CommandError::Syntax { detail, .. } => Reply::new(501, "5.5.4", detail.clone()),
            CommandError::BadAddress {
                command: "MAIL",
                error,
            } => Reply::new(553, "5.1.7", format!("Bad sender address syntax: {error}")),
            CommandError::BadAddress { error, .. } => Reply::new(
                553,
                "5.1.3",
                format!("Bad recipient address syntax: {error}"),
            ),
            CommandError::UnknownParameter(name) => {
                Reply::new(555, "5.5.4", format!("Unsupported parameter: {name}"))
            }
            CommandError::DuplicateParameter(name) => {
                Reply::new(501, "5.5.4", format!("Duplicate parameter: {name}"))
            }
            CommandError::BadParameter { name, detail } => {
                Reply::new(501, "5.5.4", format!("Bad {name} parameter: {detail}"))
            }
            CommandError::NonAscii => Reply::new(
                501,
                "5.5.4",
                "Syntax: non-ASCII characters are only allowed in addresses",
            ),
            CommandError::InvalidUtf8 => {
                Reply::new(500, "5.5.2", "Error: command is not valid UTF-8")
            }
            CommandError::ControlCharacter => {
                Reply::new(500, "5.5.2", "Error: control character in command")
            }
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::UnknownCommand(v) => write!(f, "unknown command {v:?}"),
            CommandError::Syntax { command, detail } => write!(f, "{command}: {detail}"),
            CommandError::BadAddress { command, error } => write!(f, "{command}: {error}"),
            _ => {
                let r = self.reply();
                f.write_str(r.lines.first().map(String::as_str).unwrap_or_default())
            }
        }
    }
}

impl std::error::Error for CommandError {}

fn syntax(command: &'static str, detail: &str) -> CommandError {
    CommandError::Syntax {
        command,
        detail: detail.to_owned(),
    }
}

const MAIL_SYNTAX: &str = "Syntax: MAIL FROM:<address> [parameters]";
const RCPT_SYNTAX: &str = "Syntax: RCPT TO:<address> [parameters]";

impl Command {
    /// Parses one command line, without its CRLF.
    ///
    /// Verbs and parameter names are case-insensitive. Leading and trailing
    /// spaces are ignored, and `MAIL FROM: <a@b>` (one space after the colon)
    /// is accepted as many MTAs do. Paths and VRFY/EXPN arguments may hold
    /// UTF-8 (check [`crate::address::Mailbox::is_ascii`] against SMTPUTF8);
    /// anything else must be ASCII. Control characters, NUL included, and
    /// invalid UTF-8 are refused.
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return Err(CommandError::ControlCharacter);
        }
        let line = std::str::from_utf8(line).map_err(|_| CommandError::InvalidUtf8)?;
        let line = line.trim_matches(' ');
        if line.is_empty() {
            return Err(CommandError::Empty);
        }
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v, a.trim_start_matches(' ')),
            None => (line, ""),
        };
        let upper = verb.to_ascii_uppercase();
        let ascii_arg = || {
            if arg.is_ascii() {
                Ok(arg)
            } else {
                Err(CommandError::NonAscii)
            }
        };
        let no_arg = |cmd: Command, name: &'static str| {
            if arg.is_empty() {
                Ok(cmd)
            } else {
                Err(syntax(name, &format!("Syntax: {name}")))
            }
        };
        let optional = |a: &str| (!a.is_empty()).then(|| a.to_owned());
        match upper.as_str() {
            "EHLO" => parse_hello(ascii_arg()?, "EHLO").map(Command::Ehlo),
            "HELO" => parse_hello(ascii_arg()?, "HELO").map(Command::Helo),
            "MAIL" => parse_mail(arg),
            "RCPT" => parse_rcpt(arg),
            "DATA" => no_arg(Command::Data, "DATA"),
            "RSET" => no_arg(Command::Rset, "RSET"),
            "QUIT" => no_arg(Command::Quit, "QUIT"),
            "STARTTLS" => no_arg(Command::StartTls, "STARTTLS"),
            "NOOP" => Ok(Command::Noop(optional(ascii_arg()?))),
            "HELP" => Ok(Command::Help(optional(ascii_arg()?))),
            "VRFY" if arg.is_empty() => Err(syntax("VRFY", "Syntax: VRFY address")),
            "VRFY" => Ok(Command::Vrfy(arg.to_owned())),
            "EXPN" if arg.is_empty() => Err(syntax("EXPN", "Syntax: EXPN list")),
            "EXPN" => Ok(Command::Expn(arg.to_owned())),
            "AUTH" => parse_auth(ascii_arg()?),
            _ => Err(CommandError::UnknownCommand(
                verb.chars().take(32).collect(),
            )),
        }
    }

    /// The canonical line, CRLF included (client side). Parameters come in a
    /// fixed order. CR and LF inside strings are replaced by spaces so that a
    /// value cannot inject a second command.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// [`Command::encode`] appended to `out` (a connection's send buffer),
    /// without a buffer of its own.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        // Writing into a Vec cannot fail.
        let _ = self.write_line(&mut Bytes(out));
        for b in &mut out[start..] {
            if *b == b'\r' || *b == b'\n' {
                *b = b' ';
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The line [`Command::encode`] sends, before CR and LF are replaced.
    fn write_line(&self, w: &mut impl fmt::Write) -> fmt::Result {
        w.write_str(self.verb())?;
        match self {
            Command::Ehlo(a) | Command::Helo(a) | Command::Vrfy(a) | Command::Expn(a) => {
                write!(w, " {a}")
            }
            Command::Mail { from, params } => {
                write!(w, " FROM:{from}")?;
                params.encode_into(w)
            }
            Command::Rcpt { to, params } => {
                write!(w, " TO:{to}")?;
                params.encode_into(w)
            }
            Command::Noop(a) | Command::Help(a) => match a {
                Some(a) => write!(w, " {a}"),
                None => Ok(()),
            },
            Command::Auth { mechanism, initial } => {
                write!(w, " {mechanism}")?;
                match initial {
                    Some(i) => write!(w, " {i}"),
                    None => Ok(()),
                }
            }
            Command::Data | Command::Rset | Command::Quit | Command::StartTls => Ok(()),
        }
    }

    /// The verb, uppercase (`"MAIL"`, `"STARTTLS"`...), for logs and errors.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Rset => "RSET",
            Command::Noop(_) => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy(_) => "VRFY",
            Command::Expn(_) => "EXPN",
            Command::Help(_) => "HELP",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }
}

/// EHLO/HELO argument: one domain or address literal, checked strictly.
fn parse_hello(arg: &str, name: &'static str) -> Result<String, CommandError> {
    let detail = if name == "EHLO" {
        "Syntax: EHLO hostname"
    } else {
        "Syntax: HELO hostname"
    };
    if arg.is_empty() || arg.contains(' ') || crate::address::check_domain(arg).is_err() {
        return Err(syntax(name, detail));
    }
    Ok(arg.to_owned())
}

/// Splits `FROM:<path> params` after the keyword: returns the path text and
/// the parameter text (ASCII-checked).
fn split_path<'a>(
    arg: &'a str,
    keyword: &str,
    name: &'static str,
    usage: &str,
) -> Result<(&'a str, &'a str), CommandError> {
    let rest = match arg.get(..keyword.len()) {
        Some(k) if k.eq_ignore_ascii_case(keyword) => arg.get(keyword.len()..).unwrap_or_default(),
        _ => return Err(syntax(name, usage)),
    };
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let len = path_len(rest).ok_or_else(|| syntax(name, usage))?;
    let (path, params) = rest.split_at(len);
    if !(params.is_empty() || params.starts_with(' ')) {
        return Err(syntax(name, usage));
    }
    Ok((path, params))
}

fn parse_mail(arg: &str) -> Result<Command, CommandError> {
    let (path, params) = split_path(arg, "FROM:", "MAIL", MAIL_SYNTAX)?;
    let from = ReversePath::parse(path).map_err(|error| CommandError::BadAddress {
        command: "MAIL",
        error,
    })?;
    let params = MailParams::parse(params, "MAIL", MAIL_SYNTAX)?;
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(arg: &str) -> Result<Command, CommandError> {
    let (path, params) = split_path(arg, "TO:", "RCPT", RCPT_SYNTAX)?;
    let to = ForwardPath::parse(path).map_err(|error| CommandError::BadAddress {
        command: "RCPT",
        error,
    })?;
    let params = RcptParams::parse(params, "RCPT", RCPT_SYNTAX)?;
    Ok(Command::Rcpt { to, params })
}

fn parse_auth(arg: &str) -> Result<Command, CommandError> {
    const USAGE: &str = "Syntax: AUTH mechanism [initial-response]";
    let mut words = arg.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().ok_or_else(|| syntax("AUTH", USAGE))?;
    let initial = words.next();
    let mech_ok = (1..=20).contains(&mechanism.len())
        && mechanism
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let initial_ok = initial.is_none_or(|i| {
        i == "="
            || i.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
    });
    if !mech_ok || !initial_ok || words.next().is_some() {
        return Err(syntax("AUTH", USAGE));
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial: initial.map(str::to_owned),
    })
}

/// `fmt::Write` into a byte buffer (the text is UTF-8; the buffer holds
/// bytes because it is a connection's send buffer).
struct Bytes<'a>(&'a mut Vec<u8>);

impl fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
