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
