//! The daemon's HTTP endpoint (`[metrics] listen`) as a test reads it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `GET path` → (status line, body).
pub fn get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of one series (exact name with labels) in the text; 0 when
/// it is not there.
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
        .unwrap_or(0.0)
}
