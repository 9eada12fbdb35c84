//! The one answer to "may this test do root-only things?", for the unit
//! tests (`crate::test_root`) and the integration tests
//! (`tests/support/mod.rs` includes this file), so that both skip and fail
//! alike. Test code only: nothing of the daemon uses it.

/// Whether the test may do root-only things (`what` says which): under
/// `CI=true` a missing privilege is a failure, elsewhere the test is
/// skipped with a message.
pub fn require_root(what: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} needs root, and CI must run it");
    }
    eprintln!("SKIP: {what} needs root");
    false
}

/// Whether the test runs as root (for tests that only make sense without
/// root, or that must know whose files they make).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs the unit test named `test` (its path in the test binary, e.g.
/// `config::tests::routing::unreadable_table_file`) as an unprivileged
/// user, for tests of what a non-root process is refused: root (as CI
/// runs) would be let through. Returns true when the caller is already
/// unprivileged and should run the test body itself. As root it re-runs
/// this test binary with only that test under `setpriv` as `nobody`,
/// requires that exactly one test passed there, and returns false. Without
/// `setpriv` the test fails under `CI=true` and is skipped elsewhere.
/// For unit tests only (an integration test binary holds other tests).
pub fn run_unprivileged(test: &str) -> bool {
    if !is_root() {
        return true;
    }
    let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: setpriv is missing under CI (util-linux)");
        }
        eprintln!("SKIP: {test}: setpriv is missing, and root would not be refused");
        return false;
    };
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test} as nobody ({}):\n{stdout}\n{stderr}",
        out.status
    );
    false
}
