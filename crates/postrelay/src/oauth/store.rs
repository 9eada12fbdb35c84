//! The refresh token file of one relay (`[relay.oauth] token_file`): the
//! refresh token and what postrelay knows about it (when it was obtained,
//! when it last worked, why it last failed), as JSON.
//!
//! Same rules as a password file (`config::secrets`): a regular file owned
//! by the daemon's user, mode 0600, checked on the opened file. Written
//! atomically: a new file (0600) in the same directory, written, fsynced,
//! renamed over the old one, and the directory fsynced; so a crash leaves
//! the old token or the new one, never half of either.
//!
//! Not for: talking to the provider (`oauth::provider`). Nothing here puts
//! the token into an error message.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Secret;

/// What the token file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFile {
    /// The refresh token (`<redacted>` when printed).
    pub refresh_token: Secret,
    /// When the provider issued this refresh token (Unix seconds): at
    /// `auth login`, or when a refresh rotated it.
    pub obtained_at: i64,
    /// When it last bought an access token (Unix seconds).
    pub refreshed_at: Option<i64>,
    /// The provider's refusal of this token, if it refused it:
    /// (Unix seconds, the OAuth error code, e.g. `invalid_grant`).
    pub refused: Option<(i64, String)>,
}

/// The file's JSON shape (the token as plain text only here).
#[derive(Serialize, Deserialize)]
struct OnDisk {
    refresh_token: String,
    obtained_at: i64,
    #[serde(default)]
    refreshed_at: Option<i64>,
    #[serde(default)]
    refused_at: Option<i64>,
    #[serde(default)]
    refused_error: Option<String>,
}

/// Why the token file could not be read or written. The texts complete a
/// sentence starting with the file's name, and never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No file: nobody has run `postrelay auth login` for this relay.
    #[error("does not exist")]
    Missing,
    /// Wrong owner or mode, not a regular file, unreadable.
    #[error("{0}")]
    Unsafe(String),
    /// Not a token file postrelay wrote.
    #[error("is not a postrelay token file ({0}); run postrelay auth login again")]
    Corrupt(String),
    /// Writing failed.
    #[error("cannot be written: {0}")]
    Write(#[from] std::io::Error),
}

/// Reads the token file at `path`, which must belong to `owner` (the
/// daemon's user) with mode 0600.
pub fn load(path: &Path, owner: u32) -> Result<TokenFile, StoreError> {
    let text = crate::config::read_secret_file(path, owner).map_err(|why| {
        if why == "does not exist" {
            StoreError::Missing
        } else {
            StoreError::Unsafe(why)
        }
    })?;
    let d: OnDisk = serde_json::from_str(&text)
        // The error's position only: its text could quote the token.
        .map_err(|e| StoreError::Corrupt(format!("line {} column {}", e.line(), e.column())))?;
    if d.refresh_token.is_empty() {
        return Err(StoreError::Corrupt("empty refresh token".into()));
    }
    Ok(TokenFile {
        refresh_token: Secret::new(d.refresh_token),
        obtained_at: d.obtained_at,
        refreshed_at: d.refreshed_at,
        refused: d.refused_at.zip(d.refused_error),
    })
}

/// Writes `token` to `path` atomically, mode 0600, and, when `chown_to`
/// is given (`auth login` run as root), owned by that uid and gid. The
/// directory is created (0700) when missing.
pub fn save(
    path: &Path,
    token: &TokenFile,
    chown_to: Option<(u32, u32)>,
) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid)) = chown_to {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        }
    }
    let d = OnDisk {
        refresh_token: token.refresh_token.expose().to_owned(),
        obtained_at: token.obtained_at,
        refreshed_at: token.refreshed_at,
        refused_at: token.refused.as_ref().map(|r| r.0),
        refused_error: token.refused.as_ref().map(|r| r.1.clone()),
    };
    let mut bytes = serde_json::to_vec_pretty(&d).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    let tmp = tmp_path(path);
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        if let Some((uid, gid)) = chown_to {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(result?)
}

/// `DIR/.NAME.tmp`: beside the file, so that the rename stays in one file
/// system.
fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "token".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn sample() -> TokenFile {
        TokenFile {
            refresh_token: Secret::new("rt-MARKER-1"),
            obtained_at: 1_700_000_000,
            refreshed_at: Some(1_700_000_100),
            refused: None,
        }
    }

    #[test]
    fn round_trip_is_private_and_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/relay.token");
        let me = nix::unistd::geteuid().as_raw();
        save(&path, &sample(), None).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        assert_eq!(load(&path, me).unwrap(), sample());
        // A rewrite replaces the file whole and leaves no temporary file.
        let mut next = sample();
        next.refused = Some((1_700_000_200, "invalid_grant".into()));
        save(&path, &next, None).unwrap();
        assert_eq!(load(&path, me).unwrap(), next);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn refuses_unsafe_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.token");
        let me = nix::unistd::geteuid().as_raw();
        assert!(matches!(load(&path, me), Err(StoreError::Missing)));
        save(&path, &sample(), None).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path, me).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = load(&path, me + 1).unwrap_err().to_string();
        assert!(err.contains("chown"), "{err}");
        std::fs::write(&path, "{\"refresh_token\": \"rt-MARKER-1\" broken").unwrap();
        let err = load(&path, me).unwrap_err().to_string();
        assert!(
            err.contains("not a postrelay token file") && !err.contains("MARKER"),
            "{err}"
        );
    }
}
