//! `http::chunked::ChunkedDecoder` on arbitrary bytes.
//!
//! Input: `[split seed, piece/limit byte, body...]`. Checked, beyond "never panics":
//! - the body fed in pieces (sizes drawn from the seed, 1..=32 bytes) gives exactly what it gives in one piece:
//!   the same error, or the same payload, the same bytes consumed, the same `done`;
//! - the one-piece answer equals the one-pass reference decoder `tests/models/chunked.rs` (shared with
//!   `tests/framing_prop.rs`; overflow-safe, and refusing sizes that add up past `u64::MAX` as the decoder's
//!   budget does): both refuse, both wait, or both finish at the same byte with the same payload;
//! - `decode_in_place` and `skip` (fed in the same pieces) agree with `step`;
//! - a body limit only ever turns an answer into `TooLarge`, and does so when the payload exceeds it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::http::chunked::{ChunkError, ChunkedDecoder};

#[path = "../../tests/models/chunked.rs"]
mod model;

/// (payload so far, input bytes consumed, done).
type Decoded = Result<(Vec<u8>, usize, bool), ChunkError>;

/// `step` driven over `input` in pieces of the given sizes (cycled), as a connection reads.
fn incremental(input: &[u8], pieces: &[usize], limit: u64) -> Decoded {
    let mut d = ChunkedDecoder::new(limit);
    let mut out = Vec::new();
    let (mut pos, mut k) = (0, 0);
    while pos < input.len() {
        let end = (pos + pieces[k % pieces.len()].max(1)).min(input.len());
        k += 1;
        let mut p = pos;
        while p < end {
            let s = d.step(&input[p..end])?;
            assert!(s.consumed <= end - p, "consumed past the input");
            assert!(
                s.data.start <= s.data.end && s.data.end <= s.consumed,
                "payload outside the consumed part"
            );
            out.extend_from_slice(&input[p + s.data.start..p + s.data.end]);
            p += s.consumed;
            assert_eq!(s.done, d.is_done());
            if s.done {
                return Ok((out, p, true));
            }
            assert!(s.consumed > 0, "no progress on {} bytes", end - p);
        }
        pos = end;
    }
    Ok((out, pos, false))
}

/// `skip` driven in the same pieces: (consumed, done).
fn skipped(input: &[u8], pieces: &[usize]) -> Result<(usize, bool), ChunkError> {
    let mut d = ChunkedDecoder::new(u64::MAX);
    let (mut pos, mut k) = (0, 0);
    while pos < input.len() {
        let end = (pos + pieces[k % pieces.len()].max(1)).min(input.len());
        k += 1;
        let (n, done) = d.skip(&input[pos..end])?;
        if done {
            return Ok((pos + n, true));
        }
        assert_eq!(n, end - pos, "skip stopped early without finishing");
        pos = end;
    }
    Ok((pos, false))
}

fn pieces(seed: u8, max: usize) -> Vec<usize> {
    let mut x = seed as u32 | 0x100;
    (0..7)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            1 + (x as usize % max)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (seed, cfg, body) = (data[0], data[1], &data[2..]);
    let one = incremental(body, &[body.len().max(1)], u64::MAX);
    let split = pieces(seed, (cfg as usize & 31) + 1);
    assert_eq!(
        incremental(body, &split, u64::MAX),
        one,
        "pieces {split:?} disagree with one piece"
    );
    assert_eq!(
        incremental(body, &[1], u64::MAX),
        one,
        "byte by byte disagrees with one piece"
    );

    // The reference model.
    let mapped = match &one {
        Err(_) => Err(()),
        Ok((p, used, true)) => Ok(Some((p.clone(), *used))),
        Ok((_, _, false)) => Ok(None),
    };
    assert_eq!(
        model::reference(body),
        mapped,
        "reference model disagrees with the decoder"
    );

    // decode_in_place and skip.
    let mut copy = body.to_vec();
    let inplace = ChunkedDecoder::new(u64::MAX).decode_in_place(&mut copy);
    match (&one, inplace) {
        (Err(e), r) => assert_eq!(r, Err(*e)),
        (Ok((p, used, done)), Ok((len, consumed, d))) => {
            assert_eq!((&copy[..len], consumed, d), (&p[..], *used, *done));
            assert_eq!(
                &copy[consumed..],
                &body[consumed..],
                "bytes after the body were touched"
            );
        }
        (Ok(_), Err(e)) => panic!("decode_in_place refused ({e:?}) what step accepts"),
    }
    let sk = skipped(body, &split);
    assert_eq!(
        sk,
        one.clone().map(|(_, used, done)| (used, done)),
        "skip disagrees with step"
    );

    // A body limit.
    let limit = (cfg >> 5) as u64 * 24;
    let lim = incremental(body, &split, limit);
    match (&one, &lim) {
        (_, Ok(x)) => assert_eq!(Ok(x), one.as_ref(), "limit {limit} changed an accepted answer"),
        (Ok((p, _, done)), Err(e)) => {
            assert_eq!(*e, ChunkError::TooLarge);
            assert!(
                !done || p.len() as u64 > limit,
                "limit {limit} refused a {}-byte payload",
                p.len()
            );
        }
        (Err(a), Err(b)) => assert!(b == a || *b == ChunkError::TooLarge),
    }
    if let Ok((p, _, _)) = &one {
        if p.len() as u64 > limit {
            assert_eq!(
                lim,
                Err(ChunkError::TooLarge),
                "payload over the limit {limit} accepted"
            );
        }
    }
});
