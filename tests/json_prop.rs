//! Property test: the product's validator (simd-json fast path + grammar fallback) agrees with the plain
//! RFC 8259 grammar checker on generated documents: valid ones, mutated ones, and JSON-ish noise.

use portcullis::guard::json::{grammar_check, JsonValidator};
use proptest::prelude::*;

fn json_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9 ]{0,6}",
        Just("\\n".to_string()),
        Just("\\\"".to_string()),
        Just("\\\\".to_string()),
        Just("\\u00e9".to_string()),
        Just("\\ud83d\\ude00".to_string()),
        Just("\\ud800".to_string()),
        Just("\\udc00".to_string()),
        Just("é€😀".to_string()),
        Just("\\x".to_string()),
    ];
    prop::collection::vec(piece, 0..4).prop_map(|p| format!("\"{}\"", p.concat()))
}

fn json_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        "-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,4})?",
    ]
}

fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        json_number(),
        json_string(),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(" , "))),
            prop::collection::vec((json_string(), inner), 0..6).prop_map(|v| {
                let kv: Vec<String> = v.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{\n{}\t}}", kv.join(","))
            }),
        ]
    })
}

fn mutate(doc: String, ops: Vec<(usize, u8, u8)>) -> Vec<u8> {
    let mut b = doc.into_bytes();
    for (pos, op, byte) in ops {
        let i = if b.is_empty() { 0 } else { pos % (b.len() + 1) };
        match op % 3 {
            0 => b.insert(i, byte),
            1 if i < b.len() => {
                b.remove(i);
            }
            _ if i < b.len() => b[i] = byte,
            _ => {}
        }
    }
    b
}

const DEPTH: usize = 5;

fn agree(doc: &[u8]) -> Result<(), TestCaseError> {
    let mut v = JsonValidator::new(DEPTH);
    let mut st = Vec::new();
    prop_assert_eq!(
        v.validate(doc),
        grammar_check(doc, DEPTH, &mut st),
        "{:?}",
        String::from_utf8_lossy(doc)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn agrees_on_generated_documents(doc in json_value(), ws in "[ \t\r\n]{0,2}") {
        agree(format!("{ws}{doc}{ws}").as_bytes())?;
    }

    #[test]
    fn agrees_on_mutated_documents(doc in json_value(), ops in prop::collection::vec((any::<usize>(), any::<u8>(), prop::sample::select(b"{}[],:\"\\ 0-1eE.tfn\x00\x80\xff".to_vec())), 1..4)) {
        agree(&mutate(doc, ops))?;
    }

    #[test]
    fn agrees_on_json_ish_noise(doc in prop::collection::vec(prop::sample::select(b"{}[],:\"\\ 0123456789-+.eEtrufalsn\t\n".to_vec()), 0..40)) {
        agree(&doc)?;
    }
}
