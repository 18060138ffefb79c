//! `http::request::parse_head` on arbitrary bytes, with the default limits and with small ones. The checks
//! are in `fuzz/checks/request_head.rs` (shared with `tests/fuzz_regressions.rs`, which replays
//! `fuzz/regressions/request_head/` in `cargo test`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/request_head.rs"]
mod checks;
#[path = "../../tests/models/framing.rs"]
mod framing;

fuzz_target!(|data: &[u8]| checks::check(data));
