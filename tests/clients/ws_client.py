"""A WebSocket client for the tunnel tests: the `websockets` library (Debian package python3-websockets).

usage: ws_client.py URL [CAFILE]
Connects (over TLS for wss://, trusting CAFILE), sends a text and a binary message, checks that each comes
back as sent, closes cleanly, and prints `ok` (or the error).
"""
import asyncio
import ssl
import sys

import websockets


async def main(url, cafile):
    context = ssl.create_default_context(cafile=cafile) if url.startswith("wss:") else None
    async with websockets.connect(url, ssl=context, compression=None, ping_interval=None) as ws:
        await ws.send("héllo over the tunnel")
        assert await ws.recv() == "héllo over the tunnel"
        data = bytes(range(256)) * 1000
        await ws.send(data)
        assert await ws.recv() == data
    print("ok", flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
