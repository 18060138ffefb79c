//! Reference models of message framing (RFC 9112 section 6.3, with the ingress's strict request policy),
//! computed from the field list alone. The one model shared by the property tests (`tests/framing_prop.rs`)
//! and the `request_head` / `response_head` fuzz checks (`fuzz/checks/`), each of which loads this file with
//! `#[path]`: change it here only.
#![allow(dead_code)]

use portcullis::http::request::Framing;
use portcullis::http::response::BodyKind;
use portcullis::http::{Header, Version};

/// A head's fields as (name, value) pairs, in order.
pub type Fields<'a> = Vec<(&'a [u8], &'a [u8])>;

pub fn field_list<'a>(headers: &[Header<'a>]) -> Fields<'a> {
    headers.iter().map(|f| (f.name.as_bytes(), f.value)).collect()
}

/// `tchar` (RFC 9110 section 5.6.2).
pub fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Trims spaces and tabs from both ends.
pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', r @ ..] = s {
        s = r;
    }
    while let [r @ .., b' ' | b'\t'] = s {
        s = r;
    }
    s
}

/// Non-empty list elements, trimmed (RFC 9110 section 5.6.1).
pub fn items(v: &[u8]) -> Vec<&[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty()).collect()
}

/// The values of every field named `name` (case-insensitive), in order.
pub fn values<'a>(fields: &[(&'a [u8], &'a [u8])], name: &[u8]) -> Vec<&'a [u8]> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, v)| v)
        .collect()
}

/// The elements of every field named `name`, as one list.
pub fn list<'a>(fields: &[(&'a [u8], &'a [u8])], name: &[u8]) -> Vec<&'a [u8]> {
    values(fields, name).into_iter().flat_map(items).collect()
}

/// A Content-Length value: `1*DIGIT`, at most 19 digits (so it fits a `u64`), nothing else.
pub fn content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The framing of a request, or `None` if its framing fields make the ingress refuse it: at most one
/// Content-Length, valid and within `max_body`; Transfer-Encoding only alone, in one field, exactly `chunked`
/// (no other coding, no list) and only in HTTP/1.1; never both; and no body on GET or HEAD (`Length(0)` is
/// not a body). Fields whose names only resemble the framing fields are not modelled (the ingress refuses
/// them too).
pub fn request_framing(method: &str, version: Version, fields: &[(&[u8], &[u8])], max_body: u64) -> Option<Framing> {
    let cl = values(fields, b"content-length");
    let te = values(fields, b"transfer-encoding");
    let framing = match (&cl[..], &te[..]) {
        ([], []) => Framing::None,
        ([v], []) => {
            let n = content_length(v)?;
            if n > max_body {
                return None;
            }
            Framing::Length(n)
        }
        ([], [v]) if version == Version::Http11 && v.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
        _ => return None,
    };
    if matches!(method, "GET" | "HEAD") && !matches!(framing, Framing::None | Framing::Length(0)) {
        return None;
    }
    Some(framing)
}

/// The body kind and reusability of a response, or `None` if the ingress must refuse it (a bad upstream
/// response): a status outside 100-599, a 101 other than an HTTP/1.1 switch to WebSocket (an Upgrade field
/// naming `websocket`: no body, not reusable, the connection becomes a tunnel), a malformed or repeated
/// Content-Length.
///
/// The body: none after HEAD and for 1xx, 204, 304; else chunked when the last transfer coding (of all the
/// Transfer-Encoding fields as one list) is `chunked`, read until close for any other last coding; else the
/// Content-Length; else read until close. Reusable (the connection may carry another request): not with
/// `Connection: close`, HTTP/1.0 only with `keep-alive`, never after a close-delimited or bodiless response,
/// nor with both Transfer-Encoding and Content-Length, nor with Transfer-Encoding in HTTP/1.0 (RFC 9112
/// section 6.1).
pub fn response_framing(
    version: Version,
    status: u16,
    was_head: bool,
    fields: &[(&[u8], &[u8])],
) -> Option<(BodyKind, bool)> {
    if !(100..600).contains(&status) {
        return None;
    }
    if status == 101 {
        let websocket = list(fields, b"upgrade")
            .iter()
            .any(|t| t.eq_ignore_ascii_case(b"websocket"));
        if version != Version::Http11 || !websocket {
            return None;
        }
    }
    let length = match &values(fields, b"content-length")[..] {
        [] => None,
        [v] => Some(content_length(v)?),
        _ => return None,
    };
    let codings = list(fields, b"transfer-encoding");
    let body = if was_head || (100..200).contains(&status) || status == 204 || status == 304 {
        BodyKind::None
    } else if let Some(last) = codings.last() {
        if last.eq_ignore_ascii_case(b"chunked") {
            BodyKind::Chunked
        } else {
            BodyKind::Close
        }
    } else {
        length.map_or(BodyKind::Close, BodyKind::Length)
    };
    let connection = list(fields, b"connection");
    let close = connection.iter().any(|t| t.eq_ignore_ascii_case(b"close"));
    let keep_alive = connection.iter().any(|t| t.eq_ignore_ascii_case(b"keep-alive"));
    let te = !codings.is_empty();
    let reusable = !close
        && (version == Version::Http11 || keep_alive)
        && !matches!(body, BodyKind::None | BodyKind::Close)
        && !(te && length.is_some())
        && !(te && version == Version::Http10);
    Some((body, reusable))
}
