//! `proxy_protocol::parse` on arbitrary bytes, under each `--proxy-protocol` setting.
//!
//! Checked, beyond "never panics":
//! - a complete header's length is within the input and the version's bound (107 bytes for v1, `V2_MAX`
//!   for v2), and it starts with the version's signature; `Incomplete` always asks for more than it has, and
//!   never for more than the bound;
//! - the input read in pieces gives the same answer: every prefix shorter than a complete header is
//!   `Incomplete`, every prefix that is refused stays refused with more bytes, and a complete header is the
//!   same header whatever follows it (the worker peeks at growing prefixes);
//! - `any` accepts exactly what `v1` or `v2` accepts;
//! - a named client address comes only from a PROXY (not LOCAL) command.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/proxy_protocol.rs`) and `tests/fuzz_regressions.rs`, which
//! replays `fuzz/regressions/proxy_protocol/` in `cargo test`. Input: the bytes a connection starts with.

use portcullis::proxy_protocol::{parse, Accept, Parsed, V1_MAX, V2_MAX, V2_SIGNATURE};

pub fn check(data: &[u8]) {
    for accept in [Accept::V1, Accept::V2, Accept::Any] {
        let whole = parse(data, accept);
        match whole {
            Parsed::Done { len, source } => {
                assert!(len <= data.len());
                if data.starts_with(&V2_SIGNATURE) {
                    assert!(accept != Accept::V1 && (16..=V2_MAX).contains(&len));
                    if source.is_some() {
                        assert_eq!(data[12], 0x21, "an address only from a PROXY command");
                    }
                } else {
                    assert!(accept != Accept::V2 && data.starts_with(b"PROXY ") && len <= V1_MAX);
                    assert_eq!(&data[len - 2..len], b"\r\n");
                }
                // The same header whatever follows it; cut short, it waits.
                assert_eq!(parse(&data[..len], accept), whole);
                for k in 0..len {
                    assert!(
                        matches!(parse(&data[..k], accept), Parsed::Incomplete { .. }),
                        "cut at {k}"
                    );
                }
            }
            Parsed::Incomplete { want } => {
                assert!(want > data.len(), "asks for {want} with {} bytes", data.len());
                assert!(want <= V2_MAX.max(V1_MAX));
                for k in 0..data.len() {
                    assert!(
                        matches!(parse(&data[..k], accept), Parsed::Incomplete { .. }),
                        "cut at {k}"
                    );
                }
            }
            Parsed::Invalid(why) => {
                assert!(!why.is_empty());
                // Refused once, refused with any more bytes (the longest prefix that was not refused waits).
                let first = (0..=data.len())
                    .find(|&k| matches!(parse(&data[..k], accept), Parsed::Invalid(_)))
                    .unwrap();
                for k in first..=data.len() {
                    assert!(
                        matches!(parse(&data[..k], accept), Parsed::Invalid(_)),
                        "prefix {k} of a refusal"
                    );
                }
            }
        }
    }
    let (v1, v2, any) = (
        parse(data, Accept::V1),
        parse(data, Accept::V2),
        parse(data, Accept::Any),
    );
    match any {
        Parsed::Done { .. } => assert!(any == v1 || any == v2),
        Parsed::Invalid(_) => {
            assert!(!matches!(v1, Parsed::Done { .. }) && !matches!(v2, Parsed::Done { .. }))
        }
        Parsed::Incomplete { .. } => {}
    }
}
