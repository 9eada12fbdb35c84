//! Unit tests of the mail log: line shapes, escaping, journal fields.

use super::*;
use std::sync::{Arc, Mutex};

#[test]
fn control_characters_cannot_forge_lines() {
    assert_eq!(clean("a\r\nb\tc"), "a??b?c");
    // C1 controls (U+0085 is NEL) too; other non-ASCII text stays.
    assert_eq!(clean("a\u{85}b\u{7f}é"), "a?b?é");
    assert_eq!(field("é, x"), "é??x");
    assert_eq!(address("\"<é>\"@x"), "\"?é?\"@x");
    // Plain text is borrowed, not copied.
    assert!(matches!(
        escape::cleaned("bob@example.org"),
        std::borrow::Cow::Borrowed(_)
    ));
}

#[test]
fn postfix_lines_start_with_the_local_time_as_syslog_writes_it() {
    let stamp = || {
        jiff::ZonedDateTime::now()
            .strftime("%b %e %H:%M:%S")
            .to_string()
    };
    let (log, sink) = log(LogFormat::Postfix);
    let before = stamp();
    log.removed("ID1");
    let after = stamp();
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let (time, rest) = text.split_at(15);
    assert!(
        time == before || time == after,
        "{text:?}: {before} / {after}"
    );
    let pid = std::process::id();
    assert_eq!(
        rest,
        format!(" relay.example.net postrelay/qmgr[{pid}]: ID1: removed\n")
    );
}

#[test]
fn delays_are_formatted_like_postfix() {
    let ms = Duration::from_millis;
    let us = Duration::from_micros;
    let cases = [
        (Duration::ZERO, "0"),
        (us(4_999), "0"),
        (us(5_000), "0.01"),
        (ms(10), "0.01"),
        (ms(120), "0.12"),
        (us(123_456), "0.12"),
        (us(125_000), "0.13"),
        (ms(100), "0.1"),
        (ms(500), "0.5"),
        (us(994_999), "0.99"),
        (us(995_000), "1"),
        (ms(1_000), "1"),
        (ms(1_200), "1.2"),
        (ms(1_249), "1.2"),
        (ms(1_250), "1.3"),
        (ms(9_949), "9.9"),
        (ms(9_950), "10"),
        (ms(12_345), "12"),
        (ms(12_500), "13"),
        (Duration::from_secs(4000), "4000"),
        (Duration::from_secs(432_000), "432000"),
        (Duration::new(9, 950_000_000), "10"),
        (Duration::new(u64::MAX, 499_999_999), "18446744073709551615"),
        // Rounded up past the largest u64 number of seconds.
        (Duration::MAX, "18446744073709551616"),
    ];
    for (d, want) in cases {
        assert_eq!(format_delay(d), want, "{d:?}");
    }
}

/// A sink the test can read back (also for the queue's tests of the
/// lines it has written).
#[derive(Clone, Default)]
pub(crate) struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) fn log(format: LogFormat) -> (MailLog, Sink) {
    let sink = Sink::default();
    (
        MailLog::with_writer(Box::new(sink.clone()), "relay.example.net", format),
        sink,
    )
}

/// The part after `postrelay/PROGRAM[pid]: `, and the program.
pub(crate) fn events(sink: &Sink) -> Vec<(String, String)> {
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|l| {
            let rest = l.split_once(" postrelay/").expect("program tag").1;
            let (program, rest) = rest.split_once('[').unwrap();
            let text = rest.split_once("]: ").unwrap().1;
            (program.to_string(), text.to_string())
        })
        .collect()
}

fn sent<'a>() -> Delivery<'a> {
    Delivery {
        rcpt: "bob@example.org",
        orig_rcpt: None,
        relay: "smtp.example.com[192.0.2.7]:587",
        conn_use: 1,
        delay: Duration::from_millis(1_234),
        delays: Delays {
            before_active: Duration::from_millis(12),
            queue_mgr: Duration::ZERO,
            conn_setup: Duration::from_millis(503),
            transmission: Duration::from_millis(719),
        },
        dsn: "2.0.0",
        status: DeliveryStatus::Sent,
        detail: "250 2.0.0 Ok: queued as 4XyZ",
    }
}

#[test]
fn delivery_line_has_postfix_field_order() {
    let (log, sink) = log(LogFormat::Postfix);
    log.delivery("ID1", &sent());
    log.delivery(
        "ID2",
        &Delivery {
            orig_rcpt: Some("Bob@Example.org"),
            conn_use: 3,
            status: DeliveryStatus::Deferred,
            dsn: "4.7.1",
            detail: "host smtp.example.com said: 451 4.7.1 try\r\nlater",
            ..sent()
        },
    );
    log.delivery(
        "ID3",
        &Delivery {
            orig_rcpt: Some("bob@example.org"),
            relay: &relay_name("smtp.example.com", None),
            status: DeliveryStatus::Bounced,
            detail: "",
            ..sent()
        },
    );
    let ev = events(&sink);
    assert_eq!(
        ev[0],
        (
            "smtp".into(),
            "ID1: to=<bob@example.org>, relay=smtp.example.com[192.0.2.7]:587, delay=1.2, \
             delays=0.01/0/0.5/0.72, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4XyZ)"
                .into()
        )
    );
    assert_eq!(
        ev[1].1,
        "ID2: to=<bob@example.org>, orig_to=<Bob@Example.org>, \
         relay=smtp.example.com[192.0.2.7]:587, conn_use=3, delay=1.2, \
         delays=0.01/0/0.5/0.72, dsn=4.7.1, status=deferred \
         (host smtp.example.com said: 451 4.7.1 try??later)"
    );
    // orig_to equal to the recipient is not repeated; no detail, no parentheses.
    assert_eq!(
        ev[2].1,
        "ID3: to=<bob@example.org>, relay=none, delay=1.2, delays=0.01/0/0.5/0.72, \
         dsn=2.0.0, status=bounced"
    );
}

#[test]
fn separators_in_values_cannot_shift_fields() {
    let (log, sink) = log(LogFormat::Postfix);
    log.delivery(
        "ID",
        &Delivery {
            rcpt: "a@b>, relay=evil, status=sent\nX",
            relay: "x, status=sent",
            dsn: "2.0.0, status=sent",
            status: DeliveryStatus::Bounced,
            ..sent()
        },
    );
    // Read the way pflogsumm does: the address ends at the first `>`,
    // relay and dsn at the next comma.
    let ev = events(&sink);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0].1,
        "ID: to=<a@b?, relay=evil, status=sent?X>, relay=x??status=sent, delay=1.2, \
         delays=0.01/0/0.5/0.72, dsn=2.0.0??status=sent, status=bounced \
         (250 2.0.0 Ok: queued as 4XyZ)"
    );
}

#[test]
fn notification_expiry_and_warning_lines() {
    let (log, sink) = log(LogFormat::Postfix);
    log.bounce_created("ID", "DSN1");
    log.delay_notice_created("ID", "DSN2");
    log.postmaster_notice_created("ID", "DSN3");
    log.expired("ID", "alice@example.net");
    log.warning("ID", "relay offers no STARTTLS\r\nfake");
    assert_eq!(
        events(&sink),
        [
            ("bounce", "ID: sender non-delivery notification: DSN1"),
            ("bounce", "ID: sender delay notification: DSN2"),
            ("bounce", "ID: postmaster non-delivery notification: DSN3"),
            (
                "qmgr",
                "ID: from=<alice@example.net>, status=expired, returned to sender"
            ),
            ("smtp", "warning: ID: relay offers no STARTTLS??fake"),
        ]
        .map(|(p, t)| (p.to_string(), t.to_string()))
    );
}

#[test]
fn json_lines_carry_structured_fields() {
    let (log, sink) = log(LogFormat::Json);
    log.delivery("ID1", &sent());
    log.warning("ID1", "w");
    log.removed("ID1");
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["program"], "smtp");
    assert_eq!(lines[0]["queue_id"], "ID1");
    assert_eq!(lines[0]["to"], "bob@example.org");
    assert_eq!(lines[0]["status"], "sent");
    assert_eq!(lines[0]["dsn"], "2.0.0");
    assert_eq!(lines[0]["delay"], 1.234);
    assert!(
        lines[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("to=<bob@example.org>")
    );
    assert_eq!(lines[1]["level"], "warning");
    assert_eq!(lines[2]["text"], "removed");
    assert!(lines[2].get("level").is_none());
}

#[test]
fn journal_records_of_deliveries_carry_the_recipient_fields() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (mut log, _) = log(LogFormat::Postfix);
    log.out = writer::Writer::new(self::sink::Sink::Journal(path), Default::default());
    log.delivery("ID1", &sent());
    let mut buf = vec![0u8; 4096];
    let n = sock.recv(&mut buf).unwrap();
    let got = String::from_utf8_lossy(&buf[..n]).to_string();
    for want in [
        "POSTRELAY_QUEUE_ID=ID1\n",
        "POSTRELAY_TO=bob@example.org\n",
        "POSTRELAY_RELAY=smtp.example.com[192.0.2.7]:587\n",
        "POSTRELAY_STATUS=sent\n",
    ] {
        assert!(got.contains(want), "{want:?} in {got:?}");
    }
}

#[test]
fn auto_writes_the_file_if_set_else_syslog() {
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        return; // under systemd "auto" means the journal
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("log");
    let sock = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut settings = LogSettings {
        level: "info".into(),
        format: LogFormat::Postfix,
        file: None,
        to: LogTarget::Auto,
        syslog_name: "postfix".into(),
        syslog_socket: socket,
    };
    MailLog::open(&settings, "relay.test")
        .unwrap()
        .removed("ID1");
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).unwrap();
    let got = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        got.starts_with("<22>") && got.contains(" postfix/qmgr["),
        "{got}"
    );
    assert!(got.ends_with("]: ID1: removed"), "{got}");

    let file = dir.path().join("mail.log");
    settings.file = Some(file.clone());
    MailLog::open(&settings, "relay.test")
        .unwrap()
        .removed("ID2");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(" relay.test postfix/qmgr[") && text.ends_with("]: ID2: removed\n"));
    assert!(
        sock.recv(&mut buf).is_err(),
        "a file was set: nothing to syslog"
    );
}

#[test]
fn relay_tls_and_auth_failures_are_counted_from_the_reason() {
    use crate::deliver::outcome::Reason;
    let (log, _sink) = log(LogFormat::Postfix);
    let auth = Reason::Auth("535 5.7.8 bad credentials".into()).to_string();
    let tls = Reason::Tls("the relay offers no STARTTLS".into()).to_string();
    let other = Reason::Connect("refused".into()).to_string();
    for (status, detail) in [
        (DeliveryStatus::Deferred, &auth),
        (DeliveryStatus::Bounced, &tls),
        (DeliveryStatus::Deferred, &other),
    ] {
        log.delivery(
            "ID",
            &Delivery {
                status,
                detail,
                ..sent()
            },
        );
    }
    let text = log.metrics().encode(crate::queue::QueueStats::default(), 0);
    for want in [
        "postrelay_auth_failures_total{side=\"relay\",reason=\"deferred\"} 1\n",
        "postrelay_tls_failures_total{side=\"relay\",reason=\"bounced\"} 1\n",
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
    assert_eq!(text.matches("failures_total{").count(), 2, "{text}");
}

#[test]
fn relay_names() {
    let v4: SocketAddr = "192.0.2.1:25".parse().unwrap();
    let v6: SocketAddr = "[2001:db8::1]:465".parse().unwrap();
    assert_eq!(
        relay_name("mx.example.org", Some(v4)),
        "mx.example.org[192.0.2.1]:25"
    );
    assert_eq!(
        relay_name("mx.example.org", Some(v6)),
        "mx.example.org[2001:db8::1]:465"
    );
    assert_eq!(relay_name("mx.example.org", None), "none");
}

mod batch;
