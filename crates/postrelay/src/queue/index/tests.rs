//! The index's running totals against a count of its entries.

use super::*;

fn brute(index: &Index) -> (u64, u64, u64) {
    let (mut hold, mut active, mut waiting) = (0, 0, 0);
    for e in index.entries.values() {
        match (e.held, e.in_flight) {
            (true, _) => hold += 1,
            (false, true) => active += 1,
            (false, false) => waiting += 1,
        }
    }
    (hold, active, waiting)
}

/// Every kind of change, many times over: the totals `stats` reports stay
/// those of a full count.
#[test]
fn stats_totals_follow_every_change() {
    let ids: Vec<QueueId> = (0..50).map(|_| QueueId::generate()).collect();
    let mut index = Index::from_found(ids.iter().enumerate().map(|(i, &id)| Found {
        id,
        location: if i % 5 == 0 {
            Location::Hold
        } else {
            Location::Queue
        },
        next_attempt_ms: i as u64,
    }));
    let mut seen_active = false;
    for step in 0..2_000usize {
        let id = ids[(step * 31 + step / 7) % ids.len()];
        match step % 6 {
            0 => {
                index.take(&id);
            }
            1 => index.update(&id, |e| e.held = !e.held),
            2 => index.update(&id, |e| e.in_flight = false),
            3 => {
                index.forget(&id);
            }
            4 => index.insert(
                id,
                Entry {
                    held: step % 4 == 0,
                    due_ms: step as u64,
                    in_flight: step % 3 == 0,
                },
            ),
            _ => {
                let _ = index.take(&id);
            }
        }
        let stats = index.stats();
        let want = brute(&index);
        assert_eq!(
            (stats.hold, stats.active, stats.waiting),
            want,
            "step {step}"
        );
        seen_active |= want.1 > 0;
    }
    assert!(seen_active, "the walk never had a message in flight");
}
