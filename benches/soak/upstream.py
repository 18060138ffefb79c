#!/usr/bin/env python3
"""Recording test upstream for the soak and slow-client runs (Python 3 standard library only).

    python3 benches/soak/upstream.py PORT LOG

Serves HTTP/1.1 keep-alive on 127.0.0.1:PORT, a thread per connection. Every complete request is appended
to LOG as one JSON line *before* it is answered:

    {"id": X-Soak-Id or null, "m": method, "path": target, "len": body bytes received,
     "sha": sha256 of the body (16 hex), "want_len": X-Soak-Len, "want_sha": X-Soak-Sha, "pid": this process}

so the driver can check that no request arrived twice (same id) or partially (len/sha differ from what the
client announced). Answers: `GET /big?n=N` -> N bytes (for slow readers); anything else -> a small JSON echo
of the id. The log is opened in append mode and flushed per line, so a restarted upstream (a second process
on the same port) extends the same file; a killed one loses at most the line it was writing.
"""
import hashlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PORT = int(sys.argv[1])
LOG = open(sys.argv[2], "a", buffering=1)
LOCK = threading.Lock()
PID = os.getpid()
CHUNK = b"x" * 65536


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def handle_one(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        rec = {
            "id": self.headers.get("X-Soak-Id"),
            "m": self.command,
            "path": self.path,
            "len": len(body),
            "sha": hashlib.sha256(body).hexdigest()[:16],
            "want_len": self.headers.get("X-Soak-Len"),
            "want_sha": self.headers.get("X-Soak-Sha"),
            "pid": PID,
        }
        with LOCK:
            LOG.write(json.dumps(rec) + "\n")
        url = urlsplit(self.path)
        if url.path == "/big":
            size = int(parse_qs(url.query).get("n", ["1048576"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command != "HEAD":
                left = size
                while left > 0:
                    k = min(left, len(CHUNK))
                    self.wfile.write(CHUNK[:k])
                    left -= k
            return
        out = json.dumps({"ok": True, "id": rec["id"], "len": rec["len"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_one


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # a peer that went away mid-response: not news
        pass


if __name__ == "__main__":
    Server(("127.0.0.1", PORT), Handler).serve_forever()
