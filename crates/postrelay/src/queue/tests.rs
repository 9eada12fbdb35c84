//! Scheduling rules of the queue index, against a real spool in a tempdir.

use std::io::Write;
use std::sync::Arc;

use super::*;
use crate::config::LogFormat;
use crate::spool::{Committer, Envelope, Origin, Recipient};

struct Fixture {
    _dir: tempfile::TempDir,
    queue: Queue,
    committer: Committer,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let log = MailLog::with_writer(Box::new(std::io::sink()), "h", LogFormat::Postfix);
    let queue = Queue::load(spool.clone(), Arc::new(log)).unwrap();
    let committer = Committer::start(spool);
    Fixture {
        _dir: dir,
        queue,
        committer,
    }
}

/// Queues a message due at `due_ms`.
async fn add(f: &Fixture, due_ms: u64) -> QueueId {
    let spool = f.queue.spool().clone();
    let mut body = spool.new_body().unwrap();
    body.write_all(b"Subject: t\r\n\r\nhi\r\n").unwrap();
    let mut env = Envelope::new(
        *body.id(),
        Origin::Bounce { of: None },
        String::new(),
        vec![Recipient::new("a@b.example")],
    );
    env.next_attempt_ms = due_ms;
    let staged = spool.stage(body, &env).unwrap();
    let id = f.committer.commit(staged).await.unwrap();
    f.queue.accepted(&env);
    id
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
        f.queue.finish_attempt(&env, false).unwrap(),
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
        f.queue.finish_attempt(&env, true).unwrap(),
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
    f.queue.finish_attempt(&env, false).unwrap();
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
        f.queue.finish_attempt(&env, false).unwrap(),
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
    f.queue.finish_attempt(&env, false).unwrap();
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
        f.queue.finish_attempt(&env, true),
        Ok(AfterAttempt::Removed)
    ));
    assert_eq!(f.queue.len(), 0);
    assert_eq!(f.queue.next_due(), None);
}
