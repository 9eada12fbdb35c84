//! `postrelay import-postfix [DIR]`, `import-msmtp [FILE]` and
//! `import-nullmailer [DIR]`: write the configuration (to `--output` or
//! standard output) and report on standard error what was not carried
//! over. The work is done by [`crate::import`].
//!
//! Exit status: 0 when the configuration is written and loads as it is;
//! 1 when it is written but `check-config` would refuse it until the
//! report's "to do" lines are done (a secret file to protect); 66
//! (EX_NOINPUT) when the source cannot be read; 65 (EX_DATAERR) when it
//! cannot be understood; 73 (EX_CANTCREAT) when the output cannot be
//! written.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::import::{self, ImportError, Imported, NoteKind, SecretSink};

/// What to import.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    Postfix,
    Msmtp,
    Nullmailer,
}

/// The arguments every importer takes.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Where to read (postfix: the directory of main.cf, default
    /// /etc/postfix; msmtp: the msmtprc, default /etc/msmtprc; nullmailer:
    /// the directory of remotes, default /etc/nullmailer).
    pub path: Option<PathBuf>,
    /// Write the configuration to FILE (replacing it) instead of standard
    /// output. Passwords written inline in the source (msmtp, nullmailer)
    /// then go to new files of mode 0600 in `secrets/` next to FILE.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs one importer.
pub fn run(source: Source, args: &ImportArgs) -> ExitCode {
    let (default, command) = match source {
        Source::Postfix => ("/etc/postfix", "import-postfix"),
        Source::Msmtp => ("/etc/msmtprc", "import-msmtp"),
        Source::Nullmailer => ("/etc/nullmailer", "import-nullmailer"),
    };
    let path = args.path.clone().unwrap_or_else(|| PathBuf::from(default));
    let secrets = SecretSink::for_output(args.output.as_deref());
    let result = match source {
        Source::Postfix => import::postfix::import(&path),
        Source::Msmtp => import::msmtp::import(&path, &secrets),
        Source::Nullmailer => import::nullmailer::import(&path, &secrets),
    };
    let imported = match result {
        Ok(i) => i,
        Err(e) => {
            eprintln!("postrelay {command}: {e}");
            return ExitCode::from(match e {
                ImportError::Read { .. } => 66,
                ImportError::Syntax { .. } | ImportError::Nothing { .. } => 65,
                ImportError::Write { .. } => 73,
            });
        }
    };
    if let Err(e) = write_output(args.output.as_deref(), &imported.text) {
        eprintln!("postrelay {command}: {e}");
        return ExitCode::from(73);
    }
    report(command, &imported, args.output.as_deref())
}

/// The report on standard error; the exit status.
fn report(command: &str, imported: &Imported, output: Option<&Path>) -> ExitCode {
    let mut err = std::io::stderr().lock();
    let to = output.map_or("standard output".to_owned(), |p| p.display().to_string());
    let _ = writeln!(err, "postrelay {command}: configuration written to {to}");
    for kind in [NoteKind::Action, NoteKind::NotCarried, NoteKind::Changed] {
        for n in imported.report.notes.iter().filter(|n| n.kind == kind) {
            let _ = writeln!(err, "  {n}");
        }
    }
    match &imported.problem {
        None => {
            let _ = writeln!(
                err,
                "postrelay {command}: it loads as it is; check it with postrelay check-config --config FILE"
            );
            ExitCode::SUCCESS
        }
        Some(p) => {
            let _ = writeln!(
                err,
                "postrelay {command}: postrelay check-config will refuse it until this is fixed: {p}"
            );
            ExitCode::FAILURE
        }
    }
}

/// Writes the configuration to `output` (through a temporary file renamed
/// over it, so a reader never sees half a file), or to standard output.
fn write_output(output: Option<&Path>, text: &str) -> Result<(), ImportError> {
    let Some(path) = output else {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|source| ImportError::Write {
                path: PathBuf::from("standard output"),
                source,
            });
    };
    let err = |source| ImportError::Write {
        path: path.to_owned(),
        source,
    };
    let name = path.file_name().map_or("postrelay.toml".into(), |n| {
        n.to_string_lossy().into_owned()
    });
    let tmp = path.with_file_name(format!(".{name}.import-tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(err)
}
