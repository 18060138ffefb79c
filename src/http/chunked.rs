//! Strict chunked transfer coding (RFC 9112 section 7.1), as an incremental, allocation-free decoder.
//!
//! The decoder is fed whatever bytes have arrived and hands back one piece at a time: how many input bytes it
//! consumed and which of them (if any) are payload. It never needs more than one byte of look-ahead, so any
//! split of the input gives the same result. Refused, unlike `httparse::parse_chunk_size`: an empty size,
//! `0x` prefixes, more than 16 hex digits, whitespace around the size, a bare LF or CR anywhere, chunk data
//! not followed by CRLF, control bytes in chunk extensions, and trailer sections larger than
//! [`MAX_TRAILER_BYTES`]. Trailer fields are consumed and dropped, never merged into a head; a response
//! relayed as chunks keeps its valid trailer lines only (`relay_in_place`).

use std::ops::Range;

/// Largest chunk-size line extension we accept (bytes after the size, before CRLF). Real clients send none.
pub const MAX_EXTENSION_BYTES: usize = 4096;
/// Largest trailer section we read (and drop).
pub const MAX_TRAILER_BYTES: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// The chunk size is empty, not hex, or longer than 16 digits.
    BadSize,
    /// A chunk extension holds a control byte or is too long.
    BadExtension,
    /// A line did not end in CRLF (bare CR or LF, or chunk data not followed by CRLF).
    BadLineEnding,
    /// The trailer section is malformed or too long.
    BadTrailer,
    /// The chunks announce more data than the decoder's limit.
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    /// Just after `;`: an extension name must follow.
    ExtStart,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLineLf,
    TrailerEndLf,
    Done,
}

/// One step of decoding: `consumed` input bytes were used; `data` (a range within the input, inside the
/// consumed part) is payload; `done` once the last chunk and trailer section have been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub consumed: usize,
    pub data: Range<usize>,
    pub done: bool,
}

/// Where the relay filter is within a trailer line (`relay_in_place`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// In the field name: its length so far, and whether it is still a valid token, and still a prefix of
    /// `content-length` / `transfer-encoding`. `shown`: part of it was relayed with an earlier input.
    Name {
        len: u16,
        token: bool,
        cl: bool,
        te: bool,
        shown: bool,
    },
    Keep,
    Drop,
}

const CL: &[u8] = b"content-length";
const TE: &[u8] = b"transfer-encoding";

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    line: Line,
    size: u64,
    digits: u8,
    line_bytes: usize,
    trailer_bytes: usize,
    /// Payload bytes still allowed (the body limit), decremented as chunk sizes are read.
    budget: u64,
}

impl ChunkedDecoder {
    /// A decoder refusing bodies whose chunks announce more than `limit` bytes in total.
    pub fn new(limit: u64) -> Self {
        ChunkedDecoder {
            state: State::Size,
            line: Line::Keep,
            size: 0,
            digits: 0,
            line_bytes: 0,
            trailer_bytes: 0,
            budget: limit,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input` until a piece of payload is found, the input is used up, or the body ends.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => break,
                State::Data => {
                    let n = (input.len() - i).min(self.size as usize);
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Step {
                        consumed: i + n,
                        data: i..i + n,
                        done: false,
                    });
                }
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.digits == 16 {
                            return Err(ChunkError::BadSize);
                        }
                        self.digits += 1;
                        self.size = (self.size << 4) | hex(b);
                    }
                    b';' if self.digits > 0 => {
                        self.state = State::ExtStart;
                        self.line_bytes = 0;
                    }
                    b'\r' if self.digits > 0 => self.state = State::SizeLf,
                    _ => return Err(ChunkError::BadSize),
                },
                State::ExtStart => {
                    if !super::is_tchar(b) {
                        return Err(ChunkError::BadExtension);
                    }
                    self.state = State::Ext;
                }
                State::Ext => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => {
                        self.line_bytes += 1;
                        if self.line_bytes > MAX_EXTENSION_BYTES {
                            return Err(ChunkError::BadExtension);
                        }
                    }
                    b'\n' => return Err(ChunkError::BadLineEnding),
                    _ => return Err(ChunkError::BadExtension),
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadLineEnding);
                    }
                    if self.size > self.budget {
                        return Err(ChunkError::TooLarge);
                    }
                    self.budget -= self.size;
                    self.digits = 0;
                    if self.size == 0 {
                        // Stop at the trailer section: `relay_in_place` filters it byte by byte.
                        self.state = State::TrailerStart;
                        return Ok(Step {
                            consumed: i + 1,
                            data: 0..0,
                            done: false,
                        });
                    }
                    self.state = State::Data;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::BadLineEnding);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadLineEnding);
                    }
                    self.state = State::Size;
                }
                State::TrailerStart => match b {
                    b'\r' => self.state = State::TrailerEndLf,
                    b'\n' => return Err(ChunkError::BadLineEnding),
                    _ => {
                        self.state = State::TrailerLine;
                        self.trailer_byte(b)?;
                    }
                },
                State::TrailerLine => match b {
                    b'\r' => self.state = State::TrailerLineLf,
                    b'\n' => return Err(ChunkError::BadLineEnding),
                    _ => self.trailer_byte(b)?,
                },
                State::TrailerLineLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadLineEnding);
                    }
                    self.state = State::TrailerStart;
                }
                State::TrailerEndLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadLineEnding);
                    }
                    self.state = State::Done;
                    return Ok(Step {
                        consumed: i + 1,
                        data: 0..0,
                        done: true,
                    });
                }
            }
            i += 1;
        }
        Ok(Step {
            consumed: i,
            data: 0..0,
            done: self.state == State::Done,
        })
    }

    fn trailer_byte(&mut self, b: u8) -> Result<(), ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILER_BYTES || (b < 0x20 && b != b'\t') || b == 0x7f {
            return Err(ChunkError::BadTrailer);
        }
        Ok(())
    }

    /// Walks `input` to the end of the body or of the input, ignoring payload (for relaying chunked
    /// responses as they are). Returns the bytes consumed and whether the body ended.
    pub fn skip(&mut self, input: &[u8]) -> Result<(usize, bool), ChunkError> {
        let mut pos = 0;
        loop {
            let s = self.step(&input[pos..])?;
            pos += s.consumed;
            if s.done || pos == input.len() {
                return Ok((pos, s.done));
            }
        }
    }

    /// Like `skip`, for a body relayed as chunks, but filters the trailer section in place: a trailer line
    /// without a colon, with an empty or invalid name, or carrying a framing field (`Content-Length`,
    /// `Transfer-Encoding`) is removed; the other trailer lines, the chunks and their framing are kept.
    /// Returns (bytes kept, now at the front of `buf`; bytes consumed; done). A line is decided at its colon
    /// or, without one, at its end; a bad line whose name began in an earlier input (already relayed) is a
    /// `BadTrailer` error: the response is then cut, never relayed as complete.
    pub fn relay_in_place(&mut self, buf: &mut [u8]) -> Result<(usize, usize, bool), ChunkError> {
        let (mut read, mut write) = (0, 0);
        while read < buf.len() && self.state != State::Done {
            let before = self.state;
            if !matches!(
                before,
                State::TrailerStart | State::TrailerLine | State::TrailerLineLf | State::TrailerEndLf
            ) {
                let s = self.step(&buf[read..])?;
                buf.copy_within(read..read + s.consumed, write);
                read += s.consumed;
                write += s.consumed;
                continue;
            }
            let b = buf[read];
            self.step(&buf[read..read + 1])?;
            read += 1;
            if before == State::TrailerStart && b != b'\r' {
                self.line = Line::Name {
                    len: 0,
                    token: true,
                    cl: true,
                    te: true,
                    shown: false,
                };
            } else if before == State::TrailerStart {
                self.line = Line::Keep; // the empty line ending the section
            }
            let keep = match self.line {
                Line::Keep => true,
                Line::Drop => false,
                Line::Name {
                    len,
                    token,
                    cl,
                    te,
                    shown,
                } => {
                    if b == b':' || b == b'\r' {
                        let n = len as usize;
                        let bad = b == b'\r' || n == 0 || !token || (cl && n == CL.len()) || (te && n == TE.len());
                        if bad && shown {
                            return Err(ChunkError::BadTrailer);
                        }
                        if bad {
                            write -= n; // take back the name written so far
                        }
                        self.line = if bad { Line::Drop } else { Line::Keep };
                        !bad
                    } else {
                        let i = len as usize;
                        let l = b.to_ascii_lowercase();
                        self.line = Line::Name {
                            len: len.saturating_add(1),
                            token: token && super::is_tchar(b),
                            cl: cl && CL.get(i) == Some(&l),
                            te: te && TE.get(i) == Some(&l),
                            shown,
                        };
                        true
                    }
                }
            };
            if keep {
                buf[write] = b;
                write += 1;
            }
        }
        if let Line::Name { ref mut shown, .. } = self.line {
            *shown = true; // what was written of the name goes out with this input
        }
        Ok((write, read, self.state == State::Done))
    }

    /// Decodes `buf[..len]` in place: payload is moved to the front. Returns (payload length, bytes consumed,
    /// done). Bytes after `consumed` were not looked at (they follow the body).
    pub fn decode_in_place(&mut self, buf: &mut [u8]) -> Result<(usize, usize, bool), ChunkError> {
        let (mut read, mut write) = (0, 0);
        loop {
            let s = self.step(&buf[read..])?;
            let (a, b) = (read + s.data.start, read + s.data.end);
            buf.copy_within(a..b, write);
            write += b - a;
            read += s.consumed;
            if s.done || read == buf.len() {
                return Ok((write, read, s.done));
            }
        }
    }
}

fn hex(b: u8) -> u64 {
    (match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes all of `input` (in pieces of `split` bytes) into a Vec.
    pub(crate) fn decode(input: &[u8], split: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = ChunkedDecoder::new(u64::MAX);
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + split).min(input.len());
            let mut p = pos;
            while p < end {
                let s = d.step(&input[p..end])?;
                out.extend_from_slice(&input[p + s.data.start..p + s.data.end]);
                p += s.consumed;
                if s.done {
                    return Ok((out, p, true));
                }
            }
            pos = end;
        }
        Ok((out, pos, false))
    }

    #[test]
    fn decodes_in_any_split() {
        let body = b"5\r\nhello\r\n6;name=val\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for split in 1..body.len() {
            let (out, used, done) = decode(body, split).unwrap();
            assert_eq!(out, b"hello world");
            assert!(done);
            assert_eq!(&body[used..], b"NEXT");
        }
    }

    #[test]
    fn refuses_bad_framing() {
        let bad: &[&[u8]] = &[
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"0\r\n\r\r\n",
            b"0\r\nX: y\n\r\n",
            b"-1\r\n",
            b"2;\r\naa\r\n0\r\n\r\n",
            b"2; a\r\naa\r\n0\r\n\r\n",
        ];
        for b in bad {
            assert!(decode(b, b.len()).is_err(), "accepted {:?}", String::from_utf8_lossy(b));
        }
    }

    /// `relay_in_place` over `input` cut in pieces of `split` bytes: (what is relayed, done).
    fn relay(input: &[u8], split: usize) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut d = ChunkedDecoder::new(u64::MAX);
        let mut out = Vec::new();
        for piece in input.chunks(split) {
            let mut piece = piece.to_vec();
            let (keep, used, done) = d.relay_in_place(&mut piece)?;
            out.extend_from_slice(&piece[..keep]);
            if done {
                assert_eq!(used, piece.len(), "nothing follows the body in these inputs");
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }

    #[test]
    fn relayed_trailers_lose_framing_fields_and_lines_without_colon() {
        let body = b"3\r\nabc\r\n0\r\nX-Ok: 1\r\nContent-Length: 5\r\ntransfer-encoding: chunked\r\nno colon here\r\n: empty\r\nBad Name: x\r\nContent-Lengthy: 2\r\nX-Ok2: a:b\r\n\r\n";
        let want = b"3\r\nabc\r\n0\r\nX-Ok: 1\r\nContent-Lengthy: 2\r\nX-Ok2: a:b\r\n\r\n";
        assert_eq!(relay(body, body.len()).unwrap(), (want.to_vec(), true));
        // Without trailers, and valid trailers split anywhere: relayed unchanged.
        let plain = b"3\r\nabc\r\n0\r\nX-Ok: 1\r\nX-Two: 2\r\n\r\n";
        for split in 1..plain.len() {
            assert_eq!(relay(plain, split).unwrap(), (plain.to_vec(), true), "split {split}");
        }
        // A bad line decided in the input where it began is removed, wherever the input is cut after it.
        let (out, done) = relay(b"0\r\nContent-Length: 5\r\n\r\n", 20).unwrap();
        assert_eq!((out.as_slice(), done), (&b"0\r\n\r\n"[..], true));
        // A bad name cut by a read was partly relayed already: an error, never a complete response.
        assert_eq!(relay(b"0\r\nContent-Length: 5\r\n\r\n", 6), Err(ChunkError::BadTrailer));
    }

    #[test]
    fn limit_and_sixteen_digits() {
        let mut d = ChunkedDecoder::new(10);
        assert_eq!(d.step(b"b\r\n"), Err(ChunkError::TooLarge));
        let mut d = ChunkedDecoder::new(u64::MAX);
        assert!(d.step(b"ffffffffffffffff\r\n").is_ok());
    }

    #[test]
    fn in_place_and_skip() {
        let mut v = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".to_vec();
        let (len, used, done) = ChunkedDecoder::new(u64::MAX).decode_in_place(&mut v).unwrap();
        assert_eq!((&v[..len], used, done), (&b"abcde"[..], 20, true));
        let mut d = ChunkedDecoder::new(u64::MAX);
        assert_eq!(d.skip(b"3\r\nab").unwrap(), (5, false));
        assert_eq!(d.skip(b"c\r\n0\r\n\r\nzz").unwrap(), (8, true));
    }
}
