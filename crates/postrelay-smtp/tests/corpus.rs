//! Runs every file of the fuzz seed corpus (`fuzz/corpus/<target>/`) through
//! the same `fuzz_entry` functions the cargo-fuzz targets call, so that the
//! invariants and past crashers are checked on stable Rust in every test run.

use std::fs;
use std::path::PathBuf;

use postrelay_smtp::fuzz_entry;

fn run_corpus(target: &str, entry: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "{target}: only {} seed files",
        files.len()
    );
    for file in files {
        let bytes = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let outcome = std::panic::catch_unwind(|| entry(&bytes));
        assert!(outcome.is_ok(), "{target}: {} failed", file.display());
    }
}

#[test]
fn command_corpus() {
    run_corpus("command", fuzz_entry::command);
}

#[test]
fn reply_corpus() {
    run_corpus("reply", fuzz_entry::reply);
}

#[test]
fn data_corpus() {
    run_corpus("data", fuzz_entry::data);
}

#[test]
fn address_corpus() {
    run_corpus("address", fuzz_entry::address);
}
