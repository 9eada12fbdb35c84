use super::*;

fn cmd(line: &str) -> Command {
    Command::parse(line.as_bytes()).unwrap()
}

/// Drives a state through `setup` transitions.
fn state(setup: &str) -> ServerState {
    let mut s = ServerState::new();
    for step in setup.split_whitespace() {
        match step {
            "helo" => s.greeted(false),
            "ehlo" => s.greeted(true),
            "mail" => s.mail_accepted(),
            "rcpt" => s.rcpt_accepted(),
            "rcpt-rejected" => s.rcpt_rejected(),
            "reset" => s.reset(),
            "auth" => s.auth_succeeded(),
            "tls" => s.tls_started(),
            other => panic!("unknown step {other}"),
        }
    }
    s
}

#[test]
fn ordering_table() {
    const OK: Option<(u16, &str)> = None;
    let greet = Some((503, "Error: send HELO/EHLO first"));
    let nested = Some((503, "Error: nested MAIL command"));
    let need_mail = Some((503, "Error: need MAIL command"));
    let need_rcpt = Some((503, "Error: need RCPT command"));
    let no_valid = Some((554, "Error: no valid recipients"));
    let send_ehlo = Some((503, "Error: send EHLO first"));
    let in_tx = Some((503, "Error: MAIL transaction in progress"));
    let authed = Some((503, "Error: already authenticated"));
    type Refusal = Option<(u16, &'static str)>;
    let cases: Vec<(&str, &str, Refusal)> = vec![
        // (transitions so far, command, expected refusal)
        ("", "MAIL FROM:<a@b>", greet),
        ("", "RCPT TO:<a@b>", need_mail),
        ("", "DATA", need_rcpt),
        ("", "EHLO x", OK),
        ("", "HELO x", OK),
        ("", "NOOP", OK),
        ("", "RSET", OK),
        ("", "QUIT", OK),
        ("", "VRFY a", OK),
        ("", "HELP", OK),
        ("", "STARTTLS", send_ehlo),
        ("", "AUTH PLAIN", send_ehlo),
        ("ehlo", "MAIL FROM:<a@b>", OK),
        ("helo", "MAIL FROM:<>", OK),
        ("ehlo", "RCPT TO:<a@b>", need_mail),
        ("ehlo", "DATA", need_rcpt),
        ("ehlo", "STARTTLS", OK),
        ("ehlo", "AUTH PLAIN", OK),
        ("helo", "STARTTLS", send_ehlo),
        ("helo", "AUTH PLAIN", send_ehlo),
        ("ehlo mail", "MAIL FROM:<a@b>", nested),
        ("ehlo mail", "RCPT TO:<a@b>", OK),
        ("ehlo mail", "DATA", need_rcpt),
        ("ehlo mail rcpt-rejected", "DATA", no_valid),
        ("ehlo mail rcpt-rejected rcpt", "DATA", OK),
        ("ehlo mail", "STARTTLS", in_tx),
        ("ehlo mail", "AUTH PLAIN", in_tx),
        ("ehlo mail rcpt", "RCPT TO:<c@d>", OK),
        ("ehlo mail rcpt", "DATA", OK),
        ("ehlo mail rcpt", "MAIL FROM:<a@b>", nested),
        ("ehlo mail rcpt", "EHLO x", OK),
        ("ehlo mail rcpt reset", "DATA", need_rcpt),
        ("ehlo mail rcpt reset", "MAIL FROM:<a@b>", OK),
        ("ehlo mail rcpt-rejected reset mail", "DATA", need_rcpt),
        ("ehlo mail rcpt ehlo", "RCPT TO:<a@b>", need_mail),
        ("ehlo mail rcpt helo", "MAIL FROM:<a@b>", OK),
        ("reset", "MAIL FROM:<a@b>", greet),
        ("ehlo auth", "AUTH PLAIN", authed),
        ("ehlo auth", "MAIL FROM:<a@b>", OK),
        ("ehlo tls", "MAIL FROM:<a@b>", greet),
        ("ehlo auth tls ehlo", "AUTH PLAIN", OK),
        ("ehlo mail rcpt", "NOOP", OK),
        ("ehlo mail rcpt", "RSET", OK),
    ];
    for (setup, line, expected) in cases {
        let got = state(setup).check(&cmd(line));
        match (got, expected) {
            (Ok(()), None) => {}
            (Err(reply), Some((code, text))) => {
                assert_eq!(reply.code, code, "{setup:?} then {line:?}");
                assert_eq!(
                    reply.lines,
                    vec![text.to_owned()],
                    "{setup:?} then {line:?}"
                );
                assert_eq!(
                    reply.enhanced.map(|e| e.to_string()).as_deref(),
                    Some("5.5.1")
                );
            }
            (got, expected) => {
                panic!("{setup:?} then {line:?}: got {got:?}, expected {expected:?}")
            }
        }
    }
}

#[test]
fn phases_and_flags() {
    let cases: Vec<(&str, Phase, bool)> = vec![
        ("", Phase::NotGreeted, false),
        ("helo", Phase::Ready, false),
        ("ehlo", Phase::Ready, true),
        ("ehlo mail", Phase::Mail, true),
        ("ehlo mail rcpt", Phase::Rcpt, true),
        ("ehlo mail rcpt rcpt", Phase::Rcpt, true),
        ("ehlo mail rcpt reset", Phase::Ready, true),
        ("ehlo mail rcpt ehlo", Phase::Ready, true),
        ("ehlo mail rcpt helo", Phase::Ready, false),
        ("ehlo mail tls", Phase::NotGreeted, false),
        // Transitions that the ordering forbids are ignored.
        ("mail", Phase::NotGreeted, false),
        ("rcpt", Phase::NotGreeted, false),
        ("ehlo rcpt", Phase::Ready, true),
        ("reset", Phase::NotGreeted, false),
    ];
    for (setup, phase, esmtp) in cases {
        let s = state(setup);
        assert_eq!((s.phase(), s.esmtp()), (phase, esmtp), "{setup:?}");
        assert_eq!(
            s.in_transaction(),
            matches!(phase, Phase::Mail | Phase::Rcpt)
        );
    }
    assert!(state("ehlo auth").authenticated());
    assert!(!state("ehlo auth tls").authenticated());
    assert_eq!(ServerState::default(), ServerState::new());
}
