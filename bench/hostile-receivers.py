#!/usr/bin/env python3
"""Hostile callback receivers and the driver for bench/hostile-receivers.sh (SPEC §9).

  hostile-receivers.py receivers BASE_PORT
      Serves, on 127.0.0.1, until killed:
        BASE_PORT+0  HTTP: 200 announcing a 1 GiB body, then zeros as fast as taken
        BASE_PORT+1  HTTP: 200 chunked, a 1 KiB chunk every 5 ms, forever
        BASE_PORT+2  HTTP: a status line, then a header line every 20 ms, forever
        BASE_PORT+3  TCP that never sends a byte (used with https://: TLS never starts)
        BASE_PORT+4  UDP DNS server that never answers (for --callback-dns-server)
      Prints "ready" once listening.

  hostile-receivers.py drive TARGET BASE_PORT ROUNDS PER_ROUND PID
      Each round: POST /async PER_ROUND requests spread evenly over the five hostile
      destinations, wait until no callback is pending, then print the round's outcomes
      and the server's RSS (VmRSS of PID). Only loopback addresses are ever used.
"""

import asyncio
import collections
import http.client
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


# ---------------------------------------------------------------- receivers

async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.decode("latin-1").lower().split("\r\n"):
        if line.startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    await reader.readexactly(length)


async def huge_body(reader, writer):
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
    zeros = bytes(64 * 1024)
    while True:
        writer.write(zeros)
        await writer.drain()


async def endless_body(reader, writer):
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    while True:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0.005)


async def endless_headers(reader, writer):
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\n")
    n = 0
    while True:
        writer.write(b"x-pad-%d: %s\r\n" % (n, b"y" * 32))
        await writer.drain()
        n += 1
        await asyncio.sleep(0.02)


async def silent(reader, writer):
    while await reader.read(4096):
        pass


def guarded(handler):
    async def run(reader, writer):
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()
    return run


class SilentDns(asyncio.DatagramProtocol):
    def datagram_received(self, data, addr):
        pass


async def receivers(base):
    loop = asyncio.get_running_loop()
    servers = []
    for offset, handler in enumerate([huge_body, endless_body, endless_headers, silent]):
        servers.append(await asyncio.start_server(
            guarded(handler), "127.0.0.1", base + offset, backlog=1024))
    await loop.create_datagram_endpoint(SilentDns, local_addr=("127.0.0.1", base + 4))
    print("ready", flush=True)
    await asyncio.Event().wait()


# ---------------------------------------------------------------- driver

def destinations(base):
    return [
        ("huge body", f"http://127.0.0.1:{base}/hook"),
        ("endless body", f"http://127.0.0.1:{base + 1}/hook"),
        ("endless headers", f"http://127.0.0.1:{base + 2}/hook"),
        ("TLS never starts", f"https://127.0.0.1:{base + 3}/hook"),
        ("DNS never answers", f"http://silent.dns.test:{base}/hook"),
    ]


local = threading.local()


def call(host, port, method, path, body=None):
    if not hasattr(local, "conn"):
        local.conn = http.client.HTTPConnection(host, port, timeout=60)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    local.conn.request(method, path, body=body, headers=headers)
    response = local.conn.getresponse()
    return response.status, json.loads(response.read() or b"null")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def total(host, port, query):
    return call(host, port, "GET", f"/requests?{query}&limit=1")[1]["total"]


def drive(target, base, rounds, per_round, pid):
    host, port = target.split(":")
    port = int(port)
    dests = destinations(base)
    errors = collections.Counter()
    print(f"rss before: {rss_kib(pid)} KiB")
    with ThreadPoolExecutor(16) as pool:
        for r in range(1, rounds + 1):
            started = time.monotonic()

            def submit(i):
                kind, url = dests[i % len(dests)]
                body = json.dumps({"text": f"{kind} {r}/{i}", "callback_url": url})
                status, reply = call(host, port, "POST", "/async", body)
                assert status == 202, (status, reply)
                return kind, reply["request_id"]

            ids = list(pool.map(submit, range(per_round)))
            while total(host, port, "callback_status=pending") > 0:
                time.sleep(0.1)
            took = time.monotonic() - started
            # The outcome of every attempt of this round, by destination.
            records = pool.map(
                lambda kid: (kid[0], call(host, port, "GET", f"/requests/{kid[1]}")[1]), ids)
            per_kind = collections.defaultdict(collections.Counter)
            slowest = collections.defaultdict(float)
            for kind, rec in records:
                for a in rec["attempts"]:
                    what = f"HTTP {a['status_code']}" if a["error"] is None else a["error"]
                    per_kind[kind][what] += 1
                    errors[f"{kind}: {what}"] += 1
                    slowest[kind] = max(slowest[kind], a["duration_ms"])
            print(f"round {r}: {per_round} attempts in {took:.1f} s, rss {rss_kib(pid)} KiB")
            for kind, _ in dests:
                outcomes = ", ".join(f"{n} × {what}" for what, n in per_kind[kind].items())
                print(f"    {kind:18} {outcomes}; slowest {slowest[kind]:.0f} ms")
    print("all attempts:")
    for what, n in sorted(errors.items()):
        print(f"    {n:6} × {what}")


def main():
    if sys.argv[1] == "receivers":
        asyncio.run(receivers(int(sys.argv[2])))
    elif sys.argv[1] == "drive":
        target, base, rounds, per_round, pid = sys.argv[2:7]
        drive(target, int(base), int(rounds), int(per_round), int(pid))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
