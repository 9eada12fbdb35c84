//! A throw-away copy of this machine to install packages into: the host's
//! `/` as the lower layer of an overlay whose upper layer is a tmpfs, in a
//! mount namespace of its own, entered with `nsenter` + `chroot`. Writes
//! (dpkg, adduser, the daemon's spool) land in the tmpfs and vanish with
//! the namespace; the host's packages, users and files are never touched.
//!
//! The network namespace is the host's: a daemon inside reaches a provider
//! started by the test on 127.0.0.1, and must listen on a free port.
//! Root only.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use tempfile::TempDir;

/// The overlay root, alive while the holder process lives.
pub struct Chroot {
    dir: TempDir,
    holder: Child,
}

impl Chroot {
    /// Mounts the overlay in a new mount namespace held by a `sleep`
    /// process, which also ends (with the namespace and its mounts) when
    /// this test process is gone.
    pub fn new() -> Chroot {
        let dir = tempfile::Builder::new()
            .prefix("postrelay-chroot")
            .tempdir()
            .unwrap();
        let script = r#"set -e
R="$1"; TEST_PID="$2"
mount -t tmpfs -o mode=0755 tmpfs "$R"
mkdir "$R/upper" "$R/work" "$R/merged"
mount -t overlay overlay -o "lowerdir=/,upperdir=$R/upper,workdir=$R/work" "$R/merged"
M="$R/merged"
mount --rbind /proc "$M/proc"
mount --rbind /sys "$M/sys"
mount --rbind /dev "$M/dev"
mount -t tmpfs -o mode=1777 tmpfs "$M/tmp"
mount -t tmpfs -o mode=0755 tmpfs "$M/run"
# The account files copied up now: users the host adds or removes while a
# test runs must not show through the lower layer.
for f in passwd group shadow gshadow subuid subgid; do
  if [ -e "$M/etc/$f" ]; then cp -a "$M/etc/$f" "$M/etc/$f.copy" && mv "$M/etc/$f.copy" "$M/etc/$f"; fi
done
echo ready
while kill -0 "$TEST_PID" 2>/dev/null; do sleep 1; done
"#;
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut holder = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(&root)
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the overlay root could not be set up");
        Chroot { dir, holder }
    }

    /// The root directory as seen inside the namespace.
    fn merged(&self) -> PathBuf {
        self.dir.path().join("root/merged")
    }

    /// The overlay's upper layer: everything the chroot changed, as the
    /// host can reach it.
    pub fn upper(&self) -> PathBuf {
        let inner = self.dir.path().join("root/upper");
        PathBuf::from(format!("/proc/{}/root", self.holder.id()))
            .join(inner.strip_prefix("/").unwrap())
    }

    /// `path` (absolute, inside the chroot) as the host can reach it,
    /// through the holder's view of the file system.
    pub fn host_path(&self, path: &str) -> PathBuf {
        let inner = self.merged().join(path.trim_start_matches('/'));
        PathBuf::from(format!("/proc/{}/root", self.holder.id()))
            .join(inner.strip_prefix("/").unwrap())
    }

    /// A command that runs `program ARGS` inside the chroot.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.holder.id().to_string())
            .args(["-m", "--", "chroot"])
            .arg(self.merged())
            .arg(program)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env_remove("POSTRELAY_CONFIG")
            .stdin(Stdio::null());
        c
    }

    /// Runs a shell script inside the chroot; panics with its output when
    /// it fails.
    pub fn sh(&self, script: &str) -> String {
        let out = self.sh_output(script);
        assert!(
            out.status.success(),
            "in the chroot: {script}\n{}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a shell script inside the chroot.
    pub fn sh_output(&self, script: &str) -> Output {
        self.command("/bin/sh")
            .args(["-ec", script])
            .output()
            .unwrap()
    }

    /// Copies a host file into the chroot.
    pub fn put(&self, from: &Path, to: &str) {
        std::fs::copy(from, self.host_path(to))
            .unwrap_or_else(|e| panic!("copy {} to {to}: {e}", from.display()));
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        // Processes started inside (a daemon) keep the namespace alive;
        // the tests stop them first. The holder's end unmounts the rest.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Exit status and both outputs, for a failure message.
pub fn describe(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
