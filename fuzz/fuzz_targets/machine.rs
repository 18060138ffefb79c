//! The connection machine with arbitrary client bytes, read sizes and upstream behaviours. The checks are in
//! `fuzz/checks/machine.rs` (shared with `tests/machine.rs`, which runs them over corpus inputs in `cargo test`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/machine.rs"]
mod checks;
#[path = "../../tests/pump/mod.rs"]
mod pump;

fuzz_target!(|data: &[u8]| checks::check(data));
