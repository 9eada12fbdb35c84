//! The pipe protocol and the body reader of the per-delivery child; the
//! processes themselves are tested as root in `tests/privsep.rs`.

use std::io::{Cursor, ErrorKind, Read};

use super::child::Exact;
use super::wire::{Answer, MAX_FRAME, Request, read_frame, write_frame};
use super::{PrivsepError, RunAs, plan};
use crate::config::DaemonSettings;
use crate::deliver::Outcome;

fn request() -> Request {
    Request {
        queue_id: "01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
        user: "alice".into(),
        sender: "".into(),
        recipient: "alice@localhost".into(),
        original_recipient: Some("root".into()),
        catch_all: None,
    }
}

#[test]
fn frames_round_trip_and_end_cleanly() {
    let mut buf = Vec::new();
    write_frame(&mut buf, &request()).unwrap();
    write_frame(&mut buf, &request()).unwrap();
    let mut input = Cursor::new(buf);
    for _ in 0..2 {
        assert_eq!(read_frame::<Request>(&mut input).unwrap(), Some(request()));
    }
    assert_eq!(read_frame::<Request>(&mut input).unwrap(), None);
}

#[test]
fn a_cut_or_oversized_frame_is_an_error() {
    let mut buf = Vec::new();
    write_frame(&mut buf, &request()).unwrap();
    for cut in [2, 10, buf.len() - 1] {
        let err = read_frame::<Request>(&mut Cursor::new(&buf[..cut])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "cut at {cut}");
    }
    // A length past the limit is refused before anything is allocated.
    let huge = (MAX_FRAME + 1).to_be_bytes();
    let err = read_frame::<Request>(&mut Cursor::new(huge)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    let big = Request {
        sender: "x".repeat(MAX_FRAME as usize),
        ..request()
    };
    assert!(write_frame(&mut Vec::new(), &big).is_err());
}

#[test]
fn answers_keep_the_local_delivery_classification() {
    let cases = [
        (
            Answer::Delivered("delivered to maildir".into()),
            "2.0.0",
            None,
        ),
        (
            Answer::UnknownUser("no local user".into()),
            "5.1.1",
            Some(true),
        ),
        (Answer::MailboxFull("quota".into()), "4.2.2", Some(false)),
        (Answer::Local("helper gone".into()), "4.3.0", Some(false)),
    ];
    for (answer, status, permanent) in cases {
        let outcome = answer.clone().into_outcome();
        match (&outcome, permanent) {
            (Outcome::Delivered(r), None) => {
                assert_eq!(r.code, 250);
                assert_eq!(r.enhanced.as_ref().unwrap().to_string(), status);
            }
            (Outcome::Failed(r), Some(true)) | (Outcome::Deferred(r), Some(false)) => {
                assert_eq!(r.status(), status, "{answer:?}");
            }
            other => panic!("{answer:?} became {other:?}"),
        }
        assert_eq!(Answer::from_outcome(outcome), answer);
    }
}

#[test]
fn a_body_shorter_than_announced_is_an_error_not_a_shorter_message() {
    let mut data: &[u8] = b"Subject: x\r\n\r\nbody";
    let mut exact = Exact {
        inner: &mut data,
        left: 100,
    };
    let mut out = Vec::new();
    let err = exact.read_to_end(&mut out).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof);

    let mut data: &[u8] = b"Subject: x\r\n\r\nbody and more";
    let mut exact = Exact {
        inner: &mut data,
        left: 18,
    };
    let mut out = Vec::new();
    exact.read_to_end(&mut out).unwrap();
    assert_eq!(out, b"Subject: x\r\n\r\nbody");
}

fn settings(user: &str) -> DaemonSettings {
    DaemonSettings {
        user: user.to_owned(),
    }
}

#[test]
fn started_as_root_the_daemon_user_must_exist_except_with_the_builtin_default() {
    if !crate::test_root::require_root("deciding whom root drops to") {
        return;
    }
    let missing = format!("prmissing{}", std::process::id());
    match plan(&settings(&missing), false) {
        Err(e @ PrivsepError::NoSuchUser { .. }) => {
            let text = e.to_string();
            assert!(text.contains("useradd --system"), "{text}");
            assert!(text.contains(&missing), "{text}");
        }
        other => panic!("expected NoSuchUser, got {other:?}"),
    }
    match plan(&settings(&missing), true) {
        Ok(RunAs::User(u)) => assert_eq!(u.name, "nobody"),
        other => panic!("expected nobody, got {other:?}"),
    }
    assert!(matches!(plan(&settings("root"), false), Ok(RunAs::Root)));
    // An existing unprivileged user is switched to.
    assert!(matches!(
        plan(&settings("nobody"), false),
        Ok(RunAs::User(u)) if u.uid.as_raw() != 0
    ));
}

fn piped(script: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("sh")
        .args(["-c", script])
        .process_group(0)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn the_conversation_streams_both_ways_past_the_pipe_buffers() {
    use std::io::Write;
    // 1 MiB through `cat`: neither side's pipe could hold it, so the
    // helper must read the child's output while it still writes.
    let body: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&body).unwrap();
    std::io::Seek::rewind(&mut file).unwrap();
    let mut child = piped("exec cat");
    let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let talk = super::exchange::converse(stdin, stdout, b"head:".to_vec(), &mut file, deadline);
    assert!(!talk.timed_out);
    assert!(talk.send_error.is_none(), "{:?}", talk.send_error);
    // More than a frame is read but not kept.
    assert_eq!(talk.output.len(), super::wire::MAX_FRAME as usize + 4);
    assert!(talk.output.starts_with(b"head:"));
    assert_eq!(&talk.output[5..], &body[..talk.output.len() - 5]);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_child_that_does_not_answer_by_the_deadline_is_timed_out_and_its_group_killed() {
    let mut child = piped("sleep 30 & wait");
    let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let mut file = tempfile::tempfile().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
    let talk = super::exchange::converse(stdin, stdout, b"x".to_vec(), &mut file, deadline);
    assert!(talk.timed_out);
    super::exchange::kill(&child);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = super::exchange::reap(&mut child, end).expect("killed");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    // Its whole process group went with it (the `sleep` too).
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    while nix::sys::signal::killpg(group, None).is_ok() {
        assert!(
            std::time::Instant::now() < end,
            "the child's group lives on"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
