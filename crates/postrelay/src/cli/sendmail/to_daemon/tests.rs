//! [`Sink`] against a scripted daemon (a Unix socket served by a thread)
//! and a stand-in postdrop (`sh -c 'cat > FILE'`), so that what reaches
//! each side can be compared byte for byte.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use super::*;

/// What the scripted daemon does with its one connection.
#[derive(Clone, Copy)]
enum Daemon {
    /// Reads everything, then sends this reply.
    ReadAllThen(&'static str),
    /// Sends this reply at once and closes, reading nothing.
    AnswerAtOnce(&'static str),
    /// Reads this many octets, then closes without a word.
    DiesAfter(usize),
}

struct Setup {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    dropped: PathBuf,
    spawned: Arc<AtomicUsize>,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        Setup {
            socket: dir.path().join("submit.sock"),
            dropped: dir.path().join("postdrop-input"),
            _dir: dir,
            spawned: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Serves one connection as `how`; joins to what the daemon read.
    fn daemon(&self, how: Daemon) -> JoinHandle<Vec<u8>> {
        let listener = UnixListener::bind(&self.socket).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            match how {
                Daemon::ReadAllThen(reply) => {
                    let mut buf = [0u8; 8192];
                    while !got.ends_with(b"\r\n.\r\n") {
                        let n = s.read(&mut buf).unwrap();
                        assert!(n > 0, "the client stopped before the end");
                        got.extend_from_slice(&buf[..n]);
                    }
                    s.write_all(reply.as_bytes()).unwrap();
                }
                Daemon::AnswerAtOnce(reply) => s.write_all(reply.as_bytes()).unwrap(),
                Daemon::DiesAfter(n) => {
                    got.resize(n, 0);
                    s.read_exact(&mut got).unwrap();
                }
            }
            got
        })
    }

    /// A stand-in for postdrop that stores its input, counting starts.
    fn spawn(&self) -> impl FnMut() -> io::Result<Child> + use<> {
        let (out, count) = (self.dropped.clone(), self.spawned.clone());
        move || {
            count.fetch_add(1, Ordering::SeqCst);
            Command::new("sh")
                .arg("-c")
                .arg("cat > \"$0\"")
                .arg(&out)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        }
    }

    fn send(&self, message: &[u8]) -> Verdict {
        let mut sink = Sink::with(UnixStream::connect(&self.socket), self.spawn()).unwrap();
        // In pieces, as `stream` writes it.
        for piece in message.chunks(1000) {
            sink.write_all(piece).unwrap();
        }
        sink.flush().unwrap();
        sink.finish(true).unwrap()
    }

    fn spawned(&self) -> usize {
        self.spawned.load(Ordering::SeqCst)
    }

    fn dropped(&self) -> Vec<u8> {
        std::fs::read(&self.dropped).unwrap()
    }
}

/// A submission of about `size` octets in DATA form.
fn message(size: usize) -> Vec<u8> {
    let mut m = b"{\"version\":1}\n".to_vec();
    while m.len() < size {
        m.extend_from_slice(format!("line {}\r\n", m.len()).as_bytes());
    }
    m.extend_from_slice(b".\r\n");
    m
}

fn exited_ok(v: &Verdict) -> bool {
    matches!(v, Verdict::Postdrop(out) if out.status.success())
}

#[test]
fn answers_parse() {
    let a = Answer::parse("250 2.0.0 Ok: queued as X\r\n");
    assert_eq!(
        (a.code, a.line.as_str()),
        (250, "250 2.0.0 Ok: queued as X")
    );
    assert_eq!(Answer::parse("garbage").code, 0);
    assert_eq!(Answer::parse("").code, 0);
}

#[test]
fn queued_by_the_daemon_starts_no_postdrop() {
    let s = Setup::new();
    let daemon = s.daemon(Daemon::ReadAllThen("250 2.0.0 Ok: queued as ABC\r\n"));
    let m = message(200_000);
    let v = s.send(&m);
    assert!(matches!(&v, Verdict::Queued(a) if a.line.ends_with("queued as ABC")));
    assert_eq!(daemon.join().unwrap(), m);
    assert_eq!(s.spawned(), 0);
}

#[test]
fn a_refusal_is_final() {
    let s = Setup::new();
    let daemon = s.daemon(Daemon::ReadAllThen("554 5.6.0 no\r\n"));
    let v = s.send(&message(100));
    assert!(matches!(&v, Verdict::Refused(a) if a.code == 554));
    daemon.join().unwrap();
    assert_eq!(s.spawned(), 0);
}

/// The daemon reads it all and dies before answering (or answers 4xx):
/// the whole message goes to postdrop instead.
#[test]
fn no_answer_replays_into_postdrop() {
    for how in [
        Daemon::DiesAfter(0),
        Daemon::ReadAllThen("451 4.3.0 Local error\r\n"),
    ] {
        let s = Setup::new();
        let daemon = s.daemon(how);
        let m = message(300_000);
        let v = s.send(&m);
        daemon.join().unwrap();
        assert!(exited_ok(&v));
        assert_eq!(s.spawned(), 1);
        assert_eq!(s.dropped(), m);
    }
}

/// Busy: 421 before reading anything, while the client is still writing
/// (more than one chunk, so a write fails): the rest follows the copy.
#[test]
fn busy_daemon_hands_over_mid_message() {
    let s = Setup::new();
    let daemon = s.daemon(Daemon::AnswerAtOnce("421 4.7.0 busy\r\n"));
    let m = message(REPLAY_LIMIT / 2);
    let v = s.send(&m);
    daemon.join().unwrap();
    assert!(exited_ok(&v));
    assert_eq!(s.dropped(), m);
}

/// Past the replay limit nothing is kept: a daemon that dies then makes
/// the submission fail (exit 75), and no postdrop runs.
#[test]
fn a_large_message_is_not_kept_for_replay() {
    let s = Setup::new();
    let daemon = s.daemon(Daemon::DiesAfter(REPLAY_LIMIT + 100_000));
    let m = message(REPLAY_LIMIT * 3);
    let mut sink = Sink::with(UnixStream::connect(&s.socket), s.spawn()).unwrap();
    let mut failed = false;
    for piece in m.chunks(1000) {
        if sink.write_all(piece).is_err() {
            failed = true;
            break;
        }
    }
    daemon.join().unwrap();
    let v = sink.finish(!failed).unwrap();
    assert!(
        matches!(&v, Verdict::Lost(why) if why.contains("not queued") || why.is_empty()),
        "{}",
        match &v {
            Verdict::Lost(w) => w.clone(),
            _ => "another verdict".into(),
        }
    );
    assert!(failed, "writing must stop once the daemon is gone");
    assert_eq!(s.spawned(), 0);
}

#[test]
fn no_daemon_means_postdrop_from_the_start() {
    let s = Setup::new();
    let m = message(5000);
    let v = s.send(&m);
    assert!(exited_ok(&v));
    assert_eq!(s.spawned(), 1);
    assert_eq!(s.dropped(), m);
}
