//! `postrelay-sendmail`: the sendmail(8) command (`/usr/sbin/sendmail`
//! links here), small so that it starts fast; it submits to the running
//! daemon and leaves everything else to `postrelay sendmail`. See
//! `postrelay::cli::sendmail::fast`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = std::env::args_os().skip(1).collect();
    let config = std::env::var_os("POSTRELAY_CONFIG").map(Into::into);
    postrelay::cli::sendmail::fast::main(args, config)
}
