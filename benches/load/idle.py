#!/usr/bin/env python3
"""RSS cost of idle keep-alive connections.

Start portcullis first, e.g. (in front of any upstream):
    target/release/portcullis --listen 127.0.0.1:19050 --upstream 127.0.0.1:19000 --workers 1 --rate 0 \
        --max-connections 20000 &
then:  python3 benches/load/idle.py <portcullis pid> 127.0.0.1:19050 [connections=10000]
Each connection is served one GET and then left idle; the script prints the RSS growth per connection.
"""
import socket
import sys
import time

pid, addr = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
host, port = addr.rsplit(":", 1)
req = b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])


def connect():
    c = socket.create_connection((host, int(port)))
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
print(f"RSS {before} KiB with 64 warm connections, {after} KiB with {n} more idle keep-alive connections: "
      f"{(after - before) * 1024 / n:.0f} bytes per connection")
