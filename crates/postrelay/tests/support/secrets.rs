//! Checks that a password appears nowhere, in any encoding it travels in:
//! as typed, as the base64 of an AUTH PLAIN response (`authzid\0user\0pass`,
//! with and without the authorization identity), and as the base64 of an
//! AUTH LOGIN password. Not a redaction implementation: the base64 here is
//! written independently of the code under test, so that a broken encoder
//! there cannot make the check vacuous.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every form in which `password` (of `user`) may cross the wire.
pub fn encodings(user: &str, password: &str) -> Vec<(String, String)> {
    vec![
        ("the password".into(), password.to_owned()),
        (
            "the AUTH PLAIN response".into(),
            base64(format!("\0{user}\0{password}").as_bytes()),
        ),
        (
            "the AUTH PLAIN response with authzid".into(),
            base64(format!("{user}\0{user}\0{password}").as_bytes()),
        ),
        (
            "the AUTH LOGIN password".into(),
            base64(password.as_bytes()),
        ),
    ]
}

/// Panics when `text` (named `place`: a log, a transcript, an error)
/// holds `password` in any of its [`encodings`].
pub fn assert_absent(place: &str, text: &str, user: &str, password: &str) {
    for (what, needle) in encodings(user, password) {
        assert!(
            !text.contains(&needle),
            "{what} ({needle:?}) is in {place}:\n{text}"
        );
    }
}
