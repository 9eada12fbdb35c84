use postrelay_smtp::reply::Reply;

use super::*;
use crate::deliver::Phase;

fn attempt(outcomes: Vec<Outcome>) -> Attempt {
    Attempt {
        outcomes: outcomes.into_iter().enumerate().collect(),
        ..Attempt::nothing()
    }
}

#[test]
fn an_attempt_is_summed_up_with_its_failed_step() {
    let ok = Outcome::Delivered(Reply::new(250, "2.0.0", "Ok: queued as ABC"));
    let t = Tracked::of(&attempt(vec![ok.clone()]));
    assert_eq!(t.state, TrackState::Delivered);
    assert_eq!(t.reply.as_deref(), Some("250 2.0.0 Ok: queued as ABC"));

    let auth = Outcome::Deferred(Reason::Auth("535 no".into()));
    let t = Tracked::of(&attempt(vec![ok.clone(), auth]));
    assert_eq!(
        (t.state, t.step.as_deref()),
        (TrackState::Deferred, Some("AUTH"))
    );

    let rcpt = Reason::Reply {
        phase: Phase::Rcpt,
        reply: Reply::new(550, "5.1.1", "no such user"),
    };
    let t = Tracked::of(&attempt(vec![Outcome::Failed(rcpt)]));
    assert_eq!(
        (t.state, t.step.as_deref()),
        (TrackState::Bounced, Some("RCPT TO"))
    );
    assert!(t.reason.unwrap().contains("no such user"));
}

#[test]
fn the_tracker_forgets_the_oldest_beyond_its_capacity() {
    let tracker = Tracker::default();
    let ids: Vec<QueueId> = (0..=CAPACITY).map(|_| QueueId::generate()).collect();
    for id in &ids {
        tracker.record(*id, Tracked::bare(TrackState::Delivered));
    }
    // Recording the same message again keeps one entry.
    tracker.record(ids[CAPACITY], Tracked::bare(TrackState::Deferred));
    assert_eq!(tracker.get(&ids[0]), None);
    assert_eq!(
        tracker.get(&ids[1]).map(|t| t.state),
        Some(TrackState::Delivered)
    );
    assert_eq!(
        tracker.get(&ids[CAPACITY]).map(|t| t.state),
        Some(TrackState::Deferred)
    );
    assert_eq!(tracker.lock().by_id.len(), CAPACITY);
    assert_eq!(tracker.lock().order.len(), CAPACITY);
}
