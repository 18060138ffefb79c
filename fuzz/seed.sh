#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the repository's corpora (tests/corpora: llhttp requests, http-desync-guardian YAML cases,
# JSONTestSuite; benches/corpora: json-bench) plus a few hand-written inputs. The corpus is not committed (fuzz/.gitignore);
# running this again adds the seeds back next to whatever the fuzzer has found (file names are content hashes).
#
#   fuzz/seed.sh
#
# Needs python3; PyYAML for the desync-guardian cases (skipped with a warning without it).
set -euo pipefail
FUZZ_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$FUZZ_DIR/.." && pwd)"

python3 - "$ROOT" "$FUZZ_DIR/corpus" <<'PY'
import base64, glob, hashlib, json, os, sys

root, out = sys.argv[1], sys.argv[2]
corpora = os.path.join(root, "tests/corpora")
counts = {}

def put(target, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    counts[target] = counts.get(target, 0) + 1

def enc(s):
    s = str(s)
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode("utf-8")

# ---- HTTP requests: llhttp (raw bytes) and desync-guardian (YAML, built into raw heads) ----
requests = []
with open(os.path.join(corpora, "llhttp/llhttp-request-cases.jsonl")) as f:
    for line in f:
        requests.append(base64.b64decode(json.loads(line)["raw_b64"]))
try:
    import yaml
    for path in sorted(glob.glob(os.path.join(corpora, "desync-guardian/tests/*.yaml"))):
        for case in yaml.safe_load(open(path, encoding="utf-8")) or []:
            line = enc(case.get("method") or "GET") + b" " + enc(case.get("uri") or "/")
            if case.get("version"):
                line += b" " + enc(case["version"])
            fields = [enc(h["name"]) + b": " + enc(h["value"]) for h in (case.get("headers") or [])]
            head = [line] + fields
            requests.append(b"\r\n".join(head) + b"\r\n\r\n")
            if not any(f.lower().startswith(b"host:") for f in fields):
                # Without Host an HTTP/1.1 head is refused before its framing is looked at.
                requests.append(b"\r\n".join([line, b"Host: a"] + fields) + b"\r\n\r\n")
except ImportError:
    print("seed.sh: PyYAML missing, desync-guardian cases skipped", file=sys.stderr)

for r in requests:
    put("request_head", r)

# ---- chunked: bodies of the chunked llhttp requests, and hand-written ones; 2 config bytes first ----
bodies = []
for r in requests:
    head, sep, body = r.partition(b"\r\n\r\n")
    if sep and b"chunked" in head.lower() and body:
        bodies.append(body)
bodies += [
    b"5\r\nhello\r\n6;name=val\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT",
    b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    b"0\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b"a;ext=\"q\\\"x\"\r\n0123456789\r\n0\r\nA: b\r\nC:\td\r\n\r\n",
    b"0x5\r\nhello\r\n0\r\n\r\n", b"5 \r\nhello\r\n0\r\n\r\n", b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
    b"0\r\nX: y\n\r\n", b"2;\r\naa\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n", b"11111111111111111\r\n",
]
for i, b in enumerate(bodies):
    put("chunked", bytes([(i * 37) & 0xFF, (i * 11) & 0xFF]) + b)

# ---- response heads: hand-written (no response corpus); first byte = flags (see the target) ----
responses = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: X-Hop, close\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\nbody",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
    b"HTTP/1.1 500 \r\nConnection: content-length, transfer-encoding\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\nContent-Length: 1\n\nx",
    b"HTTP/1.1 404 Not Found\r\nContent-Type: application/problem+json\r\nContent-Length: 2\r\n\r\n{}",
]
for i, r in enumerate(responses):
    for flags in (0x00, 0x01 | (i << 3) & 0xF8, 0x02, 0x04 | 0x30):
        put("response_head", bytes([flags & 0xFF]) + r)

# ---- media: Content-Type value, then Accept values, LF-separated ----
ctypes, accepts = [], []
for r in requests:
    for field in r.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = field.partition(b":")
        if name.strip().lower() == b"accept":
            accepts.append(value.strip())
        elif name.strip().lower() == b"content-type":
            ctypes.append(value.strip())
ctypes += [b"application/json", b"Application/JSON; charset=utf-8", b"application/merge-patch+json",
           b"application/vnd.acme.v1+json", b"text/plain", b"application/json;", b"a/b; x=\"1,2;3\"; Q=1.000",
           b"application/+json", b"application/json; charset=\"utf\\\"8\""]
accepts += [b"application/vnd.acme.v2+json", b"APPLICATION/VND.ACME.V1+JSON; charset=utf-8",
            b"application/vnd.acme.v1+json;q=0.5, application/vnd.acme.v2+json", b"*/*", b"application/*",
            b"application/vnd.acme.v2+json;q=0", b"application/vnd.acme.v2+json;q=2", b"nonsense", b",",
            b"Application/VND.acme.v2+JSON;q=0.5 , text/*; q=0.25,*/*;q=0", b"a/b;q=0.1234", b"a/b;\tq=1.",
            b"application/vnd.other.v1+json;q=0.9, application/vnd.acme.v1+json;q=0.900"]
for i, ct in enumerate(ctypes):
    put("media", ct + b"\n" + accepts[i % len(accepts)])
for i, a in enumerate(accepts):
    put("media", ctypes[i % len(ctypes)] + b"\n" + a)
    put("media", ctypes[(i + 3) % len(ctypes)] + b"\n" + a + b"\n" + accepts[(i + 5) % len(accepts)])

# ---- json: JSONTestSuite, and pieces of json-bench (whole files are megabytes) ----
for path in sorted(glob.glob(os.path.join(corpora, "JSONTestSuite/test_parsing/*.json"))
                   + glob.glob(os.path.join(corpora, "JSONTestSuite/test_transform/*.json"))):
    put("json", open(path, "rb").read())
for path in sorted(glob.glob(os.path.join(root, "benches/corpora/json-bench/*.json"))):
    raw = open(path, "rb").read()
    put("json", raw[:4096])  # a truncated (invalid) prefix
    doc = json.loads(raw)
    found = []
    def walk(v, depth=0):
        if len(found) >= 40:
            return
        if isinstance(v, (dict, list)):
            s = json.dumps(v, ensure_ascii=(len(found) % 2 == 0), separators=(",", ":") if depth % 2 else None)
            if 40 <= len(s) <= 4000:
                found.append(s.encode("utf-8"))
            for c in (v.values() if isinstance(v, dict) else v):
                walk(c, depth + 1)
    walk(doc)
    for s in found:
        put("json", s)

# PROXY protocol headers: the reproducers (valid v1/v2 headers and near misses) are the seeds.
pp = os.path.join(root, "fuzz", "regressions", "proxy_protocol")
for name in sorted(os.listdir(pp)):
    with open(os.path.join(pp, name), "rb") as f:
        put("proxy_protocol", f.read())

for t in sorted(counts):
    print(f"{t}: {counts[t]} seeds written to {os.path.join(out, t)}")
PY
