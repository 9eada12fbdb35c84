//! Is there room in the spool? A cheap answer for every SMTP `MAIL` command.
//!
//! Intake asks [`Spool::health`](super::Spool::health) before accepting a
//! message so that it can say `452 4.3.1` up front instead of failing after
//! the client sent the data. The answer is cached: the first caller after
//! the sample interval (1 s by default) refreshes it with `statvfs(2)` and
//! `access(2)` on tmp/, everyone else reads the cached value. This is a hint,
//! not a guarantee: the write path still handles ENOSPC itself.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::{AccessFlags, access};

/// Thresholds under which the spool reports [`Health::Low`].
#[derive(Debug, Clone, PartialEq)]
pub struct HealthOptions {
    /// Low when fewer bytes than this are available to the daemon (0: off).
    pub min_free_bytes: u64,
    /// Low when less than this percentage of the file system is available (0: off).
    pub min_free_percent: u8,
    /// Low when fewer inodes are available (0: off; ignored on file systems
    /// that report no inode count).
    pub min_free_inodes: u64,
    /// How old the cached sample may get before `health()` refreshes it.
    pub sample_interval: Duration,
}

impl Default for HealthOptions {
    /// 100 MiB, 1 %, 1000 inodes, sampled at most once a second.
    fn default() -> Self {
        HealthOptions {
            min_free_bytes: 100 * 1024 * 1024,
            min_free_percent: 1,
            min_free_inodes: 1000,
            sample_interval: Duration::from_secs(1),
        }
    }
}

/// Whether the spool can take new messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Enough space and inodes, and tmp/ is writable.
    Ok,
    /// New messages should be refused with a temporary error.
    Low {
        /// Human-readable cause, for logs and the SMTP reply.
        reason: String,
    },
}

impl Health {
    /// True for [`Health::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Health::Ok)
    }
}

/// The cached sample and when it was taken.
#[derive(Debug)]
pub(crate) struct HealthSampler {
    /// Replaced on configuration reload.
    options: Mutex<HealthOptions>,
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last sample.
    sampled_at: AtomicU64,
    current: Mutex<Health>,
}

impl HealthSampler {
    /// Takes a first sample of `tmp_dir` right away.
    pub(crate) fn new(options: HealthOptions, tmp_dir: &Path) -> HealthSampler {
        let current = Mutex::new(sample(&options, tmp_dir));
        HealthSampler {
            options: Mutex::new(options),
            epoch: Instant::now(),
            sampled_at: AtomicU64::new(0),
            current,
        }
    }

    /// The cached sample, refreshed first if it is older than the interval.
    /// Only one of several concurrent callers does the refresh.
    pub(crate) fn get(&self, tmp_dir: &Path) -> Health {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let last = self.sampled_at.load(Ordering::Acquire);
        let interval = self.options().sample_interval.as_nanos() as u64;
        if now.saturating_sub(last) >= interval
            && self
                .sampled_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return self.refresh(tmp_dir);
        }
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn options(&self) -> HealthOptions {
        self.options
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the thresholds and samples again with them.
    pub(crate) fn set_options(&self, options: HealthOptions, tmp_dir: &Path) -> Health {
        *self.options.lock().unwrap_or_else(|p| p.into_inner()) = options;
        self.refresh(tmp_dir)
    }

    /// Samples now, stores and returns the result.
    pub(crate) fn refresh(&self, tmp_dir: &Path) -> Health {
        let fresh = sample(&self.options(), tmp_dir);
        if let Health::Low { reason } = &fresh {
            tracing::debug!(%reason, "spool: low on space");
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        fresh
    }
}

/// One `statvfs` + `access` of `tmp_dir`, judged against `opts`.
#[allow(
    clippy::useless_conversion,
    reason = "statvfs counts are u64 on Linux but narrower on some targets"
)]
pub(crate) fn sample(opts: &HealthOptions, tmp_dir: &Path) -> Health {
    let low = |reason: String| Health::Low { reason };
    let st = match statvfs(tmp_dir) {
        Ok(st) => st,
        Err(e) => return low(format!("cannot statvfs {}: {e}", tmp_dir.display())),
    };
    if st.flags().contains(FsFlags::ST_RDONLY) {
        return low(format!(
            "{} is on a read-only file system",
            tmp_dir.display()
        ));
    }
    if let Err(e) = access(tmp_dir, AccessFlags::W_OK | AccessFlags::X_OK) {
        return low(format!("{} is not writable: {e}", tmp_dir.display()));
    }
    let frag = u64::from(st.fragment_size());
    let avail = u64::from(st.blocks_available()).saturating_mul(frag);
    let total = u64::from(st.blocks()).saturating_mul(frag);
    judge(
        opts,
        avail,
        total,
        u64::from(st.files_available()),
        u64::from(st.files()),
    )
}

/// The decision, separated from the system calls so it can be tested.
fn judge(opts: &HealthOptions, avail: u64, total: u64, inodes_avail: u64, inodes: u64) -> Health {
    const MIB: u64 = 1024 * 1024;
    if avail < opts.min_free_bytes {
        return Health::Low {
            reason: format!(
                "only {} MiB free in the spool (minimum {} MiB)",
                avail / MIB,
                opts.min_free_bytes.div_ceil(MIB)
            ),
        };
    }
    let pct = u128::from(opts.min_free_percent);
    if total > 0 && u128::from(avail) * 100 < u128::from(total) * pct {
        return Health::Low {
            reason: format!(
                "only {:.2} % of the spool file system is free (minimum {pct} %)",
                avail as f64 * 100.0 / total as f64
            ),
        };
    }
    if inodes > 0 && inodes_avail < opts.min_free_inodes {
        return Health::Low {
            reason: format!(
                "only {inodes_avail} inodes free in the spool (minimum {})",
                opts.min_free_inodes
            ),
        };
    }
    Health::Ok
}

/// The spool's side: the cached verdict of its tmp/.
impl super::Spool {
    /// The cached free-space verdict, refreshed at most once per
    /// [`HealthOptions::sample_interval`] by whichever caller comes first
    /// (one `statvfs`, microseconds). Cheap enough for every `MAIL FROM`.
    pub fn health(&self) -> Health {
        self.inner.health.get(&self.inner.layout.tmp)
    }

    /// Replaces the free-space thresholds (configuration reload) and
    /// returns a fresh verdict under them.
    pub fn set_health_options(&self, options: HealthOptions) -> Health {
        self.inner
            .health
            .set_options(options, &self.inner.layout.tmp)
    }

    /// Samples free space now, regardless of the cache.
    pub fn sample_health(&self) -> Health {
        self.inner.health.refresh(&self.inner.layout.tmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn thresholds() {
        let d = HealthOptions::default();
        assert_eq!(judge(&d, 50 * GIB, 100 * GIB, 1 << 20, 1 << 21), Health::Ok);
        let low = |h: Health, needle: &str| match h {
            Health::Low { reason } => assert!(reason.contains(needle), "{reason}"),
            Health::Ok => panic!("expected Low ({needle})"),
        };
        low(judge(&d, 99 << 20, 100 * GIB, 1 << 20, 1 << 21), "MiB free");
        // 1 % of 100 TiB is 1 TiB: 500 GiB free is too little.
        low(
            judge(&d, 500 * GIB, 100 * 1024 * GIB, 1 << 20, 1 << 21),
            "% of the spool",
        );
        low(judge(&d, 50 * GIB, 100 * GIB, 999, 1 << 21), "inodes");
        // No inode accounting (btrfs reports 0 total): not judged.
        assert_eq!(judge(&d, 50 * GIB, 100 * GIB, 0, 0), Health::Ok);
        let off = HealthOptions {
            min_free_bytes: 0,
            min_free_percent: 0,
            min_free_inodes: 0,
            ..d
        };
        assert_eq!(judge(&off, 0, 100 * GIB, 0, 10), Health::Ok);
    }

    #[test]
    fn sampling_a_real_directory_and_caching() {
        let dir = tempfile::tempdir().unwrap();
        let opts = HealthOptions {
            min_free_bytes: 0,
            min_free_percent: 0,
            min_free_inodes: 0,
            sample_interval: Duration::from_secs(3600),
        };
        let s = HealthSampler::new(opts, dir.path());
        assert_eq!(s.get(dir.path()), Health::Ok);
        // A missing directory is Low, but only once the cache is refreshed.
        let gone = dir.path().join("missing");
        assert_eq!(s.get(&gone), Health::Ok);
        assert!(!s.refresh(&gone).is_ok());
        assert!(!s.get(dir.path()).is_ok());
    }
}
