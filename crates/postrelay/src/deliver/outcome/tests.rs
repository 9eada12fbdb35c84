//! Unit tests of the outcome classifier.

use super::*;

fn reply(code: u16, enhanced: &str) -> Reply {
    Reply::new(code, enhanced, "text")
}

#[test]
fn permanence_table() {
    let cases = [
        (
            Reason::Reply {
                phase: Phase::Rcpt,
                reply: reply(550, "5.1.1"),
            },
            true,
        ),
        (
            Reason::Reply {
                phase: Phase::Rcpt,
                reply: reply(450, "4.2.0"),
            },
            false,
        ),
        (
            Reason::Reply {
                phase: Phase::Mail,
                reply: reply(553, "5.1.8"),
            },
            true,
        ),
        (
            Reason::Reply {
                phase: Phase::DataEnd,
                reply: reply(554, "5.6.0"),
            },
            true,
        ),
        (
            Reason::Reply {
                phase: Phase::DataEnd,
                reply: reply(451, "4.3.0"),
            },
            false,
        ),
        // Session-level refusals wait for the operator, never bounce.
        (
            Reason::Reply {
                phase: Phase::Greeting,
                reply: reply(554, "5.7.1"),
            },
            false,
        ),
        (
            Reason::Reply {
                phase: Phase::Auth,
                reply: reply(535, "5.7.8"),
            },
            false,
        ),
        (
            Reason::Reply {
                phase: Phase::Ehlo,
                reply: reply(550, ""),
            },
            false,
        ),
        (Reason::Auth("535 bad".into()), false),
        (Reason::Tls("no STARTTLS".into()), false),
        (
            Reason::Timeout {
                phase: Phase::Greeting,
                after: Duration::from_secs(30),
            },
            false,
        ),
        (Reason::Connect("refused".into()), false),
        (Reason::Dns("NXDOMAIN".into()), false),
        (Reason::Protocol("garbage".into()), false),
        (Reason::Local("io".into()), false),
        (Reason::Unavailable("later".into()), false),
        (
            Reason::Unsendable {
                status: "5.6.7",
                detail: "needs SMTPUTF8".into(),
            },
            true,
        ),
        (Reason::Expired { last: None }, true),
        (Reason::UnknownUser("no local user \"bob\"".into()), true),
        (Reason::MailboxFull("disk full".into()), false),
        (
            Reason::Policy {
                status: "5.7.1".into(),
                text: "no".into(),
            },
            true,
        ),
        (
            Reason::Policy {
                status: "4.3.0".into(),
                text: "later".into(),
            },
            false,
        ),
    ];
    for (reason, permanent) in cases {
        assert_eq!(reason.is_permanent(), permanent, "{reason:?}");
        let outcome = Outcome::from_reason(reason.clone());
        assert_eq!(matches!(outcome, Outcome::Failed(_)), permanent);
    }
}

/// A reply at every phase: a 5xx bounces only when it answers the
/// transaction (MAIL, RCPT, DATA, end of data); at a session phase
/// (greeting, EHLO, TLS, AUTH, RSET, QUIT …) even a 5xx waits for the
/// operator. A 4xx never bounces.
#[test]
fn permanence_of_replies_at_every_phase() {
    const ALL: [Phase; 12] = [
        Phase::Resolve,
        Phase::Connect,
        Phase::Greeting,
        Phase::Ehlo,
        Phase::Tls,
        Phase::Auth,
        Phase::Mail,
        Phase::Rcpt,
        Phase::Data,
        Phase::DataEnd,
        Phase::Rset,
        Phase::Quit,
    ];
    for phase in ALL {
        // Exhaustive: a new phase does not compile until placed here
        // (and added to ALL).
        let transaction = match phase {
            Phase::Mail | Phase::Rcpt | Phase::Data | Phase::DataEnd => true,
            Phase::Resolve
            | Phase::Connect
            | Phase::Greeting
            | Phase::Ehlo
            | Phase::Tls
            | Phase::Auth
            | Phase::Rset
            | Phase::Quit => false,
        };
        let replies = [
            (554, "5.7.1", transaction),
            (550, "", transaction),
            (451, "4.3.0", false),
            (421, "4.4.2", false),
        ];
        for (code, enhanced, permanent) in replies {
            let reason = Reason::Reply {
                phase,
                reply: reply(code, enhanced),
            };
            assert_eq!(reason.is_permanent(), permanent, "{code} to {phase}");
            let outcome = Outcome::from_reason(reason);
            assert_eq!(
                matches!(outcome, Outcome::Failed(_)),
                permanent,
                "{code} to {phase}"
            );
        }
    }
}

/// A relay that wants us authenticated is the operator's problem: the
/// mail waits, and the reason says what to fix. Refusals of the sender
/// or the message (even ones that mention authentication, like a
/// DMARC failure) still bounce.
#[test]
fn refusals_that_want_authentication_wait() {
    let cases = [
        (
            Phase::Mail,
            Reply::new(530, "5.7.0", "Authentication required"),
            true,
        ),
        (
            Phase::Mail,
            Reply::new(530, "", "Authentication required"),
            true,
        ),
        (
            Phase::Rcpt,
            Reply::new(554, "5.7.1", "<a@b.example>: Relay access denied"),
            true,
        ),
        (
            Phase::Mail,
            Reply::new(
                553,
                "5.7.1",
                "<x@y>: Sender address rejected: not logged in",
            ),
            true,
        ),
        (
            Phase::Rcpt,
            Reply::new(550, "5.7.1", "Relaying denied"),
            true,
        ),
        (
            Phase::Mail,
            Reply::new(550, "", "relay not permitted"),
            true,
        ),
        (
            Phase::Mail,
            Reply::new(530, "5.7.0", "Must issue a STARTTLS command first"),
            true,
        ),
        (
            Phase::DataEnd,
            Reply::new(530, "5.7.0", "Authentication required"),
            true,
        ),
        (
            Phase::DataEnd,
            Reply::new(
                550,
                "5.7.1",
                "Unauthenticated email from example.com is not accepted due to domain's DMARC policy",
            ),
            false,
        ),
        (Phase::Rcpt, Reply::new(550, "5.1.1", "User unknown"), false),
        (
            Phase::Rcpt,
            Reply::new(550, "5.7.1", "Message rejected as spam"),
            false,
        ),
    ];
    for (phase, reply, wants) in cases {
        assert_eq!(
            wants_authentication(phase, &reply),
            wants,
            "{phase} {reply}"
        );
        let reason = Reason::Reply {
            phase,
            reply: reply.clone(),
        };
        assert_eq!(reason.is_permanent(), !wants, "{phase} {reply}");
        assert_eq!(
            reason.to_string().contains("password_file"),
            wants,
            "the fix is named exactly when it applies: {reason}"
        );
    }
}

#[test]
fn timeouts_say_what_was_awaited_in_plain_words() {
    let t = |phase, ms| Reason::Timeout {
        phase,
        after: Duration::from_millis(ms),
    };
    assert_eq!(
        t(Phase::Ehlo, 10_000).to_string(),
        "timed out after 10 s waiting for the reply to EHLO"
    );
    assert_eq!(
        t(Phase::Greeting, 1_500).to_string(),
        "timed out after 1.5 s waiting for the SMTP greeting"
    );
    assert_eq!(
        t(Phase::DataEnd, 600_000).to_string(),
        "timed out after 10 min waiting for the reply to the end of the message data"
    );
    assert_eq!(
        t(Phase::Connect, 30_000).to_string(),
        "timed out after 30 s waiting for the TCP connection"
    );
}

#[test]
fn status_codes() {
    assert_eq!(
        Reason::Reply {
            phase: Phase::Rcpt,
            reply: reply(550, "5.1.1")
        }
        .status(),
        "5.1.1"
    );
    assert_eq!(
        Reason::Reply {
            phase: Phase::Rcpt,
            reply: reply(550, "")
        }
        .status(),
        "5.0.0"
    );
    assert_eq!(
        Reason::Reply {
            phase: Phase::Rcpt,
            reply: reply(450, "")
        }
        .status(),
        "4.0.0"
    );
    assert_eq!(Reason::Expired { last: None }.status(), "4.4.7");
    assert_eq!(Reason::UnknownUser("x".into()).status(), "5.1.1");
    assert_eq!(Reason::MailboxFull("x".into()).status(), "4.2.2");
}

/// The reasons an administrator reads name the step that failed, in the
/// words of the protocol (`queue show`, the mail log, bounces).
#[test]
fn reasons_name_the_step() {
    let cases = [
        (
            Phase::Greeting,
            "waiting for the greeting",
            "the SMTP greeting",
        ),
        (Phase::Ehlo, "EHLO", "the reply to EHLO"),
        (Phase::Tls, "TLS handshake", "the TLS handshake"),
        (Phase::Mail, "MAIL FROM", "the reply to MAIL FROM"),
        (Phase::Rcpt, "RCPT TO", "the reply to RCPT TO"),
        (Phase::Data, "DATA", "the reply to DATA"),
        (
            Phase::DataEnd,
            "end of data",
            "the reply to the end of the message data",
        ),
        (Phase::Rset, "RSET", "the reply to RSET"),
    ];
    for (phase, answered, awaited) in cases {
        let refused = Reason::Reply {
            phase,
            reply: reply(451, "4.3.0"),
        };
        assert_eq!(
            refused.to_string(),
            format!("relay answered {answered} with 451 4.3.0 text"),
            "{phase:?}"
        );
        let timeout = Reason::Timeout {
            phase,
            after: std::time::Duration::from_secs(10),
        };
        assert_eq!(
            timeout.to_string(),
            format!("timed out after 10 s waiting for {awaited}"),
            "{phase:?}"
        );
    }
}

/// Time limits read as an administrator wrote them: whole minutes from
/// two minutes up, else seconds.
#[test]
fn time_limits_in_plain_words() {
    for (ms, words) in [
        (60_000, "60 s"),
        (90_000, "90 s"),
        (120_000, "2 min"),
        (300_000, "5 min"),
        (1_500, "1.5 s"),
    ] {
        let timeout = Reason::Timeout {
            phase: Phase::Connect,
            after: std::time::Duration::from_millis(ms),
        };
        assert_eq!(
            timeout.to_string(),
            format!("timed out after {words} waiting for the TCP connection")
        );
    }
}

fn at_mail(code: u16, enhanced: &str, text: &str) -> Reason {
    Reason::Reply {
        phase: Phase::Mail,
        reply: Reply::new(code, enhanced, text),
    }
}

#[test]
fn known_throttle_replies_defer_and_name_the_cool_down() {
    let until = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for (code, enhanced, text) in [
        (550, "5.4.5", "Daily user sending limit exceeded. - gsmtp"),
        (550, "5.4.5", "Daily SMTP relay limit exceeded for user x"),
        (
            454,
            "4.7.0",
            "Throttling failure: Maximum sending rate exceeded.",
        ),
        (
            554,
            "5.2.0",
            "STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
        ),
        (421, "4.7.0", "Try again later, closing connection."),
    ] {
        let plain = at_mail(code, enhanced, text);
        let throttled = throttle(plain.clone(), "gmail", &[], until);
        assert!(
            matches!(throttled, Reason::Throttled { .. }),
            "{plain} not recognised"
        );
        assert!(!throttled.is_permanent(), "{throttled}");
        assert_eq!(throttled.quota_until(), Some(until));
        assert!(
            throttled.status().starts_with("4."),
            "{}",
            throttled.status()
        );
        assert!(
            throttled
                .to_string()
                .contains("relay \"gmail\" cools down until 2027-01-15"),
            "{throttled}"
        );
    }
}

#[test]
fn other_refusals_are_not_throttles_unless_the_relay_says_so() {
    let until = std::time::SystemTime::UNIX_EPOCH;
    // About one recipient, not the sending account.
    let busy = at_mail(
        450,
        "4.2.1",
        "The user you are trying to contact is receiving mail too quickly",
    );
    let unknown = at_mail(550, "5.1.1", "No such user");
    for r in [busy.clone(), unknown.clone()] {
        assert_eq!(throttle(r.clone(), "gmail", &[], until), r);
    }
    assert!(unknown.is_permanent());
    let own = ["no such user".to_owned()];
    assert!(matches!(
        throttle(unknown, "x", &own, until),
        Reason::Throttled { .. }
    ));
    // Only replies: a timeout is left alone whatever the patterns.
    let timeout = Reason::Timeout {
        phase: Phase::Mail,
        after: Duration::from_secs(1),
    };
    assert_eq!(throttle(timeout.clone(), "x", &own, until), timeout);
    let wait = Reason::Quota {
        relay: "x".into(),
        limit: "3 messages per day".into(),
        until,
    };
    assert!(!wait.is_permanent());
    assert_eq!(wait.status(), "4.4.5");
}
