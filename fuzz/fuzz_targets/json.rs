//! `guard::json::JsonValidator` (validate-only scan, grammar check on refusal) on arbitrary bytes.
//!
//! Checked, beyond "never panics" (and, under ASan, no out-of-bounds access in the AVX2 kernel or simd-json):
//! - the validator's verdict equals the reference grammar check `grammar_check` (RFC 8259, the verdict the
//!   module promises): at the product's default depth 1024 and at depth 5 (to reach `TooDeep` often), with a
//!   fresh validator and with one validator reused across inputs as a worker reuses its depth stack;
//! - the fast scan alone accepts exactly what the grammar accepts, with the best kernel of this CPU and with
//!   the scalar twin (the kernels differ in how they classify bytes only);
//! - the previous path (simd-json's tape on a copy, `validate_with_tape`) gives the same verdicts;
//! - the reference itself agrees with serde_json (`arbitrary_precision`, so any grammatical number is
//!   accepted) on accept / refuse, for documents nested less than serde_json's fixed limit (127 levels).
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use portcullis::guard::json::{grammar_check, JsonError, JsonValidator};

thread_local! {
    static REUSED: RefCell<(JsonValidator, JsonValidator)> =
        RefCell::new((JsonValidator::new(1024), JsonValidator::new(5)));
}

fuzz_target!(|data: &[u8]| {
    let mut stack = Vec::new();
    let want_1024 = grammar_check(data, 1024, &mut stack);
    let want_5 = grammar_check(data, 5, &mut stack);

    assert_eq!(
        JsonValidator::new(1024).validate(data),
        want_1024,
        "fresh validator, depth 1024"
    );
    assert_eq!(JsonValidator::new(5).validate(data), want_5, "fresh validator, depth 5");
    REUSED.with(|r| {
        let (deep, shallow) = &mut *r.borrow_mut();
        assert_eq!(deep.validate(data), want_1024, "reused validator, depth 1024");
        assert_eq!(shallow.validate(data), want_5, "reused validator, depth 5");
        assert_eq!(deep.validate_with_tape(data), want_1024, "previous path, depth 1024");
        assert_eq!(shallow.validate_with_tape(data), want_5, "previous path, depth 5");
        for (v, want) in [(deep, want_1024), (shallow, want_5)] {
            assert_eq!(v.fast_accepts(data), want.is_ok(), "fast scan, depth {}", v.max_depth());
            assert_eq!(v.scalar_accepts(data), want.is_ok(), "scalar twin, depth {}", v.max_depth());
        }
    });

    // The reference against serde_json, below serde_json's nesting limit.
    match grammar_check(data, 127, &mut stack) {
        Err(JsonError::TooDeep) => {}
        g => {
            let serde = serde_json::from_slice::<serde_json::Value>(data);
            assert_eq!(
                g.is_ok(),
                serde.is_ok(),
                "grammar_check {g:?}, serde_json {:?}",
                serde.err().map(|e| e.to_string())
            );
        }
    }
});
