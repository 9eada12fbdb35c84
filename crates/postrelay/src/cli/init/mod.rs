//! `postrelay init`: writes a commented configuration for a provider preset
//! and the relay's password file, so that a new installation is one command
//! away from sending.
//!
//! With every answer given as a flag (the password on standard input with
//! `--password-stdin`) it asks nothing; on a terminal it asks for what the
//! flags left out (the password without echo) and then runs `postrelay
//! doctor` on the result. The configuration written always loads as
//! `check-config` loads it: it is checked, secrets included, before it
//! takes its place. An existing configuration or password file is only
//! replaced with `--force`. The password is never printed.
//!
//! **Not for:** editing an existing configuration (it writes a new one) or
//! relays without a preset (write those by hand, see docs/config.md).

mod files;
#[cfg(test)]
mod tests;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::hash_password;
use crate::config;

/// The arguments of `postrelay init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The provider: brevo, ses:REGION, sendgrid, mailgun[:eu], postmark,
    /// smtp2go, gmail, google-workspace, m365. Asked on a terminal.
    #[arg(long, value_name = "PROVIDER")]
    pub provider: Option<String>,
    /// The user name for the provider's SMTP AUTH (SendGrid's is fixed).
    /// Asked on a terminal.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Read the password from the first line of standard input (never from
    /// the command line). On a terminal it is asked without echo.
    #[arg(long)]
    pub password_stdin: bool,
    /// The address local senders (root, cron, …) are rewritten to, one the
    /// provider has verified (`[routing] rewrite_senders`). Asked on a
    /// terminal; without it local senders are kept.
    #[arg(long, value_name = "ADDRESS")]
    pub sender: Option<String>,
    /// The configuration file to write.
    #[arg(long, short = 'o', value_name = "FILE", default_value = super::DEFAULT_CONFIG)]
    pub output: PathBuf,
    /// The password file to write. Default: secrets/RELAY next to the
    /// configuration.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The `[daemon] user`; when run as root it owns the password file.
    #[arg(long, value_name = "NAME", default_value = config::DEFAULT_USER)]
    pub daemon_user: String,
    /// Override the provider's host.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Override the provider's port (e.g. 465 with --tls implicit).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Override the provider's TLS mode.
    #[arg(long, value_parser = ["starttls", "implicit", "auto"])]
    pub tls: Option<String>,
    /// CA certificates (PEM) to verify the relay with instead of the
    /// system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Replace an existing configuration and password file.
    #[arg(long)]
    pub force: bool,
}

/// Why `init` wrote nothing (or took back what it wrote).
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0}")]
    Answer(String),
    #[error("{path} already exists; pass --force to replace it")]
    Exists { path: PathBuf },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the daemon user {0} does not exist; create it (useradd --system --user-group \
         --home-dir /var/spool/postrelay --no-create-home --shell /usr/sbin/nologin {0}) \
         or name another with --daemon-user"
    )]
    NoUser(String),
    #[error("nothing was written: the configuration would not load: {0}")]
    Invalid(config::ConfigError),
}

/// The answers, complete.
#[derive(Debug)]
pub(crate) struct Answers {
    pub provider: config::Preset,
    pub relay: String,
    pub user: String,
    pub password: String,
    pub sender: Option<String>,
    pub args_host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub daemon_user: String,
    pub output: PathBuf,
    pub password_file: PathBuf,
}

/// Runs the subcommand.
pub fn run(args: &InitArgs) -> ExitCode {
    let interactive = std::io::stdin().is_terminal();
    let answers = match answers(args, interactive) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("postrelay init: {e}");
            return ExitCode::from(64); // EX_USAGE
        }
    };
    if let Err(e) = files::write(&answers, args.force) {
        eprintln!("postrelay init: {e}");
        return ExitCode::from(match e {
            InitError::Exists { .. } | InitError::Write { .. } => 73, // EX_CANTCREAT
            InitError::NoUser(_) => 67,                               // EX_NOUSER
            InitError::Invalid(_) | InitError::Answer(_) => 78,       // EX_CONFIG
        });
    }
    let config = answers.output.display();
    eprintln!(
        "postrelay init: wrote {config} and the password file {} (mode 0600)",
        answers.password_file.display()
    );
    if !interactive {
        eprintln!("postrelay init: check the setup with postrelay doctor --config {config}");
        return ExitCode::SUCCESS;
    }
    eprintln!("postrelay init: checking the setup (postrelay doctor --config {config}):");
    crate::doctor::main(Some(&answers.output), &doctor_defaults())
}

/// `doctor`'s arguments with their defaults.
fn doctor_defaults() -> crate::doctor::DoctorArgs {
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: crate::doctor::DoctorArgs,
    }
    <Wrap as clap::Parser>::parse_from(["doctor"]).args
}

/// The flags, completed on a terminal by questions.
fn answers(args: &InitArgs, interactive: bool) -> Result<Answers, InitError> {
    let missing = |what: &str, flag: &str| {
        InitError::Answer(format!(
            "no {what}: give {flag} (or run postrelay init on a terminal to be asked)"
        ))
    };
    let written = match (&args.provider, interactive) {
        (Some(p), _) => p.clone(),
        (None, true) => ask(&format!("Provider ({}): ", config::known_providers()))?,
        (None, false) => return Err(missing("provider", "--provider")),
    };
    let provider = config::provider_preset(&written)
        .map_err(|e| InitError::Answer(format!("provider {written:?}: {e}")))?;
    let relay = provider.id.split(':').next().unwrap_or("relay").to_owned();
    let user = match (&args.user, provider.username, interactive) {
        (Some(u), _, _) => u.clone(),
        (None, Some(fixed), _) => fixed.to_owned(),
        (None, None, true) => ask("User name for the provider's SMTP AUTH: ")?,
        (None, None, false) => return Err(missing("user name", "--user")),
    };
    if user.is_empty() {
        return Err(InitError::Answer("the user name is empty".to_owned()));
    }
    let password = if interactive {
        hash_password::prompt("Password (not shown): ")
    } else if args.password_stdin {
        hash_password::from_pipe()
    } else {
        return Err(missing(
            "password",
            "--password-stdin with the password on standard input",
        ));
    };
    let password = password
        .and_then(hash_password::check)
        .map_err(InitError::Answer)?;
    let sender = match (&args.sender, interactive) {
        (Some(s), _) => Some(s.clone()),
        (None, true) => Some(ask(
            "Sender address the provider has verified (empty: keep local senders): ",
        )?)
        .filter(|s| !s.is_empty()),
        (None, false) => None,
    };
    let output = absolute(&args.output)?;
    let password_file = match &args.password_file {
        Some(p) => absolute(p)?,
        None => output
            .parent()
            .unwrap_or(Path::new("/"))
            .join("secrets")
            .join(&relay),
    };
    Ok(Answers {
        provider,
        relay,
        user,
        password,
        sender,
        args_host: args.host.clone(),
        port: args.port,
        tls: args.tls.clone(),
        ca_file: args.ca_file.as_deref().map(absolute).transpose()?,
        daemon_user: args.daemon_user.clone(),
        output,
        password_file,
    })
}

fn absolute(path: &Path) -> Result<PathBuf, InitError> {
    std::path::absolute(path).map_err(|source| InitError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Asks one question on the terminal; the answer without its line end and
/// surrounding blanks.
fn ask(question: &str) -> Result<String, InitError> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| InitError::Answer(format!("cannot read the answer: {e}")))?;
    if n == 0 {
        return Err(InitError::Answer("no answer (end of input)".to_owned()));
    }
    Ok(line.trim().to_owned())
}
