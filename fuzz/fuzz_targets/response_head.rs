//! `http::response::parse_head`, `BodyFramer` and `write::response_head` on arbitrary upstream bytes,
//! `[flags, response bytes...]`. The checks are in `fuzz/checks/response_head.rs` (shared with
//! `tests/fuzz_regressions.rs`, which replays `fuzz/regressions/response_head/` in `cargo test`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/response_head.rs"]
mod checks;
#[path = "../../tests/models/framing.rs"]
mod framing;

fuzz_target!(|data: &[u8]| checks::check(data));
