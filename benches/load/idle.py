#!/usr/bin/env python3
"""RSS cost of idle keep-alive connections.

Start portcullis first, e.g. (in front of any upstream):
    target/release/portcullis --listen 127.0.0.1:19050 --upstream 127.0.0.1:19000 --workers 1 --rate 0 \
        --max-connections 20000 &
then:  python3 benches/load/idle.py <portcullis pid> 127.0.0.1:19050 [connections=10000] [tls]
Each connection is served one GET and then left idle; the script prints the RSS growth per connection.
With `tls` the connections are TLS (no certificate check: the load is what is measured); the pid may be
several, comma-separated (nginx's master and worker), whose RSS is summed.
"""
import socket
import ssl
import sys
import time

pids, addr = sys.argv[1].split(","), sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
tls = len(sys.argv) > 4 and sys.argv[4] == "tls"
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
host, port = addr.rsplit(":", 1)
req = b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"


def rss_kib():
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    total += int(line.split()[1])
    return total


def connect():
    c = socket.create_connection((host, int(port)))
    if tls:
        c = ctx.wrap_socket(c, server_hostname="localhost")
    c.sendall(req)
    return c


warm = [connect() for _ in range(64)]
for c in warm:
    c.recv(65536)
time.sleep(0.3)
before = rss_kib()
conns = []
for i in range(n):
    conns.append(connect())
    if len(conns) % 50 == 0:
        for c in conns[-50:]:
            c.recv(65536)
for c in conns[len(conns) // 50 * 50:]:
    c.recv(65536)
time.sleep(0.5)
after = rss_kib()
print(f"RSS {before} KiB with 64 warm connections, {after} KiB with {n} more idle keep-alive {'TLS ' if tls else ''}connections: "
      f"{(after - before) * 1024 / n:.0f} bytes per connection")
