//! Notices against golden files, a structure check of our own, and the
//! decisions around them (never bounce a bounce, NOTIFY); Python's reading
//! and the hostile-value cases have their own files under `tests/`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use postrelay_smtp::reply::Reply;
use proptest::prelude::*;

use super::*;
use crate::deliver::outcome::Phase;
use crate::spool::QueueId;

mod injection;
mod python;

const HOST: &str = "relay.example.net";
const SEED: &str = "01JDWF3Q9ZB2YJ6M5T7V8W9X0A";
/// Arrival of the fixture message (the id's timestamp).
const CREATED_MS: u64 = 1_732_900_000_000;

const ORIGINAL_HEADERS: &[u8] =
    b"Received: from app1.example.net (app1.example.net [192.0.2.10])\r\n\
\tby relay.example.net (postrelay) with ESMTP id 01JDWE7480B8Y9W7RBFMJ6HB71\r\n\
\tfor <bob@example.org>; Fri, 29 Nov 2024 17:06:40 +0000\r\n\
From: Reports <noreply@example.net>\r\n\
To: bob@example.org, Carol <Carol@Example.org>\r\n\
Subject: Nightly report\r\n\
Date: Fri, 29 Nov 2024 17:06:39 +0000\r\n\
Message-ID: <report-2024-11-29@app1.example.net>\r\n\
\r\n\
The body is never returned.\r\n";

fn envelope(sender: &str, recipients: &[(&str, Option<&str>)]) -> Envelope {
    let id: QueueId = "01JDWE7480B8Y9W7RBFMJ6HB71".parse().unwrap();
    let rcpts = recipients
        .iter()
        .map(|(a, o)| Recipient {
            original: o.map(str::to_string),
            ..Recipient::new(*a)
        })
        .collect();
    let mut env = Envelope::new(
        id,
        Origin::Smtp {
            peer: "192.0.2.10:50432".into(),
            helo: "app1.example.net".into(),
        },
        sender.to_string(),
        rcpts,
    );
    env.size = 1234;
    assert_eq!(env.created_ms, CREATED_MS);
    env
}

fn now() -> ZonedDateTime {
    jiff::Timestamp::from_millisecond(1_732_900_200_000)
        .unwrap()
        .to_zoned_datetime(TimeZone::UTC)
}

fn input<'a>(env: &'a Envelope, recipients: Vec<FailedRecipient<'a>>) -> DsnInput<'a> {
    DsnInput {
        envelope: env,
        recipients,
        original_headers: ORIGINAL_HEADERS,
        reporting_mta: HOST,
        from: "MAILER-DAEMON@relay.example.net",
        to: &env.sender,
        now: now(),
        retry_until_ms: Some(CREATED_MS + 5 * 86_400_000),
        message_id: "01JDWF3Q9ZB2YJ6M5T7V8W9X0B@relay.example.net".into(),
        boundary_seed: SEED.into(),
    }
}

fn rejected_reply() -> Reason {
    Reason::Reply {
        phase: Phase::Rcpt,
        reply: Reply::new(
            550,
            "5.1.1",
            "<bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
        ),
    }
}

fn failed_fixture() -> Envelope {
    envelope(
        "noreply@example.net",
        &[
            ("bob@example.org", None),
            ("carol@example.org", Some("rfc822;Carol@Example.org")),
        ],
    )
}

fn failed_dsn(env: &Envelope) -> Vec<u8> {
    let too_big = Reason::Unsendable {
        status: "5.3.4",
        detail: "message size 31457280 exceeds the relay's limit of 26214400 bytes".into(),
    };
    build(&input(
        env,
        vec![
            FailedRecipient::from_reason(
                &env.recipients[0],
                &rejected_reply(),
                Some("smtp.example.com"),
                Action::Failed,
            ),
            FailedRecipient::from_reason(
                &env.recipients[1],
                &too_big,
                Some("smtp.example.com"),
                Action::Failed,
            ),
        ],
    ))
}

fn delayed_dsn(env: &Envelope) -> Vec<u8> {
    let refused =
        Reason::Connect("connect to smtp.example.com[192.0.2.25]:587: Connection refused".into());
    build(&input(
        env,
        vec![FailedRecipient::from_reason(
            &env.recipients[0],
            &refused,
            None,
            Action::Delayed,
        )],
    ))
}

/// Whether the golden files are to be rewritten (`POSTRELAY_BLESS` set).
/// Refused under `CI=true`: there a rewrite would turn every golden test
/// into a pass, whatever the code produced.
fn bless_requested(ci: Option<&str>, bless: Option<&std::ffi::OsStr>) -> bool {
    let bless = bless.is_some();
    assert!(
        !(bless && ci == Some("true")),
        "POSTRELAY_BLESS is set under CI=true: golden files are blessed by hand, never in CI"
    );
    bless
}

/// Compares with `testdata/NAME`; `POSTRELAY_BLESS=1` rewrites the file
/// (not under CI).
fn golden(name: &str, got: &[u8]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/bounce/testdata")
        .join(name);
    let ci = std::env::var("CI").ok();
    if bless_requested(
        ci.as_deref(),
        std::env::var_os("POSTRELAY_BLESS").as_deref(),
    ) {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with POSTRELAY_BLESS=1 to create it)",
            path.display()
        )
    });
    assert!(
        want == got,
        "{name} changed; review the difference and re-bless with POSTRELAY_BLESS=1\n--- got ---\n{}",
        String::from_utf8_lossy(got)
    );
}

#[test]
fn blessing_is_refused_under_ci() {
    let one = Some(std::ffi::OsStr::new("1"));
    assert!(!bless_requested(None, None));
    assert!(!bless_requested(Some("true"), None));
    assert!(bless_requested(None, one));
    assert!(bless_requested(Some("false"), one));
    let under_ci = std::panic::catch_unwind(|| bless_requested(Some("true"), one));
    assert!(under_ci.is_err(), "POSTRELAY_BLESS accepted under CI=true");
}

#[test]
fn golden_failed_notice() {
    let env = failed_fixture();
    let dsn = failed_dsn(&env);
    check_structure(&dsn).unwrap();
    golden("failed.eml", &dsn);
}

#[test]
fn golden_delayed_notice() {
    let env = envelope("noreply@example.net", &[("dave@example.org", None)]);
    let dsn = delayed_dsn(&env);
    check_structure(&dsn).unwrap();
    golden("delayed.eml", &dsn);
}

// ----- structure checks done in Rust (used by the property test) -----

/// The top-level fields a notification has, in order.
const TOP_FIELDS: [&str; 8] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "MIME-Version",
    "Content-Type",
];

/// Names of the fields of a header section (continuation lines skipped).
fn field_names(section: &[&[u8]]) -> Vec<String> {
    section
        .iter()
        .filter(|l| !l.starts_with(b" ") && !l.starts_with(b"\t"))
        .map(|l| {
            let colon = l.iter().position(|&b| b == b':').unwrap_or(l.len());
            String::from_utf8_lossy(&l[..colon]).into_owned()
        })
        .collect()
}

/// Checks what no input may break: CRLF only, lines ≤ 998, exactly the
/// expected top-level fields, three parts each with only MIME fields, and
/// the closing delimiter last.
fn check_structure(msg: &[u8]) -> Result<(), String> {
    for (i, &b) in msg.iter().enumerate() {
        let ok = match b {
            b'\r' => msg.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && msg[i - 1] == b'\r',
            0 => false,
            _ => true,
        };
        if !ok {
            return Err(format!("bare CR/LF or NUL at {i}"));
        }
    }
    if !msg.ends_with(b"\r\n") {
        return Err("no final CRLF".into());
    }
    let lines: Vec<&[u8]> = msg[..msg.len() - 2]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    if let Some(l) = lines.iter().find(|l| l.len() > text::MAX_LINE) {
        return Err(format!("line of {} octets", l.len()));
    }
    let end = lines
        .iter()
        .position(|l| l.is_empty())
        .ok_or("no end of headers")?;
    let mut names = field_names(&lines[..end]);
    if names.last().map(String::as_str) == Some("Content-Transfer-Encoding") {
        names.pop();
    }
    if names != TOP_FIELDS {
        return Err(format!("top-level fields {names:?}"));
    }
    let ct = lines[..end]
        .iter()
        .position(|l| l.starts_with(b"Content-Type:"))
        .map(|i| {
            format!(
                "{}{}",
                String::from_utf8_lossy(lines[i]),
                String::from_utf8_lossy(lines[i + 1])
            )
        })
        .unwrap();
    let boundary = ct
        .split("boundary=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or("no boundary")?;
    let delim = format!("--{boundary}");
    let close = format!("--{boundary}--");
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| **l == delim.as_bytes())
        .map(|(i, _)| i)
        .collect();
    let closes: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| **l == close.as_bytes())
        .map(|(i, _)| i)
        .collect();
    if starts.len() != 3 || closes != [lines.len() - 1] {
        return Err(format!(
            "delimiters at {starts:?}, close at {closes:?} of {}",
            lines.len()
        ));
    }
    // No line anywhere even starts like a delimiter, except the real ones.
    let stray = lines
        .iter()
        .filter(|l| l.starts_with(delim.as_bytes()))
        .count();
    if stray != 4 {
        return Err(format!("{stray} lines start with the delimiter"));
    }
    for &s in &starts {
        let body = &lines[s + 1..];
        let end = body
            .iter()
            .position(|l| l.is_empty())
            .ok_or("part without header end")?;
        for name in field_names(&body[..end]) {
            if !matches!(
                name.as_str(),
                "Content-Description" | "Content-Type" | "Content-Transfer-Encoding"
            ) {
                return Err(format!("part field {name:?}"));
            }
        }
    }
    Ok(())
}

// ----- Python's email package as an independent reader -----

const PY_READER: &str = r#"
import sys, json, email
from email import policy
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.compat32)
def defects(m):
    out = [type(d).__name__ for d in m.defects]
    if m.is_multipart():
        for p in m.get_payload():
            out += defects(p)
    return out
def norm(v):
    return " ".join(str(v).split())
parts = msg.get_payload() if msg.is_multipart() else []
res = {
    "fields": [[k, norm(v)] for k, v in msg.items()],
    "content_type": msg.get_content_type(),
    "report_type": msg.get_param("report-type"),
    "defects": defects(msg),
    "parts": [p.get_content_type() for p in parts],
    "part_fields": [list(p.keys()) for p in parts],
}
if len(parts) == 3:
    res["text"] = parts[0].get_payload(decode=True).decode("utf-8")
    ds = parts[1].get_payload()
    if isinstance(ds, list):
        res["status"] = [[[k, norm(v)] for k, v in block.items()] for block in ds]
    # None for message/global-headers, which Python parses as a message.
    raw = parts[2].get_payload(decode=True)
    res["headers_part"] = raw.decode("utf-8", "replace") if raw is not None else None
print(json.dumps(res))
"#;

/// What Python's `email` package makes of `msg`, or `None` when python3
/// is missing outside CI (under `CI=true` that is a failure).
fn python_reads(msg: &[u8]) -> Option<serde_json::Value> {
    let child = Command::new("python3")
        .args(["-c", PY_READER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("python3 is missing under CI: scripts/install-test-deps must install it");
            }
            eprintln!("SKIP: python3 is not installed");
            return None;
        }
        Err(e) => panic!("cannot run python3: {e}"),
    };
    child.stdin.take().unwrap().write_all(msg).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The `[name, value]` pairs of a JSON list as tuples.
fn pairs(v: &serde_json::Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn field_names_of(py: &serde_json::Value) -> Vec<String> {
    pairs(&py["fields"]).into_iter().map(|(k, _)| k).collect()
}

// ----- decisions and helpers -----

#[test]
fn never_bounce_a_bounce() {
    let pm = "postmaster@relay.example.net";
    let normal = envelope("noreply@example.net", &[("bob@example.org", None)]);
    assert_eq!(
        should_bounce(&normal, pm),
        BounceDecision::Sender("noreply@example.net")
    );

    let null = envelope("", &[("bob@example.org", None)]);
    assert_eq!(should_bounce(&null, pm), BounceDecision::Postmaster);

    // Our own notice, even with a configured non-null bounce sender.
    let mut ours = envelope("bounces@example.net", &[("noreply@example.net", None)]);
    ours.origin = Origin::Bounce {
        of: Some("01JDWE7480B8Y9W7RBFMJ6HB71".into()),
    };
    assert_eq!(should_bounce(&ours, pm), BounceDecision::Postmaster);

    // Our notice to the postmaster failed: nobody left to tell.
    let mut to_pm = envelope("", &[("Postmaster@relay.example.net", None)]);
    to_pm.origin = Origin::Bounce { of: None };
    assert_eq!(should_bounce(&to_pm, pm), BounceDecision::Discard);
}

#[test]
fn notify_parameter_is_honoured() {
    let mut r = Recipient::new("a@b");
    assert!(wants_notice(&r, Action::Failed) && wants_notice(&r, Action::Delayed));
    r.notify = Some(vec!["NEVER".into()]);
    assert!(!wants_notice(&r, Action::Failed) && !wants_notice(&r, Action::Delayed));
    r.notify = Some(vec!["success".into(), "failure".into()]);
    assert!(wants_notice(&r, Action::Failed) && !wants_notice(&r, Action::Delayed));
    r.notify = Some(vec!["DELAY".into()]);
    assert!(!wants_notice(&r, Action::Failed) && wants_notice(&r, Action::Delayed));
}

#[test]
fn from_reason_maps_replies_and_our_reasons() {
    let env = failed_fixture();
    let r = FailedRecipient::from_reason(
        &env.recipients[1],
        &rejected_reply(),
        Some("mx"),
        Action::Failed,
    );
    assert_eq!(r.address, "carol@example.org");
    assert_eq!(r.original, Some("rfc822;Carol@Example.org"));
    assert_eq!(r.status, "5.1.1");
    assert!(
        r.diagnostic
            .as_deref()
            .unwrap()
            .starts_with("550 5.1.1 <bob@example.org>")
    );
    assert_eq!(r.reason.as_deref(), Some("in reply to RCPT TO"));
    let expired = Reason::Expired {
        last: Some("451 4.7.1 greylisted".into()),
    };
    let r = FailedRecipient::from_reason(&env.recipients[0], &expired, None, Action::Failed);
    assert_eq!(r.status, "4.4.7");
    assert_eq!(r.diagnostic, None);
    assert_eq!(
        r.reason.as_deref(),
        Some("message expired in the queue; last problem: 451 4.7.1 greylisted")
    );
    let t = Reason::Timeout {
        phase: Phase::Greeting,
        after: Duration::from_secs(300),
    };
    assert_eq!(
        FailedRecipient::from_reason(&env.recipients[0], &t, None, Action::Delayed).status,
        "4.4.1"
    );
}

#[test]
fn malformed_status_codes_are_replaced() {
    let env = failed_fixture();
    let mut rcpt =
        FailedRecipient::from_reason(&env.recipients[0], &rejected_reply(), None, Action::Failed);
    for (given, action, want) in [
        ("5.1.1", Action::Failed, "5.1.1"),
        ("4.4.7", Action::Failed, "4.4.7"),
        ("5.1.1\r\nX: y", Action::Failed, "5.0.0"),
        ("9.9.9", Action::Delayed, "4.0.0"),
        ("5.1234.1", Action::Failed, "5.0.0"),
        ("", Action::Failed, "5.0.0"),
    ] {
        rcpt.status = given.into();
        rcpt.action = action;
        assert_eq!(status(&rcpt), want, "{given:?}");
    }
}
