//! One sink session: the command loop, STARTTLS, AUTH PLAIN and DATA.
//! Replies to pipelined commands are sent together, when the client has
//! nothing more buffered.

use std::sync::atomic::Ordering;

use postrelay_smtp::Command;

use super::{Config, receive};
use crate::conn::Conn;
use crate::error::LoadError;

#[derive(Default)]
struct State {
    authed: bool,
    in_mail: bool,
    rcpts: u32,
}

const NEED_TLS: &[u8] = b"530 5.7.0 Must issue a STARTTLS command first\r\n";

/// Serves one session to its end.
pub(super) async fn run(mut c: Conn, config: &Config) -> Result<(), LoadError> {
    c.send(b"220 sink.test ESMTP postrelay-load sink\r\n")
        .await?;
    let mut st = State::default();
    loop {
        let line = c.line().await?;
        let cmd = match Command::parse(&line) {
            Ok(cmd) => cmd,
            Err(e) => {
                c.queue(&e.reply().encode());
                flush_if_idle(&mut c).await?;
                continue;
            }
        };
        match cmd {
            Command::Ehlo(_) => {
                st = State::default();
                let ehlo = ehlo_reply(config, c.is_tls());
                c.queue(ehlo.as_bytes());
            }
            Command::Helo(_) | Command::Noop(_) => c.queue(b"250 2.0.0 Ok\r\n"),
            Command::StartTls if config.tls.is_some() && !c.is_tls() => {
                c.send(b"220 2.0.0 Ready to start TLS\r\n").await?;
                if let Some(tls) = &config.tls {
                    c.accept_tls(tls.clone()).await?;
                }
                config.counters.tls_sessions.fetch_add(1, Ordering::Relaxed);
                st = State::default();
            }
            Command::Auth { mechanism, initial } => {
                let reply = auth(&mut c, config, &mut st, &mechanism, initial).await?;
                c.queue(reply);
            }
            Command::Mail { .. } => {
                let reply = mail(config, &c, &mut st);
                c.queue(reply);
            }
            Command::Rcpt { .. } if st.in_mail => {
                st.rcpts += 1;
                c.queue(b"250 2.1.5 Ok\r\n");
            }
            Command::Data if st.rcpts > 0 => {
                c.send(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let id = receive(&mut c).await?;
                config.note(id.as_deref(), st.rcpts)?;
                st.in_mail = false;
                st.rcpts = 0;
                c.queue(b"250 2.0.0 Ok: queued\r\n");
            }
            Command::Rcpt { .. } | Command::Data => {
                c.queue(b"503 5.5.1 Error: need MAIL and RCPT first\r\n");
            }
            Command::Rset => {
                st.in_mail = false;
                st.rcpts = 0;
                c.queue(b"250 2.0.0 Ok\r\n");
            }
            Command::Quit => {
                c.send(b"221 2.0.0 Bye\r\n").await?;
                c.shutdown().await;
                return Ok(());
            }
            _ => c.queue(b"502 5.5.2 Error: command not implemented\r\n"),
        }
        flush_if_idle(&mut c).await?;
    }
}

async fn flush_if_idle(c: &mut Conn) -> Result<(), LoadError> {
    if c.buffered().is_empty() {
        c.flush().await?;
    }
    Ok(())
}

/// The EHLO reply: STARTTLS until TLS is up, AUTH once it may be used.
pub(super) fn ehlo_reply(config: &Config, tls_up: bool) -> String {
    let mut lines = vec![
        "sink.test",
        "PIPELINING",
        "SIZE 0",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
    ];
    if config.tls.is_some() && !tls_up {
        lines.push("STARTTLS");
    }
    if config.login.is_some() && (tls_up || config.tls.is_none()) {
        lines.push("AUTH PLAIN");
    }
    let last = lines.len() - 1;
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
        .collect()
}

fn mail(config: &Config, c: &Conn, st: &mut State) -> &'static [u8] {
    if config.tls.is_some() && !c.is_tls() {
        return NEED_TLS;
    }
    if config.login.is_some() && !st.authed {
        return b"530 5.7.0 Authentication required\r\n";
    }
    st.in_mail = true;
    st.rcpts = 0;
    b"250 2.1.0 Ok\r\n"
}

async fn auth(
    c: &mut Conn,
    config: &Config,
    st: &mut State,
    mechanism: &str,
    initial: Option<String>,
) -> Result<&'static [u8], LoadError> {
    let Some((user, pass)) = &config.login else {
        return Ok(b"503 5.5.1 Error: authentication not enabled\r\n");
    };
    if config.tls.is_some() && !c.is_tls() {
        return Ok(NEED_TLS);
    }
    if st.authed {
        return Ok(b"503 5.5.1 Error: already authenticated\r\n");
    }
    if mechanism != "PLAIN" {
        return Ok(b"504 5.5.4 Error: only PLAIN is offered\r\n");
    }
    let response = match initial {
        Some(r) => r,
        None => {
            c.send(b"334 \r\n").await?;
            String::from_utf8_lossy(&c.line().await?).into_owned()
        }
    };
    match postrelay_smtp::sasl::decode_plain(&response) {
        Ok((_, u, p)) if u == *user && p == *pass => {
            st.authed = true;
            config.counters.logins.fetch_add(1, Ordering::Relaxed);
            Ok(b"235 2.7.0 Authentication successful\r\n")
        }
        _ => Ok(b"535 5.7.8 Error: authentication failed\r\n"),
    }
}
