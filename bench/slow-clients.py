#!/usr/bin/env python3
"""Holds N half-open HTTP requests against a server (helper of bench/slow-clients.sh).

Usage: slow-clients.py HOST PORT N STOPFILE

Opens N connections, each sending half a request head and nothing more, and prints
`ready` on stdout once all N have sent it. Whenever the server closes one, it is opened
again, until STOPFILE exists: the server holds N half-sent requests for the whole run.
Then it waits for the server to close the last ones and prints one JSON line about the
first wave (the N connections opened at the start): how long each stayed open (from its
half head to the server's close) and how long the server took, from the moment all N
were open, to have closed them all.
"""

import asyncio
import json
import os
import sys
import time

HALF_HEAD = b"POST /sync HTTP/1.1\r\nHost: bench\r\nContent-Ty"
BATCH = 250  # connections opened at once, so the SYNs do not overflow the accept queue


async def hold_one(host, port, first, stopfile):
    """Holds one half-sent request; returns (sent, closed) of its first connection."""
    wave = None
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(HALF_HEAD)
            await writer.drain()
        except OSError:
            await asyncio.sleep(0.05)
            continue
        sent = time.monotonic()
        if first is not None:
            first.set_result(None)
            first = None
        try:
            await reader.read(1)  # b"" when the server closes
        except OSError:
            pass  # a reset is a close too
        closed = time.monotonic()
        writer.close()
        if wave is None:
            wave = (sent, closed)
        if os.path.exists(stopfile):
            return wave


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def main():
    host, port, n, stopfile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    tasks = []
    for start in range(0, n, BATCH):
        batch = []
        for _ in range(min(BATCH, n - start)):
            first = asyncio.get_running_loop().create_future()
            batch.append(first)
            tasks.append(asyncio.create_task(hold_one(host, port, first, stopfile)))
        await asyncio.gather(*batch)
    all_open = time.monotonic()
    print("ready", flush=True)
    waves = await asyncio.gather(*tasks)
    open_s = [closed - sent for sent, closed in waves]
    print(json.dumps({
        "connections": n,
        "first_wave_open_s": {
            "min": round(min(open_s), 2),
            "p50": round(percentile(open_s, 50), 2),
            "max": round(max(open_s), 2),
        },
        "first_wave_all_closed_after_s": round(max(c for _, c in waves) - all_open, 2),
    }), flush=True)


asyncio.run(main())
