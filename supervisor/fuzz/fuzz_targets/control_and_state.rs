//! See `supervisor::fuzz_api::control_and_state` for the input format and the invariants checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| supervisor::fuzz_api::control_and_state(data));
