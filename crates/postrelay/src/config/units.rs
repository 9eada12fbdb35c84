//! Value syntaxes shared by several settings: byte sizes, durations, listen
//! addresses, CIDR networks, and the words of `tls` and `security`.
//!
//! Parsing is strict and every error says what to write instead. Formatting
//! produces text that the parser reads back to exactly the same value, which
//! is what lets `Config::render` round-trip.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

const SIZE_HINT: &str = r#"write e.g. "25 MiB" or 26214400"#;
const DURATION_HINT: &str = r#"write e.g. "300s", "5m", "5d" or "2 days""#;
const LISTEN_HINT: &str = r#"write e.g. "127.0.0.1:25" or "[::1]:25""#;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Parses a byte size: a whole or decimal number, optionally followed by a
/// unit. `KiB`/`MiB`/`GiB`/`TiB` are powers of 1024, `kB`/`MB`/`GB`/`TB`
/// powers of 1000 (units are case-insensitive). Single-letter units such as
/// `25M` are refused because they are read both ways in the wild.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim_start());
    let not_a_size = || format!("not a size; {SIZE_HINT}");
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "b" | "byte" | "bytes" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => KIB,
        "mib" => MIB,
        "gib" => GIB,
        "tib" => TIB,
        u @ ("k" | "m" | "g" | "t") if !number.is_empty() => {
            let u = u.to_ascii_uppercase();
            return Err(format!(
                r#"the unit "{unit}" is ambiguous; write "{number} {u}iB" (powers of 1024) or "{number} {u}B" (powers of 1000)"#
            ));
        }
        _ => return Err(not_a_size()),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let well_formed = !int.is_empty()
        && !frac.contains('.')
        && (frac.len() < 19)
        && (frac.is_empty() != number.contains('.'));
    if !well_formed {
        return Err(not_a_size());
    }
    let too_large = || format!("too large; the largest size is {}", u64::MAX);
    let mantissa: u128 = format!("{int}{frac}").parse().map_err(|_| too_large())?;
    let scale = 10u128.pow(frac.len() as u32);
    let scaled = mantissa
        .checked_mul(u128::from(factor))
        .ok_or_else(too_large)?;
    if scaled % scale != 0 {
        return Err(format!("{t:?} is not a whole number of bytes"));
    }
    u64::try_from(scaled / scale).map_err(|_| too_large())
}

/// Formats a size as TOML value text: `"25 MiB"` when a binary unit fits
/// exactly, otherwise a plain integer of bytes.
pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, factor) in [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if bytes != 0 && bytes.is_multiple_of(factor) {
            return format!("\"{} {unit}\"", bytes / factor);
        }
    }
    if i64::try_from(bytes).is_ok() {
        bytes.to_string()
    } else {
        // TOML integers are signed 64-bit; larger values go in a string.
        format!("\"{bytes}\"")
    }
}

/// Parses a duration in humantime syntax ("300s", "5m", "1h 30m", "5d",
/// "2 days", "1w"). A bare `M` is refused: humantime reads it as months,
/// which nobody writing `5M` for a timeout means.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bare_month = t
        .split(|c: char| !c.is_ascii_alphabetic())
        .any(|unit| unit == "M");
    if bare_month {
        let why = r#""M" would mean months; write "min" for minutes or "months" for months"#;
        return Err(why.to_owned());
    }
    humantime::parse_duration(t).map_err(|e| format!("not a duration ({e}); {DURATION_HINT}"))
}

/// Formats a duration as the largest single unit that represents it exactly
/// ("5m", "4000s", "5d"), falling back to humantime's compound form for
/// sub-second values.
pub(crate) fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        return humantime::format_duration(d).to_string();
    }
    let secs = d.as_secs();
    for (unit, factor) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs != 0 && secs.is_multiple_of(factor) {
            return format!("{}{unit}", secs / factor);
        }
    }
    format!("{secs}s")
}

/// A byte size as written in the file: a string with a unit or an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a size such as "25 MiB" or 26214400"#)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration as written in the file: always a string with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a duration such as "300s", "5m" or "5d""#)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    r#"a bare number has no unit; write e.g. "{v}s" for seconds"#
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration or `"off"`, as written in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DurationOrOff(pub Option<Duration>);

impl<'de> Deserialize<'de> for DurationOrOff {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationOrOff;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#""off" or a duration such as "4h""#)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationOrOff, E> {
                Err(E::custom(format!(
                    r#"a bare number has no unit; write e.g. "{v}h", or "off""#
                )))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<DurationOrOff, E> {
                Err(E::custom(r#"write "off", or a duration such as "4h""#))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationOrOff, E> {
                if v == "off" {
                    return Ok(DurationOrOff(None));
                }
                parse_duration(v)
                    .map(|d| DurationOrOff(Some(d)))
                    .map_err(|e| E::custom(format!(r#"{e}; or "off""#)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A keyword setting whose spelling is parsed by `T`'s [`FromStr`], so that
/// a near miss gets a tailored hint rather than serde's list of variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Word<T>(pub T);

impl<'de, T: FromStr<Err = String>> Deserialize<'de> for Word<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let parse = |s: &str| s.parse::<T>().map(Word);
        d.deserialize_str(StrVisitor(parse, "a string"))
    }
}

impl FromStr for super::TlsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        use super::TlsMode;
        let all = [TlsMode::Auto, TlsMode::StartTls, TlsMode::Implicit];
        if let Some(m) = all.into_iter().find(|m| m.as_str() == s) {
            return Ok(m);
        }
        let hint = match s.to_ascii_lowercase().as_str() {
            "wrappermode" | "wrapper" | "smtps" | "ssl" | "tls" | "submissions" => {
                r#"; for TLS from the first byte (Postfix smtp_tls_wrappermode = yes, port 465) write "implicit""#
            }
            _ => "",
        };
        Err(format!(
            r#"unknown TLS mode; write "auto", "starttls" or "implicit"{hint}"#
        ))
    }
}

impl FromStr for super::Security {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        use super::Security;
        let all = [
            Security::Verify,
            Security::Encrypt,
            Security::May,
            Security::None,
        ];
        if let Some(m) = all.into_iter().find(|m| m.as_str() == s) {
            return Ok(m);
        }
        let hint = match s.to_ascii_lowercase().as_str() {
            "secure" => {
                r#"; postrelay's "verify" checks the certificate's chain and name, as Postfix's "secure" does"#
            }
            "dane" | "dane-only" | "fingerprint" => {
                r#"; this Postfix level is not supported: "verify" checks the certificate against trusted CAs (set ca_file for a private CA)"#
            }
            _ => "",
        };
        Err(format!(
            r#"unknown security level; write "verify", "encrypt", "may" or "none"{hint}"#
        ))
    }
}

/// A listen address as written in the file: `"ip:port"` or `"[ipv6]:port"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ListenAddr(pub SocketAddr);

pub(crate) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if text.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "the port is missing ({LISTEN_HINT}; IPv6 addresses go in brackets)"
        ));
    }
    let host = text.rsplit_once(':').map_or(text, |(host, _)| host);
    let host_is_ip = host.parse::<IpAddr>().is_ok()
        || (host.starts_with('[') && host.ends_with(']'))
        || host.is_empty();
    if !host_is_ip {
        return Err(format!(
            "host names are not accepted here, only IP addresses; {LISTEN_HINT}"
        ));
    }
    if text.contains(':') && !text.ends_with(':') && host.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "the port must be a number from 1 to 65535; {LISTEN_HINT}"
        ));
    }
    Err(format!("not an address and port; {LISTEN_HINT}"))
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let parse = |s: &str| parse_listen(s).map(ListenAddr);
        d.deserialize_str(StrVisitor(parse, r#"an address such as "127.0.0.1:25""#))
    }
}

/// Parses a string inside the visitor, so that the deserializer attaches
/// the value's own span to the error (not the enclosing array's).
struct StrVisitor<F>(F, &'static str);

impl<T, E: fmt::Display, F: FnOnce(&str) -> Result<T, E>> Visitor<'_> for StrVisitor<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<Er: de::Error>(self, v: &str) -> Result<T, Er> {
        (self.0)(v).map_err(Er::custom)
    }
}

/// An IP network: an address and a prefix length, with no host bits set.
///
/// IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) are stored as the IPv4
/// network they denote, and [`Cidr::contains`] maps peers the same way, so
/// an IPv4 client reaching a dual-stack socket matches IPv4 entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string is not a [`Cidr`]; the text says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CidrError(String);

impl Cidr {
    /// The network address (host bits all zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length: 0–32 for IPv4, 0–128 for IPv6.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside this network. An IPv4-mapped IPv6 address
    /// (`::ffff:127.0.0.1`) is treated as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (start, end) = self.range();
        let (family_v4, value) = bits(canonical(ip));
        family_v4 == self.addr.is_ipv4() && (start..=end).contains(&value)
    }

    /// First and last address of the network as integers of its family.
    pub(crate) fn range(&self) -> (u128, u128) {
        let (_, start) = bits(self.addr);
        (start, start | self.host_mask())
    }

    /// The host part of the address as a bit mask.
    fn host_mask(&self) -> u128 {
        let width: u32 = if self.addr.is_ipv4() { 32 } else { 128 };
        let host_bits = width - u32::from(self.prefix);
        u128::MAX.checked_shr(128 - host_bits).unwrap_or(0)
    }
}

/// The address family (true for IPv4) and the address as an integer.
fn bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => (true, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (false, u128::from(v6)),
    }
}

/// `::ffff:a.b.c.d` becomes `a.b.c.d`. Deliberately not `to_ipv4()`, which
/// would also turn `::1` into `0.0.0.1`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let hint = r#"write e.g. "10.0.0.0/8", "fd00::/8" or a single address"#;
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| CidrError(format!("not an IP network; {hint}")))?;
        let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => width,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= width && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(CidrError(format!(
                        "the prefix length must be a number from 0 to {width}; {hint}"
                    )));
                }
            },
        };
        let mut cidr = Cidr { addr, prefix };
        if let (IpAddr::V6(v6), true) = (addr, prefix >= 96)
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            cidr = Cidr {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            };
        }
        let (is_v4, value) = bits(cidr.addr);
        let host_mask = cidr.host_mask();
        if value & host_mask != 0 {
            let width = if is_v4 { 32 } else { 128 };
            let net = Cidr {
                addr: from_bits(is_v4, value & !host_mask),
                prefix: cidr.prefix,
            };
            let host = Cidr {
                addr: cidr.addr,
                prefix: width,
            };
            return Err(CidrError(format!(
                r#"host bits are set; write the network address "{net}", or "{host}" for the single host"#
            )));
        }
        Ok(cidr)
    }
}

fn from_bits(is_v4: bool, value: u128) -> IpAddr {
    if is_v4 {
        IpAddr::V4(Ipv4Addr::from(value as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(value))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expecting = r#"a network such as "10.0.0.0/8" or "fd00::/8""#;
        d.deserialize_str(StrVisitor(str::parse::<Cidr>, expecting))
    }
}

/// Whether the networks of one family, taken together, contain every
/// address of that family (e.g. `0.0.0.0/1` plus `128.0.0.0/1`).
pub(crate) fn covers_family(nets: &[Cidr], ipv4: bool) -> bool {
    let last = if ipv4 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    let mut ranges: Vec<(u128, u128)> = nets
        .iter()
        .filter(|n| n.addr.is_ipv4() == ipv4)
        .map(Cidr::range)
        .collect();
    ranges.sort_unstable();
    let mut next = 0u128;
    for (start, end) in ranges {
        if start > next {
            return false;
        }
        if end == last {
            return true;
        }
        next = next.max(end + 1);
    }
    false
}
