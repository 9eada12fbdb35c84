//! Getting finished records to the sink, in order: one at a time (before
//! [`Writer::start_batching`], in the command-line tools), or, in the
//! daemon, gathered and written together by a thread of their own.
//!
//! Batching: a record (a stream's line, or a syslog or journal datagram)
//! is appended to a buffer, and the first one of a batch wakes the
//! flusher task, which lets the other ready tasks run first (they add
//! theirs) and then hands the whole buffer to the log thread. The thread
//! writes a stream's lines with one `write`, and sends datagrams one by
//! one, at most once per [`GATHER`] (it waits out the rest of that time
//! after a write, and is woken only from waiting for work): under load
//! that is one system call and one thread wake-up for many lines instead
//! of one each, and a line reaches the log at most [`GATHER`] late.
//!
//! No task ever waits for the log's destination: a log file on a slow
//! disk, a full pipe on standard error or a stalled syslog daemon blocks
//! the log thread only. What the thread has not taken yet is bounded
//! ([`MAX_PENDING`]); past that, records are dropped and counted
//! (`postrelay_maillog_records_dropped_total`), and the thread reports
//! the count (a warning on standard error) once it can write again. A
//! stuck log must never stop mail.
//!
//! Order is kept: the thread takes records and writes them under the
//! sink's lock, and [`Writer::stop_batching`] takes the rest under it too,
//! before it lets records be written directly again.
//!
//! What can be lost: nothing on a clean stop ([`Writer::stop_batching`],
//! also run on drop, writes what is buffered and turns batching off; it
//! waits for the destination to take it). A crash of the process
//! (SIGKILL, abort) loses what was not written yet: the records of the
//! last [`GATHER`], and while the destination is slow at most
//! [`MAX_PENDING`] bytes more. The mail itself is unaffected: the queue's
//! state is on disk.
//!
//! Not for: formatting records (`MailLog`) or the transports (`sink`).

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;

use super::sink::{self, Record, Sink};

/// Bytes of records buffered at most before they go to the log thread
/// without waiting for the flusher task.
pub(super) const MAX_BATCH: usize = 256 * 1024;

/// Bytes the log thread may have waiting at most; records past it are
/// dropped (and counted) rather than block the tasks that made them.
pub(super) const MAX_PENDING: usize = 8 * 1024 * 1024;

/// The least time between two writes of the log thread.
pub(super) const GATHER: Duration = Duration::from_millis(2);

/// The sink and the records not yet written.
pub(super) struct Writer {
    /// Locked by whoever writes: the log thread, or in direct mode the
    /// record's maker.
    sink: Mutex<Sink>,
    kind: Kind,
    /// Filled by the records' makers.
    batch: Mutex<Batch>,
    /// Wakes the flusher task.
    wake: Notify,
    /// Handed over, for the log thread.
    pending: Mutex<Pending>,
    /// Wakes the log thread.
    ready: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Every record dropped (`postrelay_maillog_records_dropped_total`).
    dropped: Counter,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Stream,
    Syslog,
    Journal,
}

/// Records in the form their sink takes.
#[derive(Default)]
struct Records {
    /// A stream's lines, one after the other.
    lines: Vec<u8>,
    /// Syslog or journal datagrams.
    datagrams: Vec<Vec<u8>>,
    /// Bytes in both.
    bytes: usize,
}

impl Records {
    fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.datagrams.is_empty()
    }

    /// Moves `other`'s records after these (without a copy when these
    /// are empty: then `other` gets this empty buffer of lines, and keeps
    /// its capacity).
    fn append(&mut self, other: &mut Records) {
        if self.lines.is_empty() {
            std::mem::swap(&mut self.lines, &mut other.lines);
        } else {
            self.lines.append(&mut other.lines);
        }
        self.datagrams.append(&mut other.datagrams);
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

#[derive(Default)]
struct Batch {
    records: Records,
    /// Whether records are batched (the flusher and the thread run).
    on: bool,
    /// Where [`Writer::send_line_with`] makes a line, kept for the next.
    line: String,
}

#[derive(Default)]
struct Pending {
    records: Records,
    /// Records dropped because [`MAX_PENDING`] was reached, not yet
    /// reported.
    dropped: u64,
    /// Tells the log thread to end.
    stop: bool,
    /// The log thread waits for records (and must be woken for them).
    waiting: bool,
}

impl Writer {
    /// A writer to `sink` that counts dropped records in `dropped`.
    pub(super) fn new(sink: Sink, dropped: Counter) -> Arc<Writer> {
        let kind = match sink {
            Sink::Stream(_) => Kind::Stream,
            Sink::Syslog(_) => Kind::Syslog,
            Sink::Journal(_) => Kind::Journal,
        };
        Arc::new(Writer {
            sink: Mutex::new(sink),
            kind,
            batch: Mutex::new(Batch::default()),
            wake: Notify::new(),
            pending: Mutex::new(Pending::default()),
            ready: Condvar::new(),
            thread: Mutex::new(None),
            dropped,
        })
    }

    /// Whether the sink takes whole lines: then a record is its line
    /// alone ([`Writer::send_line`]).
    pub(super) fn takes_lines(&self) -> bool {
        self.kind == Kind::Stream
    }

    /// Sends the line `make` writes (newline included) to a sink that
    /// [takes lines](Writer::takes_lines). Batched, the line is made in a
    /// buffer the batch keeps for the next one: no allocation per line.
    pub(super) fn send_line_with(&self, make: impl FnOnce(&mut String)) {
        let mut guard = lock(&self.batch);
        if !guard.on {
            drop(guard);
            let mut line = String::new();
            make(&mut line);
            let record = Record {
                tag: "",
                warning: false,
                message: "",
                fields: &[],
            };
            return self.send_now(&record, &line);
        }
        let Batch { records, line, .. } = &mut *guard;
        let first = records.is_empty();
        line.clear();
        make(line);
        records.lines.extend_from_slice(line.as_bytes());
        records.bytes += line.len();
        let full = records.bytes >= MAX_BATCH;
        drop(guard);
        self.added(first, full);
    }

    /// Whether records need their structured fields (journal).
    pub(super) fn wants_fields(&self) -> bool {
        self.kind == Kind::Journal
    }

    /// Sends one record; `line` is the stream form (with a newline). A
    /// full or broken log must not stop mail: failures go to tracing.
    pub(super) fn send(&self, record: &Record<'_>, line: &str) {
        let datagram = match self.kind {
            Kind::Stream => None,
            Kind::Syslog => Some(sink::syslog_datagram(record).into_bytes()),
            Kind::Journal => Some(sink::journal_datagram(record)),
        };
        let mut guard = lock(&self.batch);
        if !guard.on {
            drop(guard);
            return self.send_now(record, line);
        }
        let batch = &mut guard.records;
        let first = batch.is_empty();
        match datagram {
            None => {
                batch.lines.extend_from_slice(line.as_bytes());
                batch.bytes += line.len();
            }
            Some(bytes) => {
                batch.bytes += bytes.len();
                batch.datagrams.push(bytes);
            }
        }
        let full = batch.bytes >= MAX_BATCH;
        drop(guard);
        self.added(first, full);
    }

    /// After a record was added to the batch: a `full` batch goes to the
    /// log thread now; the `first` of a batch wakes the flusher.
    fn added(&self, first: bool, full: bool) {
        if full {
            self.hand_off();
        } else if first {
            self.wake.notify_one();
        }
    }

    /// Writes one record at once (not batching).
    fn send_now(&self, record: &Record<'_>, line: &str) {
        if let Err(e) = lock(&self.sink).send(record, line) {
            report(&e);
        }
    }

    /// Moves the batch to the log thread, or drops it when the thread
    /// is too far behind.
    fn hand_off(&self) {
        let mut pending = lock(&self.pending);
        let mut guard = lock(&self.batch);
        let batch = &mut guard.records;
        if batch.is_empty() {
            return;
        }
        if pending.records.bytes + batch.bytes > MAX_PENDING {
            let records = (batch.datagrams.len() + count_lines(&batch.lines)) as u64;
            pending.dropped += records;
            self.dropped.inc_by(records);
            *batch = Records::default();
        } else {
            pending.records.append(batch);
        }
        drop(guard);
        let wake = pending.waiting;
        drop(pending);
        if wake {
            self.ready.notify_one();
        }
    }

    /// From now on records are batched and written by the log thread,
    /// woken by a task on the current tokio runtime (see the module
    /// documentation). Without a thread (the system refuses one),
    /// records go on being written directly.
    pub(super) fn start_batching(self: &Arc<Writer>) {
        let mut thread = lock(&self.thread);
        if thread.is_some() {
            return;
        }
        let writer = self.clone();
        let spawned = std::thread::Builder::new()
            .name("postrelay-log".into())
            .spawn(move || writer.log_thread());
        match spawned {
            Ok(handle) => *thread = Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "no thread for the mail log: its lines are written one by one");
                return;
            }
        }
        drop(thread);
        lock(&self.pending).stop = false;
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
                writer.hand_off();
            }
        });
    }

    /// The log thread: writes what is handed over until the stop.
    fn log_thread(&self) {
        let mut last_write = None;
        loop {
            let Some(mut sink) = self.wait_for_records(last_write) else {
                return;
            };
            last_write = Some(Instant::now());
            let (records, dropped) = {
                let mut pending = lock(&self.pending);
                let records = std::mem::take(&mut pending.records);
                (records, std::mem::take(&mut pending.dropped))
            };
            write(&mut sink, &records);
            drop(sink);
            self.recycle(records.lines);
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    "mail log records were dropped: the log's destination did not take them \
                     (a stalled syslog daemon, a full pipe or a slow disk); the mail itself \
                     is unaffected"
                );
            }
        }
    }

    /// Gives a written buffer of lines back, emptied, for a later batch
    /// (which [`Records::append`] swaps it into): a batch then does not
    /// grow its buffer from nothing. Not one that grew past twice
    /// [`MAX_BATCH`] (the thread fell behind): that much is not kept.
    fn recycle(&self, mut lines: Vec<u8>) {
        if lines.capacity() > 2 * MAX_BATCH {
            return;
        }
        lines.clear();
        let mut pending = lock(&self.pending);
        let spare = &mut pending.records.lines;
        if spare.is_empty() && spare.capacity() < lines.capacity() {
            *spare = lines;
        }
    }

    /// Waits until records are pending, and [`GATHER`] after the last
    /// write, and returns the sink, locked: the records are taken under
    /// its lock, so that a stop finds only later ones. `None` once
    /// batching is off.
    fn wait_for_records(&self, last_write: Option<Instant>) -> Option<MutexGuard<'_, Sink>> {
        let mut pending = lock(&self.pending);
        while !pending.stop && pending.records.is_empty() && pending.dropped == 0 {
            pending.waiting = true;
            pending = self.ready.wait(pending).unwrap_or_else(|p| p.into_inner());
            pending.waiting = false;
        }
        if pending.stop {
            return None;
        }
        drop(pending);
        let since = last_write.map_or(GATHER, |t| t.elapsed());
        if let Some(rest) = GATHER.checked_sub(since) {
            std::thread::sleep(rest);
        }
        let sink = lock(&self.sink);
        (!lock(&self.pending).stop).then_some(sink)
    }

    /// Writes what is buffered and turns batching off: later records are
    /// written at once. For the daemon's stop, and on drop. It waits at
    /// most [`STOP_WAIT`] for a write the log thread has under way: past
    /// that the destination is stuck, and the last records are dropped
    /// (and counted) rather than hold the daemon's stop.
    pub(super) fn stop_batching(&self) {
        let Some(thread) = lock(&self.thread).take() else {
            return; // never batched, or stopped already
        };
        let sink = sink_within(&self.sink, STOP_WAIT);
        let rest = {
            let mut pending = lock(&self.pending);
            let mut batch = lock(&self.batch);
            batch.on = false;
            pending.stop = true;
            let mut rest = std::mem::take(&mut pending.records);
            rest.append(&mut batch.records);
            rest
        };
        self.ready.notify_one();
        self.wake.notify_one();
        let Some(mut sink) = sink else {
            let lost = (rest.datagrams.len() + count_lines(&rest.lines)) as u64;
            self.dropped.inc_by(lost);
            tracing::error!(
                dropped = lost,
                "the mail log's destination has not taken a write for {} s; stopping without \
                 its last records (the mail itself is unaffected)",
                STOP_WAIT.as_secs()
            );
            return; // the thread ends when its write does
        };
        write(&mut sink, &rest);
        drop(sink);
        let _ = thread.join();
    }
}

/// How long a stop waits for the log thread's write under way.
pub(super) const STOP_WAIT: Duration = Duration::from_secs(5);

/// The sink, locked, if its lock is free within `wait`.
fn sink_within(sink: &Mutex<Sink>, wait: Duration) -> Option<MutexGuard<'_, Sink>> {
    let deadline = Instant::now() + wait;
    loop {
        match sink.try_lock() {
            Ok(guard) => return Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(std::sync::TryLockError::WouldBlock) => return None,
        }
    }
}

/// Writes records to the sink; the first failure is reported.
fn write(sink: &mut Sink, records: &Records) {
    let mut result = sink.write_lines(&records.lines);
    for datagram in &records.datagrams {
        let sent = sink.send_datagram(datagram);
        result = result.and(sent);
    }
    if let Err(e) = result {
        report(&e);
    }
}

fn count_lines(lines: &[u8]) -> usize {
    lines.iter().filter(|&&b| b == b'\n').count()
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
