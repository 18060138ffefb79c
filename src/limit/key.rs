//! Who the user is, in one canonical spelling: the credential of an `Authorization` value (RFC 9110 section
//! 11), and the client address of an `X-Forwarded-For` hop.
//!
//! Contract: two spellings a server must treat as the same credential (`Bearer t`, `bearer t`, `BEARER  t`;
//! Basic credentials with or without padding) give the same canonical bytes, so a client cannot multiply its
//! budget by respelling its token. Pure: bytes in, bytes out, into a caller-owned buffer (no allocation once
//! it has grown to the longest credential seen).

use core::net::{IpAddr, Ipv6Addr};

use super::Refusal;
use crate::http::{is_tchar, trim_ows};

/// The schemes of the IANA HTTP Authentication Scheme Registry, in their registered spelling. Any other
/// scheme is keyed in lower case (schemes are case-insensitive, RFC 9110 section 11.1).
const REGISTERED: [&str; 14] = [
    "Basic",
    "Bearer",
    "Concealed",
    "Digest",
    "DPoP",
    "GNAP",
    "HOBA",
    "Mutual",
    "Negotiate",
    "OAuth",
    "PrivateToken",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "vapid",
];

/// Writes the canonical form of the `Authorization` value `value` into `out` (cleared first): the scheme in
/// its registered spelling (unregistered schemes lower-cased), one space, then the credentials (Basic:
/// decoded and re-encoded as padded base64; others as sent). A value without a space that is not a
/// registered scheme is a bare key (`sk_live_AbC9`, `k3y+/x==`) and is kept as sent. Returns whether there
/// is a credential at all: a registered scheme alone (`Bearer`, as clients send before login) names no
/// user. Anything else is [`Refusal::MalformedAuthorization`].
pub fn canonical_authorization(value: &[u8], out: &mut Vec<u8>) -> Result<bool, Refusal> {
    out.clear();
    let value = trim_ows(value);
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(i) => (&value[..i], Some(&value[i..])),
        None => (value, None),
    };
    if scheme.is_empty() {
        return Err(Refusal::MalformedAuthorization);
    }
    let registered = REGISTERED.iter().find(|r| r.as_bytes().eq_ignore_ascii_case(scheme));
    if rest.is_none() && registered.is_none() {
        // A bare key: as sent (keys are case-sensitive), if it is a token or token68.
        if scheme.iter().all(|&b| is_tchar(b)) || is_token68(scheme) {
            out.extend_from_slice(scheme);
            return Ok(true);
        }
        return Err(Refusal::MalformedAuthorization);
    }
    if !scheme.iter().all(|&b| is_tchar(b)) {
        return Err(Refusal::MalformedAuthorization);
    }
    match registered {
        Some(r) => out.extend_from_slice(r.as_bytes()),
        None => out.extend(scheme.iter().map(u8::to_ascii_lowercase)),
    }
    let credentials = rest.map(trim_ows).unwrap_or_default();
    let basic = registered.is_some_and(|r| *r == "Basic");
    if credentials.is_empty() {
        // A scheme alone names no user (every client sending `Bearer` before login would share one budget).
        return Ok(false);
    }
    out.push(b' ');
    if basic {
        canonical_base64(credentials, out).map(|()| true)
    } else {
        out.extend_from_slice(credentials);
        Ok(true)
    }
}

/// RFC 9110 `token68`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(v: &[u8]) -> bool {
    let body = v.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    body > 0
        && v[..body]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

fn b64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Decodes standard base64 (padding optional, unused low bits ignored) and appends its canonical, padded
/// encoding: every spelling of the same bytes gives the same output.
fn canonical_base64(s: &[u8], out: &mut Vec<u8>) -> Result<(), Refusal> {
    let data = match s.iter().position(|&b| b == b'=') {
        Some(i) => {
            let pad = &s[i..];
            // Padding only at the end, only to complete the last group of four.
            if !pad.iter().all(|&b| b == b'=') || !s.len().is_multiple_of(4) || pad.len() > 2 {
                return Err(Refusal::MalformedAuthorization);
            }
            &s[..i]
        }
        None => s,
    };
    if data.is_empty() || data.len() % 4 == 1 {
        return Err(Refusal::MalformedAuthorization);
    }
    for group in data.chunks(4) {
        let mut n = 0u32;
        for &c in group {
            n = n << 6 | b64_value(c).ok_or(Refusal::MalformedAuthorization)?;
        }
        n <<= 6 * (4 - group.len() as u32);
        // `group.len() - 1` bytes are encoded; the bits past them are dropped.
        let bytes = group.len() - 1;
        let n = n & !(0xff_ffffu32 >> (8 * bytes));
        for i in 0..4 {
            out.push(if i <= bytes {
                B64[(n >> (18 - 6 * i)) as usize & 63]
            } else {
                b'='
            });
        }
    }
    Ok(())
}

/// One `X-Forwarded-For` hop: an IPv4 or IPv6 address, `IPv4:port`, `[IPv6]` or `[IPv6]:port`. `None` for
/// anything else (`unknown`, obfuscated identifiers, garbage).
pub fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let s = core::str::from_utf8(hop).ok()?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (addr, port) = s.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    addr.parse::<core::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u32>().is_ok_and(|n| n <= 65535)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(v: &str) -> Result<String, Refusal> {
        let mut out = Vec::new();
        canonical_authorization(v.as_bytes(), &mut out).map(|has| {
            assert!(has, "{v:?} names a user");
            String::from_utf8(out).unwrap()
        })
    }

    #[test]
    fn one_token_many_spellings() {
        for v in [
            "Bearer tok",
            "bearer tok",
            "BEARER tok",
            "Bearer  tok",
            "bEaReR     tok",
            " Bearer tok ",
        ] {
            assert_eq!(canon(v).unwrap(), "Bearer tok", "{v:?}");
        }
        // The credentials themselves are case-sensitive.
        assert_eq!(canon("Bearer TOK").unwrap(), "Bearer TOK");
        assert_eq!(canon("dpop x").unwrap(), "DPoP x");
        assert_eq!(canon("Custom-Scheme K").unwrap(), "custom-scheme K");
        // Bare keys are kept as sent: case matters in them.
        assert_eq!(canon("k3y+/x==").unwrap(), "k3y+/x==");
        assert_eq!(canon("sk_live_AbC9").unwrap(), "sk_live_AbC9");
        assert_ne!(canon("sk_live_AbC9").unwrap(), canon("sk_live_abc9").unwrap());
        // A registered scheme alone names no user.
        for v in ["Bearer", "bearer ", "NEGOTIATE", "Basic"] {
            let mut out = Vec::new();
            assert_eq!(canonical_authorization(v.as_bytes(), &mut out), Ok(false), "{v:?}");
        }
    }

    #[test]
    fn basic_is_decoded_and_reencoded() {
        // "a:b" = YTpi; "ab:c" = YWI6Yw== (unpadded: YWI6Yw; with dirty low bits: YWI6Yx==).
        assert_eq!(canon("basic YTpi").unwrap(), "Basic YTpi");
        for v in ["Basic YWI6Yw==", "basic YWI6Yw", "BASIC   YWI6Yx==", "Basic YWI6Yx"] {
            assert_eq!(canon(v).unwrap(), "Basic YWI6Yw==", "{v:?}");
        }
        assert_eq!(canon("Basic YWI6YzE=").unwrap(), "Basic YWI6YzE=");
        assert_eq!(canon("Basic YWI6YzF").unwrap(), "Basic YWI6YzE=");
        for bad in [
            "Basic Y",
            "Basic YW=I",
            "Basic YWI6Yw=",
            "Basic YWI6Y===",
            "Basic YW!6",
            "Basic a b",
        ] {
            assert_eq!(canon(bad), Err(Refusal::MalformedAuthorization), "{bad:?}");
        }
    }

    #[test]
    fn malformed_values() {
        for bad in ["", "   ", "a@b c", "{x} y", "a/b c", "@@@"] {
            assert_eq!(canon(bad), Err(Refusal::MalformedAuthorization), "{bad:?}");
        }
    }

    #[test]
    fn hops() {
        let p = |s: &str| parse_hop(s.as_bytes()).map(|ip| ip.to_string());
        assert_eq!(p("1.2.3.4").as_deref(), Some("1.2.3.4"));
        assert_eq!(p("1.2.3.4:8080").as_deref(), Some("1.2.3.4"));
        assert_eq!(p("2001:db8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(p("[2001:db8::1]").as_deref(), Some("2001:db8::1"));
        assert_eq!(p("[2001:db8::1]:443").as_deref(), Some("2001:db8::1"));
        for bad in [
            "unknown",
            "_hidden",
            "1.2.3.4:",
            "1.2.3.4:99999",
            "[1.2.3.4]",
            "[::1]x",
            "1.2.3",
            "host:80",
            "",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }
}
