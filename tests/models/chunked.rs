//! The reference chunked decoder (RFC 9112 section 7.1, with the ingress's strict grammar): one pass over all
//! of the input, written for clarity, not speed. The one model shared by the property tests
//! (`tests/framing_prop.rs`) and the `chunked` fuzz target (`fuzz/fuzz_targets/chunked.rs`), each of which
//! loads this file with `#[path]`: change it here only.
//!
//! The arithmetic is overflow-safe (a 16-digit size is up to 2^64 - 1), and sizes adding up past `u64::MAX`
//! are refused, as `ChunkedDecoder::new(u64::MAX)` does: its limit is a budget, and `u64::MAX` the largest.
#![allow(dead_code)]

/// Checks a chunk-size line (without its CRLF): `1*16HEXDIG [ ";" ext ]`, the extension starting with a token
/// character and holding no control byte but HTAB. `complete`: the line ended (so the size may not be empty).
pub fn size_line_ok(l: &[u8], complete: bool) -> bool {
    let (size, ext) = match l.iter().position(|&b| b == b';') {
        Some(i) => (&l[..i], Some(&l[i + 1..])),
        None => (l, None),
    };
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let size_ok = size.len() <= 16
        && size.iter().all(u8::is_ascii_hexdigit)
        && (!size.is_empty() || (!complete && ext.is_none()));
    let ext_ok = match ext {
        None => true,
        Some([]) => !complete,
        Some(e) => tchar(e[0]) && !e.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f),
    };
    size_ok && ext_ok
}

/// A trailer line (without its CRLF): no control byte but HTAB.
pub fn trailer_ok(l: &[u8]) -> bool {
    !l.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

/// Decodes the chunked body at the start of `input`. `Ok(Some((payload, used)))` once the last chunk and the
/// trailer section ended (`used`: the bytes of the body, anything after it untouched), `Ok(None)` if it needs
/// more bytes, `Err(())` if malformed or if the chunk sizes add up to more than `u64::MAX`.
pub fn reference(input: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ()> {
    let mut pos = 0;
    let mut announced: u64 = 0;
    let mut out = Vec::new();
    let line = |pos: usize| input[pos..].windows(2).position(|w| w == b"\r\n").map(|i| pos + i);
    // A line without its CRLF yet: malformed already if it has a bare LF, a CR not at the very end, or
    // content the line's grammar forbids.
    let partial = |pos: usize, ok: &dyn Fn(&[u8], bool) -> bool| {
        let rest = &input[pos..];
        let bad_ending = rest
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'\n' || (b == b'\r' && i + 1 < rest.len()));
        let (content, cr) = match rest.strip_suffix(b"\r") {
            Some(c) => (c, true),
            None => (rest, false),
        };
        if bad_ending || !ok(content, cr) {
            Err(())
        } else {
            Ok(None)
        }
    };
    loop {
        let Some(end) = line(pos) else {
            return partial(pos, &size_line_ok);
        };
        let l = &input[pos..end];
        if l.contains(&b'\n') || l.contains(&b'\r') || !size_line_ok(l, true) {
            return Err(());
        }
        let size_part = l.split(|&b| b == b';').next().unwrap();
        let size = u64::from_str_radix(std::str::from_utf8(size_part).unwrap(), 16).unwrap();
        announced = announced.checked_add(size).ok_or(())?;
        pos = end + 2;
        if size == 0 {
            // Trailer lines until an empty one.
            loop {
                let Some(end) = line(pos) else {
                    return partial(pos, &|l, _| trailer_ok(l));
                };
                let l = &input[pos..end];
                if l.contains(&b'\n') || l.contains(&b'\r') || !trailer_ok(l) {
                    return Err(());
                }
                pos = end + 2;
                if l.is_empty() {
                    return Ok(Some((out, pos)));
                }
            }
        }
        // The chunk's data and its CRLF, unless the input ends first.
        let avail = (input.len() - pos) as u64;
        if avail < size.saturating_add(2) {
            let tail = if avail > size {
                &input[pos + size as usize..]
            } else {
                &[][..]
            };
            return if tail.first().is_some_and(|&b| b != b'\r') {
                Err(())
            } else {
                Ok(None)
            };
        }
        let size = size as usize;
        out.extend_from_slice(&input[pos..pos + size]);
        if &input[pos + size..pos + size + 2] != b"\r\n" {
            return Err(());
        }
        pos += size + 2;
    }
}
