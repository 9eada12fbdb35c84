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
    /// Reads everything and never answers (until the client closes).
    Silent,
    /// Reads everything, then sends this reply an octet at a time, one
    /// every [`TRICKLE`].
    Trickles(&'static str),
}

/// The pause between two octets of [`Daemon::Trickles`].
const TRICKLE: Duration = Duration::from_millis(300);

/// Longer than any test here may take (a guard against a hang: a test
/// that gets there has failed).
const HANG: Duration = Duration::from_secs(60);

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
                    read_to_the_end(&mut s, &mut got);
                    s.write_all(reply.as_bytes()).unwrap();
                }
                Daemon::Silent => {
                    let _ = s.read_to_end(&mut got);
                }
                Daemon::Trickles(reply) => {
                    read_to_the_end(&mut s, &mut got);
                    for octet in reply.as_bytes() {
                        std::thread::sleep(TRICKLE);
                        if s.write_all(&[*octet]).is_err() {
                            break;
                        }
                    }
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
        self.send_within(message, ANSWER_WITHIN)
    }

    /// Sends `message`, waiting `within` for the answer.
    fn send_within(&self, message: &[u8], within: Duration) -> Verdict {
        let mut sink = Sink::with(connect(&self.socket), self.spawn()).unwrap();
        sink.answer_within = within;
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

/// Reads from `s` into `got` up to the end of the message.
fn read_to_the_end(s: &mut std::os::unix::net::UnixStream, got: &mut Vec<u8>) {
    let mut buf = [0u8; 8192];
    while !got.ends_with(b"\r\n.\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the client stopped before the end");
        got.extend_from_slice(&buf[..n]);
    }
}

/// `f` run in a thread of its own; a test failure should it not return
/// within [`HANG`].
fn without_hanging<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(HANG).expect("it hung")
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
    let mut sink = Sink::with(connect(&s.socket), s.spawn()).unwrap();
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

/// A daemon that accepts and never answers, and one whose answer trickles
/// in an octet at a time: after the answer's bound (in all, not per
/// octet) the message goes to postdrop whole.
#[test]
fn a_daemon_that_does_not_answer_in_time_is_left_for_postdrop() {
    for how in [
        Daemon::Silent,
        Daemon::Trickles("250 2.0.0 Ok: queued as SLOW\r\n"),
    ] {
        let s = Arc::new(Setup::new());
        let daemon = s.daemon(how);
        let m = message(20_000);
        let (s2, m2) = (s.clone(), m.clone());
        let v = without_hanging(move || s2.send_within(&m2, Duration::from_secs(1)));
        assert!(exited_ok(&v), "the daemon's late answer was not taken");
        assert_eq!(s.dropped(), m);
        assert_eq!(daemon.join().unwrap(), m);
    }
}

/// A daemon that does not accept (its queue of connections full) is not
/// waited for: the connection is refused at once, and the message goes
/// to postdrop.
#[test]
fn a_daemon_that_does_not_accept_is_not_waited_for() {
    use nix::sys::socket::{Backlog, bind, listen};
    let s = Arc::new(Setup::new());
    let listener = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&listener),
        &UnixAddr::new(&s.socket).unwrap(),
    )
    .unwrap();
    listen(&listener, Backlog::new(0).unwrap()).unwrap();
    let path = s.socket.clone();
    let refused = without_hanging(move || {
        let mut held = Vec::new();
        for _ in 0..8 {
            match connect(&path) {
                Ok(sock) => held.push(sock),
                Err(e) => return Some(e.kind()),
            }
        }
        None
    });
    assert_eq!(refused, Some(io::ErrorKind::WouldBlock));
    let m = message(5000);
    let s2 = s.clone();
    let m2 = m.clone();
    // Its queue is full again with this one's own connections held.
    let v = without_hanging(move || {
        let _held: Vec<_> = (0..8).filter_map(|_| connect(&s2.socket).ok()).collect();
        s2.send(&m2)
    });
    assert!(exited_ok(&v));
    assert_eq!(s.dropped(), m);
    drop(listener);
}
