//! Real peers (swaks, Python, smtp-source, Postfix…) are required under CI
//! and skipped with a message elsewhere.

/// True when `program` is on PATH. When it is not: under `CI=true` this
/// panics (a missing peer is a failure there), otherwise it prints why the
/// test is skipped and returns false.
pub fn require(program: &str) -> bool {
    // Postfix's programs live in /usr/sbin, which a non-login PATH may lack.
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin".into(), "/sbin".into()]);
    let found = dirs.iter().any(|d| d.join(program).is_file());
    if found {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{program} is missing under CI: scripts/install-test-deps must install it");
    }
    eprintln!("SKIP: {program} is not installed (run scripts/install-test-deps as root)");
    false
}

pub use super::test_root::require_root;
