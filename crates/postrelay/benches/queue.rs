//! Micro-benchmarks of the spool commit and the scheduler's index
//! (`cargo bench -p postrelay --bench queue`).
//!
//! The spool commit is measured twice: on the real disk (`fsync`s
//! included: what a client waits for) and with the sync calls made no-ops
//! (the CPU and system-call cost of staging and renaming alone, which is
//! what a change to the code moves). The scheduler bench takes the
//! earliest due message from a queue of a given depth and schedules it
//! again, the index work done per delivery attempt. Under
//! `cargo test --benches` each runs once.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use divan::{Bencher, black_box};
use postrelay::config::LogFormat;
use postrelay::maillog::MailLog;
use postrelay::queue::Queue;
use postrelay::spool::{
    Envelope, FileOps, Origin, RealFs, Recipient, Spool, SpoolOptions, Staged, SyncMode,
};

fn main() {
    divan::main();
}

/// The real file system with every sync call a no-op: what is left is the
/// cost of the code and of the other system calls.
#[derive(Debug)]
struct NoSync(RealFs);

impl FileOps for NoSync {
    fn create_new(&self, path: &Path) -> io::Result<File> {
        self.0.create_new(path)
    }
    fn open_existing_for_write(&self, path: &Path) -> io::Result<File> {
        self.0.open_existing_for_write(path)
    }
    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()> {
        self.0.set_len(file, path, len)
    }
    fn write(&self, file: &mut File, path: &Path, buf: &[u8]) -> io::Result<usize> {
        self.0.write(file, path, buf)
    }
    fn sync_data(&self, _file: &File, _path: &Path) -> io::Result<()> {
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename_noreplace(from, to)
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.remove_file(path)
    }
    fn sync_filesystem(&self, _on: &File, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}

fn spool(dir: &Path, sync: SyncMode, real_disk: bool) -> Spool {
    let file_ops: Arc<dyn FileOps> = if real_disk {
        Arc::new(RealFs)
    } else {
        Arc::new(NoSync(RealFs))
    };
    let options = SpoolOptions {
        file_ops,
        sync,
        ..SpoolOptions::default()
    };
    Spool::open_with(&dir.join("spool"), options).expect("open spool")
}

/// A 1 KiB message for one recipient, staged and ready to commit.
fn staged(spool: &Spool) -> Staged {
    let mut body = spool.new_body().expect("new body");
    body.write_all(&[b'x'; 1024]).expect("write body");
    let env = Envelope::new(
        *body.id(),
        Origin::Smtp {
            peer: "127.0.0.1:40000".into(),
            helo: "client.example".into(),
        },
        "sender@example.org".into(),
        vec![Recipient::new("rcpt@example.net")],
    );
    spool.stage(body, &env).expect("stage")
}

/// One message's life in the spool: stage, commit in batches of `batch`,
/// remove lazily (its files recycled by a later commit).
fn commit_cycle(bencher: Bencher, batch: usize, sync: SyncMode, real_disk: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = spool(dir.path(), sync, real_disk);
    bencher
        .counter(divan::counter::ItemsCount::new(batch))
        .bench_local(|| {
            let staged: Vec<Staged> = (0..batch).map(|_| staged(&spool)).collect();
            for r in spool.commit_batch(staged) {
                let id = r.expect("commit");
                spool.remove_lazily(&id, 1024).expect("remove");
            }
        });
}

const BATCHES: &[usize] = &[1, 32];

/// Sync calls no-ops: the CPU and system calls of staging and committing.
#[divan::bench(args = BATCHES)]
fn spool_commit_nosync(bencher: Bencher, batch: usize) {
    commit_cycle(bencher, batch, SyncMode::Filesystem, false);
}

/// On the disk as the daemon does it by default (`queue.sync =
/// "filesystem"`: one `syncfs` and one directory `fsync` per batch).
#[divan::bench(args = BATCHES, sample_count = 20, sample_size = 1)]
fn spool_commit_syncfs(bencher: Bencher, batch: usize) {
    commit_cycle(bencher, batch, SyncMode::Filesystem, true);
}

/// On the disk with `queue.sync = "files"` (`fdatasync` of each file).
#[divan::bench(args = BATCHES, sample_count = 20, sample_size = 1)]
fn spool_commit_fdatasync(bencher: Bencher, batch: usize) {
    commit_cycle(bencher, batch, SyncMode::Files, true);
}

/// A queue of `depth` messages all due now, loaded from a spool like the
/// daemon's after a restart.
fn loaded_queue(dir: &Path, depth: usize) -> Queue {
    let spool = spool(dir, SyncMode::Filesystem, false);
    let mut left = depth;
    while left > 0 {
        let n = left.min(256);
        left -= n;
        let staged: Vec<Staged> = (0..n).map(|_| staged(&spool)).collect();
        for r in spool.commit_batch(staged) {
            r.expect("commit");
        }
    }
    let config = postrelay::config::parse(
        &format!(
            "hostname = \"h.example\"\nspool = \"{}\"\n",
            dir.join("spool").display()
        ),
        "bench",
    )
    .expect("config");
    let log = MailLog::with_writer(Box::new(io::sink()), "h", LogFormat::Postfix);
    Queue::load(spool, Arc::new(log), Arc::new(config.router())).expect("load queue")
}

const DEPTHS: &[usize] = &[100, 10_000];

/// Takes the earliest due message and schedules it again (an attempt that
/// could not start), at a queue depth of `depth`.
#[divan::bench(args = DEPTHS)]
fn scheduler_take_and_reschedule(bencher: Bencher, depth: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = loaded_queue(dir.path(), depth);
    let mut due = 0u64;
    bencher.bench_local(|| {
        let (id, _fresh) = queue.take_due(u64::MAX).expect("a due message");
        due += 1;
        queue.abandon_attempt(&id, black_box(due));
        queue.next_due()
    });
    queue.shutdown();
}
