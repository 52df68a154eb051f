"""Fan-out across instances on Redis: one session appended on instance A, read by many subscriptions on
instance B (two RedisStores and RedisEventLogs in this process, one real redis-server): deliveries per
second, and Redis commands per delivered event, counted by the server (INFO commandstats)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from core.events import FINAL, STEP_DELTA, make_event
from core.models import Session
from store.redis import RedisStore
from tools.redis_server import RedisServer, find_redis_server
from workflow.eventlog import CloseReason, RedisEventLog, Subscription


async def _drain(subscription: Subscription) -> int:
    received = 0
    while batch := await subscription.next_batch():
        received += len(batch)
    return received


async def redis_fan_out(subscribers: int, events: int) -> None:
    executable = find_redis_server()
    if executable is None:
        print("redis fan-out: skipped (redis-server is not installed)")
        return
    with tempfile.TemporaryDirectory() as scratch, RedisServer(Path(scratch), executable=executable) as redis:
        stores = [await RedisStore.open(redis.url, instance=name) for name in ("bench-a", "bench-b")]
        a, b = (RedisEventLog.for_store(store, events + 10, redis.url) for store in stores)
        stats = Redis.from_url(redis.url)
        try:
            session = Session.new("fan-out across instances")
            await stores[0].create(session)
            await b.start()
            await stats.config_resetstat()
            subscriptions = [await b.subscribe(session.id, 0) for _ in range(subscribers)]
            readers = asyncio.gather(*(_drain(s) for s in subscriptions))
            began = time.perf_counter()
            for i in range(1, events):
                await a.append(make_event(i, STEP_DELTA, session.id, {"delta": f"piece {i} ", "progress": 0}))
            await a.append(make_event(events, FINAL, session.id, {"result": {}}))
            delivered = sum(await readers)
            elapsed = time.perf_counter() - began
            commandstats = await stats.info("commandstats")
        finally:
            await stats.aclose()
            for log in (a, b):
                log.close_all(CloseReason.SHUTDOWN)
                await log.close()
            for store in stores:
                await store.close()
    calls = {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in commandstats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }
    total = sum(calls.values())
    print(
        f"redis fan-out: {subscribers} subscriptions on instance B, {events} events appended on A (each "
        f"awaited): {delivered:,} deliveries in {elapsed:.2f} s, {delivered / elapsed:,.0f}/s"
    )
    print(
        f"redis commands: {total:,} ({', '.join(f'{k} {v}' for k, v in sorted(calls.items()))}), "
        f"{total / max(delivered, 1):.4f} per delivered event (target: at most 0.05)"
    )
