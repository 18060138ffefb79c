#!/usr/bin/env python3
"""Soak driver: mixed traffic at bounded rates on loopback against a release build of portcullis, an upstream
restart in the middle, the proxy's RSS and descriptors sampled every 10 s, and an end-to-end verification
of what reached the upstream. Python 3 standard library only. Normally started by benches/soak/run.sh:

    python3 benches/soak/soak.py --bin target/release/portcullis --duration 600 --out /tmp/portcullis-soak

Traffic (every request carries a unique X-Soak-Id of fixed width, so each class's heads keep one length; rates
are per thread, paced, and new connections per slow class are capped at 10 per second):
  get          4 users x 4 req/s, keep-alive GETs; the echoed id must be the request's (no mixed-up responses);
               user get-3 sends browser-like heads of 300-900 bytes (random Cookie length), the others ~150 B
  post         3 users x 3 req/s, JSON bodies of 64 B .. 200 KiB, X-Soak-Len / X-Soak-Sha announce the body
  greedy       2 users above --rate 10: one steady at 20 req/s, one bursting 30 back to back every 5 s
               (expected: 200 or 429; a 429'd request must never reach the upstream)
  bad_head     4 req/s, a new connection each: 12 malformed heads (smuggling shapes, obs-fold, bare LF, ...)
               (expected: 400/501/505 and the connection closed; never upstream)
  bad_policy   2 req/s keep-alive: malformed JSON (400), no Accept (406), POST text/plain (415); never upstream
  slowloris    20 connections trickling a head one byte per second (expected: 408 at --header-timeout 10 s)
  slow_body    8 connections announcing 20 000 bytes and sending 50 B/s (expected: 408 at --body-timeout 30 s,
               never upstream) + 2 slow-but-in-time bodies (2 000 B at 200 B/s: 200, intact upstream)
  slow_reader  3 connections reading 4 MB responses at ~640 KB/s (expected: 200 and every byte)
  restart      at duration/2 the upstream is killed (SIGKILL) and restarted 2 s later on the same port
               (expected: 502 for requests in that window, nothing twice upstream)

The upstream (benches/soak/upstream.py) logs every request it received before answering it. At the end the
driver checks: no id twice upstream, no partial body (length and sha256 as announced), nothing upstream
from the refused classes, every 200 backed by an upstream record, and lists any outcome the mix does not
explain. Verdict: RSS and descriptor count flat within 5% after warm-up (warm-up: the first 60 s, or the
first fifth of a shorter run, while pools and buffers fill): the mean of the last third of the samples taken
after warm-up (with traffic running) is within 5% of the mean of the first third for RSS, and not more than
5% above it for descriptors (a trend test: the count of descriptors moves by a few as slow connections cycle
and falls when the upstream restart closes pooled connections, which is not growth; the full min/max is
printed too); the proxy did not crash and exits 0 on SIGTERM; no duplicate, partial or leaked request upstream; no
unexplained outcome.
"""
import argparse
import collections
import hashlib
import json
import os
import random
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--bin", required=True)
ap.add_argument("--duration", type=int, default=600)
ap.add_argument("--out", default="/tmp/portcullis-soak")
ap.add_argument("--port", type=int, default=19120)
ap.add_argument("--uport", type=int, default=19121)
args = ap.parse_args()

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = args.out
os.makedirs(OUT, exist_ok=True)
UPLOG = os.path.join(OUT, "upstream.jsonl")
for f in (UPLOG, os.path.join(OUT, "events.jsonl")):
    if os.path.exists(f):
        os.remove(f)
ADDR = ("127.0.0.1", args.port)
NONCE = "%06x" % random.randrange(1 << 24)
T0 = time.monotonic()
STOP_AT = T0 + args.duration
RESTART_AT = T0 + args.duration / 2
stop = threading.Event()


def now():
    return time.monotonic() - T0


# ------------------------------------------------------------------------------------------------ processes
def start_upstream():
    return subprocess.Popen(
        ["nice", "-n", "19", sys.executable, os.path.join(HERE, "upstream.py"), str(args.uport), UPLOG],
        stdin=subprocess.DEVNULL,
    )


def wait_port(port, secs=10):
    until = time.monotonic() + secs
    while time.monotonic() < until:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


upstream = start_upstream()
assert wait_port(args.uport), "upstream did not start"
proxy_log = open(os.path.join(OUT, "proxy.log"), "w")
proxy = subprocess.Popen(
    ["nice", "-n", "19", args.bin, "--listen", "%s:%d" % ADDR, "--upstream", "127.0.0.1:%d" % args.uport,
     "--rate", "10", "--workers", "2", "--log-level", "warn",
     # Every soak user comes from 127.0.0.1: the per-address limit would count them as one.
     "--ip-rate", "0"],
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=proxy_log,
)
assert wait_port(args.port), "proxy did not start"
PID = proxy.pid  # nice execs the binary: same pid

# ------------------------------------------------------------------------------------------------ records
events = []  # (t, cls, id, outcome, detail)
ev_lock = threading.Lock()
ev_file = open(os.path.join(OUT, "events.jsonl"), "w", buffering=1)
restart_window = [None, None]  # (killed at, back at)


def record(cls, rid, outcome, detail=""):
    e = (round(now(), 3), cls, rid, outcome, detail)
    with ev_lock:
        events.append(e)
        ev_file.write(json.dumps(e) + "\n")


counter = collections.Counter()
cnt_lock = threading.Lock()


def new_id(cls):
    with cnt_lock:
        counter[cls] += 1
        return "%s-%s-%07d" % (NONCE, cls, counter[cls])  # fixed width: a class's heads keep one length


# ------------------------------------------------------------------------------------------------ client
class Closed(Exception):
    pass


def read_response(sock, buf, head_req=False):
    """One response from sock (buf: bytearray of already-read bytes). Returns (status, headers, body, buf)."""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            raise Closed("closed before a response" if not buf else "closed mid-head")
        buf += d
    i = buf.index(b"\r\n\r\n")
    head = bytes(buf[:i]).decode("latin-1")
    del buf[: i + 4]
    lines = head.split("\r\n")
    status = int(lines[0][9:12])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if head_req or status in (204, 304) or 100 <= status < 200:
        return status, hdrs, b"", buf
    if "content-length" in hdrs:
        n = int(hdrs["content-length"])
        while len(buf) < n:
            d = sock.recv(65536)
            if not d:
                raise Closed("closed mid-body (%d of %d)" % (len(buf), n))
            buf += d
        body = bytes(buf[:n])
        del buf[:n]
        return status, hdrs, body, buf
    body = bytearray(buf)  # close-delimited (the proxy's own answers always carry Content-Length)
    buf = bytearray()
    while True:
        d = sock.recv(65536)
        if not d:
            return status, hdrs, bytes(body), buf
        body += d


class KeepAlive:
    """A keep-alive connection that reconnects when the proxy closed it."""

    def __init__(self, timeout=40):
        self.sock = None
        self.buf = bytearray()
        self.timeout = timeout

    def roundtrip(self, data, head_req=False):
        if self.sock is None:
            self.sock = socket.create_connection(ADDR, timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buf = bytearray()
        try:
            self.sock.sendall(data)
            status, hdrs, body, self.buf = read_response(self.sock, self.buf, head_req)
        except BaseException:
            self.close()
            raise
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, body

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def req(method, path, rid, user=None, body=None, ctype="application/json", extra=""):
    h = "%s %s HTTP/1.1\r\nHost: soak\r\nAccept: application/json\r\nX-Soak-Id: %s\r\n" % (method, path, rid)
    if user:
        h += "Authorization: Bearer %s\r\n" % user
    if body is not None:
        h += "Content-Type: %s\r\nContent-Length: %d\r\n" % (ctype, len(body))
        h += "X-Soak-Len: %d\r\nX-Soak-Sha: %s\r\n" % (len(body), hashlib.sha256(body).hexdigest()[:16])
    return (h + extra + "\r\n").encode() + (body or b"")


def paced(rate):
    """Yields while running, sleeping to hold `rate` per second."""
    interval = 1.0 / rate
    nxt = time.monotonic()
    while not stop.is_set() and time.monotonic() < STOP_AT:
        yield
        nxt += interval
        d = nxt - time.monotonic()
        if d > 0:
            stop.wait(d)
        else:
            nxt = time.monotonic()


def err_name(e):
    return "%s: %s" % (type(e).__name__, e)


def checked_exchange(cls, conn, rid, data, want_len=None):
    try:
        status, hdrs, body = conn.roundtrip(data)
    except Exception as e:  # noqa: BLE001
        record(cls, rid, "error", err_name(e))
        return
    detail = ""
    if status == 200:
        try:
            echo = json.loads(body)
            if echo.get("id") != rid:
                detail = "MISMATCH: echoed id %r" % echo.get("id")
            elif want_len is not None and echo.get("len") != want_len:
                detail = "MISMATCH: upstream saw %r body bytes, sent %d" % (echo.get("len"), want_len)
        except ValueError:
            detail = "MISMATCH: not the upstream's JSON"
    elif hdrs.get("content-type") == "application/problem+json":
        try:
            detail = json.loads(body).get("reason", "")
        except ValueError:
            detail = "?"
    record(cls, rid, status, detail)


# ------------------------------------------------------------------------------------------------ classes
BROWSER = ("User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
           "Accept-Language: en-GB,en;q=0.7,fr;q=0.3\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n"
           "Referer: https://app.example/dashboard?tab=items\r\nSec-Fetch-Mode: cors\r\n")


def get_user(u):
    conn = KeepAlive()
    rng = random.Random(100 + u)
    for _ in paced(4):
        rid = new_id("get")
        # User get-3 sends browser-like heads of 300 to 900 bytes (a cookie of random length): real heads
        # are longer than the others' ~150 bytes.
        extra = BROWSER + "Cookie: session=%s\r\n" % ("c" * rng.randrange(0, 600)) if u == 3 else ""
        checked_exchange("get", conn, rid, req("GET", "/v1/items/%d" % rng.randrange(1000), rid, "get-%d" % u,
                                               extra=extra))
    conn.close()


POST_SIZES = [64, 1024, 8192, 60_000, 200_000]


def post_user(u):
    conn = KeepAlive()
    rng = random.Random(u)
    for _ in paced(3):
        rid = new_id("post")
        size = rng.choice(POST_SIZES)
        pad = "".join(rng.choice("abcdefghij") for _ in range(64)) * (size // 64 + 1)
        body = json.dumps({"id": rid, "pad": pad[:size]}).encode()
        checked_exchange("post", conn, rid, req("POST", "/v1/items", rid, "post-%d" % u, body), len(body))
    conn.close()


def greedy_steady():
    conn = KeepAlive()
    for _ in paced(20):
        rid = new_id("greedy")
        checked_exchange("greedy", conn, rid, req("GET", "/v1/hot", rid, "greedy-0"))
    conn.close()


def greedy_bursts():
    conn = KeepAlive()
    for _ in paced(0.2):
        for _ in range(30):
            rid = new_id("greedy")
            checked_exchange("greedy", conn, rid, req("GET", "/v1/burst", rid, "greedy-1"))
    conn.close()


# Malformed heads: (name, request bytes with {id}, expected statuses). Each is refused from its head.
BAD_HEADS = [
    ("cl+te", "POST /a HTTP/1.1\r\nHost: s\r\nX-Soak-Id: {id}\r\nAccept: */*\r\nContent-Length: 6\r\n"
              "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nX", {400}),
    ("dup-cl", "POST /a HTTP/1.1\r\nHost: s\r\nX-Soak-Id: {id}\r\nAccept: */*\r\nContent-Length: 3\r\n"
               "Content-Length: 30\r\n\r\nabc", {400}),
    ("obs-fold", "GET /a HTTP/1.1\r\nHost: s\r\nX-Soak-Id: {id}\r\nAccept: */*\r\nX-F: a\r\n b\r\n\r\n", {400}),
    ("bare-lf", "GET /a HTTP/1.1\r\nHost: s\r\nX-Soak-Id: {id}\nAccept: */*\r\n\r\n", {400}),
    ("te-list", "POST /a HTTP/1.1\r\nHost: s\r\nX-Soak-Id: {id}\r\nAccept: */*\r\n"
                "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", {400}),
    ("chunk-0x", "PUT /a HTTP/1.1\r\nHost: s\r\nX-Soak-Id: {id}\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n"
                 "\r\n0x5\r\nhello\r\n0\r\n\r\n", {400}),
    ("space-colon", "GET /a HTTP/1.1\r\nHost: s\r\nX-Soak-Id: {id}\r\nAccept : */*\r\n\r\n", {400}),
    ("te-unknown", "POST /a HTTP/1.1\r\nHost: s\r\nX-Soak-Id: {id}\r\nAccept: */*\r\n"
                   "Transfer-Encoding: xchunked\r\n\r\n", {501}),
    ("nul", "GET /a HTTP/1.1\r\nHost: s\r\nX-Soak-Id: {id}\r\nAccept: */*\r\nX: a\x00b\r\n\r\n", {400}),
    ("http12", "GET /a HTTP/1.2\r\nHost: s\r\nX-Soak-Id: {id}\r\nAccept: */*\r\n\r\n", {505}),
    ("no-host", "GET /a HTTP/1.1\r\nX-Soak-Id: {id}\r\nAccept: */*\r\n\r\n", {400}),
    ("conn-cl", "GET /a HTTP/1.1\r\nHost: s\r\nX-Soak-Id: {id}\r\nAccept: */*\r\nConnection: Content-Length\r\n"
                "\r\n", {400}),
]


def bad_heads():
    i = 0
    for _ in paced(4):
        name, raw, ok = BAD_HEADS[i % len(BAD_HEADS)]
        i += 1
        rid = new_id("bad_head")
        data = raw.replace("{id}", rid).encode("latin-1")
        try:
            s = socket.create_connection(ADDR, timeout=10)
            s.sendall(data)
            status, hdrs, body, buf = read_response(s, bytearray())
            closed = hdrs.get("connection", "").lower() == "close"
            try:
                s.settimeout(3)
                tail = s.recv(100)
            except OSError:
                tail = b"(timeout)"
            s.close()
            outcome = status if (status in ok and closed and not buf and tail == b"") else "unexpected"
            record("bad_head", rid, outcome, "%s: %d close=%s tail=%r" % (name, status, closed, tail[:20]))
        except Exception as e:  # noqa: BLE001
            record("bad_head", rid, "error", "%s: %s" % (name, err_name(e)))


def bad_policy():
    conn = KeepAlive()
    i = 0
    bad_json = [b'{"a":}', b"[1,2", b'{"a":1}x', b"", b"\xef\xbb\xbf{}", b'{"a":"\\ud800"}', b"nul"]
    for _ in paced(2):
        rid = new_id("bad_policy")
        kind = i % 4
        i += 1
        if kind < 2:
            body = bad_json[(i // 4) % len(bad_json)]
            data = req("POST", "/v1/items", rid, "policy", body)
        elif kind == 2:  # no Accept
            data = ("GET /v1/items HTTP/1.1\r\nHost: soak\r\nX-Soak-Id: %s\r\nAuthorization: Bearer policy\r\n\r\n"
                    % rid).encode()
        else:
            data = req("POST", "/v1/items", rid, "policy", b"hello", ctype="text/plain")
        checked_exchange("bad_policy", conn, rid, data)
    conn.close()


class OpenRate:
    """At most `per_s` new connections per second (a class replaces closed connections no faster)."""

    def __init__(self, per_s):
        self.per_s, self.opened = per_s, collections.deque()

    def may_open(self):
        t = time.monotonic()
        while self.opened and t - self.opened[0] > 1.0:
            self.opened.popleft()
        if len(self.opened) >= self.per_s:
            return False
        self.opened.append(t)
        return True


def slowloris():
    conns = {}  # sock -> [id, bytes sent, opened at]
    trickle = b"X-Trickle: " + b"a" * 4000
    last = 0.0
    opens = OpenRate(10)
    while not stop.is_set() and time.monotonic() < STOP_AT:
        while len(conns) < 20 and opens.may_open():
            rid = new_id("slowloris")
            try:
                s = socket.create_connection(ADDR, timeout=5)
                s.sendall(("GET /slow HTTP/1.1\r\nHost: soak\r\nAccept: */*\r\nX-Soak-Id: %s\r\n" % rid).encode())
                conns[s] = [rid, 0, time.monotonic()]
            except OSError as e:
                record("slowloris", rid, "error", err_name(e))
                break
        if time.monotonic() - last >= 1.0:
            last = time.monotonic()
            for s, st in list(conns.items()):
                try:
                    s.send(trickle[st[1] % len(trickle):][:1])
                    st[1] += 1
                except OSError:
                    pass  # the answer (or the close) is read below
        r, _, _ = select.select(list(conns), [], [], 0.2)
        for s in r:
            rid, sent, opened = conns.pop(s)
            took = time.monotonic() - opened
            try:
                s.settimeout(5)
                status, hdrs, body, buf = read_response(s, bytearray())
                reason = json.loads(body).get("reason", "") if body else ""
                record("slowloris", rid, status, "%s after %.1f s, %d bytes trickled" % (reason, took, sent))
            except Exception as e:  # noqa: BLE001
                record("slowloris", rid, "error", "%s after %.1f s" % (err_name(e), took))
            s.close()
    for s in conns:
        s.close()


def slow_body():
    conns = {}  # sock -> [id, remaining body, rate per s, opened at, kind]
    last = 0.0
    opens = OpenRate(10)
    while not stop.is_set() and time.monotonic() < STOP_AT:
        n_slow = sum(1 for v in conns.values() if v[4] == "slow")
        n_ok = len(conns) - n_slow
        for kind, have, want in (("slow", n_slow, 8), ("in_time", n_ok, 2)):
            for _ in range(want - have):
                if not opens.may_open():
                    break
                rid = new_id("slow_body")
                size, rate = (20_000, 50) if kind == "slow" else (2_000, 200)
                body = json.dumps({"id": rid, "pad": "p" * (size - 30)}).encode()
                data = req("POST", "/v1/upload", rid, "slowbody-%s" % rid, body)
                head, body_bytes = data[: len(data) - len(body)], data[len(data) - len(body):]
                try:
                    s = socket.create_connection(ADDR, timeout=5)
                    s.sendall(head)
                    conns[s] = [rid, bytearray(body_bytes), rate, time.monotonic(), kind]
                except OSError as e:
                    record("slow_body", rid, "error", err_name(e))
        if time.monotonic() - last >= 1.0:
            last = time.monotonic()
            for s, st in conns.items():
                chunk = bytes(st[1][: st[2]])
                del st[1][: st[2]]
                if chunk:
                    try:
                        s.send(chunk)
                    except OSError:
                        pass
        r, _, _ = select.select(list(conns), [], [], 0.2)
        for s in r:
            rid, left, rate, opened, kind = conns.pop(s)
            took = time.monotonic() - opened
            try:
                s.settimeout(5)
                status, hdrs, body, buf = read_response(s, bytearray())
                reason = ""
                if hdrs.get("content-type") == "application/problem+json":
                    reason = json.loads(body).get("reason", "?")
                detail = "%s: %s after %.1f s, %d body bytes unsent" % (kind, reason or "served", took, len(left))
                if status == 200:
                    echo = json.loads(body)
                    if echo.get("id") != rid:
                        detail = "MISMATCH: echoed id %r" % echo.get("id")
                record("slow_body", rid, status, detail)
            except Exception as e:  # noqa: BLE001
                record("slow_body", rid, "error", "%s: %s after %.1f s" % (kind, err_name(e), took))
            s.close()
    for s in conns:
        s.close()


def slow_reader(k):
    size = 4_000_000
    for _ in paced(1):  # at most one request a second, whatever the answer (a 502 or 429 comes back at once)
        rid = new_id("slow_reader")
        try:
            s = socket.create_connection(ADDR, timeout=40)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            s.sendall(req("GET", "/big?n=%d" % size, rid, "reader-%d" % k))
            got = bytearray()
            started = time.monotonic()
            while b"\r\n\r\n" not in got:
                d = s.recv(65536)
                if not d:
                    raise Closed("closed before a response")
                got += d
            i = got.index(b"\r\n\r\n")
            status = int(got[9:12])
            body = len(got) - i - 4
            while status == 200 and body < size and not stop.is_set():
                d = s.recv(65536)
                if not d:
                    break
                body += len(d)
                time.sleep(0.1)  # ~640 KB/s at most
            s.close()
            if stop.is_set() and body < size:
                break
            ok = status != 200 or body == size
            record("slow_reader", rid, status if ok else "short",
                   "%d of %d bytes in %.1f s" % (body, size, time.monotonic() - started))
        except Exception as e:  # noqa: BLE001
            record("slow_reader", rid, "error", err_name(e))


# ------------------------------------------------------------------------------------------------ sampler
samples = []  # (t, rss_kib, fds)


def sample():
    try:
        with open("/proc/%d/status" % PID) as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
        fds = len(os.listdir("/proc/%d/fd" % PID))
    except (OSError, StopIteration):
        rss, fds = None, None
    samples.append((round(now()), rss, fds))


def sampler():
    k = 0
    while not stop.is_set():
        sample()
        k += 1
        d = T0 + 10 * k - time.monotonic()
        if T0 + 10 * k > STOP_AT + 0.5:
            break
        if d > 0:
            stop.wait(d)


def restarter():
    global upstream
    d = RESTART_AT - time.monotonic()
    if d > 0 and stop.wait(d):
        return
    upstream.send_signal(signal.SIGKILL)
    upstream.wait()
    restart_window[0] = now()
    stop.wait(2)
    upstream = start_upstream()
    wait_port(args.uport)
    restart_window[1] = now()


threads = [threading.Thread(target=sampler), threading.Thread(target=restarter)]
threads += [threading.Thread(target=get_user, args=(u,)) for u in range(4)]
threads += [threading.Thread(target=post_user, args=(u,)) for u in range(3)]
threads += [threading.Thread(target=f) for f in (greedy_steady, greedy_bursts, bad_heads, bad_policy, slowloris,
                                                  slow_body)]
threads += [threading.Thread(target=slow_reader, args=(k,)) for k in range(3)]
print("soak: %d s, proxy pid %d on %s:%d, upstream on %d, output in %s"
      % (args.duration, PID, ADDR[0], ADDR[1], args.uport, OUT), flush=True)
for t in threads:
    t.daemon = True
    t.start()
try:
    while time.monotonic() < STOP_AT and proxy.poll() is None:
        time.sleep(1)
        if int(now()) % 60 == 0:
            print("  t=%4ds  %d outcomes so far" % (now(), len(events)), flush=True)
finally:
    stop.set()
for t in threads:
    t.join(timeout=45)
crashed = proxy.poll() is not None
n_running = len(samples)
sample()  # after the traffic stopped (not part of the verdict)
proxy.send_signal(signal.SIGTERM)
try:
    exit_code = proxy.wait(timeout=40)
except subprocess.TimeoutExpired:
    proxy.kill()
    exit_code = "did not exit within 40 s of SIGTERM"
upstream.send_signal(signal.SIGTERM)
upstream.wait()

# ------------------------------------------------------------------------------------------------ report
out_lines = []


def p(s=""):
    out_lines.append(s)
    print(s)


kill_t, back_t = restart_window
in_window = (lambda t: kill_t is not None and kill_t - 1 <= t <= (back_t or kill_t) + 5)

EXPECTED = {
    "get": {200}, "post": {200}, "greedy": {200, 429}, "bad_head": {400, 501, 505},
    "bad_policy": {400, 406, 415}, "slowloris": {408}, "slow_body": {200, 408}, "slow_reader": {200},
}
MUST_NOT_REACH = {"bad_head", "bad_policy", "slowloris"}
by_class = collections.defaultdict(collections.Counter)
unexplained = []
refused_ids, ok_ids = set(), set()
for t, cls, rid, outcome, detail in events:
    by_class[cls][outcome] += 1
    explained = outcome in EXPECTED[cls] and not detail.startswith("MISMATCH")
    if cls == "slow_body" and outcome == 200 and not detail.startswith("in_time"):
        explained = False
    if cls == "slow_body" and outcome == 408 and not detail.startswith("slow"):
        explained = False
    if cls == "bad_policy" and outcome == 400 and detail != "malformed_json":
        explained = False
    if not explained and cls in ("get", "post", "greedy", "slow_reader", "slow_body") and in_window(t) and (
            outcome in (502, 504, "error", "short")):
        explained = True  # the upstream restart
    if not explained:
        unexplained.append((t, cls, rid, outcome, detail))
    if outcome == 200:
        ok_ids.add(rid)
    elif isinstance(outcome, int) and outcome >= 400 and outcome not in (502, 504):
        refused_ids.add(rid)
    if cls in MUST_NOT_REACH:
        refused_ids.add(rid)

ups = []
with open(UPLOG) as f:
    for line in f:
        try:
            ups.append(json.loads(line))
        except ValueError:
            ups.append({"id": None, "torn": line})
ids = collections.Counter(u["id"] for u in ups if u.get("id"))
dups = {i: n for i, n in ids.items() if n > 1}
partial = [u for u in ups if u.get("want_len") is not None
           and (int(u["want_len"]) != u["len"] or u["want_sha"] != u["sha"])]
leaked = sorted(i for i in ids if i in refused_ids)
unbacked = sorted(i for i in ok_ids if i not in ids)
torn = [u for u in ups if "torn" in u]
anonymous = [u for u in ups if not u.get("id") and "torn" not in u]

p("== soak: %d s of mixed traffic, proxy pid %d (%s)" % (args.duration, PID, args.bin))
p("upstream killed at t=%.1f s, back at t=%.1f s" % (kill_t or -1, back_t or -1))
p()
p("-- requests by class and outcome (HTTP status, or error / short / unexpected):")
total = 0
for cls in EXPECTED:
    c = by_class.get(cls, collections.Counter())
    total += sum(c.values())
    p("  %-12s %6d  %s" % (cls, sum(c.values()), ", ".join("%s: %d" % kv for kv in sorted(c.items(), key=str))))
p("  %-12s %6d" % ("total", total))
p()
p("-- upstream: %d requests recorded (%d by the first process, %d after the restart), %d distinct ids"
  % (len(ups), sum(1 for u in ups if u.get("pid") == ups[0].get("pid")) if ups else 0,
     sum(1 for u in ups if ups and u.get("pid") != ups[0].get("pid")), len(ids)))
p("   duplicates (same id twice upstream): %d %s" % (len(dups), list(dups.items())[:5]))
p("   partial (body length/sha256 not as announced): %d %s" % (len(partial), partial[:3]))
p("   leaked (refused at the client, yet upstream): %d %s" % (len(leaked), leaked[:5]))
p("   200 without an upstream record: %d %s" % (len(unbacked), unbacked[:5]))
p("   torn log lines: %d; requests without an id: %d" % (len(torn), len(anonymous)))
ok_502 = sum(1 for t, cls, rid, o, d in events if o == 502 and rid in ids)
p("   502 answered although the upstream logged the request (killed before answering): %d" % ok_502)
p()
p("-- outcomes the traffic mix does not explain: %d" % len(unexplained))
kinds = collections.Counter((cls, str(o), d.split(" after")[0].split(": ")[-1] if cls != "bad_head" else d)
                            for t, cls, rid, o, d in unexplained)
for (cls, o, d), n in kinds.most_common(15):
    p("   %6d x %s -> %s %s" % (n, cls, o, d))
for u in unexplained[:10]:
    p("   e.g. t=%.1f %s %s -> %s %s" % u)
p()
warm = min(60, args.duration / 5)
p("-- proxy RSS (VmRSS) and open descriptors every 10 s (warm-up: first %d s; last row: traffic stopped):" % warm)
for i, (t, r, f) in enumerate(samples):
    p("   t=%4ds  rss=%7s KiB  fds=%4s%s" % (t, r, f, "   (after the traffic stopped)" if i >= n_running else
                                               "   (warm-up)" if t <= warm else ""))
post = [(r, f) for t, r, f in samples[:n_running] if t > warm and r is not None]
verdicts = []
for name, series in (("RSS", [r for r, _ in post]), ("fds", [f for _, f in post])):
    if len(series) < 3:
        verdicts.append((name, False, "too few samples after warm-up"))
        continue
    k = len(series) // 3
    first, last = statistics.mean(series[:k]), statistics.mean(series[-k:])
    drift = (last - first) / first * 100
    # A leak shows as growth. RSS must stay within 5% both ways; descriptors may fall (the upstream restart
    # closes pooled upstream connections and fewer are pooled again: a 5.8% fall was seen), not grow.
    ok = abs(drift) <= 5.0 if name == "RSS" else drift <= 5.0
    verdicts.append((name, ok, "first third of %d samples: mean %.0f, last third: mean %.0f, "
                     "drift %+.1f%%; min %d max %d" % (len(series), first, last, drift, min(series), max(series))))
p()
p("-- verdict")
for name, ok, why in verdicts:
    p("   %s %s after warm-up: %s (%s)" % (name, "flat within 5%" if name == "RSS" else "no growth over 5%",
                                       "yes" if ok else "NO", why))
p("   proxy alive until the end: %s; exit status on SIGTERM: %s" % ("no (CRASHED)" if crashed else "yes", exit_code))
clean = not dups and not partial and not leaked and not unbacked
p("   no duplicate / partial / leaked request upstream: %s" % ("yes" if clean else "NO"))
p("   unexplained outcomes: %d" % len(unexplained))
with open(os.path.join(OUT, "proxy.log")) as f:
    plog = f.read()
p("   proxy log: %d lines%s" % (plog.count("\n"), "; PANIC" if "panic" in plog else ""))
passed = all(ok for _, ok, _ in verdicts) and not crashed and exit_code == 0 and clean and not unexplained
p("   SOAK %s" % ("PASSED" if passed else "FAILED"))
with open(os.path.join(OUT, "report.txt"), "w") as f:
    f.write("\n".join(out_lines) + "\n")
sys.exit(0 if passed else 1)
