use super::*;
use crate::address::Mailbox;

fn mb(s: &str) -> Mailbox {
    Mailbox::parse(s).unwrap()
}

fn mail(from: &str, params: MailParams) -> Command {
    let from = if from.is_empty() {
        ReversePath::Null
    } else {
        ReversePath::Mailbox(mb(from))
    };
    Command::Mail { from, params }
}

fn rcpt(to: &str, params: RcptParams) -> Command {
    let to = if to.is_empty() {
        ForwardPath::Postmaster
    } else {
        ForwardPath::Mailbox(mb(to))
    };
    Command::Rcpt { to, params }
}

fn syn(command: &'static str, detail: &str) -> CommandError {
    syntax(command, detail)
}

fn bad(name: &str, detail: &str) -> CommandError {
    CommandError::BadParameter {
        name: name.into(),
        detail: detail.into(),
    }
}

fn bad_addr(command: &'static str, error: AddressError) -> CommandError {
    CommandError::BadAddress { command, error }
}

#[test]
fn simple_commands() {
    let cases: Vec<(&[u8], Result<Command, CommandError>)> = vec![
        (
            b"EHLO client.example.com",
            Ok(Command::Ehlo("client.example.com".into())),
        ),
        (b"ehlo client", Ok(Command::Ehlo("client".into()))),
        (b"HeLo [192.0.2.1]", Ok(Command::Helo("[192.0.2.1]".into()))),
        (
            b"EHLO [IPv6:2001:db8::1]",
            Ok(Command::Ehlo("[IPv6:2001:db8::1]".into())),
        ),
        (b"EHLO", Err(syn("EHLO", "Syntax: EHLO hostname"))),
        (b"HELO ", Err(syn("HELO", "Syntax: HELO hostname"))),
        (b"EHLO two words", Err(syn("EHLO", "Syntax: EHLO hostname"))),
        (b"EHLO bad_host", Err(syn("EHLO", "Syntax: EHLO hostname"))),
        (
            b"EHLO [300.1.1.1]",
            Err(syn("EHLO", "Syntax: EHLO hostname")),
        ),
        ("EHLO bücher.de".as_bytes(), Err(CommandError::NonAscii)),
        (b"DATA", Ok(Command::Data)),
        (b"data", Ok(Command::Data)),
        (b"DATA   ", Ok(Command::Data)),
        (b"  RSET", Ok(Command::Rset)),
        (b"DATA x", Err(syn("DATA", "Syntax: DATA"))),
        (b"QUIT", Ok(Command::Quit)),
        (b"QUIT now", Err(syn("QUIT", "Syntax: QUIT"))),
        (b"StartTLS", Ok(Command::StartTls)),
        (b"NOOP", Ok(Command::Noop(None))),
        (
            b"NOOP  hello  there ",
            Ok(Command::Noop(Some("hello  there".into()))),
        ),
        (b"HELP", Ok(Command::Help(None))),
        (b"HELP MAIL", Ok(Command::Help(Some("MAIL".into())))),
        (b"VRFY john", Ok(Command::Vrfy("john".into()))),
        ("VRFY jöhn".as_bytes(), Ok(Command::Vrfy("jöhn".into()))),
        (b"VRFY", Err(syn("VRFY", "Syntax: VRFY address"))),
        (b"EXPN staff", Ok(Command::Expn("staff".into()))),
        (b"EXPN", Err(syn("EXPN", "Syntax: EXPN list"))),
        (b"", Err(CommandError::Empty)),
        (b"   ", Err(CommandError::Empty)),
        (
            b"BDAT 10 LAST",
            Err(CommandError::UnknownCommand("BDAT".into())),
        ),
        (
            b"MAILFROM:<a@b>",
            Err(CommandError::UnknownCommand("MAILFROM:<a@b>".into())),
        ),
        (b"NO\0OP", Err(CommandError::ControlCharacter)),
        (b"NOOP\tx", Err(CommandError::ControlCharacter)),
        (b"NOOP\r", Err(CommandError::ControlCharacter)),
        (b"NOOP \x7f", Err(CommandError::ControlCharacter)),
        (b"NOOP \xff", Err(CommandError::InvalidUtf8)),
        ("NOOP é".as_bytes(), Err(CommandError::NonAscii)),
        (
            "ÉHLO x".as_bytes(),
            Err(CommandError::UnknownCommand("ÉHLO".into())),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            Command::parse(input),
            expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    let long_verb = "X".repeat(100);
    assert_eq!(
        Command::parse(long_verb.as_bytes()),
        Err(CommandError::UnknownCommand("X".repeat(32)))
    );
}

#[test]
fn mail_from() {
    let p = MailParams::default;
    let cases: Vec<(&str, Result<Command, CommandError>)> = vec![
        ("MAIL FROM:<a@b.example>", Ok(mail("a@b.example", p()))),
        ("mail from:<a@b.example>", Ok(mail("a@b.example", p()))),
        ("MAIL From:<a@b.example>", Ok(mail("a@b.example", p()))),
        ("MAIL FROM: <a@b.example>", Ok(mail("a@b.example", p()))),
        ("MAIL FROM:<>", Ok(mail("", p()))),
        ("MAIL FROM:<> ", Ok(mail("", p()))),
        (
            "MAIL FROM:<@relay.example:a@b.example>",
            Ok(mail("a@b.example", p())),
        ),
        (
            "MAIL FROM:<\"john doe\"@b.example>",
            Ok(mail("\"john doe\"@b.example", p())),
        ),
        (
            "MAIL FROM:<\"a>b\"@c> SIZE=5",
            Ok(mail(
                "\"a>b\"@c",
                MailParams {
                    size: Some(5),
                    ..p()
                },
            )),
        ),
        ("MAIL FROM:<a@[192.0.2.1]>", Ok(mail("a@[192.0.2.1]", p()))),
        (
            "MAIL FROM:<jöhn@bücher.de> SMTPUTF8",
            Ok(mail(
                "jöhn@bücher.de",
                MailParams {
                    smtputf8: true,
                    ..p()
                },
            )),
        ),
        (
            "MAIL FROM:<a@b> SIZE=100 BODY=8BITMIME SMTPUTF8",
            Ok(mail(
                "a@b",
                MailParams {
                    size: Some(100),
                    body: Some(Body::EightBitMime),
                    smtputf8: true,
                    ..p()
                },
            )),
        ),
        (
            "MAIL FROM:<a@b>  body=7bit   size=0  ",
            Ok(mail(
                "a@b",
                MailParams {
                    size: Some(0),
                    body: Some(Body::SevenBit),
                    ..p()
                },
            )),
        ),
        (
            "MAIL FROM:<a@b> BODY=BINARYMIME RET=hdrs ENVID=QQ314159+2Bx AUTH=<>",
            Ok(mail(
                "a@b",
                MailParams {
                    body: Some(Body::BinaryMime),
                    ret: Some(Ret::Hdrs),
                    envid: Some("QQ314159+2Bx".into()),
                    auth: Some("<>".into()),
                    ..p()
                },
            )),
        ),
        (
            "MAIL FROM:<a@b> SIZE=18446744073709551615",
            Ok(mail(
                "a@b",
                MailParams {
                    size: Some(u64::MAX),
                    ..p()
                },
            )),
        ),
        // Syntax errors.
        ("MAIL", Err(syn("MAIL", MAIL_SYNTAX))),
        ("MAIL FROM:", Err(syn("MAIL", MAIL_SYNTAX))),
        ("MAIL FROM:a@b", Err(syn("MAIL", MAIL_SYNTAX))),
        ("MAIL FROM:<a@b", Err(syn("MAIL", MAIL_SYNTAX))),
        ("MAIL FROM:  <a@b>", Err(syn("MAIL", MAIL_SYNTAX))),
        ("MAIL FROM <a@b>", Err(syn("MAIL", MAIL_SYNTAX))),
        ("MAIL TO:<a@b>", Err(syn("MAIL", MAIL_SYNTAX))),
        ("MAIL FROM:<a@b>SIZE=1", Err(syn("MAIL", MAIL_SYNTAX))),
        ("MAIL FROM:<a@b> SIZE=", Err(syn("MAIL", MAIL_SYNTAX))),
        ("MAIL FROM:<a@b> =1", Err(syn("MAIL", MAIL_SYNTAX))),
        ("MAIL FROM:<a@b> SI_ZE=1", Err(syn("MAIL", MAIL_SYNTAX))),
        ("MAIL FROM:<a@b> X=a=b", Err(syn("MAIL", MAIL_SYNTAX))),
        // Bad addresses.
        (
            "MAIL FROM:<a b@c>",
            Err(bad_addr("MAIL", AddressError::LocalPartInvalidChar(' '))),
        ),
        (
            "MAIL FROM:<a@b..c>",
            Err(bad_addr("MAIL", AddressError::DomainLabelEmpty)),
        ),
        (
            "MAIL FROM:<postmaster>",
            Err(bad_addr("MAIL", AddressError::MissingDomain)),
        ),
        // Parameters.
        ("MAIL FROM:<a@b> SIZE=abc", Err(bad("SIZE", "not a number"))),
        ("MAIL FROM:<a@b> SIZE=-1", Err(bad("SIZE", "not a number"))),
        (
            "MAIL FROM:<a@b> SIZE=18446744073709551616",
            Err(bad("SIZE", "number too large")),
        ),
        (
            "MAIL FROM:<a@b> SIZE=000000000000000000001",
            Err(bad("SIZE", "not a number")),
        ),
        ("MAIL FROM:<a@b> SIZE", Err(bad("SIZE", "value required"))),
        (
            "MAIL FROM:<a@b> BODY=9BIT",
            Err(bad("BODY", "expected 7BIT, 8BITMIME or BINARYMIME")),
        ),
        (
            "MAIL FROM:<a@b> SMTPUTF8=yes",
            Err(bad("SMTPUTF8", "takes no value")),
        ),
        (
            "MAIL FROM:<a@b> RET=ALL",
            Err(bad("RET", "expected FULL or HDRS")),
        ),
        (
            "MAIL FROM:<a@b> ENVID=a+ZZ",
            Err(bad("ENVID", "not valid xtext")),
        ),
        (
            "MAIL FROM:<a@b> SIZE=1 size=2",
            Err(CommandError::DuplicateParameter("SIZE".into())),
        ),
        (
            "MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8",
            Err(CommandError::DuplicateParameter("SMTPUTF8".into())),
        ),
        (
            "MAIL FROM:<a@b> XFOO=1",
            Err(CommandError::UnknownParameter("XFOO".into())),
        ),
        (
            "MAIL FROM:<a@b> notify=NEVER",
            Err(CommandError::UnknownParameter("NOTIFY".into())),
        ),
        ("MAIL FROM:<a@b> SIZE=1 ÿ", Err(CommandError::NonAscii)),
    ];
    for (input, expected) in cases {
        assert_eq!(Command::parse(input.as_bytes()), expected, "{input:?}");
    }
    let long_envid = format!("MAIL FROM:<a@b> ENVID={}", "x".repeat(101));
    assert_eq!(
        Command::parse(long_envid.as_bytes()),
        Err(bad("ENVID", "longer than 100 characters"))
    );
}

#[test]
fn rcpt_to() {
    let p = RcptParams::default;
    use Notify::*;
    let cases: Vec<(&str, Result<Command, CommandError>)> = vec![
        ("RCPT TO:<a@b>", Ok(rcpt("a@b", p()))),
        ("rcpt to: <a@b>", Ok(rcpt("a@b", p()))),
        ("RCPT TO:<Postmaster>", Ok(rcpt("", p()))),
        ("RCPT TO:<postmaster>", Ok(rcpt("", p()))),
        ("RCPT TO:<@hop1,@hop2:a@b>", Ok(rcpt("a@b", p()))),
        (
            "RCPT TO:<a@b> NOTIFY=NEVER",
            Ok(rcpt(
                "a@b",
                RcptParams {
                    notify: Some(vec![Never]),
                    ..p()
                },
            )),
        ),
        (
            "RCPT TO:<a@b> NOTIFY=success,Delay ORCPT=rfc822;a+40b",
            Ok(rcpt(
                "a@b",
                RcptParams {
                    notify: Some(vec![Success, Delay]),
                    orcpt: Some("rfc822;a+40b".into()),
                },
            )),
        ),
        (
            "RCPT TO:<>",
            Err(bad_addr("RCPT", AddressError::NullNotAllowed)),
        ),
        (
            "RCPT TO:<a@-b>",
            Err(bad_addr("RCPT", AddressError::DomainLabelHyphen)),
        ),
        ("RCPT TO:a@b", Err(syn("RCPT", RCPT_SYNTAX))),
        ("RCPT FROM:<a@b>", Err(syn("RCPT", RCPT_SYNTAX))),
        (
            "RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS",
            Err(bad("NOTIFY", "NEVER must be the only value")),
        ),
        (
            "RCPT TO:<a@b> NOTIFY=SUCCESS,SUCCESS",
            Err(bad("NOTIFY", "value listed twice")),
        ),
        (
            "RCPT TO:<a@b> NOTIFY=SOMETIMES",
            Err(bad("NOTIFY", "expected NEVER or SUCCESS,FAILURE,DELAY")),
        ),
        (
            "RCPT TO:<a@b> NOTIFY=SUCCESS,",
            Err(bad("NOTIFY", "expected NEVER or SUCCESS,FAILURE,DELAY")),
        ),
        (
            "RCPT TO:<a@b> ORCPT=a@b",
            Err(bad("ORCPT", "expected addr-type;address")),
        ),
        (
            "RCPT TO:<a@b> ORCPT=;a@b",
            Err(bad("ORCPT", "bad address type")),
        ),
        (
            "RCPT TO:<a@b> ORCPT=rfc822;a+4",
            Err(bad("ORCPT", "not valid xtext")),
        ),
        (
            "RCPT TO:<a@b> SIZE=1",
            Err(CommandError::UnknownParameter("SIZE".into())),
        ),
        (
            "RCPT TO:<a@b> ORCPT=rfc822;a ORCPT=rfc822;b",
            Err(CommandError::DuplicateParameter("ORCPT".into())),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(Command::parse(input.as_bytes()), expected, "{input:?}");
    }
}

#[test]
fn auth() {
    let auth = |m: &str, i: Option<&str>| {
        Ok(Command::Auth {
            mechanism: m.into(),
            initial: i.map(Into::into),
        })
    };
    const USAGE: &str = "Syntax: AUTH mechanism [initial-response]";
    let cases: Vec<(&str, Result<Command, CommandError>)> = vec![
        ("AUTH PLAIN", auth("PLAIN", None)),
        (
            "auth plain AHRpbQB0YW5zdGFhZnRhbnN0YWFm",
            auth("PLAIN", Some("AHRpbQB0YW5zdGFhZnRhbnN0YWFm")),
        ),
        ("AUTH LOGIN =", auth("LOGIN", Some("="))),
        ("AUTH CRAM-MD5", auth("CRAM-MD5", None)),
        ("AUTH", Err(syn("AUTH", USAGE))),
        ("AUTH PLAIN a b", Err(syn("AUTH", USAGE))),
        ("AUTH PLAIN a*b", Err(syn("AUTH", USAGE))),
        ("AUTH PL@IN", Err(syn("AUTH", USAGE))),
        ("AUTH ABCDEFGHIJKLMNOPQRSTU", Err(syn("AUTH", USAGE))),
    ];
    for (input, expected) in cases {
        assert_eq!(Command::parse(input.as_bytes()), expected, "{input:?}");
    }
    let secret = Command::parse(b"AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm").unwrap();
    let debug = format!("{secret:?}");
    assert!(!debug.contains("AHRpbQ"), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
}

#[test]
fn encode_canonical() {
    let cases: Vec<(&str, &str)> = vec![
        ("ehlo Client", "EHLO Client"),
        (
            "mail from: <\"a\"@B>  smtputf8 size=7",
            "MAIL FROM:<a@B> SIZE=7 SMTPUTF8",
        ),
        (
            "MAIL FROM:<> RET=full ENVID=x AUTH=a+2Bb BODY=8bitmime",
            "MAIL FROM:<> BODY=8BITMIME RET=FULL ENVID=x AUTH=a+2Bb",
        ),
        ("rcpt to:<@r:postmaster>", "RCPT TO:<Postmaster>"),
        (
            "RCPT TO:<a@b> ORCPT=rfc822;a notify=failure,delay",
            "RCPT TO:<a@b> NOTIFY=FAILURE,DELAY ORCPT=rfc822;a",
        ),
        ("noop", "NOOP"),
        ("help me", "HELP me"),
        ("auth xoauth2 dXNlcg==", "AUTH XOAUTH2 dXNlcg=="),
        ("starttls", "STARTTLS"),
    ];
    for (input, canonical) in cases {
        let cmd = Command::parse(input.as_bytes()).unwrap();
        assert_eq!(
            cmd.encode(),
            format!("{canonical}\r\n").into_bytes(),
            "{input:?}"
        );
        assert_eq!(Command::parse(canonical.as_bytes()), Ok(cmd));
    }
    // Values cannot smuggle a second command.
    let evil = Command::Ehlo("x\r\nRSET".into());
    assert_eq!(evil.encode(), b"EHLO x  RSET\r\n");
}

#[test]
fn error_replies() {
    let cases: Vec<(CommandError, &str)> = vec![
        (CommandError::Empty, "500 5.5.2 Error: empty command\r\n"),
        (
            CommandError::UnknownCommand("FOO".into()),
            "500 5.5.2 Error: command not recognized\r\n",
        ),
        (
            syn("MAIL", MAIL_SYNTAX),
            "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]\r\n",
        ),
        (
            bad_addr("MAIL", AddressError::LocalPartTooLong),
            "553 5.1.7 Bad sender address syntax: local part longer than 64 octets\r\n",
        ),
        (
            bad_addr("RCPT", AddressError::NullNotAllowed),
            "553 5.1.3 Bad recipient address syntax: null address <> not allowed here\r\n",
        ),
        (
            CommandError::UnknownParameter("XFOO".into()),
            "555 5.5.4 Unsupported parameter: XFOO\r\n",
        ),
        (
            CommandError::DuplicateParameter("SIZE".into()),
            "501 5.5.4 Duplicate parameter: SIZE\r\n",
        ),
        (
            bad("SIZE", "not a number"),
            "501 5.5.4 Bad SIZE parameter: not a number\r\n",
        ),
        (
            CommandError::NonAscii,
            "501 5.5.4 Syntax: non-ASCII characters are only allowed in addresses\r\n",
        ),
        (
            CommandError::InvalidUtf8,
            "500 5.5.2 Error: command is not valid UTF-8\r\n",
        ),
        (
            CommandError::ControlCharacter,
            "500 5.5.2 Error: control character in command\r\n",
        ),
    ];
    for (error, wire) in cases {
        assert_eq!(
            String::from_utf8(error.reply().encode()).unwrap(),
            wire,
            "{error:?}"
        );
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn xtext() {
    let cases = [
        ("", Some("")),
        ("abc", Some("abc")),
        ("a+2Bb", Some("a+b")),
        ("a+3db", Some("a=b")),
        ("+20", Some(" ")),
        ("a=b", None),
        ("a b", None),
        ("a+", None),
        ("a+2", None),
        ("a+G0", None),
        ("+FF", None),
        ("+C3+A9", Some("é")),
    ];
    for (input, expected) in cases {
        assert_eq!(xtext_decode(input).as_deref(), expected, "{input:?}");
    }
    for s in ["a+b=c d", "é\u{1}", "plain"] {
        assert_eq!(xtext_decode(&xtext_encode(s)).as_deref(), Some(s));
    }
    assert_eq!(xtext_encode("a+b=c d"), "a+2Bb+3Dc+20d");
}

#[test]
fn verbs() {
    assert_eq!(Command::StartTls.verb(), "STARTTLS");
    assert_eq!(Command::Noop(None).verb(), "NOOP");
}
