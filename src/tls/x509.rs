//! The two things the proxy reads from an X.509 certificate itself (RFC 5280): the DNS names of its subject
//! alternative names, and its notAfter time. A small DER walk over the TBSCertificate, nothing else; the
//! certificate is otherwise checked by rustls.
//!
//! The walk is strict DER where it reads (definite, minimal lengths; single-byte tags; nothing left over in a
//! structure it walks) and bounds-checked everywhere: any input gives `Ok` or `Err`, never a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What is read from one DER certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// dNSName entries of the subjectAltName extension, lower case, in order.
    pub dns_names: Vec<String>,
    /// The end of the validity period (notAfter), to the second.
    pub not_after: SystemTime,
}

// Universal tags (all primitive except SEQUENCE) and the context-specific ones of a TBSCertificate.
const BOOLEAN: u8 = 0x01;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
/// `[0] EXPLICIT Version`.
const VERSION: u8 = 0xa0;
/// `[1] IMPLICIT UniqueIdentifier` (a BIT STRING, primitive).
const ISSUER_UID: u8 = 0x81;
/// `[2] IMPLICIT UniqueIdentifier`.
const SUBJECT_UID: u8 = 0x82;
/// `[3] EXPLICIT Extensions`.
const EXTENSIONS: u8 = 0xa3;
/// `GeneralName`'s `dNSName [2] IA5String` (implicit, primitive).
const DNS_NAME: u8 = 0x82;
/// The content octets of the subjectAltName OID, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// Reads the fields from a DER-encoded certificate; `Err` says what is malformed.
pub fn fields(der: &[u8]) -> Result<Fields, String> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let mut outer = Reader::new(der);
    let cert = outer.expect(SEQUENCE, "Certificate")?;
    outer.end("Certificate")?;
    let mut cert = Reader::new(cert);
    let tbs = cert.expect(SEQUENCE, "TBSCertificate")?;
    cert.expect(SEQUENCE, "signatureAlgorithm")?;
    cert.expect(BIT_STRING, "signatureValue")?;
    cert.end("Certificate")?;

    let mut tbs = Reader::new(tbs);
    if tbs.peek() == Some(VERSION) {
        tbs.expect(VERSION, "version")?;
    }
    tbs.expect(INTEGER, "serialNumber")?;
    tbs.expect(SEQUENCE, "signature")?;
    tbs.expect(SEQUENCE, "issuer")?;
    let mut validity = Reader::new(tbs.expect(SEQUENCE, "validity")?);
    time(&mut validity, "notBefore")?;
    let not_after = time(&mut validity, "notAfter")?;
    validity.end("validity")?;
    tbs.expect(SEQUENCE, "subject")?;
    tbs.expect(SEQUENCE, "subjectPublicKeyInfo")?;
    if tbs.peek() == Some(ISSUER_UID) {
        tbs.expect(ISSUER_UID, "issuerUniqueID")?;
    }
    if tbs.peek() == Some(SUBJECT_UID) {
        tbs.expect(SUBJECT_UID, "subjectUniqueID")?;
    }
    let mut dns_names = Vec::new();
    if tbs.peek() == Some(EXTENSIONS) {
        let mut explicit = Reader::new(tbs.expect(EXTENSIONS, "extensions")?);
        let mut extensions = Reader::new(explicit.expect(SEQUENCE, "extensions")?);
        explicit.end("extensions")?;
        let mut seen_san = false;
        while !extensions.is_empty() {
            // Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
            let mut ext = Reader::new(extensions.expect(SEQUENCE, "extension")?);
            let id = ext.expect(OID, "extnID")?;
            if ext.peek() == Some(BOOLEAN) {
                ext.expect(BOOLEAN, "critical")?;
            }
            let value = ext.expect(OCTET_STRING, "extnValue")?;
            ext.end("extension")?;
            if id == SUBJECT_ALT_NAME {
                if seen_san {
                    return Err("two subjectAltName extensions".into());
                }
                seen_san = true;
                san_dns_names(value, &mut dns_names)?;
            }
        }
    }
    tbs.end("TBSCertificate")?;
    Ok(Fields { dns_names, not_after })
}

/// Appends the dNSName entries of a subjectAltName's value (`GeneralNames ::= SEQUENCE OF GeneralName`).
fn san_dns_names(value: &[u8], out: &mut Vec<String>) -> Result<(), String> {
    let mut outer = Reader::new(value);
    let mut names = Reader::new(outer.expect(SEQUENCE, "subjectAltName")?);
    outer.end("subjectAltName")?;
    while !names.is_empty() {
        let (tag, content) = names.any("GeneralName")?;
        if tag != DNS_NAME {
            continue;
        }
        if content.is_empty() {
            return Err("empty dNSName in subjectAltName".into());
        }
        if !content.is_ascii() {
            return Err("dNSName in subjectAltName is not IA5 (ASCII)".into());
        }
        let name: String = content.iter().map(|&b| char::from(b.to_ascii_lowercase())).collect();
        out.push(name);
    }
    Ok(())
}

/// Reads one `Time ::= CHOICE { utcTime UTCTime, generalTime GeneralizedTime }` in RFC 5280's DER form.
fn time(r: &mut Reader<'_>, what: &str) -> Result<SystemTime, String> {
    let (tag, text) = r.any(what)?;
    let bad = || format!("malformed {what}");
    let (year, rest) = match tag {
        // YYMMDDHHMMSSZ; YY >= 50 is 19YY, else 20YY (RFC 5280 section 4.1.2.5.1).
        UTC_TIME if text.len() == 13 => {
            let yy = i64::from(two_digits(text, 0).ok_or_else(bad)?);
            (
                if yy >= 50 { 1900 + yy } else { 2000 + yy },
                text.get(2..).ok_or_else(bad)?,
            )
        }
        // YYYYMMDDHHMMSSZ (no fractional seconds, section 4.1.2.5.2).
        GENERALIZED_TIME if text.len() == 15 => {
            let hi = i64::from(two_digits(text, 0).ok_or_else(bad)?);
            let lo = i64::from(two_digits(text, 2).ok_or_else(bad)?);
            (hi * 100 + lo, text.get(4..).ok_or_else(bad)?)
        }
        UTC_TIME | GENERALIZED_TIME => return Err(bad()),
        _ => return Err(format!("{what} is not a UTCTime or GeneralizedTime")),
    };
    // rest = MMDDHHMMSSZ
    let field = |at| two_digits(rest, at).ok_or_else(bad);
    let (month, day, hour, minute, second) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if rest.get(10) != Some(&b'Z')
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second);
    from_unix_seconds(secs).ok_or_else(|| format!("{what} is out of range"))
}

/// The value of two ASCII digits at `at`, if both are there and are digits.
fn two_digits(text: &[u8], at: usize) -> Option<u8> {
    match text.get(at..at.checked_add(2)?)? {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => Some((a - b'0') * 10 + (b - b'0')),
        _ => None,
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`); `month` 1-12.
pub fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `(year, month 1-12, day 1-31)` of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1; // 1..=31
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // 1..=12
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u8, day as u8)
}

/// `t` as seconds since the Unix epoch (negative before 1970), saturating at `i64`'s range.
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// The time `secs` seconds after the Unix epoch (before it if negative), if the platform can represent it.
pub fn from_unix_seconds(secs: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// `t` as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(t: SystemTime) -> String {
    let secs = unix_seconds(t);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A cursor over a run of DER TLVs.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Reader { rest }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Fails unless every byte has been read.
    fn end(&self, what: &str) -> Result<(), String> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(format!("{} unexpected bytes after {what}", self.rest.len()))
        }
    }

    /// The next TLV, which must have tag `tag`; its content octets.
    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        match self.any(what)? {
            (t, content) if t == tag => Ok(content),
            (t, _) => Err(format!("{what}: expected tag 0x{tag:02x}, found 0x{t:02x}")),
        }
    }

    /// The next TLV: its tag and content octets. Single-byte tags and definite, minimally encoded lengths only.
    fn any(&mut self, what: &str) -> Result<(u8, &'a [u8]), String> {
        let truncated = || format!("truncated {what}");
        let (&tag, rest) = self.rest.split_first().ok_or_else(truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(format!("{what}: multi-byte tag"));
        }
        let (&first, mut rest) = rest.split_first().ok_or_else(truncated)?;
        let len = match first {
            0..=0x7f => usize::from(first),
            0x80 => return Err(format!("{what}: indefinite length")),
            _ => {
                let n = usize::from(first & 0x7f);
                if n > 4 {
                    return Err(format!("{what}: length too large"));
                }
                let (bytes, after) = rest.split_at_checked(n).ok_or_else(truncated)?;
                rest = after;
                let len = bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
                // DER: the shortest form (no leading zero octet, long form only from 128 on).
                if bytes.first() == Some(&0) || len < 0x80 {
                    return Err(format!("{what}: non-minimal length"));
                }
                len
            }
        };
        let (content, after) = rest.split_at_checked(len).ok_or_else(truncated)?;
        self.rest = after;
        Ok((tag, content))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER TLV.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = content.len();
        if n < 0x80 {
            out.push(n as u8);
        } else if n < 0x100 {
            out.extend([0x81, n as u8]);
        } else {
            out.extend([0x82, (n >> 8) as u8, n as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }

    /// A synthetic certificate: the TBSCertificate fields this module walks, with the given validity times and
    /// extensions (`None`: no `[3]`).
    fn synthetic(not_before: Vec<u8>, not_after: Vec<u8>, extensions: Option<Vec<Vec<u8>>>) -> Vec<u8> {
        let alg = tlv(SEQUENCE, &tlv(OID, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]));
        let name = tlv(SEQUENCE, &[]);
        let mut tbs = vec![
            tlv(VERSION, &tlv(INTEGER, &[2])),
            tlv(INTEGER, &[1]),
            alg.clone(),
            name.clone(),
            tlv(SEQUENCE, &cat(&[not_before, not_after])),
            name,
            tlv(SEQUENCE, &cat(&[alg.clone(), tlv(BIT_STRING, &[0, 1, 2, 3])])),
        ];
        if let Some(exts) = extensions {
            tbs.push(tlv(EXTENSIONS, &tlv(SEQUENCE, &cat(&exts))));
        }
        tlv(
            SEQUENCE,
            &cat(&[tlv(SEQUENCE, &cat(&tbs)), alg, tlv(BIT_STRING, &[0, 9])]),
        )
    }

    fn san(names: &[Vec<u8>]) -> Vec<u8> {
        tlv(
            SEQUENCE,
            &cat(&[
                tlv(OID, SUBJECT_ALT_NAME),
                tlv(OCTET_STRING, &tlv(SEQUENCE, &cat(names))),
            ]),
        )
    }

    fn utc(s: &str) -> Vec<u8> {
        tlv(UTC_TIME, s.as_bytes())
    }

    fn gen(s: &str) -> Vec<u8> {
        tlv(GENERALIZED_TIME, s.as_bytes())
    }

    /// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 36500 -subj /CN=fixture.example
    /// -addext subjectAltName=DNS:Fixture.Example,IP:192.0.2.1,email:a@b.example,DNS:*.fixture.example,URI:...`:
    /// notBefore a UTCTime, notAfter a GeneralizedTime (2126), SANs of four kinds.
    const FIXTURE: &str = "\
-----BEGIN CERTIFICATE-----
MIIB4jCCAYmgAwIBAgIUZDvURAywl7oKvM4vvt4XdvIqHnswCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPZml4dHVyZS5leGFtcGxlMCAXDTI2MTIwNzE5NDIyMFoYDzIx
MjYxMTEzMTk0MjIwWjAaMRgwFgYDVQQDDA9maXh0dXJlLmV4YW1wbGUwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAT/63jGYAY3lHp+AhsKs96/KWTJI9zACoD7mobz
XMa81NlItpDMmm6rlhSm+3EvFHoXUiQMlzzbek2M6I8IEsLUo4GqMIGnMB0GA1Ud
DgQWBBT//PQQPnZOKj073GrFvUb4W872yDAfBgNVHSMEGDAWgBT//PQQPnZOKj07
3GrFvUb4W872yDAPBgNVHRMBAf8EBTADAQH/MFQGA1UdEQRNMEuCD0ZpeHR1cmUu
RXhhbXBsZYcEwAACAYELYUBiLmV4YW1wbGWCESouZml4dHVyZS5leGFtcGxlhhJo
dHRwczovL3guZXhhbXBsZS8wCgYIKoZIzj0EAwIDRwAwRAIgETcbiCVu2jIKx2Wk
sdHbxXJXGwS4AFj2fyRLPYdnCuUCIAtgy30RBV6vnquYcSNkuHjIfWaBiyfMlIiH
r7RAjRuP
-----END CERTIFICATE-----
";

    fn fixture() -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(FIXTURE.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn real_certificate() {
        let f = fields(&fixture()).unwrap();
        assert_eq!(f.dns_names, ["fixture.example", "*.fixture.example"]);
        // date -u -d "2126-11-13 19:42:20" +%s
        assert_eq!(unix_seconds(f.not_after), 4_950_272_540);
    }

    #[test]
    fn every_prefix_of_a_real_certificate_fails() {
        let der = fixture();
        for n in 0..der.len() {
            assert!(fields(&der[..n]).is_err(), "prefix of {n} bytes");
        }
        for i in 0..der.len() {
            for v in [0x00, 0x01, 0x30, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xa3, 0xff] {
                let mut c = der.clone();
                c[i] = v;
                let _ = fields(&c);
            }
            let _ = fields(&der[i..]);
        }
    }

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(
            format_utc(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "2023-11-14 22:13:20 UTC"
        );
        assert_eq!(
            format_utc(UNIX_EPOCH - Duration::from_secs(1)),
            "1969-12-31 23:59:59 UTC"
        );
    }

    #[test]
    fn times_and_names() {
        let cert = synthetic(
            utc("491231235959Z"),
            gen("99991231235959Z"),
            Some(vec![
                tlv(
                    SEQUENCE,
                    &cat(&[
                        tlv(OID, &[0x55, 0x1d, 0x13]),
                        tlv(BOOLEAN, &[0xff]),
                        tlv(OCTET_STRING, &[]),
                    ]),
                ),
                san(&[
                    tlv(0x87, &[127, 0, 0, 1]),
                    tlv(DNS_NAME, b"A.Example.COM"),
                    tlv(0xa4, &tlv(SEQUENCE, &[])),
                    tlv(DNS_NAME, b"*.b.example.com"),
                ]),
            ]),
        );
        let f = fields(&cert).unwrap();
        assert_eq!(f.dns_names, ["a.example.com", "*.b.example.com"]);
        assert_eq!(unix_seconds(f.not_after), 253_402_300_799);

        // UTCTime's century rule: 50-99 are 19YY, 00-49 are 20YY.
        let f = fields(&synthetic(utc("000101000000Z"), utc("500101000000Z"), None)).unwrap();
        assert_eq!(unix_seconds(f.not_after), -631_152_000);
        assert!(f.dns_names.is_empty());
        let f = fields(&synthetic(utc("000101000000Z"), utc("490229120000Z"), None));
        assert!(f.is_err(), "2049 is not a leap year");
        let f = fields(&synthetic(utc("000101000000Z"), utc("480229120000Z"), None)).unwrap();
        assert_eq!(format_utc(f.not_after), "2048-02-29 12:00:00 UTC");
    }

    #[test]
    fn malformed_times_are_refused() {
        for bad in [
            utc("4912312359Z"),
            utc("491231235959"),
            utc("491231235959+0000"),
            utc("491331235959Z"),
            utc("491200235959Z"),
            utc("491231245959Z"),
            utc("491231236059Z"),
            utc("491231235960Z"),
            utc("4912312359 9Z"),
            gen("20491231235959.5Z"),
            gen("491231235959Z"),
            tlv(OCTET_STRING, b"491231235959Z"),
        ] {
            let cert = synthetic(utc("000101000000Z"), bad.clone(), None);
            assert!(fields(&cert).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn strict_der() {
        let good = synthetic(
            utc("000101000000Z"),
            utc("300101000000Z"),
            Some(vec![san(&[tlv(DNS_NAME, b"x")])]),
        );
        assert!(fields(&good).is_ok());
        // Trailing bytes after the certificate.
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(fields(&trailing).is_err());
        // Indefinite length.
        let mut indefinite = good.clone();
        indefinite[1] = 0x80;
        assert!(fields(&indefinite).unwrap_err().contains("indefinite"));
        // Non-minimal length: 0x81 0x05 for a 5-byte value.
        assert!(fields(&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0])
            .unwrap_err()
            .contains("non-minimal"));
        assert!(fields(&[0x30, 0x82, 0x00, 0x80]).unwrap_err().contains("non-minimal"));
        // Huge lengths.
        assert!(fields(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(fields(&[0x30, 0x89, 1, 1, 1, 1, 1, 1, 1, 1, 1]).is_err());
        // Two subjectAltName extensions.
        let two = synthetic(
            utc("000101000000Z"),
            utc("300101000000Z"),
            Some(vec![san(&[tlv(DNS_NAME, b"x")]), san(&[tlv(DNS_NAME, b"y")])]),
        );
        assert!(fields(&two).is_err());
        // Non-ASCII and empty dNSNames.
        for name in [&b"\xc3\xa9.example"[..], b""] {
            let c = synthetic(
                utc("000101000000Z"),
                utc("300101000000Z"),
                Some(vec![san(&[tlv(DNS_NAME, name)])]),
            );
            assert!(fields(&c).is_err());
        }
    }

    #[test]
    fn every_prefix_and_garbage_fails_without_panicking() {
        let good = synthetic(
            utc("000101000000Z"),
            gen("20300101000000Z"),
            Some(vec![san(&[
                tlv(DNS_NAME, b"a.example.com"),
                tlv(DNS_NAME, b"*.example.com"),
            ])]),
        );
        assert!(fields(&good).is_ok());
        for n in 0..good.len() {
            assert!(fields(&good[..n]).is_err(), "prefix of {n} bytes");
        }
        // Every single-byte corruption, then deterministic pseudo-random garbage.
        for i in 0..good.len() {
            for v in [0x00, 0x30, 0x80, 0x81, 0x84, 0xff] {
                let mut c = good.clone();
                c[i] = v;
                let _ = fields(&c);
            }
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 300) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8 ^ i as u8).collect();
            let _ = fields(&bytes);
            let mut framed = vec![0x30, 0x82, (len >> 8) as u8, len as u8];
            framed.extend_from_slice(&bytes);
            let _ = fields(&framed);
        }
    }
}
