//! `proxy_protocol::parse` on arbitrary bytes. The checks are in `fuzz/checks/proxy_protocol.rs` (shared
//! with `tests/fuzz_regressions.rs`, which replays `fuzz/regressions/proxy_protocol/` in `cargo test`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/proxy_protocol.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::check(data));
