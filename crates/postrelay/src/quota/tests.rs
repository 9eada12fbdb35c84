//! The local store with an injected clock: the bucket, the windows, the
//! all-or-nothing charge and the cool-down.

use std::time::{Duration, SystemTime};

use super::*;

const T0: u64 = 1_800_000_000;

fn at(secs: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0) + Duration::from_secs_f64(secs)
}

fn rate(count: u32, burst: u32) -> Limits {
    Limits {
        account: "a".into(),
        rate: Some(Rate {
            count,
            per: Duration::from_secs(1),
            burst,
        }),
        ..Limits::default()
    }
}

fn window(span: Span, counts: Counted, max: u32) -> Window {
    Window { span, counts, max }
}

fn windows(ws: &[Window]) -> Limits {
    Limits {
        account: "a".into(),
        windows: ws.to_vec(),
        ..Limits::default()
    }
}

/// `account` takes `messages` and `recipients` at `now`.
fn try_take(
    s: &LocalStore,
    account: &str,
    limits: &Limits,
    messages: u32,
    recipients: u32,
    now: SystemTime,
) -> Result<Verdict, QuotaError> {
    s.take(&Take {
        account,
        limits,
        messages,
        recipients,
        now,
    })
}

fn take(s: &LocalStore, l: &Limits, m: u32, r: u32, t: SystemTime) -> Verdict {
    try_take(s, "a", l, m, r, t).expect("fits")
}

#[test]
fn bucket_allows_the_burst_then_one_per_interval() {
    let s = LocalStore::default();
    let l = rate(2, 3);
    for _ in 0..3 {
        assert_eq!(take(&s, &l, 1, 1, at(0.0)), Verdict::Granted);
    }
    // The fourth waits for one token: half a second at 2/s.
    match take(&s, &l, 1, 1, at(0.0)) {
        Verdict::Wait { until, limit } => {
            assert_eq!(until, at(0.5));
            assert!(matches!(limit, Limit::Rate(_)));
        }
        v => panic!("{v:?}"),
    }
    assert_eq!(take(&s, &l, 1, 1, at(0.5)), Verdict::Granted);
    assert!(matches!(take(&s, &l, 1, 1, at(0.5)), Verdict::Wait { .. }));
    // After a quiet spell the whole burst is back, not more.
    for _ in 0..3 {
        assert_eq!(take(&s, &l, 1, 1, at(10.0)), Verdict::Granted);
    }
    assert!(matches!(take(&s, &l, 1, 1, at(10.0)), Verdict::Wait { .. }));
}

#[test]
fn bucket_usage_counts_spent_tokens_and_says_when_one_is_back() {
    let s = LocalStore::default();
    let l = rate(1, 2);
    take(&s, &l, 1, 1, at(0.0));
    take(&s, &l, 1, 1, at(0.0));
    let u = s.usage("a", &l, at(0.25));
    assert_eq!((u.limits[0].used, u.limits[0].max), (2, 2));
    assert_eq!(u.limits[0].frees_at, Some(at(1.0)));
    let u = s.usage("a", &l, at(5.0));
    assert_eq!((u.limits[0].used, u.limits[0].frees_at), (0, None));
}

#[test]
fn window_frees_exactly_a_span_after_the_oldest_charges() {
    let s = LocalStore::default();
    let w = window(Span::Hour, Counted::Messages, 3);
    let l = windows(&[w]);
    assert_eq!(take(&s, &l, 1, 9, at(0.0)), Verdict::Granted);
    assert_eq!(take(&s, &l, 1, 9, at(100.0)), Verdict::Granted);
    assert_eq!(take(&s, &l, 1, 9, at(200.0)), Verdict::Granted);
    let want = Verdict::Wait {
        until: at(3600.0),
        limit: Limit::Window(w),
    };
    assert_eq!(take(&s, &l, 1, 9, at(300.0)), want);
    assert_eq!(take(&s, &l, 1, 9, at(3599.0)), want);
    assert_eq!(take(&s, &l, 1, 9, at(3600.0)), Verdict::Granted);
    let u = s.usage("a", &l, at(3600.0));
    assert_eq!(u.limits[0].used, 3);
    assert_eq!(u.limits[0].frees_at, Some(at(3700.0)));
}

#[test]
fn recipients_window_waits_until_enough_has_freed() {
    let s = LocalStore::default();
    let w = window(Span::Day, Counted::Recipients, 10);
    let l = windows(&[w]);
    assert_eq!(take(&s, &l, 1, 4, at(0.0)), Verdict::Granted);
    assert_eq!(take(&s, &l, 1, 4, at(1000.0)), Verdict::Granted);
    // 8 used; 7 more fit only when both charges are gone, 5 when one is.
    match take(&s, &l, 1, 5, at(2000.0)) {
        Verdict::Wait { until, .. } => assert_eq!(until, at(86_400.0)),
        v => panic!("{v:?}"),
    }
    match take(&s, &l, 1, 7, at(2000.0)) {
        Verdict::Wait { until, .. } => assert_eq!(until, at(86_400.0 + 1000.0)),
        v => panic!("{v:?}"),
    }
    // 2 more fit now.
    assert_eq!(take(&s, &l, 1, 2, at(2000.0)), Verdict::Granted);
}

#[test]
fn nothing_is_charged_when_one_limit_says_wait() {
    let s = LocalStore::default();
    let msgs = window(Span::Hour, Counted::Messages, 10);
    let rcpts = window(Span::Hour, Counted::Recipients, 5);
    let l = windows(&[msgs, rcpts]);
    assert_eq!(take(&s, &l, 1, 5, at(0.0)), Verdict::Granted);
    for _ in 0..5 {
        assert!(matches!(take(&s, &l, 1, 1, at(1.0)), Verdict::Wait { .. }));
    }
    let u = s.usage("a", &l, at(2.0));
    assert_eq!(u.limits[0].used, 1, "the message window was charged: {u:?}");
}

#[test]
fn the_longest_wait_is_reported() {
    let s = LocalStore::default();
    let w = window(Span::Day, Counted::Messages, 1);
    let mut l = rate(1, 1);
    l.windows.push(w);
    assert_eq!(take(&s, &l, 1, 1, at(0.0)), Verdict::Granted);
    match take(&s, &l, 1, 1, at(0.0)) {
        Verdict::Wait { until, limit } => {
            assert_eq!(until, at(86_400.0));
            assert_eq!(limit, Limit::Window(w));
        }
        v => panic!("{v:?}"),
    }
}

#[test]
fn a_request_larger_than_a_limit_is_an_error_not_a_wait() {
    let s = LocalStore::default();
    let l = windows(&[window(Span::Day, Counted::Recipients, 10)]);
    let e = try_take(&s, "a", &l, 1, 11, at(0.0)).expect_err("never fits");
    assert!(
        e.to_string()
            .contains("11 is more than 10 recipients per day"),
        "{e}"
    );
}

#[test]
fn accounts_are_counted_apart() {
    let s = LocalStore::default();
    let l = windows(&[window(Span::Day, Counted::Messages, 1)]);
    assert_eq!(try_take(&s, "a", &l, 1, 1, at(0.0)), Ok(Verdict::Granted));
    assert_eq!(try_take(&s, "b", &l, 1, 1, at(0.0)), Ok(Verdict::Granted));
    assert!(matches!(
        try_take(&s, "a", &l, 1, 1, at(0.0)),
        Ok(Verdict::Wait { .. })
    ));
}

#[test]
fn cool_down_holds_everything_until_it_ends_and_only_lengthens() {
    let s = LocalStore::default();
    let l = Limits::default();
    s.cool_down("a", at(60.0), "550 5.4.5 Daily user sending limit exceeded");
    s.cool_down("a", at(30.0), "shorter");
    match take(&s, &l, 1, 1, at(1.0)) {
        Verdict::Wait { until, limit } => {
            assert_eq!(until, at(60.0));
            assert!(limit.to_string().contains("5.4.5"), "{limit}");
        }
        v => panic!("{v:?}"),
    }
    let u = s.usage("a", &l, at(1.0));
    assert_eq!(u.cooling().map(|c| c.1), Some(at(60.0)));
    assert_eq!(take(&s, &l, 1, 1, at(60.0)), Verdict::Granted);
    assert_eq!(s.usage("a", &l, at(60.0)).cooling(), None);
}

#[test]
fn close_charges_share_an_entry_that_expires_with_the_latest() {
    let s = LocalStore::default();
    let l = windows(&[window(Span::Day, Counted::Messages, 2)]);
    take(&s, &l, 1, 1, at(0.0));
    take(&s, &l, 1, 1, at(10.0));
    // Both in one entry, freed with the later one: never early.
    match take(&s, &l, 1, 1, at(20.0)) {
        Verdict::Wait { until, .. } => assert_eq!(until, at(86_410.0)),
        v => panic!("{v:?}"),
    }
}

#[test]
fn chunk_size_is_the_smallest_of_the_transaction_and_recipient_windows() {
    let mut l = windows(&[window(Span::Day, Counted::Recipients, 30)]);
    l.recipients_per_transaction = Some(50);
    assert_eq!(l.chunk_size(), 30);
    l.windows.clear();
    assert_eq!(l.chunk_size(), 50);
    l.recipients_per_transaction = None;
    assert_eq!(l.chunk_size(), usize::MAX);
}
