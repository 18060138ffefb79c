//! The `std::arch` classification kernel of the JSON scan, and the run-time choice between it and the scalar
//! twin (`super::Scalar`). One of the two modules of the crate allowed `unsafe` (the other is
//! `crate::inherit`): a load of 32 bytes from a 64-byte block, and calls to functions compiled for AVX2 and
//! PCLMULQDQ, made only after the CPU was found to have both. The tests at the end compare the kernel with the
//! twin.

/// Whether this CPU runs a SIMD kernel of the scan (else the scalar twin, slower than simd-json's tape).
pub fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        return true;
    }
    false
}

/// The scan with the best kernel this CPU has.
pub fn scan_best(s: &[u8], idx: &mut Vec<u32>, max_depth: usize, stack: &mut Vec<u8>) -> bool {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: the CPU has AVX2 and PCLMULQDQ (`available` asked it).
        return unsafe { x86::scan_avx2(s, idx, max_depth, stack) };
    }
    super::scan(&super::Scalar, s, idx, max_depth, stack)
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    use super::super::{Kernel, Masks, Tokens};

    pub fn available() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("pclmulqdq")
    }

    /// Made only inside functions compiled for AVX2 and PCLMULQDQ, which run only where the CPU has both.
    struct Avx2(());

    impl Kernel for Avx2 {
        #[inline(always)]
        fn classify(&self, block: &[u8; 64]) -> Masks {
            // SAFETY: an `Avx2` exists only inside `scan_avx2` or `classify_avx2`, called only on a CPU with
            // AVX2 (see `Avx2`).
            unsafe { classify(block) }
        }

        #[inline(always)]
        fn prefix_xor(&self, x: u64) -> u64 {
            // SAFETY: as above, the CPU has PCLMULQDQ.
            unsafe { prefix_xor(x) }
        }

        #[inline(always)]
        fn refill(&self, t: &mut Tokens, idx: &mut [u32]) -> usize {
            // SAFETY: as above, the CPU has AVX2 and PCLMULQDQ.
            unsafe { refill_avx2(t, idx) }
        }
    }

    /// # Safety
    /// The CPU must have AVX2 and PCLMULQDQ.
    #[target_feature(enable = "avx2,pclmulqdq,bmi1,popcnt")]
    #[inline(never)]
    unsafe fn refill_avx2(t: &mut Tokens, idx: &mut [u32]) -> usize {
        super::super::refill(&Avx2(()), t, idx)
    }

    /// The scan with the AVX2 kernel.
    ///
    /// # Safety
    /// The CPU must have AVX2 and PCLMULQDQ.
    #[target_feature(enable = "avx2,pclmulqdq,bmi1,popcnt")]
    pub unsafe fn scan_avx2(s: &[u8], idx: &mut Vec<u32>, max_depth: usize, stack: &mut Vec<u8>) -> bool {
        super::super::scan(&Avx2(()), s, idx, max_depth, stack)
    }

    /// The AVX2 kernel's masks for one block (for the tests).
    #[cfg(test)]
    ///
    /// # Safety
    /// The CPU must have AVX2 and PCLMULQDQ.
    #[target_feature(enable = "avx2,pclmulqdq")]
    pub unsafe fn classify_avx2(block: &[u8; 64]) -> (Masks, u64) {
        let k = Avx2(());
        (
            k.classify(block),
            k.prefix_xor(u64::from_le_bytes(block[..8].try_into().unwrap())),
        )
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn half(v: __m256i) -> [u32; 5] {
        // Whitespace: the byte equals the table entry at its low nibble (0x20 at 0, 0x09, 0x0a, 0x0d at
        // theirs, 0 elsewhere: no byte with another low nibble is 0; bytes >= 0x80 read 0).
        let ws_table = _mm256_setr_epi8(
            0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0x09, 0x0a, 0, 0, 0x0d, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0x09, 0x0a, 0, 0,
            0x0d, 0, 0,
        );
        let ws = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(ws_table, v), v);
        // Structural: with bit 0x20 set, `[` `]` become `{` `}`; then the table at the low nibble again
        // (0x2c `,` at 0xc, 0x3a `:` at 0xa, 0x7b at 0xb, 0x7d at 0xd). Control characters 0x0c and 0x1a are
        // marked too (the automaton refuses them by their own value).
        let op_table = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x3a, 0x7b, 0x2c, 0x7d, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x3a, 0x7b, 0x2c,
            0x7d, 0, 0,
        );
        let v20 = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
        let op = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(op_table, v20), v20);
        let quote = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'"' as i8));
        let backslash = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8));
        let ctrl = _mm256_cmpeq_epi8(_mm256_max_epu8(v, _mm256_set1_epi8(0x1f)), _mm256_set1_epi8(0x1f));
        [
            _mm256_movemask_epi8(quote) as u32,
            _mm256_movemask_epi8(backslash) as u32,
            _mm256_movemask_epi8(ws) as u32,
            _mm256_movemask_epi8(op) as u32,
            _mm256_movemask_epi8(ctrl) as u32,
        ]
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn classify(block: &[u8; 64]) -> Masks {
        // SAFETY: both 32-byte unaligned loads lie within the 64-byte block.
        let (lo, hi) = unsafe {
            (
                _mm256_loadu_si256(block.as_ptr().cast()),
                _mm256_loadu_si256(block.as_ptr().add(32).cast()),
            )
        };
        let (l, h) = (half(lo), half(hi));
        let join = |i: usize| l[i] as u64 | (h[i] as u64) << 32;
        Masks {
            quote: join(0),
            backslash: join(1),
            ws: join(2),
            op: join(3),
            ctrl: join(4),
        }
    }

    #[target_feature(enable = "pclmulqdq")]
    #[inline]
    fn prefix_xor(x: u64) -> u64 {
        // A carry-less multiplication by all ones: bit i of the product is the XOR of bits 0..=i.
        let p = _mm_clmulepi64_si128(_mm_set_epi64x(0, x as i64), _mm_set1_epi8(-1), 0);
        _mm_cvtsi128_si64(p) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Kernel, Scalar};

    /// Blocks of JSON-ish bytes and every byte value: the AVX2 kernel's masks equal the scalar twin's, except
    /// that the kernel may mark the control characters 0x0c and 0x1a as structural.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_kernel_matches_scalar_twin() {
        if !super::x86::available() {
            eprintln!("no AVX2/PCLMULQDQ here: kernel not compared");
            return;
        }
        let mut blocks: Vec<[u8; 64]> = Vec::new();
        for start in (0..256).step_by(64) {
            blocks.push(std::array::from_fn(|i| (start + i) as u8));
        }
        let alphabet = b"{}[]:,\"\\ \t\r\n0123456789-+.eEtrufalsn\x00\x0c\x1a\x1f\x7f\x80\xff";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            blocks.push(std::array::from_fn(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x & 3 == 0 {
                    (x >> 8) as u8
                } else {
                    alphabet[(x >> 8) as usize % alphabet.len()]
                }
            }));
        }
        for b in &blocks {
            // SAFETY: the CPU has AVX2 and PCLMULQDQ (checked above).
            let (got, pxor) = unsafe { super::x86::classify_avx2(b) };
            let mut want = Scalar.classify(b);
            let ctrl_ops: u64 = b
                .iter()
                .enumerate()
                .filter(|(_, &c)| c == 0x0c || c == 0x1a)
                .map(|(i, _)| 1u64 << i)
                .sum();
            want.op |= got.op & ctrl_ops;
            assert_eq!(got, want, "{b:?}");
            assert_eq!(pxor, Scalar.prefix_xor(u64::from_le_bytes(b[..8].try_into().unwrap())));
        }
    }
}
