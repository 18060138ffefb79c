//! JSON body validation: one well-formed JSON text (RFC 8259) or a refusal, never a guess.
//!
//! The product's path is a validate-only scan of the borrowed body (no copy, no tape, no number conversion):
//!
//! 1. UTF-8 validity of the whole body (`simdutf8`);
//! 2. one pass over 64-byte blocks (`scan`): a classification kernel marks quotes, backslashes, whitespace,
//!    commas, colons, brackets and control characters (AVX2 when the CPU has it, chosen at run time; a scalar
//!    twin otherwise); bit arithmetic finds the inside of strings and checks their escapes; the brackets
//!    alone are read one by one with a depth stack; what may follow each token is checked for a whole block
//!    at once with bit masks; each number or literal has its syntax checked in place.
//!
//! Any refusal is re-examined by the plain scalar grammar check in this file (`grammar_check`), which has the
//! last word on the verdict and on its kind (`Malformed` or `TooDeep`): invalid bodies pay for both, bounded
//! by `--max-body`.
//!
//! Which path serves which body: on CPUs with AVX2 and PCLMULQDQ, the scan serves every body (it costs less
//! than simd-json's tape on the bodies measured, e.g. github_events.json: 286 k instructions and 1 110
//! mispredicted branches against 485 k and 1 850; `docs/performance.md`). Elsewhere the scan's
//! scalar kernel is about ten times slower than simd-json (which has SSE4.2 and NEON kernels of its own), so
//! those CPUs keep the previous path, `JsonValidator::validate_with_tape`: simd-json's tape parser on a copy
//! of the body, the grammar check on its refusals. Both paths give the same verdicts (differential tests).

use simd_json::{Buffers, Tape};

#[allow(unsafe_code)]
mod kernel;
mod scan;

pub use scan::{Kernel, Masks, Scalar};

/// Why a body is not accepted as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    Malformed,
    /// Objects and arrays nest deeper than the limit.
    TooDeep,
}

/// The per-worker validator: a depth stack and a token buffer reused across requests (no allocation once
/// warm).
pub struct JsonValidator {
    stack: Vec<u8>,
    max_depth: usize,
    tape: Option<TapeScratch>,
}

/// simd-json's scratch space, made only when `validate_with_tape` is used.
struct TapeScratch {
    scratch: Vec<u8>,
    buffers: Buffers,
    tape: Tape<'static>,
}

impl JsonValidator {
    pub fn new(max_depth: usize) -> JsonValidator {
        JsonValidator {
            stack: Vec::new(),
            max_depth,
            tape: None,
        }
    }

    /// Validates `body` (not modified; copied only on CPUs without the scan's kernel, see the module's notes).
    pub fn validate(&mut self, body: &[u8]) -> Result<(), JsonError> {
        if !kernel::simd_available() {
            return self.validate_with_tape(body);
        }
        if self.fast_accepts(body) {
            Ok(())
        } else {
            grammar_check(body, self.max_depth, &mut self.stack)
        }
    }

    /// The depth limit.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// The fast scan with the best kernel this CPU runs: `true` only for a valid JSON text (UTF-8, grammar,
    /// depth within the limit). `false` says nothing about why; `grammar_check` does.
    pub fn fast_accepts(&mut self, body: &[u8]) -> bool {
        simdutf8::basic::from_utf8(body).is_ok() && kernel::scan_best(body, self.max_depth, &mut self.stack)
    }

    /// The fast scan with the scalar classification kernel (the twin every CPU runs), for differential tests.
    pub fn scalar_accepts(&mut self, body: &[u8]) -> bool {
        simdutf8::basic::from_utf8(body).is_ok() && scan::scan(&Scalar, body, self.max_depth, &mut self.stack)
    }

    /// The previous path, kept for comparison: simd-json's tape parser on a copy of the body (it rewrites its
    /// input), the grammar check when simd-json refuses (it refuses some valid documents: integers beyond 64
    /// bits, `1e400`). Same verdicts as `validate`.
    pub fn validate_with_tape(&mut self, body: &[u8]) -> Result<(), JsonError> {
        if body.is_empty() {
            return Err(JsonError::Malformed);
        }
        let max_depth = self.max_depth;
        let t = self.tape.get_or_insert_with(|| TapeScratch {
            scratch: Vec::new(),
            buffers: Buffers::with_max_depth(4096, max_depth),
            tape: Tape(Vec::new()),
        });
        t.scratch.clear();
        t.scratch.extend_from_slice(body);
        t.scratch.resize(body.len() + simd_json::INPUT_PADDING, 0);
        let mut tape = std::mem::replace(&mut t.tape, Tape(Vec::new())).reset();
        let fast = simd_json::fill_tape_padded(&mut t.scratch, body.len(), &mut t.buffers, &mut tape);
        let verdict = match fast {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.error(), simd_json::ErrorType::DepthLimitExceeded) => Err(JsonError::TooDeep),
            Err(_) => grammar_check(body, self.max_depth, &mut self.stack),
        };
        t.tape = tape.reset();
        verdict
    }
}

const OBJ: u8 = 1;
const ARR: u8 = 2;

/// The plain RFC 8259 grammar, scalar: one JSON text surrounded by optional whitespace, valid UTF-8, no lone
/// surrogate escapes, containers nested at most `max_depth` deep. `stack` is scratch space.
pub fn grammar_check(s: &[u8], max_depth: usize, stack: &mut Vec<u8>) -> Result<(), JsonError> {
    use JsonError::Malformed;
    if std::str::from_utf8(s).is_err() {
        return Err(Malformed);
    }
    stack.clear();
    let mut i = 0;
    loop {
        // Expect a value.
        i = ws(s, i);
        match s.get(i) {
            Some(b'{') | Some(b'[') => {
                let obj = s[i] == b'{';
                stack.push(if obj { OBJ } else { ARR });
                if stack.len() > max_depth {
                    return Err(JsonError::TooDeep);
                }
                i = ws(s, i + 1);
                let close = if obj { b'}' } else { b']' };
                if s.get(i) == Some(&close) {
                    stack.pop();
                    i += 1;
                } else if obj {
                    i = key(s, i)?;
                    continue;
                } else {
                    continue;
                }
            }
            Some(b'"') => i = string(s, i)?,
            Some(b't') => i = literal(s, i, b"true")?,
            Some(b'f') => i = literal(s, i, b"false")?,
            Some(b'n') => i = literal(s, i, b"null")?,
            Some(b'-' | b'0'..=b'9') => i = number(s, i)?,
            _ => return Err(Malformed),
        }
        // After a value: close containers, or find the next element.
        loop {
            i = ws(s, i);
            match (stack.last(), s.get(i)) {
                (None, None) => return Ok(()),
                (None, Some(_)) => return Err(Malformed),
                (Some(&ARR), Some(b']')) | (Some(&OBJ), Some(b'}')) => {
                    stack.pop();
                    i += 1;
                }
                (Some(&ARR), Some(b',')) => {
                    i += 1;
                    break;
                }
                (Some(&OBJ), Some(b',')) => {
                    i = key(s, ws(s, i + 1))?;
                    break;
                }
                _ => return Err(Malformed),
            }
        }
    }
}

fn ws(s: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = s.get(i) {
        i += 1;
    }
    i
}

/// An object key and its colon; returns the index after the colon.
fn key(s: &[u8], i: usize) -> Result<usize, JsonError> {
    if s.get(i) != Some(&b'"') {
        return Err(JsonError::Malformed);
    }
    let i = ws(s, string(s, i)?);
    if s.get(i) != Some(&b':') {
        return Err(JsonError::Malformed);
    }
    Ok(i + 1)
}

fn literal(s: &[u8], i: usize, lit: &[u8]) -> Result<usize, JsonError> {
    if s.len() >= i + lit.len() && &s[i..i + lit.len()] == lit {
        Ok(i + lit.len())
    } else {
        Err(JsonError::Malformed)
    }
}

fn digits(s: &[u8], mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = s.get(i) {
        i += 1;
    }
    i
}

fn number(s: &[u8], mut i: usize) -> Result<usize, JsonError> {
    use JsonError::Malformed;
    if s[i] == b'-' {
        i += 1;
    }
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(s, i),
        _ => return Err(Malformed),
    }
    if s.get(i) == Some(&b'.') {
        let j = digits(s, i + 1);
        if j == i + 1 {
            return Err(Malformed);
        }
        i = j;
    }
    if let Some(b'e' | b'E') = s.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = s.get(i) {
            i += 1;
        }
        let j = digits(s, i);
        if j == i {
            return Err(Malformed);
        }
        i = j;
    }
    Ok(i)
}

fn hex4(s: &[u8], i: usize) -> Result<u16, JsonError> {
    let h = s.get(i..i + 4).ok_or(JsonError::Malformed)?;
    let mut v = 0u16;
    for &c in h {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(JsonError::Malformed),
        };
        v = (v << 4) | d as u16;
    }
    Ok(v)
}

/// A string starting at the quote `s[i]`; returns the index after the closing quote.
fn string(s: &[u8], mut i: usize) -> Result<usize, JsonError> {
    use JsonError::Malformed;
    i += 1;
    loop {
        match s.get(i) {
            None => return Err(Malformed),
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => match s.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u') => {
                    let cu = hex4(s, i + 2)?;
                    i += 6;
                    if (0xD800..0xDC00).contains(&cu) {
                        // A high surrogate must be followed by an escaped low surrogate.
                        if s.get(i) != Some(&b'\\') || s.get(i + 1) != Some(&b'u') {
                            return Err(Malformed);
                        }
                        let lo = hex4(s, i + 2)?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return Err(Malformed);
                        }
                        i += 6;
                    } else if (0xDC00..0xE000).contains(&cu) {
                        return Err(Malformed);
                    }
                }
                _ => return Err(Malformed),
            },
            Some(&c) if c < 0x20 => return Err(Malformed),
            Some(_) => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scan::ODD_BITS;
    use super::*;

    /// Every path's verdict on a document agrees with the grammar: the product's, the previous (simd-json
    /// tape), and the fast scan with the best kernel and with the scalar twin (accept iff the grammar does).
    fn verdicts(doc: &[u8], depth: usize) -> Result<(), JsonError> {
        let mut st = Vec::new();
        let want = grammar_check(doc, depth, &mut st);
        let mut v = JsonValidator::new(depth);
        let show = String::from_utf8_lossy(doc);
        assert_eq!(v.validate(doc), want, "validate {show:?}");
        assert_eq!(v.validate_with_tape(doc), want, "tape {show:?}");
        assert_eq!(v.fast_accepts(doc), want.is_ok(), "fast scan {show:?}");
        assert_eq!(v.scalar_accepts(doc), want.is_ok(), "scalar twin {show:?}");
        want
    }

    #[test]
    fn grammar_and_fast_path_agree_on_samples() {
        use JsonError::{Malformed, TooDeep};
        let cases: &[(&[u8], Result<(), JsonError>)] = &[
            (b"{}", Ok(())),
            (
                br#" [1, -0.5e+3, "a\u00e9\ud83d\ude00", true, false, null, {"k": []}] "#,
                Ok(()),
            ),
            (b"123456789012345678901234567890", Ok(())),
            (b"1e400", Ok(())),
            (br#""\ud800""#, Err(Malformed)),
            (br#""\udc00\ud800""#, Err(Malformed)),
            (b"", Err(Malformed)),
            ("\u{feff}{}".as_bytes(), Err(Malformed)),
            (b"{} {}", Err(Malformed)),
            (b"[1,]", Err(Malformed)),
            (br#"{"a" 1}"#, Err(Malformed)),
            (b"01", Err(Malformed)),
            (b"1.", Err(Malformed)),
            (b"\"\t\"", Err(Malformed)),
            (b"[[[[1]]]]", Ok(())),
            (b"[[[[[1]]]]]", Err(TooDeep)),
            (b"[[[[[1 x", Err(TooDeep)),
            (b"[1 x [[[[[1", Err(Malformed)),
            (br#""\\""#, Ok(())),
            (br#""\\\"""#, Ok(())),
            (br#""\\\""#, Err(Malformed)),
            (br#""\a""#, Err(Malformed)),
            (br#""\u12""#, Err(Malformed)),
            (br#""\u12G4""#, Err(Malformed)),
            (br#""\uD83D\u0041""#, Err(Malformed)),
            (br#""\uD83D\\uDE00""#, Err(Malformed)),
            (br#""\uD83D\uDE00\uDE00""#, Err(Malformed)),
            (br#"["a"\]"#, Err(Malformed)),
            (br#"[1\"]"#, Err(Malformed)),
            (br#"\"{}""#, Err(Malformed)),
            (b"[truex]", Err(Malformed)),
            (b"[true1]", Err(Malformed)),
            (b"[-]", Err(Malformed)),
            (b"[1e]", Err(Malformed)),
            (b"[1\x00]", Err(Malformed)),
            (b"[\x0c]", Err(Malformed)),
            (b"[1\x1a2]", Err(Malformed)),
            (b"[1,\x1a2]", Err(Malformed)),
            (br#"{"a":1"b":2}"#, Err(Malformed)),
            (br#"["a":1]"#, Err(Malformed)),
            (br#"{"a":1,2}"#, Err(Malformed)),
            (br#"{"a":"b":1}"#, Err(Malformed)),
            (br#"["a""b"]"#, Err(Malformed)),
            (br#""abc"#, Err(Malformed)),
            (br#""abc\"#, Err(Malformed)),
            (b"nul", Err(Malformed)),
            (b"-0", Ok(())),
            (b"0.0e-0", Ok(())),
            (b"[1]]", Err(Malformed)),
            (b"[1}", Err(Malformed)),
            (br#"{"a":1]"#, Err(Malformed)),
            (b"\"\xff\"", Err(Malformed)),
        ];
        for (doc, want) in cases {
            assert_eq!(verdicts(doc, 4), *want, "{:?}", String::from_utf8_lossy(doc));
        }
    }

    /// Each tricky spot of a document moved across a 64-byte block boundary (leading whitespace shifts it):
    /// backslash runs, escapes, surrogate pairs, strings, numbers and literals that straddle two blocks;
    /// brackets, keys, separators and the whitespace between them (each grammar rule and its breaches) on
    /// either side of a boundary.
    #[test]
    fn block_boundaries() {
        let docs: &[&[u8]] = &[
            br#"["\\", "\"", "\\\"", "\\\\"]"#,
            br#"{"k":"\u00e9\ud83d\ude00x","l":[true,false,null,-12.5e-7]}"#,
            br#"["\ud83d\ude00"]"#,
            br#"["\ud83d"]"#,
            br#"["\ud83d\\ude00"]"#,
            br#"["\q"]"#,
            br#"[12345678901234567890123456789012345678901234567890.25e+300]"#,
            br#"[1234567890123456789x]"#,
            br#"["abc\"def\\" , 1]"#,
            br#"["abc\"def\\\" , 1]"#,
            "[\"é€😀\", \"\u{7f}\"]".as_bytes(),
            b"[\"a\x01\"]",
            b"[\"\xe2\x82\"]",
            br#"{"a" : {"b" : [ ] } , "c" : { } }"#,
            br#"{"a":[1,{"b":"c"},[]],"d":{"e":{}},"f":"g"}"#,
            br#"[{"a":1},{"b":[2,3]},{},[],"x",-0.5,true]"#,
            br#"{"a":1,}"#,
            br#"[1,]"#,
            br#"{"a":}"#,
            br#"{"a" "b"}"#,
            br#"{"a":1 "b":2}"#,
            br#"{"a","b"}"#,
            br#"{"a":"b":"c"}"#,
            br#"["a":1]"#,
            br#"{[]:1}"#,
            br#"{1:2}"#,
            br#"[1]]"#,
            br#"[[1]"#,
            br#"{"a":[}]"#,
            br#"[1],[2]"#,
            br#"1 , 2"#,
            br#""a" : 1"#,
            b"[1,\n2]",
            b"[\"a\t\"]",
            b"{\"\\u00e9\\n\":\"\\t\\u0041\"}",
        ];
        for doc in docs {
            // Also with whitespace runs after each structural character, so that the runs cross blocks.
            let mut spread = Vec::new();
            for &c in *doc {
                spread.push(c);
                if b",:[{".contains(&c) {
                    spread.extend_from_slice(b" \n\t\r   ");
                }
            }
            for doc in [&doc[..], &spread[..]] {
                for shift in 0..70 {
                    let mut d = vec![b' '; shift];
                    d.extend_from_slice(doc);
                    let _ = verdicts(&d, 8);
                    d.truncate(d.len() - 1);
                    let _ = verdicts(&d, 8);
                }
            }
        }
    }

    /// The escape scanner's bit arithmetic against a byte-by-byte reading, with the carry between blocks.
    #[test]
    fn escape_bits_match_a_sequential_reading() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (b0, b1) = (x, x.rotate_left(29) & x.rotate_left(7));
            let mut next_escaped = 0u64;
            let mut seq_escaped = false;
            for backslash in [b0, b1, b0 | b1, b0 & b1, !0, 0] {
                let potential = backslash & !next_escaped;
                let codes = (((potential << 1) | ODD_BITS).wrapping_sub(potential)) ^ ODD_BITS;
                let escaped = codes ^ (backslash | next_escaped);
                next_escaped = (codes & backslash) >> 63;
                let mut want = 0u64;
                for i in 0..64 {
                    if seq_escaped {
                        want |= 1 << i;
                        seq_escaped = false;
                    } else if backslash >> i & 1 == 1 {
                        seq_escaped = true;
                    }
                }
                assert_eq!(escaped, want, "{backslash:064b}");
                assert_eq!(next_escaped == 1, seq_escaped);
            }
        }
    }

    #[test]
    fn body_is_not_modified() {
        let mut v = JsonValidator::new(1024);
        let body = br#"{"a":"x\ny\u0041"}"#.to_vec();
        let copy = body.clone();
        v.validate(&body).unwrap();
        v.validate_with_tape(&body).unwrap();
        assert_eq!(body, copy);
    }

    /// Long bodies (the benchmark corpora whole; a 64 KB body spliced with a fault around each 4 KiB
    /// boundary; strings, whitespace and numbers longer than many blocks): all paths agree with the grammar.
    #[test]
    fn long_bodies() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/");
        let mut v = JsonValidator::new(1024);
        for name in [
            "load/body-64k.json",
            "corpora/json-bench/twitter.json",
            "corpora/json-bench/canada.json",
            "corpora/json-bench/citm_catalog.json",
            "corpora/json-bench/event_stacktrace_10kb.json",
            "corpora/json-bench/log.json",
            "corpora/json-bench/github_events.json",
            "corpora/json-bench/apache_builds.json",
            "corpora/json-bench/mesh.json",
        ] {
            let doc = std::fs::read(format!("{dir}{name}")).unwrap();
            assert!(v.fast_accepts(&doc) && v.scalar_accepts(&doc), "{name}");
            assert_eq!(v.validate(&doc), Ok(()), "{name}");
        }
        // Blocks without a token: a string, whitespace, a number longer than many blocks.
        for filler in [&b"x"[..], b"\\n", "é".as_bytes()] {
            for len in [4096, 8192 + 7, 3 * 4096 + 64] {
                for shift in [0, 1, 63, 64, 65] {
                    let pad = " ".repeat(shift);
                    let long = String::from_utf8(filler.repeat(len / filler.len())).unwrap();
                    let ws = " ".repeat(len);
                    let digits = "7".repeat(len);
                    for doc in [
                        format!("{pad}[\"{long}\", 1]"),
                        format!("{pad}[1,{ws}2]{ws}"),
                        format!("{pad}[-{digits}.{digits}e{digits}]"),
                        format!("{pad}[\"{long}\", 1"),
                        format!("{pad}[\"{long}]"),
                    ] {
                        let _ = verdicts(doc.as_bytes(), 1024);
                    }
                }
            }
        }
        let doc = std::fs::read(format!("{dir}load/body-64k.json")).unwrap();
        for edge in (4096..doc.len()).step_by(4096) {
            for at in edge - 2..edge + 2 {
                for fault in [&b"\""[..], b"\x01", b"]", b"\"\\q", b"1x", b" "] {
                    let mut d = doc[..at].to_vec();
                    d.extend_from_slice(fault);
                    d.extend_from_slice(&doc[at..]);
                    let _ = verdicts(&d, 1024);
                }
            }
        }
    }

    /// Every JSONTestSuite parsing file, at two depths: all paths agree with the grammar.
    #[test]
    fn json_test_suite_files_all_paths() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpora/JSONTestSuite/test_parsing");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let doc = std::fs::read(e.unwrap().path()).unwrap();
            for depth in [5, 1024] {
                let _ = verdicts(&doc, depth);
            }
            n += 1;
        }
        assert!(n > 300, "{n} files");
    }
}
