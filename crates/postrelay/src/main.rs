//! The `postrelay` binary. Invoked as `mailq` (through a symlink) it lists
//! the queue; as `sendmail` it submits a message; otherwise it takes
//! subcommands (`postrelay --help`).

use std::process::ExitCode;

use clap::Parser;
use postrelay::cli::{self, Cli, Command, queue::QueueCommand};

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let name = std::path::Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if name == "sendmail" {
        let config = std::env::var_os("POSTRELAY_CONFIG").map(Into::into);
        return cli::sendmail::main(std::env::args_os().skip(1).collect(), config);
    }
    if name == "mailq" {
        let config = std::env::var_os("POSTRELAY_CONFIG").map(Into::into);
        return cli::main_with(Cli {
            config,
            command: Command::Queue(QueueCommand::List { json: false }),
        });
    }
    cli::main_with(Cli::parse())
}
