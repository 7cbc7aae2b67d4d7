#!/usr/bin/env python3
"""The lease scenario of SPEC §16 (issue 19, item 1), the receiver and the submitter.

Usage: leases.py TARGET PORT REQUESTS WAIT_SECS

Listens on 127.0.0.1:PORT as a callback receiver that answers 200 two seconds after
each request (concurrently: every connection sleeps on its own), submits REQUESTS
POST /async to TARGET with that receiver as callback, then waits until every request
was delivered (or WAIT_SECS passed) and prints what the receiver saw:
`delivered N duplicates D missing M`. Exits 1 when D or M is not 0.
"""

import asyncio
import json
import os
import sys
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

target, port, total, wait_secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
seen = Counter()
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length, webhook_id = 0, None
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"webhook-id":
                    webhook_id = value.strip().decode()
            if length:
                await reader.readexactly(length)
            await asyncio.sleep(2)
            writer.write(OK)
            await writer.drain()
            seen[webhook_id] += 1
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def submit(i):
    body = json.dumps({"text": f"lease {i}", "count": 1,
                       "callback_url": f"http://127.0.0.1:{port}/hook"}).encode()
    for _ in range(50):
        req = urllib.request.Request(target + "/async", data=body,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.load(r)["request_id"]
        except Exception:
            time.sleep(0.2)  # 503 under the flood: try again
    return None


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(16) as pool:
        ids = await asyncio.gather(*(loop.run_in_executor(pool, submit, i) for i in range(total)))
    ids = {i for i in ids if i}
    print(f"submitted {len(ids)}", flush=True)
    deadline = time.monotonic() + wait_secs
    while time.monotonic() < deadline and not ids <= set(seen):
        await asyncio.sleep(0.5)
    await asyncio.sleep(12)  # a job whose lease was lost is delivered again within seconds
    server.close()
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    missing = len(ids - set(seen))
    print(f"delivered {len(set(seen) & ids)} duplicates {duplicates} missing {missing}", flush=True)
    # Not sys.exit: connections still open would print their cancellation.
    os._exit(1 if duplicates or missing or len(ids) < total else 0)


asyncio.run(main())
