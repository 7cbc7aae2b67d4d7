#!/usr/bin/env python3
"""Callback receivers for bench/isolation.sh (loopback only).

Usage: receivers.py KIND PORT [CONTROL_FILE]

KIND:
  blackhole  accepts connections, reads what it is sent, never answers;
             once CONTROL_FILE exists it answers every request 200 at once
             (the destination "comes back").
  slow       answers 200 after 9 seconds.

Prints `ready` on stdout once listening; counts requests answered in
CONTROL_FILE.count (one line, rewritten every second) when CONTROL_FILE is given.
"""

import asyncio
import os
import sys

kind, port = sys.argv[1], int(sys.argv[2])
control = sys.argv[3] if len(sys.argv) > 3 else None
answered = 0

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


async def read_request(reader):
    """Reads one request head and its body (content-length); None at EOF."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return head


async def handle(reader, writer):
    global answered
    try:
        while True:
            await read_request(reader)
            if kind == "slow":
                await asyncio.sleep(9)
            else:
                while not (control and os.path.exists(control)):
                    await asyncio.sleep(0.05)
            writer.write(OK)
            await writer.drain()
            answered += 1
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def report():
    while control:
        with open(control + ".count", "w") as f:
            f.write(f"{answered}\n")
        await asyncio.sleep(1)


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await asyncio.gather(server.serve_forever(), report())


asyncio.run(main())
