//! Rewriting the author addresses of a message's header section, for mail
//! whose envelope sender is rewritten on its way to a relay (Postfix's
//! `smtp_generic_maps` applied to `From:` and `Sender:`).
//!
//! Only the address inside each mailbox changes; display names, comments,
//! groups and folding stay as written:
//!
//! ```text
//! From: "Cron Daemon" <root@myhost>        From: "Cron Daemon" <alerts@example.com>
//! From: root@myhost (Cron Daemon)     →    From: alerts@example.com (Cron Daemon)
//! ```
//!
//! The field as it was is kept just above the new one, as
//! `X-Original-From:` (or `X-Original-Sender:`), with its folding intact.
//! A field that cannot be parsed (an unterminated quote, comment or `<`) is
//! left exactly as it was and reported; nothing is ever guessed. Every
//! line of the result ends in CRLF (the empty line that ends the header
//! section too; what follows it is copied verbatim); a bare CR or a NUL
//! inside a field becomes a space, so no value can start a new field
//! (header injection).
//!
//! A `From:` with several mailboxes (allowed with a `Sender:`, RFC 5322
//! §3.6.2): [`rewrite_addresses`] rewrites each mailbox that its function
//! maps (so `root@myhost, alice@example.com` only loses `root@myhost`),
//! and [`rewrite_from_header`] replaces the first mailbox only, the
//! conventional main author, leaving the others as they are.

use std::ops::Range;

/// Longest line (without CRLF) written, as RFC 5322 §2.1.1 requires.
const MAX_LINE: usize = 998;

/// The result of a rewrite.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderRewrite {
    /// The new header section, every line ending in CRLF.
    pub header: Vec<u8>,
    /// Each address replaced.
    pub changes: Vec<Change>,
    /// What was left alone and why (no `From:` field, a field that cannot
    /// be parsed …), for a log line.
    pub warnings: Vec<String>,
}

/// One replaced address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// `From` or `Sender`.
    pub field: &'static str,
    pub old: String,
    pub new: String,
}

/// Replaces the address of the first mailbox of `From:` (and of `Sender:`,
/// if present) with `new_from`, keeping the old fields as
/// `X-Original-From:` / `X-Original-Sender:`. A header without `From:`, or
/// whose fields cannot be parsed, is returned unchanged (with CRLF line
/// ends); [`rewrite_from_header_report`] says why.
pub fn rewrite_from_header(header_section: &[u8], new_from: &str) -> Vec<u8> {
    rewrite_from_header_report(header_section, new_from).header
}

/// [`rewrite_from_header`], with what was done.
pub fn rewrite_from_header_report(header_section: &[u8], new_from: &str) -> HeaderRewrite {
    rewrite(header_section, &mut |index, _| {
        (index == 0).then(|| new_from.to_owned())
    })
}

/// Rewrites each mailbox of `From:` and `Sender:` whose address `rewrite`
/// maps to a new one (e.g. [`Router::rewrite_sender`](super::Router::rewrite_sender)).
/// `rewrite` receives the address without display name, comments or white
/// space (`root@myhost`, or `root` for a bare name).
pub fn rewrite_addresses(
    header_section: &[u8],
    mut rewrite: impl FnMut(&str) -> Option<String>,
) -> HeaderRewrite {
    self::rewrite(header_section, &mut |_, address| rewrite(address))
}

/// One field: its lines without line ends.
struct Field {
    lines: Vec<Vec<u8>>,
}

fn rewrite(
    header_section: &[u8],
    decide: &mut dyn FnMut(usize, &str) -> Option<String>,
) -> HeaderRewrite {
    let mut out = HeaderRewrite::default();
    let (fields, rest) = split_fields(header_section);
    let mut froms = 0;
    for field in &fields {
        let name = field_name(&field.lines[0]);
        let which = match name {
            Some(n) if n.eq_ignore_ascii_case(b"from") => "From",
            Some(n) if n.eq_ignore_ascii_case(b"sender") => "Sender",
            _ => {
                emit(&mut out.header, &field.lines);
                continue;
            }
        };
        if which == "From" {
            froms += 1;
        }
        match rewrite_field(field, which, decide, &mut out) {
            Some(lines) => emit(&mut out.header, &lines),
            None => emit(&mut out.header, &field.lines),
        }
    }
    if froms == 0 {
        out.warnings
            .push("the message has no From: field; nothing rewritten there".to_owned());
    } else if froms > 1 {
        out.warnings.push(format!(
            "the message has {froms} From: fields (RFC 5322 allows one); each was rewritten"
        ));
    }
    if let Some(rest) = rest {
        out.header.extend_from_slice(b"\r\n");
        out.header.extend_from_slice(rest);
    }
    out
}

/// The fields of the header section (continuation lines attached to their
/// field; a stray line is a field of its own and copied as is), and what
/// follows the empty line that ends the header section (copied verbatim),
/// if there is one.
fn split_fields(section: &[u8]) -> (Vec<Field>, Option<&[u8]>) {
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = 0;
    while pos < section.len() {
        let end = section[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(section.len(), |i| pos + i);
        let raw = &section[pos..end];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            return (fields, Some(section.get(end + 1..).unwrap_or_default()));
        }
        // A bare CR or a NUL inside a line could end the field for a less
        // careful reader: neutralise it.
        let line: Vec<u8> = line
            .iter()
            .map(|&b| if b == b'\r' || b == 0 { b' ' } else { b })
            .collect();
        let continues = matches!(line[0], b' ' | b'\t');
        match fields.last_mut() {
            Some(f) if continues => f.lines.push(line),
            _ => fields.push(Field { lines: vec![line] }),
        }
        pos = end + 1;
    }
    (fields, None)
}

/// The name of a field (`From` in `From : …`), if the line has a colon.
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = line[..colon].trim_ascii_end();
    let printable = name.iter().all(|&b| (0x21..=0x7e).contains(&b));
    (!name.is_empty() && printable).then_some(name)
}

fn emit(out: &mut Vec<u8>, lines: &[Vec<u8>]) {
    for l in lines {
        out.extend_from_slice(l);
        out.extend_from_slice(b"\r\n");
    }
}

/// The new lines of a `From:`/`Sender:` field (`X-Original-…` first), or
/// `None` to keep it as it is.
fn rewrite_field(
    field: &Field,
    which: &'static str,
    decide: &mut dyn FnMut(usize, &str) -> Option<String>,
    out: &mut HeaderRewrite,
) -> Option<Vec<Vec<u8>>> {
    // The field joined with CRLF, so that byte ranges span its lines.
    let joined = field.lines.join(&b"\r\n"[..]);
    let colon = joined.iter().position(|&b| b == b':')? + 1;
    let value = &joined[colon..];
    let mailboxes = match mailboxes(value) {
        Ok(m) => m,
        Err(why) => {
            out.warnings.push(format!(
                "{which}: field left unchanged: {why}: {}",
                printable(value)
            ));
            return None;
        }
    };
    if mailboxes.is_empty() {
        out.warnings
            .push(format!("{which}: field holds no address; left unchanged"));
        return None;
    }
    let mut new_value = value.to_vec();
    let mut changes = Vec::new();
    // From the last mailbox backwards, so that earlier ranges stay valid.
    let decided: Vec<(Range<usize>, String, String)> = mailboxes
        .into_iter()
        .enumerate()
        .filter_map(|(i, m)| decide(i, &m.address).map(|new| (m.range, m.address, new)))
        .collect();
    for (range, old, new) in decided.into_iter().rev() {
        if !safe_address(&new) {
            out.warnings.push(format!(
                "{which}: {new:?} is not a plain address; {old:?} left unchanged"
            ));
            continue;
        }
        if old == new {
            continue;
        }
        new_value.splice(range, new.bytes());
        changes.push(Change {
            field: which,
            old,
            new,
        });
    }
    if changes.is_empty() {
        return None;
    }
    changes.reverse();

    let mut new_field = joined[..colon].to_vec();
    new_field.extend_from_slice(&new_value);
    let new_lines: Vec<Vec<u8>> = split_crlf(&new_field);
    let longest_before = field.lines.iter().map(Vec::len).max().unwrap_or(0);
    if new_lines
        .iter()
        .any(|l| l.len() > MAX_LINE.max(longest_before))
    {
        out.warnings.push(format!(
            "{which}: field left unchanged: the new address would make a line longer than {MAX_LINE} octets"
        ));
        return None;
    }
    let mut lines = original_copy(which, value);
    lines.extend(new_lines);
    out.changes.extend(changes);
    Some(lines)
}

/// `X-Original-From:` with the old value, folded as it was. If the longer
/// name would push the first line past the limit, the value starts on a
/// continuation line.
fn original_copy(which: &str, value: &[u8]) -> Vec<Vec<u8>> {
    let name = format!("X-Original-{which}:");
    let mut lines = split_crlf(value);
    if name.len() + lines[0].len() <= MAX_LINE {
        let mut first = name.into_bytes();
        first.extend_from_slice(&lines[0]);
        lines[0] = first;
        return lines;
    }
    let first = lines[0].trim_ascii_start().to_vec();
    lines[0] = [b" ".as_slice(), &first].concat();
    lines.insert(0, name.into_bytes());
    lines
}

fn split_crlf(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\r' && bytes[i + 1] == b'\n' {
            lines.push(bytes[start..i].to_vec());
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    lines.push(bytes[start..].to_vec());
    lines
}

/// Whether `a` can be put into a header as it is: an address (quoted local
/// parts allowed) without line breaks or other control characters.
fn safe_address(a: &str) -> bool {
    !a.is_empty() && !a.chars().any(|c| c.is_control()) && postrelay_smtp::Mailbox::parse(a).is_ok()
}

/// A field value shown in a warning: one line, printable, shortened.
fn printable(value: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(value)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(79).collect::<String>())
    } else {
        s
    }
}

/// A mailbox found in an address list.
#[derive(Debug, PartialEq, Eq)]
struct Found {
    /// Where its address is: inside the `<>` of an angle address, or the
    /// bare address itself.
    range: Range<usize>,
    /// The address without white space, comments or source route.
    address: String,
}

/// The mailboxes of an RFC 5322 `address-list` (groups included), with
/// the ranges of their addresses in `v`.
fn mailboxes(v: &[u8]) -> Result<Vec<Found>, &'static str> {
    #[derive(Default)]
    struct Item {
        /// First and last byte of the bare content (outside `<>`).
        bare: Option<(usize, usize)>,
        /// `<` position while open.
        open: Option<usize>,
        /// The content of a closed `<>`.
        angle: Option<Range<usize>>,
    }
    fn finish(item: Item, v: &[u8], out: &mut Vec<Found>) {
        let range = match (item.angle, item.bare) {
            (Some(r), _) => r,
            (None, Some((a, b))) => a..b + 1,
            (None, None) => return,
        };
        let address = normalize(&v[range.clone()]);
        out.push(Found { range, address });
    }

    let mut out = Vec::new();
    let mut item = Item::default();
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        let start = i;
        match b {
            b'"' => {
                i = skip_quoted(v, i)?;
                if item.open.is_none() {
                    mark(&mut item.bare, start, i);
                }
            }
            b'(' => {
                i = skip_comment(v, i)?;
            }
            b'<' if item.open.is_some() => return Err("a '<' inside <…>"),
            b'<' if item.angle.is_some() => return Err("two <…> in one mailbox"),
            b'<' => item.open = Some(i),
            b'>' => {
                let Some(open) = item.open.take() else {
                    return Err("a '>' without its '<'");
                };
                item.angle = Some(open + 1..i);
            }
            _ if item.open.is_some() => {}
            b',' | b';' => finish(std::mem::take(&mut item), v, &mut out),
            // A group's display name: what came before is not a mailbox.
            b':' => item = Item::default(),
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => mark(&mut item.bare, i, i),
        }
        i += 1;
    }
    if item.open.is_some() {
        return Err("a '<' without its '>'");
    }
    finish(item, v, &mut out);
    Ok(out)
}

fn mark(bare: &mut Option<(usize, usize)>, first: usize, last: usize) {
    *bare = Some(match *bare {
        Some((a, _)) => (a, last),
        None => (first, last),
    });
}

/// The index of the closing quote of the quoted string starting at `i`.
fn skip_quoted(v: &[u8], mut i: usize) -> Result<usize, &'static str> {
    i += 1;
    while i < v.len() {
        match v[i] {
            b'\\' => i += 2,
            b'"' => return Ok(i),
            _ => i += 1,
        }
    }
    Err("a '\"' without its closing '\"'")
}

/// The index of the `)` closing the (nested) comment starting at `i`.
fn skip_comment(v: &[u8], mut i: usize) -> Result<usize, &'static str> {
    let mut depth = 0usize;
    while i < v.len() {
        match v[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err("a '(' without its ')'")
}

/// An address as written in a header, without folding white space,
/// comments and source route (`<@a,@b:user@d>`).
fn normalize(raw: &[u8]) -> String {
    let mut s = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'"' => {
                let end = skip_quoted(raw, i).unwrap_or(raw.len() - 1);
                s.extend_from_slice(&raw[i..=end]);
                i = end;
            }
            b'(' => i = skip_comment(raw, i).unwrap_or(raw.len() - 1),
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b => s.push(b),
        }
        i += 1;
    }
    let s = String::from_utf8_lossy(&s).into_owned();
    match s.strip_prefix('@').and_then(|r| r.rsplit_once(':')) {
        Some((_, addr)) => addr.to_owned(),
        None => s,
    }
}
