//! A real system user for a test (needs root): created with `useradd`
//! and a home directory, removed again (home included) on drop.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A system user with a home directory.
pub struct SystemUser {
    /// The login name (unique per process and call).
    pub name: String,
}

impl SystemUser {
    /// Creates `<prefix><pid>x<n>` with a home directory and no login shell.
    pub fn create(prefix: &str) -> SystemUser {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{prefix}{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("useradd")
            .args(["--create-home", "--shell", "/usr/sbin/nologin", &name])
            .output()
            .expect("run useradd");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SystemUser { name }
    }

    /// `~/Maildir/new`.
    pub fn maildir_new(&self) -> PathBuf {
        PathBuf::from(format!("/home/{}/Maildir/new", self.name))
    }

    /// The messages in `~/Maildir/new`, as text (none when it does not
    /// exist yet).
    pub fn mail(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir_new()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect()
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
    }
}
