"""The Redis event log across instances: two (or three) RedisEventLogs, each on its own RedisStore, on one
real redis-server in this process; order, the seam between backlog and live events, wake-ups, ending
streams, the commands per delivered event, and a Redis restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tornado.ioloop import IOLoop

from core.errors import SessionNotFound, StoreUnavailable
from core.events import ERROR, FINAL, STEP_DELTA, Event, make_event
from core.models import Session
from tools.redis_server import RedisServer, require_redis_server

redis = pytest.importorskip("redis")

from redis.asyncio import Redis  # noqa: E402

from store.redis import RedisStore  # noqa: E402
from workflow.eventlog import CloseReason, RedisEventLog, Subscription  # noqa: E402
from workflow.eventlog.redis import Backoff  # noqa: E402

WAIT = 15  # seconds any one expectation may take


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    require_redis_server()
    # Every acknowledged write on disk before the answer, so a restart keeps what was committed.
    with RedisServer(tmp_path / "redis", aof=True) as server:
        yield server


class Instance:
    """One instance's store and event log, as server.py makes them."""

    def __init__(self, store: RedisStore, url: str, **options: object) -> None:
        self.store = store
        defaults: dict[str, object] = {"readers": 2, "block_ms": 2000, "backoff": Backoff(base=0.05, cap=0.5)}
        self.log = RedisEventLog.for_store(store, 1000, url, **{**defaults, **options})

    @classmethod
    async def open(cls, url: str, prefix: str, name: str, **options: object) -> Instance:
        return cls(await RedisStore.open(url, prefix=prefix, instance=name), url, **options)

    async def close(self) -> None:
        self.log.close_all(CloseReason.SHUTDOWN)
        await self.log.close()
        await self.store.close()


@pytest.fixture
def instances(redis_server: RedisServer, io_loop: IOLoop) -> Iterator[list[Instance]]:
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    made = [
        io_loop.run_sync(lambda name=name: Instance.open(redis_server.url, prefix, name), timeout=WAIT)
        for name in ("a", "b", "c")
    ]
    yield made
    for instance in made:
        io_loop.run_sync(instance.close, timeout=WAIT)


def delta(session_id: str, event_id_: int) -> Event:
    return make_event(event_id_, STEP_DELTA, session_id, {"delta": f"piece {event_id_} ", "progress": 0})


async def collect(subscription: Subscription, into: list[Event], stop_after: int | None = None) -> None:
    """Read the subscription to its end (or until `stop_after` events) into `into`."""
    while stop_after is None or len(into) < stop_after:
        batch = await subscription.next_batch()
        if not batch:
            return
        into.extend(batch)


async def new_session(instance: Instance) -> Session:
    session = Session.new("streams across instances")
    await instance.store.create(session)
    return session


@pytest.mark.gen_test
async def test_a_stream_first_watched_while_the_reader_blocks_is_read_at_once(instances, redis_server):
    a, b, _ = instances
    # One reader, blocking for a minute: only the wake-up can make it read the second stream soon.
    watcher = Instance(b.store, redis_server.url, readers=1, block_ms=60_000)
    try:
        first, second = await new_session(a), await new_session(a)
        await watcher.log.subscribe(first.id, 0)
        await asyncio.sleep(0.2)  # its XREAD is blocked on the first stream now
        subscription = await watcher.log.subscribe(second.id, 0)
        began = time.perf_counter()
        await a.log.append(delta(second.id, 1))
        async with asyncio.timeout(WAIT):
            assert [e.id for e in await subscription.next_batch()] == [1]
        assert time.perf_counter() - began < 5
        assert watcher.log.stats["wakeups"] >= 1
    finally:
        watcher.log.close_all(CloseReason.SHUTDOWN)
        await watcher.log.close()


@pytest.mark.gen_test(timeout=60)
async def test_events_appended_on_one_instance_reach_subscribers_on_others_in_order(instances):
    a, b, c = instances
    session = await new_session(a)
    total = 120
    sent = [delta(session.id, i) for i in range(1, total)]
    sent.append(make_event(total, FINAL, session.id, {"result": {}}))

    from_start: list[Event] = []
    first = await b.log.subscribe(session.id, 0)
    readers = [asyncio.ensure_future(collect(first, from_start))]
    # On the instance that appends: each event arrives twice (the append path, its own reader), shown once.
    on_a: list[Event] = []
    readers.append(asyncio.ensure_future(collect(await a.log.subscribe(session.id, 0), on_a)))
    joined: list[Event] = []
    moved: list[Event] = []
    moved_first = asyncio.Event()

    async def join_mid_run() -> None:
        # Joins while events are being appended: its backlog and the live events meet in between.
        subscription = await b.log.subscribe(session.id, 25)
        await collect(subscription, joined)

    async def reconnect() -> None:
        # Sees 60 events on B, goes away, and comes back on a third instance with the last id it saw.
        subscription = await b.log.subscribe(session.id, 0)
        await collect(subscription, moved, stop_after=60)
        b.log.unsubscribe(subscription)
        moved_first.set()
        again = await c.log.subscribe(session.id, moved[-1].id or 0)
        await collect(again, moved)

    readers.append(asyncio.ensure_future(reconnect()))
    for event in sent:
        await a.log.append(event)
        if event.id == 40:
            readers.append(asyncio.ensure_future(join_mid_run()))
        await asyncio.sleep(0.001 if event.id and event.id % 7 else 0.01)

    async with asyncio.timeout(WAIT):
        await asyncio.gather(*readers)
    assert moved_first.is_set()
    assert [e.id for e in from_start] == list(range(1, total + 1))
    assert [e.frame for e in from_start] == [e.frame for e in sent]  # byte for byte
    assert [e.id for e in joined] == list(range(26, total + 1))
    assert [e.id for e in on_a] == list(range(1, total + 1))
    assert [e.id for e in moved] == list(range(1, total + 1))
    # The final event ended the streams on B and C, as a run ends its own on one instance.
    assert first.closed_reason == CloseReason.ENDED
    assert b.log.subscriber_count == 0 and c.log.subscriber_count == 0


@pytest.mark.gen_test
async def test_a_terminal_event_ends_the_subscriptions_on_another_instance(instances):
    a, b, _ = instances
    session = await new_session(a)
    subscription = await b.log.subscribe(session.id, 0)
    received: list[Event] = []
    reading = asyncio.ensure_future(collect(subscription, received))
    await a.log.append(delta(session.id, 1))
    await a.log.append(make_event(2, ERROR, session.id, {"status": "cancelled", "error": "x"}))
    async with asyncio.timeout(WAIT):
        await reading
    assert [e.type for e in received] == [STEP_DELTA, ERROR]
    assert subscription.closed_reason == CloseReason.ENDED
    assert b.log.subscriber_count == 0  # and the stream is no longer read
    assert b.log.stats["streams"] == 0

    # A subscriber that arrives afterwards gets the log to its end, and is ended by it too.
    late = await b.log.subscribe(session.id, 1)
    late_events: list[Event] = []
    async with asyncio.timeout(WAIT):
        await collect(late, late_events)
    assert [e.id for e in late_events] == [2]
    assert late.closed_reason == CloseReason.ENDED


@pytest.mark.gen_test
async def test_a_deletion_on_one_instance_ends_the_subscriptions_on_another(instances):
    a, b, c = instances
    session = await new_session(a)
    other = await new_session(a)
    on_a = await a.log.subscribe(session.id, 0)
    on_b = [await b.log.subscribe(session.id, 0) for _ in range(3)]
    untouched = await b.log.subscribe(other.id, 0)
    await a.log.append(delta(session.id, 1))
    async with asyncio.timeout(WAIT):
        assert [e.id for e in await on_b[0].next_batch()] == [1]

    await a.store.delete(session.id)
    a.log.close_session(session.id, CloseReason.DELETED)
    assert on_a.closed_reason == CloseReason.DELETED
    async with asyncio.timeout(WAIT):
        while not all(s.closed for s in on_b):
            await asyncio.sleep(0.01)
    assert {s.closed_reason for s in on_b} == {CloseReason.DELETED}
    assert not untouched.closed
    # An append after the deletion fails, and ends what is left here (nothing: all ended already).
    with pytest.raises(SessionNotFound):
        await c.log.append(delta(session.id, 2))


@pytest.mark.gen_test
async def test_a_deletion_whose_notice_was_lost_ends_the_streams_once_the_control_channel_is_back(instances):
    a, b, _ = instances
    session = await new_session(a)
    on_b = await b.log.subscribe(session.id, 0)
    # Deleted with no notice reaching B, as when B's control connection was down at that moment...
    await a.store.delete(session.id)
    # ...which it then was: Redis drops every pub/sub connection, and B subscribes again.
    await a.store.redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    async with asyncio.timeout(WAIT):
        while not on_b.closed:
            await asyncio.sleep(0.01)
    assert on_b.closed_reason == CloseReason.DELETED


@pytest.mark.gen_test(timeout=120)
async def test_fan_out_to_500_subscribers_costs_few_redis_commands_per_delivered_event(
    instances, redis_server
):
    a, b, _ = instances
    subscribers, events = 500, 200
    session = await new_session(a)
    await b.log.start()  # its connections are made before counting
    stats = Redis.from_url(redis_server.url)
    try:
        await stats.config_resetstat()
        subscriptions = [await b.log.subscribe(session.id, 0) for _ in range(subscribers)]
        received: list[list[Event]] = [[] for _ in range(subscribers)]
        readers = [asyncio.ensure_future(collect(s, r)) for s, r in zip(subscriptions, received, strict=True)]
        began = time.perf_counter()
        for i in range(1, events):
            await a.log.append(delta(session.id, i))
        await a.log.append(make_event(events, FINAL, session.id, {"result": {}}))
        async with asyncio.timeout(60):
            await asyncio.gather(*readers)
        elapsed = time.perf_counter() - began
        commandstats = await stats.info("commandstats")
    finally:
        await stats.aclose()
    counted = {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in commandstats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }
    delivered = sum(len(r) for r in received)
    assert all([e.id for e in r] == list(range(1, events + 1)) for r in received)
    assert delivered == subscribers * events
    per_event = sum(counted.values()) / delivered
    print(
        f"\n{subscribers} subscribers on B, {events} events appended on A: {delivered} deliveries in "
        f"{elapsed:.2f} s ({delivered / elapsed:,.0f}/s); {sum(counted.values())} Redis commands "
        f"({', '.join(f'{k} {v}' for k, v in sorted(counted.items()))}) = {per_event:.4f} per delivered "
        f"event; B's readers: {b.log.stats}"
    )
    assert per_event <= 0.05


@pytest.mark.gen_test(timeout=90)
@pytest.mark.expect_errors("Redis write of")  # the store says so if a write meets the outage
async def test_a_redis_restart_loses_no_event_for_a_subscriber_on_another_instance(instances, redis_server):
    a, b, _ = instances
    session = await new_session(a)
    subscription = await b.log.subscribe(session.id, 0)
    received: list[Event] = []
    reading = asyncio.ensure_future(collect(subscription, received))

    async def received_up_to(last: int) -> None:
        async with asyncio.timeout(WAIT):
            while not received or received[-1].id != last:
                await asyncio.sleep(0.01)

    for i in range(1, 11):
        await a.log.append(delta(session.id, i))
    await received_up_to(10)

    # Long enough that B's reader most likely still waits to retry when the next events are appended.
    b.log.backoff = Backoff(base=0.5, cap=1.0)
    await asyncio.to_thread(redis_server.stop)
    await asyncio.sleep(0.3)  # B's reader and control listener notice, and back off
    assert not subscription.closed
    await asyncio.to_thread(redis_server.start)

    # Appended at once, most likely while B's reader still waits to retry: read from where it was.
    for i in range(11, 21):
        await append_retrying(a, delta(session.id, i))
    await received_up_to(20)
    for i in range(21, 31):
        await a.log.append(delta(session.id, i))
    await received_up_to(30)
    assert [e.id for e in received] == list(range(1, 31))
    assert not subscription.closed

    # The control channel is listened to again: a deletion still reaches B.
    async with asyncio.timeout(WAIT):
        while (await a.store.redis.pubsub_numsub(a.log.keys.control))[0][1] < 1:
            await asyncio.sleep(0.05)
    await a.store.delete(session.id)
    a.log.close_session(session.id, CloseReason.DELETED)
    async with asyncio.timeout(WAIT):
        await reading
    assert subscription.closed_reason == CloseReason.DELETED


async def append_retrying(instance: Instance, event: Event) -> None:
    """The store's client may need a moment to reconnect after the restart."""
    for attempt in range(50):
        try:
            await instance.log.append(event)
            return
        except StoreUnavailable:
            if attempt == 49:
                raise
            await asyncio.sleep(0.1)
