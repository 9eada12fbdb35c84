//! Where mail log records go: a byte stream (a file, standard error),
//! syslog (RFC 3164 datagrams with facility `mail` to the syslog socket, as
//! Postfix sends them, so `/var/log/mail.log` gets the usual lines), or the
//! systemd journal (its native protocol: one datagram of `KEY=value`
//! fields, so each record keeps its queue ID, recipient and status as
//! fields). Only the transport: the text of a record is `MailLog`'s.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// The journal's socket for native records.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Facility `mail` (2), shifted as syslog priorities are.
const FACILITY_MAIL: u8 = 2 << 3;

/// One record, before the transport adds its framing.
pub struct Record<'a> {
    /// `NAME/program`, e.g. `postrelay/smtp`.
    pub tag: &'a str,
    /// Warning rather than informational.
    pub warning: bool,
    /// The text after the tag: `ID: to=<…>, …`, or a JSON object.
    pub message: &'a str,
    /// Structured fields for the journal: upper-case names, values.
    pub fields: &'a [(&'static str, String)],
}

/// A destination.
pub enum Sink {
    /// Whole lines (the caller formats them).
    Stream(Box<dyn Write + Send>),
    /// Syslog datagrams to this socket.
    Syslog(PathBuf),
    /// Journal records to this socket.
    Journal(PathBuf),
}

impl Sink {
    /// Sends one record; `line` is the stream form (with a newline).
    pub fn send(&mut self, record: &Record<'_>, line: &str) -> io::Result<()> {
        match self.datagram_of(record) {
            None => self.write_lines(line.as_bytes()),
            Some(bytes) => self.send_datagram(&bytes),
        }
    }

    /// The datagram of a record for syslog or the journal; `None` for a
    /// stream, which takes the record's line.
    fn datagram_of(&self, record: &Record<'_>) -> Option<Vec<u8>> {
        match self {
            Sink::Stream(_) => None,
            Sink::Syslog(_) => Some(syslog_datagram(record).into_bytes()),
            Sink::Journal(_) => Some(journal_datagram(record)),
        }
    }

    /// Writes whole lines to a stream (nothing for the others).
    pub fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stream(out) if !lines.is_empty() => out.write_all(lines),
            _ => Ok(()),
        }
    }

    /// Sends one datagram made by [`Sink::datagram_of`] (nothing for a
    /// stream).
    pub fn send_datagram(&self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stream(_) => Ok(()),
            Sink::Syslog(path) | Sink::Journal(path) => datagram(path, bytes),
        }
    }
}

fn datagram(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // Unconnected: a syslog daemon or journald that restarts is found again.
    UnixDatagram::unbound()?.send_to(bytes, path).map(|_| ())
}

/// `<PRI>Mmm dd hh:mm:ss TAG[pid]: message`, what syslog(3) sends.
pub(super) fn syslog_datagram(r: &Record<'_>) -> String {
    let severity = if r.warning { 4 } else { 6 };
    let now = jiff::ZonedDateTime::now();
    format!(
        "<{}>{} {}[{}]: {}",
        FACILITY_MAIL | severity,
        now.strftime("%b %e %H:%M:%S"),
        r.tag,
        std::process::id(),
        r.message
    )
}

/// The journal's native format: `KEY=value\n`, or for a value with a
/// newline `KEY\n` + its length (64-bit little-endian) + value + `\n`.
pub(super) fn journal_datagram(r: &Record<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut field = |key: &str, value: &str| {
        if value.contains('\n') {
            out.extend_from_slice(key.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        } else {
            out.extend_from_slice(key.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'\n');
    };
    field("MESSAGE", r.message);
    field("PRIORITY", if r.warning { "4" } else { "6" });
    field("SYSLOG_FACILITY", "2");
    field("SYSLOG_IDENTIFIER", r.tag);
    field("SYSLOG_PID", &std::process::id().to_string());
    for (k, v) in r.fields {
        field(k, v);
    }
    out
}

/// Whether standard error is connected to the journal (systemd sets
/// `$JOURNAL_STREAM` to its device and inode).
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream == format!("{}:{}", meta.dev(), meta.ino())
}

/// Whether `path` is a socket (a syslog daemon listens there).
pub fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record<'a>(fields: &'a [(&'static str, String)]) -> Record<'a> {
        Record {
            tag: "postfix/smtp",
            warning: false,
            message: "ID1: to=<bob@example.org>, status=sent (250 ok)",
            fields,
        }
    }

    fn receive(sock: &UnixDatagram) -> Vec<u8> {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn syslog_datagrams_have_facility_mail_and_the_tag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let sock = UnixDatagram::bind(&path).unwrap();
        assert!(is_socket(&path) && !is_socket(dir.path()));
        let mut sink = Sink::Syslog(path);
        sink.send(&record(&[]), "ignored\n").unwrap();
        let got = String::from_utf8(receive(&sock)).unwrap();
        // <22> = mail.info; then "Mmm dd hh:mm:ss".
        assert!(got.starts_with("<22>"), "{got}");
        let rest = &got[4 + 15..];
        assert_eq!(
            rest,
            format!(
                " postfix/smtp[{}]: ID1: to=<bob@example.org>, status=sent (250 ok)",
                std::process::id()
            )
        );
        let warning = Record {
            warning: true,
            ..record(&[])
        };
        sink.send(&warning, "").unwrap();
        assert!(receive(&sock).starts_with(b"<20>"));
    }

    #[test]
    fn journal_records_carry_fields_and_binary_safe_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let sock = UnixDatagram::bind(&path).unwrap();
        let fields = [
            ("POSTRELAY_QUEUE_ID", "ID1".to_string()),
            ("POSTRELAY_DETAIL", "two\nlines".to_string()),
        ];
        Sink::Journal(path).send(&record(&fields), "").unwrap();
        let got = receive(&sock);
        let text = String::from_utf8_lossy(&got);
        for want in [
            "MESSAGE=ID1: to=<bob@example.org>, status=sent (250 ok)\n",
            "PRIORITY=6\n",
            "SYSLOG_FACILITY=2\n",
            "SYSLOG_IDENTIFIER=postfix/smtp\n",
            "POSTRELAY_QUEUE_ID=ID1\n",
        ] {
            assert!(text.contains(want), "{want:?} in {text:?}");
        }
        let mut binary = b"POSTRELAY_DETAIL\n".to_vec();
        binary.extend_from_slice(&9u64.to_le_bytes());
        binary.extend_from_slice(b"two\nlines\n");
        assert!(got.ends_with(&binary), "{text:?}");
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let mut sink = Sink::Syslog("/nonexistent/postrelay-test-log".into());
        assert!(sink.send(&record(&[]), "").is_err());
        assert!(!stderr_is_journal() || std::env::var("JOURNAL_STREAM").is_ok());
    }
}
