//! Installing `sendmail` and a setgid `postrelay-postdrop` the way an
//! administrator would, for tests that submit mail through them.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

use super::daemon::{Daemon, bin};

/// The programs under test, installed as an administrator would.
pub struct Install {
    /// Where sendmail, mailq and postdrop are installed.
    pub dir: TempDir,
}

impl Install {
    /// `None` (after saying why) when not root outside CI.
    pub fn new() -> Option<Install> {
        if !super::peers::require_root("installing postdrop setgid and switching users") {
            return None;
        }
        if nix::unistd::Group::from_name("postdrop").unwrap().is_none() {
            let st = Command::new("groupadd")
                .args(["--system", "postdrop"])
                .status()
                .unwrap();
            assert!(st.success(), "groupadd --system postdrop failed");
        }
        let gid = nix::unistd::Group::from_name("postdrop")
            .unwrap()
            .unwrap()
            .gid;
        let dir = tempfile::Builder::new()
            .prefix("postrelay-sendmail")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let postdrop = dir.path().join("postrelay-postdrop");
        super::copy_executable(
            std::path::Path::new(env!("CARGO_BIN_EXE_postrelay-postdrop")),
            &postdrop,
        );
        nix::unistd::chown(&postdrop, Some(0.into()), Some(gid)).unwrap();
        std::fs::set_permissions(&postdrop, PermissionsExt::from_mode(0o2755)).unwrap();
        for name in ["sendmail", "mailq"] {
            std::os::unix::fs::symlink(bin(), dir.path().join(name)).unwrap();
        }
        Some(Install { dir })
    }

    pub fn sendmail(&self) -> PathBuf {
        self.dir.path().join("sendmail")
    }

    pub fn postdrop(&self) -> PathBuf {
        self.dir.path().join("postrelay-postdrop")
    }

    /// A command for `program` with our configuration and postdrop.
    pub fn command(&self, d: &Daemon, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env("POSTRELAY_CONFIG", &d.config)
            .env("POSTRELAY_POSTDROP", self.postdrop())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `sendmail ARGS` as root with `input` on stdin.
    pub fn sendmail_run(&self, d: &Daemon, args: &[&str], input: &[u8]) -> Output {
        run(self.command(d, &self.sendmail()).args(args), input)
    }

    /// Runs `program ARGS` as nobody (setpriv) with `input` on stdin.
    pub fn as_nobody(&self, d: &Daemon, program: &Path, args: &[&str], input: &[u8]) -> Output {
        let mut c = self.command(d, Path::new("setpriv"));
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program)
            .args(args);
        run(&mut c, input)
    }
}

/// Runs a command with `input` on stdin.
pub fn run(c: &mut Command, input: &[u8]) -> Output {
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}
