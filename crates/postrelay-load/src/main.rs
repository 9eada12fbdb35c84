//! `postrelay-load`: the benchmark's load generator (`send`), counting sink
//! (`sink`), memory sampler (`watch`), end-to-end accounting for another
//! client (`drain`) and page writer (`report`). See `scripts/bench` and
//! docs/benchmarks.md.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use postrelay_load::{drain, procfs, report, send, sink};

#[derive(Parser)]
#[command(
    version,
    about = "Load generator and counting sink for postrelay's benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send messages over many sessions on one thread; print a JSON report.
    Send(send::SendArgs),
    /// Accept and count every message, logging arrivals.
    Sink(sink::SinkArgs),
    /// Sample the memory of processes until a stop file appears.
    Watch(procfs::WatchArgs),
    /// Wait for another client's messages at the sink; print a JSON report.
    Drain(drain::DrainArgs),
    /// Write the benchmark page's results section and charts.
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let printed = match cli.command {
        Cmd::Send(a) => send::run(a).and_then(|r| json(&r)),
        Cmd::Sink(a) => sink::run(&a),
        Cmd::Watch(a) => procfs::watch(&a).and_then(|r| json(&r)),
        Cmd::Drain(a) => drain::drain(&a).and_then(|r| json(&r)),
        Cmd::Report(a) => report::write(&a).map(|files| {
            for f in files {
                println!("wrote {}", f.display());
            }
        }),
    };
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postrelay-load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<(), postrelay_load::error::LoadError> {
    let line = serde_json::to_string(v).map_err(std::io::Error::other)?;
    println!("{line}");
    Ok(())
}
