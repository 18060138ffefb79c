//! JSON body validation: one well-formed JSON text (RFC 8259) or a refusal, never a guess.
//!
//! The product's path is a validate-only scan of the borrowed body (no copy, no tape, no number conversion):
//!
//! 1. UTF-8 validity of the whole body (`simdutf8`);
//! 2. one pass over 64-byte blocks: a classification kernel marks quotes, backslashes, whitespace,
//!    structural characters and control characters (AVX2 when the CPU has it, chosen at run time; a scalar
//!    twin otherwise), bit arithmetic finds escaped characters and the inside of strings, refuses control
//!    characters in strings and checks every escape (`\u` hex digits, surrogate pairs); the tokens left
//!    (structural characters, opening quotes, starts of numbers and literals) drive a small grammar
//!    automaton with a depth stack, and each number or literal has its syntax checked in place.
//!
//! The tokens are found 4 KiB of body at a time into an index buffer the validator keeps; the grammar is read
//! from it as recursive descent written as loops, so that branch prediction rather than a table carries the
//! state.
//!
//! Any refusal is re-examined by the plain scalar grammar check in this file (`grammar_check`), which has the
//! last word on the verdict and on its kind (`Malformed` or `TooDeep`): invalid bodies pay for both, bounded
//! by `--max-body`.
//!
//! Which path serves which body: on CPUs with AVX2 and PCLMULQDQ, the scan serves every body (it is faster
//! than simd-json's tape on every body measured, 1 KB to 2 MB: `docs/performance.md`). Elsewhere the scan's
//! scalar kernel is about ten times slower than simd-json (which has SSE4.2 and NEON kernels of its own), so
//! those CPUs keep the previous path, `JsonValidator::validate_with_tape`: simd-json's tape parser on a copy
//! of the body, the grammar check on its refusals. Both paths give the same verdicts (differential tests).

use simd_json::{Buffers, Tape};

#[allow(unsafe_code)]
mod kernel;

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
    idx: Vec<u32>,
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
            idx: vec![0; CHUNK_TOKENS],
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
        simdutf8::basic::from_utf8(body).is_ok()
            && kernel::scan_best(body, &mut self.idx, self.max_depth, &mut self.stack)
    }

    /// The fast scan with the scalar classification kernel (the twin every CPU runs), for differential tests.
    pub fn scalar_accepts(&mut self, body: &[u8]) -> bool {
        simdutf8::basic::from_utf8(body).is_ok() && scan(&Scalar, body, &mut self.idx, self.max_depth, &mut self.stack)
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

/// What one 64-byte block holds, one bit per byte (bit `i` for byte `i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Masks {
    /// `"`
    pub quote: u64,
    /// `\`
    pub backslash: u64,
    /// Space, tab, line feed, carriage return.
    pub ws: u64,
    /// `{ } [ ] : ,`, and possibly some control characters (a kernel may mark them: the automaton reads the
    /// byte itself and refuses them).
    pub op: u64,
    /// Bytes below 0x20.
    pub ctrl: u64,
}

/// A classification kernel: the only part of the scan that differs between CPUs.
pub trait Kernel {
    fn classify(&self, block: &[u8; 64]) -> Masks;
    /// Bit `i` of the result is the XOR of bits `0..=i` of `x`.
    fn prefix_xor(&self, x: u64) -> u64;
    /// `refill` with this kernel, compiled once (not inlined at each use of the tokens).
    fn refill(&self, t: &mut Tokens, idx: &mut [u32]) -> usize;
}

/// The scalar twin: byte by byte, on every CPU.
pub struct Scalar;

impl Kernel for Scalar {
    #[inline(always)]
    fn classify(&self, block: &[u8; 64]) -> Masks {
        let mut m = Masks::default();
        for (i, &c) in block.iter().enumerate() {
            let bit = 1u64 << i;
            match c {
                b'"' => m.quote |= bit,
                b'\\' => m.backslash |= bit,
                b' ' | b'\t' | b'\n' | b'\r' => m.ws |= bit,
                b'{' | b'}' | b'[' | b']' | b':' | b',' => m.op |= bit,
                _ => {}
            }
            if c < 0x20 {
                m.ctrl |= bit;
            }
        }
        m
    }

    #[inline(never)]
    fn refill(&self, t: &mut Tokens, idx: &mut [u32]) -> usize {
        refill(self, t, idx)
    }

    #[inline(always)]
    fn prefix_xor(&self, mut x: u64) -> u64 {
        x ^= x << 1;
        x ^= x << 2;
        x ^= x << 4;
        x ^= x << 8;
        x ^= x << 16;
        x ^= x << 32;
        x
    }
}

/// Bytes that may follow a number or a literal: whitespace, structural characters, a quote (the automaton
/// refuses what is out of place), or the end.
const ENDS_SCALAR: [bool; 256] = {
    let mut t = [false; 256];
    let ends = *b" \t\n\r{}[]:,\"";
    let mut i = 0;
    while i < ends.len() {
        t[ends[i] as usize] = true;
        i += 1;
    }
    t
};

const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;

/// Blocks classified per refill of the token buffer (4 KiB of body), and the buffer's size: at most 64 tokens
/// per block, and room for the last block's unconditional writes.
const CHUNK_BLOCKS: usize = 64;
const CHUNK_TOKENS: usize = CHUNK_BLOCKS * 64 + 64;

/// The first stage of the scan: the body's tokens in order (structural characters, opening quotes, first bytes
/// of numbers and literals and of anything else outside strings), as indices into a buffer, found
/// `CHUNK_BLOCKS` blocks of 64 bytes at a time. Classifying a block also checks the inside of its strings; a
/// block that fails ends the tokens with `bad` set.
pub struct Tokens<'a> {
    s: &'a [u8],
    next_base: usize,
    /// Carried from block to block: the next byte is escaped; inside a string (all ones); the last byte was
    /// none of whitespace, structural, quote.
    next_escaped: u64,
    in_string: u64,
    prev_other: u64,
    /// The `u` of a low surrogate escape already checked with its high half.
    checked_low: usize,
    bad: bool,
}

impl<'a> Tokens<'a> {
    fn new(s: &'a [u8]) -> Tokens<'a> {
        Tokens {
            // Indices are u32: a longer body (never allowed by --max-body) is left to the grammar check.
            bad: s.len() > u32::MAX as usize - 64,
            s,
            next_base: 0,
            next_escaped: 0,
            in_string: 0,
            prev_other: 0,
            checked_low: usize::MAX,
        }
    }
}

/// Appends the positions of the bits of `bits` (block at `base`) to `idx[n..]`, eight at a time without
/// looking (the slack at the end of the buffer takes the extra writes); returns the new count.
#[inline(always)]
fn flatten(idx: &mut [u32], n: usize, base: u32, mut bits: u64) -> usize {
    let count = bits.count_ones() as usize;
    let out = &mut idx[n..n + 64];
    let mut i = 0;
    while i < count {
        for o in &mut out[i..i + 8] {
            *o = base + bits.trailing_zeros();
            bits &= bits.wrapping_sub(1);
        }
        i += 8;
    }
    n + count
}

/// Classifies up to `CHUNK_BLOCKS` blocks into the token buffer `idx` (`CHUNK_TOKENS` long): the number of
/// tokens found, 0 when the body ends or a block fails (`bad` set for a failure or a string left open).
#[inline(always)]
pub(crate) fn refill<K: Kernel>(k: &K, t: &mut Tokens, idx: &mut [u32]) -> usize {
    let s = t.s;
    let len = s.len();
    if t.bad {
        return 0;
    }
    let mut n = 0;
    let mut blocks = 0;
    // A chunk without tokens (inside a long string, or whitespace) does not end them: go on until one has.
    while (blocks < CHUNK_BLOCKS || n == 0) && t.next_base < len {
        let base = t.next_base;
        let mut tail = [b' '; 64];
        let block: &[u8; 64] = match s.get(base..base + 64) {
            Some(blk) => blk.try_into().unwrap(),
            None => {
                tail[..len - base].copy_from_slice(&s[base..]);
                &tail
            }
        };
        let m = k.classify(block);

        // Escaped bytes: the byte after an odd run of backslashes (simdjson's escape scanner).
        let escaped = if m.backslash | t.next_escaped == 0 {
            0
        } else {
            let potential = m.backslash & !t.next_escaped;
            let maybe_escaped = potential << 1;
            let codes = ((maybe_escaped | ODD_BITS).wrapping_sub(potential)) ^ ODD_BITS;
            let escaped = codes ^ (m.backslash | t.next_escaped);
            t.next_escaped = (codes & m.backslash) >> 63;
            escaped
        };
        let quote = m.quote & !escaped;
        // From an opening quote (included) to its closing quote (excluded).
        let strings = k.prefix_xor(quote) ^ t.in_string;
        t.in_string = ((strings as i64) >> 63) as u64;
        let escapes = escaped & strings;
        if m.ctrl & strings != 0 || (escapes != 0 && !check_escapes(s, base, escapes, &mut t.checked_low)) {
            t.bad = true;
            return 0;
        }
        // Numbers and literals (and junk): runs of bytes that are none of whitespace, structural, quote.
        let other = !(m.ws | m.op | m.quote);
        let starts = other & !((other << 1) | t.prev_other);
        t.prev_other = other >> 63;
        let tokens = ((m.op | starts) & !strings) | (quote & strings);
        n = flatten(idx, n, base as u32, tokens);
        t.next_base = base + 64;
        blocks += 1;
    }
    if t.next_base >= len && t.in_string != 0 {
        t.bad = true;
        return 0;
    }
    n
}

/// The scan, generic over the classification kernel (inlined into each kernel's entry point so that the
/// kernel's instructions are used throughout). `true` only for a valid JSON text, UTF-8 aside (checked by the
/// caller).
///
/// The second stage is a recursive-descent reading of the tokens written as loops (where it is in the grammar
/// is where it is in the code, so that branch prediction, not a chain of table loads, carries the state); the
/// stack holds, per open container, whether its parent is an object.
#[inline(always)]
pub(crate) fn scan<K: Kernel>(k: &K, s: &[u8], idx: &mut Vec<u32>, max_depth: usize, stack: &mut Vec<u8>) -> bool {
    idx.resize(CHUNK_TOKENS, 0);
    let idx = &mut idx[..];
    let mut t = Tokens::new(s);
    // The next token is `idx[i]`; the buffer holds `n` (kept in locals, not in `t`: they are read per token).
    let mut i = 0;
    let mut n = 0;
    let mut depth = 0usize;
    let mut in_obj = false;
    macro_rules! next {
        () => {{
            if i == n {
                n = k.refill(&mut t, idx);
                if n == 0 {
                    return false;
                }
                i = 0;
            }
            let p = idx[i] as usize;
            i += 1;
            p
        }};
    }
    macro_rules! push {
        ($obj:expr) => {
            if depth >= max_depth {
                return false;
            }
            if depth == stack.len() {
                stack.push(0);
            }
            stack[depth] = in_obj as u8;
            depth += 1;
            in_obj = $obj;
        };
    }
    macro_rules! pop {
        () => {
            depth -= 1;
            in_obj = stack[depth] != 0;
        };
    }
    let mut p = next!();
    'value: loop {
        // A value is expected at `p`.
        match s[p] {
            b'"' => {}
            b'{' => {
                push!(true);
                p = next!();
                match s[p] {
                    b'"' => {
                        p = next!();
                        if s[p] != b':' {
                            return false;
                        }
                        p = next!();
                        continue 'value;
                    }
                    b'}' => {
                        pop!();
                    }
                    _ => return false,
                }
            }
            b'[' => {
                push!(false);
                p = next!();
                if s[p] == b']' {
                    pop!();
                } else {
                    continue 'value;
                }
            }
            b't' | b'f' | b'n' | b'-' | b'0'..=b'9' => {
                if !scalar(s, p) {
                    return false;
                }
            }
            _ => return false,
        }
        // After a value: close containers, or find the next element.
        loop {
            if depth == 0 {
                return i == n && k.refill(&mut t, idx) == 0 && !t.bad;
            }
            p = next!();
            match s[p] {
                b',' => {
                    p = next!();
                    if in_obj {
                        if s[p] != b'"' {
                            return false;
                        }
                        p = next!();
                        if s[p] != b':' {
                            return false;
                        }
                        p = next!();
                    }
                    continue 'value;
                }
                b'}' if in_obj => {
                    pop!();
                }
                b']' if !in_obj => {
                    pop!();
                }
                _ => return false,
            }
        }
    }
}

/// Every escaped byte inside strings of the block at `base` (bits of `bits`) is a valid escape.
#[inline(never)]
fn check_escapes(s: &[u8], base: usize, mut bits: u64, checked_low: &mut usize) -> bool {
    while bits != 0 {
        let i = base + bits.trailing_zeros() as usize;
        bits &= bits - 1;
        match s.get(i) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
            Some(b'u') if i == *checked_low => {}
            Some(b'u') => match hex4(s, i + 1) {
                Ok(cu) if (0xD800..0xDC00).contains(&cu) => {
                    // A high surrogate must be followed by an escaped low surrogate.
                    if s.get(i + 5) != Some(&b'\\') || s.get(i + 6) != Some(&b'u') {
                        return false;
                    }
                    match hex4(s, i + 7) {
                        Ok(lo) if (0xDC00..0xE000).contains(&lo) => *checked_low = i + 6,
                        _ => return false,
                    }
                }
                Ok(cu) if (0xDC00..0xE000).contains(&cu) => return false,
                Ok(_) => {}
                Err(_) => return false,
            },
            _ => return false,
        }
    }
    true
}

/// The number or literal starting at `s[p]` is well formed and ends where it should.
#[inline(always)]
fn scalar(s: &[u8], p: usize) -> bool {
    let end = match s[p] {
        b't' => literal(s, p, b"true"),
        b'f' => literal(s, p, b"false"),
        b'n' => literal(s, p, b"null"),
        _ => number_fast(s, p),
    };
    match end {
        Ok(e) => e == s.len() || ENDS_SCALAR[s[e] as usize],
        Err(_) => false,
    }
}

/// The index after the run of ASCII digits starting at `i`, eight bytes at a time.
#[inline(always)]
fn digits_fast(s: &[u8], mut i: usize) -> usize {
    while let Some(w) = s.get(i..i + 8) {
        let x = u64::from_le_bytes(w.try_into().unwrap());
        // A byte is a digit when its high nibble is 3 and adding 6 keeps it there. A carry out of a byte of
        // 0xFA..=0xFF only disturbs the bytes after it, and that byte is not a digit anyway.
        let not_digit = ((x & 0xF0F0_F0F0_F0F0_F0F0) ^ 0x3030_3030_3030_3030)
            | ((x.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) ^ 0x3030_3030_3030_3030);
        if not_digit != 0 {
            return i + (not_digit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    digits(s, i)
}

/// `number` with `digits_fast`. A copy on purpose: `number` belongs to the grammar checker, the reference the
/// differential tests hold this scan to, and shares no code with it.
#[inline(always)]
fn number_fast(s: &[u8], mut i: usize) -> Result<usize, JsonError> {
    use JsonError::Malformed;
    if s[i] == b'-' {
        i += 1;
    }
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits_fast(s, i + 1),
        _ => return Err(Malformed),
    }
    if s.get(i) == Some(&b'.') {
        let j = digits_fast(s, i + 1);
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
        let j = digits_fast(s, i);
        if j == i {
            return Err(Malformed);
        }
        i = j;
    }
    Ok(i)
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
    /// backslash runs, escapes, surrogate pairs, strings, numbers and literals that straddle two blocks.
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
        ];
        for doc in docs {
            for shift in 0..70 {
                let mut d = vec![b' '; shift];
                d.extend_from_slice(doc);
                let _ = verdicts(&d, 8);
                d.truncate(d.len() - 1);
                let _ = verdicts(&d, 8);
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

    /// Bodies of many token buffers (the benchmark corpora whole; a 64 KB body spliced with a fault around
    /// each 4 KiB boundary): all paths agree with the grammar.
    #[test]
    fn long_bodies_across_token_buffer_refills() {
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
        // Chunks without a token: a string, whitespace, a number longer than a chunk.
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
