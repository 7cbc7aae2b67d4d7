#!/usr/bin/env python3
"""Hostile callback receivers and the driver for bench/hostile-receivers.sh (SPEC §9).

  hostile-receivers.py receivers BASE_PORT
      Serves, on 127.0.0.1, until killed:
        BASE_PORT+0  HTTP: 200 announcing a 1 GiB body, then zeros as fast as taken
        BASE_PORT+1  HTTP: 200 chunked, a 1 KiB chunk every 5 ms, forever
        BASE_PORT+2  HTTP: a status line, then a header line every 20 ms, forever
        BASE_PORT+3  TCP that never sends a byte (used with https://: TLS never starts)
        BASE_PORT+4  UDP DNS server (for --callback-dns-server): never answers for names
                     under silent.dns.test, answers 127.0.0.1 for every other name
      Prints "ready" once listening.

  hostile-receivers.py drive TARGET BASE_PORT ROUNDS PER_ROUND PID
      Each round: POST /async PER_ROUND requests spread evenly over the five hostile
      receivers, each request under a host name of its own (a destination of its own, so
      the per-destination circuit breaker never holds an attempt back), wait until no callback is pending, then print the round's outcomes
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


class Dns(asyncio.DatagramProtocol):
    """Never answers for names under silent.dns.test; answers 127.0.0.1 (A) or nothing
    (AAAA) for every other name, so that each request can have a destination of its own."""

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        labels, i = [], 12
        while data[i]:
            labels.append(data[i + 1:i + 1 + data[i]].decode(errors="replace"))
            i += 1 + data[i]
        question_end = i + 5
        qtype = int.from_bytes(data[i + 1:i + 3], "big")
        if ".".join(labels).lower().endswith("silent.dns.test"):
            return
        answers = b""
        if qtype == 1:
            answers = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x7f\x00\x00\x01"
        header = data[:2] + b"\x81\x80\x00\x01" + (1 if answers else 0).to_bytes(2, "big") + b"\x00\x00\x00\x00"
        self.transport.sendto(header + data[12:question_end] + answers, addr)


async def receivers(base):
    loop = asyncio.get_running_loop()
    servers = []
    for offset, handler in enumerate([huge_body, endless_body, endless_headers, silent]):
        servers.append(await asyncio.start_server(
            guarded(handler), "127.0.0.1", base + offset, backlog=1024))
    await loop.create_datagram_endpoint(Dns, local_addr=("127.0.0.1", base + 4))
    print("ready", flush=True)
    await asyncio.Event().wait()


# ---------------------------------------------------------------- driver

def destinations(base, tag):
    """The five hostile receivers, each under a host name of its own for `tag` (resolved
    to 127.0.0.1 by the bench's DNS server): every request is a destination of its own,
    so no circuit breaker holds the attempts back, and each one really is made."""
    host = f"{tag}.hostile.test"
    return [
        ("huge body", f"http://{host}:{base}/hook"),
        ("endless body", f"http://{host}:{base + 1}/hook"),
        ("endless headers", f"http://{host}:{base + 2}/hook"),
        ("TLS never starts", f"https://{host}:{base + 3}/hook"),
        ("DNS never answers", f"http://{tag}.silent.dns.test:{base}/hook"),
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
    kinds = [kind for kind, _ in destinations(base, "x")]
    errors = collections.Counter()
    print(f"rss before: {rss_kib(pid)} KiB")
    with ThreadPoolExecutor(16) as pool:
        for r in range(1, rounds + 1):
            started = time.monotonic()

            def submit(i):
                kind, url = destinations(base, f"r{r}-{i}")[i % len(kinds)]
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
            for kind in kinds:
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
