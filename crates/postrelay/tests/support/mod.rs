//! Shared helpers for the integration tests. Each test binary uses a
//! different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod chroot;
pub mod client;
pub mod daemon;
pub mod deadport;
pub mod dialog;
pub mod dns;
pub mod doctor;
pub mod fakeserver;
pub mod helper;
pub mod http;
pub mod install;
pub mod intake;
pub mod netns;
pub mod oauth;
pub mod peers;
pub mod pflogsumm;
pub mod provider;
pub mod redis;
pub mod secrets;
pub mod smtp;
pub mod spool;
pub mod user;

/// The unit tests' root check, shared (see the file).
#[path = "../../src/test_root.rs"]
pub mod test_root;

/// Copies a program that a test will run. The copy is made by `cp`, not
/// by this process: a child forked by another test thread while this
/// process held the new file open for writing would keep it open until
/// its own exec, and running the copy then fails with "Text file busy".
pub fn copy_executable(from: &std::path::Path, to: &std::path::Path) {
    let status = std::process::Command::new("cp")
        .arg("--")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp {} {}", from.display(), to.display());
}

/// Writes a script that a test will run, through [`copy_executable`] for
/// the same reason, and makes it executable.
pub fn write_executable(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let draft = path.with_extension("draft");
    std::fs::write(&draft, text).unwrap();
    copy_executable(&draft, path);
    std::fs::remove_file(&draft).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
