"""Large refused uploads through httpx (sync and async): does every try get the ingress's answer?

usage: httpx_refusals.py URL SIZE TRIES MODE
  MODE: sync | async       a JSON body of SIZE bytes (Content-Length; over --max-body: 413 expected)
        throttled          a chunked body of SIZE bytes sent at about 1 MB/s, Content-Type text/plain (415)
        throttled-length   a JSON body of SIZE bytes with Content-Length, sent at about 4 MB/s (413)
Prints one line: `statuses <status>:<count> ... errors <count> <first error>`.
"""
import asyncio
import collections
import sys

import httpx

url, size, tries, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
body = b'{"a":"' + b"x" * max(0, size - 8) + b'"}'
headers = {"Accept": "*/*", "Content-Type": "application/json"}
seen, errors = collections.Counter(), []


def record(r):
    seen[r.status_code] += 1


async def slow_body(rate):
    chunk = 16384
    for at in range(0, len(body), chunk):
        yield body[at:at + chunk]
        await asyncio.sleep(chunk / rate)


async def run_async(throttled):
    async with httpx.AsyncClient(timeout=60) as c:
        for _ in range(tries):
            try:
                if throttled == "throttled":
                    r = await c.post(url, content=slow_body(1_000_000), headers={"Accept": "*/*", "Content-Type": "text/plain"})
                elif throttled == "throttled-length":
                    h = dict(headers, **{"Content-Length": str(len(body))})
                    r = await c.post(url, content=slow_body(4_000_000), headers=h)
                else:
                    r = await c.post(url, content=body, headers=headers)
                record(r)
            except Exception as e:  # noqa: BLE001 - every failure is what this script reports
                errors.append(repr(e))


if mode == "sync":
    with httpx.Client(timeout=60) as c:
        for _ in range(tries):
            try:
                record(c.post(url, content=body, headers=headers))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
else:
    asyncio.run(run_async(mode))

print("statuses", " ".join(f"{k}:{v}" for k, v in sorted(seen.items())), "errors", len(errors), errors[0] if errors else "")
