//! Python's `email` package reads the notices as we meant them.

use super::*;

#[test]
fn python_reads_the_failed_notice() {
    let env = failed_fixture();
    let Some(py) = python_reads(&failed_dsn(&env)) else {
        return;
    };
    assert_eq!(py["defects"], serde_json::json!([]), "{py}");
    assert_eq!(py["content_type"], "multipart/report");
    assert_eq!(py["report_type"], "delivery-status");
    assert_eq!(
        strings(&py["parts"]),
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    assert_eq!(field_names_of(&py), TOP_FIELDS);
    let fields = pairs(&py["fields"]);
    assert!(fields.contains(&("To".into(), "<noreply@example.net>".into())));
    assert!(fields.contains(&(
        "Subject".into(),
        "Undelivered Mail Returned to Sender".into()
    )));
    assert!(fields.contains(&("Auto-Submitted".into(), "auto-replied".into())));
    assert!(fields.contains(&("Date".into(), "Fri, 29 Nov 2024 17:10:00 +0000".into())));

    let status: Vec<Vec<(String, String)>> =
        py["status"].as_array().unwrap().iter().map(pairs).collect();
    assert_eq!(
        status.len(),
        3,
        "per-message block + 2 recipients: {status:?}"
    );
    let s = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        status[0],
        [
            s("Reporting-MTA", "dns; relay.example.net"),
            s("X-Postrelay-Queue-ID", "01JDWE7480B8Y9W7RBFMJ6HB71"),
            s("X-Postrelay-Sender", "rfc822; noreply@example.net"),
            s("Arrival-Date", "Fri, 29 Nov 2024 17:06:40 +0000"),
        ]
    );
    assert_eq!(
        status[1],
        [
            s("Final-Recipient", "rfc822; bob@example.org"),
            s("Action", "failed"),
            s("Status", "5.1.1"),
            s("Remote-MTA", "dns; smtp.example.com"),
            s(
                "Diagnostic-Code",
                "smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table"
            ),
        ]
    );
    assert_eq!(
        status[2],
        [
            s("Final-Recipient", "rfc822; carol@example.org"),
            s("Original-Recipient", "rfc822; Carol@Example.org"),
            s("Action", "failed"),
            s("Status", "5.3.4"),
            s("Remote-MTA", "dns; smtp.example.com"),
            s(
                "Diagnostic-Code",
                "X-Postrelay; message size 31457280 exceeds the relay's limit of 26214400 bytes"
            ),
        ]
    );
    let text = py["text"].as_str().unwrap();
    assert!(
        text.contains("This is the mail system at host relay.example.net."),
        "{text}"
    );
    assert!(
        text.contains("<bob@example.org>: host smtp.example.com said: 550 5.1.1"),
        "{text}"
    );
    let headers = py["headers_part"].as_str().unwrap();
    assert!(
        headers.starts_with("Received: from app1.example.net"),
        "{headers}"
    );
    assert!(headers.contains("Subject: Nightly report\r\n"), "{headers}");
    assert!(!headers.contains("The body is never returned"), "{headers}");
}

#[test]
fn python_reads_the_delayed_notice() {
    let env = envelope("noreply@example.net", &[("dave@example.org", None)]);
    let Some(py) = python_reads(&delayed_dsn(&env)) else {
        return;
    };
    assert_eq!(py["defects"], serde_json::json!([]), "{py}");
    assert_eq!(
        strings(&py["parts"]),
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    let fields = pairs(&py["fields"]);
    assert!(fields.contains(&(
        "Subject".into(),
        "Delayed Mail (still being retried)".into()
    )));
    let rcpt = pairs(&py["status"][1]);
    assert!(
        rcpt.contains(&("Action".into(), "delayed".into())),
        "{rcpt:?}"
    );
    assert!(
        rcpt.contains(&("Status".into(), "4.4.1".into())),
        "{rcpt:?}"
    );
    assert!(
        rcpt.contains(&(
            "Will-Retry-Until".into(),
            "Wed, 4 Dec 2024 17:06:40 +0000".into()
        )),
        "{rcpt:?}"
    );
    let text = py["text"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(text.contains("No action is required"), "{text}");
    assert!(
        text.contains("retried until Wed, 4 Dec 2024 17:06:40 +0000"),
        "{text}"
    );
}
