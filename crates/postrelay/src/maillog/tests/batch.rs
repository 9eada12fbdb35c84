//! Batched writing (`writer.rs`): lines made together go out in one
//! `write`, in order, and none is lost by a stop or a drop.

use std::sync::atomic::{AtomicUsize, Ordering};

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

#[tokio::test]
async fn lines_made_together_go_out_in_one_write_in_order() {
    let (log, out) = batched();
    for id in ids(0..50) {
        log.removed(&id);
    }
    // Nothing written while this task has not let the flusher run.
    assert_eq!(out.writes(), 0);
    for _ in 0..100 {
        if out.writes() > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(out.writes(), 1);
    assert_eq!(out.ids(), ids(0..50));
    // A later line starts a new batch.
    log.removed("ID50");
    for _ in 0..100 {
        if out.writes() > 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(out.ids(), ids(0..51));
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
async fn a_full_batch_is_written_by_the_line_that_fills_it() {
    let (log, out) = batched();
    let mut n = 0;
    while out.writes() == 0 && n < 100_000 {
        log.removed(&format!("ID{n}"));
        n += 1;
    }
    assert_eq!(out.writes(), 1, "after {n} lines");
    let written = out.text.lock().unwrap().len();
    assert!(written >= writer::MAX_BATCH, "{written} bytes");
    log.stop_batching();
    assert_eq!(out.ids(), ids(0..n));
}
