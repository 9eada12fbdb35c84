//! Tests of `[relay.limits]`: preset defaults, the relay's own keys over
//! them, and the errors.

use std::time::Duration;

use super::super::*;
use super::{err, ok};
use crate::quota::{Counted, Rate, Span, Window};

fn relay(extra: &str) -> RelayConfig {
    let text = format!("[[relay]]\nname = \"a\"\nhost = \"h.example\"\n{extra}");
    ok(&text).relays.remove(0)
}

#[test]
fn presets_give_their_published_numbers() {
    let ses = relay("provider = \"ses:us-east-1\"\n").limits.quota;
    assert_eq!(ses.recipients_per_transaction, Some(50));
    assert_eq!(
        ses.rate,
        Some(Rate {
            count: 1,
            per: Duration::from_secs(1),
            burst: 1
        })
    );
    let brevo = relay("provider = \"brevo\"\n").limits.quota;
    let day = |max| Window {
        span: Span::Day,
        counts: Counted::Recipients,
        max,
    };
    assert_eq!(brevo.windows, vec![day(300)]);
    assert_eq!(
        relay("provider = \"gmail\"\n").limits.quota.windows,
        vec![day(500)]
    );
    let plain = relay("").limits;
    assert!(!plain.quota.counts_anything());
    assert_eq!(plain.quota.recipients_per_transaction, None);
    assert_eq!(plain.quota.account, "a");
    assert_eq!(plain.cool_down, Duration::from_secs(900));
}

#[test]
fn own_keys_override_the_preset_and_zero_turns_one_off() {
    let l = relay(
        "provider = \"brevo\"\n[relay.limits]\nrecipients_per_day = 0\nmessages_per_hour = 20\n\
         rate = \"30/min\"\nrecipients_per_transaction = 10\naccount = \"shared\"\n\
         throttle_replies = [\"  4.7.0 Slow Down \"]\ncool_down = \"2s\"\n",
    )
    .limits;
    let q = &l.quota;
    assert_eq!(q.account, "shared");
    assert_eq!(
        q.windows,
        vec![Window {
            span: Span::Hour,
            counts: Counted::Messages,
            max: 20
        }]
    );
    assert_eq!(
        q.rate.map(|r| (r.count, r.per.as_secs(), r.burst)),
        Some((30, 60, 1))
    );
    assert_eq!(q.recipients_per_transaction, Some(10));
    assert_eq!(l.throttle_replies, vec!["4.7.0 slow down".to_owned()]);
    assert_eq!(l.cool_down, Duration::from_secs(2));
    let ses = relay("provider = \"ses:us-east-1\"\n[relay.limits]\nrate = \"off\"\n");
    assert_eq!(ses.limits.quota.rate, None);
    let burst = relay("[relay.limits]\nrate = \"14/s\"\nburst = 3\n");
    assert_eq!(
        burst.limits.quota.rate.map(|r| (r.count, r.burst)),
        Some((14, 3))
    );
}

#[test]
fn the_account_defaults_to_the_login_at_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let files = super::relay::Files::new(dir.path());
    let pw = files.secret("pw", "secret\n");
    let text = format!(
        "[[relay]]\nname = \"a\"\nhost = \"h.example\"\nusername = \"u\"\npassword_file = \"{}\"\n",
        pw.display()
    );
    assert_eq!(ok(&text).relays[0].limits.quota.account, "u@h.example");
}

#[test]
fn bad_values_say_what_to_write() {
    let base = "[[relay]]\nname = \"a\"\nhost = \"h.example\"\n";
    let two = "[[relay]]\nname = \"b\"\nhost = \"b.example\"\n";
    for (limits, want) in [
        ("rate = \"fast\"", "write messages per unit of time"),
        ("rate = \"0/s\"", "whole number from 1 up"),
        ("rate = \"3/day\"", "unknown unit of time"),
        ("rate = \"3/s\"\nburst = 0", "at least 1"),
        ("spill_to = \"a\"", "is this relay itself"),
        (
            "spill_to = \"nope\"",
            "not a [[relay]] name (the relays are: a, b)",
        ),
        ("cool_down = \"2d\"", "between 1 second and 1 day"),
        ("throttle_replies = [\" \"]", "would match every reply"),
        ("account = \"\"", "must name the provider account"),
        ("per_day = 3", "unknown"),
    ] {
        let e = err(&format!("{base}[relay.limits]\n{limits}\n{two}")).to_string();
        assert!(e.contains(want), "{limits}: {e}");
    }
}
