//! Making values safe for one mail log line, and Postfix's delay numbers.
//! Values that need nothing (plain ASCII text, by far the usual case) are
//! borrowed, not copied.
//!
//! Not for: the shape of the lines (`MailLog`).

use std::borrow::Cow;
use std::fmt::Write;
use std::time::Duration;

/// Makes client-supplied text safe for a one-line log: control characters
/// become `?`, so a CR/LF in an address can never start a forged line.
pub fn clean(s: &str) -> String {
    cleaned(s).into_owned()
}

/// [`clean`], borrowed when nothing changes.
pub(super) fn cleaned(s: &str) -> Cow<'_, str> {
    replaced(s, &[])
}

/// [`clean`], and also no `,` or space: for `relay=` and `dsn=`, values in
/// the comma-separated list of a delivery line that pflogsumm reads up to
/// the next comma.
pub(super) fn field(s: &str) -> Cow<'_, str> {
    replaced(s, &[',', ' '])
}

/// [`clean`], and also no `<` or `>`: for addresses inside `to=<…>` and
/// `from=<…>`, which pflogsumm reads up to the first `>`. (Only a quoted
/// local part can hold these; such an address is logged with `?`.)
pub(super) fn address(s: &str) -> Cow<'_, str> {
    replaced(s, &['<', '>'])
}

/// `s` with every control character and every one of `also` as `?`.
fn replaced<'a>(s: &'a str, also: &[char]) -> Cow<'a, str> {
    // Printable ASCII without any of `also` needs nothing; anything else
    // (controls, and all non-ASCII, C1 controls among it) takes the
    // character-by-character path.
    let plain = s
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !also.contains(&char::from(b)));
    if plain {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() || also.contains(&c) {
                    '?'
                } else {
                    c
                }
            })
            .collect(),
    )
}

/// Formats a delay as Postfix does (`format_tv` with 2 significant digits
/// and at most 2 decimals): `0.12`, `0.5`, `0`, `1.2`, `12`, `4000`. The
/// value is rounded half up to 0.01 s below 1 s, to 0.1 s below 10 s and to
/// whole seconds above; trailing zeros are dropped.
pub fn format_delay(d: Duration) -> String {
    let mut out = String::new();
    write_delay(&mut out, d);
    out
}

/// [`format_delay`], appended to `out`. In whole seconds and
/// microseconds (`u64`): 128-bit division costs more than the rest of
/// the number together.
pub(super) fn write_delay(out: &mut String, d: Duration) {
    let resolution: u64 = match d.as_secs() {
        0 => 10_000,
        1..=9 => 100_000,
        _ => 1_000_000,
    };
    // At most 1_000_000: the fraction rounded up makes a whole second.
    let fraction = (u64::from(d.subsec_micros()) + resolution / 2) / resolution * resolution;
    let carry = fraction / 1_000_000;
    // Hundredths: the resolution is at least 0.01 s.
    let cents = fraction % 1_000_000 / 10_000;
    let _ = match d.as_secs().checked_add(carry) {
        Some(secs) => write_seconds(out, secs, cents),
        None => write_seconds(out, u128::from(u64::MAX) + 1, cents),
    };
}

/// `secs`, and `cents` hundredths unless zero, without trailing zeros.
fn write_seconds(out: &mut String, secs: impl std::fmt::Display, cents: u64) -> std::fmt::Result {
    match (cents, cents % 10) {
        (0, _) => write!(out, "{secs}"),
        (_, 0) => write!(out, "{secs}.{}", cents / 10),
        _ => write!(out, "{secs}.{cents:02}"),
    }
}
