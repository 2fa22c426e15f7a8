"""A fixed-rate, open-loop HTTP load generator (Debian has neither wrk2 nor vegeta).

Request i is due at start + i / rate whether or not earlier ones have been answered; its
latency is measured from that due time to the last byte of its answer, so time spent
waiting for a free connection or behind a slow answer counts (no coordinated omission,
unlike wrk, which sends the next request only when the previous one came back). Requests
go over a fixed pool of keep-alive HTTP/1.1 connections, opened before the clock starts;
each free connection takes the oldest due request. A request that finds every connection
busy is counted as backlogged: the server has that many answers outstanding at once, so it
is falling behind the rate.

    load.py URL --rate 500 --seconds 10 --warmup-seconds 1 --out samples.json

The bearer token is read from the environment (BENCH_TOKEN), not the command line. The
output file gets the latencies of the measured period (after the warm-up) in ms, plus
counts; a summary line goes to stdout. Exits non-zero if it could not connect.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

try:  # the servers run on uvloop; the client is cheaper on it too
    import uvloop
except ImportError:  # pragma: no cover - plain asyncio works, a little slower
    uvloop = None


@dataclass
class Tally:
    measured_from: float
    latencies_ms: list[float] = field(default_factory=list)
    service_ms: list[float] = field(default_factory=list)
    wait_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    first_refusal: str | None = None
    answered_total: int = 0  # warm-up included (the servers' CPU covers it too)
    idle_connections: int = 0
    backlogged: int = 0
    """Measured requests that found every connection busy: the server fell behind."""

    def record(self, due: float, sent: float, done: float, status: int, body: bytes) -> None:
        self.answered_total += 1
        if due < self.measured_from:
            return
        self.latencies_ms.append((done - due) * 1e3)
        self.service_ms.append((done - sent) * 1e3)
        self.wait_ms.append((sent - due) * 1e3)
        self.statuses[status] += 1
        if not 200 <= status < 300 and self.first_refusal is None:
            self.first_refusal = f"{status}: {body[:300].decode(errors='replace')}"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of values already sorted."""
    if not values:
        return math.nan
    return values[max(0, math.ceil(fraction * len(values)) - 1)]


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
            break
    if length is None:
        raise RuntimeError("an answer without Content-Length (chunked answers are not read)")
    body = await reader.readexactly(length)
    return status, body


async def connection_loop(
    host: str,
    port: int,
    request: bytes,
    due: asyncio.Queue[float | None],
    tally: Tally,
    ready: asyncio.Event,
    opened: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    opened.append(1)
    await ready.wait()
    try:
        while True:
            tally.idle_connections += 1
            when = await due.get()
            tally.idle_connections -= 1
            if when is None:
                break
            sent = time.perf_counter()
            try:
                status, body = await exchange(reader, writer, request)
            except (OSError, asyncio.IncompleteReadError, RuntimeError, ValueError) as error:
                if when >= tally.measured_from:
                    tally.errors[type(error).__name__] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            tally.record(when, sent, time.perf_counter(), status, body)
    finally:
        writer.close()


async def schedule(
    due: asyncio.Queue[float | None], tally: Tally, start: float, rate: float, total: int
) -> None:
    """Put each request on the queue at its due time (every request already due when the
    timer fires, so a late wake-up does not thin the rate)."""
    sent = 0
    while sent < total:
        now = time.perf_counter()
        while sent < total and start + sent / rate <= now:
            when = start + sent / rate
            # Connections waiting on the queue, less the requests already given to them.
            if tally.idle_connections - due.qsize() <= 0 and when >= tally.measured_from:
                tally.backlogged += 1
            due.put_nowait(when)
            sent += 1
        if sent < total:
            await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))


async def run(arguments: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(arguments.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    path = url.path + (f"?{url.query}" if url.query else "")
    headers = [f"GET {path} HTTP/1.1", f"Host: {url.netloc}", "Accept: application/json"]
    if token := os.environ.get("BENCH_TOKEN"):
        headers.append(f"Authorization: Bearer {token}")
    request = ("\r\n".join(headers) + "\r\n\r\n").encode()

    due: asyncio.Queue[float | None] = asyncio.Queue()
    ready = asyncio.Event()
    opened: list[int] = []
    tally = Tally(measured_from=math.inf)
    workers = [
        asyncio.create_task(connection_loop(host, port, request, due, tally, ready, opened))
        for _ in range(arguments.connections)
    ]
    while len(opened) < arguments.connections:  # every connection open before the clock
        await asyncio.sleep(0.01)
        for worker in workers:
            if worker.done() and worker.exception() is not None:
                raise SystemExit(f"could not connect to {arguments.url}: {worker.exception()}")
    start = time.perf_counter() + 0.05
    tally.measured_from = start + arguments.warmup_seconds
    total = round(arguments.rate * (arguments.warmup_seconds + arguments.seconds))
    ready.set()
    await schedule(due, tally, start, arguments.rate, total)
    for _ in workers:
        due.put_nowait(None)
    # Requests still queued or in flight when the schedule ends are waited for (bounded).
    _done, pending = await asyncio.wait(workers, timeout=arguments.drain_seconds)
    for worker in pending:
        worker.cancel()
    finished = time.perf_counter()
    measured = round(arguments.rate * arguments.seconds)
    latencies = sorted(tally.latencies_ms)
    return {
        "rate": arguments.rate,
        "seconds": arguments.seconds,
        "connections": arguments.connections,
        "scheduled": measured,
        "completed": len(latencies),
        "answered_total": tally.answered_total,
        "backlogged": tally.backlogged,
        "unanswered": measured - len(latencies) - sum(tally.errors.values()),
        "achieved_per_second": len(latencies) / max(finished - tally.measured_from, 1e-9),
        "statuses": {str(code): count for code, count in sorted(tally.statuses.items())},
        "errors": dict(tally.errors),
        "first_refusal": tally.first_refusal,
        "latency_ms_p50": percentile(latencies, 0.50),
        "latency_ms_p99": percentile(latencies, 0.99),
        "latency_ms_max": latencies[-1] if latencies else math.nan,
        "wait_ms_p99": percentile(sorted(tally.wait_ms), 0.99),
        "latencies_ms": tally.latencies_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, required=True, help="measured period")
    parser.add_argument("--warmup-seconds", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--drain-seconds", type=float, default=10.0)
    parser.add_argument("--out", required=True, help="JSON file for the results")
    arguments = parser.parse_args()
    runner = uvloop.run if uvloop is not None else asyncio.run
    result = runner(run(arguments))
    with open(arguments.out, "w") as output:
        json.dump(result, output)
    summary = {key: value for key, value in result.items() if key != "latencies_ms"}
    print(json.dumps(summary))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
