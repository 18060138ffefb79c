//! A byte buffer for socket I/O: a zero-initialised `Vec` whose whole capacity is usable, with a read and a
//! write cursor. Reads go into `spare()` without re-initialising memory; consumers take from `data()`.
//! Growth happens only when a request or response needs more than the standard size.

/// Anything the HTTP writers can append bytes to.
pub trait Out {
    fn put(&mut self, bytes: &[u8]);
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

#[derive(Debug, Default)]
pub struct Buf {
    mem: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    pub fn with_capacity(n: usize) -> Buf {
        Buf {
            mem: vec![0; n],
            start: 0,
            end: 0,
        }
    }

    /// Bytes held and not yet consumed.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.mem[self.start..self.end]
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.end]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    pub fn capacity(&self) -> usize {
        self.mem.len()
    }

    /// Free room after the data (compacts first if the data does not start at 0 and room is short).
    #[inline]
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && self.end == self.mem.len() {
            self.compact();
        }
        &mut self.mem[self.end..]
    }

    /// Marks `n` bytes of `spare()` as filled.
    #[inline]
    pub fn filled(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.mem.len());
        self.end += n;
    }

    /// Drops `n` bytes from the front.
    #[inline]
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Keeps only the first `n` bytes of the data.
    pub fn truncate(&mut self, n: usize) {
        self.end = self.start + n.min(self.len());
        if self.start == self.end {
            self.clear();
        }
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    pub fn compact(&mut self) {
        if self.start > 0 {
            self.mem.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Makes room for at least `n` more bytes after the data.
    #[inline]
    pub fn reserve(&mut self, n: usize) {
        if self.mem.len() - self.end < n {
            self.grow(n);
        }
    }

    #[cold]
    fn grow(&mut self, n: usize) {
        self.compact();
        if self.mem.len() - self.end < n {
            self.mem.resize(self.end + n, 0);
        }
    }
}

impl Out for Buf {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.mem[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }
}

/// Appends the decimal form of `n` without formatting machinery.
pub fn put_u64(out: &mut impl Out, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put(&tmp[i..]);
}

/// Per-worker buffer pool. A connection holds buffers only while it has bytes in flight; an idle keep-alive
/// connection holds none. Buffers that grew for a large body are dropped rather than kept.
/// Buffers larger than this many standard sizes are freed on return instead of pooled.
const MAX_POOLED_GROWTH: usize = 4;

#[derive(Debug)]
pub struct BufPool {
    free: Vec<Buf>,
    size: usize,
    max_free: usize,
}

impl BufPool {
    pub fn new(size: usize, max_free: usize) -> BufPool {
        BufPool {
            free: Vec::with_capacity(max_free),
            size,
            max_free,
        }
    }

    pub fn get(&mut self) -> Buf {
        self.free.pop().unwrap_or_else(|| Buf::with_capacity(self.size))
    }

    pub fn put(&mut self, mut b: Buf) {
        if self.free.len() < self.max_free && b.capacity() <= self.size * MAX_POOLED_GROWTH {
            b.clear();
            self.free.push(b);
        }
    }

    /// Returns the buffer in `slot` if it holds no data.
    pub fn put_if_empty(&mut self, slot: &mut Option<Buf>) {
        if slot.as_ref().is_some_and(|b| b.is_empty()) {
            self.put(slot.take().unwrap());
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors() {
        let mut b = Buf::with_capacity(8);
        b.spare()[..5].copy_from_slice(b"hello");
        b.filled(5);
        b.consume(2);
        assert_eq!(b.data(), b"llo");
        b.put(b"world!");
        assert_eq!(b.data(), b"lloworld!");
        assert!(b.capacity() >= 9);
        b.truncate(3);
        assert_eq!(b.data(), b"llo");
        b.consume(3);
        assert!(b.is_empty());
        let mut v = Vec::new();
        put_u64(&mut v, 0);
        put_u64(&mut v, 18446744073709551615);
        assert_eq!(v, b"018446744073709551615");
    }
}
