//! Addresses out of RFC 5322 address lists (`To:`, `Cc:`, `Bcc:` and the
//! recipient words of the command line): `a@b`, `Name <a@b>`,
//! `"Last, First" <a@b>`, `a@b (comment)`, groups `team: a@b, c@d;`.
//! Only the addr-specs are kept; display names, comments and group names
//! are dropped. A bare local part (`root`) gets `@<hostname>`, as Postfix's
//! `append_at_myorigin` does. Each address is then checked by
//! [`Mailbox::parse`].

use postrelay_smtp::address::Mailbox;

/// Extracts and checks the addresses of `list`; `Err` names the bad one.
pub fn addresses(list: &str, hostname: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for raw in split(list) {
        let with_domain = if has_unquoted_at(&raw) {
            raw.clone()
        } else {
            format!("{raw}@{hostname}")
        };
        let mailbox =
            Mailbox::parse(&with_domain).map_err(|e| format!("bad address {raw:?}: {e}"))?;
        out.push(mailbox.to_string());
    }
    Ok(out)
}

/// The addr-spec of every mailbox in the list, unparsed.
fn split(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut plain = String::new();
    let mut angle: Option<String> = None;
    let mut chars = list.chars().peekable();
    let mut finish = |plain: &mut String, angle: &mut Option<String>| {
        let addr = match angle.take() {
            Some(a) => strip_route(a.trim()).to_string(),
            None => std::mem::take(plain),
        };
        plain.clear();
        if !addr.is_empty() {
            out.push(addr);
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // A quoted string, kept as written (part of a local part,
                // or of a display name that the angle address replaces).
                plain.push('"');
                while let Some(q) = chars.next() {
                    plain.push(q);
                    match q {
                        '\\' => plain.extend(chars.next()),
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '(' => skip_comment(&mut chars),
            '<' => {
                let mut a = String::new();
                for q in chars.by_ref() {
                    if q == '>' {
                        break;
                    }
                    a.push(q);
                }
                angle = Some(a);
            }
            '[' => {
                plain.push('[');
                for q in chars.by_ref() {
                    plain.push(q);
                    if q == ']' {
                        break;
                    }
                }
            }
            // A group's name ends at the colon; its members follow.
            ':' => plain.clear(),
            ',' | ';' => finish(&mut plain, &mut angle),
            c if c.is_whitespace() => {}
            c => plain.push(c),
        }
    }
    finish(&mut plain, &mut angle);
    out
}

/// Skips a (possibly nested) comment whose `(` was consumed.
fn skip_comment(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    let mut depth = 1;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// `@a,@b:user@c` → `user@c` (source routes are obsolete).
fn strip_route(a: &str) -> &str {
    if a.starts_with('@') {
        a.split_once(':').map_or(a, |(_, rest)| rest)
    } else {
        a
    }
}

fn has_unquoted_at(s: &str) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        match (c, escaped) {
            (_, true) => escaped = false,
            ('\\', false) => escaped = quoted,
            ('"', false) => quoted = !quoted,
            ('@', false) if !quoted => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_addr_specs() {
        let cases: &[(&str, &[&str])] = &[
            ("a@b.example", &["a@b.example"]),
            ("root", &["root@relay.test"]),
            (
                "Alice <a@b.example>, bob@c.example (Bob)",
                &["a@b.example", "bob@c.example"],
            ),
            ("\"Last, First\" <lf@x.example>", &["lf@x.example"]),
            (
                "team: a@x.example, <b@y.example>;, c@z.example",
                &["a@x.example", "b@y.example", "c@z.example"],
            ),
            ("undisclosed-recipients:;", &[]),
            ("<@route.example:u@d.example>", &["u@d.example"]),
            ("\"john doe\"@x.example", &["\"john doe\"@x.example"]),
            ("u@[IPv6:2001:db8::1]", &["u@[IPv6:2001:db8::1]"]),
            ("a@b.example (a (nested) comment), ,", &["a@b.example"]),
        ];
        for (input, want) in cases {
            assert_eq!(addresses(input, "relay.test").unwrap(), *want, "{input}");
        }
    }

    #[test]
    fn refuses_junk() {
        for bad in ["a@", "a@b@c", "a b@c\u{7f}", "@x"] {
            assert!(addresses(bad, "relay.test").is_err(), "{bad}");
        }
    }
}
