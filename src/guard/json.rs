//! JSON body validation: one well-formed JSON text (RFC 8259) or a refusal, never a guess.
//!
//! The fast path is simd-json's tape parser run on a **copy** of the body in a scratch buffer owned by the
//! worker (simd-json unescapes strings in place, so the bytes forwarded are never the bytes it touched). When
//! simd-json refuses a document, the scalar grammar check in this file has the last word: simd-json refuses
//! some valid documents (integers beyond 64 bits, `1e400`), and the verdict must be the grammar's. Ordinary
//! valid bodies never reach the scalar path; invalid ones pay for both (bounded by `--max-body`).

use simd_json::{Buffers, Tape};

/// Why a body is not accepted as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    Malformed,
    /// Objects and arrays nest deeper than the limit.
    TooDeep,
}

/// The per-worker validator: scratch buffers reused across requests (no allocation once warm).
pub struct JsonValidator {
    scratch: Vec<u8>,
    buffers: Buffers,
    tape: Tape<'static>,
    stack: Vec<u8>,
    max_depth: usize,
}

impl JsonValidator {
    pub fn new(max_depth: usize) -> JsonValidator {
        JsonValidator {
            scratch: Vec::new(),
            buffers: Buffers::with_max_depth(4096, max_depth),
            tape: Tape(Vec::new()),
            stack: Vec::new(),
            max_depth,
        }
    }

    /// Validates `body` (not modified).
    pub fn validate(&mut self, body: &[u8]) -> Result<(), JsonError> {
        if body.is_empty() {
            return Err(JsonError::Malformed);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(body);
        self.scratch.resize(body.len() + simd_json::INPUT_PADDING, 0);
        let mut tape = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let fast = simd_json::fill_tape_padded(&mut self.scratch, body.len(), &mut self.buffers, &mut tape);
        let verdict = match fast {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.error(), simd_json::ErrorType::DepthLimitExceeded) => Err(JsonError::TooDeep),
            Err(_) => grammar_check(body, self.max_depth, &mut self.stack),
        };
        self.tape = tape.reset();
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
    use super::*;

    #[test]
    fn grammar_and_fast_path_agree_on_samples() {
        let mut v = JsonValidator::new(4);
        let mut st = Vec::new();
        let cases: &[(&str, Result<(), JsonError>)] = &[
            ("{}", Ok(())),
            (
                " [1, -0.5e+3, \"a\\u00e9\\ud83d\\ude00\", true, false, null, {\"k\": []}] ",
                Ok(()),
            ),
            ("123456789012345678901234567890", Ok(())),
            ("1e400", Ok(())),
            ("\"\\ud800\"", Err(JsonError::Malformed)),
            ("\"\\udc00\\ud800\"", Err(JsonError::Malformed)),
            ("", Err(JsonError::Malformed)),
            ("\u{feff}{}", Err(JsonError::Malformed)),
            ("{} {}", Err(JsonError::Malformed)),
            ("[1,]", Err(JsonError::Malformed)),
            ("{\"a\" 1}", Err(JsonError::Malformed)),
            ("01", Err(JsonError::Malformed)),
            ("1.", Err(JsonError::Malformed)),
            ("\"\t\"", Err(JsonError::Malformed)),
            ("[[[[1]]]]", Ok(())),
            ("[[[[[1]]]]]", Err(JsonError::TooDeep)),
        ];
        for (doc, want) in cases {
            assert_eq!(grammar_check(doc.as_bytes(), 4, &mut st), *want, "grammar {doc:?}");
            assert_eq!(v.validate(doc.as_bytes()), *want, "validator {doc:?}");
        }
        assert_eq!(v.validate(b"\"\xff\""), Err(JsonError::Malformed));
    }

    #[test]
    fn body_is_not_modified() {
        let mut v = JsonValidator::new(1024);
        let body = br#"{"a":"x\ny\u0041"}"#.to_vec();
        let copy = body.clone();
        v.validate(&body).unwrap();
        assert_eq!(body, copy);
    }
}
