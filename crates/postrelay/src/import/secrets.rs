//! Where an imported password goes: a new file of mode 0600 (when the
//! output is a file, in `secrets/` next to it), or, when the output goes
//! to standard output, nowhere: the report says which file to create.
//! A password is never written anywhere else.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::ImportError;

/// Where `password_file`s are put.
#[derive(Clone, Debug)]
pub enum SecretSink {
    /// Write each password to a new file in this directory.
    Write(PathBuf),
    /// Write nothing; reference files in this directory for the
    /// administrator to create.
    Refer(PathBuf),
}

/// The directory postrelay's secrets usually live in.
pub const SECRETS_DIR: &str = "/etc/postrelay/secrets";

impl SecretSink {
    /// For an output written to `output` (`None`: standard output).
    pub fn for_output(output: Option<&Path>) -> SecretSink {
        match output {
            Some(o) => {
                let dir = o.parent().filter(|p| !p.as_os_str().is_empty());
                SecretSink::Write(dir.unwrap_or(Path::new(".")).join("secrets"))
            }
            None => SecretSink::Refer(PathBuf::from(SECRETS_DIR)),
        }
    }

    /// Puts `password` (of relay `name`) where the configuration will
    /// find it; returns the path, and what the administrator must do.
    pub fn store(
        &self,
        name: &str,
        password: &str,
        from: &str,
    ) -> Result<(PathBuf, String), ImportError> {
        match self {
            SecretSink::Refer(dir) => {
                let path = dir.join(name);
                let todo = format!(
                    "the password is in {from} and was not copied (the configuration went to standard output); create {p} holding only the password: install -m 600 -o postrelay /dev/null {p}, then write the password into it",
                    p = path.display()
                );
                Ok((path, todo))
            }
            SecretSink::Write(dir) => {
                let path = dir.join(name);
                write_new(dir, &path, password)?;
                let todo = format!(
                    "the password from {from} was written to {p} (mode 0600); make it owned by the user postrelay runs as: chown postrelay {p}",
                    p = path.display()
                );
                Ok((path, todo))
            }
        }
    }
}

/// Creates `path` (not an existing file) with mode 0600 and `password`.
fn write_new(dir: &Path, path: &Path, password: &str) -> Result<(), ImportError> {
    let err = |source| ImportError::Write {
        path: path.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ImportError::Write {
            path: dir.to_owned(),
            source,
        })?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(format!("{password}\n").as_bytes())
        .map_err(err)?;
    f.sync_all().map_err(err)
}
