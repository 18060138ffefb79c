//! Where a refused JSON body goes wrong, for the `malformed_json` answer: the byte offset of the first error
//! and what the grammar (RFC 8259) expected there. Runs only on a body the validator already refused (the
//! verdict is the validator's; this only explains it), scalar and in one pass, allocating nothing.

/// The first error in `s`: its byte offset and what was expected; `None` if this reading finds none (the
/// answer then gives no position).
pub fn locate(s: &[u8]) -> Option<(usize, &'static str)> {
    let mut p = Parser { s, i: 0 };
    match p.document() {
        Ok(()) | Err((_, "")) => None,
        Err(e) => Some(e),
    }
}

/// Nesting this reading follows (past it, no position is given).
const MAX_DEPTH: usize = 2048;

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

type R = Result<(), (usize, &'static str)>;

impl Parser<'_> {
    fn err(&self, what: &'static str) -> R {
        Err((self.i, what))
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn document(&mut self) -> R {
        // Arrays and objects nest through an explicit stack of closers, so no input can exhaust the call stack.
        self.ws();
        if self.i == self.s.len() {
            return self.err("a JSON value (the body is empty)");
        }
        self.value()?;
        self.ws();
        if self.i != self.s.len() {
            return self.err("the end of the body (one JSON value only)");
        }
        Ok(())
    }

    fn value(&mut self) -> R {
        // Containers as a state machine: `depth` open containers, each `[` or `{` in `kinds` (one bit each).
        let mut kinds = [0u64; MAX_DEPTH / 64];
        let mut depth: usize = 0;
        let is_obj = |kinds: &[u64], d: usize| kinds[(d - 1) / 64] >> ((d - 1) % 64) & 1 == 1;
        loop {
            self.ws();
            match self.s.get(self.i) {
                Some(b'{') | Some(b'[') => {
                    let obj = self.s[self.i] == b'{';
                    self.i += 1;
                    if depth == MAX_DEPTH {
                        // Deeper than this reading follows: no position is given.
                        return self.err("");
                    }
                    let (w, b) = (depth / 64, depth % 64);
                    kinds[w] = kinds[w] & !(1 << b) | (obj as u64) << b;
                    depth += 1;
                    self.ws();
                    let close = if obj { b'}' } else { b']' };
                    if self.s.get(self.i) == Some(&close) {
                        self.i += 1;
                        depth -= 1;
                    } else {
                        if obj {
                            self.key()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                _ => return self.err("a value (an object, array, string, number, true, false or null)"),
            }
            // After a value: a comma or the end of the innermost container.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                self.ws();
                let obj = is_obj(&kinds, depth);
                match self.s.get(self.i) {
                    Some(b',') => {
                        self.i += 1;
                        if obj {
                            self.ws();
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if obj => {}
                    Some(b']') if !obj => {}
                    _ if obj => return self.err("',' or '}' after a member"),
                    _ => return self.err("',' or ']' after an element"),
                }
                self.i += 1;
                depth -= 1;
            }
        }
    }

    /// `"name"` then `:`.
    fn key(&mut self) -> R {
        if self.s.get(self.i) != Some(&b'"') {
            return self.err("a member name in double quotes");
        }
        self.string()?;
        self.ws();
        if self.s.get(self.i) != Some(&b':') {
            return self.err("':' after a member name");
        }
        self.i += 1;
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> R {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.err("a value (true, false and null are lower case)")
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.s.get(self.i) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> R {
        if self.s[self.i] == b'-' {
            self.i += 1;
        }
        match self.s.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.err("a digit"),
        }
        if self.s.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return self.err("a digit after the decimal point");
            }
        }
        if let Some(b'e' | b'E') = self.s.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.s.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return self.err("a digit in the exponent");
            }
        }
        Ok(())
    }

    fn string(&mut self) -> R {
        self.i += 1; // the opening quote
        loop {
            let Some(&b) = self.s.get(self.i) else {
                return self.err("the closing double quote of a string");
            };
            match b {
                b'"' => {
                    self.i += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.i += 1;
                    match self.s.get(self.i) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            let hex = self.s.get(self.i + 1..self.i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return self.err("four hex digits in a unicode escape");
                            }
                            self.i += 5;
                        }
                        _ => return self.err(
                            "a valid escape after the backslash (one of the quote, backslash, slash, b, f, n, r, t, u)",
                        ),
                    }
                }
                0..=0x1f => return self.err("no control character in a string (escape it)"),
                0x80.. => {
                    let n = match b {
                        0xc2..=0xdf => 2,
                        0xe0..=0xef => 3,
                        0xf0..=0xf4 => 4,
                        _ => return self.err("UTF-8 text"),
                    };
                    let seq = self.s.get(self.i..self.i + n);
                    if seq.is_none_or(|q| std::str::from_utf8(q).is_err()) {
                        return self.err("UTF-8 text");
                    }
                    self.i += n;
                }
                _ => self.i += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let at = |s: &str| locate(s.as_bytes());
        assert_eq!(at(r#"{"a":1}"#), None);
        assert_eq!(at(r#"[1,[2,{"x":[]}],"s\n"]"#), None);
        assert_eq!(at(""), Some((0, "a JSON value (the body is empty)")));
        assert_eq!(at(r#"{"a":}"#).unwrap().0, 5);
        assert_eq!(at(r#"{"a" 1}"#).unwrap(), (5, "':' after a member name"));
        assert_eq!(at(r#"{"a":1,}"#).unwrap(), (7, "a member name in double quotes"));
        assert_eq!(at("[1 2]").unwrap(), (3, "',' or ']' after an element"));
        assert_eq!(at("[01]").unwrap(), (2, "',' or ']' after an element"));
        assert_eq!(at("[1.]").unwrap(), (3, "a digit after the decimal point"));
        assert_eq!(at("TRUE").unwrap().0, 0);
        assert_eq!(at("{} {}").unwrap(), (3, "the end of the body (one JSON value only)"));
        assert_eq!(at("\"abc").unwrap(), (4, "the closing double quote of a string"));
        assert_eq!(at("[\"\\x\"]").unwrap().0, 3);
        assert_eq!(at("[\"\u{1}\"]").unwrap().0, 2);
        assert_eq!(locate(b"[\"\xff\"]").unwrap(), (2, "UTF-8 text"));
        // Deep nesting never exhausts anything; within the bitset, positions stay exact.
        assert!(locate("[".repeat(100_000).as_bytes()).is_none());
        let deep = format!("{}{{\"a\" 1}}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(locate(deep.as_bytes()).unwrap(), (105, "':' after a member name"));
    }
}
