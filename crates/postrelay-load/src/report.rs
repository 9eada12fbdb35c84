//! The benchmark page: reads the per-run results `scripts/bench` collected
//! (JSON lines, one per scenario run) and the queue-size measurements of
//! `docs/bench/scale.jsonl` when present, and writes the results section of
//! `docs/benchmarks.md` (between its `bench:results` markers; the prose
//! around them is written by hand) and the SVG charts in `docs/bench/`.
//! Several repetitions of one run are summarised by their median.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::LoadError;
use crate::procfs::WatchReport;
use crate::send::SendReport;

mod budget;
pub mod svg;
mod tables;

/// Where to read and write.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// The results, one JSON object per line.
    #[arg(long)]
    pub results: PathBuf,
    /// Queue-size measurements (skipped when the file does not exist).
    #[arg(long)]
    pub scale: Option<PathBuf>,
    /// The page whose results section is replaced.
    #[arg(long)]
    pub page: PathBuf,
    /// The directory for the SVG charts.
    #[arg(long)]
    pub charts: PathBuf,
    /// A text file describing the machine and the run, put at the top.
    #[arg(long)]
    pub machine: Option<PathBuf>,
}

/// One scenario run on one relay, as `scripts/bench` writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// `postrelay`, `postfix`.
    pub relay: String,
    /// `plain`, or `tls` for STARTTLS + AUTH to the sink.
    pub upstream: String,
    /// The scenario name (see `scripts/bench`).
    pub scenario: String,
    /// The client: `postrelay-load` or `smtp-source`.
    pub client: String,
    /// CPU seconds of the relay, from the start to an empty queue.
    #[serde(default)]
    pub cpu_s: Option<f64>,
    /// The relay's memory during the run.
    #[serde(default)]
    pub mem: Option<WatchReport>,
    /// CPU seconds of the client over the same span as `cpu_s`.
    #[serde(default)]
    pub client_cpu_s: Option<f64>,
    /// CPU seconds of the sink over the same span.
    #[serde(default)]
    pub sink_cpu_s: Option<f64>,
    /// CPUs of the machine the run shared.
    #[serde(default)]
    pub cpus: Option<u32>,
    /// What the client and the sink saw.
    pub run: SendReport,
}

/// One measurement at one queue size (written by the queue-scale
/// benchmark; every metric is optional).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScalePoint {
    /// The relay measured.
    pub relay: String,
    /// Messages in the queue.
    pub queued: f64,
    /// Seconds to list the queue.
    #[serde(default)]
    pub queue_list_s: Option<f64>,
    /// Seconds from start to accepting mail.
    #[serde(default)]
    pub startup_s: Option<f64>,
    /// Resident memory in MB.
    #[serde(default)]
    pub rss_mb: Option<f64>,
    /// Scheduling cost per queued message, µs.
    #[serde(default)]
    pub sched_us_per_msg: Option<f64>,
}

/// Parses JSON lines (blank lines skipped), naming the bad line.
pub fn parse_lines<T: for<'de> Deserialize<'de>>(
    text: &str,
    file: &Path,
) -> Result<Vec<T>, LoadError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| LoadError::Parse {
                file: file.display().to_string(),
                line: i + 1,
                what: e.to_string(),
            })
        })
        .collect()
}

const BEGIN: &str = "<!-- bench:results:begin -->";
const END: &str = "<!-- bench:results:end -->";

/// `page` with the text between the results markers replaced by `section`.
pub fn splice(page: &str, section: &str) -> Result<String, LoadError> {
    let missing = |what: &str| LoadError::Parse {
        file: "page".into(),
        line: 0,
        what: format!("no {what} marker"),
    };
    let b = page.find(BEGIN).ok_or_else(|| missing(BEGIN))? + BEGIN.len();
    let e = page[b..].find(END).ok_or_else(|| missing(END))? + b;
    Ok(format!(
        "{}\n{}\n{}",
        &page[..b],
        section.trim(),
        &page[e..]
    ))
}

/// Writes the page's results and the charts; the files written.
pub fn write(args: &ReportArgs) -> Result<Vec<PathBuf>, LoadError> {
    let rows: Vec<Row> = parse_lines(&std::fs::read_to_string(&args.results)?, &args.results)?;
    let scale: Vec<ScalePoint> = match &args.scale {
        Some(p) if p.exists() => parse_lines(&std::fs::read_to_string(p)?, p)?,
        _ => Vec::new(),
    };
    let machine = match &args.machine {
        Some(p) => std::fs::read_to_string(p)?,
        None => String::new(),
    };
    std::fs::create_dir_all(&args.charts)?;
    let mut written = Vec::new();
    let mut images = Vec::new();
    for (name, chart) in tables::charts(&rows, &scale) {
        let path = args.charts.join(format!("{name}.svg"));
        std::fs::write(&path, chart.render())?;
        images.push((chart.title.clone(), name));
        written.push(path);
    }
    let section = tables::section(&rows, &machine, &images);
    let page = std::fs::read_to_string(&args.page)?;
    std::fs::write(&args.page, splice(&page, &section)?)?;
    written.push(args.page.clone());
    Ok(written)
}

#[cfg(test)]
mod tests;
