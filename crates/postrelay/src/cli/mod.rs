//! The command line: `postrelay run | check-config | queue … | auth … | init … |
//! import-postfix …`, and the
//! `mailq` personality chosen by the program name (argv\[0\]).
//!
//! Each subcommand returns an exit status; messages for the administrator
//! go to stderr and say what to do.

pub mod auth;
pub mod auth_code;
pub mod hash_password;
pub mod import;
pub mod init;
pub mod queue;
pub mod send_test;
pub mod sendmail;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::daemon::{self, Source};

/// The configuration file read when none is named.
pub const DEFAULT_CONFIG: &str = "/etc/postrelay/postrelay.toml";

/// postrelay: a small, fast, secure outbound mail relay.
#[derive(Debug, Parser)]
#[command(name = "postrelay", version, about)]
pub struct Cli {
    /// Configuration file. Default: $POSTRELAY_CONFIG, else
    /// /etc/postrelay/postrelay.toml if it exists, else the built-in
    /// default (listen on 127.0.0.1:2525, spool ./postrelay-spool).
    #[arg(long, short = 'c', global = true, env = "POSTRELAY_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay in the foreground.
    Run,
    /// Validate the configuration and print the effective settings.
    CheckConfig,
    /// Check the setup: configuration, secrets, spool, daemon, each relay
    /// (TLS mode, certificate, AUTH), outbound ports, SPF/DKIM/DMARC.
    Doctor(crate::doctor::DoctorArgs),
    /// Send a tracked test message through the running daemon and report
    /// each step: queued, connected, TLS (certificate name), AUTH, accepted
    /// (the provider's queue id), or the step that failed and why.
    SendTest(send_test::SendTestArgs),
    /// OAuth2 relays: log in once (`auth login --relay NAME`), or show
    /// each one's token state (`auth status`).
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Inspect or change the queue.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Read a password (stdin; asked twice without echo on a terminal) and
    /// print its argon2id hash for the [intake.submission] users file.
    HashPassword,
    /// Write a commented configuration for a provider and the relay's
    /// password file (asks on a terminal, then runs doctor).
    Init(init::InitArgs),
    /// Read Postfix's main.cf (and the text sources of its tables) in DIR
    /// (default /etc/postfix) and write the equivalent postrelay
    /// configuration; what cannot be carried over is reported on stderr.
    ImportPostfix(import::ImportArgs),
    /// Read an msmtprc (default /etc/msmtprc) and write the equivalent
    /// postrelay configuration.
    ImportMsmtp(import::ImportArgs),
    /// Read nullmailer's remotes in DIR (default /etc/nullmailer) and write
    /// the equivalent postrelay configuration.
    ImportNullmailer(import::ImportArgs),
    /// The sendmail(8) interface (also by argv[0]): reads a message on
    /// stdin and submits it. Takes sendmail's flags, e.g. `-t -i`.
    #[command(disable_help_flag = true)]
    Sendmail {
        /// sendmail flags and recipients, passed through unparsed.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// Entry point after argv\[0\] dispatch.
pub fn main_with(cli: Cli) -> ExitCode {
    if let Command::HashPassword = cli.command {
        // Needs no configuration: works before one exists.
        return hash_password::run();
    }
    // init and the importers need no configuration: they write one.
    match &cli.command {
        Command::Init(a) => return init::run(a),
        Command::ImportPostfix(a) => return import::run(import::Source::Postfix, a),
        Command::ImportMsmtp(a) => return import::run(import::Source::Msmtp, a),
        Command::ImportNullmailer(a) => return import::run(import::Source::Nullmailer, a),
        _ => {}
    }
    if let Command::Sendmail { args } = &cli.command {
        // Reads the configuration its own way (see sendmail::load_without_secrets).
        return sendmail::main(args.clone(), cli.config.clone());
    }
    if let Command::Doctor(args) = &cli.command {
        return crate::doctor::main(cli.config.as_deref(), args);
    }
    // The queue commands and send-test need the spool, the listener and
    // the control socket, not the daemon's secrets: read as sendmail
    // does, so that root's mailq works when the secrets belong to the
    // daemon's user.
    if let Command::SendTest(args) = &cli.command {
        return match without_secrets(cli.config.as_deref()) {
            Ok(config) => send_test::run(&config, args),
            Err(code) => code,
        };
    }
    if let Command::Queue(cmd) = cli.command {
        return match without_secrets(cli.config.as_deref()) {
            Ok(config) => queue::run(&config, cmd),
            Err(code) => code,
        };
    }
    let loaded = load_config(cli.config.as_deref());
    let (config, source) = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("postrelay: {e}");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    match cli.command {
        Command::Auth(cmd) => auth::run(&config, cmd),
        Command::Run => {
            init_tracing(&config);
            if matches!(source, Source::Builtin) {
                tracing::info!(
                    "no configuration file found; using the built-in default (see postrelay check-config)"
                );
            }
            match daemon::run(config, source) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("postrelay: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig => {
            match &source {
                Source::File(p) => {
                    eprintln!("postrelay: {} is valid; effective settings:", p.display())
                }
                Source::Builtin => {
                    eprintln!("postrelay: no configuration file; built-in default settings:")
                }
            }
            print!("{}", config.render());
            print!("{}", config.describe_routes());
            ExitCode::SUCCESS
        }
        Command::HashPassword
        | Command::Sendmail { .. }
        | Command::Queue(_)
        | Command::SendTest(_)
        | Command::Doctor(_)
        | Command::Init(_)
        | Command::ImportPostfix(_)
        | Command::ImportMsmtp(_)
        | Command::ImportNullmailer(_) => {
            unreachable!("dispatched before loading the configuration")
        }
    }
}

/// The configuration without its secrets; `Err`: the exit status after
/// saying why it cannot be read.
fn without_secrets(explicit: Option<&Path>) -> Result<Config, ExitCode> {
    sendmail::load_without_secrets(explicit).map_err(|e| {
        eprintln!("postrelay: {e}");
        ExitCode::from(78) // EX_CONFIG
    })
}

/// Finds and loads the configuration (see [`Cli::config`]).
pub fn load_config(explicit: Option<&Path>) -> Result<(Config, Source), config::ConfigError> {
    match config_path(explicit)? {
        Some(path) => Ok((config::load(&path)?, Source::File(path))),
        None => Ok((config::builtin_default(), Source::Builtin)),
    }
}

/// The file to read: `explicit`, else [`DEFAULT_CONFIG`] if it is there;
/// `None`: the built-in defaults. A default file that cannot even be
/// looked at (a directory we may not search) is an error, never a silent
/// switch to the built-in settings.
pub(crate) fn config_path(explicit: Option<&Path>) -> Result<Option<PathBuf>, config::ConfigError> {
    if let Some(path) = explicit {
        return Ok(Some(path.to_path_buf()));
    }
    match std::fs::symlink_metadata(DEFAULT_CONFIG) {
        Ok(_) => Ok(Some(PathBuf::from(DEFAULT_CONFIG))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(config::ConfigError::Read {
            path: PathBuf::from(DEFAULT_CONFIG),
            source,
        }),
    }
}

fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    // Colours only on a terminal: under systemd (journald) or redirected to
    // a file, escape codes would litter the log.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
