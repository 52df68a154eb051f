"""Long polling: how soon a held poll is answered once the event it waits for is made.

A server on SQLite at the shipped pace runs a few sessions; for each, a poller holds
`GET /api/sessions/{id}/events?after=N&wait=S` and asks again from `next_after` the moment it is
answered, as the web page's fallback and `--transport=poll` do. For every answer to a poll that was
held (sent before its first event was made), the delay is the answer's arrival minus that event's
`timestamp` (milliseconds, this machine's clock). Target: 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import tornado.httpclient
import ujson

from bench.e2e import percentile
from bench.server import BenchServer

SHIPPED_PACE = 600  # characters per second, as conf/orchestrator.toml streams lessons to people
TARGET_MS = 100.0


async def follow(
    http: tornado.httpclient.AsyncHTTPClient, base: str, session_id: str, until: float
) -> list[float]:
    """Poll one session from its start until it is done or `until`; the delays of held answers, in s."""
    delays: list[float] = []
    after = 0
    while time.time() < until:
        sent = time.time()
        response = await http.fetch(
            f"{base}/api/sessions/{session_id}/events?after={after}&wait=10", request_timeout=30
        )
        arrived = time.time()
        body = ujson.loads(response.body)
        if body["events"]:
            made = datetime.fromisoformat(body["events"][0]["timestamp"]).timestamp()
            if made > sent:  # made while the poll was held: what this figure is about
                delays.append(arrived - made)
        after = body["next_after"]
        if body["done"]:
            break
    return delays


async def run_all(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="make bench ARGS='longpoll'")
    parser.add_argument("--sessions", type=int, default=20, help="sessions followed by polling at once")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long they are followed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        server = BenchServer(
            Path(scratch) / "poll.log", Path(scratch) / "poll.db", (f"--pace={SHIPPED_PACE}",)
        )
        try:
            http = tornado.httpclient.AsyncHTTPClient(max_clients=args.sessions + 10)
            ids = []
            for i in range(args.sessions):
                created = await http.fetch(
                    f"{server.url}/api/sessions",
                    method="POST",
                    headers={"Content-Type": "application/json"},
                    body=ujson.dumps({"topic": f"long polling {i}", "start": True}),
                )
                ids.append(ujson.loads(created.body)["id"])
            until = time.time() + args.seconds
            delays = [
                d
                for got in await asyncio.gather(*(follow(http, server.url, s, until) for s in ids))
                for d in got
            ]
        finally:
            server.terminate()
    if not delays:
        print("long polling: no poll was held (nothing to measure)")
        return
    p50, p99 = (1000 * percentile(delays, q) for q in (0.5, 0.99))
    met = "met" if p99 <= TARGET_MS else "not met"
    print(
        f"long polling: {args.sessions} sessions at {SHIPPED_PACE} characters/s on SQLite, "
        f"{len(delays)} held polls answered: p50 {p50:.1f} ms, p99 {p99:.1f} ms after their event "
        f"was made (target ≤ {TARGET_MS:g} ms: {met})"
    )
