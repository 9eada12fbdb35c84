//! ESMTP parameters of MAIL (SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH) and
//! RCPT (NOTIFY, ORCPT), plus the RFC 3461 xtext encoding they use. Values are
//! checked for syntax only; limits such as the maximum SIZE are policy.

use super::{CommandError, syntax};
use std::fmt;

/// Longest ENVID value (RFC 3461 §4.4).
const MAX_ENVID: usize = 100;
/// Longest ORCPT or AUTH value (RFC 3461 §4.2 gives 500 for ORCPT).
const MAX_XTEXT_PARAM: usize = 500;

/// The `BODY=` parameter (RFC 6152, RFC 3030).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
    /// `BODY=BINARYMIME` (only meaningful with CHUNKING).
    BinaryMime,
}

impl Body {
    /// The parameter value as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Body::SevenBit => "7BIT",
            Body::EightBitMime => "8BITMIME",
            Body::BinaryMime => "BINARYMIME",
        }
    }
}

/// The DSN `RET=` parameter (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ret {
    /// Return the full message in a DSN.
    Full,
    /// Return only the headers.
    Hdrs,
}

impl Ret {
    /// The parameter value as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }
}

/// One value of the DSN `NOTIFY=` list (RFC 3461 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Notify {
    /// Never send a DSN (must be the only value).
    Never,
    /// DSN on successful delivery.
    Success,
    /// DSN on failure.
    Failure,
    /// DSN on delay.
    Delay,
}

impl Notify {
    /// The value as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Notify::Never => "NEVER",
            Notify::Success => "SUCCESS",
            Notify::Failure => "FAILURE",
            Notify::Delay => "DELAY",
        }
    }
}

/// Parameters of MAIL FROM. Text values (`envid`, `auth`) are kept in their
/// xtext wire form; decode them with [`xtext_decode`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n` (RFC 1870): declared message size in octets.
    pub size: Option<u64>,
    /// `BODY=` (RFC 6152).
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `RET=` (RFC 3461).
    pub ret: Option<Ret>,
    /// `ENVID=` xtext (RFC 3461).
    pub envid: Option<String>,
    /// `AUTH=` xtext mailbox or `<>` (RFC 4954 §5).
    pub auth: Option<String>,
}

/// Parameters of RCPT TO (RFC 3461).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `NOTIFY=` values in the order given.
    pub notify: Option<Vec<Notify>>,
    /// `ORCPT=addr-type;xtext`, kept in wire form.
    pub orcpt: Option<String>,
}

/// Splits the parameter text into (uppercased keyword, optional value),
/// checking RFC 5321 esmtp-param syntax.
fn params<'a>(
    text: &'a str,
    command: &'static str,
    usage: &'static str,
) -> impl Iterator<Item = Result<(String, Option<&'a str>), CommandError>> {
    text.split(' ').filter(|p| !p.is_empty()).map(move |p| {
        if !p.is_ascii() {
            return Err(CommandError::NonAscii);
        }
        let (key, value) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        };
        let key_ok = key
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = value.is_none_or(|v| !v.is_empty() && v.bytes().all(|b| b != b'='));
        if !key_ok || !value_ok {
            return Err(syntax(command, usage));
        }
        Ok((key.to_ascii_uppercase(), value))
    })
}

/// An unknown parameter, its name cut to 32 characters: the name is echoed
/// in the reply and must not make it arbitrarily long.
fn unknown(mut name: String) -> CommandError {
    name.truncate(32);
    CommandError::UnknownParameter(name)
}

fn bad(name: &str, detail: &str) -> CommandError {
    CommandError::BadParameter {
        name: name.to_owned(),
        detail: detail.to_owned(),
    }
}

fn set<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), CommandError> {
    if slot.is_some() {
        return Err(CommandError::DuplicateParameter(name.to_owned()));
    }
    *slot = Some(value);
    Ok(())
}

fn required<'a>(name: &str, value: Option<&'a str>) -> Result<&'a str, CommandError> {
    value.ok_or_else(|| bad(name, "value required"))
}

fn xtext_value(name: &str, value: Option<&str>, max: usize) -> Result<String, CommandError> {
    let v = required(name, value)?;
    if v.len() > max {
        return Err(bad(name, &format!("longer than {max} characters")));
    }
    if xtext_decode(v).is_none() {
        return Err(bad(name, "not valid xtext"));
    }
    Ok(v.to_owned())
}

impl MailParams {
    /// Parses the text after the path (leading spaces allowed).
    pub(crate) fn parse(
        text: &str,
        command: &'static str,
        usage: &'static str,
    ) -> Result<MailParams, CommandError> {
        let mut p = MailParams::default();
        for item in params(text, command, usage) {
            let (name, value) = item?;
            match name.as_str() {
                "SIZE" => {
                    let v = required(&name, value)?;
                    if v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad(&name, "not a number"));
                    }
                    let n = v.parse().map_err(|_| bad(&name, "number too large"))?;
                    set(&mut p.size, &name, n)?;
                }
                "BODY" => {
                    let v = required(&name, value)?.to_ascii_uppercase();
                    let body = match v.as_str() {
                        "7BIT" => Body::SevenBit,
                        "8BITMIME" => Body::EightBitMime,
                        "BINARYMIME" => Body::BinaryMime,
                        _ => return Err(bad(&name, "expected 7BIT, 8BITMIME or BINARYMIME")),
                    };
                    set(&mut p.body, &name, body)?;
                }
                "SMTPUTF8" => {
                    if value.is_some() {
                        return Err(bad(&name, "takes no value"));
                    }
                    if p.smtputf8 {
                        return Err(CommandError::DuplicateParameter(name));
                    }
                    p.smtputf8 = true;
                }
                "RET" => {
                    let v = required(&name, value)?.to_ascii_uppercase();
                    let ret = match v.as_str() {
                        "FULL" => Ret::Full,
                        "HDRS" => Ret::Hdrs,
                        _ => return Err(bad(&name, "expected FULL or HDRS")),
                    };
                    set(&mut p.ret, &name, ret)?;
                }
                "ENVID" => {
                    let v = xtext_value(&name, value, MAX_ENVID)?;
                    set(&mut p.envid, &name, v)?;
                }
                "AUTH" => {
                    let v = xtext_value(&name, value, MAX_XTEXT_PARAM)?;
                    set(&mut p.auth, &name, v)?;
                }
                _ => return Err(unknown(name)),
            }
        }
        Ok(p)
    }

    /// Appends ` NAME=value` for each parameter set, in a fixed order.
    pub(crate) fn encode_into(&self, s: &mut impl fmt::Write) -> fmt::Result {
        if let Some(n) = self.size {
            write!(s, " SIZE={n}")?;
        }
        if let Some(b) = self.body {
            s.write_str(" BODY=")?;
            s.write_str(b.as_str())?;
        }
        if self.smtputf8 {
            s.write_str(" SMTPUTF8")?;
        }
        if let Some(r) = self.ret {
            s.write_str(" RET=")?;
            s.write_str(r.as_str())?;
        }
        if let Some(e) = &self.envid {
            s.write_str(" ENVID=")?;
            s.write_str(e)?;
        }
        if let Some(a) = &self.auth {
            s.write_str(" AUTH=")?;
            s.write_str(a)?;
        }
        Ok(())
    }
}

impl RcptParams {
    /// Parses the text after the path (leading spaces allowed).
    pub(crate) fn parse(
        text: &str,
        command: &'static str,
        usage: &'static str,
    ) -> Result<RcptParams, CommandError> {
        let mut p = RcptParams::default();
        for item in params(text, command, usage) {
            let (name, value) = item?;
            match name.as_str() {
                "NOTIFY" => {
                    let list = parse_notify(required(&name, value)?)?;
                    set(&mut p.notify, &name, list)?;
                }
                "ORCPT" => {
                    let v = xtext_value(&name, value, MAX_XTEXT_PARAM)?;
                    let (addr_type, _) = v
                        .split_once(';')
                        .ok_or_else(|| bad(&name, "expected addr-type;address"))?;
                    let type_ok = !addr_type.is_empty()
                        && addr_type
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
                    if !type_ok {
                        return Err(bad(&name, "bad address type"));
                    }
                    set(&mut p.orcpt, &name, v)?;
                }
                _ => return Err(unknown(name)),
            }
        }
        Ok(p)
    }

    /// Appends ` NAME=value` for each parameter set, in a fixed order.
    pub(crate) fn encode_into(&self, s: &mut impl fmt::Write) -> fmt::Result {
        if let Some(list) = &self.notify {
            s.write_str(" NOTIFY=")?;
            for (i, n) in list.iter().enumerate() {
                if i > 0 {
                    s.write_char(',')?;
                }
                s.write_str(n.as_str())?;
            }
        }
        if let Some(o) = &self.orcpt {
            s.write_str(" ORCPT=")?;
            s.write_str(o)?;
        }
        Ok(())
    }
}

fn parse_notify(v: &str) -> Result<Vec<Notify>, CommandError> {
    let mut list = Vec::new();
    for word in v.split(',') {
        let n = match word.to_ascii_uppercase().as_str() {
            "NEVER" => Notify::Never,
            "SUCCESS" => Notify::Success,
            "FAILURE" => Notify::Failure,
            "DELAY" => Notify::Delay,
            _ => return Err(bad("NOTIFY", "expected NEVER or SUCCESS,FAILURE,DELAY")),
        };
        if list.contains(&n) {
            return Err(bad("NOTIFY", "value listed twice"));
        }
        list.push(n);
    }
    if list.len() > 1 && list.contains(&Notify::Never) {
        return Err(bad("NOTIFY", "NEVER must be the only value"));
    }
    Ok(list)
}

/// Decodes RFC 3461 xtext (`+XX` hex escapes; other characters are printable
/// ASCII except `+` and `=`). Returns `None` if `s` is not valid xtext or does
/// not decode to UTF-8. Lowercase hex digits are tolerated.
pub fn xtext_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            b'!'..=b'~' if b != b'=' => out.push(b),
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes `s` as RFC 3461 xtext: `+`, `=`, spaces, controls and non-ASCII
/// octets become `+XX`.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}
