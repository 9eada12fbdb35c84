//! RFC 5321 mailboxes and paths (`<local@domain>`, `<>`, `<Postmaster>`),
//! with RFC 6531 UTF-8 allowed and reported through [`Mailbox::is_ascii`].
//! It checks syntax and size limits only: no DNS, no IDNA conversion, no
//! policy on which addresses are acceptable.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest local part, in octets (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain, in octets (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest domain label, in octets (RFC 1035 §2.3.4).
pub const MAX_LABEL: usize = 63;
/// Longest reverse- or forward-path including `<`, `>` and any source route
/// (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH: usize = 256;

/// Why an address or path was refused. `Display` says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    /// Nothing at all.
    Empty,
    /// The path is not enclosed in `<` and `>`.
    MissingAngleBrackets,
    /// `<>` where a recipient is required.
    NullNotAllowed,
    /// No `@domain` after the local part.
    MissingDomain,
    /// Empty local part (`@example.com`).
    LocalPartEmpty,
    /// A dot at the start or end of the local part, or two dots in a row.
    LocalPartDots,
    /// A character not allowed in the local part (quote the local part to use it).
    LocalPartInvalidChar(char),
    /// A quoted local part without its closing `"`.
    UnterminatedQuote,
    /// Local part over [`MAX_LOCAL_PART`] octets.
    LocalPartTooLong,
    /// Nothing after `@`.
    DomainEmpty,
    /// A character not allowed in a domain name.
    DomainInvalidChar(char),
    /// A dot at the start or end of the domain, or two dots in a row.
    DomainLabelEmpty,
    /// A domain label starting or ending with `-`.
    DomainLabelHyphen,
    /// A domain label over [`MAX_LABEL`] octets.
    DomainLabelTooLong,
    /// Domain over [`MAX_DOMAIN`] octets.
    DomainTooLong,
    /// `[...]` that is neither an IPv4 address nor `IPv6:` and an IPv6 address.
    BadAddressLiteral,
    /// Path over [`MAX_PATH`] octets.
    PathTooLong,
    /// A malformed source route (`<@a,@b:user@d>`).
    BadSourceRoute,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::Empty => f.write_str("empty address"),
            AddressError::MissingAngleBrackets => {
                f.write_str("address must be enclosed in angle brackets")
            }
            AddressError::NullNotAllowed => f.write_str("null address <> not allowed here"),
            AddressError::MissingDomain => f.write_str("missing @domain"),
            AddressError::LocalPartEmpty => f.write_str("empty local part"),
            AddressError::LocalPartDots => {
                f.write_str("local part has a leading, trailing or doubled dot")
            }
            AddressError::LocalPartInvalidChar(c) => {
                write!(f, "invalid character {c:?} in local part")
            }
            AddressError::UnterminatedQuote => f.write_str("unterminated quoted local part"),
            AddressError::LocalPartTooLong => {
                write!(f, "local part longer than {MAX_LOCAL_PART} octets")
            }
            AddressError::DomainEmpty => f.write_str("empty domain"),
            AddressError::DomainInvalidChar(c) => write!(f, "invalid character {c:?} in domain"),
            AddressError::DomainLabelEmpty => {
                f.write_str("domain has a leading, trailing or doubled dot")
            }
            AddressError::DomainLabelHyphen => {
                f.write_str("domain label starts or ends with a hyphen")
            }
            AddressError::DomainLabelTooLong => {
                write!(f, "domain label longer than {MAX_LABEL} octets")
            }
            AddressError::DomainTooLong => write!(f, "domain longer than {MAX_DOMAIN} octets"),
            AddressError::BadAddressLiteral => {
                f.write_str("address literal is neither [IPv4 address] nor [IPv6:IPv6 address]")
            }
            AddressError::PathTooLong => write!(f, "path longer than {MAX_PATH} octets"),
            AddressError::BadSourceRoute => f.write_str("malformed source route"),
        }
    }
}

impl std::error::Error for AddressError {}

/// A mailbox `local@domain`.
///
/// The local part is stored unquoted (its value: `"john doe"@x` holds
/// `john doe`) and is case-sensitive; [`Display`](fmt::Display) quotes it again
/// when it is not a dot-atom. The domain is stored as received, including the
/// brackets of an address literal; compare domains with
/// [`Mailbox::domain_lowercase`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    local: String,
    domain: String,
}

impl Mailbox {
    /// Parses `local@domain` (no angle brackets). The local part is a
    /// dot-atom or a quoted string; the domain is dot-separated labels or an
    /// address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`).
    pub fn parse(s: &str) -> Result<Mailbox, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        let (local, raw_len) = parse_local(s)?;
        if raw_len > MAX_LOCAL_PART {
            return Err(AddressError::LocalPartTooLong);
        }
        let rest = s.get(raw_len..).unwrap_or_default();
        let domain = match rest.strip_prefix('@') {
            Some(d) => d,
            None => match rest.chars().next() {
                None => return Err(AddressError::MissingDomain),
                Some(c) => return Err(AddressError::LocalPartInvalidChar(c)),
            },
        };
        check_domain(domain)?;
        if s.len() + 2 > MAX_PATH {
            return Err(AddressError::PathTooLong);
        }
        Ok(Mailbox {
            local,
            domain: domain.to_owned(),
        })
    }

    /// Builds a mailbox from an unquoted local-part value and a domain,
    /// applying the same checks as [`Mailbox::parse`] to the encoded form.
    pub fn from_parts(local: &str, domain: &str) -> Result<Mailbox, AddressError> {
        if let Some(c) = local.chars().find(|&c| !is_qtext_value(c)) {
            return Err(AddressError::LocalPartInvalidChar(c));
        }
        let m = Mailbox {
            local: local.to_owned(),
            domain: domain.to_owned(),
        };
        let local_len = m.encoded_local_len();
        if local_len > MAX_LOCAL_PART {
            return Err(AddressError::LocalPartTooLong);
        }
        check_domain(domain)?;
        // `<local@domain>`, as Display writes it inside the brackets.
        if local_len + 1 + m.domain.len() + 2 > MAX_PATH {
            return Err(AddressError::PathTooLong);
        }
        Ok(m)
    }

    /// The local part's value (unquoted, escapes removed).
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain as received (address literals keep their brackets).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The domain lowercased, for comparisons (domains are case-insensitive;
    /// local parts are not).
    pub fn domain_lowercase(&self) -> String {
        if self.domain.is_ascii() {
            self.domain.to_ascii_lowercase()
        } else {
            self.domain.to_lowercase()
        }
    }

    /// The address as [`Display`](fmt::Display) writes it (`local@domain`,
    /// the local part quoted when it must be), in a string allocated once
    /// at its length (`to_string` grows one from nothing).
    pub fn to_address(&self) -> String {
        let mut out = String::with_capacity(self.encoded_local_len() + 1 + self.domain.len());
        // Writing into a String cannot fail.
        let _ = self.write_local(&mut out);
        out.push('@');
        out.push_str(&self.domain);
        out
    }

    /// `false` when the local part or the domain holds non-ASCII characters,
    /// i.e. the mailbox can only be relayed with SMTPUTF8 (RFC 6531).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }

    /// Whether the domain is an address literal (`[...]`).
    pub fn is_address_literal(&self) -> bool {
        self.domain.starts_with('[')
    }

    /// Writes the local part as it goes on the wire: as is when it is a
    /// dot-atom, otherwise quoted with `"` and `\` escaped.
    fn write_local(&self, w: &mut impl fmt::Write) -> fmt::Result {
        if is_dot_atom(&self.local) {
            return w.write_str(&self.local);
        }
        w.write_char('"')?;
        for c in self.local.chars() {
            if c == '"' || c == '\\' {
                w.write_char('\\')?;
            }
            w.write_char(c)?;
        }
        w.write_char('"')
    }

    /// The length in bytes of what [`Mailbox::write_local`] writes.
    fn encoded_local_len(&self) -> usize {
        if is_dot_atom(&self.local) {
            return self.local.len();
        }
        let escaped = self
            .local
            .bytes()
            .filter(|&b| b == b'"' || b == b'\\')
            .count();
        self.local.len() + escaped + 2
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_local(f)?;
        f.write_str("@")?;
        f.write_str(&self.domain)
    }
}

/// The MAIL FROM path: a mailbox, or `<>` for bounces and other
/// notifications that must not themselves bounce.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReversePath {
    /// `<>`.
    Null,
    /// `<local@domain>`.
    Mailbox(Mailbox),
}

impl ReversePath {
    /// Parses a whole path, brackets included (`<>`, `<a@b>`, `<@route:a@b>`).
    /// A source route is accepted and dropped (RFC 5321 §4.1.1.3, Appendix C).
    pub fn parse(s: &str) -> Result<ReversePath, AddressError> {
        match path_inner(s)? {
            "" => Ok(ReversePath::Null),
            inner => Mailbox::parse(inner).map(ReversePath::Mailbox),
        }
    }

    /// The mailbox, or `None` for `<>`.
    pub fn mailbox(&self) -> Option<&Mailbox> {
        match self {
            ReversePath::Null => None,
            ReversePath::Mailbox(m) => Some(m),
        }
    }
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// The RCPT TO path: a mailbox, or the bare `<Postmaster>` that every SMTP
/// server must accept (RFC 5321 §4.5.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain, in any letter case.
    Postmaster,
    /// `<local@domain>`.
    Mailbox(Mailbox),
}

impl ForwardPath {
    /// Parses a whole path, brackets included. `<>` is refused; a source
    /// route is accepted and dropped.
    pub fn parse(s: &str) -> Result<ForwardPath, AddressError> {
        match path_inner(s)? {
            "" => Err(AddressError::NullNotAllowed),
            inner if inner.eq_ignore_ascii_case("postmaster") => Ok(ForwardPath::Postmaster),
            inner => Mailbox::parse(inner).map(ForwardPath::Mailbox),
        }
    }

    /// The mailbox, or `None` for `<Postmaster>`.
    pub fn mailbox(&self) -> Option<&Mailbox> {
        match self {
            ForwardPath::Postmaster => None,
            ForwardPath::Mailbox(m) => Some(m),
        }
    }
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("<Postmaster>"),
            ForwardPath::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// Length of the path at the start of `s` (which starts with `<`), through
/// its closing `>`, honouring quoted strings so that `<"a>b"@c>` is one path.
/// `None` if there is no closing bracket.
pub(crate) fn path_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'<') {
        return None;
    }
    let mut in_quote = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        if in_quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
        } else if b == b'"' {
            in_quote = true;
        } else if b == b'>' {
            return Some(i + 1);
        }
    }
    None
}

/// Checks brackets, length and source route; returns what is left between
/// the brackets once the route is removed.
fn path_inner(s: &str) -> Result<&str, AddressError> {
    if s.is_empty() {
        return Err(AddressError::Empty);
    }
    if s.len() > MAX_PATH {
        return Err(AddressError::PathTooLong);
    }
    let inner = s
        .strip_prefix('<')
        .and_then(|r| r.strip_suffix('>'))
        .ok_or(AddressError::MissingAngleBrackets)?;
    if inner.starts_with('@') {
        skip_source_route(inner)
    } else {
        Ok(inner)
    }
}

/// `@a,@b:rest` → `rest`, checking each route domain's syntax.
fn skip_source_route(s: &str) -> Result<&str, AddressError> {
    let mut rest = s;
    loop {
        rest = rest.strip_prefix('@').ok_or(AddressError::BadSourceRoute)?;
        let end = if rest.starts_with('[') {
            rest.find(']').map(|i| i + 1)
        } else {
            rest.find([',', ':'])
        }
        .ok_or(AddressError::BadSourceRoute)?;
        let (domain, after) = rest.split_at(end);
        check_domain(domain).map_err(|_| AddressError::BadSourceRoute)?;
        if let Some(r) = after.strip_prefix(',') {
            rest = r;
        } else if let Some(r) = after.strip_prefix(':') {
            return if r.is_empty() {
                Err(AddressError::BadSourceRoute)
            } else {
                Ok(r)
            };
        } else {
            return Err(AddressError::BadSourceRoute);
        }
    }
}

/// Parses the local part at the start of `s`; returns its value and how many
/// bytes of `s` it used.
fn parse_local(s: &str) -> Result<(String, usize), AddressError> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((value, i + 2)),
                '\\' => match chars.next() {
                    Some((_, e)) if (' '..='~').contains(&e) => value.push(e),
                    Some((_, e)) => return Err(AddressError::LocalPartInvalidChar(e)),
                    None => return Err(AddressError::UnterminatedQuote),
                },
                c if is_qtext_value(c) => value.push(c),
                c => return Err(AddressError::LocalPartInvalidChar(c)),
            }
        }
        return Err(AddressError::UnterminatedQuote);
    }
    let end = s.find('@').unwrap_or(s.len());
    let local = s.get(..end).unwrap_or_default();
    if local.is_empty() {
        return Err(AddressError::LocalPartEmpty);
    }
    if let Some(c) = local.chars().find(|&c| c != '.' && !is_atext(c)) {
        return Err(AddressError::LocalPartInvalidChar(c));
    }
    if local.split('.').any(str::is_empty) {
        return Err(AddressError::LocalPartDots);
    }
    Ok((local.to_owned(), end))
}

/// RFC 5322 atext plus RFC 6531 UTF-8 (no control or white-space characters).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || is_utf8_text(c)
}

fn is_utf8_text(c: char) -> bool {
    !c.is_ascii() && !c.is_control() && !c.is_whitespace()
}

/// Characters a quoted local part may carry (directly or as a quoted-pair).
fn is_qtext_value(c: char) -> bool {
    (' '..='~').contains(&c) || is_utf8_text(c)
}

fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|a| !a.is_empty() && a.chars().all(is_atext))
}

/// Checks a domain: dot-separated labels or an address literal.
pub(crate) fn check_domain(d: &str) -> Result<(), AddressError> {
    if d.is_empty() {
        return Err(AddressError::DomainEmpty);
    }
    if d.len() > MAX_DOMAIN {
        return Err(AddressError::DomainTooLong);
    }
    if let Some(literal) = d.strip_prefix('[') {
        let inner = literal
            .strip_suffix(']')
            .ok_or(AddressError::BadAddressLiteral)?;
        let ok = match inner.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner
                .get(5..)
                .unwrap_or_default()
                .parse::<Ipv6Addr>()
                .is_ok(),
            _ => inner.parse::<Ipv4Addr>().is_ok(),
        };
        return if ok {
            Ok(())
        } else {
            Err(AddressError::BadAddressLiteral)
        };
    }
    for label in d.split('.') {
        if label.is_empty() {
            return Err(AddressError::DomainLabelEmpty);
        }
        if label.len() > MAX_LABEL {
            return Err(AddressError::DomainLabelTooLong);
        }
        if let Some(c) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || is_utf8_text(c)))
        {
            return Err(AddressError::DomainInvalidChar(c));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(AddressError::DomainLabelHyphen);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
