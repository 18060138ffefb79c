//! The current `Date` value for the ingress's own answers, formatted at most once a second from the wall
//! clock the worker reads at the top of each loop iteration.

use crate::http::date::imf_fixdate;

pub struct DateCache {
    secs: u64,
    text: [u8; 29],
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache {
            secs: 0,
            text: imf_fixdate(0),
        }
    }
}

impl DateCache {
    /// The wall clock is now `secs` (Unix seconds).
    pub fn set(&mut self, secs: u64) {
        if secs != self.secs {
            self.secs = secs;
            self.text = imf_fixdate(secs);
        }
    }

    /// `Date` (IMF-fixdate) as of the last [`DateCache::set`].
    pub fn text(&self) -> &[u8; 29] {
        &self.text
    }
}
