//! The PROXY protocol header (versions 1 and 2) that an L4 load balancer (AWS NLB, HAProxy `send-proxy`,
//! `send-proxy-v2`) writes at the start of each connection to say whose connection it is.
//!
//! Pure: [`parse`] looks at the bytes a connection has received so far (the worker peeks at them, so that
//! nothing past the header is taken from the socket, as HAProxy does) and answers whether a complete header is
//! there, how long it is, and the client address it carries. Nothing is allocated; every length is bounded.
//!
//! Specification: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Which versions a listener accepts (`--proxy-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    V1,
    V2,
    Any,
}

impl Accept {
    pub fn parse(s: &str) -> Result<Accept, String> {
        match s.trim() {
            "v1" => Ok(Accept::V1),
            "v2" => Ok(Accept::V2),
            "any" => Ok(Accept::Any),
            v => Err(format!("{v:?}: use v1, v2 or any")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Accept::V1 => "v1",
            Accept::V2 => "v2",
            Accept::Any => "any",
        }
    }
}

/// The version 2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A version 1 header is at most this long, its CRLF included (the specification's bound).
pub const V1_MAX: usize = 107;
/// The longest version 2 header accepted: the 16 fixed bytes, the addresses and TLVs up to this in all (a
/// balancer's TLVs are tens of bytes; HAProxy's with client-certificate details a few hundred).
pub const V2_MAX: usize = 16 + 1024;
/// Enough bytes to tell the version and, for version 2, the header's length.
pub const PREFIX: usize = 16;

/// What the bytes received so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A valid beginning: more bytes are needed. `want` is how many to look at next (at least the bytes
    /// already there plus one, at most the header's whole length once it is known).
    Incomplete { want: usize },
    /// Not a header this listener accepts; the connection is closed without an answer.
    Invalid(&'static str),
    /// A complete header of `len` bytes. `source`: the client it names; `None` for a `LOCAL` connection (the
    /// balancer's own health check) or an address family without one (`UNKNOWN`, `AF_UNSPEC`, UNIX sockets,
    /// datagrams): the peer address then stands.
    Done { len: usize, source: Option<SocketAddr> },
}

/// Parses the header at the start of `buf`.
pub fn parse(buf: &[u8], accept: Accept) -> Parsed {
    let v2_prefix = buf.len().min(V2_SIGNATURE.len());
    let v1_prefix = buf.len().min(6);
    let maybe_v2 = accept != Accept::V1 && buf[..v2_prefix] == V2_SIGNATURE[..v2_prefix];
    let maybe_v1 = accept != Accept::V2 && buf[..v1_prefix] == b"PROXY "[..v1_prefix];
    if buf.is_empty() || (maybe_v1 && maybe_v2) {
        return Parsed::Incomplete { want: PREFIX };
    }
    if maybe_v2 {
        v2(buf)
    } else if maybe_v1 {
        v1(buf)
    } else {
        Parsed::Invalid(match accept {
            Accept::V1 => "not a PROXY protocol v1 header",
            Accept::V2 => "not a PROXY protocol v2 header",
            Accept::Any => "not a PROXY protocol header",
        })
    }
}

fn v2(buf: &[u8]) -> Parsed {
    if buf.len() < PREFIX {
        return Parsed::Incomplete { want: PREFIX };
    }
    let (ver_cmd, fam) = (buf[12], buf[13]);
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if ver_cmd >> 4 != 2 {
        return Parsed::Invalid("PROXY protocol v2: unknown version");
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Parsed::Invalid("PROXY protocol v2: unknown command"),
    };
    if PREFIX + len > V2_MAX {
        return Parsed::Invalid("PROXY protocol v2: header too long");
    }
    if buf.len() < PREFIX + len {
        return Parsed::Incomplete { want: PREFIX + len };
    }
    let body = &buf[PREFIX..PREFIX + len];
    // Address family (high nibble) and transport (low nibble); only a stream's inet addresses name a client.
    let (addr_len, inet) = match fam {
        0x00 => (0, false),
        0x11 | 0x12 => (12, fam == 0x11),
        0x21 | 0x22 => (36, fam == 0x21),
        0x31 | 0x32 => (216, false),
        _ => return Parsed::Invalid("PROXY protocol v2: unknown address family"),
    };
    if len < addr_len {
        return Parsed::Invalid("PROXY protocol v2: addresses longer than the header");
    }
    if !tlvs_fit(&body[addr_len..]) {
        return Parsed::Invalid("PROXY protocol v2: malformed TLV");
    }
    let source = if local || !inet {
        None
    } else if addr_len == 12 {
        let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
        Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([body[8], body[9]])))
    } else {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&body[..16]);
        let port = u16::from_be_bytes([body[32], body[33]]);
        Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
    };
    Parsed::Done {
        len: PREFIX + len,
        source,
    }
}

/// The TLVs after the addresses fill their space exactly (each: a type byte, a 2-byte length, the value).
/// Their contents are not used.
fn tlvs_fit(mut rest: &[u8]) -> bool {
    while !rest.is_empty() {
        if rest.len() < 3 {
            return false;
        }
        let n = 3 + u16::from_be_bytes([rest[1], rest[2]]) as usize;
        if rest.len() < n {
            return false;
        }
        rest = &rest[n..];
    }
    true
}

fn v1(buf: &[u8]) -> Parsed {
    let seen = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = seen.iter().position(|&b| b == b'\r' || b == b'\n') else {
        if buf.len() >= V1_MAX {
            return Parsed::Invalid("PROXY protocol v1: no CRLF within 107 bytes");
        }
        return Parsed::Incomplete { want: V1_MAX };
    };
    if seen[cr] == b'\n' {
        return Parsed::Invalid("PROXY protocol v1: bare LF");
    }
    if cr + 2 > V1_MAX {
        return Parsed::Invalid("PROXY protocol v1: no CRLF within 107 bytes");
    }
    match buf.get(cr + 1) {
        None => return Parsed::Incomplete { want: cr + 2 },
        Some(b'\n') => {}
        Some(_) => return Parsed::Invalid("PROXY protocol v1: CR without LF"),
    }
    let len = cr + 2;
    let line = &buf[6..cr];
    let Ok(line) = core::str::from_utf8(line) else {
        return Parsed::Invalid("PROXY protocol v1: not ASCII");
    };
    let mut parts = line.split(' ');
    let proto = parts.next().unwrap_or("");
    if proto == "UNKNOWN" {
        // The rest of the line is to be ignored.
        return Parsed::Done { len, source: None };
    }
    let (Some(src), Some(dst), Some(sport), Some(dport), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Invalid("PROXY protocol v1: expected 'PROXY TCP4|TCP6 SRC DST SPORT DPORT'");
    };
    let (src, dst) = match proto {
        "TCP4" => match (src.parse::<Ipv4Addr>(), dst.parse::<Ipv4Addr>()) {
            (Ok(s), Ok(d)) => (IpAddr::V4(s), IpAddr::V4(d)),
            _ => return Parsed::Invalid("PROXY protocol v1: bad IPv4 address"),
        },
        "TCP6" => match (src.parse::<Ipv6Addr>(), dst.parse::<Ipv6Addr>()) {
            (Ok(s), Ok(d)) => (IpAddr::V6(s), IpAddr::V6(d)),
            _ => return Parsed::Invalid("PROXY protocol v1: bad IPv6 address"),
        },
        _ => return Parsed::Invalid("PROXY protocol v1: unknown protocol"),
    };
    let _ = dst;
    match (port(sport), port(dport)) {
        (Some(sport), Some(_)) => Parsed::Done {
            len,
            source: Some(SocketAddr::new(src, sport)),
        },
        _ => Parsed::Invalid("PROXY protocol v1: bad port"),
    }
}

/// A port: 1 to 5 digits, no sign, no leading zero (but `0` itself), at most 65535.
fn port(s: &str) -> Option<u16> {
    let ok =
        !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_header(cmd: u8, fam: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&((addrs.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend_from_slice(addrs);
        h.extend_from_slice(tlvs);
        h
    }

    fn inet4() -> Vec<u8> {
        vec![192, 0, 2, 7, 10, 0, 0, 1, 0x30, 0x39, 0x01, 0xbb]
    }

    #[test]
    fn v2_tcp4_with_tlvs() {
        // An AWS-style TLV (type 0xEA) and a NOOP one.
        let tlvs = [&[0xea, 0, 4, 1, b'v', b'p', b'c'][..], &[0x04, 0, 0]].concat();
        let h = v2_header(1, 0x11, &inet4(), &tlvs);
        let mut with_request = h.clone();
        with_request.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse(&with_request, Accept::V2),
            Parsed::Done {
                len: h.len(),
                source: Some("192.0.2.7:12345".parse().unwrap())
            }
        );
        assert_eq!(parse(&h, Accept::Any), parse(&h, Accept::V2));
        assert!(matches!(parse(&h, Accept::V1), Parsed::Invalid(_)));
    }

    #[test]
    fn v2_tcp6_local_and_other_families() {
        let mut a = vec![0u8; 36];
        a[0] = 0x20;
        a[1] = 0x01;
        a[15] = 9;
        a[32] = 0x04;
        a[33] = 0xd2;
        let h = v2_header(1, 0x21, &a, &[]);
        assert_eq!(
            parse(&h, Accept::V2),
            Parsed::Done {
                len: 52,
                source: Some("[2001::9]:1234".parse().unwrap())
            }
        );
        // LOCAL: the balancer's own connection, whatever the addresses say.
        let h = v2_header(0, 0x11, &inet4(), &[]);
        assert_eq!(parse(&h, Accept::V2), Parsed::Done { len: 28, source: None });
        // AF_UNSPEC, datagrams and UNIX sockets name no client.
        for (fam, n) in [(0x00, 0), (0x12, 12), (0x22, 36), (0x31, 216)] {
            let h = v2_header(1, fam, &vec![1u8; n], &[]);
            assert_eq!(
                parse(&h, Accept::V2),
                Parsed::Done {
                    len: 16 + n,
                    source: None
                },
                "{fam:#x}"
            );
        }
    }

    #[test]
    fn v2_malformed() {
        let good = v2_header(1, 0x11, &inet4(), &[]);
        let bad = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut h = good.clone();
            f(&mut h);
            parse(&h, Accept::V2)
        };
        assert!(matches!(bad(&|h| h[12] = 0x11), Parsed::Invalid(m) if m.contains("version")));
        assert!(matches!(bad(&|h| h[12] = 0x22), Parsed::Invalid(m) if m.contains("command")));
        assert!(matches!(bad(&|h| h[13] = 0x41), Parsed::Invalid(m) if m.contains("family")));
        // Declared shorter than its addresses.
        assert!(matches!(bad(&|h| { h[15] = 8; h.truncate(24) }), Parsed::Invalid(m) if m.contains("addresses")));
        // Longer than the bound: refused from the first 16 bytes, without waiting for the rest.
        assert!(matches!(bad(&|h| { h[14] = 0xff; h.truncate(16) }), Parsed::Invalid(m) if m.contains("too long")));
        // TLVs that do not fill their space exactly.
        for tlvs in [&[0x04u8][..], &[0x04, 0], &[0x04, 0, 2, 1]] {
            let h = v2_header(1, 0x11, &inet4(), tlvs);
            assert!(
                matches!(parse(&h, Accept::V2), Parsed::Invalid(m) if m.contains("TLV")),
                "{tlvs:?}"
            );
        }
        // Plain HTTP on a PROXY listener.
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n", Accept::Any), Parsed::Invalid(_)));
        // A TLS ClientHello.
        assert!(matches!(parse(&[0x16, 3, 1, 0, 200], Accept::V2), Parsed::Invalid(_)));
    }

    #[test]
    fn v1_forms() {
        let ok = |s: &str, src: &str| {
            assert_eq!(
                parse(s.as_bytes(), Accept::V1),
                Parsed::Done {
                    len: s.find("\r\n").unwrap() + 2,
                    source: Some(src.parse().unwrap())
                },
                "{s:?}"
            );
        };
        ok(
            "PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n",
            "192.0.2.7:56324",
        );
        ok("PROXY TCP6 2001:db8::1 ::1 0 65535\r\n", "[2001:db8::1]:0");
        assert_eq!(
            parse(b"PROXY UNKNOWN whatever\r\n", Accept::Any),
            Parsed::Done { len: 24, source: None }
        );
        for bad in [
            "PROXY TCP4 192.0.2.7 10.0.0.1 56324\r\n",
            "PROXY TCP4 192.0.2.7 10.0.0.1 56324 443 x\r\n",
            "PROXY TCP4  192.0.2.7 10.0.0.1 56324 443\r\n",
            "PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
            "PROXY TCP6 192.0.2.7 ::1 1 2\r\n",
            "PROXY TCP4 192.0.2.7 10.0.0.1 65536 443\r\n",
            "PROXY TCP4 192.0.2.7 10.0.0.1 080 443\r\n",
            "PROXY TCP4 192.0.2.7 10.0.0.1 +80 443\r\n",
            "PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n",
            "PROXY TCP4 192.0.2.7 10.0.0.1 1 2\rX",
            "PROXY TCP4 192.0.2.7 10.0.0.1 1 2\n",
            "PROXY UNKNOWN\n\r\n",
        ] {
            assert!(
                matches!(parse(bad.as_bytes(), Accept::V1), Parsed::Invalid(_)),
                "{bad:?}"
            );
        }
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX, b'x');
        assert!(matches!(parse(&long, Accept::V1), Parsed::Invalid(m) if m.contains("107")));
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", Accept::V2),
            Parsed::Invalid(_)
        ));
    }

    /// Every strict prefix of a valid header asks for more (and never for fewer bytes than it has); every
    /// header followed by anything parses to the same length.
    #[test]
    fn every_truncation_waits() {
        let headers: Vec<Vec<u8>> = vec![
            v2_header(1, 0x11, &inet4(), &[0xea, 0, 2, 7, 7]),
            v2_header(0, 0x00, &[], &[]),
            v2_header(1, 0x21, &[3u8; 36], &[]),
            b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
        ];
        for h in &headers {
            for accept in [Accept::Any, if h[0] == b'P' { Accept::V1 } else { Accept::V2 }] {
                for cut in 0..h.len() {
                    match parse(&h[..cut], accept) {
                        Parsed::Incomplete { want } => assert!(want > cut && want <= h.len().max(V1_MAX)),
                        other => panic!("{:?} cut at {cut}: {other:?}", String::from_utf8_lossy(h)),
                    }
                }
                let mut more = h.clone();
                more.extend_from_slice(b"\x16\x03\x01 anything");
                assert!(matches!(parse(&more, accept), Parsed::Done { len, .. } if len == h.len()));
            }
        }
    }

    #[test]
    fn accept_names() {
        for a in [Accept::V1, Accept::V2, Accept::Any] {
            assert_eq!(Accept::parse(a.name()), Ok(a));
        }
        assert!(Accept::parse("v3").is_err());
    }
}
