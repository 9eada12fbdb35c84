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
    let mut args: Vec<_> = std::env::args_os().skip(1).collect();
    if name == "sendmail" {
        let config = std::env::var_os("POSTRELAY_CONFIG").map(Into::into);
        return cli::sendmail::main(args, config);
    }
    // The privilege-separated processes the daemon starts (not commands
    // for people, so not in --help): they read no configuration; the
    // process that was root at start gave them what they need.
    match args.first().and_then(|a| a.to_str()) {
        Some(postrelay::privsep::HELPER_ARG) => return postrelay::privsep::helper_main(&args[1..]),
        Some(postrelay::privsep::CHILD_ARG) => return postrelay::privsep::child_main(),
        // `postrelay sendmail ARGS` as by the symlink: the subcommand
        // passes its arguments through unparsed anyway, and building the
        // whole command line parser is a tenth of sendmail's run time.
        Some("sendmail") => {
            let config = std::env::var_os("POSTRELAY_CONFIG").map(Into::into);
            args.remove(0);
            return cli::sendmail::main(args, config);
        }
        _ => {}
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
