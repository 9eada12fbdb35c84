//! End-to-end figures for a run by another client (`smtp-source`), whose
//! messages carry no load id: waits until the sink's arrival log has grown
//! by the expected number of messages and reports when the last arrived,
//! in the generator's report shape.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::LoadError;
use crate::send::SendReport;
use crate::stats::parse_arrival;

/// The run to account for.
#[derive(clap::Args, Debug, Clone)]
pub struct DrainArgs {
    /// The sink's arrival log.
    #[arg(long)]
    pub sink_log: PathBuf,
    /// Lines of the log written before the run started.
    #[arg(long, default_value_t = 0)]
    pub skip_lines: usize,
    /// Messages the client sent (and the relay accepted).
    #[arg(long)]
    pub messages: usize,
    /// Recipients per message.
    #[arg(long, default_value_t = 1)]
    pub recipients: u32,
    /// When the client started, ns since the Unix epoch.
    #[arg(long)]
    pub start_ns: u128,
    /// How long the client ran, in seconds (its intake time).
    #[arg(long)]
    pub intake_s: f64,
    /// Concurrent sessions of the client (for the report).
    #[arg(long, default_value_t = 1)]
    pub sessions: usize,
    /// Message size of the client (for the report).
    #[arg(long, default_value_t = 0)]
    pub size: usize,
    /// The client reused connections (for the report).
    #[arg(long)]
    pub reuse: bool,
    /// Longest wait, in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// When the `want`-th recipient after `skip` lines arrived, if it has.
pub fn nth_arrival(log: &str, skip: usize, want: u64) -> Result<Option<u128>, LoadError> {
    let mut got = 0u64;
    for (i, line) in log.lines().enumerate().skip(skip) {
        let a = parse_arrival(line).ok_or_else(|| LoadError::Parse {
            file: "sink log".into(),
            line: i + 1,
            what: format!("not an arrival line: {line:?}"),
        })?;
        got += u64::from(a.rcpts);
        if got >= want {
            return Ok(Some(a.at_ns));
        }
    }
    Ok(None)
}

/// Waits for the arrivals (bounded) and reports.
pub fn drain(args: &DrainArgs) -> Result<SendReport, LoadError> {
    let want = args.messages as u64 * u64::from(args.recipients);
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let last = loop {
        let text = std::fs::read_to_string(&args.sink_log)?;
        // Only whole lines: the sink may be writing the last one.
        let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
        if let Some(at) = nth_arrival(whole, args.skip_lines, want)? {
            break at;
        }
        if Instant::now() > deadline {
            return Err(LoadError::Timeout(format!(
                "{} recipients did not reach {}",
                want,
                args.sink_log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let e2e = last.saturating_sub(args.start_ns) as f64 / 1e9;
    Ok(SendReport {
        messages: args.messages,
        accepted: args.messages,
        errors: 0,
        first_error: None,
        sessions: args.sessions,
        size: args.size,
        recipients: args.recipients as usize,
        reuse: args.reuse,
        connections: 0,
        intake_s: args.intake_s,
        intake_per_s: args.messages as f64 / args.intake_s,
        latency_ms: None,
        e2e_s: Some(e2e),
        e2e_per_s: Some(args.messages as f64 / e2e),
        delay_ms: None,
        missing: 0,
    })
}

#[cfg(test)]
mod tests;
