//! SASL messages for SMTP AUTH (RFC 4954): building the client responses for
//! PLAIN (RFC 4616), LOGIN, XOAUTH2 and OAUTHBEARER (RFC 7628), decoding
//! server challenges, and
//! decoding a PLAIN response on the server side. It does not verify
//! credentials or run the AUTH exchange.
//!
//! Credentials pass through here as plain `&str`/`String`; no type in this
//! module stores them, and [`SaslError`] never includes them.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};

/// Longest authzid, authcid or password accepted in PLAIN (RFC 4616 §2).
const MAX_PLAIN_FIELD: usize = 255;

/// Why a SASL message could not be decoded. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*` to cancel the exchange (RFC 4954 §4).
    Cancelled,
    /// Not valid base64.
    Base64,
    /// The decoded text is not UTF-8.
    Utf8,
    /// The decoded message does not have the mechanism's shape.
    Malformed(&'static str),
}

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaslError::Cancelled => f.write_str("authentication cancelled by the client"),
            SaslError::Base64 => f.write_str("invalid base64"),
            SaslError::Utf8 => f.write_str("credentials are not valid UTF-8"),
            SaslError::Malformed(what) => write!(f, "malformed SASL message: {what}"),
        }
    }
}

impl std::error::Error for SaslError {}

/// PLAIN initial response: base64 of `authzid NUL user NUL pass`. Pass `""`
/// as `authzid` to act as `user` itself.
pub fn plain(authzid: &str, user: &str, pass: &str) -> String {
    let mut msg = Vec::with_capacity(authzid.len() + user.len() + pass.len() + 2);
    msg.extend_from_slice(authzid.as_bytes());
    msg.push(0);
    msg.extend_from_slice(user.as_bytes());
    msg.push(0);
    msg.extend_from_slice(pass.as_bytes());
    STANDARD.encode(msg)
}

/// LOGIN response to the `Username:` challenge: base64 of the user name.
pub fn login_user(user: &str) -> String {
    STANDARD.encode(user)
}

/// LOGIN response to the `Password:` challenge: base64 of the password.
pub fn login_pass(pass: &str) -> String {
    STANDARD.encode(pass)
}

/// XOAUTH2 initial response: base64 of
/// `user=USER\x01auth=Bearer TOKEN\x01\x01`.
pub fn xoauth2(user: &str, token: &str) -> String {
    STANDARD.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

/// OAUTHBEARER initial response (RFC 7628 §3.1): base64 of the GS2 header
/// `n,a=USER,` then `host=HOST`, `port=PORT` and `auth=Bearer TOKEN`, each
/// ended by `\x01`, and a final `\x01`. In the user name, `,` and `=`
/// are written `=2C` and `=3D` (RFC 5801 §4).
pub fn oauthbearer(user: &str, host: &str, port: u16, token: &str) -> String {
    let user = user.replace('=', "=3D").replace(',', "=2C");
    STANDARD.encode(format!(
        "n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
    ))
}

/// The client's answer to the `334` error challenge of OAUTHBEARER (RFC
/// 7628 §3.2.3: a single `\x01`), after which the server sends its final
/// failure reply.
pub const OAUTHBEARER_ABORT: &str = "AQ==";

/// Decodes the base64 text of a `334` challenge (surrounding spaces
/// ignored; padding optional). An empty challenge decodes to nothing.
pub fn decode_challenge(s: &str) -> Result<Vec<u8>, SaslError> {
    STANDARD_PAD_INDIFFERENT
        .decode(s.trim())
        .map_err(|_| SaslError::Base64)
}

/// Whether a client's response line is the `*` that cancels AUTH.
pub fn is_cancel(s: &str) -> bool {
    s.trim() == "*"
}

/// Decodes a PLAIN response (server side) into `(authzid, authcid, password)`.
///
/// Exactly two NULs are required; authcid and password must be non-empty,
/// every field at most 255 octets and UTF-8. `*` yields
/// [`SaslError::Cancelled`]; `=` (an empty initial response) is malformed
/// for PLAIN.
pub fn decode_plain(s: &str) -> Result<(String, String, String), SaslError> {
    let s = s.trim();
    if s == "*" {
        return Err(SaslError::Cancelled);
    }
    if s == "=" || s.is_empty() {
        return Err(SaslError::Malformed("empty response"));
    }
    let bytes = STANDARD_PAD_INDIFFERENT
        .decode(s)
        .map_err(|_| SaslError::Base64)?;
    let mut fields = bytes.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(pass), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SaslError::Malformed(
            "expected authzid NUL authcid NUL password",
        ));
    };
    if authcid.is_empty() || pass.is_empty() {
        return Err(SaslError::Malformed("empty user name or password"));
    }
    if [authzid, authcid, pass]
        .iter()
        .any(|f| f.len() > MAX_PLAIN_FIELD)
    {
        return Err(SaslError::Malformed("field longer than 255 octets"));
    }
    let text = |f: &[u8]| String::from_utf8(f.to_vec()).map_err(|_| SaslError::Utf8);
    Ok((text(authzid)?, text(authcid)?, text(pass)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages() {
        // RFC 4616 §4 example: "\0tim\0tanstaaftanstaaf".
        assert_eq!(
            plain("", "tim", "tanstaaftanstaaf"),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
        assert_eq!(login_user("user"), "dXNlcg==");
        assert_eq!(login_pass("pass"), "cGFzcw==");
        assert_eq!(
            decode_challenge(&xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"))
                .unwrap(),
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
    }

    #[test]
    fn oauthbearer_message() {
        // RFC 7628 §4.1's example, with its host and port.
        let got = decode_challenge(&oauthbearer(
            "user@example.com",
            "server.example.com",
            143,
            "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
        ))
        .unwrap();
        assert_eq!(
            got,
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
        // A user name with the two characters the GS2 header escapes.
        let got = decode_challenge(&oauthbearer("a,b=c", "h", 587, "t")).unwrap();
        assert_eq!(
            got,
            b"n,a=a=2Cb=3Dc,\x01host=h\x01port=587\x01auth=Bearer t\x01\x01"
        );
        assert_eq!(decode_challenge(OAUTHBEARER_ABORT).unwrap(), b"\x01");
    }

    #[test]
    fn challenges() {
        let cases: &[(&str, Result<&[u8], SaslError>)] = &[
            ("VXNlcm5hbWU6", Ok(b"Username:")),
            (" UGFzc3dvcmQ6 ", Ok(b"Password:")),
            ("", Ok(b"")),
            ("dXNlcg", Ok(b"user")),
            ("dXNlcg==", Ok(b"user")),
            ("not base64!", Err(SaslError::Base64)),
        ];
        for (input, expected) in cases {
            assert_eq!(
                decode_challenge(input),
                expected.clone().map(<[u8]>::to_vec),
                "{input:?}"
            );
        }
    }

    #[test]
    fn server_plain() {
        let ok = |a: &str, u: &str, p: &str| Ok((a.to_owned(), u.to_owned(), p.to_owned()));
        let long = "x".repeat(256);
        type Plain = Result<(String, String, String), SaslError>;
        let cases: Vec<(String, Plain)> = vec![
            (plain("", "tim", "secret"), ok("", "tim", "secret")),
            (plain("admin", "tim", "s e"), ok("admin", "tim", "s e")),
            (plain("", "jöhn", "pässword"), ok("", "jöhn", "pässword")),
            ("*".into(), Err(SaslError::Cancelled)),
            ("=".into(), Err(SaslError::Malformed("empty response"))),
            ("%%%".into(), Err(SaslError::Base64)),
            (
                STANDARD.encode("tim\0secret"),
                Err(SaslError::Malformed(
                    "expected authzid NUL authcid NUL password",
                )),
            ),
            (
                STANDARD.encode("\0tim\0secret\0x"),
                Err(SaslError::Malformed(
                    "expected authzid NUL authcid NUL password",
                )),
            ),
            (
                plain("", "", "secret"),
                Err(SaslError::Malformed("empty user name or password")),
            ),
            (
                plain("", "tim", ""),
                Err(SaslError::Malformed("empty user name or password")),
            ),
            (
                plain("", "tim", &long),
                Err(SaslError::Malformed("field longer than 255 octets")),
            ),
            (STANDARD.encode(b"\0tim\0\xff"), Err(SaslError::Utf8)),
        ];
        for (input, expected) in cases {
            assert_eq!(decode_plain(&input), expected, "{input:?}");
        }
        assert!(is_cancel(" * "));
        assert!(!is_cancel("*x"));
    }
}
