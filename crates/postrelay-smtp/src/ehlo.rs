//! EHLO capabilities (RFC 5321 §4.1.1.1 and the extension RFCs): reading a
//! server's EHLO reply on the client side and writing the capability lines
//! on the server side. Which capabilities to offer is the daemon's decision.

use crate::reply::Reply;

/// The service extensions a server announces in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `PIPELINING` (RFC 2920).
    pub pipelining: bool,
    /// `SIZE [n]` (RFC 1870); `Some(0)` when announced without a limit.
    pub size: Option<u64>,
    /// `STARTTLS` (RFC 3207).
    pub starttls: bool,
    /// `AUTH` mechanisms (RFC 4954), uppercase, without duplicates.
    pub auth: Vec<String>,
    /// `8BITMIME` (RFC 6152).
    pub eight_bit_mime: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `ENHANCEDSTATUSCODES` (RFC 2034).
    pub enhanced_status_codes: bool,
    /// `CHUNKING` (RFC 3030).
    pub chunking: bool,
    /// `DSN` (RFC 3461).
    pub dsn: bool,
    /// Other extension lines, verbatim (e.g. `ETRN`, `VRFY`, `DELIVERBY 60`).
    pub other: Vec<String>,
}

impl Capabilities {
    /// Reads the capabilities from an EHLO reply (client side). The first
    /// line is the server's greeting and is skipped. The pre-RFC `AUTH=PLAIN
    /// LOGIN` form is merged into `auth`. A reply that is not 2xx yields no
    /// capabilities.
    pub fn from_ehlo_reply(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        if !reply.is_positive_completion() {
            return caps;
        }
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(first) = words.next() else {
                continue;
            };
            let (keyword, inline_arg) = match first.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (first, None),
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => {
                    let limit = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                    caps.size = Some(limit);
                }
                "STARTTLS" => caps.starttls = true,
                "AUTH" => {
                    for mech in inline_arg.into_iter().chain(words) {
                        let mech = mech.to_ascii_uppercase();
                        if !mech.is_empty() && !caps.auth.contains(&mech) {
                            caps.auth.push(mech);
                        }
                    }
                }
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "CHUNKING" => caps.chunking = true,
                "DSN" => caps.dsn = true,
                _ => caps.other.push(line.clone()),
            }
        }
        caps
    }

    /// Whether the server offers the SASL mechanism `mech` (case-insensitive).
    pub fn supports_auth(&self, mech: &str) -> bool {
        self.auth.iter().any(|m| m.eq_ignore_ascii_case(mech))
    }

    /// The capability lines for an EHLO reply (server side), without the
    /// greeting line, which the caller puts first. `AUTH` is omitted when no
    /// mechanism is offered.
    pub fn to_ehlo_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        self.each_ehlo_line(|line| lines.push(line.to_owned()));
        lines
    }

    /// The whole `250` EHLO reply, `greeting` first, appended to `out` (a
    /// connection's send buffer): what `Reply::multi(250, "", …).encode()`
    /// gives for `greeting` and [`Capabilities::to_ehlo_lines`], without a
    /// `String` per line.
    pub fn encode_ehlo_reply(&self, greeting: &str, out: &mut Vec<u8>) {
        // Each line is encoded as if it were the last ("250 …"); the
        // separator of every line but the last then becomes "-".
        let mut last = out.len();
        Reply::encode_parts(out, 250, "", &[greeting]);
        self.each_ehlo_line(|line| {
            out[last + 3] = b'-';
            last = out.len();
            Reply::encode_parts(out, 250, "", &[line]);
        });
    }

    /// Calls `f` with each capability line, in the order of
    /// [`Capabilities::to_ehlo_lines`].
    fn each_ehlo_line(&self, mut f: impl FnMut(&str)) {
        if self.pipelining {
            f("PIPELINING");
        }
        if let Some(n) = self.size {
            f(&format!("SIZE {n}"));
        }
        if self.starttls {
            f("STARTTLS");
        }
        if !self.auth.is_empty() {
            f(&format!("AUTH {}", self.auth.join(" ")));
        }
        let flags = [
            (self.enhanced_status_codes, "ENHANCEDSTATUSCODES"),
            (self.eight_bit_mime, "8BITMIME"),
            (self.dsn, "DSN"),
            (self.smtputf8, "SMTPUTF8"),
            (self.chunking, "CHUNKING"),
        ];
        for (offered, name) in flags {
            if offered {
                f(name);
            }
        }
        for line in &self.other {
            f(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::parse_reply;

    fn caps_of(wire: &str) -> Capabilities {
        let (reply, _) = parse_reply(wire.as_bytes(), 1000).unwrap().unwrap();
        Capabilities::from_ehlo_reply(&reply)
    }

    #[test]
    fn postfix_like_reply() {
        let c = caps_of(
            "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n\
             250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n\
             250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n\
             250 CHUNKING\r\n",
        );
        assert_eq!(
            c,
            Capabilities {
                pipelining: true,
                size: Some(10_240_000),
                starttls: true,
                auth: vec!["PLAIN".into(), "LOGIN".into()],
                eight_bit_mime: true,
                smtputf8: true,
                enhanced_status_codes: true,
                chunking: true,
                dsn: true,
                other: vec!["VRFY".into(), "ETRN".into()],
            }
        );
    }

    #[test]
    fn table() {
        let cases: &[(&str, Capabilities)] = &[
            ("250 mx.example.com\r\n", Capabilities::default()),
            (
                "250-mx\r\n250 size\r\n",
                Capabilities {
                    size: Some(0),
                    ..Default::default()
                },
            ),
            (
                "250-mx\r\n250 SIZE 0\r\n",
                Capabilities {
                    size: Some(0),
                    ..Default::default()
                },
            ),
            (
                "250-mx\r\n250 AUTH=login cram-md5\r\n",
                Capabilities {
                    auth: vec!["LOGIN".into(), "CRAM-MD5".into()],
                    ..Default::default()
                },
            ),
            (
                "250-mx\r\n250-starttls\r\n250 x-custom  arg\r\n",
                Capabilities {
                    starttls: true,
                    other: vec!["x-custom  arg".into()],
                    ..Default::default()
                },
            ),
            ("502 5.5.1 EHLO not supported\r\n", Capabilities::default()),
            ("250-mx\r\n250-\r\n250 8BITMIME\r\n", {
                Capabilities {
                    eight_bit_mime: true,
                    ..Default::default()
                }
            }),
        ];
        for (wire, expected) in cases {
            assert_eq!(caps_of(wire), *expected, "{wire:?}");
        }
        assert!(caps_of("250-mx\r\n250 AUTH PLAIN\r\n").supports_auth("plain"));
    }

    #[test]
    fn round_trip() {
        let caps = Capabilities {
            pipelining: true,
            size: Some(35_882_577),
            starttls: true,
            auth: vec!["PLAIN".into(), "XOAUTH2".into()],
            eight_bit_mime: true,
            smtputf8: true,
            enhanced_status_codes: true,
            chunking: false,
            dsn: true,
            other: vec!["ETRN".into(), "DELIVERBY 60".into()],
        };
        let mut lines = vec!["relay.example.org Hello".to_owned()];
        lines.extend(caps.to_ehlo_lines());
        let reply = Reply::multi(250, "", lines);
        let (parsed, _) = parse_reply(&reply.encode(), 1000).unwrap().unwrap();
        assert_eq!(Capabilities::from_ehlo_reply(&parsed), caps);
        // The reply encoded in place is the same bytes, after what the
        // buffer held.
        let mut out = b"220 queued\r\n".to_vec();
        caps.encode_ehlo_reply("relay.example.org Hello", &mut out);
        let expected = [&b"220 queued\r\n"[..], &reply.encode()].concat();
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expected)
        );
        let mut bare = Vec::new();
        Capabilities::default().encode_ehlo_reply("h", &mut bare);
        assert_eq!(String::from_utf8_lossy(&bare), "250 h\r\n");
        assert_eq!(
            Capabilities::from_ehlo_reply(&Reply::multi(250, "", ["h".to_owned()])),
            Capabilities::default()
        );
    }
}
