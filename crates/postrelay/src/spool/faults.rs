//! Test-only [`FileOps`] that fails chosen calls, to prove the error paths.
//!
//! A [`Fault`] names an operation, a substring of the path it must concern,
//! and the errno to fail with; while armed it fails every matching call
//! (or, made with [`Fault::crash`], stops the caller there with a panic;
//! made with [`Fault::stall`], holds it there until disarmed).
//! Everything else is passed to [`RealFs`]. Not compiled outside tests.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use super::durable::{FileOps, RealFs};

/// An operation of [`FileOps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    /// Reopening a file taken from the free list.
    OpenExisting,
    Write,
    SetLen,
    SyncData,
    /// Both `rename` and `rename_noreplace`.
    Rename,
    SyncDir,
    Remove,
    SyncFs,
}

/// Fail `op` on any path containing `path_contains` with `errno`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub op: Op,
    pub path_contains: String,
    pub errno: i32,
}

impl Fault {
    pub fn eio(op: Op, path_contains: &str) -> Fault {
        Fault {
            op,
            path_contains: path_contains.to_string(),
            errno: nix::libc::EIO,
        }
    }

    /// Not an error: the process dies just before the call (a panic, for
    /// the test to catch; nothing after it in the caller runs, so the
    /// files stay as a kill -9 there would leave them).
    pub fn crash(op: Op, path_contains: &str) -> Fault {
        Fault {
            errno: 0,
            ..Fault::eio(op, path_contains)
        }
    }

    /// Not an error: the call waits until the faults are disarmed, so a
    /// test can look at the spool while an operation is at that step
    /// (see [`FaultyFs::wait_stalled`]).
    pub fn stall(op: Op, path_contains: &str) -> Fault {
        Fault {
            errno: STALL,
            ..Fault::eio(op, path_contains)
        }
    }

    pub fn enospc(op: Op, path_contains: &str) -> Fault {
        Fault {
            errno: nix::libc::ENOSPC,
            ..Fault::eio(op, path_contains)
        }
    }
}

/// The `errno` of [`Fault::stall`].
const STALL: i32 = -1;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct FaultyFs {
    faults: Mutex<Vec<Fault>>,
    short_writes: bool,
    /// Calls waiting in a stall, and the signal that this or the faults
    /// changed.
    stalled: Mutex<usize>,
    changed: Condvar,
    interrupted_writes: bool,
    /// With `interrupted_writes`: the next write gets through.
    interrupted: AtomicBool,
}

impl FaultyFs {
    pub fn new(faults: impl IntoIterator<Item = Fault>) -> FaultyFs {
        FaultyFs {
            faults: Mutex::new(faults.into_iter().collect()),
            ..FaultyFs::default()
        }
    }

    /// Makes every write accept at most 3 bytes.
    pub fn with_short_writes(mut self) -> FaultyFs {
        self.short_writes = true;
        self
    }

    /// Makes every other write fail with `EINTR` (a signal arrived),
    /// starting with the first.
    pub fn with_interrupted_writes(mut self) -> FaultyFs {
        self.interrupted_writes = true;
        self
    }

    pub fn arm(&self, fault: Fault) {
        self.faults.lock().unwrap().push(fault);
    }

    pub fn disarm(&self) {
        self.faults.lock().unwrap().clear();
        let _stalled = self.stalled.lock().unwrap();
        self.changed.notify_all();
    }

    /// Blocks until a call is waiting in a [`Fault::stall`]; panics if
    /// none has after 30 s (the operation never got to that step).
    pub fn wait_stalled(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut stalled = self.stalled.lock().unwrap();
        while *stalled == 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(!left.is_zero(), "no call reached the stall within 30 s");
            stalled = self.changed.wait_timeout(stalled, left).unwrap().0;
        }
    }

    /// Waits, counted in `stalled`, until the faults are disarmed.
    fn stall(&self) {
        let mut stalled = self.stalled.lock().unwrap();
        *stalled += 1;
        self.changed.notify_all();
        while !self.faults.lock().unwrap().is_empty() {
            stalled = self.changed.wait(stalled).unwrap();
        }
        *stalled -= 1;
    }

    fn check(&self, op: Op, paths: &[&Path]) -> io::Result<()> {
        let errno = self
            .faults
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.op == op)
            .find(|f| {
                paths
                    .iter()
                    .any(|p| p.to_string_lossy().contains(f.path_contains.as_str()))
            })
            .map(|f| f.errno);
        match errno {
            None => Ok(()),
            Some(0) => panic!("simulated crash before {op:?} {paths:?}"),
            Some(STALL) => {
                self.stall();
                Ok(())
            }
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

impl FileOps for FaultyFs {
    fn create_new(&self, path: &Path) -> io::Result<File> {
        self.check(Op::Create, &[path])?;
        RealFs.create_new(path)
    }

    fn open_existing_for_write(&self, path: &Path) -> io::Result<File> {
        self.check(Op::OpenExisting, &[path])?;
        RealFs.open_existing_for_write(path)
    }

    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()> {
        self.check(Op::SetLen, &[path])?;
        RealFs.set_len(file, path, len)
    }

    fn write(&self, file: &mut File, path: &Path, buf: &[u8]) -> io::Result<usize> {
        self.check(Op::Write, &[path])?;
        if self.interrupted_writes && !self.interrupted.fetch_xor(true, Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(nix::libc::EINTR));
        }
        let n = if self.short_writes {
            buf.len().min(3)
        } else {
            buf.len()
        };
        RealFs.write(file, path, &buf[..n])
    }

    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()> {
        self.check(Op::SyncData, &[path])?;
        RealFs.sync_data(file, path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(Op::Rename, &[from, to])?;
        RealFs.rename(from, to)
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(Op::Rename, &[from, to])?;
        RealFs.rename_noreplace(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(Op::SyncDir, &[dir])?;
        RealFs.sync_dir(dir)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(Op::Remove, &[path])?;
        RealFs.remove_file(path)
    }

    fn sync_filesystem(&self, on: &File, path: &Path) -> io::Result<()> {
        self.check(Op::SyncFs, &[path])?;
        RealFs.sync_filesystem(on, path)
    }
}

/// Sorted file names in `dir` (empty if it does not exist).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// `names(root/sub)` for convenience.
pub fn names_in(root: &Path, sub: &str) -> Vec<String> {
    names(&PathBuf::from(root).join(sub))
}
