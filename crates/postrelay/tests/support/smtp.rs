//! A deliberately dumb SMTP client for dialog tests: it sends exactly the
//! bytes it is given (bare LFs and all) and reads whole replies.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long a read waits before the test fails: a reply or a close must
/// come within it.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// One reply: its code and its lines (without the code prefix).
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// All lines joined, for assertions.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// A raw client connection.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects and returns the client with the greeting already read.
    pub fn connect(port: u16) -> (Raw, Reply) {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        Self::greeted(stream)
    }

    /// Connects from the local address `source` (e.g. `127.0.0.2`) and
    /// returns the client with its first reply (greeting or `421`) read.
    pub fn connect_from(source: &str, port: u16) -> (Raw, Reply) {
        let source: std::net::IpAddr = source.parse().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let stream = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((source, 0).into()).unwrap();
            socket.connect(([127, 0, 0, 1], port).into()).await.unwrap()
        });
        let stream = stream.into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        Self::greeted(stream)
    }

    /// Wraps a connected stream and reads its first reply.
    fn greeted(stream: TcpStream) -> (Raw, Reply) {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
        };
        let greeting = raw.reply();
        (raw, greeting)
    }

    /// The underlying socket (for tests that pace their own writes).
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Sends bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a command line (CRLF appended) and reads one reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Reads one complete (possibly multi-line) reply. Panics on EOF.
    pub fn reply(&mut self) -> Reply {
        self.try_reply().expect("connection closed before a reply")
    }

    /// Reads one reply, or `None` when the server closed the connection
    /// (EOF or reset). Panics when neither happens within the read timeout.
    pub fn try_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = self.line()?;
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("bad reply line {line:?}"));
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Some(Reply { code, lines });
            }
        }
    }

    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if !self.fill() {
                assert!(
                    self.buf.is_empty(),
                    "connection closed after a partial line {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                return None;
            }
        }
    }

    /// Reads more input into the buffer: true when bytes arrived, false
    /// when the server closed the connection (EOF, or a reset: a server
    /// that closes with unread input makes the kernel send RST). Panics
    /// when nothing arrives within the read timeout: a server that keeps
    /// the connection open and silent has not closed it.
    fn fill(&mut self) -> bool {
        use std::io::ErrorKind;
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                false
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
                "the server neither answered nor closed the connection within {READ_TIMEOUT:?}"
            ),
            Err(e) => panic!("reading from the server: {e}"),
        }
    }

    /// Whether the server has closed the connection: true on EOF or a
    /// reset, false when it sent more bytes instead. Panics when the
    /// connection stays open and silent for the read timeout, so that
    /// `assert!(c.is_closed())` cannot pass against a server that simply
    /// stopped talking.
    pub fn is_closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }
}

/// Sends one message from `app@example.org` to `to` through the server at
/// `port`, asserting each reply (the message must be accepted).
pub fn send_one(port: u16, to: &str, subject: &str) {
    let (mut c, greeting) = Raw::connect(port);
    assert_eq!(greeting.code, 220);
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<app@example.org>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{to}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(format!("Subject: {subject}\r\n\r\nguide setup\r\n").as_bytes());
    assert_eq!(c.cmd(".").code, 250);
    c.cmd("QUIT");
}
