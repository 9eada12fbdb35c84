//! Fuzz target `address`: see `postrelay_smtp::fuzz_entry::address` for the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| postrelay_smtp::fuzz_entry::address(bytes));
