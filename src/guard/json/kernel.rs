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
pub fn scan_best(s: &[u8], max_depth: usize, stack: &mut Vec<u8>) -> bool {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: the CPU has AVX2 and PCLMULQDQ (`available` asked it).
        return unsafe { x86::scan_avx2(s, max_depth, stack) };
    }
    super::scan::scan(&super::Scalar, s, max_depth, stack)
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    use super::super::scan::{scan, Kernel, Masks};

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
    }

    /// The scan with the AVX2 kernel.
    ///
    /// # Safety
    /// The CPU must have AVX2 and PCLMULQDQ.
    #[target_feature(enable = "avx2,pclmulqdq,bmi1,popcnt")]
    pub unsafe fn scan_avx2(s: &[u8], max_depth: usize, stack: &mut Vec<u8>) -> bool {
        scan(&Avx2(()), s, max_depth, stack)
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
    fn half(v: __m256i) -> [u32; 7] {
        // Whitespace: the byte equals the table entry at its low nibble (0x20 at 0, 0x09, 0x0a, 0x0d at
        // theirs, 0 elsewhere: no byte with another low nibble is 0; bytes >= 0x80 read 0).
        let ws_table = _mm256_setr_epi8(
            0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0x09, 0x0a, 0, 0, 0x0d, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0x09, 0x0a, 0, 0,
            0x0d, 0, 0,
        );
        let ws = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(ws_table, v), v);
        let ctrl = _mm256_cmpeq_epi8(_mm256_max_epu8(v, _mm256_set1_epi8(0x1f)), _mm256_set1_epi8(0x1f));
        // With bit 0x20 set, `[` `]` become `{` `}` (and no other byte does).
        let v20 = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
        let bracket = _mm256_or_si256(
            _mm256_cmpeq_epi8(v20, _mm256_set1_epi8(b'{' as i8)),
            _mm256_cmpeq_epi8(v20, _mm256_set1_epi8(b'}' as i8)),
        );
        let eq = |c: u8| _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(c as i8))) as u32;
        [
            eq(b'"'),
            eq(b'\\'),
            _mm256_movemask_epi8(ws) as u32,
            _mm256_movemask_epi8(ctrl) as u32,
            eq(b','),
            eq(b':'),
            _mm256_movemask_epi8(bracket) as u32,
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
            ctrl: join(3),
            comma: join(4),
            colon: join(5),
            bracket: join(6),
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

    /// Blocks of JSON-ish bytes and every byte value: the AVX2 kernel's masks equal the scalar twin's.
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
            let want = Scalar.classify(b);
            assert_eq!(got, want, "{b:?}");
            assert_eq!(pxor, Scalar.prefix_xor(u64::from_le_bytes(b[..8].try_into().unwrap())));
        }
    }
}
