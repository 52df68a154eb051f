"""End-to-end figures through real HTTP: session throughput, create latency, SSE fan-out and memory."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tornado.httpclient
import ujson

from bench.redis_fanout import redis_fan_out
from bench.server import BenchServer
from client.sse import SSEParser


def proc_value(pid: int, file: str, label: str, column: int) -> int:
    """The number in `column` of the first line of /proc/PID/<file> that starts with `label`; 0 if none."""
    with open(f"/proc/{pid}/{file}") as lines:
        for line in lines:
            if line.startswith(label):
                return int(line.split()[column])
    return 0


def rss_kib(pid: int) -> int:
    return proc_value(pid, "status", "VmRSS:", 1)


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Client:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = tornado.httpclient.AsyncHTTPClient(max_clients=1000)

    async def create(self, topic: str) -> tuple[str, float]:
        began = time.perf_counter()
        response = await self.http.fetch(
            f"{self.base}/api/sessions",
            method="POST",
            headers={"Content-Type": "application/json"},  # anything else is a 415
            body=ujson.dumps({"topic": topic}),
            request_timeout=60,
        )
        return ujson.loads(response.body)["id"], time.perf_counter() - began

    async def stream(self, session_id: str, method: str = "GET") -> int:
        """Read the session's stream to its end; returns how many events arrived."""
        parser = SSEParser()
        events = 0

        def count(chunk: bytes) -> None:
            nonlocal events
            events += len(parser.feed(chunk))

        await self.http.fetch(
            f"{self.base}/api/sessions/{session_id}/run",
            method=method,
            body=b"" if method == "POST" else None,
            streaming_callback=count,
            request_timeout=300,
        )
        return events

    async def result(self, session_id: str) -> None:
        await self.http.fetch(f"{self.base}/api/sessions/{session_id}/result", request_timeout=60)


@dataclass
class Throughput:
    sessions_per_second: float
    create_p50_ms: float
    create_p99_ms: float


async def throughput(client: Client, sessions: int, concurrency: int) -> Throughput:
    """Create, run (pace 0) and fetch the result of `sessions` sessions, `concurrency` at a time."""
    create_times: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            session_id, took = await client.create(f"benchmark topic {i}")
            create_times.append(took)
            await client.stream(session_id, "POST")
            await client.result(session_id)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(sessions)))
    elapsed = time.perf_counter() - began
    return Throughput(
        sessions / elapsed, 1000 * statistics.median(create_times), 1000 * percentile(create_times, 0.99)
    )


async def fan_out(client: Client, server: BenchServer, subscribers: int) -> None:
    """One session watched by many streams: delivery time to all of them, and memory per stream."""
    session_id, _ = await client.create("fan-out")
    before = rss_kib(server.proc.pid)
    began = time.perf_counter()
    counts = await asyncio.gather(*(client.stream(session_id) for _ in range(subscribers)))
    elapsed = time.perf_counter() - began
    after = rss_kib(server.proc.pid)
    total = sum(counts)
    print(
        f"fan-out: {subscribers} streams of one session, {counts[0]} events each: all done in "
        f"{elapsed:.2f} s, {total / elapsed:,.0f} events/s delivered"
    )
    print(
        f"server memory: {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after "
        f"({max(0, after - before) / subscribers:.1f} KiB per stream, replay included)"
    )


async def run_all(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--subscribers", type=int, default=300)
    parser.add_argument("--redis-subscribers", type=int, default=500)
    parser.add_argument("--redis-events", type=int, default=200)
    args = parser.parse_args(argv)
    print(
        f"{args.sessions} sessions end to end (create, run at pace 0, result), {args.concurrency} at a time,"
    )
    print("against a real server process per store:")
    figures: dict[str, Throughput] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for store, db in (("memory", None), ("sqlite", Path(scratch) / "bench.db")):
            server = BenchServer(Path(scratch) / f"{store}.log", db)
            try:
                figures[store] = await throughput(Client(server.url), args.sessions, args.concurrency)
                if store == "sqlite":
                    print()
                    await fan_out(Client(server.url), server, args.subscribers)
            finally:
                server.terminate()
    print()
    print(f"{'store':<8} {'sessions/s':>11} {'POST p50 ms':>12} {'POST p99 ms':>12}")
    for store, figure in figures.items():
        print(
            f"{store:<8} {figure.sessions_per_second:>11.1f} {figure.create_p50_ms:>12.2f} "
            f"{figure.create_p99_ms:>12.2f}"
        )
    ratio = figures["sqlite"].sessions_per_second / figures["memory"].sessions_per_second
    print(f"sqlite/memory throughput: {100 * ratio:.0f}% (target: at least 70%)")
    print()
    await redis_fan_out(args.redis_subscribers, args.redis_events)
