//! The messages the generator sends: fixed headers and body built once per
//! run, and per message an `X-Load-Id: <tag>.<seq>` header that the sink
//! logs, so that arrivals can be matched with acceptances.

use crate::conn::Conn;

/// A run's message shape.
#[derive(Debug)]
pub struct Template {
    tag: String,
    domain: String,
    mail: Vec<u8>,
    rcpts: Vec<Vec<u8>>,
    rest: Vec<u8>,
    size: usize,
}

/// The headers that differ from message to message.
fn id_headers(tag: &str, seq: usize, domain: &str) -> String {
    format!("X-Load-Id: {tag}.{seq}\r\nMessage-ID: <{tag}.{seq}@{domain}>\r\n")
}

impl Template {
    /// Messages of about `size` bytes (never less than the headers) to
    /// `recipients` addresses at `domain`.
    pub fn new(tag: &str, domain: &str, size: usize, recipients: usize) -> Template {
        let to: Vec<String> = (0..recipients.max(1))
            .map(|i| format!("rcpt{i}@{domain}"))
            .collect();
        let mut rest = format!(
            "From: <load@{domain}>\r\nTo: {}\r\nSubject: postrelay load\r\n\r\n",
            to.iter()
                .map(|a| format!("<{a}>"))
                .collect::<Vec<_>>()
                .join(",\r\n ")
        )
        .into_bytes();
        let fixed = id_headers(tag, 0, domain).len() + rest.len();
        // Body lines of 78 'x' and CRLF; the last one shortened to fit.
        let mut left = size.saturating_sub(fixed);
        while left > 2 {
            let mut n = (left - 2).min(78);
            if (1..=2).contains(&(left - n - 2)) {
                // Too little would be left for a line of its own.
                n -= 3;
            }
            rest.extend(std::iter::repeat_n(b'x', n));
            rest.extend_from_slice(b"\r\n");
            left -= n + 2;
        }
        rest.extend_from_slice(b".\r\n");
        let size = id_headers(tag, 0, domain).len() + rest.len() - 3;
        Template {
            tag: tag.to_owned(),
            domain: domain.to_owned(),
            mail: format!("MAIL FROM:<load@{domain}>\r\n").into_bytes(),
            rcpts: to
                .iter()
                .map(|a| format!("RCPT TO:<{a}>\r\n").into_bytes())
                .collect(),
            rest,
            size,
        }
    }

    /// The commands of a transaction with their names and the reply class
    /// each expects.
    pub fn commands(&self) -> Vec<(&[u8], &'static str, u16)> {
        let mut v: Vec<(&[u8], &'static str, u16)> = vec![(&self.mail, "MAIL", 2)];
        v.extend(self.rcpts.iter().map(|r| (r.as_slice(), "RCPT", 2)));
        v.push((b"DATA\r\n", "DATA", 3));
        v
    }

    /// Queues message `seq` and its terminating dot on `c`.
    pub fn write_message(&self, c: &mut Conn, seq: usize) {
        c.queue(&self.message_bytes(seq));
    }

    /// The bytes of one message (headers and body, without the final dot).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The message `seq` as sent, with its terminating dot.
    pub fn message_bytes(&self, seq: usize) -> Vec<u8> {
        let mut v = id_headers(&self.tag, seq, &self.domain).into_bytes();
        v.extend_from_slice(&self.rest);
        v
    }
}

#[cfg(test)]
mod tests;
