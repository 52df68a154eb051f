"""End-to-end figures through real HTTP: session throughput, create latency, SSE fan-out and memory."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence

import tornado.httpclient
import ujson

from tests.server_process import ServerProcess


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


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
            f"{self.base}/api/sessions", method="POST", body=ujson.dumps({"topic": topic}), request_timeout=60
        )
        return ujson.loads(response.body)["id"], time.perf_counter() - began

    async def stream(self, session_id: str, method: str = "GET") -> int:
        """Read the session's stream to its end; returns how many events arrived."""
        frames = 0

        def count(chunk: bytes) -> None:
            nonlocal frames
            frames += chunk.count(b"\n\n")

        await self.http.fetch(
            f"{self.base}/api/sessions/{session_id}/run",
            method=method,
            body=b"" if method == "POST" else None,
            streaming_callback=count,
            request_timeout=300,
        )
        return frames

    async def result(self, session_id: str) -> None:
        await self.http.fetch(f"{self.base}/api/sessions/{session_id}/result", request_timeout=60)


async def throughput(client: Client, sessions: int, concurrency: int) -> None:
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
    print(
        f"throughput: {sessions} sessions end to end, {concurrency} at a time: "
        f"{sessions / elapsed:.1f} sessions/s ({elapsed:.2f} s)"
    )
    print(
        f"POST /api/sessions latency: p50 {1000 * statistics.median(create_times):.2f} ms, "
        f"p99 {1000 * percentile(create_times, 0.99):.2f} ms"
    )


async def fan_out(client: Client, server: ServerProcess, subscribers: int) -> None:
    """One session watched by many streams: delivery time to all of them, and memory per stream."""
    session_id, _ = await client.create("fan-out")
    before = rss_kib(server.proc.pid)
    # The first GET starts the session; attach everyone before it can finish by gating on pace.
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
    args = parser.parse_args(argv)
    server = ServerProcess("--pace=0")
    try:
        client = Client(server.url)
        print(f"server: pid {server.proc.pid}, {server.url}, memory store, builtin provider at pace 0")
        await throughput(client, args.sessions, args.concurrency)
        await fan_out(client, server, args.subscribers)
    finally:
        server.terminate()
