//! SMTP intake, dialog by dialog: every `tests/dialogs/*.dialog` file is a
//! client session (format: `support/dialog.rs`) run against its own fresh
//! daemon; plus the cases a single-connection transcript cannot express
//! (several connections, split writes).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::daemon::{Daemon, Options};
use support::dialog;
use support::smtp::Raw;

fn dialog_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dialogs")
}

fn dialog_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dialog_dir())
        .expect("tests/dialogs")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dialog"))
        .collect();
    files.sort();
    files
}

/// Runs every dialog file; reports each failing one by name. Set
/// `DIALOG=name` (a substring of the file name) to run only some.
#[test]
fn dialogs() {
    let only = std::env::var("DIALOG").ok();
    let files: Vec<PathBuf> = dialog_files()
        .into_iter()
        .filter(|p| {
            only.as_deref()
                .is_none_or(|o| p.file_name().unwrap().to_string_lossy().contains(o))
        })
        .collect();
    assert!(
        !files.is_empty(),
        "no dialog files in {}",
        dialog_dir().display()
    );
    // Each dialog has its own daemon, so they can run side by side; a few
    // threads keep the timeout dialogs from adding up.
    let results: Vec<(String, Result<(), String>)> = std::thread::scope(|s| {
        let chunks: Vec<&[PathBuf]> = files.chunks(files.len().div_ceil(6)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|path| {
                            let name = path.file_name().unwrap().to_string_lossy().into_owned();
                            let r = std::panic::catch_unwind(|| dialog::run_file(path))
                                .unwrap_or_else(|p| {
                                    Err(p
                                        .downcast_ref::<String>()
                                        .cloned()
                                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                        .unwrap_or_else(|| "panicked".into()))
                                });
                            (name, r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    for (name, r) in &results {
        eprintln!("{} {name}", if r.is_ok() { "ok  " } else { "FAIL" });
    }
    assert!(
        failed.is_empty(),
        "{} of {} dialogs failed:\n\n{}",
        failed.len(),
        results.len(),
        failed.join("\n\n")
    );
}

/// The runner itself must be able to fail: a wrong code, a wrong prefix, a
/// missing close and a wrong queue count are each reported with their line.
#[test]
fn dialog_runner_reports_mismatches() {
    let d = Daemon::start();
    let cases = [
        ("C: NOOP\nS: 251\n", "line 2"),
        ("C: NOOP\nS: 250 2.0.1\n", "line 2"),
        ("C: NOOP\nS: 250\nS+ PIPELINING\n", "line 3"),
        ("C: EHLO x\nS: 250\nS- PIPELINING\n", "line 3"),
        ("C: NOOP\nS: <eof>\n", "line 2"),
        ("C: QUIT\nS: 221\nS: 221\n", "line 3"),
        ("C: NOOP\nS: 250\nQ: 1\n", "line 3"),
        ("# a comment\n\nC| NOOP\\r\\n\nS: 250 2.0.0 Ok\nQ: 0\n", ""),
    ];
    for (text, want) in cases {
        let parsed = dialog::parse(text).unwrap();
        let r = dialog::run(&parsed, &d);
        match (want, r) {
            ("", Ok(())) => {}
            ("", Err(e)) => panic!("{text:?} should pass: {e}"),
            (_, Ok(())) => panic!("{text:?} should fail at {want}"),
            (_, Err(e)) => assert!(e.starts_with(want), "{text:?}: {e}"),
        }
    }
}

#[test]
fn dialog_syntax() {
    let d =
        dialog::parse("# config: intake.max_errors = 3\n*2 C| A{i}{3*x}\\r\\n\nS: 250\n").unwrap();
    assert_eq!(d.options.intake, "max_errors = 3\n");
    assert_eq!(
        d.steps.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
        vec![
            dialog::Step::Send(b"A1xxx\r\n".to_vec()),
            dialog::Step::Send(b"A2xxx\r\n".to_vec()),
            dialog::Step::Expect("250".into()),
        ]
    );
    assert!(
        dialog::parse("C: NOOP\n# config: intake.max_errors = 3\n").is_err(),
        "config after steps"
    );
    assert!(dialog::parse("X: what\n").is_err());
    assert!(dialog::parse("# config: log.level = \"x\"\n").is_err());
}

/// max_connections sessions run; the next connection gets 421 4.7.0 and is
/// closed; once a session ends its slot is free again.
#[test]
fn connection_limit() {
    let d = Daemon::start_with(Options {
        intake: "max_connections = 2\n".into(),
        ..Options::default()
    });
    // The greeting proves each session holds its slot. The harness's
    // readiness probe may still hold one for a moment after start: a 421
    // here can only come from it, so retry (bounded) until greeted.
    let greeted = || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (c, g) = Raw::connect(d.port);
            if g.code == 220 {
                return c;
            }
            assert_eq!(g.code, 421, "{g:?}");
            assert!(Instant::now() < deadline, "never greeted: {g:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut a = greeted();
    let mut b = greeted();
    let (mut c, g) = Raw::connect(d.port);
    assert_eq!(
        (g.code, g.lines[0].get(..5)),
        (421, Some("4.7.0")),
        "third connection: {g:?}"
    );
    assert!(c.is_closed(), "the refused connection must be closed");
    d.wait_stderr("too many connections; refusing");
    // The two sessions are unaffected.
    assert_eq!(a.cmd("NOOP").code, 250);
    assert_eq!(b.cmd("NOOP").code, 250);
    assert_eq!(a.cmd("QUIT").code, 221);
    assert!(a.is_closed());
    // The slot is released when the session task ends, just after the close:
    // retry (bounded) until a new session is greeted with 220.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (mut n, g) = Raw::connect(d.port);
        if g.code == 220 {
            assert_eq!(n.cmd("NOOP").code, 250);
            break;
        }
        assert_eq!(g.code, 421);
        assert!(
            Instant::now() < deadline,
            "the slot of a finished session was never released"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.cmd("QUIT").code, 221);
}

/// A message sent one octet per write (every split of CRLF and of the
/// final CRLF.CRLF) is queued exactly as when sent in one piece; a
/// smuggling payload split the same way is still refused.
#[test]
fn data_split_at_every_octet() {
    let d = Daemon::start();
    let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut replies = Replies::default();
    assert!(replies.next(&mut s).starts_with("220"));
    let send_slowly = |s: &mut TcpStream, bytes: &[u8]| {
        for b in bytes {
            s.write_all(std::slice::from_ref(b)).unwrap();
        }
    };
    let body: &[u8] = b"Subject: split\r\n\r\n..leading dot\r\nline\r\n\r\n.\r\n";
    for (i, (data, want)) in [
        (body, "250 2.0.0"),
        (
            &b"Subject: s\r\n\r\nx\n.\nMAIL FROM:<e@x>\r\n.\r\n"[..],
            "550 5.5.2",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        if i == 0 {
            send_slowly(&mut s, b"EHLO client.example\r\n");
            assert!(replies.next(&mut s).starts_with("250"));
        }
        send_slowly(
            &mut s,
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n",
        );
        for want in ["250", "250", "354"] {
            let r = replies.next(&mut s);
            assert!(r.starts_with(want), "{r}");
        }
        send_slowly(&mut s, data);
        let r = replies.next(&mut s);
        assert!(r.starts_with(want), "message {i}: expected {want}, got {r}");
    }
    let q = d.queue();
    assert_eq!(q.len(), 1, "{q:#?}");
    let spooled = d.body(q[0]["id"].as_str().unwrap());
    let text = String::from_utf8_lossy(&spooled);
    assert!(text.contains("\r\nSubject: split\r\n"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n.leading dot\r\nline\r\n\r\n"),
        "un-stuffed body must end the spooled file: {text:?}"
    );
}

/// A command line far over the limit is discarded up to its CRLF, even
/// when that CRLF is split across two reads (CR at the end of one, LF at
/// the start of the next): the next command must be answered, not eaten.
#[test]
fn long_command_with_split_crlf_resynchronises() {
    let d = Daemon::start_with(Options {
        intake: "command_length_limit = 512\n".into(),
        ..Options::default()
    });
    let (mut raw, _) = Raw::connect(d.port);
    assert_eq!(raw.cmd("EHLO client.example").code, 250);
    let mut long = b"NOOP ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 4000));
    long.push(b'\r');
    raw.send(&long);
    // Give the server the chance to read (and discard) everything up to the
    // CR before the LF arrives; whether it does or not, the outcome must be
    // the same.
    std::thread::sleep(Duration::from_millis(300));
    raw.send(b"\nNOOP\r\n");
    let r = raw.reply();
    assert_eq!(r.code, 500, "{r:?}");
    match raw.try_reply() {
        Some(r) => assert_eq!(r.code, 250, "{r:?}"),
        None => panic!(
            "the server closed the connection instead of answering the NOOP after the long line"
        ),
    }
}

/// Reads whole replies from a stream, returning `CODE text` of the last line.
#[derive(Default)]
struct Replies {
    buf: Vec<u8>,
}

impl Replies {
    fn next(&mut self, s: &mut TcpStream) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                if line.as_bytes().get(3) == Some(&b'-') {
                    continue;
                }
                return line;
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).expect("reply within 20 s");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
