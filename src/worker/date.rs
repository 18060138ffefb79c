//! The current `Date` value for the ingress's own answers, formatted at most once a second. Reads the wall
//! clock (`SystemTime`, a vDSO call on Linux, no syscall).

use std::time::{SystemTime, UNIX_EPOCH};

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
    /// `Date` now (IMF-fixdate).
    pub fn now(&mut self) -> &[u8; 29] {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs {
            self.secs = secs;
            self.text = imf_fixdate(secs);
        }
        &self.text
    }
}
