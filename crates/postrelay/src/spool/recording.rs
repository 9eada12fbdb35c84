//! Test-only [`FileOps`] that passes every call to [`RealFs`] and records
//! it, so that a test can assert the order of the durability steps (body
//! and envelope written and synced, envelope renamed into queue/, queue/
//! synced) against the moment the caller was told the message is queued.
//! kill -9 cannot test that order: the page cache survives a process
//! crash, so a missing fsync never shows. Not compiled outside tests.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::durable::{FileOps, RealFs};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct RecordingFs {
    log: Mutex<Vec<(String, Vec<PathBuf>)>>,
}

impl RecordingFs {
    /// Adds an event of the test's own (such as the acknowledgement).
    pub fn mark(&self, event: &str) {
        self.log
            .lock()
            .unwrap()
            .push((event.to_owned(), Vec::new()));
    }

    /// Forgets the events so far.
    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }

    /// Takes the events so far as `"op path"` (`"rename from to"`), paths
    /// relative to `root` (the spool) with `id` shown as `ID`; consecutive
    /// repeats of one event are kept once (a body takes many writes).
    pub fn take(&self, root: &Path, id: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (op, paths) in self.log.lock().unwrap().drain(..) {
            let mut e = op;
            for p in paths {
                let shown = p.strip_prefix(root).unwrap_or(&p);
                e.push(' ');
                e.push_str(&shown.to_string_lossy().replace(id, "ID"));
            }
            if out.last() != Some(&e) {
                out.push(e);
            }
        }
        out
    }

    fn record(&self, op: &str, paths: &[&Path]) {
        let paths = paths.iter().map(|p| p.to_path_buf()).collect();
        self.log.lock().unwrap().push((op.to_owned(), paths));
    }
}

impl FileOps for RecordingFs {
    fn create_new(&self, path: &Path) -> io::Result<File> {
        self.record("create", &[path]);
        RealFs.create_new(path)
    }

    fn open_existing_for_write(&self, path: &Path) -> io::Result<File> {
        self.record("reopen", &[path]);
        RealFs.open_existing_for_write(path)
    }

    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()> {
        self.record("set_len", &[path]);
        RealFs.set_len(file, path, len)
    }

    fn write(&self, file: &mut File, path: &Path, buf: &[u8]) -> io::Result<usize> {
        self.record("write", &[path]);
        RealFs.write(file, path, buf)
    }

    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()> {
        self.record("fdatasync", &[path]);
        RealFs.sync_data(file, path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.record("rename", &[from, to]);
        RealFs.rename(from, to)
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.record("rename", &[from, to]);
        RealFs.rename_noreplace(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.record("fsync", &[dir]);
        RealFs.sync_dir(dir)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.record("unlink", &[path]);
        RealFs.remove_file(path)
    }

    fn sync_filesystem(&self, on: &File, path: &Path) -> io::Result<()> {
        self.record("syncfs", &[path]);
        RealFs.sync_filesystem(on, path)
    }
}
