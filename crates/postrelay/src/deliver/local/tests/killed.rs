//! An mbox delivery killed in the middle of writing a message (the
//! helper's `[local] delivery_timeout` does that with SIGKILL): the next
//! delivery takes the dead writer's dotlock over and cuts its partial
//! message off before it appends, so the mailbox holds whole messages
//! only and the retry does not duplicate the part.
//!
//! The writer is a real process (this test binary run again for the one
//! ignored test [`writer_process`]), fed a large body through a pipe and
//! killed while it waits for more: `write_all` returning proves it has
//! read, and so written, all but a pipe's and a buffer's worth.

use std::io::Write as _;
use std::process::{Command, Stdio};

use super::in_mbox::strip_from_line;
use super::*;

/// Where the writer process delivers (its mail spool directory).
const WRITER_DIR: &str = "POSTRELAY_TEST_KILLED_WRITER_DIR";

/// One line of the large body.
const LINE: &[u8] = b"0123456789 the partial message of a killed delivery 0123456789\r\n";

/// The writer: run by [`a_delivery_killed_mid_write_is_cut_off_by_the_next`]
/// in a process of its own; does nothing when run otherwise.
#[test]
#[ignore = "run as a child process by the killed-writer test"]
fn writer_process() {
    let Some(dir) = std::env::var_os(WRITER_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let user = me(&dir);
    let name = dir.join("stdin");
    let mut body = io::stdin().lock();
    let _ = mbox::deliver(
        &user,
        &message(&name),
        &mut body,
        &dir,
        Duration::from_secs(5),
    );
}

/// Starts [`writer_process`] on `dir`, sends it `chunks` times 1024
/// lines of body and kills it (SIGKILL) while it waits for the rest.
fn kill_a_writer_mid_message(dir: &Path, chunks: usize) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "deliver::local::tests::killed::writer_process"])
        .args(["--ignored", "--test-threads=1", "--nocapture"])
        .env(WRITER_DIR, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let chunk = LINE.repeat(1024);
    for _ in 0..chunks {
        stdin.write_all(&chunk).unwrap();
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A mail spool directory whose mbox holds one message; the user and the
/// spool body of that message.
fn one_delivered() -> (TempDir, LocalUser, PathBuf) {
    let dir = TempDir::new().unwrap();
    let user = me(dir.path());
    let body = spool(dir.path(), BODY);
    mbox_deliver(&user, &message(&body), dir.path(), Duration::from_secs(1)).unwrap();
    (dir, user, body)
}

#[test]
fn a_delivery_killed_mid_write_is_cut_off_by_the_next() {
    let (dir, user, body) = one_delivered();
    let wait = Duration::from_secs(1);
    let mbox = dir.path().join("tester");
    let whole = fs::read(&mbox).unwrap();

    // About 2.5 MB sent: the writer has put well over 1 MB of it into the
    // mbox when it is killed.
    kill_a_writer_mid_message(dir.path(), 40);
    let cut = fs::read(&mbox).unwrap();
    assert!(
        cut.len() > whole.len() + (1 << 20),
        "killed mid-write: {} bytes",
        cut.len()
    );
    assert!(cut.starts_with(&whole));
    assert!(
        dir.path().join("tester.lock").exists(),
        "the kill left its lock"
    );

    // The next delivery does not wait for the dead writer's lock to go
    // stale (1 s, not 5 min), and appends after the last whole message.
    mbox_deliver(&user, &message(&body), dir.path(), wait).unwrap();
    let after = fs::read(&mbox).unwrap();
    assert_eq!(after.len(), 2 * whole.len(), "two whole messages");
    assert_eq!(&after[..whole.len()], &whole[..]);
    let second = &after[whole.len()..];
    assert_eq!(
        strip_from_line(second, "cron@host.example"),
        strip_from_line(&whole, "cron@host.example")
    );
    assert!(!dir.path().join("tester.lock").exists());
}

/// What follows the killed writer's start is not only its own message (a
/// program that ignores dotlocks appended after it): nothing is cut, the
/// other program's mail is kept.
#[test]
fn what_another_program_appended_after_a_killed_write_is_kept() {
    // With the line break a careful writer adds, and without it after a
    // partial line (the `x`): that From line then starts no line.
    for other in [
        &b"\nFrom other@example.org Sat Nov  4 00:00:00 2023\nSubject: theirs\n\nkept\n\n"[..],
        &b"xFrom other@example.org Sat Nov  4 00:00:00 2023\nSubject: theirs\n\nkept\n\n"[..],
    ] {
        another_program_appends_after_a_killed_write(other);
    }
}

fn another_program_appends_after_a_killed_write(other: &[u8]) {
    let (dir, user, body) = one_delivered();
    let wait = Duration::from_secs(1);
    let mbox = dir.path().join("tester");
    kill_a_writer_mid_message(dir.path(), 4);
    fs::OpenOptions::new()
        .append(true)
        .open(&mbox)
        .unwrap()
        .write_all(other)
        .unwrap();
    let before = fs::read(&mbox).unwrap();

    mbox_deliver(&user, &message(&body), dir.path(), wait).unwrap();
    let after = fs::read(&mbox).unwrap();
    assert!(after.starts_with(&before), "nothing cut");
    assert!(after.len() > before.len());
}

/// A note reads back as written, with or without the line break before
/// the From line; another program's lock file is no note.
#[test]
fn a_lock_note_reads_back_as_written() {
    use super::mbox::undo::{Append, Note};
    for head in [
        &b"From a=b@c Sat Nov  4 00:00:00 2023\n"[..],
        b"\nFrom <> x\n",
    ] {
        let note = Note {
            host: "mail.example".into(),
            pid: 4242,
            held: head.starts_with(b"\n"),
            append: Some(Append {
                dev: 2049,
                ino: 77,
                start: 1 << 40,
                head: head.to_vec(),
            }),
        };
        assert_eq!(Note::parse(&note.to_line()), Some(note));
    }
    let mut bare = Note::mine(None);
    assert_eq!(Note::parse(&bare.to_line()), Some(bare.clone()));
    bare.held = false;
    assert_eq!(Note::parse(&bare.to_line()), Some(bare));
    for other in [&b"4242\n"[..], b"", b"postrelay-mbox-append host=x pid=y\n"] {
        assert_eq!(Note::parse(other), None);
    }
}

/// Takes an `fcntl` write lock on `path` as another program would, held
/// while the file returned is open.
fn lock_as_another_program(path: &Path) -> fs::File {
    use nix::fcntl::{FcntlArg, fcntl};
    use nix::libc;
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    let lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    fcntl(&file, FcntlArg::F_OFD_SETLK(&lock)).unwrap();
    file
}

/// The killed delivery's note in the dotlock `lock`.
fn note_in(lock: &Path) -> super::mbox::undo::Note {
    super::mbox::undo::Note::parse(&fs::read(lock).unwrap()).expect("a note")
}

/// A mailbox with one whole message, then the part a killed delivery
/// wrote, and the dotlock that delivery left.
struct Killed {
    dir: TempDir,
    user: LocalUser,
    /// The spool body of the whole message.
    body: PathBuf,
    mbox: PathBuf,
    lock: PathBuf,
    /// The mbox before the killed delivery.
    whole: Vec<u8>,
}

fn killed_after_one() -> Killed {
    let (dir, user, body) = one_delivered();
    let mbox = dir.path().join("tester");
    let lock = dir.path().join("tester.lock");
    let whole = fs::read(&mbox).unwrap();
    kill_a_writer_mid_message(dir.path(), 4);
    assert!(fs::metadata(&mbox).unwrap().len() > whole.len() as u64);
    Killed {
        dir,
        user,
        body,
        mbox,
        lock,
        whole,
    }
}

impl Killed {
    /// The whole message again.
    fn deliver(&self, wait: Duration) -> Result<PathBuf, Reason> {
        mbox_deliver(&self.user, &message(&self.body), self.dir.path(), wait)
    }
}

/// The delivery that takes a killed one's lock over fails before it has
/// cut the partial message (the mbox is locked by an MUA past its wait):
/// the dotlock stays, with the killed delivery's note, and the next
/// delivery takes it over and cuts.
#[test]
fn an_adopter_that_fails_before_repairing_leaves_the_cut_to_the_next() {
    let k = killed_after_one();
    let (mbox, lock) = (&k.mbox, &k.lock);
    let killed = note_in(lock);
    assert!(killed.append.is_some());

    let mua = lock_as_another_program(mbox);
    let failed = k.deliver(Duration::from_millis(300));
    let why = failed.expect_err("the mbox is locked").to_string();
    assert!(why.contains("locked by another program"), "{why}");
    assert_eq!(note_in(lock), killed, "the killed delivery's note is kept");
    drop(mua);

    k.deliver(Duration::from_secs(1)).unwrap();
    let after = fs::read(mbox).unwrap();
    assert_eq!(
        after.len(),
        2 * k.whole.len(),
        "the partial message was cut"
    );
    assert_eq!(&after[..k.whole.len()], &k.whole[..]);
    assert!(!lock.exists());
}

/// Two deliveries find the same killed delivery's lock: one takes it
/// over, the other waits (also once the lock file is older than a stale
/// one: a lock a live delivery holds is not removed), and the note stays
/// for whoever repairs.
#[test]
fn only_one_delivery_takes_over_a_killed_lock() {
    use super::mbox::dotlock::DotLock;
    use super::mbox::undo::adopt;
    let k = killed_after_one();
    let (mbox, lock) = (&k.mbox, &k.lock);

    // Both read the killed delivery's note before either writes its own.
    let first = adopt(lock).expect("the first takes it over");
    assert!(adopt(lock).is_none(), "the second does not");
    drop(first);

    let wait = Duration::from_millis(300);
    let first = DotLock::acquire(lock, mbox, wait).unwrap();
    assert!(first.left().is_some());
    let long_ago = SystemTime::now() - 2 * super::mbox::STALE_DOTLOCK;
    let file = fs::OpenOptions::new().write(true).open(lock).unwrap();
    file.set_modified(long_ago).unwrap();
    let second = DotLock::acquire(lock, mbox, wait);
    let why = second.err().expect("the second waits").to_string();
    assert!(why.contains("is locked"), "{why}");
    drop(first);

    k.deliver(Duration::from_secs(1)).unwrap();
    assert_eq!(fs::read(mbox).unwrap().len(), 2 * k.whole.len());
}

/// The killed delivery's pid now belongs to another live process: its
/// note says it held the dotlock file's lock, which is free, so the next
/// delivery takes the lock over at once and cuts the partial message. A
/// note that does not say so (an older version's) is judged by its pid,
/// and a live pid keeps it.
#[test]
fn a_killed_delivery_whose_pid_was_reused_is_still_taken_over() {
    use super::mbox::undo::{Note, adopt};
    let k = killed_after_one();
    let (mbox, lock) = (&k.mbox, &k.lock);
    let mut reused = note_in(lock);
    assert!(
        reused.held,
        "this version notes that it holds the file lock"
    );
    reused.pid = std::process::id() as i32; // alive: this test
    fs::write(lock, reused.to_line()).unwrap();

    let older = Note {
        held: false,
        ..reused.clone()
    };
    fs::write(lock, older.to_line()).unwrap();
    assert!(
        adopt(lock).is_none(),
        "a live pid keeps an older note's lock"
    );
    fs::write(lock, reused.to_line()).unwrap();

    k.deliver(Duration::from_millis(300))
        .expect("taken over without waiting for the lock to go stale");
    assert_eq!(
        fs::read(mbox).unwrap().len(),
        2 * k.whole.len(),
        "the partial message was cut"
    );
    assert!(!lock.exists());
}
