//! Checks of what intake made of a client's message, shared by the
//! intake tests: the `Received:` field, the client's bytes after it, and
//! the queue entry that `queue list --json` shows.

use serde_json::Value;

use super::daemon::Daemon;

/// Splits a spooled body into our `Received:` field and the rest, checking
/// the field's exact shape (RFC 5321 §4.4): `from` the EHLO name and the
/// client address, `by` our host name, `with` the protocol (RFC 3848 /
/// RFC 6531), the queue id, `for` the recipient when there is exactly one,
/// and an RFC 5322 date. Returns the date and everything after the field.
pub fn split_received(
    spooled: &[u8],
    helo: &str,
    proto: &str,
    id: &str,
    single_rcpt: Option<&str>,
) -> (String, Vec<u8>) {
    let mut head = format!(
        "Received: from {helo} ([127.0.0.1])\r\n\tby relay.test (postrelay) with {proto} id {id}"
    );
    match single_rcpt {
        Some(r) => head.push_str(&format!("\r\n\tfor <{r}>; ")),
        None => head.push_str("; "),
    }
    assert!(
        spooled.starts_with(head.as_bytes()),
        "the spooled body must start with\n{head:?}\nbut starts with\n{:?}",
        String::from_utf8_lossy(&spooled[..spooled.len().min(head.len() + 40)])
    );
    let rest = &spooled[head.len()..];
    let eol = rest
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("Received: ends with CRLF");
    let date = std::str::from_utf8(&rest[..eol])
        .expect("ASCII date")
        .to_string();
    assert!(
        jiff::fmt::rfc2822::parse(&date).is_ok(),
        "Received: date {date:?} is not RFC 5322"
    );
    let rest = &rest[eol + 2..];
    assert!(
        !rest.starts_with(b"\t") && !rest.starts_with(b" "),
        "Received: has more continuation lines than expected"
    );
    (date, rest.to_vec())
}

/// What postrelay must have made of `sent` (the message as the client
/// meant it, before dot-stuffing): `sent` itself, with `Date:` and
/// `Message-ID:` appended to its header section when missing. Checks the
/// added fields' syntax and returns the Message-ID added, if any.
pub fn assert_client_bytes(
    after_received: &[u8],
    sent: &[u8],
    add_date: bool,
    add_message_id: bool,
) -> Option<String> {
    let split = sent
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .expect("test messages have a header section");
    let (headers, body) = sent.split_at(split);
    assert!(
        after_received.starts_with(headers),
        "the client's header section must follow Received: unchanged\n got: {:?}\nwant: {:?}",
        String::from_utf8_lossy(after_received),
        String::from_utf8_lossy(headers)
    );
    assert!(
        after_received.ends_with(body),
        "the client's body (from the blank line on) must end the spooled file unchanged\n got: {:?}\nwant suffix: {:?}",
        String::from_utf8_lossy(after_received),
        String::from_utf8_lossy(body)
    );
    let added = &after_received[headers.len()..after_received.len() - body.len()];
    let added = std::str::from_utf8(added).expect("added header lines are ASCII");
    let mut lines: Vec<&str> = added.split_terminator("\r\n").collect();
    assert!(added.is_empty() || added.ends_with("\r\n"), "{added:?}");
    let mut message_id = None;
    if add_date {
        let l = lines.first().copied().unwrap_or_default();
        let date = l
            .strip_prefix("Date: ")
            .unwrap_or_else(|| panic!("expected an added Date: line, got {added:?}"));
        assert!(
            jiff::fmt::rfc2822::parse(date).is_ok(),
            "added Date: {date:?} is not RFC 5322"
        );
        lines.remove(0);
    }
    if add_message_id {
        let l = lines.first().copied().unwrap_or_default();
        let id = l
            .strip_prefix("Message-ID: ")
            .unwrap_or_else(|| panic!("expected an added Message-ID: line, got {added:?}"));
        let left = id
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix("@relay.test>"));
        assert!(
            left.is_some_and(|l| !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"<>@\"".contains(&b))),
            "added Message-ID {id:?} is not <unique@relay.test>"
        );
        message_id = Some(id.to_string());
        lines.remove(0);
    }
    assert!(
        lines.is_empty(),
        "unexpected added header lines {lines:?} (Date added: {add_date}, Message-ID added: {add_message_id})"
    );
    message_id
}

pub fn recipients(m: &Value) -> Vec<String> {
    m["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect()
}

/// The queue entry with this id.
pub fn entry(d: &Daemon, id: &str) -> Value {
    let q = d.queue();
    q.iter()
        .find(|m| m["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} is not in the queue: {q:#?}"))
}

/// `queued as ID` in a reply text.
pub fn queued_id(text: &str) -> String {
    let at = text
        .find("queued as ")
        .unwrap_or_else(|| panic!("no `queued as` in {text:?}"));
    text[at + 10..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

// ------------------------------------------------------------------ swaks
