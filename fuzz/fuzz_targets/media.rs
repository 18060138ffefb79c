//! `guard::media` (media types, Accept lists, q-values) and `guard::check_head` (the Accept and Content-Type
//! rules) on arbitrary bytes.
//!
//! Input: LF-separated segments; the first is a Content-Type value, the others (at most 6) Accept values.
//! Checked, beyond "never panics":
//! - on field-value bytes (no control byte but HTAB, no DEL), `split_list` + `parse_media` give what an
//!   independent recursive-descent parser of the grammar in `guard/media.rs` gives for a whole Accept list
//!   (`#( type "/" subtype *( OWS ";" OWS parameter ) )`, parameters `token "=" ( token / quoted-string )`,
//!   `q` a qvalue), element by element: type, subtype and weight; `parse_media` alone agrees with it on one
//!   media type; `parse_q` and `is_json` agree with their grammar;
//! - `check_head` on a POST and a GET carrying those fields, with two policies (no `--accept`, and three API
//!   types), gives the decision of a reference model of the Accept rule (406 missing / malformed /
//!   unsupported version, else the best-weighted configured type, `q=0` excluding) and the Content-Type
//!   rule (415 unless exactly one Content-Type that is `application/json` or `application/*+json`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::Limits;
use portcullis::guard::media::{is_json, parse_media, parse_q, split_list};
use portcullis::guard::{check_head, ApiType, Policy};
use portcullis::http::request::{header_storage, parse_head, RequestHead};
use portcullis::guard::Refusal;

type Range = (Vec<u8>, Vec<u8>, u16);

fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A reference parser over `s` from `pos`.
struct P<'a> {
    s: &'a [u8],
    pos: usize,
}

impl P<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn ows(&mut self) {
        while let Some(b' ' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }
    fn token(&mut self) -> Option<&[u8]> {
        let start = self.pos;
        while self.peek().is_some_and(tchar) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.s[start..self.pos])
    }
    /// `DQUOTE *( qdtext / quoted-pair ) DQUOTE`, on field-value bytes.
    fn quoted(&mut self) -> Option<()> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.pos += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(());
                }
                b'\\' => {
                    self.pos += 1;
                    self.peek()?;
                    self.pos += 1;
                }
                _ => self.pos += 1,
            }
        }
    }
    /// `type "/" subtype *( OWS ";" OWS parameter )`; the weight is the last `q` parameter.
    fn media(&mut self) -> Option<Range> {
        let ty = self.token()?.to_vec();
        if self.peek() != Some(b'/') {
            return None;
        }
        self.pos += 1;
        let sub = self.token()?.to_vec();
        let mut q = 1000;
        loop {
            let save = self.pos;
            self.ows();
            if self.peek() != Some(b';') {
                self.pos = save;
                return Some((ty, sub, q));
            }
            self.pos += 1;
            self.ows();
            let name = self.token()?.to_vec();
            if self.peek() != Some(b'=') {
                return None;
            }
            self.pos += 1;
            if name.eq_ignore_ascii_case(b"q") {
                let v = self.token()?;
                q = ref_q(v)?;
            } else if self.peek() == Some(b'"') {
                self.quoted()?;
            } else {
                self.token()?;
            }
        }
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` in thousandths.
fn ref_q(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v {
        [i, b'.', f @ ..] => (*i, f),
        [i] => (*i, &[][..]),
        _ => return None,
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let f = frac
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(3)
        .fold(0u16, |a, d| a * 10 + (d - b'0') as u16);
    match int {
        b'0' => Some(f),
        b'1' if f == 0 => Some(1000),
        _ => None,
    }
}

/// One media type, alone (a Content-Type value): OWS around it tolerated as a field value's.
fn ref_media(v: &[u8]) -> Option<Range> {
    let mut p = P { s: v, pos: 0 };
    p.ows();
    let m = p.media()?;
    p.ows();
    (p.pos == v.len()).then_some(m)
}

/// A whole Accept list: `None` if any element is malformed; empty elements skipped.
fn ref_accept(v: &[u8]) -> Option<Vec<Range>> {
    let mut p = P { s: v, pos: 0 };
    let mut out = Vec::new();
    loop {
        p.ows();
        match p.peek() {
            None => return Some(out),
            Some(b',') => {
                p.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        out.push(p.media()?);
        p.ows();
        match p.peek() {
            None => return Some(out),
            Some(b',') => p.pos += 1,
            Some(_) => return None,
        }
    }
}

fn ref_is_json(ty: &[u8], sub: &[u8]) -> bool {
    ty.eq_ignore_ascii_case(b"application")
        && (sub.eq_ignore_ascii_case(b"json") || (sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case(b"+json")))
}

fn impl_accept(v: &[u8]) -> Option<Vec<Range>> {
    split_list(v)
        .filter(|e| !e.is_empty())
        .map(|e| parse_media(e).map(|m| (m.ty.to_vec(), m.sub.to_vec(), m.q)))
        .collect()
}

fn field_value_bytes(v: &[u8]) -> bool {
    !v.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

/// The pure functions on one segment.
fn check_pure(seg: &[u8]) {
    // Whatever the bytes: no panic, and what is returned is a sub-slice that is a token.
    let mut n = 0;
    for e in split_list(seg) {
        n += 1;
        if let Some(m) = parse_media(e) {
            assert!(!m.ty.is_empty() && m.ty.iter().all(|&b| tchar(b)));
            assert!(!m.sub.is_empty() && m.sub.iter().all(|&b| tchar(b)));
            assert!(m.q <= 1000);
            assert_eq!(is_json(&m), ref_is_json(m.ty, m.sub));
        }
        if n > 10_000 {
            break;
        }
    }
    assert_eq!(parse_q(seg), ref_q(seg), "parse_q({:?})", String::from_utf8_lossy(seg));
    if !field_value_bytes(seg) {
        return;
    }
    assert_eq!(
        impl_accept(seg),
        ref_accept(seg),
        "Accept list {:?}",
        String::from_utf8_lossy(seg)
    );
    assert_eq!(
        parse_media(seg).map(|m| (m.ty.to_vec(), m.sub.to_vec(), m.q)),
        ref_media(seg),
        "media type {:?}",
        String::from_utf8_lossy(seg)
    );
}

/// The reference decision of `check_head`.
/// (the configured type chosen, the body must be JSON), or the refusal.
fn ref_check(policy: &Policy, head: &RequestHead<'_, '_>) -> Result<(Option<usize>, bool), Refusal> {
    let accept: Vec<&[u8]> = head
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("accept"))
        .map(|h| h.value)
        .collect();
    if accept.is_empty() {
        return Err(Refusal::AcceptHeaderMissing);
    }
    let mut ranges = Vec::new();
    for v in accept {
        ranges.extend(ref_accept(v).ok_or(Refusal::AcceptHeaderMalformed)?);
    }
    if ranges.is_empty() {
        return Err(Refusal::AcceptHeaderMissing);
    }
    let version = if policy.accept.is_empty() {
        None
    } else {
        let mut best: Option<(u16, usize)> = None;
        for (i, t) in policy.accept.iter().enumerate() {
            let named: Vec<u16> = ranges
                .iter()
                .filter(|(ty, sub, _)| {
                    ty.eq_ignore_ascii_case(b"application") && sub.eq_ignore_ascii_case(t.sub.as_bytes())
                })
                .map(|r| r.2)
                .collect();
            let q = named.iter().copied().max().unwrap_or(0);
            if q > 0 && !named.contains(&0) && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, i));
            }
        }
        Some(best.ok_or(Refusal::UnsupportedApiVersion)?.1)
    };
    let json_body = policy.json_methods & head.method.bit() != 0;
    if json_body {
        let ct: Vec<&[u8]> = head
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("content-type"))
            .map(|h| h.value)
            .collect();
        let ok = ct.len() == 1 && ref_media(ct[0]).is_some_and(|(ty, sub, _)| ref_is_json(&ty, &sub));
        if !ok {
            return Err(Refusal::ContentTypeNotJson);
        }
    }
    Ok((version, json_body))
}

fn policies() -> &'static [Policy; 2] {
    static P: std::sync::OnceLock<[Policy; 2]> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let typed = Policy {
            accept: [
                "application/vnd.acme.v1+json",
                "application/vnd.acme.v2+json",
                "application/vnd.other.v1+json",
            ]
            .iter()
            .map(|t| ApiType::parse(t).unwrap())
            .collect(),
            ..Policy::default()
        };
        [Policy::default(), typed]
    })
}

fuzz_target!(|data: &[u8]| {
    let segs: Vec<&[u8]> = data.split(|&b| b == b'\n').take(7).collect();
    for s in &segs {
        check_pure(s);
    }
    if segs.iter().any(|s| s.contains(&b'\r')) {
        return;
    }
    for method in ["POST", "GET"] {
        let mut raw = format!("{method} / HTTP/1.1\r\nHost: a\r\nContent-Type: ").into_bytes();
        raw.extend_from_slice(segs[0]);
        raw.extend_from_slice(b"\r\n");
        for a in &segs[1..] {
            raw.extend_from_slice(b"Accept: ");
            raw.extend_from_slice(a);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        let mut st = header_storage();
        let Ok(Some(head)) = parse_head(&raw, &Limits::default(), &mut st) else {
            return;
        };
        for p in policies() {
            assert_eq!(
                check_head(p, &head).map(|a| (a.version, a.json_body)),
                ref_check(p, &head),
                "check_head with {} API types on\n{}",
                p.accept.len(),
                String::from_utf8_lossy(&raw)
            );
        }
    }
});
