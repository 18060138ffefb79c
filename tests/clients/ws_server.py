"""A WebSocket server for the tunnel tests: the `websockets` library (Debian package python3-websockets).

usage: ws_server.py
Prints `listening on PORT` once it accepts connections on 127.0.0.1 (an ephemeral port), then serves:
  /echo         every message (text or binary) is sent back as it came
  /count        every message is answered with the text `LENGTH:SHA256HEX` of what arrived
  /big?n=N      sends one binary message of N bytes (byte i is i % 251), then echoes what comes
  /refuse       the handshake is refused: 403 with the body `no`
Pings are off (an idle tunnel stays idle); messages of any size are accepted.
"""
import asyncio
import hashlib
import http
import resource
import sys

import websockets


async def handler(ws, path=None):
    path = ws.path
    try:
        if path.startswith("/big"):
            n = int(path.split("n=", 1)[1])
            await ws.send(bytes(i % 251 for i in range(251)) * (n // 251) + bytes(i % 251 for i in range(n % 251)))
            path = "/echo"
        async for msg in ws:
            if path == "/count":
                data = msg.encode() if isinstance(msg, str) else msg
                await ws.send(f"{len(data)}:{hashlib.sha256(data).hexdigest()}")
            else:
                await ws.send(msg)
    except websockets.ConnectionClosed:
        pass


async def refuse(path, headers):
    if path == "/refuse":
        return http.HTTPStatus.FORBIDDEN, [("Content-Length", "2")], b"no"
    return None


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    async with websockets.serve(
        handler,
        "127.0.0.1",
        0,
        process_request=refuse,
        max_size=None,
        max_queue=4,
        ping_interval=None,
        compression=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on {port}", flush=True)
        await asyncio.Future()


asyncio.run(main())
