//! Media types and Accept lists (RFC 9110 sections 8.3.1 and 12.5.1), parsed over borrowed bytes.
//!
//! `type "/" subtype *( OWS ";" OWS parameter )`, parameters `token "=" ( token / quoted-string )`; in an
//! Accept list, the `q` parameter is the weight (`0` to `1` with at most three decimals; `q=0` excludes).
//! Types and parameter names compare case-insensitively.

use crate::http::{is_tchar, trim_ows};

/// One media range: type and subtype as sent (compare with `eq_ignore_ascii_case`), weight in thousandths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaRange<'a> {
    pub ty: &'a [u8],
    pub sub: &'a [u8],
    pub q: u16,
}

/// Splits a field value at commas that are not inside a quoted string.
pub fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    split_unquoted(value, b',').map(trim_ows)
}

/// Splits at `sep` outside quoted strings (a backslash escapes the next byte inside quotes).
fn split_unquoted(value: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let v = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, &b) in v.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if quoted && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = !quoted;
            } else if b == sep && !quoted {
                rest = Some(&v[i + 1..]);
                return Some(&v[..i]);
            }
        }
        rest = None;
        Some(v)
    })
}

fn token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Parses one media type or range with its parameters. `None` if malformed.
pub fn parse_media(elem: &[u8]) -> Option<MediaRange<'_>> {
    parse_media_with(elem, false)
}

/// [`parse_media`] for an element of an Accept list, with one deliberate leniency: the default Accept of
/// Java's `HttpURLConnection` on older JDKs (`text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2`,
/// JDK-8163921) is read as meant, a bare `*` as `*/*` and a weight `.2` as `0.2`. Everything else is as strict.
pub fn parse_accept_element(elem: &[u8]) -> Option<MediaRange<'_>> {
    parse_media_with(elem, true)
}

fn parse_media_with(elem: &[u8], jdk: bool) -> Option<MediaRange<'_>> {
    let mut parts = split_unquoted(elem, b';');
    let first = trim_ows(parts.next()?);
    let (ty, sub): (&[u8], &[u8]) = if jdk && first == b"*" {
        (b"*", b"*")
    } else {
        let slash = first.iter().position(|&b| b == b'/')?;
        (&first[..slash], &first[slash + 1..])
    };
    if !token(ty) || !token(sub) {
        return None;
    }
    let mut q = 1000;
    for p in parts {
        let p = trim_ows(p);
        // `parameters = *( OWS ";" OWS [ parameter ] )` (RFC 9110 5.6.6): an empty one is allowed.
        if p.is_empty() {
            continue;
        }
        let eq = p.iter().position(|&b| b == b'=')?;
        let (name, val) = (&p[..eq], &p[eq + 1..]);
        if !token(name) {
            return None;
        }
        if name.eq_ignore_ascii_case(b"q") {
            q = match val {
                [b'.', frac @ ..] if jdk && !frac.is_empty() => thousandths(frac)?,
                _ => parse_q(val)?,
            };
        } else if !(token(val) || quoted_string(val)) {
            return None;
        }
    }
    Some(MediaRange { ty, sub, q })
}

fn quoted_string(v: &[u8]) -> bool {
    if v.len() < 2 || v[0] != b'"' || v[v.len() - 1] != b'"' {
        return false;
    }
    let inner = &v[1..v.len() - 1];
    let mut escaped = false;
    for &b in inner {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' || (b < 0x20 && b != b'\t') || b == 0x7f {
            return false;
        }
    }
    !escaped
}

/// `0*3DIGIT` after a decimal point, in thousandths.
fn thousandths(frac: &[u8]) -> Option<u16> {
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut f: u16 = 0;
    for i in 0..3 {
        f = f * 10 + frac.get(i).map_or(0, |d| (d - b'0') as u16);
    }
    Some(f)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
pub fn parse_q(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    let f = thousandths(frac)?;
    match int {
        b"0" => Some(f),
        b"1" if f == 0 => Some(1000),
        _ => None,
    }
}

/// False if the media type `v` (already known to parse) has a `charset` parameter other than `utf-8` (any
/// case, quoted or not).
pub fn charset_is_utf8(v: &[u8]) -> bool {
    split_unquoted(v, b';').skip(1).all(|p| {
        let p = trim_ows(p);
        match p.iter().position(|&b| b == b'=') {
            Some(eq) if p[..eq].eq_ignore_ascii_case(b"charset") => {
                let val = &p[eq + 1..];
                let val = match val {
                    [b'"', inner @ .., b'"'] => inner,
                    _ => val,
                };
                val.eq_ignore_ascii_case(b"utf-8")
            }
            _ => true,
        }
    })
}

/// True for `application/json` and any `application/*+json` (e.g. `application/merge-patch+json`).
pub fn is_json(m: &MediaRange<'_>) -> bool {
    m.ty.eq_ignore_ascii_case(b"application")
        && (m.sub.eq_ignore_ascii_case(b"json")
            || (m.sub.len() > 5 && m.sub[m.sub.len() - 5..].eq_ignore_ascii_case(b"+json")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(v: &str) -> Vec<Option<(String, u16)>> {
        split_list(v.as_bytes())
            .filter(|e| !e.is_empty())
            .map(|e| {
                parse_media(e).map(|m| {
                    (
                        format!("{}/{}", String::from_utf8_lossy(m.ty), String::from_utf8_lossy(m.sub)),
                        m.q,
                    )
                })
            })
            .collect()
    }

    #[test]
    fn accept_lists() {
        assert_eq!(
            ranges("application/json"),
            vec![Some(("application/json".into(), 1000))]
        );
        assert_eq!(
            ranges("Application/VND.acme.v2+JSON;q=0.5 , text/*; q=0.25,*/*;q=0"),
            vec![
                Some(("Application/VND.acme.v2+JSON".into(), 500)),
                Some(("text/*".into(), 250)),
                Some(("*/*".into(), 0))
            ]
        );
        assert_eq!(ranges("a/b; x=\"1,2;3\"; Q=1.000"), vec![Some(("a/b".into(), 1000))]);
        assert_eq!(ranges("a/b;q=1.5"), vec![None]);
        assert_eq!(ranges("a/b;q=0.1234"), vec![None]);
        assert_eq!(ranges("a"), vec![None]);
        assert_eq!(ranges("a/b c"), vec![None]);
        assert_eq!(ranges("a/b;charset"), vec![None]);
        assert_eq!(ranges("/b"), vec![None]);
        assert_eq!(ranges("a/b;\tcharset=utf-8"), vec![Some(("a/b".into(), 1000))]);
        assert_eq!(
            ranges("application/json;"),
            vec![Some(("application/json".into(), 1000))]
        );
        assert_eq!(ranges("a/b; ;q=0.5"), vec![Some(("a/b".into(), 500))]);
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_q(b"0"), Some(0));
        assert_eq!(parse_q(b"0.001"), Some(1));
        assert_eq!(parse_q(b"0.1"), Some(100));
        assert_eq!(parse_q(b"1."), Some(1000));
        assert_eq!(parse_q(b"1.0001"), None);
        assert_eq!(parse_q(b"1.1"), None);
        assert_eq!(parse_q(b""), None);
        assert_eq!(parse_q(b"2"), None);
    }

    #[test]
    fn the_jdk_default_accept() {
        let jdk = "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2";
        let parsed: Vec<Option<MediaRange<'_>>> = split_list(jdk.as_bytes()).map(parse_accept_element).collect();
        let any = MediaRange {
            ty: b"*",
            sub: b"*",
            q: 200,
        };
        assert_eq!(parsed[3], Some(any));
        assert_eq!(parsed[4], Some(any));
        // Only in Accept, only these two spellings.
        assert!(parse_media(b"*").is_none() && parse_media(b"*/*; q=.2").is_none());
        assert!(parse_accept_element(b"*; q=.").is_none() && parse_accept_element(b"**").is_none());
        assert!(parse_accept_element(b"text; q=1").is_none());
    }

    #[test]
    fn charsets() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
            "application/json; x=\"a;charset=utf-7\"",
        ] {
            assert!(charset_is_utf8(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "application/json; charset=utf-7",
            "application/json;charset=UTF-16LE",
            "application/json; charset=\"latin1\"",
            "application/json; charset=utf-8; charset=utf-16",
        ] {
            assert!(!charset_is_utf8(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn json_types() {
        let j = |s: &str| is_json(&parse_media(s.as_bytes()).unwrap());
        assert!(j("application/json"));
        assert!(j("Application/JSON; charset=utf-8"));
        assert!(j("application/merge-patch+json"));
        assert!(j("application/vnd.acme.v1+json"));
        assert!(!j("application/+json"));
        assert!(!j("text/json"));
        assert!(!j("application/jsonx"));
        assert!(!j("application/x-www-form-urlencoded"));
    }
}
