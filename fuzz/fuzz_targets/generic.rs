//! Fuzz target `generic`: see `postrelay::fuzz_entry::generic` for the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    postrelay::fuzz_entry::generic(bytes);
});
