//! The protocol modules are pure: no sockets, no event loop, no clock. This test keeps it so.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn pure_modules_import_no_io_and_read_no_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for d in ["http", "guard", "limit", "proxy", "check", "pool"] {
        if root.join(d).is_dir() {
            rust_files(&root.join(d), &mut files);
        }
    }
    for f in ["timer.rs", "buf.rs", "metrics.rs", "problem.rs", "proxy_protocol.rs"] {
        files.push(root.join(f));
    }
    assert!(files.len() >= 10, "expected the pure modules, found {files:?}");
    // Address values come from `core::net` (no sockets there); `std::net` is where sockets live.
    let forbidden = [
        "mio",
        "std::net",
        "Instant::now",
        "SystemTime",
        "std::thread",
        "TcpStream",
        "UdpSocket",
        // No randomness either: a seed is passed in (`limit::Seed`), like the clock.
        "RandomState::new",
        "HashMap::new",
        "HashMap::default",
        "HashSet::new",
        "HashSet::default",
        "getrandom",
    ];
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        // Unit tests may use a real clock to make instants; the module's own code may not. A `tests.rs` is all
        // unit tests: its module is declared under `#[cfg(test)]` (checked) in its parent, `mod.rs` beside it
        // or `name.rs` beside its folder `name/`.
        let code_part = if f.ends_with("tests.rs") {
            let beside = f.with_file_name("mod.rs");
            let parent_file = if beside.exists() {
                beside
            } else {
                f.parent().unwrap().with_extension("rs")
            };
            let parent = std::fs::read_to_string(&parent_file).unwrap();
            assert!(
                parent.contains("#[cfg(test)]\nmod tests;"),
                "{}: not test-only",
                f.display()
            );
            ""
        } else {
            text.split("#[cfg(test)]").next().unwrap()
        };
        for (i, line) in code_part.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for word in forbidden {
                assert!(
                    !code.contains(word),
                    "{}:{}: pure module uses `{word}`: {line}",
                    f.display(),
                    i + 1
                );
            }
        }
    }
}

/// The `crate::` modules a pure module may name: the other pure modules, never upward (configuration, the
/// process, the event loop, the helper threads).
const PURE: [&str; 12] = [
    "check",
    "pool",
    "http",
    "proxy_protocol",
    "problem",
    "guard",
    "limit",
    "proxy",
    "buf",
    "timer",
    "toml_subset",
    "metrics",
];

/// Every `crate::X` a file's code names (comments left out, test sections included) with X not pure.
fn upward_paths(text: &str) -> Vec<String> {
    paths_outside(text, |name| PURE.contains(&name))
}

/// Every `crate::X` a file's code names (comments left out, test sections included) with X not `allowed`.
fn paths_outside(text: &str, allowed: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + "crate::".len()..];
            let name: String = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !allowed(&name) {
                found.push(format!("line {}: crate::{name}", i + 1));
            }
            rest = tail;
        }
    }
    found
}

#[test]
fn pure_modules_import_only_pure_modules() {
    // The check itself catches a planted edge, in code and after `#[cfg(test)]` alike.
    let planted =
        "use crate::http::Header;\n#[cfg(test)]\nmod t { use crate::config::Limits; }\n// crate::server in a comment\n";
    assert_eq!(upward_paths(planted), ["line 3: crate::config"]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for d in ["http", "guard", "limit", "proxy", "check", "pool"] {
        rust_files(&root.join(d), &mut files);
    }
    for f in [
        "timer.rs",
        "buf.rs",
        "toml_subset.rs",
        "metrics.rs",
        "problem.rs",
        "proxy_protocol.rs",
    ] {
        files.push(root.join(f));
    }
    let mut edges = Vec::new();
    for f in &files {
        for e in upward_paths(&std::fs::read_to_string(f).unwrap()) {
            edges.push(format!("{}: {e}", f.display()));
        }
    }
    assert!(edges.is_empty(), "pure modules importing upward:\n{}", edges.join("\n"));
}

/// HTTP is the bottom layer: it refuses with its own protocol type (`http::Refusal`) and knows nothing of the
/// product's rules (the checks, the limit, the wire reasons and their answers, the machine).
#[test]
fn http_names_no_policy() {
    let below = ["http", "buf"];
    let planted = "use crate::http::Version;
fn f() -> crate::problem::Reason { todo!() }
";
    assert_eq!(
        paths_outside(planted, |n| below.contains(&n)),
        ["line 2: crate::problem"]
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root.join("http"), &mut files);
    let mut edges = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for e in paths_outside(&text, |n| below.contains(&n)) {
            edges.push(format!("{}: {e}", f.display()));
        }
        // `super::` from http/mod.rs's own code would reach the crate root (its test module's is http).
        let code = text.split("#[cfg(test)]").next().unwrap();
        assert!(
            !f.ends_with("http/mod.rs") || !code.contains("super::"),
            "{}",
            f.display()
        );
    }
    assert!(
        edges.is_empty(),
        "http/ naming the layers above it:\n{}",
        edges.join("\n")
    );
}

/// The helper threads get narrow handles from the server: they never name the server's shared state, nor the
/// workers'.
#[test]
fn helper_threads_do_not_import_the_server() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let above = ["server", "worker", "main"];
    let planted = "use crate::limit::Limiter;\nfn f(s: &crate::server::Shared) {}\n";
    assert_eq!(
        paths_outside(planted, |n| !above.contains(&n)),
        ["line 2: crate::server"]
    );
    let mut edges = Vec::new();
    let mut files = vec![
        root.join("admin.rs"),
        root.join("redis_sync.rs"),
        root.join("health.rs"),
    ];
    rust_files(&root.join("redis_sync"), &mut files);
    assert!(files.len() > 2, "the fleet sync's submodules: {files:?}");
    for path in &files {
        let f = path.strip_prefix(&root).unwrap().display().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        for e in paths_outside(&text, |n| !above.contains(&n)) {
            edges.push(format!("{f}: {e}"));
        }
        // A `use super::...` or a bare `server::` path would dodge the check above.
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            assert!(
                !code.contains("server::") || code.contains("crate::server::"),
                "{f}:{}: names the server: {line}",
                i + 1
            );
        }
    }
    assert!(
        edges.is_empty(),
        "helper threads importing the server:\n{}",
        edges.join("\n")
    );
}

/// The embeddable library (`check/`) is the pure layers and nothing else: besides the rules above (no I/O, no
/// clock, only pure modules), it names no async runtime, no Redis client and no thread.
#[test]
fn the_library_is_pure() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root.join("check"), &mut files);
    assert!(files.len() >= 3, "the library's files: {files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (i, line) in code.lines().enumerate() {
            // Doc examples may spawn a thread: they are the caller's code. Comments say what the library is not.
            let code = line.split("//").next().unwrap();
            for word in [
                "tokio",
                "redis",
                "mio",
                "std::thread",
                "std::fs",
                "std::io",
                "hyper",
                "axum",
            ] {
                assert!(!code.contains(word), "{}:{}: `{word}`: {line}", f.display(), i + 1);
            }
        }
        assert!(
            upward_paths(&text).is_empty(),
            "{}: {:?}",
            f.display(),
            upward_paths(&text)
        );
    }
    // The check above sees an upward edge.
    assert_eq!(upward_paths("use crate::redis_sync::Sync;").len(), 1);
}

/// The tower layer (`layer.rs`, feature `tower`) stands on the library alone: it names `crate::check` and
/// nothing else of the crate (not the binary's configuration, server or workers).
#[test]
fn the_tower_layer_uses_only_the_library() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let text = std::fs::read_to_string(root.join("layer.rs")).unwrap();
    let planted = "use crate::check::Checker;\nuse crate::config::Config;\n";
    assert_eq!(paths_outside(planted, |n| n == "check"), ["line 2: crate::config"]);
    let edges = paths_outside(&text, |n| n == "check");
    assert!(edges.is_empty(), "layer.rs names more than the library: {edges:?}");
    assert!(text.contains("crate::check::"), "layer.rs builds on crate::check");
}
