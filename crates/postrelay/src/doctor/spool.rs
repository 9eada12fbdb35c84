//! The spool and the queue: is the spool writable with room to spare
//! (the daemon's own health sample), and what waits in the queue: how
//! many messages are deferred, the oldest, and the most common reasons.
//!
//! Reads only: the queue is listed like `postrelay queue list` does
//! (`Spool::open_readonly`), beside a running daemon.
//!
//! Not for: changing the queue (`postrelay queue …` does).

use std::collections::HashMap;
use std::path::Path;

use super::{Finding, Verdict};
use crate::config::Config;
use crate::spool::{self, Envelope, Health, Location, Spool};

/// How many of the most common reasons are shown.
const TOP_REASONS: usize = 3;

/// The spool's health and the queue's state.
pub(super) fn check(config: &Config) -> Vec<Finding> {
    let root = &config.spool;
    let subject = root.display().to_string();
    if !root.exists() {
        return vec![Finding::bad(
            "spool",
            Verdict::Warning,
            subject,
            "does not exist yet",
            "start postrelay once (systemctl start postrelay): it creates the spool",
        )];
    }
    let options = crate::daemon::health_options(config);
    let space = match spool::sample_health_at(root, &options) {
        Health::Ok => Finding::ok(
            "spool",
            subject.clone(),
            format!(
                "tmp/ is writable, {} free (postrelay refuses mail below {})",
                free_space(root),
                human_bytes(options.min_free_bytes)
            ),
        ),
        Health::Low { reason } => Finding::bad(
            "spool",
            Verdict::Problem,
            subject.clone(),
            format!("{reason}: new mail is refused with 452 4.3.1"),
            format!(
                "free space on the file system of {subject}, or make its tmp/ writable by \
                 postrelay's user (chown -R postrelay {subject})"
            ),
        ),
    };
    vec![space, queue(root)]
}

/// What waits, and why.
fn queue(root: &Path) -> Finding {
    let subject = root.display().to_string();
    let listed = Spool::open_readonly(root).and_then(|r| r.list());
    let all = match listed {
        Ok(all) => all,
        Err(e) => {
            return Finding::bad(
                "queue",
                Verdict::Warning,
                subject,
                format!("cannot list the queue: {e}"),
                "run postrelay doctor as root or as postrelay's user, who may read the spool",
            );
        }
    };
    let now = spool::now_ms();
    let held = all.iter().filter(|(_, l)| *l == Location::Hold).count();
    let deferred: Vec<&Envelope> = all
        .iter()
        .filter(|(e, l)| *l == Location::Queue && e.attempts > 0)
        .map(|(e, _)| e)
        .collect();
    let mut counts = format!(
        "{} message(s) queued, {} deferred, {held} on hold",
        all.len(),
        deferred.len()
    );
    if let Some(oldest) = all.iter().map(|(e, _)| e.created_ms).min() {
        counts.push_str(&format!(
            ", oldest queued {} ago",
            age(now.saturating_sub(oldest))
        ));
    }
    if deferred.is_empty() {
        return Finding::ok("queue", subject, counts);
    }
    let reasons = top_reasons(&deferred);
    let example = deferred
        .iter()
        .min_by_key(|e| e.created_ms)
        .map_or_else(String::new, |e| e.id.to_string());
    Finding::bad(
        "queue",
        Verdict::Warning,
        subject,
        format!("{counts}; most common reasons: {reasons}"),
        format!(
            "postrelay queue show {example} has the last attempt's transcript; fix its cause, \
             then postrelay queue flush"
        ),
    )
}

/// `2× (relay refused …); 1× (…)`, most frequent first.
fn top_reasons(deferred: &[&Envelope]) -> String {
    let mut by_reason: HashMap<String, usize> = HashMap::new();
    for e in deferred {
        let reason = e
            .reason
            .as_deref()
            .map_or_else(|| "no reason recorded".to_owned(), crate::maillog::clean);
        *by_reason.entry(reason).or_default() += 1;
    }
    let mut sorted: Vec<(String, usize)> = by_reason.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sorted
        .iter()
        .take(TOP_REASONS)
        .map(|(r, n)| format!("{n}× ({r})"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The space available to postrelay on the spool's file system.
fn free_space(root: &Path) -> String {
    match nix::sys::statvfs::statvfs(root) {
        #[allow(
            clippy::useless_conversion,
            reason = "statvfs counts are u64 on Linux but narrower on some targets"
        )]
        Ok(st) => human_bytes(
            u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size())),
        ),
        Err(e) => format!("an unknown amount of space ({e})"),
    }
}

/// `1.5 GiB`, `300 MiB`.
fn human_bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// `3 min`, `2 h`, `4 d`: how long ago, roughly.
pub(super) fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}
