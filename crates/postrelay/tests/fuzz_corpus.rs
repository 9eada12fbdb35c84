//! The fuzz seed corpus of the file parsers (`fuzz/corpus/<target>/`),
//! replayed on stable Rust in every test run through the same
//! `postrelay::fuzz_entry` functions the cargo-fuzz targets call, so that
//! their invariants and past crashers are checked without a fuzzer.
//!
//! A seed named `ok_*` must be accepted by its parser and every other seed
//! refused, which pins each seed's outcome (a parser that starts refusing
//! good files, or accepting bad ones, fails here). Then a short smoke run:
//! seeds with random bytes changed, inserted and removed go through the
//! same entries, which must not panic.

use std::fs;
use std::path::PathBuf;

use postrelay::fuzz_entry;
use proptest::prelude::*;

type Entry = fn(&[u8]) -> bool;

const TARGETS: [(&str, Entry); 6] = [
    ("envelope", fuzz_entry::envelope),
    ("config", fuzz_entry::config),
    ("transport", fuzz_entry::transport),
    ("aliases", fuzz_entry::aliases),
    ("generic", fuzz_entry::generic),
    ("sasl_passwd", fuzz_entry::sasl_passwd),
];

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            (name, bytes)
        })
        .collect()
}

fn replay(target: &str, entry: Entry) {
    let seeds = seeds(target);
    assert!(
        seeds.len() >= 10,
        "{target}: only {} seed files",
        seeds.len()
    );
    let mut wrong = Vec::new();
    for (name, bytes) in &seeds {
        let outcome = std::panic::catch_unwind(|| entry(bytes));
        let accepted = outcome.unwrap_or_else(|_| panic!("{target}/{name} panicked"));
        if accepted != name.starts_with("ok_") {
            wrong.push(format!("{name} (accepted: {accepted})"));
        }
    }
    assert!(wrong.is_empty(), "{target}: wrong outcome for {wrong:?}");
    assert!(
        seeds.iter().any(|(n, _)| n.starts_with("ok_")),
        "{target}: no seed is accepted, so the invariants on parsed files never run"
    );
}

#[test]
fn envelope_corpus() {
    replay("envelope", fuzz_entry::envelope);
}

#[test]
fn config_corpus() {
    replay("config", fuzz_entry::config);
}

#[test]
fn transport_corpus() {
    replay("transport", fuzz_entry::transport);
}

#[test]
fn aliases_corpus() {
    replay("aliases", fuzz_entry::aliases);
}

#[test]
fn generic_corpus() {
    replay("generic", fuzz_entry::generic);
}

#[test]
fn sasl_passwd_corpus() {
    replay("sasl_passwd", fuzz_entry::sasl_passwd);
}

/// One change to a seed: overwrite, insert or remove at a position
/// (taken modulo the length).
#[derive(Clone, Debug)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    let len = bytes.len();
    match *edit {
        Edit::Set(at, b) if len > 0 => bytes[at % len] = b,
        Edit::Insert(at, b) => bytes.insert(at % (len + 1), b),
        Edit::Remove(at) if len > 0 => {
            bytes.remove(at % len);
        }
        _ => {}
    }
}

/// Bytes that matter to these formats, so that edits make near misses
/// rather than only noise.
fn interesting() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        prop::sample::select(b":@[]{}\",=#.\\ \t\r\n0-9a\xc3\xff".to_vec()),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), interesting()).prop_map(|(a, b)| Edit::Set(a, b)),
        (any::<usize>(), interesting()).prop_map(|(a, b)| Edit::Insert(a, b)),
        any::<usize>().prop_map(Edit::Remove),
    ]
}

proptest! {
    /// The smoke run: 256 cases (`PROPTEST_CASES` for a longer run), each
    /// one seed of a target chosen at random, edited; no entry may panic.
    #[test]
    fn edited_seeds_do_not_panic(
        target in 0..TARGETS.len(),
        seed in any::<usize>(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        let (name, entry) = TARGETS[target];
        let seeds = seeds(name);
        let mut bytes = seeds[seed % seeds.len()].1.clone();
        for e in &edits {
            apply(&mut bytes, e);
        }
        entry(&bytes);
    }
}
