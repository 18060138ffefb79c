//! Property test: the product's validator (the validate-only scan, grammar check on refusal) agrees with the
//! plain RFC 8259 grammar checker on generated documents: valid ones, mutated ones, and JSON-ish noise. So do
//! the fast scan alone (accepts exactly what the grammar accepts) with the best kernel of this CPU and with the
//! scalar twin, and the previous path (simd-json's tape). Where simd-json accepts, the document is valid.

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
    let show = String::from_utf8_lossy(doc);
    let want = grammar_check(doc, DEPTH, &mut st);
    prop_assert_eq!(v.validate(doc), want, "validate {:?}", show);
    prop_assert_eq!(v.fast_accepts(doc), want.is_ok(), "fast scan {:?}", show);
    prop_assert_eq!(v.scalar_accepts(doc), want.is_ok(), "scalar twin {:?}", show);
    prop_assert_eq!(v.validate_with_tape(doc), want, "previous path {:?}", show);
    // simd-json alone (deep enough never to refuse on depth): what it accepts is valid.
    let mut copy = doc.to_vec();
    if simd_json::to_tape(&mut copy).is_ok() {
        prop_assert_eq!(
            grammar_check(doc, usize::MAX, &mut st),
            Ok(()),
            "simd-json accepts {:?}",
            show
        );
    }
    Ok(())
}

/// Documents a few blocks long: the generated ones, padded so that they straddle 64-byte boundaries.
fn long_doc() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(json_value(), 1..8), 0usize..64).prop_map(|(vals, pad)| {
        let mut d = vec![b' '; pad];
        d.extend_from_slice(format!("[{}]", vals.join(",")).as_bytes());
        d
    })
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
    fn agrees_on_long_documents(doc in long_doc()) {
        agree(&doc)?;
    }

    #[test]
    fn agrees_on_mutated_long_documents(doc in long_doc(), ops in prop::collection::vec((any::<usize>(), any::<u8>(), prop::sample::select(b"{}[],:\"\\ 0-1eE.tfnu\x00\x1f\x80\xff".to_vec())), 1..4)) {
        agree(&mutate(String::from_utf8(doc).unwrap(), ops))?;
    }

    #[test]
    fn agrees_on_json_ish_noise(doc in prop::collection::vec(prop::sample::select(b"{}[],:\"\\ 0123456789-+.eEtrufalsn\t\n".to_vec()), 0..40)) {
        agree(&doc)?;
    }
}
