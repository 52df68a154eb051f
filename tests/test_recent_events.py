"""The in-memory tail of recent events: it replays exactly what the store would, or says it cannot."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from core.events import Event, make_event
from tests.sse_client import open_sse
from tests.test_stream import run_to_end
from workflow.eventlog.recent import EVENT_OVERHEAD, RecentEvents


def event(session_id: str, event_id: int, text: str = "x") -> Event:
    return make_event(event_id, "step-delta", session_id, {"delta": text, "progress": 0})


def record_calls(store: Any, method: str, delay: float = 0.0) -> list[tuple[Any, ...]]:
    """Replace the store's `method` with one that records the arguments of each call (and takes
    `delay` s longer); the record."""
    calls: list[tuple[Any, ...]] = []
    real = getattr(store, method)

    async def recorded(*args: Any) -> Any:
        calls.append(args)
        if delay:
            await asyncio.sleep(delay)
        return await real(*args)

    setattr(store, method, recorded)
    return calls


def ids(events: list[Event] | None) -> list[int | None] | None:
    return None if events is None else [e.id for e in events]


def test_kept_events_are_nothing_the_garbage_collector_walks_and_come_back_the_same():
    # A full cache holds tens of thousands of events; as objects the collector tracks, every full
    # collection (and each young one after a busy spell) walked them all: 70 ms pauses under load.
    recent = RecentEvents(64 * 1024 * 1024)
    gc.collect()
    tracked = len(gc.get_objects())
    made = [event(f"s{n % 20}", n // 20 + 1, f"piece {n}") for n in range(10_000)]
    for each in made:
        recent.add(each)
    kept = {(e.session_id, e.id): (e.type, e.frame) for e in made}
    del made, each
    gc.collect()
    assert len(gc.get_objects()) - tracked < 100  # a few lists a session, not an object an event
    replayed = [e for n in range(20) for e in recent.after(f"s{n}", 0) or []]
    assert {(e.session_id, e.id): (e.type, e.frame) for e in replayed} == kept


def test_a_session_seen_from_its_first_event_is_replayed_from_anywhere():
    recent = RecentEvents(1 << 20)
    for i in range(1, 6):
        recent.add(event("a", i))
    assert ids(recent.after("a", 0)) == [1, 2, 3, 4, 5]
    assert ids(recent.after("a", 3)) == [4, 5]
    assert ids(recent.after("a", 5)) == []
    assert ids(recent.after("a", 99)) == []
    assert recent.after("unknown", 0) is None


def test_a_session_seen_from_part_way_answers_only_from_there():
    recent = RecentEvents(1 << 20)
    for i in range(7, 10):  # resumed after a restart: this process saw it from event 7 on
        recent.add(event("a", i))
    assert recent.after("a", 0) is None and recent.after("a", 5) is None
    assert ids(recent.after("a", 6)) == [7, 8, 9]


def test_a_gap_starts_the_tail_again_so_nothing_missing_is_ever_answered():
    recent = RecentEvents(1 << 20)
    for i in (1, 2, 3, 5, 6):  # event 4 was never committed here
        recent.add(event("a", i))
    assert recent.after("a", 2) is None
    assert ids(recent.after("a", 4)) == [5, 6]


def test_the_sessions_touched_longest_ago_go_first_when_full():
    one = len(event("a", 1).frame) + EVENT_OVERHEAD
    recent = RecentEvents(one * 4)
    recent.add(event("a", 1))
    recent.add(event("b", 1))
    recent.add(event("a", 2))  # a is touched last
    recent.add(event("c", 1))
    recent.add(event("c", 2))  # five events: b, the session touched longest ago, goes
    assert recent.after("b", 0) is None
    assert ids(recent.after("a", 0)) == [1, 2] and ids(recent.after("c", 0)) == [1, 2]
    assert recent.size == one * 4


def test_none_kept_when_turned_off():
    recent = RecentEvents(0)
    recent.add(event("a", 1))
    assert recent.after("a", 0) is None and recent.size == 0


def test_a_deleted_session_is_forgotten():
    recent = RecentEvents(1 << 20)
    recent.add(event("a", 1))
    recent.forget("a")
    recent.forget("a")
    assert recent.after("a", 0) is None and recent.size == 0


@pytest.mark.gen_test
async def test_streams_of_a_session_run_here_are_replayed_from_memory_exactly_as_stored(
    api: Any, http_port: int, engine: Any, store: Any
):
    session_id = await api.create()
    live = await run_to_end(http_port, session_id)
    read_store = store.events_after
    reads = record_calls(store, "events_after")
    replayed = await run_to_end(http_port, session_id, "GET")
    resumed = await run_to_end(http_port, session_id, "GET", headers={"Last-Event-ID": "100"})
    stored = await read_store(session_id, 0)
    payloads = [bytes(e.payload).decode() for e in stored]
    assert [e.data for e in replayed[1:]] == [e.data for e in live[1:]] == payloads
    assert [int(e.id) for e in resumed[1:]] == [e.id for e in stored[100:]]
    # From memory on a store this process alone writes; a shared one (Redis) is read.
    assert reads == ([(session_id, 0), (session_id, 100)] if store.shared else [])


@pytest.mark.gen_test
async def test_a_stream_that_starts_its_session_reads_nothing_of_the_log_first(
    api: Any, http_port: int, store: Any
):
    # A pending session, started by the stream under its lock, has no events to replay: under 50
    # runs started at once each read of the log was one more wait behind the runs' own work.
    reads = record_calls(store, "events_after")
    for method in ("POST", "GET"):
        session_id = await api.create()
        events = await run_to_end(http_port, session_id, method)
        assert [int(e.id) for e in events[1:]] == list(range(1, len(events)))
        assert events[-1].type == "final"
        # On a shared store another instance may start it meanwhile: there the log is read.
        assert reads == ([(session_id, 0)] if store.shared else [])
        reads.clear()


@pytest.mark.gen_test
async def test_a_post_run_reads_the_session_at_most_once_under_its_lock(api: Any, http_port: int, store: Any):
    # A start takes the session's lock whatever it finds, so a first look without the lock only
    # doubled the reads (and the waits behind a busy store) before the stream's first byte. A
    # session this process created and nothing touched since is not read at all: it is taken as
    # its create stored it. A shared store (another instance may have started it) is read.
    session_id = await api.create()
    reads = record_calls(store, "get")
    stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", "POST")
    await stream.read_until("connected")
    assert reads == ([(session_id,)] if store.shared else [])
    assert (await stream.read_all())[-1].type == "final"


@pytest.mark.gen_test
async def test_streams_asked_at_once_of_a_finished_session_share_one_read_of_it(
    api: Any, http_port: int, engine: Any, store: Any
):
    # 500 streams of one session asked at once made 500 reads of it: on SQLite, most of what
    # serving them cost. A session not run here is finished, pending or being started, and the
    # last two are read again under the session's lock, so a store this process alone writes
    # shares one read; a shared one (Redis) reads for each.
    session_id = await api.create()
    await run_to_end(http_port, session_id)
    reads = record_calls(store, "get", delay=0.05)  # still reading when the others ask
    subscriptions = await asyncio.gather(*(engine.subscribe(session_id, 0) for _ in range(20)))
    try:
        assert len(reads) == (20 if store.shared else 1)
        for subscription in subscriptions:
            events = subscription.take()
            assert [e.id for e in events] == list(range(1, len(events) + 1))
            assert events[-1].type == "final"
    finally:
        for subscription in subscriptions:
            engine.unsubscribe(subscription)
