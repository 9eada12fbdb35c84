//! The session transcript: every line sent (`C: `) and received (`S: `),
//! plus notes (`* `) on TLS and mode detection, kept bounded in memory and,
//! in verbose mode, logged as it happens.
//!
//! Secrets never reach this module: the code that sends a credential
//! records a redacted line instead (`C: AUTH PLAIN <redacted>`). What the
//! relay sends is escaped so that it cannot forge log lines.
//!
//! Not for: deciding what to log at the end of a delivery (the caller takes
//! the transcript and decides).

use std::collections::VecDeque;
use std::fmt::Write;

/// Lines kept; older ones are dropped (and counted).
const MAX_LINES: usize = 200;
/// Characters kept of one line.
const MAX_LINE_CHARS: usize = 300;

/// A bounded record of one session's conversation.
pub(super) struct Transcript {
    relay: String,
    verbose: bool,
    lines: VecDeque<String>,
    dropped: usize,
    /// Line buffers of a cleared conversation, emptied, for the next one
    /// (a pooled session records a few lines per message).
    spare: Vec<String>,
}

impl Transcript {
    /// An empty transcript for the relay `relay`.
    pub(super) fn new(relay: &str, verbose: bool) -> Transcript {
        Transcript {
            relay: relay.to_owned(),
            verbose,
            lines: VecDeque::new(),
            dropped: 0,
            spare: Vec::new(),
        }
    }

    /// A line we sent (without CRLF). Must not contain a secret.
    pub(super) fn client(&mut self, line: &str) {
        self.push("C: ", line);
    }

    /// A line the relay sent (without its line end).
    pub(super) fn server(&mut self, line: &str) {
        self.push("S: ", line);
    }

    /// A note about the session (TLS, mode detection).
    pub(super) fn note(&mut self, text: &str) {
        self.push("* ", text);
    }

    /// The lines since the last call, oldest first.
    pub(super) fn take(&mut self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.lines.len() + 1);
        if self.dropped > 0 {
            out.push(format!("* ({} earlier lines not kept)", self.dropped));
            self.dropped = 0;
        }
        out.extend(self.lines.drain(..));
        out
    }

    /// Forgets the lines since the last [`Transcript::take`], keeping their
    /// buffers for the lines to come.
    pub(super) fn clear(&mut self) {
        self.dropped = 0;
        for mut line in self.lines.drain(..) {
            line.clear();
            self.spare.push(line);
        }
    }

    fn push(&mut self, prefix: &str, text: &str) {
        let mut line = self.spare.pop().unwrap_or_default();
        line.reserve(prefix.len() + text.len().min(MAX_LINE_CHARS));
        line.push_str(prefix);
        for (n, c) in text.chars().enumerate() {
            if n == MAX_LINE_CHARS {
                line.push('…');
                break;
            }
            if c.is_control() {
                let _ = write!(line, "{}", c.escape_default());
            } else {
                line.push(c);
            }
        }
        if self.verbose {
            tracing::info!(relay = %self.relay, "{line}");
        }
        if self.lines.len() == MAX_LINES {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_escaped_and_taken_once() {
        let mut t = Transcript::new("r", false);
        t.server("250 ok\x1b[31m");
        t.client(&"x".repeat(1000));
        let lines = t.take();
        assert_eq!(lines[0], "S: 250 ok\\u{1b}[31m");
        assert_eq!(lines[1].chars().count(), 3 + MAX_LINE_CHARS + 1);
        assert!(t.take().is_empty());
        for i in 0..(MAX_LINES + 5) {
            t.note(&i.to_string());
        }
        let lines = t.take();
        assert_eq!(lines.len(), MAX_LINES + 1);
        assert_eq!(lines[0], "* (5 earlier lines not kept)");
        assert_eq!(lines[1], "* 5");
    }

    #[test]
    fn cleared_lines_leave_nothing_in_the_next_conversation() {
        let mut t = Transcript::new("r", false);
        for i in 0..(MAX_LINES + 3) {
            t.client(&format!("RCPT TO:<someone-{i}@example.org>"));
        }
        t.clear();
        // The recycled buffers held longer lines than these.
        t.client("DATA");
        t.server("354 go");
        assert_eq!(t.take(), ["C: DATA", "S: 354 go"]);
        t.client("QUIT");
        t.clear();
        assert!(t.take().is_empty());
    }
}
