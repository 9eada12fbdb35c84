//! Fuzz target `transport`: see `postrelay::fuzz_entry::transport` for the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    postrelay::fuzz_entry::transport(bytes);
});
