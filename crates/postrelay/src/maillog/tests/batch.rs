//! Batched writing (`writer.rs`): lines made together go out in one
//! `write`, in order, and none is lost by a stop or a drop; a stalled
//! destination blocks no task, and its backlog is bounded.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use super::*;

/// A stream that counts its `write` calls.
#[derive(Clone, Default)]
struct Counting {
    text: Arc<Mutex<Vec<u8>>>,
    writes: Arc<AtomicUsize>,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.text.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Counting {
    fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// The queue IDs of the `removed` lines, in file order.
    fn ids(&self) -> Vec<String> {
        String::from_utf8(self.text.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| {
                l.rsplit_once("]: ")
                    .unwrap()
                    .1
                    .trim_end_matches(": removed")
                    .to_string()
            })
            .collect()
    }
}

fn batched() -> (MailLog, Counting) {
    let out = Counting::default();
    let log = MailLog::with_writer(
        Box::new(out.clone()),
        "relay.example.net",
        LogFormat::Postfix,
    );
    log.start_batching();
    (log, out)
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("ID{i}")).collect()
}

/// Lets the flusher task run and waits (at most 10 s) for the log
/// thread to make `writes` writes.
async fn until_written(out: &Counting, writes: usize) {
    for _ in 0..10_000 {
        if out.writes() >= writes {
            return;
        }
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("{} writes after 10 s, waited for {writes}", out.writes());
}

#[tokio::test]
async fn lines_made_together_go_out_in_one_write_in_order() {
    let (log, out) = batched();
    for id in ids(0..50) {
        log.removed(&id);
    }
    // Nothing written while this task has not let the flusher run.
    assert_eq!(out.writes(), 0);
    until_written(&out, 1).await;
    assert_eq!(out.writes(), 1);
    assert_eq!(out.ids(), ids(0..50));
    // A later line starts a new batch.
    log.removed("ID50");
    until_written(&out, 2).await;
    assert_eq!(out.ids(), ids(0..51));
}

/// Lines are made in one buffer the batch keeps: nothing of a longer line
/// shows in the shorter lines after it, in its batch or the next.
#[tokio::test]
async fn a_line_holds_nothing_of_the_line_before() {
    let (log, out) = batched();
    log.warning("ID0", &"~".repeat(300));
    log.removed("ID1");
    until_written(&out, 1).await;
    log.removed("ID2");
    until_written(&out, 2).await;
    let text = String::from_utf8(out.text.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].ends_with(&format!("warning: ID0: {}", "~".repeat(300))));
    for (line, id) in lines[1..].iter().zip(["ID1", "ID2"]) {
        assert!(line.ends_with(&format!("]: {id}: removed")), "{line}");
        assert!(!line.contains('~'), "{line}");
    }
}

#[tokio::test]
async fn a_stop_writes_every_buffered_line_and_later_lines_at_once() {
    let (log, out) = batched();
    for id in ids(0..3) {
        log.removed(&id);
    }
    log.stop_batching();
    assert_eq!(out.ids(), ids(0..3));
    log.removed("ID3");
    assert_eq!(out.ids(), ids(0..4));
}

#[tokio::test]
async fn dropping_the_log_writes_what_is_buffered() {
    let (log, out) = batched();
    log.removed("ID0");
    drop(log);
    assert_eq!(out.ids(), ids(0..1));
}

#[tokio::test]
async fn a_full_batch_goes_to_the_log_thread_without_the_flusher() {
    let (log, out) = batched();
    // Lines are over 60 bytes: twice a batch's worth. This task never
    // yields, so the flusher task cannot run: only a full batch is
    // handed over.
    let n = 2 * writer::MAX_BATCH / 60;
    for id in ids(0..n) {
        log.removed(&id);
    }
    for _ in 0..10_000 {
        if out.writes() > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(out.writes() >= 1);
    let written = out.text.lock().unwrap().len();
    assert!(written >= writer::MAX_BATCH, "{written} bytes");
    log.stop_batching();
    assert_eq!(out.ids(), ids(0..n));
}

/// A destination whose first `write` stalls until the test releases it
/// (or 30 s pass, which the test sees as a failure).
#[derive(Clone)]
struct Stalling {
    out: Counting,
    entered: mpsc::SyncSender<()>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
    timed_out: Arc<AtomicBool>,
}

impl Write for Stalling {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.writes() == 0 {
            let _ = self.entered.try_send(());
            let released = self
                .release
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(30));
            self.timed_out.store(released.is_err(), Ordering::SeqCst);
        }
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A batching log on a [`Stalling`] destination; the sender releases it.
fn stalling() -> (MailLog, Stalling, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (entered, entered_rx) = mpsc::sync_channel(1);
    let (release, release_rx) = mpsc::channel();
    let sink = Stalling {
        out: Counting::default(),
        entered,
        release: Arc::new(Mutex::new(release_rx)),
        timed_out: Arc::new(AtomicBool::new(false)),
    };
    let log = MailLog::with_writer(
        Box::new(sink.clone()),
        "relay.example.net",
        LogFormat::Postfix,
    );
    log.start_batching();
    (log, sink, entered_rx, release)
}

/// Waits (letting the flusher run) until the destination's write stalls.
async fn until_stalled(entered: &mpsc::Receiver<()>) {
    for _ in 0..10_000 {
        if entered.try_recv().is_ok() {
            return;
        }
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the destination was never written to");
}

// One runtime thread: if any task waited for the destination, this test's
// task could not release it.
#[tokio::test(flavor = "current_thread")]
async fn a_stalled_destination_blocks_no_task() {
    let (log, sink, entered, release) = stalling();
    log.removed("ID0");
    until_stalled(&entered).await;
    for id in ids(1..20) {
        log.removed(&id);
        tokio::task::yield_now().await;
    }
    release.send(()).unwrap();
    log.stop_batching();
    assert!(
        !sink.timed_out.load(Ordering::SeqCst),
        "the write stalled the runtime until it timed out"
    );
    assert_eq!(sink.out.ids(), ids(0..20));
}

#[tokio::test(flavor = "current_thread")]
async fn behind_a_stalled_destination_records_past_the_bound_are_dropped_and_counted() {
    let (log, sink, entered, release) = stalling();
    log.removed("ID0");
    until_stalled(&entered).await;
    // Well over MAX_PENDING bytes of lines (each over 60 bytes).
    let n = 2 * writer::MAX_PENDING / 60;
    for id in ids(1..n) {
        log.removed(&id);
    }
    release.send(()).unwrap();
    log.stop_batching();
    let written = sink.out.ids();
    let dropped = dropped(&log);
    assert!(dropped > 0, "nothing dropped");
    assert_eq!(
        written.len() + dropped,
        n,
        "every record written or counted"
    );
    let bytes = sink.out.text.lock().unwrap().len();
    assert!(
        bytes <= writer::MAX_PENDING + 2 * writer::MAX_BATCH,
        "{bytes} bytes kept"
    );
    // What was kept is in order, and whole batches were dropped.
    let numbers: Vec<usize> = written.iter().map(|id| id[2..].parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "order kept");
    assert_eq!(numbers[0], 0);
}

#[tokio::test]
async fn syslog_datagrams_go_through_the_log_thread_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let out = Writer::new(super::sink::Sink::Syslog(path), Default::default());
    out.start_batching();
    let messages = ids(0..5);
    for message in &messages {
        let record = Record {
            tag: "postrelay/qmgr",
            warning: false,
            message,
            fields: &[],
        };
        out.send(&record, "");
    }
    out.stop_batching();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    for _ in &messages {
        let n = socket.recv(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        got.push(text.rsplit_once("]: ").unwrap().1.to_string());
    }
    assert_eq!(got, messages);
}

/// `postrelay_maillog_records_dropped_total` of the log's metrics.
fn dropped(log: &MailLog) -> usize {
    let metrics = log.metrics().encode(crate::queue::QueueStats::default(), 0);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("postrelay_maillog_records_dropped_total "))
        .expect("the dropped records' counter")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_stop_does_not_wait_for_a_destination_that_stays_stuck() {
    let (log, sink, entered, release) = stalling();
    log.removed("ID0");
    until_stalled(&entered).await;
    for id in ids(1..6) {
        log.removed(&id);
    }
    // Returns after writer::STOP_WAIT, the first write still stalled.
    log.stop_batching();
    assert_eq!(sink.out.writes(), 0, "the stop waited for the stuck write");
    assert_eq!(dropped(&log), 5, "the records left are counted as dropped");
    release.send(()).unwrap();
}
