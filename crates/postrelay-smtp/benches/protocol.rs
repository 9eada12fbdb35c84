//! Micro-benchmarks of the protocol crate's hot paths: the command parser,
//! the DATA receiver and the dot-stuffer (`cargo bench -p postrelay-smtp`).
//!
//! They measure the pure functions alone, without sockets, so that a
//! regression in the end-to-end benchmark can be traced to (or cleared
//! of) the protocol code. Under `cargo test --benches` each runs once.

use divan::{Bencher, black_box};
use postrelay_smtp::{Command, DataReceiver, DotStuffer, parse_reply};

fn main() {
    divan::main();
}

/// The commands of one ordinary relayed transaction, in order.
const TRANSACTION: &[&[u8]] = &[
    b"EHLO client.example.org",
    b"MAIL FROM:<sender@example.org> SIZE=1024 BODY=8BITMIME",
    b"RCPT TO:<recipient@example.net>",
    b"DATA",
    b"QUIT",
];

#[divan::bench]
fn parse_transaction_commands() -> usize {
    let mut ok = 0;
    for line in TRANSACTION {
        ok += usize::from(Command::parse(black_box(line)).is_ok());
    }
    ok
}

#[divan::bench]
fn parse_mail_with_parameters() -> bool {
    Command::parse(black_box(
        b"MAIL FROM:<sender@example.org> SIZE=102400 BODY=8BITMIME RET=HDRS ENVID=QQ314159",
    ))
    .is_ok()
}

#[divan::bench]
fn parse_multiline_ehlo_reply() -> bool {
    let reply = b"250-sink.example Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n\
250 SMTPUTF8\r\n";
    matches!(parse_reply(black_box(reply), 512), Ok(Some(_)))
}

/// A message of about `size` bytes as a client sends it after `354`:
/// header, 76-octet text lines (every 40th starting with a dot, stuffed)
/// and the terminator.
fn wire_message(size: usize) -> Vec<u8> {
    let mut m = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n".to_vec();
    let mut n = 0;
    while m.len() < size {
        if n % 40 == 0 {
            m.extend_from_slice(b"..");
        }
        m.extend_from_slice(&[b'x'; 74]);
        m.extend_from_slice(b"\r\n");
        n += 1;
    }
    m.extend_from_slice(b".\r\n");
    m
}

/// The body of [`wire_message`], unstuffed, without the terminator.
fn plain_body(size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rx = DataReceiver::new();
    rx.ingest(&wire_message(size), &mut out);
    out
}

const SIZES: &[usize] = &[1024, 100 * 1024];

/// The receiver fed in 16 KiB reads, as the session's socket reads are.
#[divan::bench(args = SIZES)]
fn data_receiver(bencher: Bencher, size: usize) {
    let wire = wire_message(size);
    let mut out = Vec::with_capacity(wire.len());
    bencher
        .counter(divan::counter::BytesCount::new(wire.len()))
        .bench_local(|| {
            out.clear();
            let mut rx = DataReceiver::new();
            for chunk in black_box(&wire).chunks(16 * 1024) {
                rx.ingest(chunk, &mut out);
            }
            rx.is_done()
        });
}

/// The stuffer fed in 16 KiB reads of the spooled body, as delivery reads it.
#[divan::bench(args = SIZES)]
fn dot_stuffer(bencher: Bencher, size: usize) {
    let body = plain_body(size);
    let mut out = Vec::with_capacity(body.len() + body.len() / 32 + 8);
    bencher
        .counter(divan::counter::BytesCount::new(body.len()))
        .bench_local(|| {
            out.clear();
            let mut st = DotStuffer::new();
            for chunk in black_box(&body).chunks(16 * 1024) {
                st.stuff(chunk, &mut out);
            }
            st.finish(&mut out);
            out.len()
        });
}

/// What delivery does instead of [`dot_stuffer`] with a body the intake
/// found needs no stuffing (`sends_as_is`) over TLS: the 16 KiB pieces
/// copied into the send buffer as they are (over plain TCP not even that:
/// `sendfile`).
#[divan::bench(args = SIZES)]
fn as_is(bencher: Bencher, size: usize) {
    let body = plain_body(size);
    let mut out = Vec::with_capacity(body.len() + 8);
    bencher
        .counter(divan::counter::BytesCount::new(body.len()))
        .bench_local(|| {
            out.clear();
            for chunk in black_box(&body).chunks(16 * 1024) {
                out.extend_from_slice(chunk);
            }
            out.extend_from_slice(b".\r\n");
            out.len()
        });
}
