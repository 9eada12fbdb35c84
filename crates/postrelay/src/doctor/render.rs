//! The two forms of a doctor report: aligned text for people (one line per
//! finding, its fix indented under it, a summary last) and one JSON object
//! for machines.
//!
//! Not for: deciding verdicts (the checks do).

use std::fmt::Write;

use super::{Report, Verdict};

/// The report for people.
pub(super) fn human(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.findings {
        let _ = writeln!(
            out,
            "{:<8} {:<18} {}: {}",
            f.verdict.as_str(),
            f.check,
            f.subject,
            one_line(&f.evidence)
        );
        if let Some(fix) = &f.fix {
            let _ = writeln!(out, "{:<8} {:<18} fix: {}", "", "", one_line(fix));
        }
    }
    let count = |v: Verdict| report.findings.iter().filter(|f| f.verdict == v).count();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let _ = writeln!(
        out,
        "\n{}, {}, {} ok ({:.2} s)",
        plural(count(Verdict::Problem), "problem"),
        plural(count(Verdict::Warning), "warning"),
        plural(count(Verdict::Ok), "check"),
        report.elapsed_ms as f64 / 1000.0
    );
    out
}

/// The report as one JSON object: `verdict`, `elapsed_ms` and `findings`
/// (each with `check`, `subject`, `verdict`, `evidence` and, unless all
/// is well, `fix`).
pub(super) fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| {
        format!("{{\"verdict\":\"problem\",\"error\":\"cannot encode the report: {e}\"}}")
    })
}

/// Text from a peer or an error on one line, control characters replaced.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
