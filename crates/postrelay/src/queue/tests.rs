//! Scheduling rules of the queue index, and the one door
//! ([`Queue::accept`]), against a real spool in a tempdir.

use std::io::Write;
use std::sync::Arc;

use super::*;
use crate::config::LogFormat;
use crate::spool::{Envelope, Location, Origin, Recipient, SpoolOptions};

struct Fixture {
    dir: tempfile::TempDir,
    queue: Queue,
}

fn fixture() -> Fixture {
    fixture_with(None, SpoolOptions::default())
}

/// A queue whose router expands `aliases` (a Postfix aliases file) for
/// the local domain `h.example`, on a spool opened with `options`.
fn fixture_with(aliases: Option<&str>, options: SpoolOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = format!(
        "hostname = \"h.example\"\nspool = \"{}\"\n",
        dir.path().join("spool").display()
    );
    if let Some(text) = aliases {
        let path = dir.path().join("aliases");
        std::fs::write(&path, text).unwrap();
        toml.push_str(&format!("[routing]\naliases = \"{}\"\n", path.display()));
    }
    let config = crate::config::parse(&toml, "test").unwrap();
    let spool = Spool::open_with(&config.spool, options).unwrap();
    let log = MailLog::with_writer(Box::new(std::io::sink()), "h", LogFormat::Postfix);
    let queue = Queue::load(spool, Arc::new(log), Arc::new(config.router())).unwrap();
    Fixture { dir, queue }
}

/// A queue on a spool whose file operations a test can make fail.
fn faulty_fixture() -> (Fixture, Arc<crate::spool::faults::FaultyFs>) {
    let fs = Arc::new(crate::spool::faults::FaultyFs::new([]));
    let options = SpoolOptions {
        file_ops: fs.clone(),
        ..SpoolOptions::default()
    };
    (fixture_with(None, options), fs)
}

/// Queues a message to `rcpts` due at `due_ms`, through the one door.
async fn accept(f: &Fixture, due_ms: u64, rcpts: &[&str]) -> Envelope {
    let mut body = f.queue.new_body().unwrap();
    body.write_all(b"Subject: t\r\n\r\nhi\r\n").unwrap();
    let mut env = Envelope::new(
        *body.id(),
        Origin::Bounce { of: None },
        String::new(),
        rcpts.iter().map(|r| Recipient::new(*r)).collect(),
    );
    env.next_attempt_ms = due_ms;
    let id = f.queue.accept(body, env).await.unwrap();
    f.queue.spool().read(&id).unwrap().0
}

/// Queues a message due at `due_ms`.
async fn add(f: &Fixture, due_ms: u64) -> QueueId {
    accept(f, due_ms, &["a@b.example"]).await.id
}

#[tokio::test]
async fn accept_expands_aliases_and_keeps_the_original_address() {
    let f = fixture_with(
        Some("root: admin@example.com, ops@example.net\npostmaster: root\n"),
        SpoolOptions::default(),
    );
    let env = accept(&f, 0, &["postmaster@h.example", "x@example.org"]).await;
    let got: Vec<(&str, Option<&str>)> = env
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.original.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("admin@example.com", Some("postmaster@h.example")),
            ("ops@example.net", Some("postmaster@h.example")),
            ("x@example.org", None),
        ]
    );
    // What was queued on disk (`env`) is the expanded envelope, and it is
    // indexed.
    assert_eq!(f.queue.len(), 1);
}

#[tokio::test]
async fn a_new_router_applies_to_messages_accepted_after_it() {
    let f = fixture_with(Some("root: admin@example.com\n"), SpoolOptions::default());
    let before = accept(&f, 0, &["root@h.example"]).await;
    assert_eq!(before.recipients[0].address, "admin@example.com");
    let plain = crate::config::parse("hostname = \"h.example\"\n", "test").unwrap();
    f.queue.set_router(Arc::new(plain.router()));
    let after = accept(&f, 0, &["root@h.example"]).await;
    assert_eq!(after.recipients[0].address, "root@h.example");
}

/// A removal that fails (the disk refuses) must not leave the message in
/// flight for ever: it is due again at the fault retry time.
#[tokio::test]
async fn a_failed_removal_is_retried_at_the_fault_time() {
    use crate::spool::faults::{Fault, Op};
    let (f, fs) = faulty_fixture();
    let id = add(&f, 0).await;
    let (_, env) = f.queue.take_due(1).map(|(id, e)| (id, e.unwrap())).unwrap();
    assert_eq!(env.id, id);
    fs.arm(Fault::eio(Op::Rename, ".env"));
    fs.arm(Fault::eio(Op::Remove, ".env"));
    assert!(f.queue.finish_attempt(&env, true, 123_456).is_err());
    fs.disarm();
    let entry = f.queue.entry(&id).expect("still queued");
    assert!(!entry.in_flight);
    assert_eq!(entry.due_ms, 123_456);
}

/// After a hold whose directory fsync failed, the rename stands on disk;
/// the index follows the disk instead of drifting until a restart.
#[tokio::test]
async fn a_half_failed_hold_leaves_index_and_disk_agreeing() {
    use crate::spool::faults::{Fault, Op};
    let (f, fs) = faulty_fixture();
    let id = add(&f, 0).await;
    fs.arm(Fault::eio(Op::SyncDir, "/hold"));
    assert!(f.queue.hold(&id).is_err());
    fs.disarm();
    let (_, loc) = f.queue.spool().read(&id).unwrap();
    assert_eq!(loc, Location::Hold, "the rename was done");
    assert!(f.queue.entry(&id).unwrap().held, "and the index says so");
    assert_eq!(f.queue.take_due(u64::MAX), None);
}

#[tokio::test]
async fn delete_all_deletes_what_was_queued() {
    let f = fixture();
    for _ in 0..5 {
        add(&f, 0).await;
    }
    let held = add(&f, 0).await;
    f.queue.hold(&held).unwrap();
    assert_eq!(f.queue.delete_all().unwrap(), Count(6));
    assert!(f.queue.is_empty());
    assert!(f.queue.spool().list().unwrap().is_empty());
    let _ = &f.dir;
}

#[tokio::test]
async fn due_messages_come_out_in_due_order_once() {
    let f = fixture();
    let late = add(&f, 3_000).await;
    let early = add(&f, 1_000).await;
    assert_eq!(
        f.queue.take_due(500).map(|(id, _)| id),
        None,
        "nothing is due yet"
    );
    assert_eq!(f.queue.next_due(), Some(1_000));
    assert_eq!(f.queue.take_due(5_000).map(|(id, _)| id), Some(early));
    assert_eq!(f.queue.take_due(5_000).map(|(id, _)| id), Some(late));
    assert_eq!(
        f.queue.take_due(5_000),
        None,
        "in-flight messages are not handed out twice"
    );
    assert!(f.queue.entry(&early).unwrap().in_flight);
}

/// The daemon loads its queue from what recovery found (no second read of
/// the envelopes): every message, held ones held, each due when its
/// envelope says.
#[tokio::test]
async fn a_queue_loaded_from_recovery_schedules_what_is_on_disk() {
    let f = fixture();
    let late = add(&f, 3_000).await;
    let early = add(&f, 1_000).await;
    let held = add(&f, 0).await;
    f.queue.hold(&held).unwrap();
    f.queue.shutdown();
    let spool = f.queue.spool().clone();
    let found = spool.recover().unwrap().found;
    let log = MailLog::with_writer(Box::new(std::io::sink()), "h", LogFormat::Postfix);
    let router = Arc::new(
        crate::config::parse("hostname = \"h.example\"\n", "t")
            .unwrap()
            .router(),
    );
    let queue = Queue::load_recovered(spool, found, Arc::new(log), router);
    assert_eq!(queue.len(), 3);
    assert!(queue.entry(&held).unwrap().held);
    assert_eq!(queue.next_due(), Some(1_000));
    let order: Vec<QueueId> =
        std::iter::from_fn(|| queue.take_due(5_000).map(|(id, _)| id)).collect();
    assert_eq!(order, [early, late]);
}

#[tokio::test]
async fn held_messages_are_never_due_until_released() {
    let f = fixture();
    let id = add(&f, 0).await;
    f.queue.hold(&id).unwrap();
    assert_eq!(f.queue.take_due(u64::MAX).map(|(id, _)| id), None);
    f.queue.release(&id).unwrap();
    assert_eq!(f.queue.take_due(u64::MAX).map(|(id, _)| id), Some(id));
}

#[tokio::test]
async fn flush_makes_waiting_messages_due_now() {
    let f = fixture();
    let id = add(&f, u64::MAX - 1).await;
    assert_eq!(f.queue.take_due(now_ms()), None);
    assert_eq!(f.queue.flush(), Count(1));
    assert_eq!(
        f.queue.take_due(now_ms() + 1_000).map(|(id, _)| id),
        Some(id)
    );
}

#[tokio::test]
async fn finishing_an_attempt_reschedules_or_removes() {
    let f = fixture();
    let id = add(&f, 0).await;
    assert_eq!(f.queue.take_due(1).map(|(id, _)| id), Some(id));
    let (mut env, _) = f.queue.spool().read(&id).unwrap();
    env.next_attempt_ms = 10_000;
    env.attempts = 1;
    assert_eq!(
        f.queue.finish_attempt(&env, false, 0).unwrap(),
        AfterAttempt::RetryAt(10_000)
    );
    assert_eq!(
        f.queue.spool().read(&id).unwrap().0.attempts,
        1,
        "the envelope was rewritten"
    );
    assert_eq!(f.queue.take_due(9_999).map(|(id, _)| id), None);
    assert_eq!(f.queue.take_due(10_000).map(|(id, _)| id), Some(id));
    assert_eq!(
        f.queue.finish_attempt(&env, true, 0).unwrap(),
        AfterAttempt::Removed
    );
    assert!(f.queue.is_empty());
    assert!(matches!(
        f.queue.spool().read(&id),
        Err(SpoolError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_message_held_during_its_attempt_stays_held() {
    let f = fixture();
    let id = add(&f, 0).await;
    assert_eq!(f.queue.take_due(1).map(|(id, _)| id), Some(id));
    f.queue.hold(&id).unwrap();
    let (mut env, loc) = f.queue.spool().read(&id).unwrap();
    assert_eq!(loc, Location::Hold);
    env.attempts = 1;
    f.queue.finish_attempt(&env, false, 0).unwrap();
    let (env, loc) = f.queue.spool().read(&id).unwrap();
    assert_eq!((env.attempts, loc), (1, Location::Hold));
    assert_eq!(f.queue.take_due(u64::MAX).map(|(id, _)| id), None);
}

#[tokio::test]
async fn a_message_deleted_during_its_attempt_stays_deleted() {
    let f = fixture();
    let id = add(&f, 0).await;
    assert_eq!(f.queue.take_due(1).map(|(id, _)| id), Some(id));
    let (env, _) = f.queue.spool().read(&id).unwrap();
    f.queue.delete(&id).unwrap();
    assert_eq!(
        f.queue.finish_attempt(&env, false, 0).unwrap(),
        AfterAttempt::Removed
    );
    assert!(matches!(
        f.queue.spool().read(&id),
        Err(SpoolError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_fresh_envelope_comes_with_its_first_attempt_only() {
    let f = fixture();
    let id = add(&f, 0).await;
    let (got, fresh) = f.queue.take_due(1).unwrap();
    assert_eq!(got, id);
    let fresh = fresh.expect("accepted by this process: no file read needed");
    assert_eq!(fresh.id, id);
    let (mut env, _) = f.queue.spool().read(&id).unwrap();
    env.next_attempt_ms = 5;
    f.queue.finish_attempt(&env, false, 0).unwrap();
    let (_, again) = f.queue.take_due(10).unwrap();
    assert!(
        again.is_none(),
        "later attempts read the rewritten envelope from disk"
    );
}

/// A message whose envelope vanished from disk during its attempt (a
/// removal that failed halfway, a hand-made rm) is forgotten, not retried
/// every minute for ever.
#[tokio::test]
async fn a_message_gone_from_disk_is_forgotten_at_the_end_of_its_attempt() {
    let f = fixture();
    let id = add(&f, 0).await;
    let (taken, _) = f.queue.take_due(now_ms()).unwrap();
    assert_eq!(taken, id);
    let (env, _) = f.queue.spool().read(&id).unwrap();
    let path = f
        .queue
        .spool()
        .root()
        .join("queue")
        .join(id.envelope_name());
    std::fs::remove_file(path).unwrap();
    assert!(matches!(
        f.queue.finish_attempt(&env, true, 0),
        Ok(AfterAttempt::Removed)
    ));
    assert_eq!(f.queue.len(), 0);
    assert_eq!(f.queue.next_due(), None);
}

/// The order behind the README's guarantee, for each `queue.sync` mode, as
/// the file operations happen (a recording seam: kill -9 cannot show a
/// missing sync, the page cache survives it). With `files` the body and
/// the envelope are written and each `fdatasync`ed, then the envelope is
/// renamed into queue/ and queue/ is synced; with `filesystem` (the
/// default) the envelope is renamed into queue/ as soon as it is written,
/// and one `syncfs` makes all of it durable; with `journal` one flush of
/// the journal does. Only then does `accept` return (the caller's 250).
#[tokio::test]
async fn accept_makes_body_and_envelope_durable_before_it_returns() {
    use crate::spool::SyncMode;
    use crate::spool::recording::RecordingFs;
    let staging = |sync: bool| {
        let mut v = vec!["create queue/ID.msg", "write queue/ID.msg"];
        if sync {
            v.push("fdatasync queue/ID.msg");
        }
        v.extend(["create tmp/ID.env", "write tmp/ID.env"]);
        if sync {
            v.push("fdatasync tmp/ID.env");
        }
        v
    };
    let commit = [
        "rename tmp/ID.env queue/ID.env",
        "fsync queue",
        "accept returned",
    ];
    let files = [staging(true), commit.to_vec()].concat();
    let filesystem = [
        staging(false),
        vec![
            "rename tmp/ID.env queue/ID.env",
            "syncfs lock",
            "accept returned",
        ],
    ]
    .concat();
    // The journal: one data-only flush, then the rename with no sync.
    let journal = [
        staging(false),
        vec![
            "write journal",
            "fdatasync journal",
            "rename tmp/ID.env queue/ID.env",
            "accept returned",
        ],
    ]
    .concat();
    for (sync, want) in [
        (SyncMode::Files, files),
        (SyncMode::Filesystem, filesystem),
        (SyncMode::Journal, journal),
    ] {
        let fs = Arc::new(RecordingFs::default());
        let options = SpoolOptions {
            file_ops: fs.clone(),
            sync,
            ..SpoolOptions::default()
        };
        let f = fixture_with(None, options);
        // Whatever opening the spool did is not this message's business.
        fs.clear();
        let env = accept(&f, 0, &["a@b.example"]).await;
        fs.mark("accept returned");
        let id = env.id.to_string();
        let mut got = fs.take(f.queue.spool().root(), &id);
        // A journal checkpoint (syncfs, header write, flush) may follow
        // the answer, before the mark: not part of the commit.
        if sync == SyncMode::Journal
            && let Some(at) = got.iter().position(|e| e.starts_with("rename tmp/"))
        {
            let checkpoint = ["syncfs lock", "write journal", "fdatasync journal"];
            let mut i = 0;
            got.retain(|e| {
                i += 1;
                i <= at + 1 || !checkpoint.contains(&e.as_str())
            });
        }
        assert_eq!(got, want, "queue.sync = {sync:?}");
    }
}

/// The scheduler runs at most `max_workers` attempts at once: with one
/// worker, and the first attempt connected to a relay that never
/// greets, the other due message is not taken (its worker slot is the
/// attempt's until the attempt ends).
#[tokio::test]
async fn the_scheduler_takes_no_message_beyond_its_workers() {
    let f = fixture();
    let ids = [add(&f, 0).await, add(&f, 0).await];
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let toml = format!(
        "hostname = \"h.example\"\nspool = \"{}\"\n[[relay]]\nname = \"r\"\n\
         host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n",
        f.dir.path().join("spool").display(),
        relay.local_addr().unwrap().port()
    );
    let config = crate::config::parse(&toml, "test").unwrap();
    let resolver = Arc::new(crate::net::resolve::Resolver::system());
    let deliverer = crate::deliver::Deliverer::new(&config, None, resolver).unwrap();
    let (_config_tx, config_rx) = tokio::sync::watch::channel(Arc::new(config));
    let (_deliverer_tx, deliverer_rx) = tokio::sync::watch::channel(deliverer);
    let ctx = Arc::new(worker::Context {
        queue: f.queue.clone(),
        config: config_rx,
        deliverer: deliverer_rx,
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let scheduler = tokio::spawn(scheduler::run(
        f.queue.clone(),
        ctx,
        1,
        shutdown.clone(),
        tracker.clone(),
    ));
    let (held, _) = tokio::time::timeout(std::time::Duration::from_secs(30), relay.accept())
        .await
        .expect("no delivery attempt reached the relay within 30 s")
        .unwrap();
    let in_flight = ids
        .iter()
        .filter(|id| f.queue.entry(id).unwrap().in_flight)
        .count();
    assert_eq!(in_flight, 1, "one worker, one message in flight");
    shutdown.cancel();
    drop(relay);
    drop(held);
    scheduler.await.unwrap();
    tracker.close();
    tracker.wait().await;
}
