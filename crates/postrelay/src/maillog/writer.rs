//! Getting finished records to the sink, in order: one at a time (syslog
//! and journal datagrams, and any stream before [`Writer::start_batching`]),
//! or, for a stream (the log file, stderr) in the daemon, gathered and
//! written together.
//!
//! Batching: a line is appended to a buffer, and the first line of a batch
//! wakes the flusher task, which lets the other ready tasks run first (they
//! add their lines) and then writes the whole buffer with one `write`.
//! Under load that is one system call for many lines instead of one each;
//! alone, a line is written a scheduler round after it was made. Order is
//! kept: lines are taken from the buffer, and written, under the sink's
//! lock, which direct writes take too.
//!
//! What can be lost: nothing on a clean stop ([`Writer::stop_batching`],
//! also run on drop, writes what is buffered and turns batching off). A
//! crash of the process (SIGKILL, abort) loses the lines made since the
//! flusher last ran: those of one scheduler round, and never more than
//! [`MAX_BATCH`] bytes (past that the line's maker writes the batch
//! itself). The mail itself is unaffected: the queue's state is on disk.
//!
//! Not for: formatting records (`MailLog`) or the transports (`sink`).

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::sink::{Record, Sink};

/// Bytes of lines buffered at most; reaching it, the line's maker writes
/// them. Bounds memory and what a crash can lose (about 1 000 lines).
pub(super) const MAX_BATCH: usize = 256 * 1024;

/// The sink and, for a stream, the lines not yet written.
pub(super) struct Writer {
    sink: Mutex<Sink>,
    /// Whether the sink takes whole lines (so that lines can be batched).
    stream: bool,
    /// Whether the sink is the journal (the only one to use a record's
    /// structured fields).
    journal: bool,
    batch: Mutex<Batch>,
    wake: Notify,
}

#[derive(Default)]
struct Batch {
    /// Lines go to `lines` (and the flusher) rather than to the sink.
    on: bool,
    lines: Vec<u8>,
}

impl Writer {
    pub(super) fn new(sink: Sink) -> Arc<Writer> {
        Arc::new(Writer {
            stream: matches!(sink, Sink::Stream(_)),
            journal: matches!(sink, Sink::Journal(_)),
            sink: Mutex::new(sink),
            batch: Mutex::new(Batch::default()),
            wake: Notify::new(),
        })
    }

    /// Whether the sink takes whole lines: then a record is its line
    /// alone ([`Writer::send_line`]).
    pub(super) fn takes_lines(&self) -> bool {
        self.stream
    }

    /// Sends the line of a record to a sink that [takes
    /// lines](Writer::takes_lines).
    pub(super) fn send_line(&self, line: &str) {
        let record = Record {
            tag: "",
            warning: false,
            message: "",
            fields: &[],
        };
        self.send(&record, line);
    }

    /// Whether records need their structured fields (journal).
    pub(super) fn wants_fields(&self) -> bool {
        self.journal
    }

    /// Sends one record; `line` is the stream form (with a newline). A
    /// full or broken log must not stop mail: failures go to tracing.
    pub(super) fn send(&self, record: &Record<'_>, line: &str) {
        if self.stream {
            let mut batch = lock(&self.batch);
            if batch.on {
                let first = batch.lines.is_empty();
                batch.lines.extend_from_slice(line.as_bytes());
                let full = batch.lines.len() >= MAX_BATCH;
                drop(batch);
                if full {
                    self.flush();
                } else if first {
                    self.wake.notify_one();
                }
                return;
            }
        }
        if let Err(e) = lock(&self.sink).send(record, line) {
            report(&e);
        }
    }

    /// Writes the buffered lines (if any) with one `write`.
    pub(super) fn flush(&self) {
        let mut sink = lock(&self.sink);
        let lines = std::mem::take(&mut lock(&self.batch).lines);
        write_lines(&mut sink, &lines);
    }

    /// From now on a stream's lines are batched and written by a task on
    /// the current tokio runtime (see the module documentation). Nothing
    /// for syslog or the journal (a datagram per record).
    pub(super) fn start_batching(self: &Arc<Writer>) {
        if !self.stream {
            return;
        }
        lock(&self.batch).on = true;
        let writer = self.clone();
        tokio::spawn(async move {
            loop {
                writer.wake.notified().await;
                // Let the tasks that are ready add their lines first.
                tokio::task::yield_now().await;
                if !lock(&writer.batch).on {
                    return;
                }
                writer.flush();
            }
        });
    }

    /// Writes what is buffered and turns batching off: later lines are
    /// written at once. For the daemon's stop, and on drop.
    pub(super) fn stop_batching(&self) {
        let mut sink = lock(&self.sink);
        let lines = {
            let mut batch = lock(&self.batch);
            batch.on = false;
            std::mem::take(&mut batch.lines)
        };
        write_lines(&mut sink, &lines);
        drop(sink);
        self.wake.notify_one();
    }
}

fn write_lines(sink: &mut Sink, lines: &[u8]) {
    if lines.is_empty() {
        return;
    }
    if let Sink::Stream(out) = sink
        && let Err(e) = out.write_all(lines)
    {
        report(&e);
    }
}

fn report(e: &io::Error) {
    tracing::error!(error = %e, "cannot write the mail log");
}

/// A poisoned lock still guards sound data here (buffers, a sink).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The local time as syslog writes it (`Dec  7 17:30:38`), made once a
/// second: the time zone lookup and formatting are not free.
#[derive(Default)]
pub(super) struct Stamp {
    /// The Unix second `text` is for.
    second: Mutex<(i64, String)>,
}

impl Stamp {
    /// Appends the current time to `out`.
    pub(super) fn write(&self, out: &mut String) {
        let now = jiff::Timestamp::now();
        let mut cached = lock(&self.second);
        if cached.0 != now.as_second() || cached.1.is_empty() {
            let local = now.to_zoned_datetime(jiff::tz::TimeZone::system());
            cached.1.clear();
            let _ = std::fmt::Write::write_fmt(
                &mut cached.1,
                format_args!("{}", local.strftime("%b %e %H:%M:%S")),
            );
            cached.0 = now.as_second();
        }
        out.push_str(&cached.1);
    }
}
