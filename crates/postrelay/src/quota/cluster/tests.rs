//! The parts of cluster mode that need no Redis: key names, the local
//! share, the switch between shared and local. Against a real
//! redis-server: `tests/cluster_store.rs` and `tests/cluster_nodes.rs`.

use std::time::Duration;

use super::fallback::{Mode, Route, scale};
use super::shared::escape;
use crate::quota::{Counted, Limits, Rate, Span, Window};

#[test]
fn account_names_cannot_break_out_of_their_key() {
    assert_eq!(escape("user@example.com"), "user@example.com");
    assert_eq!(escape("AKIA+x_y-z.1"), "AKIA+x_y-z.1");
    // A colon would start another part, a brace move the hash tag.
    assert_eq!(escape("a:b{c}"), "a%3Ab%7Bc%7D");
    assert_eq!(escape("50%"), "50%25");
    assert_eq!(escape("é"), "%C3%A9");
}

fn limits() -> Limits {
    Limits {
        account: "acct".into(),
        rate: Some(Rate {
            count: 30,
            per: Duration::from_secs(1),
            burst: 10,
        }),
        windows: vec![
            Window {
                span: Span::Hour,
                counts: Counted::Messages,
                max: 1000,
            },
            Window {
                span: Span::Day,
                counts: Counted::Recipients,
                max: 2,
            },
        ],
        recipients_per_transaction: Some(50),
    }
}

#[test]
fn a_third_share_is_a_third_of_every_limit_rounded_down_never_zero() {
    let s = scale(&limits(), 1.0 / 3.0);
    let rate = s.rate.unwrap();
    // 30 per second becomes 10 per second: 30 per 3 s.
    assert_eq!(rate.interval_nanos(), 100_000_000);
    assert_eq!(rate.burst, 3);
    assert_eq!(s.windows[0].max, 333);
    // A third of 2 is less than one: one, or the mail would wait forever.
    assert_eq!(s.windows[1].max, 1);
    assert_eq!(s.windows[1].span, Span::Day);
    assert_eq!(s.recipients_per_transaction, Some(50));
    assert_eq!(s.account, "acct");
    assert_eq!(scale(&limits(), 1.0), limits());
}

#[test]
fn redis_is_tried_once_per_retry_while_local() {
    let mode = Mode::new(Duration::from_secs(3600));
    assert!(mode.is_shared());
    assert_eq!(mode.route(), Route::Redis);
    mode.failed("ns", 0.5, "refused");
    assert!(!mode.is_shared());
    // The next try is an hour away: every request counts locally.
    for _ in 0..10 {
        assert_eq!(mode.route(), Route::Local);
    }
    mode.answered("ns");
    assert!(mode.is_shared());
    assert_eq!(mode.route(), Route::Redis);
}

#[test]
fn one_try_at_a_time_when_the_retry_is_due() {
    let mode = Mode::new(Duration::ZERO);
    mode.failed("ns", 0.5, "refused");
    // Due at once (retry 0), but only one request goes to Redis while its
    // answer is pending; the others count locally.
    assert_eq!(mode.route(), Route::Redis);
    assert_eq!(mode.route(), Route::Local);
    mode.failed("ns", 0.5, "refused again");
    assert_eq!(mode.route(), Route::Redis);
}
