//! SMTP intake with real clients: swaks and Python's `smtplib` (plus a
//! raw-socket Python client that really pipelines). For each message we
//! check the queue entry (`queue list --json`) and the spooled body byte by
//! byte: our `Received:` field first, then exactly what the client sent,
//! with `Date:`/`Message-ID:` appended to the header section only when the
//! client did not send them.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::daemon::Daemon;
use support::intake::{assert_client_bytes, entry, queued_id, recipients, split_received};
use support::peers;

// ------------------------------------------------------------------ swaks

fn swaks(d: &Daemon, args: &[&str]) -> (i32, String) {
    let out = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{}", d.port),
            "--helo",
            "client.example",
            "--timeout",
            "20",
        ])
        .args(args)
        .output()
        .expect("run swaks");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// The message swaks sent, rebuilt from its transcript: the ` -> ` lines
/// after the 354 reply, up to the lone dot, each with CRLF.
fn swaks_data(transcript: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut in_data = false;
    for line in transcript.lines() {
        if line.starts_with("<-  354") || line.starts_with("<** 354") {
            in_data = true;
        } else if in_data {
            let Some(sent) = line.strip_prefix(" -> ") else {
                continue;
            };
            if sent == "." {
                return out;
            }
            assert!(
                !sent.starts_with('.'),
                "test bodies avoid leading dots: swaks shows them stuffed"
            );
            out.extend_from_slice(sent.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    panic!("no DATA section in the swaks transcript:\n{transcript}");
}

#[test]
fn swaks_message_is_queued_and_spooled_unchanged() {
    if !peers::require("swaks") {
        return;
    }
    let d = Daemon::start();
    let body = "First line of the body.\nSecond line, with   spaces and a tab\there.\n\nAfter an empty line.";
    let (rc, out) = swaks(
        &d,
        &[
            "--from",
            "sender@example.com",
            "--to",
            "rcpt@example.com",
            "--header",
            "Subject: swaks intake test",
            "--body",
            body,
        ],
    );
    assert_eq!(rc, 0, "swaks failed:\n{out}");
    let line = out
        .lines()
        .find(|l| l.contains("250 2.0.0 Ok: queued as "))
        .unwrap_or_else(|| panic!("no `250 2.0.0 Ok: queued as` in:\n{out}"));
    let id = queued_id(line);

    let m = entry(&d, &id);
    assert_eq!(d.queue().len(), 1);
    assert_eq!(m["sender"], "sender@example.com");
    assert_eq!(recipients(&m), ["rcpt@example.com"]);
    assert_eq!(m["origin"]["helo"], "client.example");
    assert_eq!(m["body"], "7bit");
    assert_eq!(m["smtputf8"], false);

    let sent = swaks_data(&out);
    assert!(String::from_utf8_lossy(&sent).contains("\r\n\r\nFirst line of the body.\r\nSecond line, with   spaces and a tab\there.\r\n\r\nAfter an empty line.\r\n"), "swaks did not send our body: {sent:?}");
    let spooled = d.body(&id);
    assert_eq!(
        m["size"].as_u64(),
        Some(spooled.len() as u64),
        "envelope size is the body file's size"
    );
    let (_, rest) = split_received(
        &spooled,
        "client.example",
        "ESMTP",
        &id,
        Some("rcpt@example.com"),
    );
    // swaks sends Date: and Message-Id:, so nothing is added.
    assert_eq!(
        String::from_utf8_lossy(&rest),
        String::from_utf8_lossy(&sent),
        "after Received:, the spool holds exactly what swaks sent"
    );
}

#[test]
fn swaks_pipelining_with_two_recipients() {
    if !peers::require("swaks") {
        return;
    }
    let d = Daemon::start();
    let (rc, out) = swaks(
        &d,
        &[
            "--pipeline",
            "--from",
            "sender@example.com",
            "--to",
            "a@example.com,b@example.org",
            "--body",
            "pipelined body",
        ],
    );
    assert_eq!(rc, 0, "swaks --pipeline failed:\n{out}");
    // swaks really pipelined: MAIL, both RCPTs and DATA went out before the first reply.
    let after_ehlo: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("<-  250 ") && !l.starts_with("<-  250-"))
        .skip_while(|l| l.starts_with("<-"))
        .take(4)
        .collect();
    assert_eq!(
        after_ehlo,
        [
            " -> MAIL FROM:<sender@example.com>",
            " -> RCPT TO:<a@example.com>",
            " -> RCPT TO:<b@example.org>",
            " -> DATA"
        ],
        "{out}"
    );
    let id = queued_id(
        out.lines()
            .find(|l| l.contains("queued as"))
            .unwrap_or_else(|| panic!("{out}")),
    );
    let q = d.queue();
    assert_eq!(q.len(), 1, "{q:#?}");
    assert_eq!(recipients(&q[0]), ["a@example.com", "b@example.org"]);
    let (_, rest) = split_received(&d.body(&id), "client.example", "ESMTP", &id, None);
    assert_eq!(
        String::from_utf8_lossy(&rest),
        String::from_utf8_lossy(&swaks_data(&out))
    );
}

// ----------------------------------------------------------------- Python

/// The Python client. Reads the message (bytes, already CRLF, not stuffed)
/// on stdin; argv[1] is JSON: mode, port, from, to, mail_options. Prints
/// the final reply to the message as JSON: {"code": 250, "text": "..."}.
///
/// - `sendmail`: `smtplib.SMTP.sendmail` (which does not pipeline), with
///   every recipient; checks that PIPELINING is announced.
/// - `docmd`: EHLO, then MAIL, RCPT…, DATA one command at a time with
///   `docmd`, and the stuffed data with `send`.
/// - `pipelined`: a raw socket: MAIL, RCPT…, DATA in one write (RFC 2920),
///   then the stuffed data, the end of data and QUIT in one write.
const PY_CLIENT: &str = r#"
import json, re, smtplib, socket, sys
a = json.loads(sys.argv[1])
msg = sys.stdin.buffer.read()
assert msg.endswith(b"\r\n")
opts = a.get("mail_options", [])
utf8 = "SMTPUTF8" in opts
def stuffed(m):
    return re.sub(rb"(?m)^\.", b"..", m) + b".\r\n"
def out(code, text):
    print(json.dumps({"code": code, "text": text.decode("utf-8", "replace") if isinstance(text, bytes) else text}))
if a["mode"] == "sendmail":
    s = smtplib.SMTP("127.0.0.1", a["port"], local_hostname="client.example", timeout=20)
    s.ehlo()
    assert s.has_extn("pipelining") and s.has_extn("8bitmime") and s.has_extn("smtputf8"), s.esmtp_features
    orig = s.data
    def data(m):
        r = orig(m)
        out(*r)
        return r
    s.data = data
    refused = s.sendmail(a["from"], a["to"], msg, mail_options=opts)
    assert refused == {}, refused
    s.quit()
elif a["mode"] == "docmd":
    s = smtplib.SMTP("127.0.0.1", a["port"], local_hostname="client.example", timeout=20)
    code, _ = s.ehlo()
    assert code == 250
    if utf8:
        s.command_encoding = "utf-8"
    code, r = s.docmd("MAIL", "FROM:<%s>%s" % (a["from"], "".join(" " + o for o in opts)))
    assert code == 250, (code, r)
    for t in a["to"]:
        code, r = s.docmd("RCPT", "TO:<%s>" % t)
        assert code == 250, (code, r)
    code, r = s.docmd("DATA")
    assert code == 354, (code, r)
    s.send(stuffed(msg))
    out(*s.getreply())
    s.quit()
else:
    sock = socket.create_connection(("127.0.0.1", a["port"]), timeout=20)
    f = sock.makefile("rb")
    def reply():
        lines = []
        while True:
            l = f.readline()
            assert l.endswith(b"\r\n"), l
            lines.append(l)
            if l[3:4] != b"-":
                return int(l[:3]), b"".join(x[4:] for x in lines).rstrip(b"\r\n")
    assert reply()[0] == 220
    sock.sendall(b"EHLO client.example\r\n")
    code, caps = reply()
    assert code == 250 and b"PIPELINING" in caps, caps
    cmds = "MAIL FROM:<%s>%s\r\n" % (a["from"], "".join(" " + o for o in opts))
    cmds += "".join("RCPT TO:<%s>\r\n" % t for t in a["to"]) + "DATA\r\n"
    sock.sendall(cmds.encode("utf-8"))
    for want in [250] * (1 + len(a["to"])) + [354]:
        code, r = reply()
        assert code == want, (want, code, r)
    sock.sendall(stuffed(msg) + b"QUIT\r\n")
    out(*reply())
    assert reply()[0] == 221
"#;

fn python(
    d: &Daemon,
    mode: &str,
    from: &str,
    to: &[&str],
    mail_options: &[&str],
    msg: &[u8],
) -> (u16, String) {
    let args = serde_json::json!({"mode": mode, "port": d.port, "from": from, "to": to, "mail_options": mail_options});
    let mut child = Command::new("python3")
        .args(["-c", PY_CLIENT, &args.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().unwrap().write_all(msg).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python client ({mode}) failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&out.stdout)));
    (
        v["code"].as_u64().unwrap() as u16,
        v["text"].as_str().unwrap().to_string(),
    )
}

/// A message with 8-bit content: Latin-1 and UTF-8 text, every octet from
/// 0x80 to 0xFF, lines that need dot-stuffing (including a lone "."),
/// trailing white space and empty lines. Date: and Message-ID: present.
fn eight_bit_message() -> Vec<u8> {
    let mut m = b"From: Sender <sender@example.com>\r\nTo: a@example.com, b@example.net, c@example.org\r\nSubject: 8-bit body\r\nDate: Sun, 29 Nov 2026 17:00:00 +0100\r\nMessage-ID: <8bit.1@client.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
    m.extend_from_slice(b"Latin-1: caf\xe9, na\xefve, \xc5ngstr\xf6m, \xdf\xe6\xf8\xe5\r\n");
    m.extend_from_slice("UTF-8: café, ✓, 📧, ΑΒΓ\r\n".as_bytes());
    for row in (0x80u8..=0xff).collect::<Vec<u8>>().chunks(32) {
        m.extend_from_slice(row);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b".leading dot\r\n..two dots\r\n.\r\n . space first\r\n");
    m.extend_from_slice(b"trailing white space \t \r\n\r\n\r\n\xff\xfe last line \x80\r\n");
    m
}

#[test]
fn python_sendmail_8bitmime_several_recipients_byte_exact() {
    if !peers::require("python3") {
        return;
    }
    let d = Daemon::start();
    let msg = eight_bit_message();
    let to = ["a@example.com", "b@example.net", "c@example.org"];
    let (code, text) = python(
        &d,
        "sendmail",
        "sender@example.com",
        &to,
        &["BODY=8BITMIME"],
        &msg,
    );
    assert_eq!(code, 250, "{text}");
    assert!(text.starts_with("2.0.0 Ok: queued as "), "{text}");
    let id = queued_id(&text);
    // One queue entry for all recipients, in the order given.
    let q = d.queue();
    assert_eq!(q.len(), 1, "one message, one queue entry: {q:#?}");
    assert_eq!(q[0]["id"], id.as_str());
    assert_eq!(recipients(&q[0]), to);
    assert_eq!(q[0]["sender"], "sender@example.com");
    assert_eq!(q[0]["body"], "8bitmime", "BODY=8BITMIME is recorded");
    let spooled = d.body(&id);
    let (_, rest) = split_received(&spooled, "client.example", "ESMTP", &id, None);
    assert_client_bytes(&rest, &msg, false, false);
    assert_eq!(&rest[..], &msg[..], "byte-exact");
}

#[test]
fn python_docmd_without_pipelining_byte_exact() {
    if !peers::require("python3") {
        return;
    }
    let d = Daemon::start();
    let msg = eight_bit_message();
    let (code, text) = python(
        &d,
        "docmd",
        "sender@example.com",
        &["rcpt@example.com"],
        &["BODY=8BITMIME"],
        &msg,
    );
    assert_eq!(code, 250, "{text}");
    let id = queued_id(&text);
    let m = entry(&d, &id);
    assert_eq!(recipients(&m), ["rcpt@example.com"]);
    assert_eq!(m["body"], "8bitmime");
    let (_, rest) = split_received(
        &d.body(&id),
        "client.example",
        "ESMTP",
        &id,
        Some("rcpt@example.com"),
    );
    assert_eq!(&rest[..], &msg[..], "byte-exact");
}

#[test]
fn python_raw_pipelined_byte_exact() {
    if !peers::require("python3") {
        return;
    }
    let d = Daemon::start();
    let msg = eight_bit_message();
    let to = ["a@example.com", "b@example.com"];
    let (code, text) = python(
        &d,
        "pipelined",
        "sender@example.com",
        &to,
        &["BODY=8BITMIME"],
        &msg,
    );
    assert_eq!(code, 250, "{text}");
    let id = queued_id(&text);
    assert_eq!(recipients(&entry(&d, &id)), to);
    let (_, rest) = split_received(&d.body(&id), "client.example", "ESMTP", &id, None);
    assert_eq!(&rest[..], &msg[..], "byte-exact");
}

/// SMTPUTF8 (RFC 6531): non-ASCII sender and recipient, UTF-8 headers. The
/// envelope keeps the addresses as sent and is marked smtputf8; the trace
/// field says UTF8SMTP; the message is byte-exact.
#[test]
fn python_smtputf8_byte_exact() {
    if !peers::require("python3") {
        return;
    }
    let from = "jösé@exämple.com";
    let to = "δοκιμή@παράδειγμα.δοκιμή";
    let msg = format!(
        "From: Jösé Ünïcödé <{from}>\r\nTo: Δοκιμή <{to}>\r\nSubject: ✓ ünïcödé 日本語\r\nDate: Sun, 29 Nov 2026 17:00:00 +0000\r\nMessage-ID: <ütf8.1@exämple.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nΚαλημέρα κόσμε, こんにちは 世界.\r\n.dot\r\n"
    )
    .into_bytes();
    for mode in ["sendmail", "docmd"] {
        let d = Daemon::start();
        let (code, text) = python(&d, mode, from, &[to], &["SMTPUTF8", "BODY=8BITMIME"], &msg);
        assert_eq!(code, 250, "{mode}: {text}");
        let id = queued_id(&text);
        let m = entry(&d, &id);
        assert_eq!(m["sender"], from, "{mode}");
        assert_eq!(recipients(&m), [to], "{mode}");
        assert_eq!(m["smtputf8"], true, "{mode}");
        let (_, rest) = split_received(&d.body(&id), "client.example", "UTF8SMTP", &id, Some(to));
        assert_eq!(&rest[..], &msg[..], "{mode}: byte-exact");
    }
}
