//! See `supervisor::fuzz_api::tun_read` for the input format and the invariants checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| supervisor::fuzz_api::tun_read(data));
