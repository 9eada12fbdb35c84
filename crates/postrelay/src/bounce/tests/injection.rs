//! Hostile values (CRLF, boundaries, UTF-8, 8-bit headers) never break a notice.

use super::*;

#[test]
fn crlf_in_sender_and_reply_creates_no_header() {
    let sender = "evil@example.net>\r\nBcc: victim@example.com\r\n\r\n--x";
    let env = envelope(
        sender,
        &[("bob@example.org\r\nBcc: victim2@example.com", None)],
    );
    let reply = Reason::Reply {
        phase: Phase::Rcpt,
        reply: Reply::new(
            550,
            "5.1.1",
            "no\r\nBcc: victim3@example.com\r\n\r\nContent-Type: text/html",
        ),
    };
    let mut inp = input(
        &env,
        vec![FailedRecipient::from_reason(
            &env.recipients[0],
            &reply,
            Some("mx\r\nBcc: v4@x"),
            Action::Failed,
        )],
    );
    inp.original_headers = b"Subject: hi\r\n--SEED/relay.example.net--\r\nX: y\r\n";
    let dsn = build(&inp);
    check_structure(&dsn).unwrap();
    let text = String::from_utf8_lossy(&dsn);
    for line in text.split("\r\n") {
        assert!(
            !line.to_ascii_lowercase().starts_with("bcc:"),
            "header injected: {line:?}\n{text}"
        );
    }
    let Some(py) = python_reads(&dsn) else { return };
    assert_eq!(py["defects"], serde_json::json!([]), "{py}");
    assert_eq!(field_names_of(&py), TOP_FIELDS);
    assert_eq!(strings(&py["parts"]).len(), 3);
    for block in py["status"].as_array().unwrap() {
        for (k, _) in pairs(block) {
            assert!(!k.eq_ignore_ascii_case("bcc"), "{py}");
        }
    }
    // The original headers are still all there, with the fake delimiter.
    assert!(
        py["headers_part"]
            .as_str()
            .unwrap()
            .contains("--SEED/relay.example.net--\r\nX: y")
    );
}

#[test]
fn the_boundary_never_occurs_in_the_content() {
    let env = failed_fixture();
    // The reply and the headers quote the first two candidate boundaries.
    let reply = Reason::Reply {
        phase: Phase::DataEnd,
        reply: Reply::new(554, "5.6.0", format!("bad line --{SEED}/{HOST}--")),
    };
    let mut inp = input(
        &env,
        vec![FailedRecipient::from_reason(
            &env.recipients[0],
            &reply,
            None,
            Action::Failed,
        )],
    );
    let headers = format!("X-A: 1\r\n--{SEED}.1/{HOST}\r\nX-B: 2\r\n");
    inp.original_headers = headers.as_bytes();
    let dsn = build(&inp);
    check_structure(&dsn).unwrap();
    let text = String::from_utf8(dsn.clone()).unwrap();
    assert!(
        text.contains(&format!("boundary=\"{SEED}.2/{HOST}\"")),
        "{text}"
    );
    let Some(py) = python_reads(&dsn) else { return };
    assert_eq!(py["defects"], serde_json::json!([]));
    assert_eq!(strings(&py["parts"]).len(), 3);
    assert!(
        py["text"]
            .as_str()
            .unwrap()
            .contains(&format!("--{SEED}/{HOST}--"))
    );
    assert_eq!(py["headers_part"].as_str().unwrap(), headers);
}

#[test]
fn utf8_addresses_use_the_global_types() {
    let env = {
        let mut e = envelope("jörg@exämple.de", &[("zoë@example.org", None)]);
        e.smtputf8 = true;
        e
    };
    let mut inp = input(
        &env,
        vec![FailedRecipient::from_reason(
            &env.recipients[0],
            &rejected_reply(),
            None,
            Action::Failed,
        )],
    );
    inp.original_headers = "From: Jörg <jörg@exämple.de>\r\nSubject: Grüße\r\n".as_bytes();
    let dsn = build(&inp);
    check_structure(&dsn).unwrap();
    let text = String::from_utf8(dsn.clone()).unwrap();
    assert!(
        text.contains("report-type=global-delivery-status;"),
        "{text}"
    );
    assert!(
        text.contains("Content-Type: message/global-delivery-status\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Content-Type: message/global-headers\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Content-Type: text/plain; charset=utf-8\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Final-Recipient: utf-8; zoë@example.org\r\n"),
        "{text}"
    );
    assert!(
        text.contains("X-Postrelay-Sender: utf-8; jörg@exämple.de\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nContent-Transfer-Encoding: 8bit\r\n\r\nThis is a MIME"),
        "{text}"
    );
    let Some(py) = python_reads(&dsn) else { return };
    assert_eq!(
        strings(&py["parts"]),
        [
            "text/plain",
            "message/global-delivery-status",
            "message/global-headers"
        ]
    );
    assert!(py["text"].as_str().unwrap().contains("<zoë@example.org>"));
}

#[test]
fn eight_bit_headers_of_a_plain_message_stay_rfc822_headers() {
    let env = failed_fixture();
    let mut inp = input(
        &env,
        vec![FailedRecipient::from_reason(
            &env.recipients[0],
            &rejected_reply(),
            None,
            Action::Failed,
        )],
    );
    inp.original_headers = b"Subject: caf\xe9\r\n";
    let dsn = build(&inp);
    check_structure(&dsn).unwrap();
    let text = String::from_utf8_lossy(&dsn);
    assert!(text.contains("report-type=delivery-status;"), "{text}");
    assert!(
        text.contains("Content-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: 8bit\r\n"),
        "{text}"
    );
    assert!(dsn.windows(13).any(|w| w == b"Subject: caf\xe9"));
}

fn adversarial() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            "\\PC{1,8}",
            Just("\r\n".to_string()),
            Just("\r".to_string()),
            Just("\n".to_string()),
            Just("\0".to_string()),
            Just("--".to_string()),
            Just("Bcc: x@y".to_string()),
            Just(format!("{SEED}/{HOST}")),
            Just(format!("{SEED}.1/{HOST}")),
            "[a-z]{200,1200}",
        ],
        0..12,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn no_input_breaks_the_structure(
        sender in adversarial(),
        rcpt in adversarial(),
        orig in proptest::option::of(adversarial()),
        diagnostic in proptest::option::of(adversarial()),
        reason in proptest::option::of(adversarial()),
        remote in proptest::option::of(adversarial()),
        status in "[0-9.x]{0,8}",
        delayed in any::<bool>(),
        headers in proptest::collection::vec(any::<u8>(), 0..3000),
        seed in adversarial(),
        message_id in adversarial(),
    ) {
        let env = envelope(&sender, &[(&rcpt, orig.as_deref())]);
        let mut inp = input(&env, vec![FailedRecipient {
            address: &env.recipients[0].address,
            original: env.recipients[0].original.as_deref(),
            status,
            diagnostic,
            reason,
            remote_mta: remote,
            action: if delayed { Action::Delayed } else { Action::Failed },
        }]);
        inp.original_headers = &headers;
        inp.boundary_seed = seed;
        inp.message_id = message_id;
        let dsn = build(&inp);
        if let Err(e) = check_structure(&dsn) {
            prop_assert!(false, "{e}\n{}", String::from_utf8_lossy(&dsn));
        }
    }
}
