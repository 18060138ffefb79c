//! Request bodies sent with `Content-Encoding: gzip` or `deflate`, decoded only to be validated (the encoded
//! bytes are what is forwarded). Pure: bytes in, bytes out into a buffer the decoder keeps.
//!
//! Contract: [`Decoder::decode`] never produces more than `limit` bytes, and stops as soon as it would: a
//! decompression bomb costs the CPU of decoding `limit` bytes, not of its expansion. The output buffer grows to
//! the largest body decoded and is kept: once warm, decoding allocates nothing (`flate2`'s inflate state is
//! allocated once, in [`Decoder::new`], and reset per body).

use flate2::{Crc, Decompress, FlushDecompress, Status};

/// A content coding the JSON rule can look through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// RFC 1952 (`gzip`, `x-gzip`).
    Gzip,
    /// The zlib format of RFC 1950 (HTTP's `deflate`); raw RFC 1951 data, which some clients send, too.
    Deflate,
}

impl Coding {
    /// The coding a `Content-Encoding` token names (case-insensitive), if any.
    pub fn parse(token: &[u8]) -> Option<Coding> {
        if token.eq_ignore_ascii_case(b"gzip") || token.eq_ignore_ascii_case(b"x-gzip") {
            Some(Coding::Gzip)
        } else if token.eq_ignore_ascii_case(b"deflate") {
            Some(Coding::Deflate)
        } else {
            None
        }
    }

    /// This coding's bit in a set of codings.
    pub fn bit(self) -> u8 {
        match self {
            Coding::Gzip => 1,
            Coding::Deflate => 2,
        }
    }
}

/// Why a coded body was not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// It decodes to more than the limit (the body size limit, or the ratio bound).
    TooLarge,
    /// Not a valid stream of its coding: bad header, corrupt data, checksum mismatch, truncated, trailing bytes
    /// (a gzip body of several members, which RFC 1952 allows but no HTTP client sends, is refused too).
    Malformed,
}

pub struct Decoder {
    inflate: Decompress,
    /// The state's zlib-header mode (a reset sets it).
    zlib: bool,
    crc: Crc,
    out: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

/// Room kept free in the output for one inflate call.
const STEP: usize = 32 * 1024;
/// An output buffer larger than this is dropped before a decode whose limit is less than half of it.
const SHRINK_PAST: usize = 8 << 20;

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            inflate: Decompress::new(false),
            zlib: false,
            crc: Crc::new(),
            out: Vec::new(),
        }
    }

    /// Decodes the whole `body` of coding `coding`; at most `limit` decoded bytes.
    pub fn decode(&mut self, coding: Coding, body: &[u8], limit: usize) -> Result<&[u8], DecodeError> {
        self.out.clear();
        // A buffer grown for a very large body (or a bomb up to a large --max-body) is not kept for ever.
        if self.out.capacity() > SHRINK_PAST && limit < self.out.capacity() / 2 {
            self.out = Vec::new();
        }
        match coding {
            Coding::Gzip => {
                let start = gzip_header(body).ok_or(DecodeError::Malformed)?;
                let used = self.inflate_all(false, &body[start..], limit)?;
                let trailer = &body[start + used..];
                if trailer.len() != 8 {
                    return Err(DecodeError::Malformed);
                }
                self.crc.reset();
                self.crc.update(&self.out);
                let crc = u32::from_le_bytes(trailer[..4].try_into().unwrap());
                let size = u32::from_le_bytes(trailer[4..].try_into().unwrap());
                if crc != self.crc.sum() || size != self.out.len() as u32 {
                    return Err(DecodeError::Malformed);
                }
            }
            Coding::Deflate => {
                // zlib when the two header bytes say so (RFC 1950 2.2), raw deflate otherwise.
                let zlib =
                    body.len() >= 2 && body[0] & 0x0f == 8 && u16::from_be_bytes([body[0], body[1]]).is_multiple_of(31);
                let used = self.inflate_all(zlib, body, limit)?;
                if used != body.len() {
                    return Err(DecodeError::Malformed);
                }
            }
        }
        Ok(&self.out)
    }

    /// Inflates `input` into `out` until the end of the stream; returns the input bytes it used.
    fn inflate_all(&mut self, zlib: bool, input: &[u8], limit: usize) -> Result<usize, DecodeError> {
        if zlib != self.zlib {
            self.inflate = Decompress::new(zlib);
            self.zlib = zlib;
        } else {
            self.inflate.reset(zlib);
        }
        loop {
            if self.out.len() > limit {
                return Err(DecodeError::TooLarge);
            }
            // Never past the limit (plus one byte, to tell "exactly the limit" from "more").
            let room = (limit + 1 - self.out.len()).min(STEP);
            if self.out.capacity() - self.out.len() < room {
                // Doubling, but never past what the limit can use.
                let want = room.max(self.out.capacity()).min(limit + 1 + STEP - self.out.len());
                self.out.reserve(want.max(room));
            }
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let status = inflate_into(&mut self.inflate, &input[in_before as usize..], &mut self.out, room)
                .map_err(|_| DecodeError::Malformed)?;
            match status {
                Status::StreamEnd if self.out.len() > limit => return Err(DecodeError::TooLarge),
                Status::StreamEnd => return Ok(self.inflate.total_in() as usize),
                _ if self.inflate.total_in() == in_before && self.inflate.total_out() == out_before => {
                    // No progress with room to spare: the input ended before the stream did.
                    return Err(DecodeError::Malformed);
                }
                _ => {}
            }
        }
    }
}

/// One inflate call appending at most `room` bytes to `out` (whose capacity already has them).
fn inflate_into(
    d: &mut Decompress,
    input: &[u8],
    out: &mut Vec<u8>,
    room: usize,
) -> Result<Status, flate2::DecompressError> {
    let len = out.len();
    out.resize(len + room, 0);
    let before = d.total_out();
    let r = d.decompress(input, &mut out[len..], FlushDecompress::None);
    out.truncate(len + (d.total_out() - before) as usize);
    r
}

/// The length of a gzip member header (RFC 1952 2.3), or `None` if it is not one.
fn gzip_header(b: &[u8]) -> Option<usize> {
    const FTEXT_FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if b.len() < 10 || b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 || b[3] & 0xe0 != 0 {
        return None;
    }
    let flags = b[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let n = u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]) as usize;
        at += 2 + n;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            at += b.get(at..)?.iter().position(|&c| c == 0)? + 1;
        }
    }
    if flags & FTEXT_FHCRC != 0 {
        at += 2;
    }
    (at <= b.len()).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn zlib(b: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn raw(b: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn codings_round_trip() {
        let doc = br#"{"a":[1,2,3],"b":"text \u00e9"}"#.repeat(100);
        let mut d = Decoder::new();
        assert_eq!(d.decode(Coding::Gzip, &gzip(&doc), 1 << 20).unwrap(), &doc[..]);
        assert_eq!(d.decode(Coding::Deflate, &zlib(&doc), 1 << 20).unwrap(), &doc[..]);
        assert_eq!(d.decode(Coding::Deflate, &raw(&doc), 1 << 20).unwrap(), &doc[..]);
        // Exactly at the limit is fine; one byte more is not.
        assert_eq!(d.decode(Coding::Gzip, &gzip(&doc), doc.len()).unwrap().len(), doc.len());
        assert_eq!(
            d.decode(Coding::Gzip, &gzip(&doc), doc.len() - 1).map(|b| b.len()),
            Err(DecodeError::TooLarge)
        );
        assert_eq!(d.decode(Coding::Gzip, &gzip(b""), 10).unwrap(), b"");
        assert_eq!(Coding::parse(b"X-GZIP"), Some(Coding::Gzip));
        assert_eq!(Coding::parse(b"br"), None);
    }

    #[test]
    fn broken_streams_are_refused() {
        let doc = b"{\"key\":\"value\"}".repeat(50);
        let g = gzip(&doc);
        let mut d = Decoder::new();
        for cut in [0, 5, 10, g.len() / 2, g.len() - 8, g.len() - 1] {
            assert_eq!(
                d.decode(Coding::Gzip, &g[..cut], 1 << 20),
                Err(DecodeError::Malformed),
                "cut at {cut}"
            );
        }
        let mut bad_crc = g.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 1;
        assert_eq!(d.decode(Coding::Gzip, &bad_crc, 1 << 20), Err(DecodeError::Malformed));
        let mut trailing = g.clone();
        trailing.push(0);
        assert_eq!(d.decode(Coding::Gzip, &trailing, 1 << 20), Err(DecodeError::Malformed));
        let z = zlib(&doc);
        assert_eq!(
            d.decode(Coding::Deflate, &z[..z.len() - 3], 1 << 20),
            Err(DecodeError::Malformed)
        );
        assert_eq!(
            d.decode(Coding::Deflate, b"not deflate at all", 1 << 20),
            Err(DecodeError::Malformed)
        );
        assert_eq!(d.decode(Coding::Gzip, &doc, 1 << 20), Err(DecodeError::Malformed));
        // And the decoder is still good afterwards.
        assert_eq!(d.decode(Coding::Gzip, &g, 1 << 20).unwrap(), &doc[..]);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        // 64 MiB of zeros in about 64 KB: decoding stops once past 1 MiB, having read a small part of it.
        let zeros = vec![0u8; 64 << 20];
        let bomb = gzip(&zeros);
        let mut d = Decoder::new();
        assert_eq!(d.decode(Coding::Gzip, &bomb, 1 << 20), Err(DecodeError::TooLarge));
        assert!(d.out.len() <= (1 << 20) + 1, "{} bytes decoded", d.out.len());
        assert!(
            d.inflate.total_in() < bomb.len() as u64 / 32,
            "{} of {} read",
            d.inflate.total_in(),
            bomb.len()
        );
    }

    #[test]
    fn warm_decoding_keeps_its_buffers() {
        let doc = b"[1,2,3]".repeat(5000);
        let g = gzip(&doc);
        let mut d = Decoder::new();
        d.decode(Coding::Gzip, &g, 1 << 20).unwrap();
        let cap = d.out.capacity();
        for _ in 0..10 {
            d.decode(Coding::Gzip, &g, 1 << 20).unwrap();
        }
        assert_eq!(d.out.capacity(), cap);
    }
}
