//! The fuzz regressions replayed in `cargo test`: every file in `fuzz/regressions/<target>/` goes through the
//! checks of that fuzz target, which are the same code (`fuzz/checks/<target>.rs`, loaded with `#[path]` here
//! and by the target), so the two cannot drift apart.
//!
//! The test fails if a target's directory is missing or empty (it would pass vacuously), and if
//! `fuzz/regressions/` holds a directory for a target it does not replay (a new target's reproducers would be
//! skipped).

use std::path::{Path, PathBuf};

#[path = "../fuzz/checks/proxy_protocol.rs"]
mod proxy_protocol;
#[path = "../fuzz/checks/request_head.rs"]
mod request_head;
#[path = "../fuzz/checks/response_head.rs"]
mod response_head;
// The framing model both checks use (as `crate::framing`).
#[path = "models/framing.rs"]
mod framing;

type Check = fn(&[u8]);

/// The targets with reproducers, and their checks.
const TARGETS: &[(&str, Check)] = &[
    ("request_head", request_head::check),
    ("response_head", response_head::check),
    ("proxy_protocol", proxy_protocol::check),
];

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions")
}

/// The files of `dir`, sorted; panics if it is missing or holds none.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no reproducer to replay", dir.display());
    files
}

/// Runs `check` on every input of `dir`; returns the failures as "file: panic message".
fn replay(dir: &Path, check: Check) -> (usize, Vec<String>) {
    let files = inputs(dir);
    let failures = files
        .iter()
        .filter_map(|f| {
            let data = std::fs::read(f).unwrap();
            let r = std::panic::catch_unwind(|| check(&data)).err()?;
            let msg = r
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| r.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Some(format!("{}: {msg}", f.display()))
        })
        .collect();
    (files.len(), failures)
}

#[test]
fn every_reproducer_passes_its_targets_checks() {
    let mut failures = Vec::new();
    for &(target, check) in TARGETS {
        let (n, f) = replay(&regressions().join(target), check);
        eprintln!("{target}: {n} reproducers, {} failing", f.len());
        failures.extend(f);
    }
    assert!(failures.is_empty(), "failing reproducers:\n{}", failures.join("\n"));
}

#[test]
fn every_regressions_directory_is_replayed() {
    let dir = regressions();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        assert!(
            TARGETS.iter().any(|&(t, _)| t == name),
            "fuzz/regressions/{name} is not replayed: add its target's checks to TARGETS"
        );
    }
}

#[test]
fn a_missing_or_empty_directory_fails() {
    let tmp = std::env::temp_dir().join(format!("portcullis-fuzz-regressions-{}", std::process::id()));
    let missing = std::panic::catch_unwind(|| inputs(&tmp));
    assert!(missing.is_err(), "a missing directory was accepted");
    std::fs::create_dir(&tmp).unwrap();
    let empty = std::panic::catch_unwind(|| inputs(&tmp));
    std::fs::remove_dir(&tmp).unwrap();
    assert!(empty.is_err(), "an empty directory was accepted");
}

/// The PROXY protocol checks over every single-byte change (to bytes that matter to the grammar) and every
/// truncation of each short reproducer: a deterministic neighbourhood of the valid and invalid headers.
#[test]
fn proxy_protocol_neighbourhood() {
    const BYTES: [u8; 16] = [
        0, 1, b'\n', b'\r', b' ', 0x11, 0x12, 0x21, 0x22, 0x31, 0x7f, 0xff, b'0', b'9', b':', b'.',
    ];
    let mut n = 0;
    for f in inputs(&regressions().join("proxy_protocol")) {
        let data = std::fs::read(&f).unwrap();
        if data.len() > 64 {
            continue;
        }
        for cut in 0..data.len() {
            proxy_protocol::check(&data[..cut]);
            for b in BYTES {
                let mut m = data.clone();
                m[cut] = b;
                proxy_protocol::check(&m);
                n += 1;
            }
        }
    }
    assert!(n > 1000, "{n} mutations");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 4000, ..Default::default() })]

    /// The PROXY protocol checks over random inputs that start like a header of either version (or not at
    /// all): a short, deterministic fuzz run inside `cargo test`.
    #[test]
    fn proxy_protocol_random_inputs(
        start in 0u8..3,
        fam in proptest::sample::select(vec![0x00u8, 0x11, 0x12, 0x21, 0x22, 0x31, 0x41]),
        cmd in proptest::sample::select(vec![0x20u8, 0x21, 0x22, 0x11]),
        len in 0u16..80,
        tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
        words in proptest::collection::vec(
            proptest::sample::select(vec!["TCP4", "TCP6", "UNKNOWN", "1.2.3.4", "::1", "80", "65536", " ", "\r\n", "\n"]),
            0..8,
        ),
    ) {
        let mut data = Vec::new();
        match start {
            0 => {
                data.extend_from_slice(b"\r\n\r\n\0\r\nQUIT\n");
                data.extend_from_slice(&[cmd, fam]);
                data.extend_from_slice(&len.to_be_bytes());
            }
            1 => {
                data.extend_from_slice(b"PROXY ");
                for w in &words {
                    data.extend_from_slice(w.as_bytes());
                    data.push(b' ');
                }
            }
            _ => {}
        }
        data.extend_from_slice(&tail);
        proxy_protocol::check(&data);
    }
}
