//! Per-worker buffer pool. A connection holds buffers only while it has bytes in flight; an idle keep-alive
//! connection holds none. Buffers that grew for a large body are dropped rather than kept.

use crate::buf::Buf;

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
