//! The operator's mail log: one stable line per event, in the shape of
//! Postfix's log (`QUEUEID: from=<…>, size=…, nrcpt=…`) so that grep habits
//! and tools such as `pflogsumm --syslog-name=postrelay` keep working.
//!
//! It is not the debugging log (that is `tracing`). Lines are written whole,
//! one `write` each, to the configured file (opened for append) or stderr.
//! Client-supplied text is escaped so a line can never be split or faked.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::Mutex;

use crate::config::{LogFormat, LogSettings};
use crate::spool::Envelope;

/// Where mail log lines go.
pub struct MailLog {
    out: Mutex<Box<dyn Write + Send>>,
    hostname: String,
    format: LogFormat,
    pid: u32,
}

impl MailLog {
    /// Opens the configured destination.
    pub fn open(settings: &LogSettings, hostname: &str) -> io::Result<MailLog> {
        let out: Box<dyn Write + Send> = match &settings.file {
            Some(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
            None => Box::new(io::stderr()),
        };
        Ok(Self::with_writer(out, hostname, settings.format))
    }

    /// A log writing to any sink (tests).
    pub fn with_writer(out: Box<dyn Write + Send>, hostname: &str, format: LogFormat) -> MailLog {
        MailLog {
            out: Mutex::new(out),
            hostname: hostname.to_string(),
            format,
            pid: std::process::id(),
        }
    }

    /// A message was committed to the queue.
    pub fn accepted(&self, env: &Envelope, helo: &str, ip: IpAddr) {
        let id = env.id.to_string();
        self.line("smtpd", &id, &format!("client={}[{ip}]", clean(helo)));
        self.line(
            "qmgr",
            &id,
            &format!(
                "from=<{}>, size={}, nrcpt={} (queue active)",
                clean(&env.sender),
                env.size,
                env.recipients.len()
            ),
        );
    }

    /// A message left the queue (delivered, bounced, or deleted).
    pub fn removed(&self, id: &str) {
        self.line("qmgr", id, "removed");
    }

    /// Writes one event line.
    pub fn line(&self, program: &str, id: &str, text: &str) {
        let line = match self.format {
            LogFormat::Postfix => {
                let now = jiff::ZonedDateTime::now();
                format!(
                    "{} {} postrelay/{program}[{}]: {id}: {text}\n",
                    now.strftime("%b %e %H:%M:%S"),
                    self.hostname,
                    self.pid
                )
            }
            LogFormat::Json => {
                let v = serde_json::json!({
                    "time": jiff::Timestamp::now().to_string(),
                    "host": self.hostname,
                    "program": program,
                    "queue_id": id,
                    "text": text,
                });
                format!("{v}\n")
            }
        };
        if let Ok(mut out) = self.out.lock() {
            // A full or broken log must not stop mail; tracing reports it.
            if let Err(e) = out.write_all(line.as_bytes()) {
                tracing::error!(error = %e, "cannot write the mail log");
            }
        }
    }
}

/// Makes client-supplied text safe for a one-line log: control characters
/// become `?`, so a CR/LF in an address can never start a forged line.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_lines() {
        assert_eq!(clean("a\r\nb\tc"), "a??b?c");
    }
}
