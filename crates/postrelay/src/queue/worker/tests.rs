//! The mail log lines and envelope entries that an attempt's outcomes
//! make: one per recipient, each with its own reply's text.

use super::*;
use crate::config::LogFormat;
use crate::maillog::tests::{Sink, events, log};

/// The text of each line after its program tag, with the delays
/// (which depend on the clock) as `D`.
fn lines(sink: &Sink) -> Vec<String> {
    events(sink)
        .into_iter()
        .map(|(_, text)| {
            let (head, tail) = text.split_once("delay=").expect("delay=");
            let tail = tail.split_once(", dsn=").expect("dsn=").1;
            format!("{head}delay=D, dsn={tail}")
        })
        .collect()
}

#[test]
fn ten_recipients_of_one_transaction_get_a_line_each_with_their_reply() {
    let (log, sink) = log(LogFormat::Postfix);
    let rcpts = (0..10)
        .map(|i| Recipient::new(format!("r{i}@dest.example")))
        .collect();
    let mut env = Envelope::new(
        QueueId::generate(),
        Origin::Bounce { of: None },
        String::new(),
        rcpts,
    );
    let queued = Reply::new(250, "2.0.0", "Ok: queued as 4XyZ");
    let mut result = Attempt::nothing();
    result.outcomes = (0..10)
        .map(|i| match i {
            // Another reply in between (a local mailbox's, say), and the
            // first one again after it.
            8 => (i, Outcome::Delivered(Reply::new(250, "", "delivered"))),
            _ => (i, Outcome::Delivered(queued.clone())),
        })
        .collect();
    result.relay = "smtp.example.com[192.0.2.7]:587".into();
    let now = now_ms();
    let mut texts = ReplyTexts::default();
    for (index, outcome) in &result.outcomes {
        let rcpt = &mut env.recipients[*index];
        let (status, dsn, detail) = settle(rcpt, outcome, &mut texts);
        let line = LogLine {
            id: "ID",
            created_ms: now,
            started_ms: now,
            status,
            dsn: &dsn,
            detail: &detail,
        };
        line.write(&log, rcpt, &result, *index);
    }
    let want: Vec<String> = (0..10)
        .map(|i| {
            let reply = if i == 8 {
                "250 delivered"
            } else {
                "250 2.0.0 Ok: queued as 4XyZ"
            };
            format!(
                "ID: to=<r{i}@dest.example>, relay=smtp.example.com[192.0.2.7]:587, \
                 delay=D, dsn=2.0.0, status=sent ({reply})"
            )
        })
        .collect();
    assert_eq!(lines(&sink), want);
    for (i, r) in env.recipients.iter().enumerate() {
        assert_eq!(r.state, RcptState::Delivered);
        let reply = r.last_reply.as_deref();
        let want = if i == 8 {
            "250 delivered"
        } else {
            "250 2.0.0 Ok: queued as 4XyZ"
        };
        assert_eq!(reply, Some(want), "recipient {i}");
    }
}
