//! Fuzz target `sasl_passwd`: see `postrelay::fuzz_entry::sasl_passwd` for the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    postrelay::fuzz_entry::sasl_passwd(bytes);
});
