//! The validate-only scan: `true` only for a well-formed JSON text (RFC 8259; UTF-8 validity is the caller's
//! part), in one pass over 64-byte blocks of the borrowed body, with no token list and no tape.
//!
//! Per block:
//!
//! 1. a classification kernel (the only part that differs between CPUs) marks quotes, backslashes,
//!    whitespace, commas, colons, brackets and forbidden control characters, one bit per byte;
//! 2. bit arithmetic finds escaped characters and the inside of strings (simdjson's method), refuses control
//!    characters in strings and checks every escape (`\u` hex digits, surrogate pairs);
//! 3. the brackets alone are read one by one, with a depth stack: they must match, nest within the limit,
//!    and they say which bytes lie directly inside an object (that decides what a comma may be followed by);
//! 4. the rest of the grammar is a set of rules "the first non-whitespace byte after a token of kind X is
//!    one of Y", checked for all tokens of a block at once with additions that carry through the runs of
//!    whitespace (the carries also cross from block to block):
//!    - after `{`, or a comma inside an object: a string (a key), or `}` after `{`;
//!    - after a key: `:`;
//!    - after `[`, `:`, a comma inside an array, the start of the body: a value, or `]` after `[`;
//!    - after a value (a string that is not a key, a number, a literal, a closing bracket): `,`, a closing
//!      bracket, or the end of the body;
//!    - no comma outside containers;
//!
//!    every byte outside strings has exactly one token before it (or the start of the body), so these local
//!    rules together with matched brackets are the grammar;
//! 5. each number or literal (a run of bytes that are none of whitespace, quote, comma, colon, bracket) is
//!    checked for syntax where it stands, never converted: any size is valid.

use super::{digits, hex4, literal, JsonError};

/// What one 64-byte block holds, one bit per byte (bit `i` for byte `i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Masks {
    /// `"`
    pub quote: u64,
    /// `\`
    pub backslash: u64,
    /// Space, tab, line feed, carriage return.
    pub ws: u64,
    /// Bytes below 0x20: tab, line feed and carriage return are whitespace outside strings, the others
    /// are valid nowhere.
    pub ctrl: u64,
    /// `,`
    pub comma: u64,
    /// `:`
    pub colon: u64,
    /// `{ } [ ]`
    pub bracket: u64,
}

/// A classification kernel: the only part of the scan that differs between CPUs.
pub trait Kernel {
    fn classify(&self, block: &[u8; 64]) -> Masks;
    /// Bit `i` of the result is the XOR of bits `0..=i` of `x`.
    fn prefix_xor(&self, x: u64) -> u64;
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
                b',' => m.comma |= bit,
                b':' => m.colon |= bit,
                b'{' | b'}' | b'[' | b']' => m.bracket |= bit,
                _ => {}
            }
            if c < 0x20 {
                m.ctrl |= bit;
            }
        }
        m
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

pub(super) const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;

/// One rule "what follows a token of this kind", carried across blocks.
#[derive(Default)]
struct Follow {
    /// 1 when bit 0 of the next block follows a token of this kind: the previous block's last byte ended one,
    /// or a search for the next non-whitespace byte ran off the previous block's end. Never both: a search
    /// runs off the end only through a last byte of whitespace, and a token never ends on whitespace.
    carry: u64,
}

impl Follow {
    /// The first non-whitespace byte after each token ending at a bit of `ends`, and at or after each bit of
    /// `after` (positions just after a token): the carry of `ws + start` runs through each run of whitespace
    /// and stops on the byte after it. Tokens are never whitespace, so each run has at most one start.
    #[inline(always)]
    fn next(&mut self, ends: u64, after: u64, ws: u64) -> u64 {
        let from = (ends << 1) | after;
        // At most one carry out of the two additions: the whole sum stays below 2^65.
        let (sum, c1) = ws.overflowing_add(from);
        let (sum, c2) = sum.overflowing_add(self.carry);
        self.carry = (c1 | c2) as u64 | (ends >> 63);
        sum & !ws
    }

    /// Some token of this kind is followed by nothing but whitespace up to the end of the body.
    fn reaches_end(&self) -> bool {
        self.carry != 0
    }
}

/// The scan, generic over the classification kernel (inlined into each kernel's entry point so that the
/// kernel's instructions are used throughout). `stack` is scratch space: per open container, whether its
/// parent is an object.
#[inline(always)]
pub(crate) fn scan<K: Kernel>(k: &K, s: &[u8], max_depth: usize, stack: &mut Vec<u8>) -> bool {
    let len = s.len();
    // The deepest a body can nest is one level per byte: the stack is sized once, not checked per bracket.
    let room = max_depth.min(len);
    if stack.len() < room {
        stack.resize(room, 0);
    }
    let mut st = State {
        max_depth: room,
        next_escaped: 0,
        in_string: 0,
        prev_other: 0,
        checked_low: usize::MAX,
        depth: 0,
        in_obj: false,
        obj_carry: 0,
        top_carry: !0,
        after_key_open: Follow::default(),
        after_value_open: Follow { carry: 1 },
        after_separator: Follow::default(),
        after_key: Follow::default(),
        after_value: Follow::default(),
        key_carry: 0,
    };
    let full = len - len % 64;
    let mut base = 0;
    while base < full {
        let block: &[u8; 64] = s[base..base + 64].try_into().unwrap();
        if !st.block(k, s, base, block, &mut stack[..]) {
            return false;
        }
        base += 64;
    }
    if full < len {
        let mut tail = [b' '; 64];
        tail[..len - full].copy_from_slice(&s[full..]);
        if !st.block(k, s, full, &tail, &mut stack[..]) {
            return false;
        }
    }
    // The end: strings and containers closed, and only a value may be followed by the end of the body (the
    // start of the body may not: it is empty or whitespace). Past `max_depth`, the bracket step refused.
    st.in_string == 0
        && st.depth == 0
        && !st.after_key_open.reaches_end()
        && !st.after_value_open.reaches_end()
        && !st.after_separator.reaches_end()
        && !st.after_key.reaches_end()
}

/// What the scan carries from block to block.
struct State {
    /// The depth limit, or the body's length if smaller (the size of the stack).
    max_depth: usize,
    /// Strings and escapes: the next byte is escaped (0 or 1); inside a string (all ones or zero); the last
    /// byte was part of a number or literal (0 or 1).
    next_escaped: u64,
    in_string: u64,
    prev_other: u64,
    /// The `u` of a low surrogate escape already checked with its high half.
    checked_low: usize,
    /// Brackets: depth; the innermost container is an object; the same and "outside any container" as
    /// masks (all ones or zero) at the start of the next block.
    depth: usize,
    in_obj: bool,
    obj_carry: u64,
    top_carry: u64,
    /// The rules. The start of the body is followed by a value, as `[` is.
    after_key_open: Follow,
    after_value_open: Follow,
    after_separator: Follow,
    after_key: Follow,
    after_value: Follow,
    /// A key's string runs on into the next block.
    key_carry: u64,
}

impl State {
    /// One 64-byte block at `base` (past the body's end, spaces): `false` if it breaks a rule.
    #[inline(always)]
    fn block<K: Kernel>(&mut self, k: &K, s: &[u8], base: usize, block: &[u8; 64], stack: &mut [u8]) -> bool {
        let m = k.classify(block);

        // Escaped bytes: the byte after an odd run of backslashes (simdjson's escape scanner).
        let escaped = if m.backslash | self.next_escaped == 0 {
            0
        } else {
            let potential = m.backslash & !self.next_escaped;
            let maybe_escaped = potential << 1;
            let codes = ((maybe_escaped | ODD_BITS).wrapping_sub(potential)) ^ ODD_BITS;
            let escaped = codes ^ (m.backslash | self.next_escaped);
            self.next_escaped = (codes & m.backslash) >> 63;
            escaped
        };
        let quote = m.quote & !escaped;
        // From an opening quote (included) to its closing quote (excluded).
        let strings = k.prefix_xor(quote) ^ self.in_string;
        self.in_string = ((strings as i64) >> 63) as u64;
        let escapes = escaped & strings;
        // Control characters: only tab, line feed, carriage return, and only outside strings.
        if m.ctrl & (strings | !m.ws) != 0 {
            return false;
        }
        if escapes != 0 {
            // `\"`, `\\`, `\/`, `\b`... here; `\u` and anything else in `check_escapes`.
            let (mut e, mut rest) = (escapes, 0);
            while e != 0 {
                if !SIMPLE_ESCAPE[block[e.trailing_zeros() as usize] as usize] {
                    rest |= e & e.wrapping_neg();
                }
                e &= e - 1;
            }
            if rest != 0 && !check_escapes(s, base, rest, &mut self.checked_low) {
                return false;
            }
        }
        let open_quote = quote & strings;
        let close_quote = quote & !strings;
        let ws = m.ws & !strings;
        let comma = m.comma & !strings;
        let colon = m.colon & !strings;
        let bracket = m.bracket & !strings;
        // Numbers and literals (and anything else out of place): runs of bytes outside strings that are none
        // of whitespace, quote, comma, colon, bracket. A backslash outside strings is one of them, so the
        // escapes found outside strings only ever make a run that fails its syntax check.
        let other = !(strings | quote | m.ws | m.comma | m.colon | m.bracket);
        let other_prev = (other << 1) | self.prev_other;
        self.prev_other = other >> 63;
        let other_start = other & !other_prev;
        let other_after = other_prev & !other;

        // Brackets in order: matching, depth, and where the innermost container changes kind (object or
        // not) or the body enters or leaves its outermost container.
        let (mut opens, mut objs, mut toggle_obj, mut toggle_top) = (0u64, 0u64, 0u64, 0u64);
        let mut b = bracket;
        while b != 0 {
            let bit = b & b.wrapping_neg();
            let c = block[b.trailing_zeros() as usize];
            b &= b - 1;
            let was_obj = self.in_obj;
            let was_top = self.depth == 0;
            // `{` 0x7b and `[` 0x5b have bit 1 set, `}` 0x7d and `]` 0x5d do not; bit 5 says object.
            let obj = c & 0x20 != 0;
            if c & 2 != 0 {
                if self.depth >= self.max_depth {
                    return false;
                }
                stack[self.depth] = was_obj as u8;
                self.depth += 1;
                self.in_obj = obj;
                opens |= bit;
            } else {
                if was_top || obj != was_obj {
                    return false;
                }
                self.depth -= 1;
                self.in_obj = stack[self.depth] != 0;
            }
            objs |= bit & (obj as u64).wrapping_neg();
            toggle_obj |= bit & ((self.in_obj != was_obj) as u64).wrapping_neg();
            // Rare (the start and the end of the outermost container): a branch predicted not taken.
            if was_top || self.depth == 0 {
                toggle_top |= bit;
            }
        }
        let (open_obj, open_arr) = (opens & objs, opens & !objs);
        let close = bracket & !(open_obj | open_arr);
        let in_object = if toggle_obj == 0 {
            self.obj_carry
        } else {
            k.prefix_xor(toggle_obj) ^ self.obj_carry
        };
        self.obj_carry = ((in_object as i64) >> 63) as u64;
        let outermost = if toggle_top == 0 {
            self.top_carry
        } else {
            k.prefix_xor(toggle_top) ^ self.top_carry
        };
        self.top_carry = ((outermost as i64) >> 63) as u64;

        // The rules.
        let value_start = open_quote | open_obj | open_arr | other_start;
        let mut err = comma & outermost;
        let next = self.after_key_open.next(open_obj | (comma & in_object), 0, ws);
        err |= next & !(open_quote | close);
        let key_open = next & open_quote;
        let next = self
            .after_value_open
            .next(open_arr | colon | (comma & !in_object), 0, ws);
        err |= next & !(value_start | close);
        let next = self.after_separator.next(comma | colon, 0, ws);
        err |= next & close;
        // A key's closing quote: the carry of `strings + key_open` runs to the end of the key's string.
        let (sum, c1) = strings.overflowing_add(key_open);
        let (sum, c2) = sum.overflowing_add(self.key_carry);
        self.key_carry = (c1 | c2) as u64;
        let key_close = sum & !strings;
        let next = self.after_key.next(key_close, 0, ws);
        err |= next & !colon;
        let next = self
            .after_value
            .next((close_quote & !key_close) | close, other_after, ws);
        err |= next & !(comma | close);
        if err != 0 {
            return false;
        }

        let mut starts = other_start;
        while starts != 0 {
            if !scalar(s, base + starts.trailing_zeros() as usize) {
                return false;
            }
            starts &= starts - 1;
        }
        true
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

/// The bytes that make a complete escape after a backslash, `u` aside.
const SIMPLE_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let simple = *b"\"\\/bfnrt";
    let mut i = 0;
    while i < simple.len() {
        t[simple[i] as usize] = true;
        i += 1;
    }
    t
};

/// Bytes that may follow a number or a literal: whitespace, structural characters, a quote (the rules
/// refuse what is out of place), or the end.
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

/// The number or literal starting at `s[p]` is well formed and ends where its run of bytes ends.
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

/// The grammar checker's `number` with `digits_fast`. A copy on purpose: `number` belongs to the grammar
/// checker, the reference the differential tests hold this scan to, and shares no code with it.
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
