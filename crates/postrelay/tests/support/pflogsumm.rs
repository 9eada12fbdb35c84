//! Running the real `pflogsumm` over a postrelay mail log.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The "Grand Totals" of a pflogsumm report: label → number.
pub fn grand_totals(report: &str) -> BTreeMap<String, u64> {
    let section = report
        .split("Grand Totals")
        .nth(1)
        .expect("Grand Totals in the report");
    let mut totals = BTreeMap::new();
    for line in section.lines().skip(1) {
        if line.starts_with("Per-") || line.contains("-----") && !totals.is_empty() {
            break;
        }
        let mut words = line.split_whitespace();
        let Some(number) = words.next().and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        let label: Vec<&str> = words.take_while(|w| !w.starts_with('(')).collect();
        totals.insert(label.join(" "), number);
    }
    totals
}

/// Runs `pflogsumm --syslog-name=postrelay` on a log file.
pub fn run_pflogsumm(log: &Path) -> String {
    let out = Command::new("pflogsumm")
        .arg("--syslog-name=postrelay")
        .arg(log)
        .output()
        .expect("run pflogsumm");
    assert!(
        out.status.success(),
        "pflogsumm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
