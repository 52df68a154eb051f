"""What only the Redis store must do: the run leases and their fence, atomic writes that never bring a
deleted session back, the key layout, replay through XRANGE, and a Redis that is gone or refuses.

The SessionStore contract itself runs on Redis in tests/test_store.py (the `store` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import random
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from tornado.ioloop import IOLoop

import store.redis as redis_module
from conf.settings import settings_for_tests
from core.errors import RunTakenOver, SessionNotFound, StoreUnavailable
from core.events import FINAL, STEP_DELTA, Event, make_event
from core.models import Session, SessionStatus, utcnow
from core.store import Delivery
from server import open_store
from store import MemoryStore, RedisStore, StoredImage
from store.redis import redact_url
from store.redis_keys import Keys
from tools.redis_server import RedisServer, free_port

S = SessionStatus
PNG = StoredImage("image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))


@pytest.fixture
def redis_store(redis_server: RedisServer, redis_prefix: str, io_loop: IOLoop) -> Iterator[RedisStore]:
    store = io_loop.run_sync(lambda: RedisStore.open(redis_server.url, prefix=redis_prefix, instance="a"))
    yield store
    io_loop.run_sync(store.close)


@contextlib.asynccontextmanager
async def opened(
    url: str, prefix: str, instance: str = "a", lease_time: float = 10.0
) -> AsyncIterator[RedisStore]:
    store = await RedisStore.open(url, prefix=prefix, instance=instance, lease_time=lease_time)
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def raw(url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


def delta(session_id: str, event_id: int, text: str = "") -> Event:
    data = {"delta": text or f'piece {event_id}: ünïcode / "quoted" \\n', "progress": event_id}
    return make_event(event_id, STEP_DELTA, session_id, data, "step-3", "2024-05-01T12:00:00.000Z")


def a_delivery(session_id: str, name: str, at: float = 10.0) -> Delivery:
    return Delivery(f"msg_{name}", session_id, "session.completed", "https://example.org/", b"{}", at, at)


async def keys_of(client: Redis, prefix: str) -> set[str]:
    return {key.decode() async for key in client.scan_iter(match=f"{prefix}*", count=1000)}


async def a_session(store: RedisStore, status: SessionStatus = S.PENDING, **changes: object) -> Session:
    session = replace(Session.new("tides"), status=status, **changes)
    await store.create(session)
    return session


# -- run leases and the fence ----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_a_write_of_an_instance_that_lost_the_lease_is_refused_whole(redis_server, redis_prefix):
    url = redis_server.url
    async with opened(url, redis_prefix, "a") as a, opened(url, redis_prefix, "b") as b, raw(url) as client:
        session = await a_session(a, S.RUNNING)
        assert await a.claim_run(session.id)
        await a.append_events(session.id, [delta(session.id, 1)])  # A holds the lease: it writes

        # A stops renewing (paused past its lease): the lease lapses and B takes the run over.
        await client.delete(a.keys.lease(session.id))
        assert await b.claim_run(session.id)
        assert (await client.get(a.keys.lease(session.id))).startswith(b"b:")

        changed = replace(copy.deepcopy(session), status=S.COMPLETED)
        with pytest.raises(RunTakenOver, match=re.escape(session.id)):
            await a.append_events(session.id, [delta(session.id, 2)], changed, [a_delivery(session.id, "x")])
        with pytest.raises(RunTakenOver):
            await a.update(changed)
        with pytest.raises(RunTakenOver):
            await a.put_image(session.id, "diagram-1", PNG)
        # Nothing of A's refused writes is there: no event, no state, no delivery, no image.
        assert [e.id for e in await b.events_after(session.id, 0)] == [1]
        assert (await b.get(session.id)).status == S.RUNNING
        assert await b.deliveries(session.id) == [] and await b.next_delivery_at() is None
        assert await b.get_image(session.id, "diagram-1") is None

        # The new owner writes on; A's release leaves B's lease alone.
        await b.append_events(session.id, [delta(session.id, 2)], changed)
        assert [e.id for e in await a.events_after(session.id, 0)] == [1, 2]
        await a.release_run(session.id)
        assert (await client.get(a.keys.lease(session.id))).startswith(b"b:")
        await b.release_run(session.id)
        assert await client.exists(a.keys.lease(session.id)) == 0


@pytest.mark.gen_test
async def test_a_claim_is_refused_while_another_instance_holds_the_lease_and_tokens_only_grow(
    redis_server, redis_prefix
):
    url = redis_server.url
    async with opened(url, redis_prefix, "a") as a, opened(url, redis_prefix, "b") as b, raw(url) as client:
        session = await a_session(a, S.RUNNING)
        assert await a.claim_run(session.id)
        first = await client.get(a.keys.lease(session.id))
        assert await b.claim_run(session.id) is False
        assert await a.claim_run(session.id)  # its own lease: renewed, same token
        assert await client.get(a.keys.lease(session.id)) == first
        assert 9000 < await client.pttl(a.keys.lease(session.id)) <= 10000

        await a.release_run(session.id)
        assert await b.claim_run(session.id)
        second = await client.get(b.keys.lease(session.id))
        assert int(second.split(b":")[-1]) > int(first.split(b":")[-1])
        # A released it, so it no longer fences its writes of the session.
        assert not a.holds_run(session.id) and b.holds_run(session.id)


@pytest.mark.gen_test
async def test_renewal_keeps_the_leases_still_held_and_reports_each_lost_one_once(redis_server, redis_prefix):
    url = redis_server.url
    async with opened(url, redis_prefix, "a", lease_time=0.3) as a, opened(url, redis_prefix, "b") as b:
        kept, lost = await a_session(a, S.RUNNING), await a_session(a, S.RUNNING)
        assert await a.claim_run(kept.id) and await a.claim_run(lost.id)
        async with raw(url) as client:
            await client.delete(a.keys.lease(lost.id))
            assert await b.claim_run(lost.id)
            for _ in range(4):  # past the lease time more than once: renewal keeps it
                await asyncio.sleep(0.15)
                assert await a.renew_runs() in ([lost.id], [])
            assert 0 < await client.pttl(a.keys.lease(kept.id)) <= 300
        assert await a.renew_runs() == []
        assert a.holds_run(kept.id) and not a.holds_run(lost.id)
        assert await b.claim_run(kept.id) is False


@pytest.mark.gen_test
async def test_a_lease_nobody_renews_lapses_and_its_run_is_orphaned(redis_server, redis_prefix):
    url = redis_server.url
    async with opened(url, redis_prefix, "a", lease_time=0.2) as a, opened(url, redis_prefix, "b") as b:
        running = await a_session(a, S.RUNNING)
        held = await a_session(a, S.RUNNING)
        interrupted = await a_session(a, S.INTERRUPTED)
        for status in (S.QUEUED, S.PENDING, S.COMPLETED, S.FAILED):
            await a_session(a, status)
        assert await b.claim_run(held.id)
        assert await a.orphaned_runs() == [running.id, interrupted.id]
        assert await a.claim_run(running.id)
        assert await b.orphaned_runs() == [interrupted.id]
        await asyncio.sleep(0.35)  # A died: nobody renews its lease
        assert await b.orphaned_runs() == [running.id, interrupted.id]
        assert await b.claim_run(running.id)
        assert await b.orphaned_runs() == [interrupted.id]
        assert await a.renew_runs() == [running.id]  # A, back, learns it lost it


# -- atomicity -----------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_writes_racing_a_delete_from_another_instance_never_bring_the_session_back(
    redis_server, redis_prefix
):
    url = redis_server.url
    async with opened(url, redis_prefix, "a") as a, opened(url, redis_prefix, "b") as b, raw(url) as client:
        sessions = [await a_session(a, S.RUNNING, owner="alice") for _ in range(30)]

        async def keep_writing(session: Session) -> str:
            for n in range(1, 200):
                try:
                    state = replace(copy.deepcopy(session), status=S.RUNNING if n % 2 else S.INTERRUPTED)
                    await asyncio.gather(
                        a.append_events(
                            session.id,
                            [delta(session.id, n)],
                            state,
                            [a_delivery(session.id, f"{session.id}-{n}")],
                        ),
                        a.update(state),
                        a.put_image(session.id, f"image-{n}", PNG),
                    )
                except SessionNotFound:
                    return "gone"
            return "outlived the delete"

        async def delete_soon(session: Session) -> bool:
            await asyncio.sleep(random.uniform(0, 0.05))
            return await b.delete(session.id)

        outcomes = await asyncio.gather(
            *(keep_writing(s) for s in sessions), *(delete_soon(s) for s in sessions)
        )
        assert outcomes[: len(sessions)] == ["gone"] * len(sessions)
        assert outcomes[len(sessions) :] == [True] * len(sessions)
        # Not a key of any of them is left, and no index still names one.
        left = await keys_of(client, redis_prefix)
        assert not [key for key in left if any(s.id in key for s in sessions)]
        for key in left:
            kind = await client.type(key)
            if kind == b"zset":
                assert await client.zcard(key) == 0, key
        assert await a.count() == {} and await a.count("alice") == {}
        assert await a.newest(100) == [] and await a.next_delivery_at() is None


@pytest.mark.gen_test
async def test_writes_of_one_session_complete_in_the_order_made_in_few_round_trips(redis_store):
    session = await a_session(redis_store)
    done: list[int] = []
    futures = []
    for n in range(1, 301):
        future = redis_store.append_events(session.id, [delta(session.id, n)])
        future.add_done_callback(lambda _, n=n: done.append(n))
        futures.append(future)
    before = redis_store.commits
    await asyncio.gather(*futures)
    assert done == list(range(1, 301))
    assert redis_store.commits - before < 100  # batched: many writes share one MULTI/EXEC
    assert [e.id for e in await redis_store.events_after(session.id, 0)] == list(range(1, 301))


@pytest.mark.gen_test
async def test_a_write_sent_again_after_its_answer_was_lost_is_kept_once(redis_store):
    session = await a_session(redis_store)
    events = [delta(session.id, n) for n in (1, 2, 3)]
    await redis_store.append_events(session.id, events)
    await redis_store.append_events(session.id, events)  # the same bytes again: already there
    await redis_store.create(session)  # the same row again
    assert [e.frame for e in await redis_store.events_after(session.id, 0)] == [e.frame for e in events]
    with pytest.raises(StoreUnavailable, match="not after"):
        await redis_store.append_events(session.id, [delta(session.id, 2, "something else")])
    with pytest.raises(StoreUnavailable, match="exists already"):
        await redis_store.create(replace(session, topic="another"))
    assert [e.frame for e in await redis_store.events_after(session.id, 0)] == [e.frame for e in events]


# -- the layout ------------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_replay_after_an_id_is_an_xrange_after_its_entry_byte_for_byte(redis_server, redis_prefix):
    async with opened(redis_server.url, redis_prefix) as store, raw(redis_server.url) as client:
        session = await a_session(store)
        events = [delta(session.id, n) for n in range(1, 8)]
        events.append(make_event(8, FINAL, session.id, {"result": {"lesson": "# Tides\n\n«ebb» → flow"}}))
        await store.append_events(session.id, events[:3])
        await store.append_events(session.id, events[3:])
        key = Keys(redis_prefix).events(session.id)
        for after in range(len(events) + 1):
            entries = await client.xrange(key, f"({after}-1", "+")
            assert [entry for entry, _ in entries] == [f"{n}-1".encode() for n in range(after + 1, 9)]
            assert [fields[b"payload"] for _, fields in entries] == [bytes(e.payload) for e in events[after:]]
            assert [fields[b"type"] for _, fields in entries] == [e.type.encode() for e in events[after:]]
            got = await store.events_after(session.id, after)
            assert [e.frame for e in got] == [e.frame for e in events[after:]]
        assert (await store.get(session.id)).last_event_id == 8


@pytest.mark.gen_test
async def test_the_keys_of_a_session_are_those_redis_keys_lays_out_and_go_with_it(redis_server, redis_prefix):
    async with opened(redis_server.url, redis_prefix) as store, raw(redis_server.url) as client:
        keys = Keys(redis_prefix)
        session = await a_session(store, owner="alice")
        await store.append_events(session.id, [delta(session.id, 1)], session, [a_delivery(session.id, "1")])
        await store.put_image(session.id, "diagram-1", PNG)
        assert await store.claim_run(session.id)
        await store.describe()
        assert await keys_of(client, redis_prefix) == {
            keys.session(session.id),
            keys.seq,
            keys.sessions,
            keys.status("pending"),
            keys.owner("alice"),
            keys.owner_counts("alice"),
            keys.retention_pending,
            keys.events(session.id),
            keys.images(session.id),
            keys.delivery("msg_1"),
            keys.deliveries_due,
            keys.session_deliveries(session.id),
            keys.lease(session.id),
            keys.running,
            keys.fence,
            keys.probe("a"),
        }
        stored = await client.hgetall(keys.session(session.id))
        assert set(stored) == {b"row", b"status", b"owner", b"seq", b"created", b"updated"}
        assert stored[b"status"] == b"pending" and stored[b"owner"] == b"alice" and stored[b"seq"] == b"1"
        assert await client.hgetall(keys.images(session.id)) == {
            b"diagram-1:type": b"image/png",
            b"diagram-1:data": PNG.data,
        }
        assert await store.delete(session.id)
        # What is left belongs to no session: the counters, and the probe.
        assert await keys_of(client, redis_prefix) == {keys.seq, keys.fence, keys.probe("a")}


# -- listing and pruning, against the memory store --------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_listing_counting_and_pruning_agree_with_the_memory_store(redis_store, monkeypatch):
    monkeypatch.setattr(redis_module, "PRUNE_CHUNK", 3)  # many chunks per prune
    rng = random.Random(20240501)
    memory = MemoryStore()
    owners = ["alice", "bob", "", "anon:127.0.0.1"]
    sessions: list[Session] = []
    for i in range(60):
        session = replace(
            Session.new(f"topic {i}", owner=rng.choice(owners)),
            status=rng.choice(list(S)),
            created_at=utcnow() - timedelta(hours=rng.uniform(0, 48)),
            updated_at=utcnow() - timedelta(hours=rng.uniform(0, 48)),
        )
        sessions.append(session)
        for store in (memory, redis_store):
            await store.create(session)
    for session in rng.sample(sessions, 20):  # some change status (and so their indexes)
        changed = replace(copy.deepcopy(session), status=rng.choice(list(S)), updated_at=utcnow())
        for store in (memory, redis_store):
            await store.update(changed)
    for session in rng.sample(sessions, 5):
        for store in (memory, redis_store):
            await store.delete(session.id)

    async def same(call: str, *args: object) -> None:
        expected = await getattr(memory, call)(*args)
        got = await getattr(redis_store, call)(*args)
        if call in ("newest", "unfinished"):
            expected, got = [s.id for s in expected], [s.id for s in got]
        assert got == expected, (call, args)

    ids = [s.id for s in sessions]
    for owner in [None, *owners, "nobody"]:
        await same("count", owner)
        for status in [None, *S]:
            for before in [None, rng.choice(ids), rng.choice(ids), "no-such-session"]:
                await same("newest", rng.choice([1, 3, 100]), status, before, owner)
    await same("unfinished")

    for cutoff, keep, pending in [(30, 50, None), (20, 30, 40), (0, 10, None), (0, 0, 0)]:
        finished_before = utcnow() - timedelta(hours=cutoff)
        pending_before = utcnow() - timedelta(hours=pending) if pending is not None else None
        expected = await memory.prune(finished_before, keep, pending_before)
        got = await redis_store.prune(finished_before, keep, pending_before)
        assert sorted(got) == sorted(expected), (cutoff, keep, pending)
        await same("count", None)
        await same("newest", 100)


# -- a Redis that is gone, or refuses ----------------------------------------------------------------


@pytest.mark.gen_test
async def test_an_unreachable_redis_stops_the_open_naming_the_url_without_its_password():
    port = free_port()
    url = f"redis://user:hunter2@127.0.0.1:{port}/0?password=hunter3"
    with pytest.raises(StoreUnavailable) as refused:
        await RedisStore.open(url, timeout=1.0)
    message = str(refused.value)
    assert f"127.0.0.1:{port}" in message and "hunter" not in message
    with pytest.raises(StoreUnavailable, match="not a Redis URL"):
        await RedisStore.open("http://:hunter2@127.0.0.1/")


def test_a_url_is_shown_without_its_password():
    assert redact_url("redis://:s3cret@db.example:6380/2") == "redis://:***@db.example:6380/2"
    assert redact_url("rediss://app:s3cret@db.example/0") == "rediss://app:***@db.example/0"
    assert (
        redact_url("unix:///run/redis.sock?db=1&password=s3cret")
        == "unix:///run/redis.sock?db=1&password=***"
    )
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@pytest.mark.expect_errors("Redis write of")
@pytest.mark.gen_test(timeout=60)
async def test_a_write_while_redis_is_down_fails_and_the_store_serves_again_once_it_is_back(tmp_path):
    with RedisServer(tmp_path / "redis", aof=True) as server:
        async with opened(server.url, "orch:", lease_time=10) as store:
            session = await a_session(store)
            await store.append_events(session.id, [delta(session.id, 1)])
            server.kill()
            with pytest.raises(StoreUnavailable, match=rf"Redis at redis://127\.0\.0\.1:{server.port}/0"):
                await store.append_events(session.id, [delta(session.id, 2)])
            with pytest.raises(StoreUnavailable):
                await store.get(session.id)
            assert (await store.describe())["writable"] is False
            # Back, with what it had acknowledged (AOF, fsync always) but with no script cached:
            # the store loads it again and carries on from where the log was.
            server.start()
            await store.append_events(session.id, [delta(session.id, 2)])
            assert [e.id for e in await store.events_after(session.id, 0)] == [1, 2]
            facts = await store.describe()
            assert facts["writable"] is True and facts["version"].startswith("7.")


@pytest.mark.expect_errors("Redis write of")
@pytest.mark.gen_test(timeout=60)
async def test_a_redis_that_stops_answering_times_out_as_unavailable_and_a_retried_write_is_kept_once(
    tmp_path,
):
    with RedisServer(tmp_path / "redis") as server:
        store = await RedisStore.open(server.url, prefix="orch:", timeout=0.2)
        try:
            session = await a_session(store)
            server.pause()
            try:
                with pytest.raises(StoreUnavailable, match="Timeout"):
                    await store.append_events(session.id, [delta(session.id, 1)])
                assert (await store.describe())["writable"] is False
            finally:
                server.resume()
            # The write that timed out may have reached Redis (it was sent, and sent again by the
            # client's retry): written again it is kept once, whichever way it went.
            await store.append_events(session.id, [delta(session.id, 1)])
            await store.append_events(session.id, [delta(session.id, 2)])
            assert [e.id for e in await store.events_after(session.id, 0)] == [1, 2]
        finally:
            await store.close()


@pytest.mark.gen_test
async def test_a_redis_out_of_memory_refuses_writes_as_unavailable_and_still_serves_reads(tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        async with opened(server.url, "orch:") as store, raw(server.url) as client:
            session = await a_session(store)
            await store.append_events(session.id, [delta(session.id, 1)])
            await client.config_set("maxmemory-policy", "noeviction")
            await client.config_set("maxmemory", "1")
            try:
                with pytest.raises(StoreUnavailable, match="out of memory"):
                    await store.append_events(session.id, [delta(session.id, 2)])
                with pytest.raises(StoreUnavailable, match="out of memory"):
                    await store.create(Session.new("waves"))
                assert (await store.describe())["writable"] is False
                assert [e.id for e in await store.events_after(session.id, 0)] == [1]
                assert (await store.get(session.id)).last_event_id == 1
            finally:
                await client.config_set("maxmemory", "0")
            await store.append_events(session.id, [delta(session.id, 2)])
            assert (await store.describe())["writable"] is True


@pytest.mark.gen_test
async def test_a_read_only_replica_refuses_writes_as_unavailable(tmp_path):
    with RedisServer(tmp_path / "primary") as primary, RedisServer(tmp_path / "replica") as replica:
        async with raw(replica.url) as client:
            await client.execute_command("REPLICAOF", "127.0.0.1", primary.port)
            with pytest.raises(StoreUnavailable, match="read-only replica"):
                async with opened(replica.url, "orch:") as store:
                    await store.create(Session.new("tides"))
            await client.execute_command("REPLICAOF", "NO", "ONE")


# -- settings and the server -------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_the_server_opens_the_redis_store_its_settings_name(redis_server, redis_prefix):
    settings = settings_for_tests(
        store="redis", redis_url=redis_server.url, redis_prefix=redis_prefix, lease_time="2s"
    )
    store = await open_store(settings)
    try:
        assert isinstance(store, RedisStore) and store.keys.prefix == redis_prefix
        assert store.lease_ms == 2000 and re.fullmatch(r".+-\d+", store.instance)
        assert (await store.describe())["url"] == redis_server.url
    finally:
        await store.close()


def test_the_redis_url_is_never_in_the_settings_repr():
    settings = settings_for_tests(store="redis", redis_url="redis://:hunter2@db.example:6379/0")
    assert "hunter2" not in repr(settings)
    assert settings_for_tests(instance_id="worker-7").instance == "worker-7"
