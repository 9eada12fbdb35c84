//! Property tests: round trips (command parse∘encode, reply parse∘encode,
//! DotStuffer→DataReceiver) and split-point invariance of the incremental
//! parsers (DataReceiver, parse_reply).

use std::net::{Ipv4Addr, Ipv6Addr};

use postrelay_smtp::{
    Body, Command, DataReceiver, DotStuffer, EnhancedCode, ForwardPath, MailParams, Mailbox,
    Notify, RcptParams, Reply, Ret, ReversePath, command::xtext_encode, parse_reply,
};
use proptest::prelude::*;
use proptest::sample::subsequence;

fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?",
        Just("bücher".to_owned()),
        Just("例子".to_owned()),
    ]
}

fn domain() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(label(), 1..4).prop_map(|l| l.join(".")),
        1 => any::<[u8; 4]>().prop_map(|o| format!("[{}]", Ipv4Addr::from(o))),
        1 => any::<[u16; 8]>().prop_map(|s| format!("[IPv6:{}]", Ipv6Addr::from(s))),
    ]
}

fn ascii_domain() -> impl Strategy<Value = String> {
    domain().prop_filter("ASCII", |d| d.is_ascii())
}

fn local_part() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,12}(\\.[a-zA-Z0-9_+-]{1,8}){0,2}",
        // Needs quoting: spaces, specials, escapes, leading dots, UTF-8.
        "[ -~]{0,20}",
        "[a-zé用 .\"\\\\]{0,12}",
    ]
}

fn mailbox() -> impl Strategy<Value = Mailbox> {
    (local_part(), domain())
        .prop_filter_map("within limits", |(l, d)| Mailbox::from_parts(&l, &d).ok())
}

fn xtext() -> impl Strategy<Value = String> {
    "[ -~é]{1,20}".prop_map(|s| xtext_encode(&s))
}

fn mail_params() -> impl Strategy<Value = MailParams> {
    (
        prop::option::of(any::<u64>()),
        prop::option::of(prop_oneof![
            Just(Body::SevenBit),
            Just(Body::EightBitMime),
            Just(Body::BinaryMime)
        ]),
        any::<bool>(),
        prop::option::of(prop_oneof![Just(Ret::Full), Just(Ret::Hdrs)]),
        prop::option::of(xtext()),
        prop::option::of(prop_oneof![Just("<>".to_owned()), xtext()]),
    )
        .prop_map(|(size, body, smtputf8, ret, envid, auth)| MailParams {
            size,
            body,
            smtputf8,
            ret,
            envid,
            auth,
        })
}

fn rcpt_params() -> impl Strategy<Value = RcptParams> {
    let notify = prop_oneof![
        Just(vec![Notify::Never]),
        subsequence(vec![Notify::Success, Notify::Failure, Notify::Delay], 1..=3).prop_shuffle(),
    ];
    (
        prop::option::of(notify),
        prop::option::of(("[a-zA-Z0-9-]{1,8}", xtext()).prop_map(|(t, x)| format!("{t};{x}"))),
    )
        .prop_map(|(notify, orcpt)| RcptParams { notify, orcpt })
}

fn text_arg() -> impl Strategy<Value = String> {
    "[!-~]([ -~]{0,20}[!-~])?"
}

fn command() -> impl Strategy<Value = Command> {
    let reverse = prop_oneof![
        1 => Just(ReversePath::Null),
        4 => mailbox().prop_map(ReversePath::Mailbox),
    ];
    let forward = prop_oneof![
        1 => Just(ForwardPath::Postmaster),
        4 => mailbox().prop_map(ForwardPath::Mailbox),
    ];
    prop_oneof![
        ascii_domain().prop_map(Command::Ehlo),
        ascii_domain().prop_map(Command::Helo),
        (reverse, mail_params()).prop_map(|(from, params)| Command::Mail { from, params }),
        (forward, rcpt_params()).prop_map(|(to, params)| Command::Rcpt { to, params }),
        Just(Command::Data),
        Just(Command::Rset),
        Just(Command::Quit),
        Just(Command::StartTls),
        prop::option::of(text_arg()).prop_map(Command::Noop),
        prop::option::of(text_arg()).prop_map(Command::Help),
        prop_oneof![text_arg(), Just("jöhn doe".to_owned())].prop_map(Command::Vrfy),
        text_arg().prop_map(Command::Expn),
        (
            "[A-Z0-9_-]{1,20}",
            prop::option::of(prop_oneof![
                Just("=".to_owned()),
                "[A-Za-z0-9+/]{1,40}={0,2}"
            ])
        )
            .prop_map(|(mechanism, initial)| Command::Auth { mechanism, initial }),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    (2u16..=5, 0u16..=5, 0u16..=9)
        .prop_flat_map(|(a, b, c)| {
            let code = a * 100 + b * 10 + c;
            // Enhanced codes exist for classes 2, 4 and 5 only (RFC 3463).
            let enhanced = prop::option::of((0u16..1000, 0u16..1000)).prop_map(move |sd| {
                sd.filter(|_| a != 3)
                    .map(|(s, d)| EnhancedCode::new(u8::try_from(a).unwrap_or(5), s, d))
            });
            let lines = prop::collection::vec("([a-zA-Zé][ -~é]{0,40})?", 1..6);
            (Just(code), enhanced, lines)
        })
        .prop_map(|(code, enhanced, lines)| Reply {
            code,
            enhanced,
            lines,
        })
}

/// Receives `wire` fed in `pieces` cut at the given (sorted, clamped) points.
fn receive_in_pieces(
    wire: &[u8],
    cuts: &[usize],
    max_line: usize,
) -> (Vec<u8>, usize, bool, Option<postrelay_smtp::DataViolation>) {
    let mut rx = DataReceiver::with_max_line(max_line);
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut done = false;
    let mut points: Vec<usize> = cuts.iter().map(|&c| c.min(wire.len())).collect();
    points.sort_unstable();
    points.push(wire.len());
    let mut start = 0;
    for end in points {
        if done {
            break;
        }
        let p = rx.ingest(&wire[start..end], &mut out);
        consumed += p.consumed;
        done = p.done;
        start = end;
    }
    (out, consumed, done, rx.violation())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn command_round_trip(cmd in command()) {
        let wire = cmd.encode();
        prop_assert!(wire.ends_with(b"\r\n"));
        let line = &wire[..wire.len() - 2];
        prop_assert_eq!(Command::parse(line), Ok(cmd));
    }

    #[test]
    fn mailbox_round_trip(m in mailbox()) {
        let shown = m.to_string();
        prop_assert_eq!(Mailbox::parse(&shown), Ok(m.clone()));
        let path = format!("<{shown}>");
        prop_assert_eq!(ReversePath::parse(&path), Ok(ReversePath::Mailbox(m)));
    }

    #[test]
    fn reply_round_trip(r in reply(), next in reply()) {
        let wire = r.encode();
        let mut both = wire.clone();
        both.extend_from_slice(&next.encode());
        prop_assert_eq!(parse_reply(&both, 512), Ok(Some((r.clone(), wire.len()))));
        // Every shorter prefix asks for more bytes.
        for cut in 0..wire.len() {
            prop_assert_eq!(parse_reply(&both[..cut], 512), Ok(None), "cut {}", cut);
        }
        prop_assert_eq!(
            parse_reply(&both[wire.len()..], 512),
            Ok(Some((next, both.len() - wire.len())))
        );
    }

    #[test]
    fn stuffer_then_receiver_is_identity(
        lines in prop::collection::vec(
            prop::collection::vec(prop_oneof![Just(b'.'), Just(b'a'), any::<u8>()], 0..20)
                .prop_map(|l| l.into_iter().filter(|&b| b != b'\r' && b != b'\n').collect::<Vec<u8>>()),
            0..8,
        ),
        cuts in prop::collection::vec(0usize..200, 0..4),
    ) {
        let body: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied().chain(*b"\r\n")).collect();
        let mut stuffer = DotStuffer::new();
        let mut wire = Vec::new();
        let mut start = 0;
        let mut points: Vec<usize> = cuts.iter().map(|&c| c.min(body.len())).collect();
        points.sort_unstable();
        points.push(body.len());
        for end in points {
            stuffer.stuff(&body[start..end], &mut wire);
            start = end;
        }
        stuffer.finish(&mut wire);
        wire.extend_from_slice(b"QUIT\r\n");
        let (out, consumed, done, violation) = receive_in_pieces(&wire, &cuts, 0);
        prop_assert_eq!(out, body);
        prop_assert_eq!(consumed, wire.len() - 6);
        prop_assert!(done);
        prop_assert_eq!(violation, None);
    }

    #[test]
    fn receiver_split_invariance(
        input in prop::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'x')], 0..64),
        cuts in prop::collection::vec(0usize..64, 0..5),
        max_line in 0usize..6,
    ) {
        let whole = receive_in_pieces(&input, &[], max_line);
        prop_assert_eq!(receive_in_pieces(&input, &cuts, max_line), whole.clone());
        let bytewise: Vec<usize> = (0..input.len()).collect();
        prop_assert_eq!(receive_in_pieces(&input, &bytewise, max_line), whole);
    }
}
