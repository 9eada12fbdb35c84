//! A relay's memory, read from `/proc` while a benchmark scenario runs:
//! the `watch` command samples the summed RSS and PSS of the relay's
//! processes (the members of a cgroup, or given PIDs) until a stop file
//! appears, and reports the peaks and the largest `VmHWM`.
//!
//! Not CPU accounting: `scripts/bench` reads the cgroup's `cpuacct` (which
//! counts exited processes too) or `/proc/PID/stat` itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::LoadError;

/// Which processes to watch and until when.
#[derive(clap::Args, Debug, Clone)]
pub struct WatchArgs {
    /// A process to watch (repeatable).
    #[arg(long)]
    pub pid: Vec<u32>,
    /// A cgroup directory: watch the processes in its `cgroup.procs`.
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// Sampling period in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub period_ms: u64,
    /// Stop (and print the report) once this file exists.
    #[arg(long)]
    pub until: PathBuf,
    /// Reset each process's `VmHWM` first (`/proc/PID/clear_refs`).
    #[arg(long)]
    pub reset_peak: bool,
}

/// The peaks seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchReport {
    /// Samples taken.
    pub samples: u64,
    /// Largest sum of `Rss` over the processes (kB).
    pub peak_rss_kb: u64,
    /// Largest sum of `Pss` over the processes (kB).
    pub peak_pss_kb: u64,
    /// Largest `VmHWM` of one process (kB): the exact peak of a
    /// single-process relay.
    pub max_hwm_kb: u64,
}

/// `Rss` and `Pss` in kB from `/proc/PID/smaps_rollup`.
pub fn parse_rollup(text: &str) -> (u64, u64) {
    (
        field_kb(text, "Rss:").unwrap_or(0),
        field_kb(text, "Pss:").unwrap_or(0),
    )
}

/// A `Name:   123 kB` field of a `/proc` file.
pub fn field_kb(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The PIDs listed in a `cgroup.procs` text.
pub fn parse_pids(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn pids(args: &WatchArgs) -> Vec<u32> {
    let mut pids = args.pid.clone();
    if let Some(cg) = &args.cgroup
        && let Ok(text) = std::fs::read_to_string(cg.join("cgroup.procs"))
    {
        pids.extend(parse_pids(&text));
    }
    // A process named twice must not be counted twice.
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn sample(pids: &[u32], report: &mut WatchReport) {
    let (mut rss, mut pss) = (0, 0);
    for pid in pids {
        let proc_dir = Path::new("/proc").join(pid.to_string());
        // A process may end between listing and reading: it then counts 0.
        if let Ok(text) = std::fs::read_to_string(proc_dir.join("smaps_rollup")) {
            let (r, p) = parse_rollup(&text);
            rss += r;
            pss += p;
        }
        if let Ok(text) = std::fs::read_to_string(proc_dir.join("status")) {
            let hwm = field_kb(&text, "VmHWM:").unwrap_or(0);
            report.max_hwm_kb = report.max_hwm_kb.max(hwm);
        }
    }
    report.samples += 1;
    report.peak_rss_kb = report.peak_rss_kb.max(rss);
    report.peak_pss_kb = report.peak_pss_kb.max(pss);
}

/// Samples until the stop file exists (blocking; a thread of its own).
pub fn watch(args: &WatchArgs) -> Result<WatchReport, LoadError> {
    if args.reset_peak {
        for pid in pids(args) {
            // Best effort: a process that ended has no peak to reset.
            let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
    }
    let mut report = WatchReport::default();
    loop {
        sample(&pids(args), &mut report);
        if args.until.exists() {
            return Ok(report);
        }
        std::thread::sleep(Duration::from_millis(args.period_ms));
    }
}

#[cfg(test)]
mod tests;
