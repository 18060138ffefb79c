//! Real HTTP clients against the binary: httpx (Python, sync and async) and Node's fetch send bodies larger
//! than `--max-body`, and every try must get the ingress's answer (413 / 415), not a reset. The scripts are in
//! tests/clients/; python3-httpx and nodejs are Debian packages (`.ci/run` installs them).

mod support;

use std::process::Command;

use support::*;

/// A Python 3 that has httpx: Debian's (`apt-get install python3-httpx`), or the one on the PATH.
fn python() -> String {
    for p in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(p)
            .args(["-c", "import httpx"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return p.to_string();
        }
    }
    panic!("no python3 with httpx: apt-get install python3-httpx (.ci/run installs it)");
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("start the client");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn script(name: &str) -> String {
    format!("{}/tests/clients/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn refused_large_uploads_reach_httpx_as_answers() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(up.addr, &[]);
    let url = format!("http://{}/upload", p.addr);
    let py = python();
    for (mode, size, tries, want) in [
        ("async", 2_270_000, 20, 413),
        ("async", 20_000_000, 20, 413),
        ("sync", 2_270_000, 20, 413),
        ("sync", 20_000_000, 5, 413),
        // Throttled clients: a chunked body with a wrong Content-Type at about 1 MB/s (refused once complete,
        // 415: it might have been empty), and a body over --max-body at about 4 MB/s (413 from the head, then the
        // lingering close reads the rest).
        ("throttled", 400_000, 5, 415),
        ("throttled-length", 2_270_000, 5, 413),
    ] {
        let got = run(Command::new(&py).args([
            &script("httpx_refusals.py"),
            &url,
            &size.to_string(),
            &tries.to_string(),
            mode,
        ]));
        assert_eq!(
            got,
            format!("statuses {want}:{tries} errors 0"),
            "httpx {mode}, {size} bytes"
        );
    }
    assert_eq!(up.requests().len(), 0);
}

#[test]
fn refused_large_uploads_reach_node_fetch_as_answers() {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("note: node is not installed; Node's fetch was not tried (apt-get install nodejs)");
        return;
    }
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(up.addr, &[]);
    let url = format!("http://{}/upload", p.addr);
    for (size, tries) in [(2_270_000, 20), (20_000_000, 20)] {
        let got = run(Command::new("node").args([
            &script("fetch_refusals.mjs"),
            &url,
            &size.to_string(),
            &tries.to_string(),
        ]));
        assert_eq!(got, format!("statuses 413:{tries} errors 0"), "fetch, {size} bytes");
    }
    assert_eq!(up.requests().len(), 0);
}
