//! The `Date` field (RFC 9110 section 5.6.7, IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`. Pure: the
//! caller passes the time (seconds since the Unix epoch).

/// The IMF-fixdate of `unix_secs`, always 29 bytes.
pub fn imf_fixdate(unix_secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, for dates after 1970).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |out: &mut [u8; 29], at: usize, v: u64| {
        out[at] = b'0' + (v / 10) as u8;
        out[at + 1] = b'0' + (v % 10) as u8;
    };
    two(&mut out, 5, day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    let y = year % 10_000;
    two(&mut out, 12, y / 100);
    two(&mut out, 14, y % 100);
    two(&mut out, 17, secs / 3600);
    two(&mut out, 20, secs / 60 % 60);
    two(&mut out, 23, secs % 60);
    out
}

/// The current `Date` value, formatted at most once a second from the wall clock its owner passes in.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixdates() {
        let d = |s| String::from_utf8(imf_fixdate(s).to_vec()).unwrap();
        assert_eq!(d(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(d(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(d(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(d(1_796_601_599), "Sun, 06 Dec 2026 23:59:59 GMT");
        assert_eq!(d(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
    }
}
